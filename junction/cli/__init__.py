"""The ``junction`` command line: one package, one module per command group.

Every module exposes ``register(app)``, called here; shared helpers live in
:mod:`junction.cli.common`. Heavy libraries (Prefect, pandas, DuckDB, the sandbox) are
imported inside the commands so that ``junction --help`` stays fast.
"""

from __future__ import annotations

import typer

from junction.cli import (
    alerts,
    analytics,
    config,
    demo,
    incidents,
    integrations,
    logs,
    models,
    monitor,
    sandbox,
    serve,
    statuspage,
    workflow,
)

app = typer.Typer(
    # Plain click help: no `<bool>` after flags, paragraphs re-flowed, readable when piped.
    rich_markup_mode=None,
    help="Junction: cross-service workflows, integration health monitoring and analytics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for _module in (
    integrations,
    monitor,
    alerts,
    incidents,
    workflow,
    analytics,
    models,
    logs,
    sandbox,
    serve,
    statuspage,
    config,
    demo,
):
    _module.register(app)
for _group in app.registered_groups:
    if _group.typer_instance is not None:
        _group.typer_instance.rich_markup_mode = None


def main() -> None:
    """Entry point for ``python -m junction``."""
    app(prog_name="junction")


__all__ = ["app", "main"]
