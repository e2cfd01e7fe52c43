"""Operator notes on incidents (internal, or public: shown on the status page)."""

from __future__ import annotations

from datetime import UTC, datetime

from junction.alerting import state as alert_state
from junction.alerting.state import iso, utc
from junction.incidents.model import (
    MAX_NOTE_CHARS,
    IncidentNotFoundError,
    NoteError,
    TimelineEntry,
    check_text,
)
from junction.incidents.reads import Source, session

MAX_AUTHOR_CHARS = 200
"""Longest author name."""


def add_note(
    source: Source,
    incident_id: str,
    text: str,
    *,
    author: str,
    public: bool = False,
    now: datetime | None = None,
) -> TimelineEntry:
    """Add an operator note to an incident's timeline.

    Each note is one ``INSERT`` in its own transaction: notes written at once from several
    processes are all kept, none twice.

    Args:
        source: Settings or an open alert database.
        incident_id: The incident.
        text: The note (surrounding whitespace dropped; at most :data:`MAX_NOTE_CHARS`).
        author: Who writes it.
        public: Show it on the public status page as an update.
        now: Its time (default: now).

    Returns:
        The note's timeline entry.

    Raises:
        NoteError: The text is empty or too long (``field`` is ``text``), or the author is.
        IncidentNotFoundError: No incident has that id.
        AlertDatabaseError: The alert database is damaged or cannot be opened.
    """
    cleaned = check_text("text", text, MAX_NOTE_CHARS)
    who = check_text("author", author, MAX_AUTHOR_CHARS)
    at = utc(now or datetime.now(UTC))
    with session(source) as s, alert_state.transaction(s.conn):
        known = s.conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if known is None:
            raise IncidentNotFoundError(f"no incident with id {incident_id!r}")
        s.conn.execute(
            "INSERT INTO incident_notes (incident_id, ts, author, text, public) "
            "VALUES (?, ?, ?, ?, ?)",
            (incident_id, iso(at), who, cleaned, int(bool(public))),
        )
    return TimelineEntry(ts=at, kind="note", text=cleaned, public=bool(public), author=who)


__all__ = ["MAX_AUTHOR_CHARS", "NoteError", "add_note"]
