"""Jira client against the sandbox: issues (retry-safe by marker label), comments
(retry-safe by comment property), transitions, typed errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.errors import AuthenticationError, BadRequestError, NotFoundError, ServerError
from integrations.jira import (
    COMMENT_PROPERTY,
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
    comment = get_action("jira", "add_comment")
    assert (comment.idempotent, comment.key_field) == (True, "idempotency_key")
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
    assert comments[comment.id]["issue"] == "OPS-1" and not comment.existing
    assert comments[comment.id]["body"]["content"][0]["content"][0]["text"] == "Rolled back"
    [prop] = comments[comment.id]["properties"]
    assert prop["key"] == COMMENT_PROPERTY and prop["value"]["key"]


# --- comments: once per idempotency key ----------------------------------------------------


async def open_issue(client: JiraClient) -> str:
    return (await client.create_issue(CreateIssueParams(project_key="OPS", summary="Ada"))).key


@pytest.mark.parametrize("mode", ["504", "reset"])
async def test_a_lost_comment_answer_is_found_not_reposted(
    sb: SandboxServer, make_client: ClientFactory, mode: str
) -> None:
    async with (client := make_client(JiraClient)):
        key = await open_issue(client)
        sb.faults.set("jira", lost_after_commit=1.0, lost_mode=mode)
        with collecting() as metrics:
            comment = await client.add_comment(AddCommentParams(issue_key=key, body="Shipped"))
    assert comment.existing and len(collection(sb, "jira", "comments")) == 1
    assert [m.action for m in metrics] == [
        "add_comment.lookup",
        "add_comment",
        "add_comment.lookup",
    ]


async def test_a_comment_rerun_by_a_fresh_client_finds_the_first(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(JiraClient)):
        key = await open_issue(client)
        first = await client.add_comment(AddCommentParams(issue_key=key, body="Shipped"))
    async with (client := make_client(JiraClient)):
        rerun = await client.add_comment(AddCommentParams(issue_key=key, body="Shipped"))
        other = await client.add_comment(AddCommentParams(issue_key=key, body="Delivered"))
        keyed = await client.add_comment(
            AddCommentParams(issue_key=key, body="Shipped", idempotency_key="run-1:ship")
        )
        keyed_again = await client.add_comment(
            AddCommentParams(issue_key=key, body="Shipped!", idempotency_key="run-1:ship")
        )
        ticks = [
            await client.add_comment(
                AddCommentParams(issue_key=key, body="tick", dedupe_window_seconds=0)
            )
            for _ in range(2)
        ]
    assert (rerun.id, rerun.existing, first.existing) == (first.id, True, False)
    assert not other.existing and not keyed.existing
    assert (keyed_again.id, keyed_again.existing) == (keyed.id, True)
    assert ticks[0].id != ticks[1].id
    assert len(collection(sb, "jira", "comments")) == 5


async def test_the_comment_lookup_pages_through_the_issue(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(JiraClient)):
        key = await open_issue(client)
        first = await client.add_comment(AddCommentParams(issue_key=key, body="first"))
        for i in range(100):  # newer comments: the first is on the second page of 100
            await client.add_comment(
                AddCommentParams(issue_key=key, body=f"n{i}", dedupe_window_seconds=0)
            )
        with collecting() as metrics:
            rerun = await client.add_comment(
                AddCommentParams(issue_key=key, body="first", dedupe_window_seconds=3600)
            )
        listed = await client.request(
            "GET", f"/rest/api/3/issue/{key}/comment", action="raw", params={"maxResults": 2}
        )
    assert (rerun.id, rerun.existing) == (first.id, True)
    assert [m.action for m in metrics] == ["add_comment.lookup"] * 2
    # The list itself: oldest first by default, properties only when expanded.
    assert (listed["total"], listed["startAt"], len(listed["comments"])) == (101, 0, 2)
    assert listed["comments"][0]["id"] == first.id and "properties" not in listed["comments"][0]


def mocked_comments(comments: list[dict[str, object]]) -> tuple[JiraClient, list[httpx.Request]]:
    """A Jira whose issue has ``comments`` (newest first) and which creates any comment."""
    posts: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            assert request.url.params["expand"] == "properties"
            assert request.url.params["orderBy"] == "-created"
            page = {"startAt": 0, "maxResults": 100, "total": len(comments), "comments": comments}
            return httpx.Response(200, json=page)
        posts.append(request)
        return httpx.Response(201, json={"id": "10100", "body": {}})

    client = mock_client(
        JiraClient,
        vendor,
        base_url="https://acme.atlassian.net",
        credentials=Credentials(username="me@example.com", password=SecretStr("api-token-x")),
    )
    return client, posts


async def test_a_derived_key_counts_recent_comments_only_a_callers_key_any() -> None:
    params = AddCommentParams(issue_key="OPS-1", body="Shipped")
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    def old_comment(key: str) -> dict[str, object]:
        prop = {"key": COMMENT_PROPERTY, "value": {"key": key}}
        return {"id": "10001", "created": an_hour_ago, "properties": [prop]}

    derived = params.scope().key
    async with (mocked := mocked_comments([old_comment(derived)]))[0]:
        fresh = await mocked[0].add_comment(params)  # the same text an hour later: new
    assert not fresh.existing and len(mocked[1]) == 1
    keyed = params.model_copy(update={"idempotency_key": "run-1:ship"})
    async with (mocked := mocked_comments([old_comment("run-1:ship")]))[0]:
        found = await mocked[0].add_comment(keyed)  # a rerun of the same step: the same one
    assert (found.id, found.existing, len(mocked[1])) == ("10001", True, 0)


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
