"""Jira client against the sandbox: issues (retry-safe by marker label), comments,
transitions, typed errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
from tests.helpers import ClientFactory, collection


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
    assert actions == ["create_issue", "create_issue.lookup"]


async def test_create_is_not_repeated_blind_when_the_lookup_fails(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("jira", error_rate=1.0)  # every request answers 503
    async with (client := make_client(JiraClient)):
        with pytest.raises(ServerError):
            await client.create_issue(CreateIssueParams(project_key="OPS", summary="never"))
    # One create; the re-attempt needs a lookup first, which kept failing (3 tries).
    assert sb.request_log.count("jira", "POST /rest/api/3/issue") == 1
    assert sb.request_log.count("jira", "GET /rest/api/3/search/jql") == 3


async def test_create_issue_re_attempts_after_a_5xx(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("jira", error_next=1)  # only the first request (the create) fails
    async with (client := make_client(JiraClient)):
        created = await client.create_issue(CreateIssueParams(project_key="OPS", summary="2nd"))
    assert not created.existing and list(collection(sb, "jira", "issues")) == ["OPS-1"]
    assert sb.request_log.count("jira", "POST /rest/api/3/issue") == 2
    assert sb.request_log.count("jira", "GET /rest/api/3/search/jql") == 1


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
