"""The service's core over the wire: status, auth, the one error shape, the body limit,
the monitoring endpoints, Prometheus metrics, and `junction serve`'s refusals."""

from __future__ import annotations

from tests.service_helpers import ApiServer

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
    assert set(body) == {"status", "version", "time", "uptime_seconds", "monitoring"}


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
