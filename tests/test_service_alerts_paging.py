"""``GET /api/v2/alerts`` a page at a time (``limit``, ``cursor`` -> ``next_cursor``), as the
other list endpoints: the pages together are exactly the list, oldest first, with or
without resolved alerts; a bad cursor or limit is a 422 naming the field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from junction.alerting import state as alert_state
from junction.alerting.alerts import list_alerts
from junction.alerting.engine import AlertEngine
from junction.alerting.rules import default_config
from tests.alerting_helpers import at, failing, healthy
from tests.service_helpers import ServiceServer, service_settings

if TYPE_CHECKING:
    import httpx

    from integrations.sandbox.app import SandboxServer

SERVICES = ["okta", "gitlab", "zendesk", "slack", "github"]


def _pages(api: httpx.Client, limit: int, **params: Any) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        body = api.get("/api/v2/alerts", params=query).json()
        assert body["limit"] == limit and len(body["alerts"]) <= limit
        pages.append([a["id"] for a in body["alerts"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_alerts_are_paged(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = service_settings(tmp_path_factory.mktemp("alerts-paging"), sandbox)
    engine = AlertEngine(alert_state.db_path(settings), default_config(settings))
    engine.evaluate(failing(SERVICES, at(0)), now=at(0))  # two alerts per service
    engine.evaluate([*failing(SERVICES[:2], at(5)), *healthy(SERVICES[2:], at(5))], now=at(5))
    engine.close()
    conn = alert_state.connect(alert_state.db_path(settings))
    try:
        every = [a.id for a in list_alerts(conn, include_resolved=True)]
        active = [a.id for a in list_alerts(conn)]
    finally:
        conn.close()
    assert len(every) > len(active) > 3
    with ServiceServer(settings) as server, server.info().client() as api:
        for limit in (1, 3, 1000):
            pages = _pages(api, limit, all=True)
            assert [i for p in pages for i in p] == every
            assert all(len(p) == limit for p in pages[:-1])
            assert [i for p in _pages(api, limit) for i in p] == active
        for bad in ("abc", "-1", "9" * 19, "１"):
            resp = api.get("/api/v2/alerts", params={"cursor": bad})
            assert resp.status_code == 422, (bad, resp.text)
            assert resp.json()["error"]["details"][0]["field"] == "query.cursor"
        for limit in (0, 1001):
            resp = api.get("/api/v2/alerts", params={"limit": limit})
            assert resp.status_code == 422, (limit, resp.text)
            assert resp.json()["error"]["details"][0]["field"] == "query.limit"
