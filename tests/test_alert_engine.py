"""Alert lifecycle, dedup across sweeps and restarts, grouping, suppression, silences,
escalation, repeat, resolved-after-silence, clock jumps, history export."""

from __future__ import annotations

import collections
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from junction.alerting import alerts, state
from junction.alerting.engine import AlertEngine
from junction.alerting.model import AlertState, NotificationKind, Severity
from junction.alerting.silences import add_silence
from junction.store import MetricsStore
from tests.alerting_helpers import (
    T0,
    at,
    config,
    engine,
    failing,
    healthy,
    queued,
    snap,
)


def kinds(notifications: list) -> list[tuple[str, str]]:
    return [(n.kind.value, n.channel) for n in notifications]


def test_lifecycle_dedup_and_restart(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    first = eng.evaluate([snap("okta", at(0), rate=0.93)], now=at(0))  # warning
    fired = {a.fingerprint: a for a in first.fired}
    assert set(fired) == {"okta:success_rate", "okta:health_score"}
    assert fired["okta:success_rate"].severity is Severity.WARNING
    assert kinds(first.notifications) == [("firing", "chat")]  # one group, one message

    # The same condition on the next sweep: nothing new.
    again = eng.evaluate([snap("okta", at(5), rate=0.93)], now=at(5))
    assert again.fired == [] and again.notifications == []
    eng.close()

    # A restart (new engine, same database): still the same alerts, no new message.
    eng = engine(tmp_path)
    restarted = eng.evaluate([snap("okta", at(10), rate=0.93)], now=at(10))
    assert restarted.fired == [] and restarted.notifications == []
    ids = {a.fingerprint: a.id for a in restarted.active}
    assert ids["okta:success_rate"] == fired["okta:success_rate"].id

    # warning -> critical updates the alert in place and pages the critical route.
    worse = eng.evaluate([snap("okta", at(15), rate=0.5)], now=at(15))
    assert {a.fingerprint for a in worse.changed} == {"okta:success_rate", "okta:health_score"}
    assert {a.fingerprint: a.id for a in worse.active}["okta:success_rate"] == ids[
        "okta:success_rate"
    ]
    assert sorted(kinds(worse.notifications)) == [("firing", "chat"), ("firing", "oncall")]
    assert worse.notifications[0].severity is Severity.CRITICAL

    acked, other = eng.ack("okta:success_rate", "alice", at(20))
    assert acked.state is AlertState.ACKNOWLEDGED and acked.acked_by == "alice"
    assert other.fingerprint == "okta:health_score"  # the rest of the incident
    assert other.state is AlertState.ACKNOWLEDGED
    assert eng.ack(str(acked.id), "bob", at(21))[0].acked_by == "alice"  # idempotent
    assert eng.ack(str(other.id), "bob", at(21)) == [other]

    done = eng.evaluate([snap("okta", at(30))], now=at(30))
    assert {a.fingerprint for a in done.resolved} == {"okta:success_rate", "okta:health_score"}
    assert sorted(kinds(done.notifications)) == [("resolved", "chat"), ("resolved", "oncall")]
    assert done.active == []
    # Resolved stays resolved; a later evaluation sends nothing more.
    assert eng.evaluate([snap("okta", at(35))], now=at(35)).notifications == []
    with pytest.raises(alerts.AlertResolvedError):
        eng.ack(str(acked.id), "bob", at(36))
    with pytest.raises(alerts.AlertNotFoundError):
        eng.ack("nope:rule", "bob", at(36))


def test_refire_after_resolve_is_a_new_alert_and_group(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    a = eng.evaluate(failing(["okta"], at(0)), now=at(0))
    eng.evaluate(healthy(["okta"], at(10)), now=at(10))
    b = eng.evaluate(failing(["okta"], at(20)), now=at(20))
    assert {x.id for x in a.fired}.isdisjoint({x.id for x in b.fired})
    assert a.notifications[0].group_key != b.notifications[0].group_key
    keys = [n.key for n in queued(eng)]
    assert len(keys) == len(set(keys)) == 6  # 2 firing + 2 resolved + 2 firing


def test_missing_service_and_thin_window_leave_alerts_alone(tmp_path: Path) -> None:
    eng = engine(tmp_path, config("min_observations: 5\n"))
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    # okta absent from the snapshots: unchanged
    assert len(eng.evaluate(healthy(["gitlab"], at(5)), now=at(5)).active) == 2
    # a window with too few observations does not count as healthy
    thin = eng.evaluate([snap("okta", at(10), count=2)], now=at(10))
    assert thin.resolved == [] and len(thin.active) == 2


def test_down_rule_fires_and_resolves(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    # 98 % success over the window, but the monitor says it is down now
    r = eng.evaluate([snap("okta", at(0), rate=0.98, down=True)], now=at(0))
    assert [a.fingerprint for a in r.fired] == ["okta:down"]
    assert r.fired[0].severity is Severity.CRITICAL
    assert "5 consecutive failures" in r.fired[0].message
    assert sorted(kinds(r.notifications)) == [("firing", "chat"), ("firing", "oncall")]
    r = eng.evaluate([snap("okta", at(5), rate=0.98, down=False)], now=at(5))
    assert [a.fingerprint for a in r.resolved] == ["okta:down"]


STORM = """
dependencies:
""" + "".join(f"  app{i}: [db]\n" for i in range(10))


def storm_check(eng: AlertEngine) -> None:
    """At most one firing and one resolved message per channel; every alert resolved once."""
    notes = queued(eng)
    per_channel = collections.Counter((n.channel, n.kind) for n in notes)
    assert per_channel[("chat", NotificationKind.FIRING)] == 1
    assert per_channel[("chat", NotificationKind.RESOLVED)] == 1
    assert len([n for n in notes if n.channel == "chat"]) == 2
    rows = eng.conn.execute("SELECT fingerprint, state FROM history").fetchall()
    resolved = collections.Counter(r["fingerprint"] for r in rows if r["state"] == "resolved")
    fired = collections.Counter(r["fingerprint"] for r in rows if r["state"] == "firing")
    assert set(resolved) == set(fired) and set(resolved.values()) == {1}
    resolved_note = next(n for n in notes if n.kind is NotificationKind.RESOLVED)
    assert set(resolved_note.fingerprints) == set(fired)


@pytest.mark.parametrize("recovery_order", ["dependents_first", "dependency_first", "together"])
def test_storm_behind_one_dependency(tmp_path: Path, recovery_order: str) -> None:
    apps = [f"app{i}" for i in range(10)]
    eng = engine(tmp_path, config(STORM))
    r = eng.evaluate(failing(["db", *apps], at(0), rate=0.5), now=at(0))
    assert len(r.fired) == 22  # success_rate + health_score per service
    assert {a.suppressed_by for a in r.fired if a.service != "db"} == {"db"}
    assert len({a.group_key for a in r.fired}) == 1
    for t in range(5, 60, 5):
        eng.evaluate(failing(["db", *apps], at(t), rate=0.5), now=at(t))
    if recovery_order == "dependents_first":
        eng.evaluate([*healthy(apps, at(60)), *failing(["db"], at(60), 0.5)], now=at(60))
        eng.evaluate(healthy(["db", *apps], at(65)), now=at(65))
    elif recovery_order == "dependency_first":
        eng.evaluate([*healthy(["db"], at(60)), *failing(apps, at(60), 0.5)], now=at(60))
        eng.evaluate(healthy(["db", *apps], at(65)), now=at(65))
    else:
        eng.evaluate(healthy(["db", *apps], at(60)), now=at(60))
    assert eng.active_alerts() == []
    storm_check(eng)


def test_storm_dependents_join_a_dependency_that_failed_earlier(tmp_path: Path) -> None:
    apps = [f"app{i}" for i in range(10)]
    eng = engine(tmp_path, config(STORM))
    eng.evaluate(failing(["db"], at(0), 0.5), now=at(0))
    for i, app in enumerate(apps):  # one dependent at a time (passive evaluations)
        r = eng.evaluate(failing([app], at(1 + i), 0.5), now=at(1 + i))
        assert r.notifications == []
    eng.evaluate(healthy(["db", *apps], at(30)), now=at(30))
    storm_check(eng)


def test_group_wait_merges_dependents_that_failed_first(tmp_path: Path) -> None:
    apps = [f"app{i}" for i in range(10)]
    eng = engine(tmp_path, config(STORM + "grouping: {wait: 10s}\n"))
    r = eng.evaluate(failing(apps, at(0), 0.5), now=at(0))
    assert r.notifications == []  # waiting for a possible root cause
    r = eng.evaluate(failing(["db", *apps], at(5), 0.5), now=at(5))
    assert r.notifications == []  # the db's group is new too: still within the wait
    r = eng.evaluate(failing(["db", *apps], at(15), 0.5), now=at(15))
    assert sorted(kinds(r.notifications)) == [("firing", "chat"), ("firing", "oncall")]
    assert len({a.group_key for a in r.active}) == 1
    eng.evaluate(healthy(["db", *apps], at(30)), now=at(30))
    storm_check(eng)


def test_dependent_group_already_notified_is_not_repeated_while_dependency_down(
    tmp_path: Path,
) -> None:
    cfg = config(
        "dependencies: {app0: [db]}\nescalation: {repeat_interval: 1m}\n"
        "grouping: {dependency_wait: 0s}\n"
    )
    eng = engine(tmp_path, cfg)
    eng.evaluate(failing(["app0"], at(0), 0.5), now=at(0))  # notified on its own
    eng.evaluate(failing(["app0", "db"], at(10), 0.5), now=at(10))  # db: its own group
    for t in range(20, 300, 10):
        r = eng.evaluate(failing(["app0", "db"], at(t), 0.5), now=at(t))
        assert all(n.labels["service"] == "db" for n in r.notifications)
    # suppressed meanwhile, app0's incident still gets its resolved message
    r = eng.evaluate(healthy(["app0", "db"], at(300)), now=at(300))
    assert sorted((n.labels["service"], n.kind.value, n.channel) for n in r.notifications) == [
        ("app0", "resolved", "chat"),
        ("app0", "resolved", "oncall"),
        ("db", "resolved", "chat"),
        ("db", "resolved", "oncall"),
    ]


def test_silence_holds_notifications_until_it_expires(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    add_silence(eng.conn, now=at(0), duration=timedelta(minutes=10), service="okta")
    r = eng.evaluate(failing(["okta", "gitlab"], at(1), 0.5), now=at(1))
    assert {n.labels["service"] for n in r.notifications} == {"gitlab"}
    assert {a.silenced_by for a in r.active if a.service == "okta"} == {"s1"}
    r = eng.evaluate(failing(["okta"], at(599)), now=at(599))
    assert r.notifications == []
    r = eng.evaluate(failing(["okta"], at(600)), now=at(600))  # expired
    assert sorted(kinds(r.notifications)) == [("firing", "chat"), ("firing", "oncall")]
    assert {a.silenced_by for a in r.active if a.service == "okta"} == {None}


def test_silence_by_rule_and_label(tmp_path: Path) -> None:
    eng = engine(tmp_path, config("services: {okta: {labels: {team: id}}}\n"))
    add_silence(eng.conn, now=at(0), duration=timedelta(hours=1), labels={"team": "id"})
    add_silence(eng.conn, now=at(0), duration=timedelta(hours=1), rule="health_score")
    r = eng.evaluate(failing(["okta", "gitlab"], at(1), 0.5), now=at(1))
    silenced = {a.fingerprint: a.silenced_by for a in r.active}
    assert silenced == {
        "okta:success_rate": "s1",
        "okta:health_score": "s1",
        "gitlab:success_rate": None,
        "gitlab:health_score": "s2",
    }
    with pytest.raises(ValueError, match="silence everything"):
        add_silence(eng.conn, now=at(0), duration=timedelta(hours=1))


def test_maintenance_window_from_config(tmp_path: Path) -> None:
    start, end = at(60).isoformat(), at(120).isoformat()
    cfg = config(
        f"maintenance:\n  - {{id: up, service: okta, starts_at: '{start}', ends_at: '{end}'}}\n"
    )
    eng = engine(tmp_path, cfg)
    assert eng.evaluate(failing(["okta"], at(0)), now=at(0)).notifications  # before: sent
    eng.evaluate(healthy(["okta"], at(30)), now=at(30))
    r = eng.evaluate(failing(["okta"], at(60)), now=at(60))  # inside the window
    assert r.notifications == [] and r.active[0].silenced_by == "maintenance:up"
    r = eng.evaluate(failing(["okta"], at(120)), now=at(120))  # window over
    assert sorted(kinds(r.notifications)) == [("firing", "chat"), ("firing", "oncall")]


def test_resolved_is_sent_after_silence_and_after_suppression(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    add_silence(eng.conn, now=at(5), duration=timedelta(hours=1), service="okta")
    r = eng.evaluate(failing(["okta"], at(10)), now=at(10))
    assert r.notifications == []
    r = eng.evaluate(healthy(["okta"], at(20)), now=at(20))
    assert sorted(kinds(r.notifications)) == [("resolved", "chat"), ("resolved", "oncall")]
    # a group that was silenced from the start and never notified resolves silently
    eng.evaluate(failing(["okta"], at(30)), now=at(30))
    assert eng.evaluate(healthy(["okta"], at(40)), now=at(40)).notifications == []


ESCALATION = """
escalation:
  after: 10m
  levels: [[boss]]
  repeat_interval: 30m
  max_step: 2m
"""


def test_escalation_and_repeat_timing(tmp_path: Path) -> None:
    eng = engine(tmp_path, config(ESCALATION))
    events: list[tuple[int, str, str]] = []
    for minute in range(0, 46):
        r = eng.evaluate(failing(["okta"], at(minute * 60)), now=at(minute * 60))
        events += [(minute, n.kind.value, n.channel) for n in r.notifications]
    assert events == [
        (0, "firing", "chat"),
        (0, "firing", "oncall"),
        (10, "escalation", "boss"),
        # the escalation restarted the repeat clock: 30 min after minute 10
        (40, "repeat", "boss"),
        (40, "repeat", "chat"),
        (40, "repeat", "oncall"),
    ]
    r = eng.evaluate(healthy(["okta"], at(46 * 60)), now=at(46 * 60))
    assert sorted(kinds(r.notifications)) == [
        ("resolved", "boss"),
        ("resolved", "chat"),
        ("resolved", "oncall"),
    ]


def test_ack_stops_escalation_and_repeat(tmp_path: Path) -> None:
    eng = engine(tmp_path, config(ESCALATION))
    r = eng.evaluate(failing(["okta"], at(0)), now=at(0))
    assert len(eng.ack(str(r.fired[0].id), "alice", at(30))) == 2  # one ack per incident
    sent = []
    for minute in range(1, 90):
        sent += eng.evaluate(failing(["okta"], at(minute * 60)), now=at(minute * 60)).notifications
    assert sent == []


def test_warning_does_not_escalate(tmp_path: Path) -> None:
    eng = engine(tmp_path, config(ESCALATION.replace("  repeat_interval: 30m\n", "")))
    sent = []
    for minute in range(0, 60):
        r = eng.evaluate([snap("okta", at(minute * 60), rate=0.93)], now=at(minute * 60))
        sent += kinds(r.notifications)
    assert sent == [("firing", "chat")]


def test_clock_jump_forward_does_not_escalate_at_once(tmp_path: Path) -> None:
    eng = engine(tmp_path, config(ESCALATION))
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    eng.evaluate(failing(["okta"], at(60)), now=at(60))
    jumped = eng.evaluate(failing(["okta"], at(5 * 3600)), now=at(5 * 3600))  # +5 h
    assert jumped.notifications == [] and jumped.step_seconds == 120  # max_step
    assert jumped.fired == [] and len(jumped.active) == 2
    # from there on, engine time runs normally: 10 min of it -> escalation
    minutes = []
    for minute in range(1, 12):
        now = at(5 * 3600 + minute * 60)
        if eng.evaluate(failing(["okta"], now), now=now).notifications:
            minutes.append(minute)
    assert minutes == [7]  # 1 min + 2 min (capped jump) + 7 min = 10 min


def test_clock_going_back_neither_duplicates_nor_loses(tmp_path: Path) -> None:
    eng = engine(tmp_path, config(ESCALATION))
    eng.evaluate(failing(["okta"], at(3600)), now=at(3600))
    back = eng.evaluate(failing(["okta"], at(0)), now=at(0))  # one hour back
    assert back.fired == [] and back.notifications == [] and back.step_seconds == 0
    assert len(back.active) == 2
    done = eng.evaluate(healthy(["okta"], at(10)), now=at(10))
    assert len(done.resolved) == 2
    assert all(a.resolved_at is not None and a.resolved_at >= a.started_at for a in done.resolved)
    assert sorted(kinds(done.notifications)) == [("resolved", "chat"), ("resolved", "oncall")]
    # firing again at an earlier wall time than the first group: new keys, nothing lost
    again = eng.evaluate(failing(["okta"], at(20)), now=at(20))
    assert sorted(kinds(again.notifications)) == [("firing", "chat"), ("firing", "oncall")]
    keys = [n.key for n in queued(eng)]
    assert len(keys) == len(set(keys)) == 6


def test_one_unresolved_alert_per_fingerprint_is_enforced(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    r = eng.evaluate(failing(["okta"], at(0)), now=at(0))
    row = eng.conn.execute("SELECT * FROM alerts WHERE id = ?", (r.fired[0].id,)).fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        eng.conn.execute(
            "INSERT INTO alerts (id, fingerprint, service, rule, severity, state, group_key, "
            "message, labels_json, started_at, updated_at) VALUES (999, ?, 'okta', 'x', "
            "'warning', 'firing', 'g', 'm', '{}', 't', 't')",
            (row["fingerprint"],),
        )


def test_crash_mid_evaluation_rolls_back_and_rerun_is_identical(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    before = eng.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    class Boom(Exception):
        pass

    class Exploding:
        """A snapshot list that dies half-way through the evaluation."""

        def __iter__(self):
            yield from failing(["gitlab"], at(5))
            raise Boom

    with pytest.raises(Boom):
        eng.evaluate(Exploding(), now=at(5))
    assert eng.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == before
    r = eng.evaluate(failing(["gitlab", "okta"], at(5)), now=at(5))
    assert [a.fingerprint for a in r.fired] == ["gitlab:success_rate", "gitlab:health_score"]


def test_history_goes_to_the_store_exactly_once(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics")
    eng = engine(tmp_path, store=store)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    eng.ack("okta:success_rate", "alice", at(5))
    eng.evaluate(healthy(["okta"], at(10)), now=at(10))
    rows = store.query("SELECT id, fingerprint, state FROM alerts ORDER BY ts, id")
    assert len(rows) == 6 and rows["id"].is_unique
    assert sorted(rows["state"]) == ["acknowledged"] * 2 + ["firing"] * 2 + ["resolved"] * 2

    # A crash after the append but before the rows were marked exported: the next export
    # finds them in the store and does not append them again.
    eng.evaluate(failing(["gitlab"], at(20)), now=at(20))
    n_before = store.count("alerts")
    pending = eng.conn.execute("SELECT * FROM history ORDER BY seq DESC LIMIT 2").fetchall()
    eng.conn.execute(
        "UPDATE history SET exported = 0, claimed_at = 0 WHERE seq >= ?", (pending[-1]["seq"],)
    )
    state.export_history(eng.conn, store, wall=10_000.0)
    assert store.count("alerts") == n_before
    # Rows never appended (crash before the append) are appended once.
    eng.conn.execute(
        "UPDATE history SET exported = 0, claimed_at = NULL WHERE seq >= ?", (pending[-1]["seq"],)
    )
    eng.store = None
    eng.evaluate(failing(["gitlab"], at(25)), now=at(25))
    other = MetricsStore(tmp_path / "metrics")
    assert state.export_history(eng.conn, other, wall=10_000.0) == 2
    other.close()
    assert store.count("alerts") == n_before + 2
    store.close()


def test_engine_survives_a_killed_process(tmp_path: Path) -> None:
    """kill -9 right after an evaluation committed: a new engine carries on without
    firing or notifying again."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from pathlib import Path
        from tests.alerting_helpers import engine, failing, at
        eng = engine(Path({str(tmp_path)!r}))
        eng.evaluate(failing(["okta"], at(0)), now=at(0))
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    eng = engine(tmp_path)
    assert len(eng.active_alerts()) == 2
    assert len(queued(eng)) == 2
    r = eng.evaluate(failing(["okta"], at(5)), now=at(5))
    assert r.fired == [] and r.notifications == []


def test_vendor_annotation_reaches_the_message(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    r = eng.evaluate([snap("gitlab", T0, rate=0.0, annotation="GitLab reports: degraded")], now=T0)
    assert "GitLab reports: degraded" in r.notifications[0].text
    assert r.fired[0].annotation == "GitLab reports: degraded"


def test_per_service_routes(tmp_path: Path) -> None:
    eng = engine(tmp_path, config("services: {gitlab: {routes: {critical: [boss]}}}\n"))
    r = eng.evaluate(failing(["gitlab", "okta"], at(0)), now=at(0))
    by_service = collections.defaultdict(set)
    for n in r.notifications:
        by_service[n.labels["service"]].add(n.channel)
    assert by_service == {"gitlab": {"boss"}, "okta": {"chat", "oncall"}}
    r = eng.evaluate([snap("gitlab", at(5))], now=at(5))
    assert kinds(r.notifications) == [("resolved", "boss")]


def test_resolve_after_damps_flapping(tmp_path: Path) -> None:
    eng = engine(tmp_path, config("resolve_after: 30s\n"))
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    sent = []
    for t in range(10, 200, 10):  # good, bad, good, bad, ... every 10 s
        snaps = healthy(["okta"], at(t)) if (t // 10) % 2 else failing(["okta"], at(t))
        r = eng.evaluate(snaps, now=at(t))
        sent += r.notifications
        assert r.resolved == []
    assert sent == []
    # the last bad evaluation was at 180 (190 was fine): fine for 30 s at 210
    for t in range(200, 260, 10):
        r = eng.evaluate(healthy(["okta"], at(t)), now=at(t))
        if r.resolved:
            break
    assert t == 210 and len(r.resolved) == 2
    assert sorted(kinds(r.notifications)) == [("resolved", "chat"), ("resolved", "oncall")]


def test_resolve_after_counts_each_services_own_time_between_shards(tmp_path: Path) -> None:
    # Two monitor shards share the database: one evaluates okta at 0, 10, 20, ...; the
    # other gitlab 0.1 s later each time, so the engine-wide step it sees is 0.1 s.
    # gitlab's alert is fine from 10.1 s on and resolves after its own 30 s.
    eng = engine(tmp_path, config("resolve_after: 30s\n"))
    eng.evaluate(failing(["gitlab"], at(0.1)), now=at(0.1))
    resolved_at = None
    for t in range(10, 120, 10):
        eng.evaluate(healthy(["okta"], at(t)), now=at(t))
        r = eng.evaluate(healthy(["gitlab"], at(t + 0.1)), now=at(t + 0.1))
        if r.resolved:
            resolved_at = t
            break
    assert resolved_at == 30


def test_silence_survives_a_clock_stepping_back(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    add_silence(eng.conn, now=at(3600), duration=timedelta(hours=1), service="okta")
    r = eng.evaluate(failing(["okta"], at(0)), now=at(0))  # clock an hour behind
    assert r.notifications == [] and {a.silenced_by for a in r.active} == {"s1"}


def test_prune_keeps_alerts_and_undelivered_rows(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics")
    eng = engine(tmp_path, store=store)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    eng.evaluate(healthy(["okta"], at(10)), now=at(10))
    assert eng.prune(at(10) + timedelta(days=8)) == 4  # 4 exported history rows
    assert len(eng.outbox.rows("pending")) == 4  # never delivered: kept
    assert len(alerts.list_alerts(eng.conn, include_resolved=True)) == 2
    store.close()


def test_group_labels_are_one_identity_from_firing_to_resolved(tmp_path: Path) -> None:
    eng = engine(tmp_path, config("services: {okta: {labels: {team: id}}}\n"))
    eng.evaluate([snap("okta", at(0), rate=0.93)], now=at(0))  # warning: success_rate leads
    eng.evaluate([snap("okta", at(5), rate=0.93, down=True)], now=at(5))  # critical: down
    eng.evaluate([snap("okta", at(10), down=False)], now=at(10))
    notes = queued(eng)
    assert [n.kind.value for n in notes] == ["firing", "firing", "firing", "resolved", "resolved"]
    stable = {k: v for k, v in notes[0].labels.items() if k != "severity"}
    assert stable["alertname"] == "junction_success_rate" and stable["team"] == "id"
    assert all({k: v for k, v in n.labels.items() if k != "severity"} == stable for n in notes)
    assert [n.labels.get("severity") for n in notes] == [
        "warning",
        "critical",
        "critical",
        None,
        None,
    ]


def test_dependents_detected_before_their_dependency_wait_for_it(tmp_path: Path) -> None:
    """The monitor evaluates each service as soon as it fails, in any order: dependents
    seen first hold (dependency_wait, 5 s) and fold into the dependency's incident."""
    apps = [f"app{i}" for i in range(10)]
    eng = engine(tmp_path, config(STORM))
    for i, app in enumerate(apps[:5]):  # five dependents fail before the db is seen
        assert eng.evaluate(failing([app], at(i * 0.5), 0.5), now=at(i * 0.5)).notifications == []
    r = eng.evaluate(failing(["db"], at(3), 0.5), now=at(3))
    assert sorted(kinds(r.notifications)) == [("firing", "chat"), ("firing", "oncall")]
    for i, app in enumerate(apps[5:]):
        assert eng.evaluate(failing([app], at(4 + i), 0.5), now=at(4 + i)).notifications == []
    for t in range(10, 60, 5):
        assert eng.evaluate(failing(["db", *apps], at(t), 0.5), now=at(t)).notifications == []
    eng.evaluate(healthy(["db", *apps], at(60)), now=at(60))
    storm_check(eng)


def test_dependent_failing_alone_notifies_after_the_dependency_wait(tmp_path: Path) -> None:
    eng = engine(tmp_path, config(STORM))
    assert eng.evaluate(failing(["app0"], at(0)), now=at(0)).notifications == []
    eng.evaluate([*failing(["app0"], at(3)), *healthy(["db"], at(3))], now=at(3))
    r = eng.evaluate([*failing(["app0"], at(6)), *healthy(["db"], at(6))], now=at(6))
    assert sorted(kinds(r.notifications)) == [("firing", "chat"), ("firing", "oncall")]
    assert {n.labels["service"] for n in r.notifications} == {"app0"}
