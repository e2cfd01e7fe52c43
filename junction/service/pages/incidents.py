"""``/incidents``: open and recent incidents; ``/incidents/{id}``: the timeline, a note form
and, once resolved, the post-mortem (view, diff from the draft, edit form).

The forms post here (CSRF-checked) and call what ``junction incidents note|postmortem``
and ``/api/v2/incidents`` call (:mod:`junction.incidents`), then redirect back with one
line saying what was done or why nothing was. Every value is escaped by the templates:
notes, alert messages and vendor notes are untrusted text.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from junction.alerting import state as alert_state
from junction.incidents import (
    IncidentNotFoundError,
    IncidentOpenError,
    NoteError,
    RevisionConflictError,
    add_note,
    get_postmortem,
    page_incidents,
    read_incident,
    save_postmortem,
    session,
)
from junction.service.deps import StateDep
from junction.service.pages.flash import flash, see_other, take_flashes
from junction.service.web import CsrfDep, PageDep, render

router = APIRouter(include_in_schema=False)

PAGE = "/incidents"
ACTOR = "dashboard"
"""Who writes notes and post-mortems from the dashboard (its login is the one API token)."""

RECENT = timedelta(days=30)
"""Resolved incidents listed: those active this recently."""

RECENT_MAX = 100
"""At most this many open, and this many resolved, incidents listed."""


def _page(incident_id: str) -> str:
    return f"{PAGE}/{incident_id}"


@router.get(PAGE, response_class=HTMLResponse)
def incidents_page(request: Request, state: StateDep, _session: PageDep) -> HTMLResponse:
    """Open incidents, then the recently resolved ones."""
    now = datetime.now(UTC)
    try:
        with session(state.settings) as s:
            open_ = page_incidents(s.conn, state="open", limit=RECENT_MAX).incidents
            resolved = page_incidents(
                s.conn, state="resolved", since=now - RECENT, limit=RECENT_MAX
            ).incidents
    except alert_state.AlertDatabaseError as exc:
        return render(request, "incidents.html", {"problem": str(exc)}, active="incidents")
    context: dict[str, Any] = {
        "open": open_,
        "resolved": resolved,
        "durations": {i.id: i.duration_text(now) for i in [*open_, *resolved]},
        "flashes": take_flashes(request),
        "problem": None,
    }
    return render(request, "incidents.html", context, active="incidents")


@router.get(PAGE + "/{incident_id}", response_class=HTMLResponse)
def incident_page(
    request: Request, incident_id: str, state: StateDep, _session: PageDep
) -> HTMLResponse:
    """One incident: timeline, note form, post-mortem once resolved."""
    now = datetime.now(UTC)
    context: dict[str, Any] = {"flashes": take_flashes(request), "problem": None}
    try:
        with session(state.settings) as s:
            incident = read_incident(s.conn, incident_id)
        postmortem = None
        if not incident.is_open:  # the draft's store queries hold no connection
            with contextlib.suppress(IncidentOpenError):  # reopened meanwhile
                postmortem = get_postmortem(state.settings, incident_id, store=state.store())
    except IncidentNotFoundError:
        context["problem"] = f"no incident with id {incident_id!r}"
        response = render(request, "incident.html", context, active="incidents")
        response.status_code = 404
        return response
    except alert_state.AlertDatabaseError as exc:
        context["problem"] = str(exc)
        return render(request, "incident.html", context, active="incidents")
    context.update(
        incident=incident,
        duration=incident.duration_text(now),
        postmortem=postmortem,
        diff=postmortem.diff() if postmortem is not None else "",
    )
    return render(request, "incident.html", context, active="incidents")


@router.post(PAGE + "/{incident_id}/notes")
def post_note(
    request: Request,
    incident_id: str,
    state: StateDep,
    _session: PageDep,
    _csrf: CsrfDep,
    text: Annotated[str, Form()] = "",
    public: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Add a note (``public`` checked: shown on the status page)."""
    try:
        entry = add_note(state.settings, incident_id, text, author=ACTOR, public=bool(public))
    except IncidentNotFoundError as exc:
        flash(request, str(exc), "error")
        return see_other(PAGE)
    except (NoteError, alert_state.AlertDatabaseError) as exc:
        flash(request, f"no note added: {exc}", "error")
        return see_other(_page(incident_id))
    flash(request, "public note added" if entry.public else "internal note added")
    return see_other(_page(incident_id))


@router.post(PAGE + "/{incident_id}/postmortem")
def post_postmortem(
    request: Request,
    incident_id: str,
    state: StateDep,
    _session: PageDep,
    _csrf: CsrfDep,
    text: Annotated[str, Form()] = "",
    revision: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Save the post-mortem text as the next revision (refused if someone saved since)."""
    expected = int(revision) if revision.isdigit() else None
    try:
        saved = save_postmortem(
            state.settings,
            incident_id,
            text,
            author=ACTOR,
            revision=expected,
            store=state.store(),
        )
    except IncidentNotFoundError as exc:
        flash(request, str(exc), "error")
        return see_other(PAGE)
    except (
        NoteError,
        IncidentOpenError,
        RevisionConflictError,
        alert_state.AlertDatabaseError,
    ) as exc:
        flash(request, f"post-mortem not saved: {exc}", "error")
        return see_other(_page(incident_id))
    flash(request, f"post-mortem saved (revision {saved.revision})")
    return see_other(_page(incident_id))
