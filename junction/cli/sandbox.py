"""``junction sandbox``: the built-in sandbox of simulated services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from junction.cli.common import fail

sandbox_app = typer.Typer(help="The built-in sandbox of simulated services.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``junction sandbox`` to the top-level app."""
    app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("serve")
def sandbox_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port (0 = any free port).")] = 8765,
    faults: Annotated[
        Path | None, typer.Option(help="Fault profile YAML (see integrations/sandbox/profiles/).")
    ] = None,
    smtp_port: Annotated[
        int, typer.Option(help="SMTP port of the sandbox's mail server (0 = any free port).")
    ] = 8025,
    smtp: Annotated[bool, typer.Option(help="Run the SMTP server (--no-smtp to skip it).")] = True,
) -> None:
    """Serve every catalog integration locally, with state and fault injection."""
    # Function-level: the sandbox imports starlette, uvicorn and 43 vendors (~1 s).
    from integrations.sandbox.app import serve

    if faults is not None and not faults.is_file():
        fail(f"fault profile not found: {faults}")
    try:
        serve(host=host, port=port, faults_file=faults, smtp_port=smtp_port if smtp else None)
    except (ValueError, OSError) as exc:
        fail(str(exc))
