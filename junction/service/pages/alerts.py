"""``/alerts``: active and recent alerts, their escalation, what suppressed or silenced
them; acknowledge, silence and unsilence.

The forms post here (CSRF-checked) and call the functions ``junction alerts ack|silence|
unsilence`` and ``/api/v2/alerts`` call (:mod:`junction.alerting.actions`,
:func:`~junction.alerting.silences.remove_silence`) on the same alert database, then
redirect back to the page with one line saying what was done or why nothing was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from integrations.catalog import load_catalog
from junction.alerting import state as alert_state
from junction.alerting.actions import SilenceInputError, acknowledge_alert, create_silence
from junction.alerting.alerts import Alert, AlertNotFoundError, AlertResolvedError
from junction.alerting.config import AlertConfigError, load_settings_config
from junction.alerting.evaluation import Group
from junction.alerting.model import AlertState, Severity
from junction.alerting.rules import SILENCEABLE_RULES, EscalationPolicy, format_duration
from junction.alerting.silences import Silence, list_silences, remove_silence
from junction.service.deps import StateDep
from junction.service.pages.flash import flash, see_other, take_flashes
from junction.service.state import ServiceState
from junction.service.web import CsrfDep, PageDep, render
from junction.statedb import Connection

router = APIRouter(include_in_schema=False)

PAGE = "/alerts"
ACTOR = "dashboard"
"""Who acknowledges or silences from the dashboard (its login is the one API token)."""

RECENT = timedelta(days=7)
"""Resolved alerts shown: those resolved this recently."""

RECENT_MAX = 50
"""At most this many resolved alerts shown."""

MAX_COMMENT = 2000
"""Longest silence comment (as the API's)."""


@dataclass(frozen=True)
class AlertRow:
    """An alert as the page shows it.

    Attributes:
        alert: The alert.
        escalation: Its incident's escalation state in words (``level 1 of 2, next in
            4m``), or None when no escalation policy applies.
    """

    alert: Alert
    escalation: str | None


@dataclass(frozen=True)
class AlertsView:
    """Everything the page shows."""

    active: list[AlertRow]
    recent: list[AlertRow]
    silences: list[Silence]
    services: list[str]
    rules: tuple[str, ...]
    escalates: bool


def escalation_note(alert: Alert, group: Group | None, policy: EscalationPolicy) -> str | None:
    """The escalation state of ``alert``'s incident in words.

    Escalation runs on engine time (time the monitor was evaluating), so "next in" is how
    long it is while the monitor keeps running.
    """
    if alert.state is AlertState.RESOLVED or group is None:
        return None
    if policy.after is None or not policy.levels:
        return f"level {group.level}" if group.level else None
    levels = len(policy.levels)
    where = f"level {group.level} of {levels}"
    if alert.state is AlertState.ACKNOWLEDGED:
        return f"{where}; stopped (acknowledged)"
    if alert.silenced_by:
        return f"{where}; held (silenced)"
    if alert.severity is not Severity.CRITICAL:
        return f"{where}; only critical alerts escalate"
    if group.level >= levels:
        return f"{where}; at the last level"
    due = policy.after.total_seconds() * (group.level + 1) - group.esc_s
    return f"{where}; next in {format_duration(timedelta(seconds=max(due, 1)))}"


def _groups(conn: Connection, keys: set[str]) -> dict[str, Group]:
    if not keys:
        return {}
    marks = ",".join("?" * len(keys))
    rows = conn.execute(f"SELECT * FROM groups WHERE key IN ({marks})", sorted(keys))
    return {g.key: g for g in map(Group.from_row, rows)}


def alerts_view(conn: Connection, policy: EscalationPolicy, now: datetime) -> AlertsView:
    """What the page shows, read from the alert database.

    Args:
        conn: The alert database.
        policy: The escalation policy in force.
        now: The present (what counts as recent).
    """
    # Unresolved ones and those resolved recently: the table keeps every alert ever.
    rows = conn.execute(
        "SELECT * FROM alerts WHERE state != 'resolved' OR resolved_at >= ? ORDER BY id",
        (alert_state.iso(now - RECENT),),
    )
    alerts = [Alert.from_row(r) for r in rows]
    groups = _groups(conn, {a.group_key for a in alerts if a.state is not AlertState.RESOLVED})
    active = [
        AlertRow(a, escalation_note(a, groups.get(a.group_key), policy))
        for a in alerts
        if a.state is not AlertState.RESOLVED
    ]
    active.sort(key=lambda r: (-r.alert.severity.rank, r.alert.started_at))
    recent = sorted(
        (
            a
            for a in alerts
            if a.state is AlertState.RESOLVED and a.resolved_at and now - a.resolved_at <= RECENT
        ),
        key=lambda a: a.resolved_at or a.updated_at,
        reverse=True,
    )[:RECENT_MAX]
    return AlertsView(
        active=active,
        recent=[AlertRow(a, None) for a in recent],
        silences=list_silences(conn, now),
        services=load_catalog().names,
        rules=SILENCEABLE_RULES,
        escalates=policy.after is not None and bool(policy.levels),
    )


class AlertDbUnavailable(Exception):
    """The alert database cannot be opened (its message names ``junction alerts reset``)."""


@contextmanager
def _connect(state: ServiceState) -> Iterator[Connection]:
    try:
        conn = alert_state.connect(alert_state.db_path(state.settings))
    except alert_state.AlertDatabaseError as exc:
        raise AlertDbUnavailable(str(exc)) from None
    try:
        yield conn
    finally:
        conn.close()


def _policy(state: ServiceState) -> EscalationPolicy:
    """The configured escalation policy (none when the alerting file is invalid: the
    monitor refuses to start with it, and `junction alerts check-config` says why)."""
    try:
        return load_settings_config(state.settings).escalation
    except AlertConfigError:
        return EscalationPolicy()


@router.get(PAGE, response_class=HTMLResponse)
def alerts_page(request: Request, state: StateDep, _session: PageDep) -> HTMLResponse:
    """Active and recent alerts, silences, and the forms acting on them."""
    flashes = take_flashes(request)
    try:
        with _connect(state) as conn:
            view = alerts_view(conn, _policy(state), datetime.now(UTC))
    except AlertDbUnavailable as exc:
        return render(
            request,
            "alerts.html",
            {"view": None, "problem": str(exc), "flashes": flashes},
            active="alerts",
            status_code=503,
        )
    return render(request, "alerts.html", {"view": view, "flashes": flashes}, active="alerts")


@router.post(f"{PAGE}/{{ref}}/ack")
def ack(
    request: Request, ref: str, state: StateDep, _session: PageDep, _csrf: CsrfDep
) -> RedirectResponse:
    """Acknowledge an alert and the rest of its incident (as ``junction alerts ack``)."""
    try:
        with _connect(state) as conn:
            done = acknowledge_alert(conn, ref, ACTOR, datetime.now(UTC), history=state.store())
    except (AlertNotFoundError, AlertResolvedError, AlertDbUnavailable) as exc:
        flash(request, str(exc.args[0]), "error")
        return see_other(PAGE)
    alert, others = done[0], done[1:]
    more = f" and {len(others)} more of its incident" if others else ""
    flash(request, f"acknowledged alert {alert.id} ({alert.fingerprint}){more}")
    return see_other(PAGE)


@router.post(f"{PAGE}/silences")
def silence(
    request: Request,
    state: StateDep,
    _session: PageDep,
    _csrf: CsrfDep,
    duration: Annotated[str, Form()] = "",
    service: Annotated[str, Form()] = "",
    rule: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    public: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Silence matching alerts for a while (as ``junction alerts silence``)."""
    if len(comment) > MAX_COMMENT:
        flash(request, f"nothing silenced: comment: at most {MAX_COMMENT} characters", "error")
        return see_other(PAGE)
    try:
        with _connect(state) as conn:
            created = create_silence(
                conn,
                now=datetime.now(UTC),
                duration=duration.strip(),
                service=service.strip() or None,
                rule=rule.strip() or None,
                created_by=ACTOR,
                comment=comment,
                public=bool(public),
            )
    except SilenceInputError as exc:
        prefix = f"{exc.field}: " if exc.field else ""
        flash(request, f"nothing silenced: {prefix}{exc.message}", "error")
        return see_other(PAGE)
    except AlertDbUnavailable as exc:
        flash(request, str(exc), "error")
        return see_other(PAGE)
    what = " ".join(p for p in (created.service, created.rule) if p) or "matching alerts"
    flash(
        request,
        f"silence {created.id} on {what} until "
        f"{created.ends_at.isoformat(timespec='seconds')}"
        + (" (public)" if created.public else ""),
    )
    return see_other(PAGE)


@router.post(f"{PAGE}/silences/{{silence_id}}/remove")
def unsilence(
    request: Request, silence_id: str, state: StateDep, _session: PageDep, _csrf: CsrfDep
) -> RedirectResponse:
    """End a silence now (as ``junction alerts unsilence``)."""
    try:
        with _connect(state) as conn:
            remove_silence(conn, silence_id, datetime.now(UTC))
    except (LookupError, AlertDbUnavailable) as exc:
        flash(request, str(exc.args[0]), "error")
        return see_other(PAGE)
    flash(request, f"silence {silence_id} removed")
    return see_other(PAGE)
