"""Jira client against the sandbox: issues (retry-safe by marker label), comments,
transitions, typed errors."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.errors import AuthenticationError, BadRequestError, NotFoundError, ServerError
from integrations.jira import (
    AddCommentParams,
    CreateIssueParams,
    GetIssueParams,
    JiraClient,
    TransitionIssueParams,
    adf,
    idempotency_label,
)
from integrations.metrics import collecting
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from tests.helpers import ClientFactory, collection, mock_client


def test_actions_and_their_safety() -> None:
    assert get_action("jira", "create_issue").idempotent
    assert get_action("jira", "get_issue").read_only
    assert not get_action("jira", "add_comment").idempotent
    assert not get_action("jira", "transition_issue").idempotent


def test_adf_paragraphs_and_hard_breaks() -> None:
    doc = adf("line one\nline two\n\nsecond paragraph")
    assert doc["type"] == "doc" and doc["version"] == 1
    first, second = doc["content"]
    assert [n["type"] for n in first["content"]] == ["text", "hardBreak", "text"]
    assert second["content"] == [{"type": "text", "text": "second paragraph"}]
    assert idempotency_label("run 7:step/1") == "junction-idem-run-7-step-1"


async def test_create_get_comment_transition(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(JiraClient)):
        created = await client.create_issue(
            CreateIssueParams(
                project_key="OPS",
                summary="Checkout API down",
                issue_type="Incident",
                description="5xx since 10:02\n\nSee graph",
                labels=["sev1"],
            )
        )
        assert created.key == "OPS-1" and not created.existing
        issue = await client.get_issue(GetIssueParams(issue_key=created.key))
        assert issue.fields.summary == "Checkout API down"
        assert issue.fields.status is not None and issue.fields.status.name == "To Do"
        assert "sev1" in issue.fields.labels
        comment = await client.add_comment(
            AddCommentParams(issue_key=created.key, body="Rolled back")
        )
        moved = await client.transition_issue(
            TransitionIssueParams(issue_key=created.key, transition="done")
        )
    assert moved.to_status == "Done"
    stored = collection(sb, "jira", "issues")["OPS-1"]
    assert stored["fields"]["status"]["name"] == "Done"
    assert stored["fields"]["issuetype"]["name"] == "Incident"
    assert stored["fields"]["description"]["type"] == "doc"
    assert any(x.startswith("junction-idem-") for x in stored["fields"]["labels"])
    comments = collection(sb, "jira", "comments")
    assert comments[comment.id]["issue"] == "OPS-1"
    assert comments[comment.id]["body"]["content"][0]["content"][0]["text"] == "Rolled back"


async def test_same_idempotency_key_returns_the_existing_issue(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateIssueParams(project_key="JUN", summary="Disk full", idempotency_key="run-1:s1")
    async with (client := make_client(JiraClient)):
        first = await client.create_issue(params)
        again = await client.create_issue(params)
    assert (again.key, again.existing, first.existing) == (first.key, True, False)
    assert len(collection(sb, "jira", "issues")) == 1


@pytest.mark.parametrize("mode", ["504", "reset"])
async def test_create_issue_is_retry_safe_after_lost_response(
    sb: SandboxServer, make_client: ClientFactory, mode: str
) -> None:
    sb.faults.set("jira", lost_after_commit=1.0, lost_mode=mode)
    with collecting() as metrics:
        async with (client := make_client(JiraClient)):
            created = await client.create_issue(
                CreateIssueParams(project_key="OPS", summary="Lost answer")
            )
    assert created.existing and created.key == "OPS-1"
    # Committed once, found, not re-created.
    assert list(collection(sb, "jira", "issues")) == ["OPS-1"]
    actions = [m.action for m in metrics]
    assert actions == ["create_issue.lookup", "create_issue", "create_issue.lookup"]


async def test_create_is_not_repeated_blind_when_the_lookup_fails(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("jira", error_rate=1.0)  # every request answers 503
    async with (client := make_client(JiraClient)):
        with pytest.raises(ServerError):
            await client.create_issue(CreateIssueParams(project_key="OPS", summary="never"))
    # The create needs a lookup first, which kept failing (3 tries): nothing created blind.
    assert sb.request_log.count("jira", "POST /rest/api/3/issue") == 0
    assert sb.request_log.count("jira", "GET /rest/api/3/search/jql") == 3


async def test_create_issue_re_attempts_after_a_5xx() -> None:
    posts: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the lookup: nothing carries the label
            return httpx.Response(200, json={"issues": [], "isLast": True})
        posts.append(request)
        if len(posts) == 1:  # the first create fails before committing
            return httpx.Response(503, json={"errorMessages": ["busy"]})
        return httpx.Response(201, json={"id": "10001", "key": "OPS-1"})

    client = mock_client(
        JiraClient,
        vendor,
        base_url="https://acme.atlassian.net",
        credentials=Credentials(username="me@example.com", password=SecretStr("api-token-x")),
    )
    async with client:
        created = await client.create_issue(CreateIssueParams(project_key="OPS", summary="2nd"))
    assert not created.existing and created.key == "OPS-1" and len(posts) == 2


async def test_rerun_without_a_key_finds_the_open_issue_not_a_closed_one(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateIssueParams(project_key="OPS", summary="Laptop for Ada")  # no key given
    async with (client := make_client(JiraClient)):
        first = await client.create_issue(params)
        rerun = await client.create_issue(params)  # a rerun (after a crash) of the same step
        assert (rerun.key, rerun.existing) == (first.key, True)
        await client.transition_issue(TransitionIssueParams(issue_key=first.key, transition="Done"))
        again = await client.transition_issue(
            TransitionIssueParams(issue_key=first.key, transition="done")
        )
        later = await client.create_issue(params)  # the first is resolved: a new request
    assert again.unchanged and again.to_status == "Done"
    assert not later.existing and later.key != first.key
    assert len(collection(sb, "jira", "issues")) == 2


async def test_errors_are_typed(make_client: ClientFactory) -> None:
    async with (client := make_client(JiraClient)):
        with pytest.raises(NotFoundError):
            await client.get_issue(GetIssueParams(issue_key="OPS-999"))
        with pytest.raises(BadRequestError, match="valid project is required"):
            await client.create_issue(CreateIssueParams(project_key="NOPE", summary="x"))
        created = await client.create_issue(CreateIssueParams(project_key="OPS", summary="x"))
        with pytest.raises(NotFoundError, match="available"):
            await client.transition_issue(
                TransitionIssueParams(issue_key=created.key, transition="Teleport")
            )
    with pytest.raises(ValidationError):
        CreateIssueParams(project_key="OPS", summary="x" * 256)


async def test_bad_password_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(JiraClient, wrong_secret="not-the-password")):
        with pytest.raises(AuthenticationError):
            await client.create_issue(CreateIssueParams(project_key="OPS", summary="x"))
    assert collection(sb, "jira", "issues") == {}
