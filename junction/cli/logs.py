"""``junction logs search``: the call log, the alert history and the workflow runs.

Searches the metrics store (``JUNCTION_STORE_DIR``/``JUNCTION_HOME``) with
:mod:`junction.logsearch`; results are newest first, a page at a time, every text
redacted. The next page is the same command with ``--cursor`` (printed after the table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from junction.cli.common import console, fail, load_settings, print_json, print_table, table

if TYPE_CHECKING:
    from junction.logsearch import LogItem

logs_app = typer.Typer(
    help="Search the call log, the alert history and the workflow runs.", no_args_is_help=True
)

_OPTION_OF = {"text": "TEXT"}
"""A query field -> how the command line names it (others: ``--<field>``)."""
_CONTROL = dict.fromkeys([*range(0x20), 0x7F], "?")
_STATUS_STYLE = {True: "green", False: "red"}


def register(app: typer.Typer) -> None:
    """Add ``junction logs`` to the top-level app."""
    app.add_typer(logs_app, name="logs")


def _cell(value: str | None) -> str:
    """Vendor text as one plain table cell: no rich markup, no terminal control codes."""
    if not value:
        return "-"
    return escape(value.translate(_CONTROL))


def _row(item: LogItem) -> tuple[str, ...]:
    what = item.action or ""
    if item.request:
        what = f"{what} {item.request}".strip()
    message = item.message or ""
    if item.error_class:
        message = f"{item.error_class}: {message}" if message else item.error_class
    if item.severity:
        message = f"{item.severity}: {message}"
    style = _STATUS_STYLE[item.ok]
    return (
        item.ts.strftime("%Y-%m-%d %H:%M:%S"),
        item.kind,
        _cell(item.service or item.workflow),
        _cell(what),
        f"[{style}]{_cell(item.status or ('ok' if item.ok else 'error'))}[/]",
        _cell(message),
        _cell(item.run_id),
    )


@logs_app.command("search")
def search(
    text: Annotated[
        str,
        typer.Argument(
            metavar="TEXT",
            help="Text to find (case-insensitive, literal); empty: every entry.",
            show_default=False,
        ),
    ] = "",
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service", "-s", metavar="SERVICE", help="Only this service (repeat for several)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Only entries since: a duration back from now (1h, 30m, 7d) or an ISO time.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="Only entries before: a duration back or an ISO time."),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS", help="error, ok, or an HTTP status code (calls only)."),
    ] = None,
    kind: Annotated[
        str, typer.Option(metavar="KIND", help="calls, alerts, workflows or all.")
    ] = "all",
    limit: Annotated[int, typer.Option(metavar="N", help="Entries per page (1-500).")] = 50,
    cursor: Annotated[
        str | None,
        typer.Option(metavar="CURSOR", help="Go on after this cursor (printed with a page)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search the call log, the alert history and the workflow runs, newest first."""
    # Function-level: the store pulls in pyarrow and DuckDB, `junction --help` should not.
    from junction.logquery import LogQueryError, parse_query
    from junction.logsearch import register_configured_secrets, search_settings

    settings = load_settings()
    register_configured_secrets(settings)  # an error below may quote what was typed
    try:
        query = parse_query(
            text,
            services=service or (),
            since=since,
            until=until,
            status=status,
            kind=kind,
            limit=limit,
            cursor=cursor,
        )
    except LogQueryError as exc:
        fail(f"{_OPTION_OF.get(exc.field, '--' + exc.field)}: {exc.message}")
    page = search_settings(settings, query)
    if as_json:
        print_json(
            {
                "items": [i.to_json() for i in page.items],
                "next_cursor": page.next_cursor,
                "searched_to": page.searched_to.isoformat() if page.searched_to else None,
            }
        )
        return
    if not page.items and page.searched_to is None:
        console.print("no log entries match" if query.cursor is None else "no older entries")
        return
    if page.items:
        out = table(None, "time (UTC)", "kind", "service", "action", "status", "message", "run")
        for item in page.items:
            out.add_row(*_row(item))
        print_table(out)
    if page.searched_to is not None:
        # The page stopped at its scan budget: say how far it looked.
        typer.echo(
            f"{'searched' if page.items else 'no matches'} back to "
            f"{page.searched_to:%Y-%m-%d %H:%M} UTC (one page's scan limit)"
        )
    if page.next_cursor:
        typer.echo(f"older entries: add --cursor {page.next_cursor}")
