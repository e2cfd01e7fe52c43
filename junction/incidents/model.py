"""What the incidents package returns: incidents, their timelines, post-mortems, errors."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from junction.alerting.rules import format_duration
from junction.alerting.state import iso

EntryKind = Literal[
    "firing",
    "severity",
    "acknowledged",
    "escalated",
    "suppressed",
    "resolved",
    "status_page",
    "note",
]
"""Kinds of timeline entries (alert transitions, vendor notes, operator notes)."""

ENTRY_KINDS: tuple[str, ...] = get_args(EntryKind)

MAX_NOTE_CHARS = 10_000
"""Longest operator note (characters)."""

MAX_POSTMORTEM_CHARS = 200_000
"""Longest post-mortem text (characters)."""


class IncidentNotFoundError(LookupError):
    """No incident has the id given (``str()`` names it)."""


class IncidentOpenError(ValueError):
    """The incident is still open: it has no post-mortem yet."""


class NoteError(ValueError):
    """A note or post-mortem text is empty or too long; ``field`` names the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.problem = message


class RevisionConflictError(ValueError):
    """A post-mortem edit was based on an older revision than the stored one."""

    def __init__(self, incident_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"post-mortem of {incident_id} is at revision {actual}, not {expected}: "
            "someone saved it meanwhile (reload, merge, save again)"
        )
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class TimelineEntry:
    """One line of an incident's timeline.

    Attributes:
        ts: When (UTC).
        kind: One of :data:`ENTRY_KINDS`.
        text: What happened (alert message, vendor note, operator note): untrusted text,
            escape it when shown.
        public: Shown on the public status page (only operator notes marked public).
        author: Who wrote a note, or acknowledged an alert.
        service: The service an alert entry is about.
    """

    ts: datetime
    kind: str
    text: str
    public: bool = False
    author: str | None = None
    service: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "ts": iso(self.ts),
            "kind": self.kind,
            "text": self.text,
            "public": self.public,
            "author": self.author,
            "service": self.service,
        }


@dataclass(frozen=True)
class Incident:
    """Alerts of related services grouped into one incident (see :mod:`junction.incidents`).

    Attributes:
        id: Stable id: the alert database's instance and the id of its first alert
            (``3fa2b1c0-i12``).
        title: One line ("okta down (+2 related services)"); names internal services.
        services: Affected services, sorted.
        root_service: The service of the first alert.
        severity: The highest severity any of its alerts reached (warning, critical).
        state: ``open`` while any alert is unresolved, else ``resolved``.
        started_at: When the first alert fired.
        resolved_at: When the last alert resolved (``None`` while open).
        timeline: Entries, oldest first.
        alerts: Ids of its alerts.
    """

    id: str
    title: str
    services: tuple[str, ...]
    root_service: str
    severity: str
    state: str
    started_at: datetime
    resolved_at: datetime | None
    timeline: list[TimelineEntry] = field(default_factory=list)
    alerts: tuple[int, ...] = ()

    @property
    def public_updates(self) -> list[TimelineEntry]:
        """The entries the public status page shows (notes marked public)."""
        return [e for e in self.timeline if e.public]

    @property
    def is_open(self) -> bool:
        """Whether any of its alerts is unresolved."""
        return self.state == "open"

    def duration(self, now: datetime | None = None) -> timedelta:
        """From the first alert to resolution (to ``now`` while open)."""
        end = self.resolved_at or now or datetime.now(UTC)
        return max(end - self.started_at, timedelta(0))

    def duration_text(self, now: datetime | None = None) -> str:
        """:meth:`duration` as people read it (``1h5m``), for the CLI and the pages."""
        return format_duration(self.duration(now))

    def to_json(self, *, timeline: bool = True) -> dict[str, Any]:
        """JSON-ready dict (``junction incidents show --json``)."""
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "services": list(self.services),
            "root_service": self.root_service,
            "severity": self.severity,
            "state": self.state,
            "started_at": iso(self.started_at),
            "resolved_at": iso(self.resolved_at) if self.resolved_at else None,
            "duration_seconds": round(self.duration().total_seconds(), 3),
            "alerts": list(self.alerts),
        }
        if timeline:
            out["timeline"] = [e.to_json() for e in self.timeline]
        return out


@dataclass(frozen=True)
class PostMortem:
    """An incident's post-mortem: the generated draft and the operator's text.

    Attributes:
        incident_id: The incident.
        text: The current text (markdown; the draft until an operator edits it).
        generated: The generated draft (kept to diff the edits against).
        revision: Edits saved so far (0: the draft as generated).
        generated_at: When the draft was generated.
        updated_at: Last save.
        updated_by: Who saved last (``None`` for the draft).
    """

    incident_id: str
    text: str
    generated: str
    revision: int
    generated_at: datetime
    updated_at: datetime
    updated_by: str | None = None

    @property
    def edited(self) -> bool:
        """Whether an operator changed the draft."""
        return self.text != self.generated

    def diff(self) -> str:
        """Unified diff from the generated draft to the current text ('' when unchanged)."""
        return "".join(
            difflib.unified_diff(
                self.generated.splitlines(keepends=True),
                self.text.splitlines(keepends=True),
                fromfile="generated",
                tofile=f"revision {self.revision}",
            )
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "incident_id": self.incident_id,
            "text": self.text,
            "generated": self.generated,
            "revision": self.revision,
            "edited": self.edited,
            "generated_at": iso(self.generated_at),
            "updated_at": iso(self.updated_at),
            "updated_by": self.updated_by,
        }


def check_text(field: str, text: str, limit: int) -> str:
    """``text`` stripped of surrounding whitespace, or :class:`NoteError` naming ``field``."""
    if not isinstance(text, str):
        raise NoteError(field, "must be text")
    cleaned = text.strip()
    if not cleaned:
        raise NoteError(field, "must not be empty")
    if len(cleaned) > limit:
        raise NoteError(field, f"is {len(cleaned)} characters long; the limit is {limit}")
    if "\x00" in cleaned:
        raise NoteError(field, "must not contain NUL characters")
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates ("\ud800") cannot be stored
        raise NoteError(field, "must be valid Unicode text") from None
    return cleaned
