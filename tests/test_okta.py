"""OktaClient end to end against the running sandbox (state checked via the admin API),
plus MockTransport cases for what the sandbox cannot produce."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.errors import (
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    NotFoundError,
    ServerError,
)
from integrations.okta import (
    AddUserToGroupParams,
    CreateUserParams,
    DeactivateUserParams,
    GetUserParams,
    ListGroupsParams,
    OktaClient,
    is_login_taken,
)
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.urls import next_link
from tests.helpers import (
    FAST,
    ClientFactory,
    clear_faults,
    faults_seen,
    mock_client,
    set_faults,
    state,
)


def users_with_login(sb: SandboxServer, login: str) -> list[dict[str, Any]]:
    return [u for u in state(sb, "okta")["users"].values() if u["profile"]["login"] == login]


NEW = CreateUserParams(first_name="Isaac", last_name="Brock", email="isaac.brock@example.com")


# --- create_user ----------------------------------------------------------------------------


async def test_create_user_creates_once_then_returns_existing(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (okta := make_client(OktaClient)):
        first = await okta.create_user(NEW)
        second = await okta.create_user(NEW)
    assert not first.unchanged and second.unchanged
    assert first.id == second.id
    assert first.profile.login == "isaac.brock@example.com"  # login defaults to email
    assert first.status == "PROVISIONED"  # activated, no password yet
    [stored] = users_with_login(sb, "isaac.brock@example.com")
    assert stored["id"] == first.id
    assert stored["profile"]["firstName"] == "Isaac"


async def test_create_user_staged_with_groups(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (okta := make_client(OktaClient)):
        groups = await okta.list_groups(ListGroupsParams(q="Engineering"))
        ids = [g.id for g in groups.items]
        user = await okta.create_user(
            CreateUserParams(
                first_name="A",
                last_name="B",
                email="ab@example.com",
                login="ab.login@example.com",
                group_ids=ids,
                activate=False,
            )
        )
    assert user.status == "STAGED"
    assert user.profile.login == "ab.login@example.com"
    members = {(m["groupId"], m["userId"]) for m in state(sb, "okta")["group_members"].values()}
    assert members == {(gid, user.id) for gid in ids}
    assert len(ids) == 2


async def test_create_user_existing_user_still_gets_groups(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (okta := make_client(OktaClient)):
        [group] = (await okta.list_groups(ListGroupsParams(q="Sales"))).items
        user = await okta.create_user(
            CreateUserParams(
                first_name="Ada",
                last_name="Lovelace",
                email="ada.lovelace@example.com",
                group_ids=[group.id],
            )
        )
    assert user.unchanged and user.status == "ACTIVE"
    assert {"groupId": group.id, "userId": user.id} in state(sb, "okta")["group_members"].values()


async def test_create_user_lost_response_never_duplicates(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """Every write commits but its answer is lost (504): the retried POST meets Okta's
    E0000001 "login already exists", which the client turns into the existing user."""
    set_faults(sb, "okta", lost_after_commit=1.0)
    async with (okta := make_client(OktaClient)):
        user = await okta.create_user(NEW)
        assert faults_seen(sb, "okta", "lost_after_commit") == 1
        clear_faults(sb, "okta")
        again = await okta.create_user(NEW)
    assert user.unchanged and again.unchanged and user.id == again.id
    assert len(users_with_login(sb, NEW.email)) == 1


async def test_create_user_lost_response_without_retries(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """With a single attempt the call fails, but the re-run finds the committed user."""
    set_faults(sb, "okta", lost_after_commit=1.0)
    async with (okta := make_client(OktaClient, retry=RetryPolicy(max_attempts=1))):
        with pytest.raises(ServerError) as excinfo:
            await okta.create_user(NEW)
        assert excinfo.value.status_code == 504
        clear_faults(sb, "okta")
        user = await okta.create_user(NEW)
    assert user.unchanged
    assert len(users_with_login(sb, NEW.email)) == 1


async def test_create_user_invalid_is_a_bad_request(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (okta := make_client(OktaClient)):
        with pytest.raises(BadRequestError, match="groupIds"):
            await okta.create_user(
                CreateUserParams(
                    first_name="A", last_name="B", email="x@example.com", group_ids=["00gNOPE"]
                )
            )
    assert users_with_login(sb, "x@example.com") == []


def test_create_user_params_validate() -> None:
    with pytest.raises(ValidationError):
        CreateUserParams(first_name="", last_name="B", email="a@example.com")
    with pytest.raises(ValidationError):
        CreateUserParams(first_name="A", last_name="B", email="not-an-email")


# --- get_user / list_groups / add_user_to_group ----------------------------------------------


async def test_get_user_by_login_is_url_encoded(make_client: ClientFactory) -> None:
    login = "first+tag@example.com"  # '+' and '@' must survive as one path segment
    async with (okta := make_client(OktaClient)):
        created = await okta.create_user(
            CreateUserParams(
                first_name="F", last_name="T", email="first.tag@example.com", login=login
            )
        )
        found = await okta.get_user(GetUserParams(login=login))
        by_id = await okta.get_user(GetUserParams(login=created.id))
        with pytest.raises(NotFoundError, match="Not found"):
            await okta.get_user(GetUserParams(login="nobody@example.com"))
    assert found.id == created.id == by_id.id
    assert found.profile.login == login


async def test_list_groups_follows_link_header(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (okta := make_client(OktaClient)):
        everything = await okta.list_groups(ListGroupsParams(limit=3))
        capped = await okta.list_groups(ListGroupsParams(limit=3, max_pages=2))
        eng = await okta.list_groups(ListGroupsParams(q="eng"))
        app_groups = await okta.list_groups(ListGroupsParams(search='type eq "APP_GROUP"'))
    seeded = {g["profile"]["name"] for g in state(sb, "okta")["groups"].values()}
    assert {g.profile.name for g in everything.items} == seeded
    assert len(everything.items) == 10 and everything.pages == 4 and not everything.truncated
    assert len(capped.items) == 6 and capped.pages == 2 and capped.truncated
    assert [g.profile.name for g in eng.items] == ["Engineering", "Engineering-Oncall"]
    assert [g.profile.name for g in app_groups.items] == ["GitHub-Admins"]


async def test_add_user_to_group_is_idempotent(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (okta := make_client(OktaClient)):
        user = await okta.get_user(GetUserParams(login="grace.hopper@example.com"))
        [group] = (await okta.list_groups(ListGroupsParams(q="VPN"))).items
        set_faults(sb, "okta", lost_after_commit=1.0)  # every answer to the PUT is lost
        with pytest.raises(ServerError):
            await okta.add_user_to_group(AddUserToGroupParams(group_id=group.id, user_id=user.id))
        assert faults_seen(sb, "okta", "lost_after_commit") == FAST.max_attempts  # retried
        clear_faults(sb, "okta")
        first = await okta.add_user_to_group(
            AddUserToGroupParams(group_id=group.id, user_id=user.id)
        )
        with pytest.raises(NotFoundError):
            await okta.add_user_to_group(AddUserToGroupParams(group_id="00gNOPE", user_id=user.id))
    assert first.group_id == group.id
    members = [m for m in state(sb, "okta")["group_members"].values() if m["groupId"] == group.id]
    assert members == [{"groupId": group.id, "userId": user.id}]


# --- deactivate_user ---------------------------------------------------------------------------


async def test_deactivate_user_then_again_is_success(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (okta := make_client(OktaClient)):
        user = await okta.deactivate_user(DeactivateUserParams(user_id="ada.lovelace@example.com"))
        again = await okta.deactivate_user(DeactivateUserParams(user_id=user.id))
        with pytest.raises(NotFoundError):
            await okta.deactivate_user(DeactivateUserParams(user_id="nobody@example.com"))
    assert user.status == "DEPROVISIONED" and not user.unchanged
    assert again.unchanged
    assert state(sb, "okta")["users"][user.id]["status"] == "DEPROVISIONED"


async def test_deactivate_user_lost_response(sb: SandboxServer, make_client: ClientFactory) -> None:
    """The deactivation commits, its answer is lost, the retry meets Okta's 404 for an
    already deactivated user: the client re-reads and reports success."""
    set_faults(sb, "okta", lost_after_commit=1.0)
    async with (okta := make_client(OktaClient)):
        user = await okta.deactivate_user(DeactivateUserParams(user_id="grace.hopper@example.com"))
    assert faults_seen(sb, "okta", "lost_after_commit") == 1
    assert user.status == "DEPROVISIONED"
    assert state(sb, "okta")["users"][user.id]["status"] == "DEPROVISIONED"


# --- errors ------------------------------------------------------------------------------------


async def test_bad_token_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (okta := make_client(OktaClient, wrong_secret="wrong-token")):
        with pytest.raises(AuthenticationError):
            await okta.get_user(GetUserParams(login="ada.lovelace@example.com"))
        with pytest.raises(AuthenticationError):
            await okta.create_user(NEW)
    assert "users" not in state(sb, "okta") or not users_with_login(sb, NEW.email)


async def test_garbled_answer_is_malformed_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    set_faults(sb, "okta", malformed_rate=1.0, malformed="html")
    async with (okta := make_client(OktaClient)):
        with pytest.raises(MalformedResponseError, match="HTML"):
            await okta.list_groups(ListGroupsParams())


def okta_mock(handler: Any, token: str = "t") -> OktaClient:
    return mock_client(
        OktaClient,
        handler,
        base_url="https://acme.okta.test",
        credentials=Credentials(token=SecretStr(token)),
    )


async def test_user_without_id_is_malformed_response() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "ACTIVE", "profile": {"login": "a@b.c"}})

    async with (okta := okta_mock(handler)):
        with pytest.raises(MalformedResponseError, match="id"):
            await okta.get_user(GetUserParams(login="a@b.c"))


async def test_requests_use_okta_auth_and_encoding() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"id": "00u1", "status": "ACTIVE", "profile": {"login": "a+b@c.d"}}
        )

    async with (okta := okta_mock(handler, token="00abc")):
        await okta.get_user(GetUserParams(login="a+b@c.d"))
    assert seen[0].headers["Authorization"] == "SSWS 00abc"
    assert seen[0].url.raw_path == b"/api/v1/users/a%2Bb%40c.d"


# --- helpers and metadata ----------------------------------------------------------------------


def test_next_link_reads_okta_link_headers() -> None:
    headers = httpx.Headers(
        [
            ("link", '<https://x.okta.com/api/v1/groups?limit=2>; rel="self"'),
            ("link", '<https://x.okta.com/api/v1/groups?after=00g2&limit=2>; rel="next"'),
        ]
    )
    assert next_link(headers) == "https://x.okta.com/api/v1/groups?after=00g2&limit=2"
    assert next_link(httpx.Headers({"link": '<https://x/y>; rel="self"'})) is None
    assert next_link(None) is None


def _bad_request(body: str) -> BadRequestError:
    return BadRequestError("x", status_code=400, body_excerpt=body)


def test_is_login_taken_only_for_login_conflicts() -> None:
    taken = (
        '{"errorCode":"E0000001","errorSummary":"Api validation failed: login","errorCauses":'
        '[{"errorSummary":"login: An object with this field already exists in the current '
        'organization"}]}'
    )
    bad_email = (
        '{"errorCode":"E0000001","errorSummary":"Api validation failed: email","errorCauses":'
        '[{"errorSummary":"email: Does not match required pattern"}]}'
    )
    assert is_login_taken(_bad_request(taken))
    assert not is_login_taken(_bad_request(bad_email))
    assert not is_login_taken(_bad_request('{"errorCode":"E0000003"}'))
    assert is_login_taken(_bad_request(taken[:150]))  # a cut excerpt: text fallback


def test_action_flags() -> None:
    assert get_action("okta", "create_user").idempotent
    assert not get_action("okta", "create_user").read_only
    assert get_action("okta", "get_user").read_only
    assert get_action("okta", "list_groups").read_only
    assert get_action("okta", "deactivate_user").idempotent
    assert get_action("okta", "add_user_to_group").idempotent
