"""Incidents: alerts of related services within a window, grouped, with a timeline,
operator notes and a post-mortem.

Design: incident *membership* is materialised, everything else is derived on read.
Each read (:func:`list_incidents`, :func:`get_incident`, a note, a post-mortem) first
syncs: the alerts written since the last sync are assigned, in id order, to incidents in
the alert database's own tables (:mod:`junction.incidents.schema`), inside one
``BEGIN IMMEDIATE`` transaction (WAL, 30 s busy timeout, as the alert state; on
PostgreSQL the state database's writer advisory lock, :mod:`junction.statedb`), with
cursors in ``meta``. An alert is assigned exactly once (its id is the primary key of
``incident_alerts``), never moved later, so two processes reading and writing at once
neither lose nor duplicate anything, and ids stay stable across restarts even when the
dependency map or the co-failures change. The alert history, escalations, vendor status
notes and suppressions are copied as they are seen (the alert state prunes its history
after a week and keeps only an alert's latest note); operator notes and post-mortems are
rows of their own.

Grouping (:mod:`junction.incidents.grouping`): an incident opens with its first alert,
takes in later alerts of related services (same alert-engine group, a dependency either
way from the alerting file or the dependency map, or one co-failure group) while open
and up to ``JUNCTION_INCIDENT_GROUP_WINDOW_SECONDS`` (600) after its last activity, and
is resolved when all its alerts are. Its id is ``<alert-db instance>-i<first alert id>``.

Timeline entries: alert transitions (firing, severity, acknowledged, resolved),
escalations, dependency suppression, vendor status notes and operator notes; only notes
marked public are public (the status page's updates). Post-mortems:
:mod:`junction.incidents.postmortem`.
"""

from __future__ import annotations

from junction.incidents.grouping import (
    Relations,
    clear_relations_cache,
    load_relations,
    relations_for,
    sync,
)
from junction.incidents.model import (
    ENTRY_KINDS,
    MAX_NOTE_CHARS,
    MAX_POSTMORTEM_CHARS,
    Incident,
    IncidentNotFoundError,
    IncidentOpenError,
    NoteError,
    PostMortem,
    RevisionConflictError,
    TimelineEntry,
)
from junction.incidents.notes import add_note
from junction.incidents.postmortem import (
    PostMortemFacts,
    gather_facts,
    get_postmortem,
    render_draft,
    save_postmortem,
)
from junction.incidents.reads import (
    IncidentPage,
    Session,
    Source,
    get_incident,
    incident_ids,
    list_incidents,
    page_incidents,
    read_incident,
    read_incidents,
    select_ids,
    session,
)

__all__ = [
    "ENTRY_KINDS",
    "MAX_NOTE_CHARS",
    "MAX_POSTMORTEM_CHARS",
    "Incident",
    "IncidentNotFoundError",
    "IncidentOpenError",
    "IncidentPage",
    "NoteError",
    "PostMortem",
    "PostMortemFacts",
    "Relations",
    "RevisionConflictError",
    "Session",
    "Source",
    "TimelineEntry",
    "add_note",
    "clear_relations_cache",
    "gather_facts",
    "get_incident",
    "get_postmortem",
    "incident_ids",
    "list_incidents",
    "load_relations",
    "page_incidents",
    "read_incident",
    "read_incidents",
    "relations_for",
    "render_draft",
    "save_postmortem",
    "select_ids",
    "session",
    "sync",
]
