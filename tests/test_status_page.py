"""The public status page (``/status``, ``GET /api/v2/status/page``) against a real server:
what is public (the status-page file), 90 daily uptime bars computed from seeded probes,
incidents with only their public updates, public silences as maintenance, and nothing
internal leaking from a hostile, secret-bearing setup."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pytest

from junction.alerting import state as alert_state
from junction.alerting.engine import AlertEngine
from junction.alerting.rules import default_config
from junction.alerting.silences import add_silence, list_silences
from junction.incidents import add_note, list_incidents
from junction.service.public import StatusPageFile, build_page, load_status_page
from junction.service.public_page import public_status
from junction.service.uptime import DayUptime, UptimeHistory, hold_seconds, window
from junction.settings import Settings, get_settings
from junction.store import MetricsStore
from tests.alerting_helpers import alerts_cli, failing, healthy, snap, use_home
from tests.service_helpers import ServiceServer

CANARY = "CANARY-7f3a9c2e51d04b8a"
HOST = "db-7.corp.internal"
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)> javascript:alert(3)"
INTERNAL_NOTE = f"internal: restarted {HOST} with token {CANARY}"
PUBLIC_NOTE = "We are <b>investigating</b> <script>alert('note')</script> & fixing"
PUBLIC_COMMENT = 'Upgrading sign-on <i>tonight</i> "quoted"'
PRIVATE_COMMENT = f"private window {CANARY}"

STATUS_YAML = """
title: Acme status
description: Systems Acme customers use
services:
  - service: okta
    name: Single sign-on
    group: Identity
    description: Log in to every Acme app
  - service: jira
    name: Ticket desk
"""

DAY = timedelta(days=1)


def _midnight(day: datetime) -> datetime:
    return datetime.combine(day.date(), dtime(), UTC)


def probe(service: str, ts: datetime, ok: bool, error: str | None = None) -> dict[str, Any]:
    return {
        "ts": ts,
        "sweep_id": "seed",
        "service": service,
        "ok": ok,
        "status": 200 if ok else 503,
        "latency_ms": 12.0,
        "error_class": None if ok else "APIConnectionError",
        "error": error,
        "breaker_state": "closed",
    }


def seed_probes(store: MetricsStore, now: datetime) -> None:
    """okta: 3 days ago every 5 min with 12 failures in a row (60 of 1440 min down);
    7 days ago 00:00-02:00 with 2 failures (10 of 130 min, the last probe holding 10 min).
    jira: 5 days ago all fine. workday (internal): failing with secret error text. Recent
    probes: okta fine, jira down, workday failing."""
    secret = f"connect to {HOST} failed (token={CANARY})"
    today = _midnight(now)
    rows = []
    d3, d5, d7 = today - 3 * DAY, today - 5 * DAY, today - 7 * DAY
    for i in range(288):
        rows.append(probe("okta", d3 + timedelta(minutes=5 * i), not 100 <= i < 112, secret))
        rows.append(probe("jira", d5 + timedelta(minutes=5 * i), True))
        rows.append(probe("workday", d3 + timedelta(minutes=5 * i), False, secret))
    for i in range(25):
        rows.append(probe("okta", d7 + timedelta(minutes=5 * i), i not in (3, 4), secret))
    for k in range(3):
        ts = now - timedelta(seconds=30 - 10 * k)
        rows.append(probe("okta", ts, True))
        rows.append(probe("jira", ts, False, secret))
        rows.append(probe("workday", ts, False, secret))
    store.append("probes", rows)
    store.append(
        "calls",
        [
            {
                "ts": now - timedelta(seconds=5 if svc == "workday" else 3600),
                "service": svc,
                "action": "health",
                "method": "GET",
                "path": f"/{CANARY}",
                "status": 500,
                "ok": False,
                "latency_ms": 5.0,
                "error_class": "HTTPStatusError",
                "error": secret,
                "attempts": 1,
                "breaker_state": "closed",
                "source": "workflow",
            }
            for svc in ("okta", "workday")
        ],
    )
    store.flush()


def seed_alerts(settings: Settings, now: datetime) -> None:
    """A resolved okta incident (a public hostile note, an internal secret note), an open
    incident of the internal service workday (with hostile vendor text), an open jira
    incident; a scheduled public silence on okta, a private one on jira."""
    t0 = now - 2 * DAY
    hostile_vendor = f"{HOSTILE} {CANARY} {HOST}"
    engine = AlertEngine(alert_state.db_path(settings), default_config(settings))
    engine.evaluate(failing(["okta"], t0), now=t0)
    engine.evaluate(healthy(["okta"], t0 + timedelta(minutes=5)), now=t0 + timedelta(minutes=5))
    t1 = t0 + timedelta(hours=5)
    engine.evaluate([snap("workday", t1, rate=0.0, annotation=hostile_vendor)], now=t1)
    t2 = t1 + timedelta(hours=5)
    engine.evaluate(
        [snap("workday", t2, rate=0.0, annotation=hostile_vendor), *failing(["jira"], t2)], now=t2
    )
    engine.close()
    okta = next(i for i in list_incidents(settings) if "okta" in i.services)
    add_note(settings, okta.id, PUBLIC_NOTE, author="ops", public=True, now=t0)
    add_note(settings, okta.id, INTERNAL_NOTE, author="ops", public=False, now=t0)
    conn = alert_state.connect(alert_state.db_path(settings))
    try:
        add_silence(
            conn,
            now=now,
            duration=timedelta(hours=1),
            service="okta",
            comment=PUBLIC_COMMENT,
            starts_at=now + timedelta(hours=2),
            public=True,
        )
        add_silence(
            conn, now=now, duration=timedelta(hours=1), service="jira", comment=PRIVATE_COMMENT
        )
    finally:
        conn.close()


@dataclass
class Served:
    url: str
    settings: Settings
    html: str
    page: dict[str, Any]
    now: datetime


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A service with a token, the status-page file, seeded probes, alerts and silences;
    the page and its JSON fetched anonymously once."""
    import httpx

    home = tmp_path_factory.mktemp("status-home")
    (home / "status-page.yaml").write_text(STATUS_YAML)
    settings = Settings(home=home, api_token="tok-" + CANARY)
    now = datetime.now(UTC)
    with MetricsStore(settings.metrics_dir) as store:
        seed_probes(store, now)
    seed_alerts(settings, now)
    with ServiceServer(settings) as server:
        public_status(server.app.state.junction).live_seconds = 0.0
        with httpx.Client(base_url=server.url, timeout=60) as anon:
            html = anon.get("/status")
            page = anon.get("/api/v2/status/page")
            assert html.status_code == 200, html.text
            assert page.status_code == 200, page.text
            yield Served(server.url, settings, html.text, page.json(), now)


def test_nothing_internal_leaks(served: Served) -> None:
    """Not the canary, the hostname, internal service names, alert or vendor text, an
    internal note; the public note and comment are escaped in HTML."""
    import json

    body = json.dumps(served.page)
    for text in (served.html, body):
        for secret in (CANARY, HOST, "workday", "okta", "jira", "alert(1)", "onerror"):
            assert secret not in text, secret
        assert "success rate" not in text.lower()  # the alert messages' wording
        assert "internal: restarted" not in text
        assert "private window" not in text
    assert "&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;" in served.html
    assert "<script>alert('note')" not in served.html
    assert "<b>investigating</b>" not in served.html
    assert "Upgrading sign-on &lt;i&gt;tonight&lt;/i&gt; &#34;quoted&#34;" in served.html
    # In JSON the notes are data, verbatim.
    updates = [u["message"] for i in served.page["past_incidents"] for u in i["updates"]]
    assert updates == [PUBLIC_NOTE]
    assert re.findall(r"<script[^>]*>", served.html) == [
        f'<script src="{src}">' for src in re.findall(r'<script src="([^"]+)">', served.html)
    ]


def test_services_bars_and_uptime(served: Served) -> None:
    page = served.page
    assert page["title"] == "Acme status" and page["configured"] is True
    sso, desk = page["services"]
    assert (sso["name"], sso["group"], desk["name"], desk["group"]) == (
        "Single sign-on",
        "Identity",
        "Ticket desk",
        None,
    )
    assert sso["status"] == "operational" and desk["status"] == "down"
    assert page["state"] == "partial_outage" and page["summary"] == "Partial outage"
    today = served.now.date()
    for s in (sso, desk):
        assert len(s["days"]) == 90
        assert s["days"][-1]["date"] == today.isoformat()
        assert s["days"][0]["date"] == (today - 89 * DAY).isoformat()
    days = {d["date"]: d for d in sso["days"]}
    d3, d5, d7 = (str(today - n * DAY) for n in (3, 5, 7))
    assert days[d3]["uptime_percent"] == 95.833 and days[d3]["minutes_down"] == 60
    assert days[d3]["level"] == "partial"
    assert days[d3]["label"] == f"{d3}: 95.83% uptime, 60 minutes down"
    assert days[d7]["uptime_percent"] == 92.308 and days[d7]["minutes_down"] == 10
    assert days[d7]["level"] == "down"
    no_data = days[str(today - 10 * DAY)]
    assert no_data == {
        "date": str(today - 10 * DAY),
        "uptime_percent": None,
        "minutes_down": None,
        "level": "none",
        "label": f"{today - 10 * DAY}: no data",
    }
    assert sum(d["level"] == "none" for d in sso["days"]) == 87  # all but d3, d7, today
    assert sso["uptime_percent"] is not None and sso["uptime_label"].endswith("% uptime")
    desk_days = {d["date"]: d for d in desk["days"]}
    assert desk_days[d5]["uptime_percent"] == 100.0 and desk_days[d5]["minutes_down"] == 0
    assert desk_days[d5]["level"] == "up"
    # The HTML: 90 bars per service, each with its hover detail, no-data days marked.
    assert served.html.count('class="bar bar-') == 180
    assert f'title="{d3}: 95.83% uptime, 60 minutes down"' in served.html
    assert served.html.count(": no data") >= 87 * 2


def test_incidents_and_maintenance(served: Served) -> None:
    page = served.page
    assert [i["services"] for i in page["active_incidents"]] == [["Ticket desk"]]
    active = page["active_incidents"][0]
    assert active["status"] == "investigating" and active["updates"] == []
    (past,) = page["past_incidents"]
    assert past["services"] == ["Single sign-on"] and past["status"] == "resolved"
    assert past["title"] == "Outage: Single sign-on"
    assert past["resolved_at"] is not None
    (window_,) = page["maintenance"]
    assert window_["state"] == "scheduled" and window_["services"] == ["Single sign-on"]
    assert window_["message"] == PUBLIC_COMMENT
    assert "Scheduled: Single sign-on" in served.html


def test_anonymous_with_a_token_configured(served: Served) -> None:
    import httpx

    with httpx.Client(base_url=served.url, timeout=60) as anon:
        assert anon.get("/api/v2/alerts").status_code == 401
        assert anon.get("/api/v2/status").status_code == 200
        resp = anon.get("/status", follow_redirects=False)
        assert resp.status_code == 200
        assert "default-src 'self'" in resp.headers["content-security-policy"]
        assert 'href="/alerts"' not in resp.text  # no internal nav for anonymous visitors


def test_public_silence_through_the_api(served: Served) -> None:
    import httpx

    headers = {"Authorization": f"Bearer tok-{CANARY}"}
    with httpx.Client(base_url=served.url, timeout=60, headers=headers) as api:
        made = api.post(
            "/api/v2/alerts/silences",
            json={"service": "jira", "duration": "30m", "comment": "DB move", "public": True},
        )
        assert made.status_code == 201, made.text
        assert made.json()["public"] is True
        far = api.post(
            "/api/v2/alerts/silences",
            json={"service": "jira", "duration": "1h", "starts_at": "2099-01-01T00:00:00Z"},
        )
        assert far.status_code == 422 and "body.starts_at" in far.text
        page = api.get("/api/v2/status/page").json()
    running = [m for m in page["maintenance"] if m["state"] == "in_progress"]
    assert [(m["services"], m["message"]) for m in running] == [(["Ticket desk"], "DB move")]
    desk = next(s for s in page["services"] if s["name"] == "Ticket desk")
    assert desk["status"] == "maintenance"
    assert all("private window" not in m["message"] for m in page["maintenance"])


def test_unconfigured_and_invalid_files(tmp_path: Path) -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    empty = build_page(None, now=now, window=window(now), health={}, uptime={})
    assert not empty.configured and empty.services == [] and empty.state == "unconfigured"
    assert empty.notice is not None and "status-page.yaml" in empty.notice
    assert load_status_page(tmp_path / "none.yaml", ["okta"]) is None
    bad = tmp_path / "status-page.yaml"
    bad.write_text("services:\n  - service: oktaa\n    name: SSO\n")
    with pytest.raises(ValueError, match=r"status-page.yaml:2: services.0.service: .*'okta'"):
        load_status_page(bad, ["okta"])
    bad.write_text("title: x\n")
    assert load_status_page(bad, ["okta"]) == StatusPageFile(title="x")
    example = Path(__file__).resolve().parents[1] / "status-page.example.yaml"
    from integrations.catalog import load_catalog

    loaded = load_status_page(example, load_catalog().names)
    assert loaded is not None and loaded.services


def test_invalid_file_served_without_its_problems(tmp_path: Path) -> None:
    import httpx

    (tmp_path / "status-page.yaml").write_text(f"services:\n  - service: {CANARY}\n    name: X\n")
    (tmp_path / "alerts.db").write_bytes(b"not a database " * 100)  # damaged
    settings = Settings(home=tmp_path, api_token="t")
    with ServiceServer(settings) as server, httpx.Client(base_url=server.url) as anon:
        page = anon.get("/api/v2/status/page").json()
        html = anon.get("/status").text
    assert page["configured"] is False and page["services"] == []
    assert "cannot be read" in page["notice"]
    assert "Incidents and maintenance are unavailable" in page["notice"]
    assert CANARY not in html and CANARY not in str(page) and str(tmp_path) not in html


def test_past_days_are_cached_today_is_live(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    today = _midnight(now)
    with MetricsStore(tmp_path / "m") as store:
        store.append("probes", [probe("okta", today - 2 * DAY + timedelta(hours=1), True)])
        store.flush()
        history = UptimeHistory(store.query, hold_seconds(30))
        first = history.days(["okta"], now)["okta"]
        assert first[-3] is not None and first[-3].uptime_percent == 100.0
        assert first[-3].observed_seconds == 600.0  # held MIN_HOLD_SECONDS, no later probe
        store.append(
            "probes",
            [
                probe("okta", today - 2 * DAY + timedelta(hours=1, minutes=5), False),
                probe("okta", now - timedelta(seconds=1), False),
            ],
        )
        store.flush()
        again = history.days(["okta"], now)["okta"]
    assert again[-3] == first[-3]  # a past day is final: not read again
    assert again[-1] is not None and again[-1].down_seconds >= 0 and again[-1].probes == 1


def test_old_silences_table_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE silences (
            id TEXT PRIMARY KEY, service TEXT, rule TEXT,
            labels_json TEXT NOT NULL DEFAULT '{}', starts_at TEXT NOT NULL,
            ends_at TEXT NOT NULL, created_by TEXT NOT NULL DEFAULT '',
            comment TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, deleted_at TEXT);
        INSERT INTO silences (id, service, starts_at, ends_at, created_by, comment, created_at)
        VALUES ('s1', 'okta', '2026-12-07T10:00:00+00:00', '2099-01-01T00:00:00+00:00',
                'ops', 'old one', '2026-12-07T10:00:00+00:00');
        INSERT INTO meta VALUES ('counter:silence', '1');
        """
    )
    old.close()
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    conn = alert_state.connect(path)
    try:
        (kept,) = list_silences(conn, now)
        assert (kept.id, kept.comment, kept.public, kept.active(now)) == (
            "s1",
            "old one",
            False,
            True,
        )
        later = add_silence(
            conn,
            now=now,
            duration=timedelta(hours=1),
            service="okta",
            starts_at=now + timedelta(hours=2),
            public=True,
        )
        (again,) = [s for s in list_silences(conn, now) if s.id == later.id]
    finally:
        conn.close()
    assert again.public and again.scheduled and again.id == "s2"
    assert not again.active(now) and again.active(now + timedelta(hours=2, minutes=1))
    assert not again.active(now + timedelta(hours=3))


def test_cli_public_scheduled_silence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_home(tmp_path, monkeypatch)
    try:
        done = alerts_cli("silence", "--for", "1h", "-s", "okta", "--start", "2h", "--public")
        assert done.exit_code == 0, done.output
        assert "(public)" in done.output and " from " in done.output
        bad = alerts_cli("silence", "--for", "1h", "-s", "okta", "--start", "soon")
        assert bad.exit_code == 2 and "--start" in bad.output and "Traceback" not in bad.output
    finally:
        get_settings.cache_clear()
    conn = alert_state.connect(tmp_path / "alerts.db")
    try:
        (made,) = list_silences(conn, datetime.now(UTC))
    finally:
        conn.close()
    assert made.public and made.scheduled


def test_build_page_rules() -> None:
    """Overall state, maintenance naming only public services, incidents with nothing
    public left out, an internal incident's public note shown without naming it."""
    from junction.alerting.silences import Silence
    from junction.incidents import Incident, TimelineEntry

    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    config = StatusPageFile.model_validate(
        {"services": [{"service": "okta", "name": "SSO"}, {"service": "jira", "name": "Desk"}]}
    )

    @dataclass(frozen=True)
    class Row:
        status: str
        down: bool = False

    def silence(sid: str, service: str | None, public: bool, start: timedelta) -> Silence:
        begin = now + start
        return Silence(
            sid, service, None, {}, begin, begin + DAY, "ops", f"c-{sid}", now, public=public
        )

    def incident(services: tuple[str, ...], *entries: TimelineEntry) -> Incident:
        return Incident(
            "x-i1",
            "internal title",
            services,
            services[0],
            "warning",
            "open",
            now,
            None,
            list(entries),
        )

    note = TimelineEntry(now, "note", "we are on it", public=True)
    secret = TimelineEntry(now, "firing", f"workday {CANARY}", public=True)  # never public
    page = build_page(
        config,
        now=now,
        window=window(now),
        health={"okta": Row("healthy"), "jira": Row("warning")},
        uptime={},
        silences=[
            silence("s1", "okta", True, -timedelta(hours=1)),
            silence("s2", "workday", True, timedelta(hours=1)),
            silence("s3", "jira", False, -timedelta(hours=1)),
        ],
        incidents=[incident(("workday",), note, secret), incident(("workday",), secret)],
    )
    assert [s.status for s in page.services] == ["maintenance", "degraded"]
    assert page.state == "degraded"
    assert [(m.state, m.services, m.message) for m in page.maintenance] == [
        ("in_progress", ["SSO"], "c-s1"),
        ("scheduled", [], "c-s2"),
    ]
    (shown,) = page.active_incidents
    assert shown.title == "Service disruption" and shown.services == []
    assert [u.message for u in shown.updates] == ["we are on it"]
    assert CANARY not in page.model_dump_json() and "workday" not in page.model_dump_json()
    healthy_page = build_page(
        config, now=now, window=window(now), health={"okta": Row("healthy")}, uptime={}
    )
    assert [s.status for s in healthy_page.services] == ["operational", "unknown"]
    assert healthy_page.state == "operational"
    assert all(len(s.days) == 90 and s.uptime_percent is None for s in healthy_page.services)
    assert {s.uptime_label for s in healthy_page.services} == {"no data"}
    seconds = 86_400.0
    almost = [DayUptime(now.date(), seconds - 0.5, 0.5, 2880)]  # 99.9994 %: not "100%"
    assert (
        build_page(config, now=now, window=[now.date()], health={}, uptime={"okta": almost})
        .services[0]
        .uptime_label
        == "99.99% uptime"
    )


def test_cli_check_and_show(served: Served, tmp_path: Path) -> None:
    """`junction status-page check` prints every problem located (the page only logs them);
    `show` previews the same public model the server serves."""
    import json

    from typer.testing import CliRunner

    from junction.cli import app

    runner = CliRunner()
    bad = tmp_path / "page.yaml"
    bad.write_text("services:\n  - service: oktaa\n    name: SSO\n    colour: red\n")
    done = runner.invoke(app, ["status-page", "check", "--file", str(bad)])
    assert done.exit_code == 2
    assert "page.yaml:2: services.0.service: unknown service 'oktaa'" in done.output
    assert "page.yaml:4: services.0: unknown field 'colour'" in done.output
    assert "Traceback" not in done.output
    env = {"JUNCTION_HOME": str(served.settings.home), "COLUMNS": "200"}
    get_settings.cache_clear()
    try:
        ok = runner.invoke(app, ["status-page", "check"], env=env)
        assert ok.exit_code == 0, ok.output
        assert "2 services shown: okta as 'Single sign-on', jira as 'Ticket desk'" in ok.output
        shown = runner.invoke(app, ["status-page", "show", "--json"], env=env)
        assert shown.exit_code == 0, shown.output
        page = json.loads(shown.output)
        table = runner.invoke(app, ["status-page", "show"], env=env)
        assert table.exit_code == 0, table.output
    finally:
        get_settings.cache_clear()
    assert [s["name"] for s in page["services"]] == ["Single sign-on", "Ticket desk"]
    # The same days as the server's (today's bar is live: not compared).
    assert page["services"][0]["days"][:-1] == served.page["services"][0]["days"][:-1]
    assert CANARY not in shown.output and "Single sign-on" in table.output
