"""The dashboard as an operator uses it, in headless Chromium against a real server.

A service with the monitor running in-process (a one-second sweep) over a few sandboxed
integrations: open the health grid, take a service down in the sandbox, see its row turn
red live (no reload), open its page, acknowledge its alert, find the incident with its
timeline, open the public status page. Screenshots go to ``out/screenshots/``.

Playwright drives Debian's ``/usr/bin/chromium`` (it never downloads a browser); without
it the test is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.helpers import ROOT
from tests.service_helpers import ApiServer, ServiceServer, service_settings

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from integrations.sandbox.app import SandboxServer

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "out" / "screenshots"
SERVICES = ("okta", "gitlab", "jira", "slack", "github")
VICTIM = "gitlab"
STATUS_PAGE = """
title: Acme status
services:
  - {service: okta, name: Single sign-on, group: Identity}
  - {service: gitlab, name: Code hosting, group: Engineering}
  - {service: jira, name: Ticket desk, group: Engineering}
"""

LEFT_OUT: set[str] = set()
"""Pages the service does not have (404): their steps are left out."""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium (/usr/bin/chromium) is not installed"
)


@pytest.fixture(scope="module")
def served(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """``junction serve --monitor`` with a one-second sweep over a few integrations."""
    home = tmp_path_factory.mktemp("e2e-home")
    (home / "status-page.yaml").write_text(STATUS_PAGE)
    settings = service_settings(
        home,
        sandbox,
        integrations=",".join(SERVICES),
        monitor_interval_seconds=1.0,
    )
    with ServiceServer(settings, monitor=True) as server:
        yield server.info()
    httpx.delete(f"{sandbox.url}/_admin/outage/{VICTIM}")


@pytest.fixture(scope="module")
def page(served: ApiServer) -> Iterator[Page]:
    """A logged-in browser tab; console errors (CSP violations included) are collected
    on ``page.problems``."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        tab = context.new_page()
        problems: list[str] = []

        def console(message: Any) -> None:
            # A failed load is reported as the response itself (below), with its URL.
            if message.type == "error" and not message.text.startswith("Failed to load"):
                problems.append(message.text)

        def response(resp: Any) -> None:
            if resp.status >= 400:
                problems.append(f"{resp.status} {resp.url}")

        tab.on("console", console)
        tab.on("response", response)
        tab.on("pageerror", lambda e: problems.append(str(e)))
        tab.problems = problems  # type: ignore[attr-defined]
        tab.set_default_timeout(15_000)
        tab.goto(f"{served.url}/")
        assert "/login" in tab.url
        tab.fill("#token", served.token)
        tab.click("button[type=submit]")
        tab.wait_for_url(f"{served.url}/")
        yield tab
        context.close()
        browser.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def opened(page: Page, url: str | None = None) -> bool:
    """Open ``url`` (or look at the current page): ``False`` when the page does not exist
    (404), so a step whose page is not part of the service is left out, said on stdout."""
    if url is not None:
        response = page.goto(url)
        status = response.status if response is not None else 0
    else:
        status = 404 if '"no such endpoint' in page.content() else 200
    if status == 404:
        LEFT_OUT.add(url or page.url)
        print(f"no page at {url or page.url}: step left out")
        return False
    return True


def outage(served: ApiServer, seconds: float) -> None:
    sandbox_url = served.settings.sandbox_url
    resp = httpx.post(
        f"{sandbox_url}/_admin/outage/{VICTIM}", json={"seconds": seconds, "mode": "503"}
    )
    resp.raise_for_status()


def test_operator_journey(served: ApiServer, page: Page) -> None:
    url = served.url
    row = f"#svc-{VICTIM}"
    # 1. the grid: every integration, the victim healthy once the monitor has probed it
    page.wait_for_selector(f'{row}[data-status="healthy"]')
    assert page.locator("#health-grid tbody tr").count() == len(SERVICES)
    page.wait_for_selector('#live[data-state="live"]')
    shot(page, "grid-healthy")
    page.fill("#grid-filter", "git")  # the name filter: github and gitlab
    assert page.locator("#health-grid tbody tr:visible").count() == 2
    page.fill("#grid-filter", "")

    # 2. the victim goes down in the sandbox: its row turns red live, without a reload
    outage(served, 120)
    started = time.monotonic()
    page.wait_for_selector(f'{row}[data-status="critical"]', timeout=20_000)
    turned_red = time.monotonic() - started
    assert page.locator(f"{row} .badge").inner_text().lower() in ("down", "critical")
    color = page.eval_on_selector(row, "el => getComputedStyle(el).backgroundColor")
    assert color == "rgb(254, 226, 226)", color  # the critical row's red
    page.wait_for_selector(f"{row} a.alerts-count")  # its alerts fire, and show live
    shot(page, "grid-red")
    page.click('[data-filter-status="critical"]')  # only the critical ones, then all again
    assert page.locator("#health-grid tbody tr:visible").count() == 1
    page.click('[data-filter-status="critical"]')
    assert page.locator("#health-grid tbody tr:visible").count() == len(SERVICES)
    print(f"{VICTIM} turned red {turned_red:.1f}s after the outage began")

    # 3. its service page (from the grid's link)
    page.click(f"{row} td.name a")
    page.wait_for_url(f"{url}/services/{VICTIM}")
    if opened(page):
        page.wait_for_selector("[data-method]")  # its forecast band, loaded by htmx
        shot(page, "service")

    # 4. acknowledge its alert on the alerts page
    if opened(page, f"{url}/alerts"):
        alert = (
            page.locator("tr[data-alert]")
            .filter(has=page.locator("td.name", has_text=VICTIM))
            .filter(has=page.locator("button", has_text="Acknowledge"))
        )
        alert.first.wait_for()
        alert_id = alert.first.get_attribute("data-alert")
        alert.first.locator("button", has_text="Acknowledge").click()
        acked = page.locator(f'tr[data-alert="{alert_id}"]')
        acked.locator(".badge", has_text="acknowledged").wait_for()
        shot(page, "alerts")

    # 5. the incident, with its timeline
    if opened(page, f"{url}/incidents"):
        incident = page.locator("tr[data-incident]").filter(has_text=VICTIM).first
        incident.locator("a[href^='/incidents/']").click()
        page.wait_for_url(f"{url}/incidents/*")
        page.get_by_text("acknowledged").first.wait_for()
        shot(page, "incident")

    # 6. the other pages open cleanly (no console errors, no refused script or style)
    for name in ("workflows", "logs"):
        if opened(page, f"{url}/{name}"):
            page.wait_for_load_state("load")
            shot(page, name)

    # 7. the public status page, as an anonymous visitor sees it: no nav, no internal name
    browser = page.context.browser
    assert browser is not None
    anonymous = browser.new_context(viewport={"width": 1280, "height": 860})
    visitor = anonymous.new_page()
    visitor.goto(f"{url}/status")
    visitor.wait_for_load_state("load")
    assert visitor.locator("nav").count() == 0
    assert VICTIM not in visitor.content().lower()
    visitor.get_by_text("Code hosting").first.wait_for()
    shot(visitor, "status")
    anonymous.close()
    page.goto(f"{url}/")  # and, in the logged-in tab, the grid again: still red
    page.wait_for_selector(f'{row}[data-status="critical"]')

    problems: list[str] = page.problems  # type: ignore[attr-defined]
    assert [p for p in problems if p.split(" ", 1)[-1] not in LEFT_OUT] == []
