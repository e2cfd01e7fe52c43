"""What an operator does to alerts: acknowledge, silence. One implementation for the CLI
(``junction alerts ack|silence``), the API (``/api/v2/alerts``) and the dashboard
(``/alerts``), so the three cannot check or record differently.

Each caller turns the errors into its own form: :class:`SilenceInputError` names the
field at fault (``duration``, ``service``, ``rule``, ``starts_at``, or ``None`` for the
request as a whole), which the CLI shows as its option (``--for``) and the API as
``body.<field>``; acknowledging raises :class:`~junction.alerting.alerts.AlertNotFoundError`
or :class:`~junction.alerting.alerts.AlertResolvedError`. Ending a silence is
:func:`junction.alerting.silences.remove_silence` itself.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Unpack

from integrations.catalog import load_catalog
from integrations.yamlconfig import did_you_mean
from junction.alerting import state
from junction.alerting.alerts import Alert, acknowledge
from junction.alerting.rules import SILENCEABLE_RULES, parse_duration
from junction.alerting.silences import Silence, SilenceFields, add_silence
from junction.statedb import Connection
from junction.store import MetricsStore

MAX_START_AHEAD = timedelta(days=366)
"""How far ahead a silence may be scheduled to start."""


class SilenceInputError(ValueError):
    """A silence request that cannot be made as given.

    Args:
        field: What is wrong (``duration``, ``service``, ``rule``, ``starts_at``), or
            ``None`` for the request as a whole (no matcher at all).
        message: One line saying what and why.
    """

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def acknowledge_alert(
    conn: Connection,
    ref: str,
    by: str,
    now: datetime,
    *,
    history: MetricsStore | Path | None = None,
) -> list[Alert]:
    """Acknowledge the alert ``ref`` (id or fingerprint) and the rest of its incident, then
    mirror the transitions to the metrics store's alert history.

    The mirroring is best effort: the acknowledgement is done and the monitor exports what
    is missing at its next evaluation.

    Args:
        conn: The alert database.
        ref: Alert id or fingerprint (``service:rule``).
        by: Who acknowledges.
        now: When.
        history: The metrics store (or its directory, opened and closed here) receiving
            the transitions; ``None``: left to the monitor.

    Returns:
        The alert ``ref`` names first, then the others acknowledged with it.

    Raises:
        AlertNotFoundError: No alert with that id or fingerprint.
        AlertResolvedError: It is resolved already.
    """
    done = acknowledge(conn, ref, by, now)
    if history is not None:
        with contextlib.suppress(Exception):
            if isinstance(history, MetricsStore):
                state.export_history(conn, history, wall=time.time())
            else:
                with MetricsStore(history) as store:
                    state.export_history(conn, store, wall=time.time())
    return done


def check_silence(
    duration: str,
    *,
    service: str | None,
    rule: str | None,
    now: datetime,
    starts_at: datetime | None = None,
) -> timedelta:
    """Check a silence's duration, service, rule and start; returns the duration.

    Raises:
        SilenceInputError: The first problem found, with its field.
    """
    try:
        delta = parse_duration(duration)
    except ValueError as exc:
        raise SilenceInputError("duration", str(exc)) from None
    if rule is not None and rule not in SILENCEABLE_RULES:
        raise SilenceInputError(
            "rule",
            f"unknown rule {rule!r}{did_you_mean(rule, SILENCEABLE_RULES)} "
            f"(expected one of: {', '.join(SILENCEABLE_RULES)})",
        )
    if service is not None:
        catalog = load_catalog()
        if service not in catalog:
            raise SilenceInputError(
                "service",
                f"unknown service {service!r}{did_you_mean(service, catalog.names)}",
            )
    if starts_at is not None and state.utc(starts_at) > state.utc(now) + MAX_START_AHEAD:
        raise SilenceInputError("starts_at", "must be at most a year ahead")
    return delta


def create_silence(
    conn: Connection,
    *,
    now: datetime,
    duration: str,
    **fields: Unpack[SilenceFields],
) -> Silence:
    """Check a silence (:func:`check_silence`), then create it: the arguments of
    :func:`~junction.alerting.silences.add_silence`, with ``duration`` as written
    (``30m``, ``2h``, ``1d``).

    Raises:
        SilenceInputError: Bad input (nothing was created).
    """
    delta = check_silence(
        duration,
        service=fields.get("service"),
        rule=fields.get("rule"),
        now=now,
        starts_at=fields.get("starts_at"),
    )
    try:
        return add_silence(conn, now=now, duration=delta, **fields)
    except ValueError as exc:  # no matcher at all, or a non-positive duration
        field = "duration" if "duration" in str(exc) else None
        raise SilenceInputError(field, str(exc)) from None


__all__ = [
    "MAX_START_AHEAD",
    "SilenceInputError",
    "acknowledge_alert",
    "check_silence",
    "create_silence",
]
