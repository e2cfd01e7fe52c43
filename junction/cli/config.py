"""``junction config``: every setting's value in effect and where it came from, or the
variables with their defaults and meaning (the README's table)."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from junction.cli.common import load_settings, print_json, print_table, table, warn

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from junction.settings import Settings

# A path setting left unset means a file under the home; its description says which.
_UNDER_HOME = re.compile(r"Default: <JUNCTION_HOME>/([\w./-]+?)\.?(?:\s|$)")
_HIDDEN = "********"


def register(app: typer.Typer) -> None:
    """Add ``junction config`` to the top-level app."""
    app.command("config")(config)


@dataclass(frozen=True)
class EffectiveSetting:
    """One setting as this process sees it.

    Attributes:
        variable: The environment variable that sets it.
        value: The value in effect, as text (secrets hidden).
        source: ``default``, ``derived (...)``, ``environment (VAR)``, ``env file (path)``.
        description: What it does.
    """

    variable: str
    value: str
    source: str
    description: str


def _env_names(name: str, field: FieldInfo) -> list[str]:
    choices = getattr(field.validation_alias, "choices", None)
    return [str(c) for c in choices] if choices else [f"JUNCTION_{name.upper()}"]


def _shown(value: Any) -> str:
    # Function-level: pydantic is not needed for `junction --help`.
    from pydantic import SecretStr

    if value is None:
        return ""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        if "://" in secret:  # a URL (JUNCTION_STATE_URL): shown with its password hidden
            from junction.statedb import mask_url

            return mask_url(secret)
        return _HIDDEN if secret else ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def effective_settings(
    settings: Settings,
    environ: dict[str, str] | None = None,
    env_file: Path | None = None,
) -> list[EffectiveSetting]:
    """Each setting's value in ``settings`` and its source (environment > env file > default).

    Args:
        settings: The settings in effect.
        environ: The environment they were read from (default: this process's).
        env_file: The env file they were read from (default: :func:`env_file_path`).

    Returns:
        One row per setting, then Prefect's home and API URL and the env file itself.
    """
    from junction.settings import Settings, env_file_path, env_file_values

    env = {k.upper(): (k, v) for k, v in (os.environ if environ is None else environ).items()}
    file_path = env_file_path() if env_file is None else env_file
    in_file = {k.upper(): k for k in env_file_values(file_path)}
    rows: list[EffectiveSetting] = []
    for name, field in Settings.model_fields.items():
        names = _env_names(name, field)
        value = getattr(settings, name)
        shown = _shown(value)
        source = "default"
        under_home = _UNDER_HOME.search(field.description or "")
        if hit := next((env[n.upper()][0] for n in names if n.upper() in env), None):
            source = f"environment ({hit})"
        elif hit := next((in_file[n.upper()] for n in names if n.upper() in in_file), None):
            source = f"env file ({file_path}: {hit})"
        elif value is None and under_home:
            shown = str(settings.home / under_home.group(1))
            source = "derived (JUNCTION_HOME)"
        rows.append(EffectiveSetting(names[0], shown, source, field.description or ""))
    rows.extend(_prefect_rows(settings, env))
    rows.append(
        EffectiveSetting(
            "JUNCTION_ENV_FILE",
            str(file_path),
            ("environment (JUNCTION_ENV_FILE)" if "JUNCTION_ENV_FILE" in env else "default")
            + ("" if file_path.is_file() else "; no such file"),
            "Per-user env file of KEY=value settings (the environment wins over it).",
        )
    )
    return rows


def _prefect_rows(settings: Settings, env: dict[str, tuple[str, str]]) -> list[EffectiveSetting]:
    """Prefect's home and server as Junction's commands will use them."""
    home = env.get("PREFECT_HOME")
    api = env.get("PREFECT_API_URL")
    return [
        EffectiveSetting(
            "PREFECT_HOME",
            home[1] if home else str(settings.home / "prefect"),
            "environment (PREFECT_HOME)" if home else "derived (JUNCTION_HOME)",
            "Prefect's home (profiles, local results, the ephemeral server's database).",
        ),
        EffectiveSetting(
            "PREFECT_API_URL",
            api[1] if api else "",
            "environment (PREFECT_API_URL)"
            if api
            else "unset: each command starts an ephemeral server (or the Prefect profile's URL)",
            "Prefect server the flows report to; `junction serve` starts workflow runs there.",
        ),
    ]


def with_prefect_variables(rows: list[EffectiveSetting]) -> list[EffectiveSetting]:
    """``rows`` with the values flow runs take from Prefect Variables (``flows.variables``:
    a Variable fills a setting neither the environment nor the env file sets).

    Asked only when ``PREFECT_API_URL`` names a server (asking would otherwise start an
    ephemeral one); an unreachable server leaves the rows as they are, with a warning.
    """
    if not os.environ.get("PREFECT_API_URL"):
        return rows
    # Function-level: Prefect's client is slow to import and needed only here.
    import httpx

    from flows.variables import VARIABLE_SETTINGS, apply_values, variable_name, variable_values

    try:
        values = variable_values()
    except (httpx.HTTPError, OSError) as exc:
        warn(f"Prefect Variables not read: {exc}")
        return rows
    # Validated as the flows apply them; a bad value is skipped there, so here too.
    valid = apply_values(values, environ={}, env_file={})
    by_env = {f"JUNCTION_{s.upper()}": s for s in VARIABLE_SETTINGS}
    out = []
    for row in rows:
        setting = by_env.get(row.variable)
        from_env = row.source.startswith(("environment", "env file"))
        if setting and row.variable in valid and not from_env:
            row = EffectiveSetting(
                row.variable,
                valid[row.variable],
                f"prefect variable ({variable_name(setting)})",
                row.description,
            )
        out.append(row)
    return out


def config_rows() -> list[tuple[str, str, str]]:
    """(env var, default, description) for every setting, the README's table."""
    # Function-level: pydantic-settings is not needed for `junction --help`.
    from pydantic_core import PydanticUndefined

    from integrations.config import IntegrationConfig
    from junction.settings import Settings

    rows = []
    for name, field in Settings.model_fields.items():
        env = _env_names(name, field)[0]
        default = field.default
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "shown_default" in extra:
            shown = str(extra["shown_default"])
        elif default is None or default is PydanticUndefined:
            shown = ""
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = str(default)
        rows.append((env, shown, field.description or ""))
    for name, field in IntegrationConfig.model_fields.items():
        rows.append((f"JUNCTION_<NAME>_{name.upper()}", "", field.description or ""))
    return rows


def config(
    describe: Annotated[
        bool, typer.Option(help="Show every variable's default and meaning instead.")
    ] = False,
    markdown: Annotated[bool, typer.Option(help="Print the README's markdown table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every setting's value in effect and where it came from (--describe: defaults)."""
    if markdown:
        print("| variable | default | description |\n|---|---|---|")
        for env, default, desc in config_rows():
            print(f"| `{env}` | {f'`{default}`' if default else ''} | {desc} |")
        return
    if describe:
        described = config_rows()
        if as_json:
            print_json([{"variable": e, "default": d, "description": t} for e, d, t in described])
            return
        out = table(
            "Settings (environment > env file > default)", "variable", "default", "description"
        )
        for row in described:
            out.add_row(*(escape(cell) for cell in row))
        print_table(out)
        return
    rows = with_prefect_variables(effective_settings(load_settings()))
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    out = table(
        "Settings in effect (environment > env file > Prefect Variable > default)",
        "variable",
        "value",
        "source",
    )
    for r in rows:
        # Values and descriptions are data: "[x]" in them is text, not rich markup.
        out.add_row(escape(r.variable), escape(r.value), escape(r.source))
    print_table(out)
