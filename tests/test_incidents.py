"""Incidents over the real alert engine: grouping, stable ids, timelines, notes written
from two connections at once, and post-mortem numbers on a constructed history."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from junction.alerting import state as alert_state
from junction.alerting.engine import AlertEngine
from junction.incidents import (
    IncidentNotFoundError,
    IncidentOpenError,
    NoteError,
    Relations,
    RevisionConflictError,
    add_note,
    clear_relations_cache,
    gather_facts,
    get_incident,
    get_postmortem,
    list_incidents,
    load_relations,
    relations_for,
    save_postmortem,
    schema,
)
from junction.incidents.grouping import RELATIONS_TTL_SECONDS
from junction.settings import Settings
from junction.store import MetricsStore
from tests.alerting_helpers import at, config, failing, healthy, snap

DEPS = "dependencies: {gitlab: [okta], jira: [okta]}\ngrouping: {dependency_wait: 0s}\n"
RELATED = Relations.build([{"gitlab": ["okta"], "jira": ["okta"]}])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, incident_group_window_seconds=600)


def failed_call(service: str, ts: datetime, run_id: str | None = None) -> dict[str, Any]:
    """A failed ``calls`` row."""
    return {
        "ts": ts,
        "service": service,
        "action": "x",
        "method": "GET",
        "path": "/",
        "ok": False,
        "latency_ms": 5.0,
        "attempts": 1,
        "breaker_state": "closed",
        "source": "workflow" if run_id else "probe",
        "run_id": run_id,
    }


def new_engine(settings: Settings, extra: str = DEPS) -> AlertEngine:
    return AlertEngine(alert_state.db_path(settings), config(extra))


def incidents(settings: Settings, relations: Relations = RELATED) -> list:
    return list_incidents(settings, relations=relations)


def test_dependency_related_alerts_are_one_incident(settings: Settings) -> None:
    with new_engine(settings) as eng:
        eng.evaluate([snap("okta", at(0), down=True)], now=at(0))
        eng.evaluate(failing(["gitlab", "jira"], at(10)), now=at(10))
        eng.evaluate(failing(["app1"], at(20)), now=at(20))  # unrelated: its own
        instance = alert_state.instance_id(eng.conn)
        found = incidents(settings)
        assert [i.services for i in found] == [("app1",), ("gitlab", "jira", "okta")]
        okta = found[1]
        assert okta.id == f"{instance}-i1" and okta.root_service == "okta"
        assert okta.state == "open" and okta.severity == "critical"
        assert okta.title == "okta down (+2 related services)"
        kinds = [(e.kind, e.service) for e in okta.timeline]
        assert ("firing", "okta") in kinds and ("suppressed", "gitlab") in kinds
        eng.evaluate(healthy(["gitlab", "jira"], at(100)), now=at(100))
        eng.evaluate([snap("okta", at(120), down=False)], now=at(120))
        done = get_incident(settings, okta.id, relations=RELATED)
        assert done.state == "resolved" and done.resolved_at == at(120)
        assert done.duration() == timedelta(seconds=120)
        assert [e.kind for e in done.timeline].count("resolved") == len(done.alerts) == 5


def test_gap_window_joins_a_recent_incident_and_not_an_old_one(settings: Settings) -> None:
    with new_engine(settings, "") as eng:
        eng.evaluate(failing(["app1"], at(0)), now=at(0))
        eng.evaluate(healthy(["app1"], at(60)), now=at(60))
        eng.evaluate(failing(["app1"], at(600)), now=at(600))  # 540 s after: same
        eng.evaluate(healthy(["app1"], at(660)), now=at(660))
        eng.evaluate(failing(["app1"], at(1300)), now=at(1300))  # 640 s after: new
        eng.evaluate(failing(["app2"], at(1310)), now=at(1310))  # unrelated: new
        found = incidents(settings, Relations())
    # success_rate and health_score alerts each time
    assert [len(i.alerts) for i in found] == [2, 2, 4]
    assert found[2].state == "resolved" and found[1].state == "open"


def test_cofailure_groups_and_the_alerting_file_relate_services(
    settings: Settings, tmp_path: Path
) -> None:
    store = MetricsStore(settings.metrics_dir)
    # app3 and app4 fail together in four one-minute windows
    rows = [failed_call(service, at(w * 60)) for w in range(4) for service in ("app3", "app4")]
    store.append("calls", rows)
    store.flush()
    alerting = tmp_path / "alerting.yaml"
    alerting.write_text("dependencies: {zendesk: [stripe]}\n")
    relations = load_relations(
        settings.model_copy(update={"alerting_file": alerting}), store, now=at(300)
    )
    store.close()
    assert relations.related("app3", "app4") and relations.related("stripe", "zendesk")
    assert not relations.related("app3", "zendesk")
    assert relations.related("okta", "webex")  # the dependency map's edge (webex needs okta)


def test_ids_are_stable_and_assignments_never_move(settings: Settings) -> None:
    with new_engine(settings, "") as eng:
        eng.evaluate(failing(["app1"], at(0)), now=at(0))
        eng.evaluate(failing(["app2"], at(5)), now=at(5))
        first = [i.id for i in incidents(settings, Relations())]
        # Read again from another connection, with relations that would now merge them.
        conn = schema.connect(alert_state.db_path(settings))
        try:
            merged = Relations.build(cofailure_groups=[{"app1", "app2"}])
            again = [i.id for i in list_incidents(conn, relations=merged)]
        finally:
            conn.close()
        assert again == first and len(first) == 2
        add_note(settings, first[0], "looking", author="alice")
        eng.evaluate(failing(["app2"], at(9)), now=at(9))
        after = incidents(settings, Relations())
    assert [i.id for i in after] == first
    assert [e.text for e in after[0].timeline if e.kind == "note"] == ["looking"]


def test_timeline_has_acks_escalations_vendor_notes_and_public_notes(settings: Settings) -> None:
    extra = "escalation: {after: 1m, levels: [[boss]], max_step: 5m}\n"
    vendor = "GitLab reports: <b>degraded</b>"
    with new_engine(settings, extra) as eng:
        eng.evaluate(
            [snap("gitlab", at(0), rate=0.0, annotation=vendor)],
            now=at(0),
        )
        eng.evaluate([snap("gitlab", at(30), rate=0.0, annotation=vendor)], now=at(30))
        eng.evaluate([snap("gitlab", at(100), rate=0.0, annotation=vendor)], now=at(100))
        eng.ack("gitlab:success_rate", by="bob", now=at(110))
        (incident,) = incidents(settings)
        add_note(settings, incident.id, "Fix deployed", author="alice", public=True, now=at(120))
        add_note(settings, incident.id, "db host x1", author="alice", now=at(121))
        incident = get_incident(settings, incident.id, relations=RELATED)
    by_kind = {e.kind: e for e in incident.timeline}
    assert by_kind["status_page"].text == "GitLab reports: <b>degraded</b>"
    assert by_kind["escalated"].text == "escalated to level 1: boss"
    assert by_kind["acknowledged"].author == "bob"
    assert [e.text for e in incident.public_updates] == ["Fix deployed"]
    assert [e.ts for e in incident.timeline] == sorted(e.ts for e in incident.timeline)


def test_notes_from_two_connections_at_once_are_all_kept(settings: Settings) -> None:
    with new_engine(settings, "") as eng:
        eng.evaluate(failing(["app1"], at(0)), now=at(0))
        (incident,) = incidents(settings, Relations())
        errors: list[BaseException] = []

        def write(who: str) -> None:
            conn = schema.connect(alert_state.db_path(settings))
            try:
                for n in range(25):
                    add_note(conn, incident.id, f"{who} {n}", author=who)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=write, args=(w,)) for w in ("alice", "bob")]
        for t in threads:
            t.start()
        for second in range(1, 20):  # the engine writes meanwhile
            eng.evaluate(failing(["app1", "app2"], at(second)), now=at(second))
        for t in threads:
            t.join(30)
        assert not errors
        notes = [e.text for e in get_incident(settings, incident.id).timeline if e.kind == "note"]
    assert sorted(notes) == sorted(f"{w} {n}" for w in ("alice", "bob") for n in range(25))


def test_bad_notes_and_unknown_incidents_are_refused(settings: Settings) -> None:
    with new_engine(settings, "") as eng:
        eng.evaluate(failing(["app1"], at(0)), now=at(0))
    (incident,) = incidents(settings, Relations())
    for text, words in (("  \n", "must not be empty"), ("x" * 10_001, "the limit is 10000")):
        with pytest.raises(NoteError, match=f"text: .*{words}"):
            add_note(settings, incident.id, text, author="a")
    with pytest.raises(IncidentNotFoundError, match="nope"):
        add_note(settings, "nope", "hello", author="a")
    with pytest.raises(IncidentOpenError):
        get_postmortem(settings, incident.id)
    assert all(e.kind != "note" for e in get_incident(settings, incident.id).timeline)


def test_postmortem_numbers_on_a_constructed_history(settings: Settings) -> None:
    store = MetricsStore(settings.metrics_dir)
    probe = {"sweep_id": "s", "latency_ms": 5.0, "breaker_state": "closed"}
    store.append(
        "probes",
        [
            {**probe, "ts": at(-3600), "service": "okta", "ok": False},  # outside the window
            {**probe, "ts": at(-50), "service": "okta", "ok": True},
            {**probe, "ts": at(-40), "service": "okta", "ok": False},  # the first failure
            {**probe, "ts": at(-20), "service": "app1", "ok": False},  # not in the incident
        ],
    )
    run = {"ended_at": None, "duration_ms": 1.0, "steps": 1, "retries": 0, "fallbacks": 0}
    store.append(
        "workflow_runs",
        [
            {
                **run,
                "run_id": "r1",
                "workflow": "employee_onboarding",
                "started_at": at(30),
                "status": "failed",
                "error": "okta <down>",
            },
            {
                **run,
                "run_id": "r2",
                "workflow": "custom",
                "started_at": at(60),
                "status": "failed",
                "error": None,
            },
            {
                **run,
                "run_id": "r3",
                "workflow": "custom",
                "started_at": at(61),
                "status": "failed",
                "error": None,
            },  # never called okta
            {
                **run,
                "run_id": "r4",
                "workflow": "employee_onboarding",
                "started_at": at(90),
                "status": "completed",
                "error": None,
            },
            {
                **run,
                "run_id": "r5",
                "workflow": "employee_onboarding",
                "started_at": at(900),
                "status": "failed",
                "error": None,
            },  # after resolution
        ],
    )
    store.append("calls", [failed_call("okta", at(60), run_id="r2")])
    store.flush()
    with new_engine(settings) as eng:
        eng.evaluate([snap("okta", at(0), down=True)], now=at(0))
        eng.evaluate([snap("okta", at(300), down=False)], now=at(300))
    (incident,) = incidents(settings)
    facts = gather_facts(incident, store, lookback=timedelta(seconds=300))
    assert facts.first_failure_at == at(-40)
    assert facts.time_to_detect == timedelta(seconds=40)
    assert facts.time_to_resolve == timedelta(seconds=300)
    assert facts.impact_duration == timedelta(seconds=340)
    assert [r.run_id for r in facts.failed_runs] == ["r1", "r2"]
    assert "employee_onboarding" in facts.workflows and "incident_response" not in facts.workflows
    store.close()

    pm = get_postmortem(settings, incident.id)
    assert pm.revision == 0 and not pm.edited and pm.text == pm.generated
    assert "Time to detect (first failure to first alert): 40s (40 s)" in pm.text
    assert "Time to resolve (first alert to resolution): 5m (300 s)" in pm.text
    assert "Failed workflow runs in the incident's time range: 2" in pm.text
    assert get_postmortem(settings, incident.id).generated_at == pm.generated_at  # stored once
    edited = save_postmortem(settings, incident.id, pm.text + "\nRoot cause: DNS.", author="al")
    assert edited.revision == 1 and edited.edited and edited.generated == pm.generated
    assert "+Root cause: DNS." in edited.diff()
    with pytest.raises(RevisionConflictError, match="revision 1, not 0"):
        save_postmortem(settings, incident.id, "x", author="al", revision=0)
    with pytest.raises(NoteError, match="text: must not be empty"):
        save_postmortem(settings, incident.id, " ", author="al", revision=1)


def test_two_readers_syncing_at_once_assign_every_alert_once(settings: Settings) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        conn = schema.connect(alert_state.db_path(settings))
        try:
            while True:  # at least once after the engine stopped: races with its last writes
                done = stop.is_set()
                list_incidents(conn, relations=RELATED)
                if done:
                    break
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            conn.close()

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    with new_engine(settings) as eng:
        for step in range(30):  # okta flaps; app<n> fail one after another, unrelated
            now = at(step * 700)
            eng.evaluate(
                [snap("okta", now, down=step % 2 == 0), *failing([f"app{step % 5}"], now)], now=now
            )
        stop.set()
        for r in readers:
            r.join(30)
        assert not errors
        found = incidents(settings)  # syncs what the readers had not seen yet
        alerts = {int(r[0]) for r in eng.conn.execute("SELECT id FROM alerts")}
        events = eng.conn.execute("SELECT count(*) FROM incident_events").fetchone()[0]
        history = eng.conn.execute("SELECT count(*) FROM history").fetchone()[0]
    members = [a for i in found for a in i.alerts]
    assert sorted(members) == sorted(alerts)  # each alert in exactly one incident
    assert events == history  # every transition copied once


def test_cofailure_groups_are_shared_between_processes(settings: Settings) -> None:
    conn = schema.connect(alert_state.db_path(settings))
    try:
        clear_relations_cache()
        assert relations_for(settings, conn, now=at(0)).cofailure_groups == ()
        store = MetricsStore(settings.metrics_dir)
        store.append(
            "calls", [failed_call(s, at(w * 60)) for w in range(4) for s in ("app3", "app4")]
        )
        store.close()
        # Another process (no cache of its own) reuses the groups stored a minute ago ...
        clear_relations_cache()
        assert relations_for(settings, conn, now=at(60)).cofailure_groups == ()
        # ... and computes them again once they are older than the TTL.
        clear_relations_cache()
        later = at(60 + RELATIONS_TTL_SECONDS)
        assert relations_for(settings, conn, now=later).cofailure_groups == (
            frozenset({"app3", "app4"}),
        )
    finally:
        clear_relations_cache()
        conn.close()


def test_a_reset_or_damaged_alert_database_is_reopened_not_read_stale(settings: Settings) -> None:
    with new_engine(settings, "") as eng:
        eng.evaluate(failing(["app1"], at(0)), now=at(0))
    assert len(incidents(settings, Relations())) == 1  # the shared connection is open now
    path = alert_state.db_path(settings)
    assert isinstance(path, Path)  # the SQLite file (no JUNCTION_STATE_URL here)
    alert_state.reset_database(path, at(10), force=True)  # `junction alerts reset --force`
    assert incidents(settings, Relations()) == []
    path.write_bytes(b"not a database" * 1000)
    with pytest.raises(alert_state.AlertDatabaseError, match="junction alerts reset"):
        incidents(settings, Relations())


def test_a_reopened_incident_gets_a_new_draft_and_keeps_edits(settings: Settings) -> None:
    with new_engine(settings, "") as eng:
        eng.evaluate(failing(["app1"], at(0)), now=at(0))
        eng.evaluate(healthy(["app1"], at(60)), now=at(60))
        (incident,) = incidents(settings, Relations())
        first = get_postmortem(settings, incident.id)
        assert "Resolved: 2026-11-27T12:01:00+00:00" in first.text
        eng.evaluate(failing(["app1"], at(120)), now=at(120))  # within the gap: reopens it
        with pytest.raises(IncidentOpenError):
            get_postmortem(settings, incident.id)
        eng.evaluate(healthy(["app1"], at(180)), now=at(180))
        second = get_postmortem(settings, incident.id)
        assert second.revision == 0 and "Resolved: 2026-11-27T12:03:00+00:00" in second.text
        save_postmortem(settings, incident.id, "ours", author="al")
        eng.evaluate(failing(["app1"], at(240)), now=at(240))
        eng.evaluate(healthy(["app1"], at(300)), now=at(300))
        third = get_postmortem(settings, incident.id)
    assert third.text == "ours\n" and "Resolved: 2026-11-27T12:05:00+00:00" in third.generated
    assert [i.id for i in incidents(settings, Relations())] == [incident.id]
