"""The service page and its API: one service in depth over a window.

The logic (:mod:`junction.service.detail`, :mod:`junction.service.detail_band`) against
stores of its own; the API and the page against the session service (``api_server``)
after real health checks through the sandbox, failures injected there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest

from junction.alerting.rules import SlaPolicy
from junction.alerting.statuspage import StatusPagePoller
from junction.service.detail import (
    ERROR_TEXT_MAX,
    Window,
    bucket_seconds,
    latency_and_errors,
    parse_window,
    restore_sla,
    sla_view,
)
from junction.service.detail_band import TtlCache, forecast_band
from junction.service.detail_vendor import VendorIncidentView, VendorView, vendor_view
from junction.service.pages.service import http_url
from junction.service.web import render_fragment
from junction.store import MetricsStore
from tests.helpers import sandbox_settings, set_faults
from tests.service_helpers import ApiServer
from tests.test_service_core import _call as core_call
from tests.test_service_web import browser, logged_in

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

SERVICE = "freshdesk"  # no other test records calls of it in the session service
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)> javascript:alert(3)"
CANARY = "CANARY9f3b2c71d0"


def _call(ts: datetime, ok: bool, latency: float, **extra: Any) -> dict[str, Any]:
    row = core_call(SERVICE, ok, latency, 0.0)
    row.update(ts=ts, path="/api/v2/tickets", status=200 if ok else 503)
    row["error"] = None if ok else "Service Unavailable"
    row.update(extra)
    return row


# --- the logic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(None, 3600), ("", 3600), ("3600", 3600), ("1h", 3600), ("24h", 86400), ("7d", 604800)],
)
def test_windows_are_seconds_or_durations(text: str | None, seconds: int) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize(("text", "says"), [("soon", "not a duration"), ("30d", "outside")])
def test_a_bad_window_says_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_window(text)


def test_buckets_grow_with_the_window() -> None:
    assert [bucket_seconds(s) for s in (3600, 6 * 3600, 86400, 7 * 86400)] == [
        30,
        300,
        900,
        7200,
    ]


def test_percentiles_error_mix_and_recent_errors_match_the_rows(tmp_path: Any) -> None:
    now = datetime.now(UTC)
    rng = np.random.default_rng(7)
    latencies = rng.lognormal(4.5, 0.6, 200)
    rows = [
        _call(now - timedelta(seconds=10 + i * 15), True, float(v)) for i, v in enumerate(latencies)
    ]
    rows += [_call(now - timedelta(seconds=20 + i * 60), False, 5.0) for i in range(6)]
    rows += [
        _call(
            now - timedelta(seconds=30),
            False,
            30000.0,
            status=None,
            error_class="Timeout",
            error=f"read timed out; Authorization: Bearer {CANARY}",
        ),
        _call(now - timedelta(hours=3), False, 1.0),  # outside the window
    ]
    with MetricsStore(tmp_path) as store:
        store.append("calls", rows)
        store.flush()
        found = latency_and_errors(store, SERVICE, Window.ending(3600, now))
    assert found.overall.calls == 207 and found.overall.failures == 7
    expected = np.quantile(latencies, [0.5, 0.95, 0.99])  # linear, as quantile_cont
    got = [found.overall.p50_ms, found.overall.p95_ms, found.overall.p99_ms]
    assert got == pytest.approx(expected, abs=1e-3)
    assert sum(b.calls for b in found.buckets) == 207
    assert len(found.buckets) in (120, 121)  # 30 s buckets, the partial ones at both ends
    assert [(e.key, e.count) for e in found.errors_by_class] == [("ServerError", 6), ("Timeout", 1)]
    assert [(e.key, e.count) for e in found.errors_by_status] == [("503", 6), ("none", 1)]
    assert found.errors_by_class[0].share == pytest.approx(6 / 7, abs=1e-6)
    newest = found.recent_errors[0]
    assert newest.error_class == "ServerError"  # 20 s ago, the timeout 30 s ago
    timeout = found.recent_errors[1]
    assert timeout.status is None and timeout.error is not None
    assert CANARY not in timeout.error and "***" in timeout.error


def test_sla_counts_probes_and_live_calls_and_burns_per_window(tmp_path: Any) -> None:
    now = datetime.now(UTC)
    calls = [_call(now - timedelta(minutes=i), i % 10 != 0, 50.0) for i in range(120)]  # 12 bad
    calls += [_call(now - timedelta(minutes=i), True, 50.0, source="probe") for i in range(30)]
    probes = [
        {"ts": now - timedelta(minutes=i), "sweep_id": "s", "service": SERVICE, "ok": i >= 3,
         "status": 200, "latency_ms": 40.0, "breaker_state": "closed"}
        for i in range(30)
    ]  # fmt: skip
    with MetricsStore(tmp_path) as store:
        store.append("calls", calls)
        store.append("probes", probes)
        store.flush()
        restored = restore_sla(store, SERVICE, SlaPolicy(target=0.99), now)
    hour = sla_view(restored, Window.ending(3600, now))
    day = sla_view(restored, Window.ending(86400, now))
    # Probes once (the probes table, not their calls rows) plus the live calls.
    assert (hour.total, hour.failed) == (150, 15) == (day.total, day.failed)
    assert hour.uptime == pytest.approx(135 / 150)
    failed_hour = 6 + 3  # minutes 0, 10 ... 50 of the calls, three probes
    assert hour.window_burn_rate == pytest.approx(failed_hour / 90 / 0.01)
    assert day.window_burn_rate == pytest.approx(15 / 150 / 0.01)
    assert [b.name for b in hour.burn_rates] == ["fast", "slow"]


def _hourly_history(store: MetricsStore, now: datetime, hours: int, spike_at: int) -> None:
    rng = np.random.default_rng(3)
    rows = []
    for h in range(hours):
        base = 100.0 + 20.0 * np.sin(2 * np.pi * h / 24)
        for k in range(6):
            ts = now - timedelta(hours=h, minutes=k * 10)
            value = base * (6.0 if h == spike_at else 1.0) * float(rng.lognormal(0, 0.05))
            rows.append(_call(ts, True, value))
    store.append("calls", rows)
    store.flush()


def test_long_windows_get_a_prophet_band_that_flags_a_spike(tmp_path: Any) -> None:
    now = datetime.now(UTC).replace(minute=55, second=0, microsecond=0)
    with MetricsStore(tmp_path) as store:
        _hourly_history(store, now, hours=8 * 24, spike_at=5)
        band = forecast_band(store, SERVICE, Window.ending(86400, now))
    assert band.method == "prophet", band.reason
    assert band.step_seconds == 3600
    flagged = [p.ts for p in band.points if p.anomaly]
    spike = (now - timedelta(hours=5)).replace(minute=0)
    assert spike in flagged
    assert band.anomalies == len(flagged) <= 3


def test_short_windows_and_thin_history_fall_back_and_say_so(tmp_path: Any) -> None:
    now = datetime.now(UTC)
    with MetricsStore(tmp_path) as store:
        store.append(
            "calls",
            [_call(now - timedelta(minutes=5 * i), True, 100.0 + i % 7) for i in range(260)],
        )
        store.flush()
        streaming = forecast_band(store, SERVICE, Window.ending(6 * 3600, now))
        thin = forecast_band(store, SERVICE, Window.ending(7 * 86400, now))
    assert streaming.method == "streaming" and "too short" in streaming.reason
    assert all(p.score is not None for p in streaming.points if p.value is not None)
    # 22 hours of history: Prophet is not fitted; the robust band stands in and says why.
    assert thin.method in ("band", "streaming")
    assert thin.reason.startswith("Prophet not fitted")


async def test_one_computation_per_key_while_it_runs_and_within_the_ttl() -> None:
    clock = [0.0]
    cache = TtlCache(ttl=60, clock=lambda: clock[0])
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "band"

    first = asyncio.ensure_future(cache.get("k", slow))
    await asyncio.to_thread(started.wait, 10)
    second = asyncio.ensure_future(cache.get("k", slow))
    gone = asyncio.ensure_future(cache.get("k", slow))
    await asyncio.sleep(0)
    gone.cancel()  # a page closed while its band was computed: the others still get it
    release.set()
    assert await first == await second == "band"
    assert gone.cancelled() and cache.computed == 1
    assert await cache.get("k", slow) == "band" and cache.computed == 1
    clock[0] = 61
    assert cache.peek("k") is None
    assert await cache.get("k", slow) == "band" and cache.computed == 2


async def test_vendor_state_comes_from_the_pollers_cache_only(sb: SandboxServer) -> None:
    settings = sandbox_settings(sb)
    poller = StatusPagePoller(settings)
    try:
        url = poller.url(SERVICE)
        assert vendor_view(SERVICE, None, url).state == "not_polled"
        assert vendor_view(SERVICE, poller, url).state == "not_polled"  # never fetches
        assert poller.fetches == 0
        await poller.get(SERVICE)
        seen = vendor_view(SERVICE, poller, url)
        assert seen.state == "operational" and seen.fetched_at is not None
        assert vendor_view(SERVICE, poller, None).state == "no_page"
    finally:
        await poller.aclose()


def test_vendor_text_and_links_are_escaped() -> None:
    view = VendorView(
        state="degraded",
        indicator="major",
        description=HOSTILE,
        incidents=[
            VendorIncidentView(
                name=HOSTILE,
                status="investigating",
                impact="major",
                shortlink="javascript:alert(4)",
                latest_update=HOSTILE,
            )
        ],
        degraded_components=[HOSTILE],
        fetched_at=datetime.now(UTC),
        url="javascript:alert(5)",
        error=None,
    )
    html = render_fragment(
        "_service_vendor.html",
        {"detail": type("D", (), {"vendor": view})(), "name": SERVICE, "http_url": http_url},
    )
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "javascript:alert(4)" not in html and "javascript:alert(5)" not in html


# --- the API and the page over the wire -------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(api_server: ApiServer, sandbox: SandboxServer) -> Iterator[ApiServer]:
    """Real health checks of the service through the API: 6 fine, 3 answered 503 and 2
    answered 500 by the sandbox; then one failed call with hostile, oversized vendor text."""
    with api_server.client() as api:

        def check(times: int) -> None:
            for _ in range(times):
                resp = api.post(f"/api/v2/integrations/{SERVICE}/check")
                assert resp.status_code == 200, resp.text

        try:
            check(6)
            set_faults(sandbox, SERVICE, error_next=3, error_status=503)
            check(3)
            set_faults(sandbox, SERVICE, error_next=2, error_status=500)
            check(2)
        finally:
            set_faults(sandbox, SERVICE, error_next=0)
    hostile = f"{HOSTILE} token={CANARY} " + "x" * 1_000_000
    with MetricsStore(api_server.settings.metrics_dir) as store:
        store.append(
            "calls",
            [_call(datetime.now(UTC), False, 12.0, error_class="VendorError", error=hostile)],
        )
        store.flush()
    yield api_server


def _store_rows(server: ApiServer, since: str, until: str) -> pd.DataFrame:
    with MetricsStore(server.settings.metrics_dir) as store:
        frame = store.query(
            "SELECT ts, ok, latency_ms, error_class, status, source FROM calls "
            "WHERE service = ? AND ts > ? AND ts <= ?",
            [SERVICE, datetime.fromisoformat(since), datetime.fromisoformat(until)],
        )
    return frame


def test_api_percentiles_and_error_mix_match_the_recorded_rows(recorded: ApiServer) -> None:
    with recorded.client() as api:
        resp = api.get(f"/api/v2/services/{SERVICE}", params={"window": "1h"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rows = _store_rows(recorded, body["since"], body["until"])
    assert body["window"] == "1h" and body["bucket_seconds"] == 30
    assert len(rows) == 12 and body["overall"]["calls"] == 12
    assert body["overall"]["failures"] == int((~rows["ok"]).sum()) == 6
    ok = rows[rows["ok"]]["latency_ms"].to_numpy()
    got = [body["overall"][k] for k in ("p50_ms", "p95_ms", "p99_ms")]
    assert got == pytest.approx(np.quantile(ok, [0.5, 0.95, 0.99]), abs=1e-3)
    failed = rows[~rows["ok"]]
    by_status = failed["status"].astype("Int64").astype(str).value_counts().to_dict()
    assert {e["key"]: e["count"] for e in body["errors_by_status"]} == by_status
    assert by_status == {"503": 4, "500": 2}
    by_class = failed["error_class"].value_counts().to_dict()
    assert {e["key"]: e["count"] for e in body["errors_by_class"]} == by_class
    assert sum(e["share"] for e in body["errors_by_class"]) == pytest.approx(1.0)
    # The SLA counts probes and the live (non-probe) calls, as the alert engine does.
    assert body["sla"]["total"] == 12 and body["sla"]["failed"] == 6
    assert body["sla"]["window_burn_rate"] == pytest.approx((6 / 12) / (1 - body["sla"]["target"]))
    assert body["vendor"]["state"] == "not_polled"  # no monitor in this server
    newest = body["recent_errors"][0]
    assert newest["error_class"] == "VendorError" and len(newest["error"]) <= ERROR_TEXT_MAX
    assert CANARY not in resp.text


def test_insights_say_which_method_made_the_band(recorded: ApiServer) -> None:
    with recorded.client() as api:
        resp = api.get(f"/api/v2/services/{SERVICE}/insights", params={"window": "3600"})
    assert resp.status_code == 200, resp.text
    band = resp.json()["band"]
    assert band["method"] in ("band", "streaming") and "too short" in band["reason"]
    assert band["step_seconds"] == 30 and any(p["value"] is not None for p in band["points"])


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == code and "Traceback" not in resp.text
    return error


def test_unknown_service_and_bad_window_name_the_problem(api_server: ApiServer) -> None:
    with api_server.client() as api:
        unknown = _error(api.get("/api/v2/services/freshdsk"), 404, "unknown_service")
        assert "did you mean 'freshdesk'" in unknown["message"]
        assert unknown["details"]["field"] == "path.name"
        bad = _error(api.get(f"/api/v2/services/{SERVICE}?window=soon"), 422, "invalid_request")
        assert bad["message"].startswith("query.window: ")
        assert bad["details"][0]["field"] == "query.window"
        too_long = api.get(f"/api/v2/services/{SERVICE}/insights?window=30d")
        assert _error(too_long, 422, "invalid_request")["details"][0]["field"] == "query.window"
    with api_server.client(auth=False) as anonymous:
        _error(anonymous.get(f"/api/v2/services/{SERVICE}"), 401, "unauthorized")


def test_the_page_needs_a_session_and_escapes_vendor_text(recorded: ApiServer) -> None:
    with browser(recorded) as anonymous:
        resp = anonymous.get(f"/services/{SERVICE}?window=6h")
        assert resp.status_code == 303
        assert resp.headers["location"] == f"/login?next=/services/{SERVICE}%3Fwindow%3D6h"
    with logged_in(recorded) as client:
        page = client.get(f"/services/{SERVICE}", params={"window": "1h"})
        assert page.status_code == 200, page.text
        html = page.text
        assert "Freshdesk" in html and 'id="recent-errors"' in html
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert CANARY not in html and len(html) < 200_000
        assert (
            'data-chart="timeseries"' in html and f"/services/{SERVICE}/insights?window=1h" in html
        )
        fragment = client.get(f"/services/{SERVICE}/insights", params={"window": "1h"})
        assert fragment.status_code == 200 and 'data-method="' in fragment.text
        # htmx drops a response's <script> elements: the chart data is an attribute.
        assert "data-chart-json='" in fragment.text and "<script" not in fragment.text
        missing = client.get("/services/freshdsk")
        assert missing.status_code == 404 and "did you mean" in missing.text
        named = client.get("/services/%3Cscript%3Ealert(1)%22'")
        assert named.status_code == 404 and "&lt;script&gt;alert(1)" in named.text
        assert "<script>alert(1)" not in named.text
        bad = client.get(f"/services/{SERVICE}", params={"window": "<b>soon</b>"})
        assert bad.status_code == 422 and "<b>soon" not in bad.text
