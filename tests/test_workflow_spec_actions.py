"""The client actions added for the built-in workflows, end to end against the sandbox:
GitLab ``find_user`` / ``create_user``, PagerDuty ``list_oncalls``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.errors import ConflictError, NotFoundError
from integrations.gitlab import CreateUserParams, FindUserParams, GitLabClient
from integrations.pagerduty import (
    ListOncallsParams,
    PagerDutyClient,
)
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from tests.helpers import ClientFactory, faults_seen, mock_client, set_faults, state


def gitlab_users(sb: SandboxServer) -> list[dict[str, Any]]:
    return list(state(sb, "gitlab")["users"].values())


# --- GitLab users -----------------------------------------------------------------------------


async def test_find_user_by_username_and_email(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (gl := make_client(GitLabClient)):
        by_name = await gl.find_user(FindUserParams(username="BOB"))
        by_email = await gl.find_user(FindUserParams(email="Alice@Example.com"))
        with pytest.raises(NotFoundError, match="no GitLab user with email"):
            # "alice" is a substring match of GitLab's search, not an exact email
            await gl.find_user(FindUserParams(email="alice@example.co"))
    assert by_name.username == "bob" and by_name.id == 3
    assert by_email.username == "alice" and by_email.id == 2


def test_find_user_needs_exactly_one_key() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        FindUserParams()
    with pytest.raises(ValidationError, match="exactly one"):
        FindUserParams(username="bob", email="bob@example.com")


async def test_create_user_creates_once_and_reuses(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateUserParams(email="new.hire@example.com", username="new.hire", name="New Hire")
    async with (gl := make_client(GitLabClient)):
        first = await gl.create_user(params)
        again = await gl.create_user(params)
        with pytest.raises(ConflictError, match="Username has already been taken"):
            await gl.create_user(
                CreateUserParams(email="other@example.com", username="new.hire", name="Other")
            )
    assert not first.unchanged and again.unchanged and again.id == first.id
    assert [u["username"] for u in gitlab_users(sb)].count("new.hire") == 1
    assert get_action("gitlab", "create_user").idempotent


async def test_create_user_lost_response_never_duplicates(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """The POST commits and its answer is lost: the lookup finds the user."""
    set_faults(sb, "gitlab", lost_after_commit=1.0)
    params = CreateUserParams(email="lost@example.com", username="lost", name="Lost Answer")
    async with (gl := make_client(GitLabClient)):
        user = await gl.create_user(params)
    assert faults_seen(sb, "gitlab", "lost_after_commit") == 1
    assert user.unchanged and user.username == "lost"
    assert [u["username"] for u in gitlab_users(sb)].count("lost") == 1


async def test_create_user_request_shape() -> None:
    """The body asks GitLab to mail a reset link (we never hold a password)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json=[])
        return httpx.Response(
            201, json={"id": 9, "username": "x.y", "state": "active", "email": "x@y.io"}
        )

    creds = Credentials(token=SecretStr("t"), source="test")
    async with mock_client(
        GitLabClient, handler, base_url="https://gl.example.com/api/v4", credentials=creds
    ) as gl:
        user = await gl.create_user(CreateUserParams(email="x@y.io", username="x.y", name="X"))
    assert user.id == 9
    # Create first: GitLab answers 409 on a taken username, so no lookup before the POST.
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/api/v4/users")]
    body = seen[0].read()
    assert b'"username":"x.y"' in body
    assert b'"reset_password":true' in body and b'password":' not in body.replace(
        b"reset_password", b""
    )


# --- PagerDuty on-calls -----------------------------------------------------------------------


async def test_list_oncalls_gives_emails(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (pd := make_client(PagerDutyClient)):
        everyone = await pd.list_oncalls(ListOncallsParams(escalation_policy_ids=["PPOLICY1"]))
        first = await pd.list_oncalls(
            ListOncallsParams(escalation_policy_ids=["PPOLICY1"], max_escalation_level=1)
        )
        none = await pd.list_oncalls(ListOncallsParams(escalation_policy_ids=["PNOPE"]))
    assert everyone.emails == ["oncall@example.com", "sandbox-user@example.com"]
    assert [o.escalation_level for o in everyone.oncalls] == [1, 2]
    assert first.emails == ["oncall@example.com"]
    assert none.emails == [] and none.oncalls == []
    assert get_action("pagerduty", "list_oncalls").read_only


async def test_list_oncalls_query_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"oncalls": [], "limit": 100, "offset": 0, "more": False})

    creds = Credentials(token=SecretStr("t"), source="test")
    async with mock_client(
        PagerDutyClient, handler, base_url="https://api.pagerduty.com", credentials=creds
    ) as pd:
        await pd.list_oncalls(ListOncallsParams(schedule_ids=["S1", "S2"]))
    query = seen[0].url.params
    assert seen[0].url.path == "/oncalls"
    assert query.get_list("include[]") == ["users"]
    assert query.get_list("schedule_ids[]") == ["S1", "S2"]
    assert query["earliest"] == "true"
