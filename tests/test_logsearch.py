"""Log search (``junction.logsearch``): matching, filters, keyset paging, partition pruning,
and secrets never shown, through the core, ``junction logs search`` and the API.

The canary tests put a credential into the store the two ways it can get there: a vendor
that echoes it in an error (the client redacts it at write time) and a defective writer
that stores it in clear; then they search for it and for the text around it.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest
from markupsafe import escape
from typer.testing import CliRunner, Result

from integrations.redaction import register_secret
from junction import logindex
from junction.cli import app
from junction.health import run_sweep
from junction.logquery import LogQuery, LogQueryError, encode_cursor, parse_query
from junction.logsearch import next_query, register_configured_secrets, search, warm_summaries
from junction.settings import Settings, get_settings
from junction.store import MetricsStore
from tests.helpers import run_junction
from tests.service_helpers import ApiServer, ServiceServer, service_settings
from tests.test_service_web import HOSTILE, logged_in

if TYPE_CHECKING:  # the sandbox takes over a second to import; the fixtures bring it
    from integrations.sandbox.app import SandboxServer

NOW = datetime.now(UTC).replace(microsecond=0)


def call(ts: datetime, service: str = "okta", **fields: Any) -> dict[str, Any]:
    """A ``calls`` row (a successful GET unless ``fields`` say otherwise)."""
    row: dict[str, Any] = {
        "ts": ts,
        "service": service,
        "action": "get_user",
        "method": "GET",
        "path": "/api/v1/users/1",
        "status": 200,
        "ok": True,
        "latency_ms": 12.5,
        "attempts": 1,
        "breaker_state": "closed",
        "source": "workflow",
    }
    row.update(fields)
    return row


def alert(ts: datetime, service: str, message: str, state: str = "firing") -> dict[str, Any]:
    """An ``alerts`` row."""
    return {
        "ts": ts,
        "fingerprint": f"fp-{service}",
        "service": service,
        "rule": "availability",
        "severity": "critical",
        "state": state,
        "message": message,
        "labels_json": "{}",
    }


def run(ts: datetime, run_id: str, status: str = "completed", error: str | None = None) -> dict:
    """A ``workflow_runs`` row."""
    return {
        "run_id": run_id,
        "workflow": "employee_onboarding",
        "started_at": ts,
        "status": status,
        "duration_ms": 800.0,
        "steps": 3,
        "retries": 0,
        "fallbacks": 0,
        "error": error,
    }


def write(root: Path, **tables: list[dict[str, Any]]) -> None:
    """Append rows to the store at ``root`` and publish them (a writer of its own)."""
    with MetricsStore(root) as store:
        for table, rows in tables.items():
            store.append(table, rows)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricsStore]:
    with MetricsStore(tmp_path / "metrics") as st:
        yield st


# --------------------------------------------------------------------------- the core


def test_text_is_a_literal_case_insensitive_substring(store: MetricsStore) -> None:
    write(
        store.root,
        calls=[
            call(NOW - timedelta(minutes=1), error="Quota 100% used", ok=False, status=429),
            call(NOW - timedelta(minutes=2), error="quota 1000 used", ok=False, status=429),
            call(NOW - timedelta(minutes=3), path="/a_b"),
            call(NOW - timedelta(minutes=4), path="/axb"),
            call(NOW - timedelta(minutes=5), error="back\\slash", ok=False, status=500),
        ],
    )

    def found(text: str) -> list[str]:
        return [i.message or i.request or "" for i in search(store, LogQuery(text=text)).items]

    assert found("QUOTA 100%") == ["Quota 100% used"]  # % is no wildcard, case ignored
    assert found("a_b") == ["GET /a_b"]  # nor is _
    assert found("k\\s") == ["back\\slash"]
    assert found("'; DROP TABLE calls; --") == []
    assert len(found("")) == 5


def test_filters_service_status_kind_and_time(store: MetricsStore) -> None:
    write(
        store.root,
        calls=[
            call(NOW - timedelta(minutes=10), "okta", ok=False, status=503, error="unavailable"),
            call(NOW - timedelta(minutes=20), "jira", run_id="run-1"),
            call(NOW - timedelta(hours=3), "okta", ok=False, status=None, error="timed out"),
        ],
        alerts=[alert(NOW - timedelta(minutes=5), "okta", "okta is down")],
        workflow_runs=[
            run(NOW - timedelta(minutes=21), "run-1", "failed", "step create failed"),
            run(NOW - timedelta(minutes=30), "run-2"),
        ],
    )

    def kinds(**kw: Any) -> list[str]:
        page = search(store, parse_query(**kw, now=NOW + timedelta(seconds=1)))
        return [f"{i.kind}:{i.service or i.workflow}:{i.status}" for i in page.items]

    assert kinds() == [
        "alert:okta:firing",
        "call:okta:503",
        "call:jira:200",
        "workflow:employee_onboarding:failed",
        "workflow:employee_onboarding:completed",
        "call:okta:",
    ]
    assert kinds(since="1h", status="error") == [
        "alert:okta:firing",
        "call:okta:503",
        "workflow:employee_onboarding:failed",
    ]
    assert kinds(status="503") == ["call:okta:503"]
    assert kinds(status="ok", kind="calls") == ["call:jira:200"]
    assert kinds(services=["okta"], kind="calls") == ["call:okta:503", "call:okta:"]
    # A run belongs to the services it called.
    assert kinds(services=["jira"]) == ["call:jira:200", "workflow:employee_onboarding:failed"]
    assert kinds(until="2h") == ["call:okta:"]
    assert kinds(text="TIMED", kind="calls") == ["call:okta:"]
    assert kinds(text="step create", kind="workflows") == ["workflow:employee_onboarding:failed"]
    assert kinds(text="run-1") == ["call:jira:200", "workflow:employee_onboarding:failed"]
    iso = (NOW - timedelta(minutes=15)).isoformat()
    assert kinds(since=iso, kind="alerts") == ["alert:okta:firing"]


def test_keyset_pages_stay_stable_while_rows_are_appended(store: MetricsStore) -> None:
    # Three days, and ties on ts: the cursor orders by (ts, id).
    rows = [call(NOW - timedelta(hours=h // 2), error=f"e{h}", ok=False) for h in range(120)]
    write(store.root, calls=rows)
    query: LogQuery | None = LogQuery(text="e", limit=50)
    seen: list[str] = []
    stamps: list[datetime] = []
    pages = 0
    while query is not None and pages < 10:
        page = search(store, query)
        pages += 1
        seen += [i.id for i in page.items]
        stamps += [i.ts for i in page.items]
        # New rows arrive between pages: they are newer than every cursor, never repeated.
        write(store.root, calls=[call(datetime.now(UTC), error="e-new", ok=False)])
        query = next_query(query, page)
    assert pages == 3
    assert len(seen) == len(set(seen)) == 120
    assert stamps == sorted(stamps, reverse=True)


def test_day_partitions_are_read_newest_first_only_as_needed(store: MetricsStore) -> None:
    days = [NOW - timedelta(days=d) for d in range(12)]
    write(store.root, calls=[call(ts, error=f"day {i}", ok=False) for i, ts in enumerate(days)])
    write(store.root, calls=[call(NOW - timedelta(days=11, minutes=1), error="the oldest")])
    recent = search(store, parse_query("day", since="1h", now=NOW + timedelta(seconds=1)))
    assert [i.message for i in recent.items] == ["day 0"]
    # The last hour's days: one, or two in the first hour after midnight UTC.
    assert recent.partitions == len({NOW.date(), (NOW - timedelta(hours=1)).date()})
    # One row and the look-ahead row that tells whether there is a next page: two days.
    first = search(store, LogQuery(text="day", limit=1))
    assert first.partitions == 2 and first.next_cursor is not None
    # A match only in the oldest partition is found, and the pruned plan agrees with a
    # full scan.
    for prune in (True, False):
        oldest = search(store, LogQuery(text="the OLDEST"), prune=prune)
        assert [i.message for i in oldest.items] == ["the oldest"]
    everything = search(store, LogQuery(text="day", limit=500))
    assert everything.partitions > 1
    assert [i.id for i in everything.items] == [
        i.id for i in search(store, LogQuery(text="day", limit=500), prune=False).items
    ]


def test_a_page_stops_at_its_scan_budget_and_goes_on_from_there(store: MetricsStore) -> None:
    for day in range(6):  # one segment per day, a match only on days 0 and 5
        rows = [call(NOW - timedelta(days=day, minutes=m), error=f"d{day}") for m in range(3)]
        if day in (0, 5):
            rows.append(call(NOW - timedelta(days=day, minutes=9), error=f"needle {day}"))
        write(store.root, calls=rows)
    everything = search(store, LogQuery(text="needle"), scan_bytes=None)
    assert [i.message for i in everything.items] == ["needle 0", "needle 5"]
    # A budget of one byte reads one group of days per page; each page says how far back
    # it searched, and following the cursors finds the same entries, each once. Without
    # the text summaries every group of days is read; with them, the days between are not.
    for index, min_edges in ((False, 2), (True, 1)):
        query: LogQuery | None = LogQuery(text="needle")
        found: list[str | None] = []
        edges: list[datetime] = []
        for _ in range(20):  # bounded: a cursor that did not move on would loop forever
            if query is None:
                break
            page = search(store, query, scan_bytes=1, index=index)
            assert page.partitions == 1
            found += [i.message for i in page.items]
            if page.searched_to is not None:
                edges.append(page.searched_to)
            query = next_query(query, page)
        assert query is None and found == ["needle 0", "needle 5"]
        assert len(edges) >= min_edges and edges == sorted(edges, reverse=True)


def same_as_full_scan(store: MetricsStore, query: LogQuery) -> list[str]:
    """The ids a search finds, checked against one full scan without summaries."""
    found = search(store, query, scan_bytes=None)
    full = search(store, query, prune=False)
    assert [i.id for i in found.items] == [i.id for i in full.items], query
    assert found.next_cursor == full.next_cursor
    return [i.message or "" for i in found.items]


def test_text_summaries_skip_exactly_what_a_full_scan_skips(store: MetricsStore) -> None:
    # Ten days, a segment each; texts that repeat, and a few that need Unicode case folding.
    for day in range(10):
        ts = NOW - timedelta(days=day, minutes=5)
        rows = [
            call(ts - timedelta(seconds=s), error=f"HTTP 503 #{s % 3}", ok=False) for s in range(5)
        ]
        rows.append(call(ts, error="Straße İstanbul KELVIN \u212a", ok=False))
        if day == 8:
            rows.append(call(ts, path="/only/in/an/old/day", error="old-needle", ok=False))
        write(store.root, calls=rows, alerts=[alert(ts, "okta", f"alert of day {day}")])
    needles = (
        "old-needle",
        "ONLY/IN",
        "no such text",
        "http 503 #2",
        "strasse",
        "straße",
        "i̇stanbul",
        "kelvin k",
        "\u212a",
        "503",
        "alert of day 9",
        "_",
        "%",
    )
    for text in needles:
        same_as_full_scan(store, LogQuery(text=text, limit=500))
    # Every day's summaries exist now; a text no summary holds reads no segment at all,
    # and says so at once: no cursor, no "searched to".
    nothing = search(store, LogQuery(text="no such text"), scan_bytes=1)
    assert nothing.items == [] and nothing.partitions == 0
    assert nothing.next_cursor is None and nothing.searched_to is None
    assert same_as_full_scan(store, LogQuery(text="old-needle")) == ["old-needle"]
    assert search(store, LogQuery(text="OLD-NEEDLE")).partitions == 1  # one day read
    # A late row in an old day is a new segment: summarised when first seen, found.
    write(store.root, calls=[call(NOW - timedelta(days=6, hours=1), error="late-needle", ok=False)])
    assert same_as_full_scan(store, LogQuery(text="late-needle")) == ["late-needle"]
    # Compaction replaces the segments: new summaries, and the old ones are removed.
    before = sorted(p.name for p in (store.root / logindex.INDEX_DIR).rglob("*.json"))
    store.compact()
    for text in (*needles, "late-needle"):
        same_as_full_scan(store, LogQuery(text=text, limit=500))
    after = sorted(p.name for p in (store.root / logindex.INDEX_DIR).rglob("*.json"))
    segments = sorted(p.name + ".json" for p in store.root.glob("*/date=*/*.parquet"))
    assert after == segments and after != before
    # A process with no summaries in memory reads them from disk; a damaged one is rebuilt.
    logindex.forget()
    some = next((store.root / logindex.INDEX_DIR).rglob("*.json"))
    some.write_text("{not json")
    assert same_as_full_scan(store, LogQuery(text="old-needle")) == ["old-needle"]
    assert json.loads(some.read_text())["v"] == logindex._VERSION


def test_summaries_are_private_and_skip_columns_of_ids(
    store: MetricsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logindex, "SMALL", 10)
    rows = [call(NOW - timedelta(seconds=s), path=f"/users/{s:05d}") for s in range(60)]
    write(store.root, calls=rows)
    assert len(same_as_full_scan(store, LogQuery(text="/users/00042"))) == 1
    (summary,) = (store.root / logindex.INDEX_DIR).rglob("*.json")
    columns = json.loads(summary.read_text())["columns"]
    # A value per row: only the characters they use are kept.
    assert columns["path"] == "/0123456789ersu"
    assert columns["action"] == ["get_user"] and columns["status"] == ["200"]
    # A text with a character no path, action... has is ruled out without a scan.
    assert search(store, LogQuery(text="/users/x1")).partitions == 0
    assert search(store, LogQuery(text="/USERS/00042")).partitions == 1
    for path in [summary, *summary.parents][: len(summary.relative_to(store.root).parts)]:
        assert path.stat().st_mode & 0o077 == 0, path
    # A large Parquet dictionary tells from the footer alone, without reading the column.
    monkeypatch.setattr(logindex, "SMALL", 10_000)
    monkeypatch.setattr(logindex, "DICT_BYTES", 64)
    summary.unlink()
    logindex.forget()
    assert len(same_as_full_scan(store, LogQuery(text="/USERS/00017"))) == 1
    columns = json.loads(summary.read_text())["columns"]
    assert columns["path"] == "/0123456789ersu" and columns["method"] == ["GET"]
    for text in ("/users/x1", "Ｓ", "\u212a", "00017"):  # Unicode is DuckDB's to fold
        same_as_full_scan(store, LogQuery(text=text))


def test_summaries_never_hold_a_secret(store: MetricsStore) -> None:
    canary, later = "canary-index-Tz6yU1oP4aSd", "canary-later-Gh8jK3lM5nBv"
    register_secret(canary)
    write_defective(store.root, (canary,))
    write(store.root, calls=[call(NOW, error=f"leaked {later}", ok=False)])
    for text in ("leaked", canary[:12], "never there"):  # summarised by the first search
        same_as_full_scan(store, LogQuery(text=text))
    # A secret registered after its summary was written is dropped from it when read.
    register_secret(later)
    logindex.forget()
    for text in ("leaked", later[:12]):
        same_as_full_scan(store, LogQuery(text=text))
    index_files = list((store.root / logindex.INDEX_DIR).rglob("*"))
    assert any(p.suffix == ".json" for p in index_files)
    for path in index_files:
        if path.is_file():
            assert_no_canary(path.read_text(), canary)
            assert_no_canary(path.read_text(), later)


def test_start_up_summarises_every_segment_without_a_configured_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "canary-warm-Qa2wS4eD6rFt"
    monkeypatch.setenv("JUNCTION_JIRA_TOKEN", canary)  # configured, not yet registered
    write_defective(tmp_path / "metrics", (canary,))
    assert warm_summaries(Settings(home=tmp_path)) == 3  # one segment per table
    summaries = list((tmp_path / "metrics" / logindex.INDEX_DIR).rglob("*.json"))
    assert len(summaries) == 3
    for path in summaries:
        assert_no_canary(path.read_text(), canary)
    assert warm_summaries(Settings(home=tmp_path / "none")) == 0  # no store: nothing made
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "-5m"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "1h", "until": "2h"}, "until"),
        ({"status": "42"}, "status"),
        ({"status": "failed"}, "status"),
        ({"kind": "probes"}, "kind"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, "cursor"),
        ({"text": "x" * 501}, "text"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(LogQueryError) as info:
        parse_query(**kwargs)
    assert info.value.field == field


def test_results_are_redacted_whatever_the_store_holds(store: MetricsStore) -> None:
    canary = "canary-core-Zq8wX3vL0pTn"
    register_secret(canary)
    leaky = f"upstream rejected {canary} ({quote(canary)})"
    write(
        store.root,
        calls=[call(NOW, path=f"/users/{canary}", error=leaky, ok=False, status=401)],
        alerts=[alert(NOW, "okta", leaky)],
        workflow_runs=[run(NOW, f"run-{canary}", "failed", leaky)],
    )
    for text in ("upstream rejected", canary, ""):
        page = search(store, LogQuery(text=text))
        dumped = json.dumps([i.to_json() for i in page.items])
        assert_no_canary(dumped, canary)
        if text != canary:  # the secret itself is redacted before it is matched
            assert len(page.items) == 3 and "upstream rejected ***" in dumped


def test_configured_credentials_are_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary, admin = "canary-env-Vb7nR2kQ9sYd", "canary-admin-Pw3eT6yU8iOz"
    # A process that built no client still redacts what the environment configures.
    monkeypatch.setenv("JUNCTION_SERVICENOW_PASSWORD", canary)
    register_configured_secrets(Settings(home=tmp_path, sandbox_admin_token=admin))
    leak = f"bad password {canary}, admin {admin}"
    write(tmp_path / "metrics", calls=[call(NOW, error=leak, ok=False)])
    with MetricsStore(tmp_path / "metrics") as st:
        shown = json.dumps(search(st, LogQuery()).items[0].to_json())
    assert_no_canary(shown, canary)
    assert_no_canary(shown, admin)


def assert_no_canary(text: str, canary: str) -> None:
    """``canary`` appears in ``text`` in none of the encodings a response may carry."""
    b64 = base64.b64encode(canary.encode()).decode()
    for form in (canary, quote(canary, safe=""), b64, b64.rstrip("="), canary.lower()):
        assert form not in text, form


def test_cursor_round_trip() -> None:
    cursor = encode_cursor(NOW, "abc")
    assert LogQuery(cursor=cursor).cursor == cursor


# --------------------------------------------------------------------------- canaries end to end

CANARY = "canary-echo-Hq4mT8wZ2xPb"  # github's token: the vendor echoes it in its error
STORED = "canary-clear-Ld5sK1nV7rJc"  # okta's token: a defective writer stores it in clear


async def _echo(req: Any) -> Any:
    from integrations.sandbox.api import json_response

    return json_response(
        {"message": f"rejected credentials {req.headers.get('authorization')}"}, 401
    )


@pytest.fixture(scope="module")
def echoing() -> Iterator[SandboxServer]:
    """A sandbox whose github answers 401 echoing the Authorization header it got."""
    from integrations.sandbox.api import VendorRoutes
    from integrations.sandbox.app import SandboxServer

    with SandboxServer(port=0, smtp_port=None) as server:
        routes = VendorRoutes("github")
        routes.route("GET", "/user", public=True)(_echo)
        server.app.add_routes(routes)
        yield server


def canary_env(sandbox_url: str, canary: str, stored: str) -> dict[str, str]:
    return {
        "JUNCTION_SANDBOX_URL": sandbox_url,
        "JUNCTION_GITHUB_BASE_URL": f"{sandbox_url}/github",
        "JUNCTION_GITHUB_TOKEN": canary,
        "JUNCTION_OKTA_TOKEN": stored,
    }


def write_defective(root: Path, secrets: tuple[str, ...]) -> None:
    """Rows holding ``secrets`` in clear, URL-encoded and base64, as a buggy writer would."""
    forms = " ".join(
        f"{s} {quote(s, safe='')} {base64.b64encode(s.encode()).decode()}" for s in secrets
    )
    write(
        root,
        calls=[call(NOW, "okta", path=f"/users/{secrets[0]}", error=f"leaked {forms}", ok=False)],
        alerts=[alert(NOW, "okta", f"leaked {forms}")],
        workflow_runs=[run(NOW, "run-leak", "failed", f"leaked {forms}")],
    )


def echo_call(home: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check github through the real client against the echoing sandbox, recorded in the
    store under ``home`` (the client redacts the echoed token at write time)."""
    for key, value in canary_env(sandbox_url, CANARY, STORED).items():
        monkeypatch.setenv(key, value)
    settings = Settings(home=home, sandbox_url=sandbox_url)
    with MetricsStore(settings.metrics_dir) as st:
        _, results = asyncio.run(run_sweep(["github"], settings=settings, store=st))
    assert not results[0].ok and "rejected credentials" in (results[0].error or "")
    monkeypatch.delenv("JUNCTION_OKTA_TOKEN")  # the CLI below gets it from its own env


def test_cli_never_shows_a_canary(
    echoing: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo_call(tmp_path, echoing.url, monkeypatch)
    write_defective(tmp_path / "metrics", (CANARY, STORED))
    env = canary_env(echoing.url, CANARY, STORED)
    # A fresh process, as a user runs it: nothing registered the canaries beforehand.
    table_out = run_junction(["logs", "search", ""], env, home=tmp_path)
    assert table_out.returncode == 0, table_out.stderr
    assert "leaked ***" in table_out.stdout and "run-leak" in table_out.stdout
    assert "rejected credentials ***" in table_out.stdout
    # In-process: the okta token is only in the environment here too.
    monkeypatch.setenv("JUNCTION_OKTA_TOKEN", STORED)
    with cli_home(tmp_path, monkeypatch):
        json_out = logs_cli("search", STORED, "--json")
        bad_since = logs_cli("search", "x", "--since", STORED)
    assert bad_since.exit_code == 2 and bad_since.output.startswith("error: --since: '***'")
    assert json_out.exit_code == 0, json_out.output
    # The canary searched for is redacted before it is matched: it finds redacted rows,
    # never the rows that hold it in clear.
    assert [i["service"] for i in json.loads(json_out.output)["items"]] == ["github"]
    for text in (table_out.stdout + table_out.stderr, json_out.output, bad_since.output):
        assert_no_canary(text, CANARY)
        assert_no_canary(text, STORED)


@contextmanager
def cli_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read from ``JUNCTION_HOME=home`` inside the block (in-process commands)."""
    monkeypatch.delenv("JUNCTION_STORE_DIR", raising=False)
    monkeypatch.setenv("JUNCTION_HOME", str(home))
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()


def logs_cli(*args: str) -> Result:
    """``junction logs ARGS`` in-process (``COLUMNS`` set: output is not a terminal)."""
    return CliRunner().invoke(app, ["logs", *args], env={"COLUMNS": "200"})


def test_cli_table_cursor_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "metrics",
        calls=[call(NOW - timedelta(seconds=s), error=f"[red]boom\x1b[2J{s}") for s in range(3)],
    )
    with cli_home(tmp_path, monkeypatch):
        out = logs_cli("search", "BOOM", "--limit", "2")
        assert out.exit_code == 0, out.output
        # Vendor text is shown as text: no rich markup, no terminal control codes.
        assert "[red]boom?[2J0" in out.output and "[2J2" not in out.output
        assert "\x1b" not in out.output
        cursor = out.output.split("--cursor ")[1].split()[0]
        older = logs_cli("search", "boom", "--cursor", cursor)
        assert "[red]boom?[2J2" in older.output and "[2J0" not in older.output
        assert "--cursor" not in older.output  # the last page
        none = logs_cli("search", "nothing like it")
        assert none.exit_code == 0 and none.output.strip() == "no log entries match"
        bad = logs_cli("search", "x", "--since", "yesterday")
        assert bad.exit_code == 2
        assert bad.output.strip().startswith("error: --since: 'yesterday' is neither")
        assert len(bad.output.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the API

API = "/api/v2/logs/search"


@pytest.fixture(scope="module")
def logs_server(
    echoing: SandboxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """A service with a home of its own, so its store holds only this module's rows."""
    settings = service_settings(tmp_path_factory.mktemp("logs-service"), echoing)
    with ServiceServer(settings) as server:
        yield server.info()


def test_api_never_shows_a_canary(
    logs_server: ApiServer, echoing: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary, stored = CANARY + "-api", STORED + "-api"
    for key, value in canary_env(echoing.url, canary, stored).items():
        monkeypatch.setenv(key, value)
    with logs_server.client() as api:
        checked = api.post("/api/v2/integrations/github/check")
        assert checked.status_code == 200 and "rejected credentials" in checked.text
        write_defective(logs_server.settings.metrics_dir, (canary, stored))
        # First, before any search ran: an error quoting what was sent redacts it too.
        bad = api.get(API, params={"since": stored})
        assert bad.status_code == 422 and "query.since: '***'" in bad.text, bad.text
        bodies = [bad.text]
        for params in ({"q": "rejected"}, {"q": "leaked"}, {"q": stored}, {"kind": "alerts"}):
            resp = api.get(API, params=params)
            assert resp.status_code == 200, resp.text
            bodies.append(resp.text)
    assert "rejected credentials ***" in bodies[1]
    assert len(json.loads(bodies[2])["items"]) == 3
    for body in bodies:
        assert_no_canary(body, canary)
        assert_no_canary(body, stored)


def test_api_pages_and_names_bad_fields(logs_server: ApiServer) -> None:
    write(
        logs_server.settings.metrics_dir,
        calls=[call(NOW - timedelta(seconds=s), "pagesvc", error=f"page {s}") for s in range(5)],
    )
    with logs_server.client() as api:
        first = api.get(API, params={"service": "pagesvc", "limit": 3}).json()
        assert [i["message"] for i in first["items"]] == ["page 0", "page 1", "page 2"]
        rest = api.get(API, params={"service": "pagesvc", "cursor": first["next_cursor"]})
        assert [i["message"] for i in rest.json()["items"]] == ["page 3", "page 4"]
        assert rest.json()["next_cursor"] is None
        for params, field in (
            ({"since": "soon"}, "query.since"),
            ({"status": "teapot"}, "query.status"),
            ({"cursor": "zz"}, "query.cursor"),
            ({"limit": 501}, "query.limit"),
            ({"kind": "probes"}, "query.kind"),
            ({"q": "x" * 501}, "query.q"),
        ):
            resp = api.get(API, params=params)
            assert resp.status_code == 422, resp.text
            error = resp.json()["error"]
            assert error["message"].startswith(f"{field}:"), error
        assert logs_server.client(auth=False).get(API).status_code == 401


# --------------------------------------------------------------------------- the page


def test_page_searches_pages_and_escapes(logs_server: ApiServer) -> None:
    write(
        logs_server.settings.metrics_dir,
        calls=[
            call(NOW - timedelta(seconds=s), HOSTILE, error=f"pagetest {s} {HOSTILE}", ok=False)
            for s in range(3)
        ],
        alerts=[alert(NOW, "pagetest-svc", f"pagetest alert {HOSTILE}")],
    )
    with httpx.Client(base_url=logs_server.url, timeout=30.0) as anonymous:
        resp = anonymous.get("/logs")
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    with logged_in(logs_server) as browser:
        first = browser.get("/logs", params={"q": "PAGETEST", "kind": "calls", "limit": "2"})
        assert first.status_code == 200, first.text
        assert first.text.count('data-kind="call"') == 2
        assert "<script>alert(1)" not in first.text and "<img src=x" not in first.text
        assert str(escape(HOSTILE)) in first.text or html.escape(HOSTILE) in first.text
        older = re.search(r'<a href="([^"]+)" id="log-older"', first.text)
        assert older is not None
        second = browser.get(html.unescape(older.group(1)))
        assert second.text.count('data-kind="call"') == 1 and "pagetest 2" in second.text
        assert 'id="log-older"' not in second.text and 'id="log-newest"' in second.text
        # The text typed in comes back escaped in the form; a bad field is named.
        hostile = browser.get("/logs", params={"q": HOSTILE, "since": "soon"})
        assert hostile.status_code == 422
        assert "since: &#39;soon&#39; is neither" in hostile.text
        assert "<script>alert(1)" not in hostile.text
        empty = browser.get("/logs", params={"q": "no such text anywhere"})
        assert "No log entries match." in empty.text


def test_page_never_shows_a_canary(logs_server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = STORED + "-page"
    monkeypatch.setenv("JUNCTION_JIRA_TOKEN", stored)
    write_defective(logs_server.settings.metrics_dir, (stored,))
    with logged_in(logs_server) as browser:
        bad = browser.get("/logs", params={"since": stored})  # quoted back in the error line
        pages = [browser.get("/logs", params={"q": q}).text for q in ("leaked", stored, "")]
    assert bad.status_code == 422 and "since: &#39;***&#39;" in bad.text
    assert "leaked ***" in pages[0]
    pages.append(bad.text)
    for text in pages:
        assert_no_canary(text, stored)
