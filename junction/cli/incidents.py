"""`junction incidents`: incidents (related alerts grouped), their timelines, notes and
post-mortems.

Read from ``<JUNCTION_HOME>/alerts.db`` (``JUNCTION_ALERTS_DB``), which the monitor
writes; each command first assigns the alerts fired since the last read to incidents
(:mod:`junction.incidents`). The incidents package is imported inside the commands so
that ``junction --help`` stays fast (it loads the dependency map and the store).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from junction.cli.common import console, fail, load_settings, print_json, print_table, table

incidents_app = typer.Typer(
    help="Incidents: related alerts grouped, with a timeline, notes and a post-mortem.",
    no_args_is_help=True,
)

_STATE_STYLE = {"open": "bold red", "resolved": "green"}


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(incidents_app, name="incidents")


def _when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _not_found(message: str) -> None:
    from junction.incidents import incident_ids, session  # deferred: keeps --help fast

    with session(load_settings(), synced=False) as s:
        known = incident_ids(s.conn)[-5:]
    hint = f" (recent: {', '.join(known)})" if known else " (there are no incidents yet)"
    fail(message + hint)


@incidents_app.command("list")
def list_command(
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List incidents, newest first: services, severity, state, duration."""
    from junction.alerting.state import AlertDatabaseError  # deferred: keeps --help fast
    from junction.incidents import list_incidents

    try:
        found = list_incidents(load_settings(), include_resolved=not open_only)
    except AlertDatabaseError as exc:
        fail(str(exc))
    if as_json:
        print_json([i.to_json(timeline=False) for i in found])
        return
    if not found:
        console.print("no open incidents" if open_only else "no incidents")
        return
    out = table("Incidents", "id", "state", "severity", "started", "duration", "services", "title")
    for i in found:
        style = _STATE_STYLE.get(i.state, "")
        out.add_row(
            i.id,
            f"[{style}]{i.state}[/]",
            i.severity,
            _when(i.started_at),
            i.duration_text(),
            escape(", ".join(i.services)),
            escape(i.title),
        )
    print_table(out)


@incidents_app.command("show")
def show(
    incident_id: Annotated[str, typer.Argument(metavar="ID", help="Incident id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an incident and its timeline."""
    from junction.alerting.state import AlertDatabaseError  # deferred: keeps --help fast
    from junction.incidents import IncidentNotFoundError, get_incident

    try:
        incident = get_incident(load_settings(), incident_id)
    except AlertDatabaseError as exc:
        fail(str(exc))
    except IncidentNotFoundError as exc:
        _not_found(str(exc))
        return
    if as_json:
        print_json(incident.to_json())
        return
    resolved = _when(incident.resolved_at) if incident.resolved_at else "-"
    typer.echo(f"{incident.id}: {incident.title}")
    typer.echo(
        f"state {incident.state}, severity {incident.severity}, started "
        f"{_when(incident.started_at)}, resolved {resolved}, duration {incident.duration_text()}"
    )
    typer.echo(f"services: {', '.join(incident.services)}")
    out = table("Timeline", "time", "kind", "service", "by", "public", "text")
    for e in incident.timeline:
        out.add_row(
            _when(e.ts),
            e.kind,
            escape(e.service or ""),
            escape(e.author or ""),
            "yes" if e.public else "",
            escape(e.text),
        )
    print_table(out)


@incidents_app.command("note")
def note(
    incident_id: Annotated[str, typer.Argument(metavar="ID", help="Incident id.")],
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The note.")],
    public: Annotated[
        bool, typer.Option("--public", help="Show it on the public status page as an update.")
    ] = False,
    by: Annotated[str | None, typer.Option("--by", help="Who writes it (default: $USER).")] = None,
) -> None:
    """Add a note to an incident's timeline (internal unless --public)."""
    from junction.alerting.state import AlertDatabaseError  # deferred: keeps --help fast
    from junction.incidents import IncidentNotFoundError, NoteError, add_note

    try:
        entry = add_note(
            load_settings(), incident_id, text, author=by or getpass.getuser(), public=public
        )
    except (AlertDatabaseError, NoteError) as exc:
        fail(str(exc))
    except IncidentNotFoundError as exc:
        _not_found(str(exc))
        return
    where = "public" if entry.public else "internal"
    typer.echo(f"added a {where} note to incident {incident_id} by {entry.author}")


@incidents_app.command("postmortem")
def postmortem(
    incident_id: Annotated[str, typer.Argument(metavar="ID", help="Incident id (resolved).")],
    edit: Annotated[
        Path | None,
        typer.Option("--edit", metavar="FILE", help="Save FILE's text as the next revision."),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who saves it (default: $USER).")] = None,
) -> None:
    """Print a resolved incident's post-mortem (markdown), or save an edited one."""
    from junction.alerting.state import AlertDatabaseError  # deferred: keeps --help fast
    from junction.incidents import (
        IncidentNotFoundError,
        IncidentOpenError,
        NoteError,
        get_postmortem,
        save_postmortem,
    )

    settings = load_settings()
    try:
        if edit is None:
            typer.echo(get_postmortem(settings, incident_id).text, nl=False)
            return
        try:
            text = edit.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--edit: cannot read {edit}: {getattr(exc, 'strerror', None) or exc}")
        saved = save_postmortem(settings, incident_id, text, author=by or getpass.getuser())
    except (AlertDatabaseError, IncidentOpenError, NoteError) as exc:
        fail(str(exc))
    except IncidentNotFoundError as exc:
        _not_found(str(exc))
        return
    typer.echo(f"saved the post-mortem of incident {incident_id} (revision {saved.revision})")
