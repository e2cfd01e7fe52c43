"""``junction config``: every setting, its environment variable, default and meaning."""

from __future__ import annotations

from typing import Annotated

import typer

from junction.cli.common import print_json, print_table, table


def register(app: typer.Typer) -> None:
    """Add ``junction config`` to the top-level app."""
    app.command("config")(config)


def config_rows() -> list[tuple[str, str, str]]:
    """(env var, default, description) for every setting, the README's table."""
    # Function-level: pydantic-settings is not needed for `junction --help`.
    from pydantic_core import PydanticUndefined

    from integrations.config import IntegrationConfig
    from junction.settings import Settings

    rows = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        env = str(choices[0]) if choices else f"JUNCTION_{name.upper()}"
        default = field.default
        if default is None or default is PydanticUndefined:
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
    markdown: Annotated[bool, typer.Option(help="Print the README's markdown table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every setting: environment variable, default, description."""
    rows = config_rows()
    if as_json:
        print_json([{"variable": e, "default": d, "description": t} for e, d, t in rows])
        return
    if markdown:
        print("| variable | default | description |\n|---|---|---|")
        for env, default, desc in rows:
            print(f"| `{env}` | {f'`{default}`' if default else ''} | {desc} |")
        return
    out = table("Settings (argument > environment > default)", "variable", "default", "description")
    for row in rows:
        out.add_row(*row)
    print_table(out)
