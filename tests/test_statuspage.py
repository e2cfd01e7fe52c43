"""Vendor status pages: the sandbox's Statuspage plays the vendor; the poller reads it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from integrations.catalog import load_catalog
from junction.alerting import statuspage
from junction.alerting.statuspage import (
    StatusPagePoller,
    VendorStatus,
    annotation,
    parse_summary,
    status_page_url,
)
from junction.clients import get_client
from junction.settings import Settings
from tests.helpers import sandbox_settings, set_faults

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer


async def _incident(settings: Settings, page: str, **incident: Any) -> dict[str, Any]:
    """Declare a vendor incident through the Statuspage management API."""
    async with get_client("statuspage", settings=settings) as client:
        created: dict[str, Any] = await client.request(
            "POST",
            f"/pages/{page}/incidents",
            action="create_incident",
            json={"incident": incident},
        )
    return created


async def _resolve(settings: Settings, page: str, incident_id: str) -> None:
    async with get_client("statuspage", settings=settings) as client:
        await client.request(
            "PATCH",
            f"/pages/{page}/incidents/{incident_id}",
            action="update_incident",
            json={"incident": {"status": "resolved", "body": "Fixed."}},
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_incident_shows_up_and_resolves(sb: SandboxServer) -> None:
    settings = sandbox_settings(sb)
    clock = Clock()
    poller = StatusPagePoller(settings, ttl_seconds=60, clock=clock)
    try:
        calm = await poller.get("gitlab")
        assert calm is not None and calm.indicator == "none"
        assert calm.description == "All Systems Operational"
        assert annotation(calm) is None

        created = await _incident(
            settings,
            "gitlab",
            name="CI/CD pipelines delayed",
            status="investigating",
            impact_override="major",
            body="We are investigating delays.",
            components={"gitlab-c1": "partial_outage"},
        )
        # cached: the page is not read again within the TTL
        assert (await poller.get("gitlab")) is calm
        clock.now += 61
        hot = await poller.get("gitlab")
        assert hot is not None and hot.indicator == "major"
        assert hot.vendor == "GitLab CI/CD"  # the catalog title
        assert hot.incidents[0].name == "CI/CD pipelines delayed"
        assert hot.incidents[0].latest_update == "We are investigating delays."
        assert hot.degraded_components == ("API",)
        assert annotation(hot) == (
            "GitLab CI/CD reports: Partial System Outage — CI/CD pipelines delayed "
            f"({created['shortlink']})"
        )
        assert poller.fetches == 2

        await _resolve(settings, "gitlab", created["id"])
        poller.invalidate("gitlab")
        after = await poller.get("gitlab")
        assert after is not None and after.indicator == "none" and after.incidents == ()
        assert await poller.annotation("gitlab") is None
    finally:
        await poller.aclose()


async def test_an_outage_of_the_service_leaves_its_status_page_up(sb: SandboxServer) -> None:
    settings = sandbox_settings(sb)
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{sb.url}/_admin/outage/github", json={"seconds": 30})
        resp.raise_for_status()
    poller = StatusPagePoller(settings)
    try:
        status = await poller.get("github")
    finally:
        await poller.aclose()
    assert status is not None and status.indicator == "none"


async def test_hang_and_malformed_give_none_with_a_reason(
    sb: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = sandbox_settings(sb)
    set_faults(sb, "statuspage", hang_rate=1.0, hang_seconds=30)
    poller = StatusPagePoller(settings, timeout_seconds=0.3, ttl_seconds=0)
    try:
        assert await poller.get("okta") is None
        assert "within 0.3s" in poller.last_error["okta"]
        set_faults(sb, "statuspage", hang_rate=0.0, malformed_rate=1.0)
        assert await poller.get("okta") is None
        assert "not JSON" in poller.last_error["okta"]
        set_faults(sb, "statuspage", malformed_rate=0.0, error_rate=1.0)
        assert await poller.get("okta") is None
        assert "HTTP 503" in poller.last_error["okta"]
    finally:
        await poller.aclose()
    assert "status page of okta unusable" in caplog.text


def test_wrong_shape_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"not a Statuspage summary.*status"):
        parse_summary("x", {"page": {"name": "X"}})
    with pytest.raises(ValueError, match=r"incidents\.0\.name"):
        parse_summary("x", {"status": {"indicator": "minor"}, "incidents": [{"status": "x"}]})


async def test_concurrent_gets_share_one_fetch(sb: SandboxServer) -> None:
    poller = StatusPagePoller(sandbox_settings(sb))
    try:
        results = await asyncio.gather(*(poller.get("jira") for _ in range(5)))
        many = await poller.get_many(["jira", "okta"])
    finally:
        await poller.aclose()
    assert all(r is results[0] for r in results) and results[0] is not None
    assert many["jira"] is results[0] and many["okta"] is not None
    assert poller.fetches == 2


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUNCTION_GITHUB_BASE_URL", "https://api.github.com")
    monkeypatch.setenv("JUNCTION_GITLAB_BASE_URL", "https://gitlab.com/api/v4")
    settings = Settings(sandbox_url="http://127.0.0.1:8765", status_page_urls="okta=")
    # a real service: its known Statuspage
    assert status_page_url("github", settings) == "https://www.githubstatus.com/api/v2/summary.json"
    # a real service without a Statuspage: nothing
    assert status_page_url("gitlab", settings) is None
    # sandboxed: the sandbox's page; turned off by the setting
    assert status_page_url("jira", settings) == (
        "http://127.0.0.1:8765/statuspage/v1/pages/jira/api/v2/summary.json"
    )
    assert status_page_url("okta", settings) is None
    # the alerting configuration wins
    assert status_page_url("gitlab", settings, {"gitlab": "https://s.example/x/"}) == (
        "https://s.example/x/api/v2/summary.json"
    )


def test_the_catalog_is_the_one_list_of_status_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog()
    with_pages = [spec for spec in catalog if spec.status_page]
    assert len(with_pages) >= 10
    for spec in catalog:
        monkeypatch.setenv(f"JUNCTION_{spec.name.upper()}_BASE_URL", "https://vendor.example")
    settings = Settings(status_page_urls="")
    for spec in catalog:
        url = status_page_url(spec.name, settings)
        if spec.status_page is None:
            assert url is None, spec.name
        else:
            assert url is not None and url.startswith("https://"), spec.name
            assert url.endswith("/api/v2/summary.json"), spec.name
            assert url.removesuffix("/api/v2/summary.json") in spec.status_page, spec.name
    # a page only the catalog names is used (the poller once kept its own, shorter map)
    assert status_page_url("openai", settings) == "https://status.openai.com/api/v2/summary.json"
    # JUNCTION_STATUS_PAGE_URLS still wins over the catalog, and turns one off
    settings = Settings(status_page_urls="openai=https://mirror.example/openai,github=")
    assert (
        status_page_url("openai", settings) == "https://mirror.example/openai/api/v2/summary.json"
    )
    assert status_page_url("github", settings) is None
    # a name outside the catalog has no page (and no sandbox page)
    assert status_page_url("not-a-service", Settings()) is None
    assert not hasattr(statuspage, "KNOWN_STATUS_PAGES")


def test_annotation_without_incident_names_components() -> None:
    from datetime import UTC, datetime

    status = VendorStatus(
        service="jira",
        indicator="minor",
        description="Minor Service Outage",
        incidents=(),
        fetched_at=datetime.now(UTC),
        vendor="Jira",
        degraded_components=("Search",),
    )
    assert annotation(status) == "Jira reports: Minor Service Outage — Search"
