"""What a log search asks for: :class:`LogQuery`, built from what a user typed by
:func:`parse_query`, and the opaque cursor of a page (:func:`encode_cursor`).

Every input is checked when the query is built, and a bad one is a
:class:`LogQueryError` naming it (``since``, ``status``, ``cursor``...), so the CLI and the
API word the same problem the same way. :mod:`junction.logsearch` runs the query.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from integrations.redaction import redact
from junction.durations import parse_since

Kind = Literal["all", "calls", "alerts", "workflows"]
"""Which history to search (``--kind``)."""
ItemKind = Literal["call", "alert", "workflow"]
"""What one result is."""

KINDS: tuple[str, ...] = get_args(Kind)
DEFAULT_LIMIT = 50
"""Results per page unless asked otherwise."""
MAX_LIMIT = 500
"""Most results one page may hold."""
MAX_TEXT = 500
"""Longest text searched for (characters)."""
MAX_SERVICES = 100
"""Most ``--service`` filters in one search."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LogQueryError(ValueError):
    """A search input that cannot be used; ``field`` names it (``since``, ``cursor``...).

    The message is redacted when the error is made (it may quote what was typed, a
    credential pasted by mistake included): callers show it as it is, once the configured
    secrets are registered (:func:`junction.logsearch.register_configured_secrets`).

    Args:
        field: The input at fault, as the query model names it.
        message: What is wrong with it (one line).
    """

    def __init__(self, field: str, message: str) -> None:
        message = redact(message)
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LogQuery:
    """One search (one page of it).

    Attributes:
        text: Case-insensitive substring, matched literally; empty matches every row.
        services: Only these services (calls and alerts of them, workflow runs that
            called them); empty: all.
        since: Only rows at or after this instant.
        until: Only rows before this instant.
        status: ``"error"`` (failed calls, unresolved alert transitions, runs not
            completed), ``"ok"`` (the opposite) or an HTTP status code (calls only).
        kind: ``calls``, ``alerts``, ``workflows`` or ``all``.
        limit: Results per page (1..:data:`MAX_LIMIT`).
        cursor: The ``next_cursor`` of the previous page.
    """

    text: str = ""
    services: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    status: str | int | None = None
    kind: Kind = "all"
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def __post_init__(self) -> None:
        # Every way of building a query is checked the same way (the bench builds them
        # directly, the CLI and the API through parse_query).
        if len(self.text) > MAX_TEXT:
            raise LogQueryError("text", f"longer than {MAX_TEXT} characters")
        if len(self.services) > MAX_SERVICES:
            raise LogQueryError("service", f"more than {MAX_SERVICES} services")
        if self.kind not in KINDS:
            raise LogQueryError("kind", f"{self.kind!r} is not one of {', '.join(KINDS)}")
        if isinstance(self.limit, bool) or not 1 <= self.limit <= MAX_LIMIT:
            raise LogQueryError("limit", f"must be between 1 and {MAX_LIMIT}")
        if self.status not in (None, "error", "ok") and not (
            isinstance(self.status, int) and 100 <= self.status <= 599
        ):
            raise LogQueryError("status", "must be error, ok or an HTTP status code (100-599)")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.tzinfo is None:  # naive: taken as UTC
                value = value.replace(tzinfo=UTC)
            try:
                object.__setattr__(self, name, value.astimezone(UTC))
            except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
                raise LogQueryError(name, "out of range") from None
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise LogQueryError("until", "must be later than since")
        if self.cursor is not None:
            decode_cursor(self.cursor)


# --------------------------------------------------------------------------- user input


def parse_time(text: str, field: str, now: datetime | None = None) -> datetime:
    """An instant from ``1h``/``30m``/``7d`` (that long before ``now``) or an ISO time
    (:func:`junction.durations.parse_since`).

    Args:
        text: What the user typed.
        field: Named in the error (``since``, ``until``).
        now: The reference instant (default: now).

    Raises:
        LogQueryError: Neither a duration nor an ISO 8601 time.
    """
    try:
        return parse_since(text, now)
    except ValueError as exc:
        raise LogQueryError(field, str(exc)) from None


def parse_status(text: str) -> str | int:
    """``error``, ``ok`` or an HTTP status code, from what the user typed.

    Raises:
        LogQueryError: Anything else.
    """
    raw = text.strip().lower()
    if raw in ("error", "ok"):
        return raw
    if raw.isdigit() and len(raw) == 3 and 100 <= int(raw) <= 599:
        return int(raw)
    raise LogQueryError("status", f"{text!r} is not error, ok or an HTTP status code")


def parse_query(
    text: str = "",
    *,
    services: Sequence[str] = (),
    since: str | None = None,
    until: str | None = None,
    status: str | None = None,
    kind: str = "all",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    now: datetime | None = None,
) -> LogQuery:
    """A :class:`LogQuery` from the strings a user typed (CLI options, query parameters).

    Raises:
        LogQueryError: The first input that cannot be used, named.
    """
    now = now or datetime.now(UTC)
    wanted = tuple(dict.fromkeys(s.strip() for s in services if s.strip()))
    if kind not in KINDS:
        raise LogQueryError("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    return LogQuery(
        text=text,
        services=wanted,
        since=parse_time(since, "since", now) if since else None,
        until=parse_time(until, "until", now) if until else None,
        status=parse_status(status) if status else None,
        kind=kind,  # type: ignore[arg-type]  # checked against KINDS above
        limit=limit,
        cursor=cursor or None,
    )


# --------------------------------------------------------------------------- cursors


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def encode_cursor(ts: datetime, row_id: str) -> str:
    """The opaque cursor of the position just after the row ``(ts, row_id)``."""
    raw = json.dumps([_micros(ts), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(ts, id)`` a cursor of :func:`encode_cursor` holds.

    Raises:
        LogQueryError: Not such a cursor.
    """
    bad = LogQueryError("cursor", "not a cursor returned by a previous page")
    if len(cursor) > 300:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, row_id = json.loads(raw)
        if type(micros) is not int or not isinstance(row_id, str):  # bool is no int here
            raise TypeError
        return _EPOCH + timedelta(microseconds=micros), row_id
    except (binascii.Error, ValueError, TypeError, OverflowError):
        raise bad from None


__all__ = [
    "DEFAULT_LIMIT",
    "KINDS",
    "MAX_LIMIT",
    "MAX_SERVICES",
    "MAX_TEXT",
    "ItemKind",
    "Kind",
    "LogQuery",
    "LogQueryError",
    "decode_cursor",
    "encode_cursor",
    "parse_query",
    "parse_status",
    "parse_time",
]
