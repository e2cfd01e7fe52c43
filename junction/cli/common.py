"""What every ``junction`` command shares: consoles, the one-line failure, settings,
the runtime a command that runs flows needs, and output that stays readable when piped.

Light on purpose (typer and rich only): ``junction --help`` imports it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from junction.settings import Settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` (one line, on stderr) and exit with ``code``.

    Args:
        message: What is wrong, naming the input that is.
        code: Exit status (2: bad input or configuration; 1: the work itself failed).
    """
    err_console.print(f"[red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr."""
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def load_settings() -> Settings:
    """The process's settings; an invalid setting is one line naming it, then exit 2."""
    # Function-level: pydantic-settings costs ~100 ms, which `junction --help` should not pay.
    from pydantic import ValidationError

    from junction.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid configuration: {problems}")


def prepare_runtime() -> Settings:
    """Set the environment a command that runs flows or clients needs, before imports.

    Returns:
        The settings (validated).
    """
    settings = load_settings()
    # Junction's home holds workflow parameters, error text and Prefect's pickled results:
    # nothing this process creates is readable by other users.
    os.umask(0o077)
    home = Path(settings.home).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    _owner_only(home)
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        str(settings.prefect_ephemeral_startup_timeout_seconds),
    )
    os.environ.setdefault("PREFECT_HOME", str(Path(settings.home).resolve() / "prefect"))
    # No network here but the registries: Prefect's telemetry would only log errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect creates its home without parents and then fails obscurely on a fresh machine.
    prefect_home = Path(os.environ["PREFECT_HOME"]).expanduser()
    prefect_home.mkdir(parents=True, exist_ok=True)
    _owner_only(prefect_home)
    # Function-level: the redactor pulls in the integrations package (httpx).
    from integrations.redaction import install_log_redaction

    install_log_redaction()
    return settings


def _owner_only(path: Path) -> None:
    """Make a directory we own ``0700`` (one made before, by an older version, was 0755)."""
    try:
        if path.stat().st_uid == os.getuid():
            path.chmod(0o700)
    except OSError:
        pass  # not ours, or read-only: the store's own modes still apply


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (datetimes and paths as text)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None = None, *columns: str, right: tuple[str, ...] = ()) -> Table:
    """A rich table whose cells never break mid-word when the output is piped.

    Args:
        title: Shown above the table, left-aligned.
        *columns: Column headers.
        right: Headers of right-justified (numeric) columns.
    """
    out = Table(title=title, title_justify="left")
    for col in columns:
        out.add_column(col, justify="right" if col in right else "left", overflow="fold")
    return out


def print_table(t: Table) -> None:
    """Print a table; when stdout is not a terminal, wide enough never to wrap a cell."""
    if console.is_terminal:
        console.print(t)
        return
    # Piped (CI logs, `| cat`, `| grep`): rich assumes 80 columns and folds cells
    # mid-word ("servi/ce", URLs cut in two). Print at the table's natural width: one
    # line per row, whole words and URLs, easy to grep; no padding after the last cell.
    width = Console(width=10_000).measure(t).maximum
    buffer = io.StringIO()
    Console(file=buffer, width=max(console.width, width)).print(t)
    typer.echo("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()))
