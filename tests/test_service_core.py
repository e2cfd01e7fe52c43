"""The service's core over the wire: status, auth, the one error shape, the body limit,
the monitoring endpoints, Prometheus metrics, and `junction serve`'s refusals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from junction.settings import Settings
from junction.store import MetricsStore
from tests.helpers import ROOT, run_junction
from tests.service_helpers import ApiServer, ServiceServer, service_settings

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

MONITORING = "/api/v2/workflows/enhanced/monitoring"


def _error(resp: object, status: int, code: str) -> dict[str, object]:
    import httpx

    assert isinstance(resp, httpx.Response)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert "Traceback" not in resp.text
    error: dict[str, object] = body["error"]
    return error


def test_status_is_anonymous(api_server: ApiServer) -> None:
    with api_server.client(auth=False) as c:
        resp = c.get("/api/v2/status")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["monitoring"] is False
    assert set(body) == {
        "status", "version", "time", "uptime_seconds", "monitoring", "monitor_restarts"
    }  # fmt: skip


def test_internal_reads_need_the_token(api_server: ApiServer) -> None:
    with api_server.client(auth=False) as c:
        for path in (f"{MONITORING}/health", f"{MONITORING}/metrics", "/metrics"):
            err = _error(c.get(path), 401, "unauthorized")
            assert "bearer" in str(err["message"]).lower()
        wrong = {"Authorization": "Bearer not-the-token"}
        resp = c.get(f"{MONITORING}/health", headers=wrong)
        _error(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"] == "Bearer"
        assert api_server.token not in resp.text
        _error(c.post(f"{MONITORING}/start", json={}), 401, "unauthorized")


def test_unknown_endpoint_and_method_in_the_error_shape(api_server: ApiServer) -> None:
    with api_server.client() as c:
        err = _error(c.get("/api/v2/nothing-here"), 404, "not_found")
        assert "/api/v2/nothing-here" in str(err["message"])
        err = _error(c.delete(f"{MONITORING}/health"), 405, "method_not_allowed")
        assert "DELETE" in str(err["message"])


def test_malformed_json_is_400_naming_the_body(api_server: ApiServer) -> None:
    with api_server.client() as c:
        resp = c.post(
            f"{MONITORING}/start",
            content=b'{"interval_seconds": ',
            headers={"content-type": "application/json"},
        )
    err = _error(resp, 400, "malformed_json")
    assert err["details"] == {"field": "body"}


def test_invalid_fields_are_422_with_the_field_named(api_server: ApiServer) -> None:
    with api_server.client() as c:
        err = _error(
            c.post(f"{MONITORING}/start", json={"interval_seconds": -1}), 422, "invalid_request"
        )
        assert str(err["message"]).startswith("body.interval_seconds:")
        err = _error(c.post(f"{MONITORING}/start", json={"intervall": 5}), 422, "invalid_request")
        assert "body.intervall" in str(err["message"])
        for bad in ("-5", "abc", "nan", "inf"):
            err = _error(
                c.get(f"{MONITORING}/health", params={"window": bad}), 422, "invalid_request"
            )
            assert str(err["message"]).startswith("query.window:"), err
        status = c.get("/api/v2/status").json()
    assert status["monitoring"] is False  # nothing was started by the refused requests


def test_oversized_bodies_are_413_and_do_nothing(api_server: ApiServer) -> None:
    limit = api_server.settings.api_max_body_bytes
    big = b'{"interval_seconds": 5, "pad": "' + b"x" * limit + b'"}'
    with api_server.client() as c:
        err = _error(
            c.post(
                f"{MONITORING}/start", content=big, headers={"content-type": "application/json"}
            ),
            413,
            "payload_too_large",
        )
        assert err["details"] == {"limit_bytes": limit}

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

        _error(
            c.post(
                f"{MONITORING}/start",
                content=chunks(),
                headers={"content-type": "application/json"},
            ),
            413,
            "payload_too_large",
        )
        assert c.get("/api/v2/status").json()["monitoring"] is False


def test_unknown_service_is_404_with_did_you_mean(api_server: ApiServer) -> None:
    with api_server.client() as c:
        for path in (f"{MONITORING}/health", f"{MONITORING}/metrics"):
            resp = c.get(path, params=[("service", "okta"), ("service", "gitlabb")])
            err = _error(resp, 404, "unknown_service")
            assert err["message"] == "unknown service 'gitlabb' (did you mean 'gitlab'?)"
            # The shape of every unknown name (services/{name}, integrations, specs...).
            assert err["details"]["field"] == "query.service"
            assert "gitlab" in err["details"]["known"]


def _record(settings: Settings, table: str, rows: list[dict[str, Any]]) -> None:
    with MetricsStore(settings.metrics_dir) as store:
        store.append(table, rows)


def _probe(service: str, ok: bool, latency: float, ago: float) -> dict[str, Any]:
    return {
        "ts": datetime.now(UTC) - timedelta(seconds=ago),
        "sweep_id": "test",
        "service": service,
        "ok": ok,
        "status": 200 if ok else 503,
        "latency_ms": latency,
        "error_class": None if ok else "ServerError",
        "error": None if ok else "503 from the vendor",
        "breaker_state": "closed",
    }


def _call(service: str, ok: bool, latency: float, ago: float) -> dict[str, Any]:
    return {
        "ts": datetime.now(UTC) - timedelta(seconds=ago),
        "service": service,
        "action": "get_user",
        "method": "GET",
        "path": "/api/v1/users/1",
        "status": 200 if ok else 500,
        "ok": ok,
        "latency_ms": latency,
        "error_class": None if ok else "ServerError",
        "error": None if ok else "500",
        "attempts": 1,
        "breaker_state": "closed",
        "source": "workflow",
    }


@pytest.fixture(scope="module")
def recorded(api_server: ApiServer) -> ApiServer:
    """Probes and live calls in the service's store: zendesk healthy, pagerduty down."""
    _record(
        api_server.settings,
        "probes",
        [_probe("zendesk", True, 100.0 + i, 600 - i * 30) for i in range(10)]
        + [_probe("pagerduty", True, 80.0, 500), _probe("pagerduty", False, 3.0, 20)]
        + [_probe("pagerduty", False, 2.0, 10)]
        # outside a 15-minute window: only a longer window sees it
        + [_probe("zendesk", False, 5.0, 3000)],
    )
    _record(
        api_server.settings,
        "calls",
        [_call("zendesk", True, 200.0, 100 - i) for i in range(5)]
        + [_call("zendesk", False, 9, 50)],
    )
    return api_server


def test_health_from_the_store_filtered_and_windowed(recorded: ApiServer) -> None:
    with recorded.client() as c:
        resp = c.get(
            f"{MONITORING}/health", params=[("service", "zendesk"), ("service", "pagerduty")]
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["source"] == "store"
        assert body["window_seconds"] == recorded.settings.monitor_window_seconds
        rows = {r["service"]: r for r in body["services"]}
        assert list(rows) == [r["service"] for r in body["services"]]
        assert set(rows) == {"zendesk", "pagerduty"}
        pd = rows["pagerduty"]
        assert pd["status"] == "critical" and pd["down"] is True
        assert pd["consecutive_failures"] == 2 and pd["ok"] is False
        assert pd["http_status"] == 503
        zd = rows["zendesk"]
        assert zd["observations"] == 16 and zd["failures"] == 1  # 10 probes + 6 calls
        assert zd["ok"] is True and zd["down"] is False
        assert body["counts"]["critical"] == 1
        longer = c.get(f"{MONITORING}/health", params={"service": "zendesk", "window": 3600})
        assert longer.json()["services"][0]["failures"] == 2
        assert longer.json()["window_seconds"] == 3600


def test_windowed_metrics_per_service_and_source(recorded: ApiServer) -> None:
    with recorded.client() as c:
        resp = c.get(f"{MONITORING}/metrics", params={"service": "zendesk"})
        assert resp.status_code == 200, resp.text
        rows = {r["source"]: r for r in resp.json()["services"]}
        assert set(rows) == {"probes", "calls"}
        assert rows["probes"]["requests"] == 10 and rows["probes"]["failures"] == 0
        assert rows["calls"]["requests"] == 6 and rows["calls"]["failures"] == 1
        assert rows["calls"]["success_rate"] == pytest.approx(5 / 6)
        assert rows["calls"]["p95_latency_ms"] == pytest.approx(200.0)
        wide = c.get(f"{MONITORING}/metrics", params={"service": "zendesk", "window": 3600})
        wide_rows = {r["source"]: r for r in wide.json()["services"]}
        assert wide_rows["probes"]["requests"] == 11
        # A catalog service no test calls through the session server (the workflow tests
        # of the API record Jira calls in the same store).
        none = c.get(f"{MONITORING}/metrics", params={"service": "grafana"}).json()
        assert none["services"] == []


def test_prometheus_metrics(recorded: ApiServer) -> None:
    with recorded.client() as c:
        resp = c.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'junction_service_up{service="pagerduty"} 0.0' in text
    assert 'junction_service_up{service="zendesk"} 1.0' in text
    assert 'junction_service_status{service="pagerduty",status="critical"} 1.0' in text
    assert 'junction_service_open_alerts{service="zendesk"} 0.0' in text
    assert "junction_monitor_running 0.0" in text
    assert "# TYPE junction_service_health_score gauge" in text
    assert 'junction_service_latency_p95_seconds{service="zendesk"}' in text


def test_an_unexpected_error_is_500_logged_without_traceback(
    sandbox: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from junction.service.app import create_app

    settings = service_settings(tmp_path, sandbox)
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret-ish internals")

    with ServiceServer(settings, app=app) as server, server.info().client() as c:
        resp = c.get("/boom")
        err = _error(resp, 500, "internal_error")
        assert "secret-ish" not in resp.text
        assert err["details"] is None
        assert c.get("/api/v2/status").status_code == 200  # still serving
    assert any("secret-ish internals" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_monitoring_start_runs_the_monitor_in_process(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = service_settings(tmp_path, sandbox, integrations="okta,gitlab")
    with ServiceServer(settings) as server, server.info().client() as c:
        first = c.post(f"{MONITORING}/start", json={"interval_seconds": 1})
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["started"] is True and body["running"] is True
        assert sorted(body["services"]) == ["gitlab", "okta"] and body["interval_seconds"] == 1
        again = c.post(f"{MONITORING}/start").json()  # no body: reports the running one
        assert again["started"] is False and again["running"] is True
        assert c.get("/api/v2/status").json()["monitoring"] is True
        for _ in range(200):  # the first sweep runs at once; wait for its verdicts
            health = c.get(f"{MONITORING}/health").json()
            if all(s["ok"] is not None for s in health["services"]):
                break
            time.sleep(0.05)
        assert health["source"] == "monitor"
        assert {s["service"]: s["status"] for s in health["services"]} == {
            "okta": "healthy",
            "gitlab": "healthy",
        }
        assert "junction_monitor_running 1.0" in c.get("/metrics").text
        # A window other than the monitor's is computed from the store (its probes).
        other = c.get(f"{MONITORING}/health", params={"window": 60}).json()
        assert other["source"] == "store"


def test_monitor_that_cannot_start_is_503_and_the_service_keeps_serving(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    (tmp_path / "alerts.db").write_bytes(b"this is not a database" * 100)
    settings = service_settings(tmp_path, sandbox, integrations="okta")
    with ServiceServer(settings, monitor=True) as server, server.info().client() as c:
        assert c.get("/api/v2/status").json()["monitoring"] is False
        err = _error(c.post(f"{MONITORING}/start"), 503, "monitor_unavailable")
        assert "alerts.db" in str(err["message"]) and "corrupt" in str(err["message"])
        for path in (f"{MONITORING}/health", "/metrics"):  # reads that show open alerts
            err = _error(c.get(path), 503, "alert_database")
            assert "junction alerts reset" in str(err["message"])
        assert c.get("/api/v2/status").status_code == 200


def test_serve_refuses_a_public_host_without_a_token(tmp_path: Path) -> None:
    result = run_junction(["serve", "--host", "0.0.0.0", "--port", "0"], home=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "JUNCTION_API_TOKEN" in lines[0] and "0.0.0.0" in lines[0]


def test_serve_names_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_junction(["serve", "--port", str(port)], home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_openapi_documents_the_core_endpoints_and_the_token(api_server: ApiServer) -> None:
    with api_server.client(auth=False) as c:
        schema = c.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        ("/api/v2/status", "get"),
        (f"{MONITORING}/start", "post"),
        (f"{MONITORING}/health", "get"),
        (f"{MONITORING}/metrics", "get"),
        ("/metrics", "get"),
    }
    for path, method in expected:
        op = paths[path][method]
        assert op["summary"], (path, method)
        secured = bool(op.get("security"))
        assert secured is (path != "/api/v2/status"), (path, method)
    health = paths[f"{MONITORING}/health"]["get"]
    assert {p["name"] for p in health["parameters"]} == {"service", "window"}
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # Errors are documented in the one shape (not FastAPI's default {"detail": ...}).
    start = paths[f"{MONITORING}/start"]["post"]["responses"]
    for status in ("422", "4XX", "5XX"):
        ref = start[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("ErrorBody"), ref
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_junction_serve_with_monitor_as_a_user_runs_it(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    from deployments.local import stop_process_group

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUNCTION_", "PREFECT_"))}
    env.update(
        JUNCTION_HOME=str(tmp_path),
        JUNCTION_API_TOKEN="e2e-token",
        JUNCTION_SANDBOX_URL=sandbox.url,
        JUNCTION_SANDBOX_SMTP_PORT=str(sandbox.smtp_port),
        JUNCTION_INTEGRATIONS="okta",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "junction", "serve", "--port", str(port), "--monitor"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10.0) as c:
            for _ in range(600):  # start-up imports pandas and DuckDB: seconds on 2 cores
                assert proc.poll() is None, log.read_text()
                try:
                    status = c.get("/api/v2/status")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert status.json()["monitoring"] is True
            _error(c.get(f"{MONITORING}/health"), 401, "unauthorized")
            auth = {"Authorization": "Bearer e2e-token"}
            health = c.get(f"{MONITORING}/health", headers=auth).json()
            assert health["source"] == "monitor"
            assert [s["service"] for s in health["services"]] == ["okta"]
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal (exit status -15).
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        stop_process_group(proc)
    text = log.read_text()
    assert "Traceback" not in text and "e2e-token" not in text
    assert f"serving Junction on {base}" in text
    assert "Application shutdown complete" in text  # the lifespan ran: monitor stopped
