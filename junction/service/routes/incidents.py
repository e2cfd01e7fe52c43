"""``/api/v2/incidents``: incidents with their timelines, operator notes and post-mortems.

Thin over :mod:`junction.incidents` (the same functions as ``junction incidents``), on the
alert database the monitor writes; every read first assigns the alerts fired since the
last read to their incidents.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StrictBool

from junction.alerting import state as alert_state
from junction.durations import parse_since
from junction.incidents import (
    MAX_NOTE_CHARS,
    MAX_POSTMORTEM_CHARS,
    Incident,
    IncidentNotFoundError,
    IncidentOpenError,
    NoteError,
    PostMortem,
    RevisionConflictError,
    Session,
    TimelineEntry,
    add_note,
    get_postmortem,
    incident_ids,
    page_incidents,
    read_incident,
    save_postmortem,
    session,
)
from junction.service.deps import StateDep, require_token
from junction.service.errors import ApiError
from junction.service.lookups import (
    alert_database_unavailable,
    error_responses,
    invalid,
    unknown,
)
from junction.service.state import ServiceState

router = APIRouter(
    prefix="/api/v2/incidents",
    tags=["incidents"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)

MAX_PAGE = 200
"""Most incidents one page returns."""


class TimelineEntryInfo(BaseModel):
    """One timeline entry: an alert transition, a vendor note or an operator note."""

    ts: datetime
    kind: str = Field(
        description="firing, severity, acknowledged, escalated, suppressed, "
        "resolved, status_page or note."
    )
    text: str
    public: bool = Field(description="Shown on the public status page (public notes only).")
    author: str | None
    service: str | None


class IncidentSummary(BaseModel):
    """An incident without its timeline."""

    id: str
    title: str
    services: list[str]
    root_service: str
    severity: str
    state: Literal["open", "resolved"]
    started_at: datetime
    resolved_at: datetime | None
    duration_seconds: float
    alerts: list[int]


class IncidentDetail(IncidentSummary):
    """An incident with its timeline, oldest entry first."""

    timeline: list[TimelineEntryInfo]


class IncidentPage(BaseModel):
    """One page of incidents, newest first."""

    incidents: list[IncidentSummary]
    total: int = Field(description="Incidents matching the filters, on every page.")
    limit: int
    offset: int
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page (null: this is the last)."
    )


class NoteRequest(BaseModel):
    """An operator note."""

    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS, description="The note.")
    public: StrictBool = Field(False, description="Show it on the public status page.")
    by: str = Field("api", min_length=1, max_length=200, description="Who writes it.")


class PostMortemInfo(BaseModel):
    """A resolved incident's post-mortem (markdown) and its generated draft."""

    incident_id: str
    text: str
    generated: str
    revision: int = Field(description="Edits saved so far (0: the generated draft).")
    edited: bool
    generated_at: datetime
    updated_at: datetime
    updated_by: str | None


class PostMortemRequest(BaseModel):
    """A new post-mortem text."""

    text: str = Field(min_length=1, max_length=MAX_POSTMORTEM_CHARS, description="Markdown.")
    revision: int | None = Field(
        None,
        ge=0,
        description="The revision the edit started from (409 if it is not the "
        "stored one); omit to overwrite.",
    )
    by: str = Field("api", min_length=1, max_length=200, description="Who saves it.")


def _summary(incident: Incident) -> dict[str, object]:
    return incident.to_json(timeline=False)


def _entry(entry: TimelineEntry) -> TimelineEntryInfo:
    return TimelineEntryInfo.model_validate(entry.to_json())


def _postmortem(pm: PostMortem) -> PostMortemInfo:
    return PostMortemInfo.model_validate(pm.to_json())


@contextmanager
def _session(state: ServiceState) -> Iterator[Session]:
    """The synced alert database; a damaged one is a 503 naming ``junction alerts reset``."""
    try:
        with session(state.settings) as s:
            yield s
    except alert_state.AlertDatabaseError as exc:
        raise alert_database_unavailable(exc) from None


def _not_found(s: Session, incident_id: str) -> ApiError:
    return unknown("incident", incident_id, incident_ids(s.conn), field="path.incident_id")


def _since(value: str | None) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise invalid("query.since", str(exc)) from None


@router.get(
    "", response_model=IncidentPage, responses=error_responses(503), summary="List incidents"
)
def list_incidents(
    state: StateDep,
    incident_state: Annotated[
        Literal["open", "resolved"] | None,
        Query(alias="state", description="Only open or only resolved incidents."),
    ] = None,
    service: Annotated[str | None, Query(description="Only incidents affecting it.")] = None,
    since: Annotated[
        str | None, Query(description="Only incidents active since: ISO-8601 time or 1h, 7d.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Incidents to skip.")] = 0,
    cursor: Annotated[
        str | None,
        Query(max_length=40, description="The next_cursor of the previous page."),
    ] = None,
) -> IncidentPage:
    """Incidents, newest first, filtered and paged (``next_cursor`` -> ``cursor``)."""
    cutoff = _since(since)
    with _session(state) as s:
        try:
            page = page_incidents(
                s.conn,
                state=incident_state,
                service=service,
                since=cutoff,
                limit=limit,
                offset=offset,
                cursor=cursor,
            )
        except ValueError as exc:
            raise invalid("query.cursor", str(exc)) from None
    return IncidentPage(
        incidents=[IncidentSummary.model_validate(_summary(i)) for i in page.incidents],
        total=page.total,
        limit=limit,
        offset=offset,
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{incident_id}",
    response_model=IncidentDetail,
    responses=error_responses(404, 503),
    summary="An incident and its timeline",
)
def get_incident(incident_id: str, state: StateDep) -> IncidentDetail:
    """One incident with its timeline (alert transitions, escalations, vendor notes,
    operator notes)."""
    with _session(state) as s:
        try:
            incident = read_incident(s.conn, incident_id)
        except IncidentNotFoundError:
            raise _not_found(s, incident_id) from None
    return IncidentDetail.model_validate(incident.to_json())


@router.post(
    "/{incident_id}/notes",
    response_model=TimelineEntryInfo,
    status_code=201,
    responses=error_responses(404, 503),
    summary="Add a note to an incident",
)
def post_note(incident_id: str, request: NoteRequest, state: StateDep) -> TimelineEntryInfo:
    """Add an operator note to the timeline; ``public`` notes are the status page's updates."""
    with _session(state) as s:
        try:
            entry = add_note(s, incident_id, request.text, author=request.by, public=request.public)
        except NoteError as exc:
            raise invalid(f"body.{exc.field}", exc.problem) from None
        except IncidentNotFoundError:
            raise _not_found(s, incident_id) from None
    return _entry(entry)


def _postmortem_errors(state: ServiceState, incident_id: str, exc: Exception) -> ApiError:
    if isinstance(exc, IncidentNotFoundError):
        with _session(state) as s:
            return _not_found(s, incident_id)
    if isinstance(exc, IncidentOpenError):
        return ApiError(409, "incident_open", str(exc), {"field": "path.incident_id"})
    if isinstance(exc, RevisionConflictError):
        return ApiError(
            409,
            "revision_conflict",
            str(exc),
            {"field": "body.revision", "expected": exc.expected, "actual": exc.actual},
        )
    if isinstance(exc, alert_state.AlertDatabaseError):
        return alert_database_unavailable(exc)
    assert isinstance(exc, NoteError)
    return invalid(f"body.{exc.field}", exc.problem)


# The post-mortem routes pass the settings, not a session: a draft's store queries then
# run without holding the process's alert-database connection (other reads go on).


@router.get(
    "/{incident_id}/postmortem",
    response_model=PostMortemInfo,
    responses=error_responses(404, 409, 503),
    summary="A resolved incident's post-mortem",
)
def read_postmortem(incident_id: str, state: StateDep) -> PostMortemInfo:
    """The post-mortem (its draft generated on first read); 409 while the incident is open."""
    try:
        return _postmortem(get_postmortem(state.settings, incident_id, store=state.store()))
    except (IncidentNotFoundError, IncidentOpenError, alert_state.AlertDatabaseError) as exc:
        raise _postmortem_errors(state, incident_id, exc) from None


@router.put(
    "/{incident_id}/postmortem",
    response_model=PostMortemInfo,
    responses=error_responses(404, 409, 503),
    summary="Save a post-mortem",
)
def write_postmortem(
    incident_id: str, request: PostMortemRequest, state: StateDep
) -> PostMortemInfo:
    """Save the post-mortem's text as the next revision (the draft is kept to diff)."""
    try:
        saved = save_postmortem(
            state.settings,
            incident_id,
            request.text,
            author=request.by,
            revision=request.revision,
            store=state.store(),
        )
    except (
        IncidentNotFoundError,
        IncidentOpenError,
        RevisionConflictError,
        NoteError,
        alert_state.AlertDatabaseError,
    ) as exc:
        raise _postmortem_errors(state, incident_id, exc) from None
    return _postmortem(saved)
