"""``junction status-page``: check the public status page's file and preview the page.

The file (``JUNCTION_STATUS_PAGE_FILE``, default ``<JUNCTION_HOME>/status-page.yaml``; see
``status-page.example.yaml``) says what ``/status`` shows. A running service only logs an
invalid file (the public page must not show catalog names or paths); ``check`` prints
every problem, and ``show`` prints the page the public would see now, from the metrics
store and the alert database, without a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from junction.cli.common import console, fail, load_settings, print_json, print_table, table

status_page_app = typer.Typer(
    help="The public status page: check its file, preview what it shows.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``junction status-page`` to the top-level app."""
    app.add_typer(status_page_app, name="status-page")


@status_page_app.command("check")
def check(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="The file (default: JUNCTION_STATUS_PAGE_FILE or <home>/status-page.yaml).",
        ),
    ] = None,
) -> None:
    """Check the status-page file: every problem as file:line: field: problem."""
    # deferred: keeps `junction --help` fast
    from integrations.catalog import load_catalog
    from integrations.yamlconfig import ConfigError
    from junction.service.public import load_status_page, status_page_path

    path = file if file is not None else status_page_path(load_settings())
    try:
        config = load_status_page(path, load_catalog().names)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    if config is None:
        fail(f"{path}: no such file (status-page.example.yaml shows the format)")
    shown = ", ".join(f"{s.service} as {s.name!r}" for s in config.services) or "none"
    typer.echo(f"{path}: ok; {len(config.services)} services shown: {shown}")


@status_page_app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print the page's JSON.")] = False,
) -> None:
    """Preview the public page as it is now (the JSON of GET /api/v2/status/page)."""
    # deferred: keeps `junction --help` fast (the page reads the store with DuckDB)
    import asyncio

    from junction.service.public import StatusPage
    from junction.service.public_page import PublicStatus
    from junction.service.state import ServiceState

    settings = load_settings()

    async def build() -> StatusPage:
        state = ServiceState(settings)
        try:
            return await PublicStatus(state).page()
        finally:
            await state.aclose()

    page = asyncio.run(build())
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    console.print(f"{escape(page.title)}: {page.summary}", highlight=False)
    if page.notice:
        console.print(escape(page.notice), style="yellow", highlight=False)
    out = table(None, "service", "status", f"uptime ({page.days} d)", "days with data")
    for s in page.services:
        uptime = "-" if s.uptime_percent is None else f"{s.uptime_percent:.3f}%"
        days = sum(d.level != "none" for d in s.days)
        out.add_row(escape(s.name), s.status_label, uptime, str(days))
    if page.services:
        print_table(out)
    for label, items in (
        ("active incidents", page.active_incidents),
        ("past incidents", page.past_incidents),
    ):
        console.print(f"{label}: {len(items)}", highlight=False)
    for m in page.maintenance:
        console.print(
            f"maintenance ({m.state}) {m.starts_at:%Y-%m-%d %H:%M}Z - {m.ends_at:%Y-%m-%d %H:%M}Z"
            f"{': ' + escape(', '.join(m.services)) if m.services else ''}",
            highlight=False,
        )
