"""WorkdayClient end to end against the running sandbox (OAuth2 client credentials,
limit/offset paging), plus MockTransport cases.

Workday publishes no machine-readable spec, so there is no Prism contract test; and its
actions are all read-only, so there is no lost-response case either.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials, OAuth2ClientCredentials
from integrations.errors import AuthenticationError, MalformedResponseError, NotFoundError
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.workday import (
    DateRangeParams,
    GetWorkerParams,
    ListWorkersParams,
    WorkdayClient,
)
from tests.helpers import ClientFactory, mock_client, set_faults, state


def workers(sb: SandboxServer) -> dict[str, dict[str, Any]]:
    return state(sb, "workday")["workers"]


def in_range(field: str, start: date, end: date, sb: SandboxServer) -> set[str]:
    return {
        w["id"]
        for w in workers(sb).values()
        if w.get(field) and start <= date.fromisoformat(w[field]) <= end
    }


async def test_list_workers_pages_by_limit_offset(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (wd := make_client(WorkdayClient)):
        page = await wd.list_workers(ListWorkersParams(limit=50))
        every = await wd.list_workers(ListWorkersParams(limit=50, max_pages=10))
        tail = await wd.list_workers(ListWorkersParams(limit=100, offset=120))
    stored = workers(sb)
    assert page.total == len(stored) == 130
    assert len(page.items) == 50 and page.truncated
    assert len(every.items) == 130 and not every.truncated
    assert {w.id for w in every.items} == set(stored)
    assert len(tail.items) == 10 and not tail.truncated


async def test_search_and_get_worker(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (wd := make_client(WorkdayClient)):
        found = await wd.list_workers(ListWorkersParams(search="hopper 1"))
        one = await wd.get_worker(GetWorkerParams(worker_id=found.items[0].id))
        with pytest.raises(NotFoundError, match="Resource not found"):
            await wd.get_worker(GetWorkerParams(worker_id="0" * 32))
    assert found.items and all("hopper 1" in (w.descriptor or "").lower() for w in found.items)
    stored = workers(sb)[one.id]
    assert one.worker_id == stored["workerId"]
    assert one.primary_work_email == stored["primaryWorkEmail"]
    assert one.primary_supervisory_organization is not None
    assert one.hire_date == date.fromisoformat(stored["hireDate"])


async def test_hires_and_terminations_in_range(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    today = date.today()
    month = DateRangeParams(start=today - timedelta(days=30), end=today)
    quarter = DateRangeParams(start=today - timedelta(days=60), end=today)
    async with (wd := make_client(WorkdayClient)):
        hires = await wd.list_hires(month)
        hires_60 = await wd.list_hires(quarter)
        leavers = await wd.list_terminations(month)
    assert {w.id for w in hires.items} == in_range("hireDate", month.start, month.end, sb)
    assert len(hires.items) == 5 and len(hires_60.items) == 6
    assert hires.scanned == hires.total == 130 and not hires.truncated
    assert {w.id for w in leavers.items} == in_range("terminationDate", month.start, month.end, sb)
    assert len(leavers.items) == 3
    assert all(w.termination_date is not None for w in leavers.items)


async def test_scan_cap_is_reported(make_client: ClientFactory) -> None:
    today = date.today()
    async with (wd := make_client(WorkdayClient)):
        capped = await wd.list_terminations(
            DateRangeParams(start=today - timedelta(days=30), end=today, max_pages=1)
        )
    assert capped.truncated and capped.scanned == 100 and capped.total == 130


def test_range_must_be_ordered() -> None:
    today = date.today()
    with pytest.raises(ValidationError, match="end must not be before start"):
        DateRangeParams(start=today, end=today - timedelta(days=1))
    with pytest.raises(ValidationError):
        ListWorkersParams(limit=101)


async def test_oauth2_token_fetched_once(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (wd := make_client(WorkdayClient)):
        await wd.list_workers(ListWorkersParams(limit=1))
        await wd.list_hires(DateRangeParams(start=date.today(), end=date.today()))
        auth = wd._auth
    assert isinstance(auth, OAuth2ClientCredentials)
    assert auth.fetches == 1
    assert auth.token_url == f"{sb.url}/workday/oauth2/token"


async def test_bad_client_secret_is_authentication_error(make_client: ClientFactory) -> None:
    async with (wd := make_client(WorkdayClient, wrong_secret="wrong")):
        with pytest.raises(AuthenticationError):
            await wd.list_workers(ListWorkersParams())


async def test_garbled_answer_is_malformed_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    set_faults(sb, "workday", malformed_rate=1.0)
    async with (wd := make_client(WorkdayClient)):
        with pytest.raises(MalformedResponseError):
            await wd.list_workers(ListWorkersParams())


async def test_page_without_total_is_malformed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        return httpx.Response(200, json={"data": [{"id": "abc"}]})

    wd = mock_client(
        WorkdayClient,
        handler,
        base_url="https://wd2-impl-services1.workday.test/ccx/api/v1/acme",
        credentials=Credentials(client_id="c", client_secret=SecretStr("s")),
    )
    async with wd:
        with pytest.raises(MalformedResponseError, match="total"):
            await wd.list_workers(ListWorkersParams(search="ada"))
    token, call = seen[0], seen[1]
    # The token URL is derived from the catalog template and the tenant's base URL.
    assert str(token.url) == "https://wd2-impl-services1.workday.test/ccx/oauth2/acme/token"
    assert call.url.path == "/ccx/api/v1/acme/workers"
    assert dict(call.url.params) == {"search": "ada", "limit": "100", "offset": "0"}
    assert call.headers["Authorization"] == "Bearer tok"


def test_action_flags() -> None:
    for name in ("get_worker", "list_workers", "list_hires", "list_terminations"):
        assert get_action("workday", name).read_only
