"""``/api/v2/alerts``: list, acknowledge, silence and unsilence alerts.

The same functions as ``junction alerts list|ack|silence|silences|unsilence`` and the
dashboard's ``/alerts`` (:mod:`junction.alerting.actions`, :mod:`junction.alerting.alerts`,
:mod:`junction.alerting.silences`), on the same alert
database (``<JUNCTION_HOME>/alerts.db``) the monitor reads: an acknowledgement or a
silence made here takes effect at its next evaluation. Acknowledgements are mirrored to
the metrics store's alert history as the CLI's are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StrictBool

from junction.alerting import state as alert_state
from junction.alerting.actions import SilenceInputError, acknowledge_alert
from junction.alerting.actions import create_silence as create_silence_checked
from junction.alerting.alerts import (
    Alert,
    AlertNotFoundError,
    AlertResolvedError,
    list_alerts,
    page_alerts,
)
from junction.alerting.silences import Silence, list_silences, remove_silence
from junction.service.deps import StateDep, require_token
from junction.service.errors import ApiError
from junction.service.lookups import (
    alert_database_unavailable,
    error_responses,
    invalid,
    unknown,
)
from junction.service.state import ServiceState
from junction.statedb import Connection

router = APIRouter(
    prefix="/api/v2/alerts",
    tags=["alerts"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)


class AlertInfo(BaseModel):
    """One alert: one fingerprint's episode from firing to resolved."""

    id: int
    fingerprint: str
    service: str
    rule: str
    severity: str
    state: str
    group: str
    suppressed_by: str | None
    silenced_by: str | None
    inhibited_by: str | None = None  # the alert whose cause this one is a symptom of
    message: str
    value: float | None
    labels: dict[str, str]
    annotation: str | None
    started_at: datetime
    updated_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    resolved_at: datetime | None


class AlertList(BaseModel):
    """Alerts, oldest first, a page at a time."""

    alerts: list[AlertInfo]
    limit: int = Field(description="Page size asked for.")
    next_cursor: str | None = Field(
        None, description="Pass as cursor for the next page (null: this is the last)."
    )


MAX_ALERT_PAGE = 1000
"""Largest page of ``GET /api/v2/alerts``."""


class AckRequest(BaseModel):
    """Who acknowledges."""

    by: str = Field("api", min_length=1, max_length=200, description="Who acknowledges.")


class AckResult(BaseModel):
    """The alert acknowledged, then the others of its incident acknowledged with it."""

    acknowledged: list[AlertInfo]


class SilenceRequest(BaseModel):
    """A silence: matchers (at least one) and how long."""

    duration: str = Field(description="How long: 30m, 2h, 1d.", examples=["2h"])
    service: str | None = Field(None, description="Service to silence.")
    rule: str | None = Field(None, description="Rule to silence.")
    labels: dict[str, str] = Field(default_factory=dict, description="Label matchers.")
    comment: str = Field("", max_length=2000, description="Why.")
    by: str = Field("api", min_length=1, max_length=200, description="Who.")
    starts_at: datetime | None = Field(
        None,
        description="A later start (a scheduled maintenance); default and past times: now. "
        "At most a year ahead.",
    )
    public: StrictBool = Field(
        False, description="Show it, with its comment, as maintenance on the status page."
    )


class SilenceInfo(BaseModel):
    """A silence."""

    id: str
    service: str | None
    rule: str | None
    labels: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    public: bool = False
    removed_at: datetime | None = None


class SilenceList(BaseModel):
    """Silences, oldest first."""

    silences: list[SilenceInfo]


def _alert(a: Alert) -> AlertInfo:
    return AlertInfo.model_validate(a.to_json())


def _silence(s: Silence) -> SilenceInfo:
    return SilenceInfo.model_validate({**s.to_json(), "removed_at": s.deleted_at})


@contextmanager
def _connect(state: ServiceState) -> Iterator[Connection]:
    """The alert database; a damaged one is a 503 naming ``junction alerts reset``."""
    try:
        conn = alert_state.connect(alert_state.db_path(state.settings))
    except alert_state.AlertDatabaseError as exc:
        raise alert_database_unavailable(exc) from None
    try:
        yield conn
    finally:
        conn.close()


@router.get("", response_model=AlertList, responses=error_responses(503), summary="List alerts")
def get_alerts(
    state: StateDep,
    include_resolved: Annotated[bool, Query(alias="all", description="Resolved ones too.")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_ALERT_PAGE, description="Page size.")] = 500,
    cursor: Annotated[
        str | None, Query(max_length=40, description="The next_cursor of the previous page.")
    ] = None,
) -> AlertList:
    """Unresolved alerts (``?all=true``: resolved ones too), oldest first, paged
    (``next_cursor`` -> ``cursor``)."""
    after = 0
    if cursor is not None:
        if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
            raise invalid("query.cursor", f"{cursor!r} is not a cursor this endpoint gave")
        after = int(cursor)
    with _connect(state) as conn:
        alerts, last = page_alerts(
            conn, include_resolved=include_resolved, after_id=after, limit=limit
        )
    return AlertList(
        alerts=[_alert(a) for a in alerts],
        limit=limit,
        next_cursor=None if last is None else str(last),
    )


@router.post(
    "/{ref}/ack",
    response_model=AckResult,
    responses=error_responses(404, 409, 503),
    summary="Acknowledge an alert",
)
def ack_alert(ref: str, state: StateDep, request: AckRequest | None = None) -> AckResult:
    """Acknowledge an alert (by id or fingerprint ``service:rule``) and the rest of its
    incident: stops escalation and repeats."""
    by = (request or AckRequest()).by
    with _connect(state) as conn:
        try:
            done = acknowledge_alert(conn, ref, by, datetime.now(UTC), history=state.store())
        except AlertNotFoundError:
            known = [a.fingerprint for a in list_alerts(conn, include_resolved=True)]
            raise unknown("alert", ref, known, field="path.ref") from None
        except AlertResolvedError as exc:
            raise ApiError(409, "alert_resolved", str(exc.args[0]), {"field": "path.ref"}) from None
        return AckResult(acknowledged=[_alert(a) for a in done])


@router.get(
    "/silences", response_model=SilenceList, responses=error_responses(503), summary="List silences"
)
def get_silences(
    state: StateDep,
    include_expired: Annotated[
        bool, Query(alias="all", description="Expired and removed ones too.")
    ] = False,
) -> SilenceList:
    """Active silences (``?all=true``: expired and removed ones too)."""
    with _connect(state) as conn:
        found = list_silences(conn, datetime.now(UTC), include_expired=include_expired)
    return SilenceList(silences=[_silence(s) for s in found])


@router.post(
    "/silences",
    response_model=SilenceInfo,
    status_code=201,
    responses=error_responses(503),
    summary="Silence matching alerts",
)
def create_silence(request: SilenceRequest, state: StateDep) -> SilenceInfo:
    """Silence matching alerts for a while: no firing, escalation or repeat messages (the
    resolved message still reaches whoever was told)."""
    with _connect(state) as conn:
        try:
            created = create_silence_checked(
                conn,
                now=datetime.now(UTC),
                duration=request.duration,
                service=request.service,
                rule=request.rule,
                labels=request.labels,
                created_by=request.by,
                comment=request.comment,
                starts_at=request.starts_at,
                public=request.public,
            )
        except SilenceInputError as exc:
            raise invalid(f"body.{exc.field}" if exc.field else "body", exc.message) from None
    return _silence(created)


@router.delete(
    "/silences/{silence_id}",
    response_model=SilenceInfo,
    responses=error_responses(404, 503),
    summary="End a silence now",
)
def delete_silence(silence_id: str, state: StateDep) -> SilenceInfo:
    """End a silence now (it stays listed with ``?all=true``)."""
    with _connect(state) as conn:
        try:
            return _silence(remove_silence(conn, silence_id, datetime.now(UTC)))
        except LookupError:
            known = [s.id for s in list_silences(conn, datetime.now(UTC), include_expired=True)]
            raise unknown("silence", silence_id, known, field="path.silence_id") from None
