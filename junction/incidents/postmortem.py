"""Post-mortems: a markdown draft generated when an incident resolves, edited by operators.

The draft states the impact (affected services, the workflows that use them from the
dependency map, the failed workflow runs of the incident's time range from the metrics
store's ``workflow_runs``), the duration, the time to detect (first failing call or probe
of an affected service within the monitor window before the first alert -> the first
alert), the time to resolve (first alert -> last alert resolved) and the timeline.

It is generated on the first read after resolution and stored with ``revision`` 0; each
save is one more revision, and the draft is kept to diff the edits against. An incident
that reopens and resolves again gets a new draft (an unedited text follows it; an edited
one is kept).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from junction.alerting import state as alert_state
from junction.alerting.rules import format_duration
from junction.alerting.state import iso, utc
from junction.incidents.model import (
    MAX_POSTMORTEM_CHARS,
    Incident,
    IncidentOpenError,
    PostMortem,
    RevisionConflictError,
    check_text,
)
from junction.incidents.notes import MAX_AUTHOR_CHARS
from junction.incidents.reads import Source, read_incident, session
from junction.workflows.depmap import build_map

if TYPE_CHECKING:
    from junction.settings import Settings
    from junction.statedb import Connection, Row
    from junction.store import MetricsStore

log = logging.getLogger(__name__)

MAX_RUNS_LISTED = 20
"""Failed runs listed by name in a draft (all are counted)."""


@dataclass(frozen=True)
class FailedRun:
    """A failed workflow run in an incident's time range."""

    run_id: str
    workflow: str
    started_at: datetime
    error: str | None


@dataclass(frozen=True)
class PostMortemFacts:
    """The numbers of a post-mortem draft.

    Attributes:
        services: Affected services.
        workflows: Workflows that use any of them (from the dependency map).
        failed_runs: Failed runs between the first failure (or alert) and resolution
            of those workflows, or that called an affected service.
        first_failure_at: First failing call or probe of an affected service within the
            monitor window before the first alert (``None``: none recorded).
        first_alert_at: When the incident's first alert fired.
        resolved_at: When its last alert resolved.
    """

    services: tuple[str, ...]
    workflows: tuple[str, ...]
    failed_runs: tuple[FailedRun, ...]
    first_failure_at: datetime | None
    first_alert_at: datetime
    resolved_at: datetime

    @property
    def time_to_detect(self) -> timedelta | None:
        """First failure -> first alert."""
        if self.first_failure_at is None:
            return None
        return max(self.first_alert_at - self.first_failure_at, timedelta(0))

    @property
    def time_to_resolve(self) -> timedelta:
        """First alert -> resolution."""
        return max(self.resolved_at - self.first_alert_at, timedelta(0))

    @property
    def impact_duration(self) -> timedelta:
        """First failure (or first alert) -> resolution."""
        start = self.first_failure_at or self.first_alert_at
        return max(self.resolved_at - start, timedelta(0))


def _query(store: MetricsStore, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``sql``; a table with no segment yet has no rows."""
    try:
        frame = store.query(sql, params)
    except Exception as exc:  # DuckDB: the view does not exist until a first flush
        if "does not exist" in str(exc) or "No files found" in str(exc):
            return []
        raise
    return list(frame.itertuples(index=False, name=None))


def _ts(value: Any) -> datetime:
    when = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    return utc(when)


def gather_facts(
    incident: Incident, store: MetricsStore | None, *, lookback: timedelta
) -> PostMortemFacts:
    """The numbers of ``incident``'s post-mortem (see :class:`PostMortemFacts`).

    Args:
        incident: A resolved incident.
        store: The metrics store (``None``: no failures or runs are known).
        lookback: How far before the first alert a failure counts (the monitor window).
    """
    if incident.resolved_at is None:
        raise IncidentOpenError(f"incident {incident.id} is still open")
    services = list(incident.services)
    depmap = build_map()
    workflows = sorted(
        name
        for name, nodes in depmap.workflows.items()
        if any(s in incident.services for n in nodes for s in n.services)
    )
    first_failure: datetime | None = None
    runs: list[FailedRun] = []
    if store is not None:
        marks = ", ".join("?" for _ in services)
        window = [incident.started_at - lookback, incident.started_at]
        for table in ("calls", "probes"):
            rows = _query(
                store,
                f"SELECT min(ts) FROM {table} WHERE NOT ok AND service IN ({marks}) "
                "AND ts >= ? AND ts <= ?",
                [*services, *window],
            )
            if rows and rows[0][0] is not None and str(rows[0][0]) != "NaT":
                found = _ts(rows[0][0])
                first_failure = found if first_failure is None else min(first_failure, found)
        start = first_failure or incident.started_at
        span = [start, incident.resolved_at]
        called = {
            str(r[0])
            for r in _query(
                store,
                f"SELECT DISTINCT run_id FROM calls WHERE run_id IS NOT NULL "
                f"AND service IN ({marks}) AND ts >= ? AND ts <= ?",
                [*services, *span],
            )
        }
        for run_id, workflow, started_at, error in _query(
            store,
            "SELECT run_id, workflow, started_at, error FROM workflow_runs "
            "WHERE status = 'failed' AND started_at >= ? AND started_at <= ? "
            "ORDER BY started_at, run_id",
            span,
        ):
            if workflow in workflows or str(run_id) in called:
                text = None if error is None or str(error) == "nan" else str(error)
                runs.append(FailedRun(str(run_id), str(workflow), _ts(started_at), text))
    return PostMortemFacts(
        services=incident.services,
        workflows=tuple(workflows),
        failed_runs=tuple(runs),
        first_failure_at=first_failure,
        first_alert_at=incident.started_at,
        resolved_at=incident.resolved_at,
    )


def _span(delta: timedelta | None) -> str:
    if delta is None:
        return "unknown (no failing call or probe recorded before the first alert)"
    return f"{format_duration(delta)} ({delta.total_seconds():.0f} s)"


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_draft(incident: Incident, facts: PostMortemFacts) -> str:
    """The markdown draft of ``incident``'s post-mortem."""
    lines = [
        f"# Post-mortem: {incident.title}",
        "",
        f"- Incident: {incident.id} ({incident.severity})",
        f"- First alert: {iso(facts.first_alert_at)}",
        f"- Resolved: {iso(facts.resolved_at)}",
    ]
    if facts.first_failure_at is not None:
        lines.append(f"- First failure recorded: {iso(facts.first_failure_at)}")
    lines += [
        f"- Duration ({'first failure' if facts.first_failure_at else 'first alert'} to "
        f"resolution): {_span(facts.impact_duration)}",
        f"- Time to detect (first failure to first alert): {_span(facts.time_to_detect)}",
        f"- Time to resolve (first alert to resolution): {_span(facts.time_to_resolve)}",
        "",
        "## Impact",
        "",
        f"- Affected services: {', '.join(facts.services)}",
        f"- Workflows using them: {', '.join(facts.workflows) or 'none'}",
        f"- Failed workflow runs in the incident's time range: {len(facts.failed_runs)}",
    ]
    for run in facts.failed_runs[:MAX_RUNS_LISTED]:
        error = f": {_one_line(run.error)}" if run.error else ""
        lines.append(f"  - {iso(run.started_at)} {run.workflow} run {run.run_id}{error}")
    if len(facts.failed_runs) > MAX_RUNS_LISTED:
        lines.append(f"  - ... and {len(facts.failed_runs) - MAX_RUNS_LISTED} more")
    lines += ["", "## Timeline", ""]
    for entry in incident.timeline:
        who = f" ({entry.author})" if entry.author else ""
        visibility = " [public]" if entry.public else ""
        lines.append(
            f"- {iso(entry.ts)} {entry.kind}{who}{visibility}: {_one_line(entry.text, 300)}"
        )
    lines += [
        "",
        "## Root cause",
        "",
        "_To be written._",
        "",
        "## What went well, what did not",
        "",
        "_To be written._",
        "",
        "## Follow-up actions",
        "",
        "- [ ] _To be written._",
        "",
    ]
    return "\n".join(lines)


def _from_row(row: Row) -> PostMortem:
    return PostMortem(
        incident_id=str(row["incident_id"]),
        text=str(row["text"]),
        generated=str(row["generated"]),
        revision=int(row["revision"]),
        generated_at=datetime.fromisoformat(row["generated_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        updated_by=row["updated_by"],
    )


def _stored(conn: Connection, incident_id: str) -> Row | None:
    row: Row | None = conn.execute(
        "SELECT * FROM incident_postmortems WHERE incident_id = ?", (incident_id,)
    ).fetchone()
    return row


def _current(source: Source, incident_id: str, store: MetricsStore | None) -> PostMortem:
    """The stored post-mortem, generated first when missing or out of date.

    The store is read outside the session: with settings as the source, other readers of
    incidents do not wait for a draft's queries.
    """
    with session(source) as s:
        incident = read_incident(s.conn, incident_id)
        if incident.resolved_at is None:
            raise IncidentOpenError(
                f"incident {incident_id} is still open: its post-mortem is drafted when it resolves"
            )
        target = iso(incident.resolved_at)
        row = _stored(s.conn, incident_id)
        if row is not None and row["generated_for"] == target:
            return _from_row(row)
        settings = s.settings
    lookback = timedelta(seconds=settings.monitor_window_seconds)
    draft = render_draft(incident, _facts_with_store(settings, incident, store, lookback))
    now = iso(datetime.now(UTC))
    with session(source, synced=False) as s, alert_state.transaction(s.conn):
        row = _stored(s.conn, incident_id)
        if row is None:
            s.conn.execute(
                "INSERT INTO incident_postmortems (incident_id, generated, generated_for, text,"
                " revision, generated_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?)",
                (incident_id, draft, target, draft, now, now),
            )
        elif row["generated_for"] != target:
            # Reopened and resolved again: a new draft; an operator's text is kept.
            s.conn.execute(
                "UPDATE incident_postmortems SET generated = ?, generated_for = ?, "
                "generated_at = ?, text = CASE WHEN revision = 0 THEN ? ELSE text END "
                "WHERE incident_id = ?",
                (draft, target, now, draft, incident_id),
            )
        row = _stored(s.conn, incident_id)
    assert row is not None
    return _from_row(row)


def _facts_with_store(
    settings: Settings, incident: Incident, store: MetricsStore | None, lookback: timedelta
) -> PostMortemFacts:
    if store is not None:
        return gather_facts(incident, store, lookback=lookback)
    # Function-level: pyarrow and DuckDB load only when a draft is generated.
    from junction.store import open_store

    own = open_store(settings)
    try:
        return gather_facts(incident, own, lookback=lookback)
    finally:
        own.close()


def get_postmortem(
    source: Source, incident_id: str, *, store: MetricsStore | None = None
) -> PostMortem:
    """The post-mortem of a resolved incident (its draft generated on first read).

    Args:
        source: Settings or an open alert database.
        incident_id: The incident.
        store: The metrics store (default: the one the settings name).

    Raises:
        IncidentNotFoundError: No incident has that id.
        IncidentOpenError: The incident is still open.
        AlertDatabaseError: The alert database is damaged or cannot be opened.
    """
    return _current(source, incident_id, store)


def save_postmortem(
    source: Source,
    incident_id: str,
    text: str,
    *,
    author: str,
    revision: int | None = None,
    store: MetricsStore | None = None,
) -> PostMortem:
    """Save an operator's post-mortem text as the next revision.

    Args:
        source: Settings or an open alert database.
        incident_id: The incident (resolved).
        text: The new text (markdown; at most :data:`MAX_POSTMORTEM_CHARS`).
        author: Who saves it.
        revision: The revision the edit started from; a different stored one is a
            conflict (``None``: save whatever is stored).
        store: The metrics store (for a draft not generated yet).

    Raises:
        NoteError: The text is empty or too long.
        RevisionConflictError: ``revision`` is not the stored one.
        IncidentNotFoundError: No incident has that id.
        IncidentOpenError: The incident is still open.
    """
    cleaned = check_text("text", text, MAX_POSTMORTEM_CHARS)
    who = check_text("author", author, MAX_AUTHOR_CHARS)
    _current(source, incident_id, store)
    with session(source, synced=False) as s, alert_state.transaction(s.conn):
        row = _stored(s.conn, incident_id)
        assert row is not None  # _current stored it
        if revision is not None and int(row["revision"]) != revision:
            raise RevisionConflictError(incident_id, revision, int(row["revision"]))
        s.conn.execute(
            "UPDATE incident_postmortems SET text = ?, revision = revision + 1, "
            "updated_at = ?, updated_by = ? WHERE incident_id = ?",
            (cleaned + "\n", iso(datetime.now(UTC)), who, incident_id),
        )
        row = _stored(s.conn, incident_id)
    assert row is not None
    return _from_row(row)
