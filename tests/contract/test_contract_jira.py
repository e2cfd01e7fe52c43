"""Contract: every Jira action, sent to Prism serving Jira Cloud's REST v3 description
(Atlassian's swagger-v3), is accepted; a request that breaks the spec is rejected.

Spec gap: the trimmed description lacks ``GET /rest/api/3/issue/{issueIdOrKey}/comment``
(Prism answers 405), the list ``add_comment`` searches for its idempotency property
before commenting. The create body (the ``properties`` included) is therefore sent on
its own; the lookup is exercised against the sandbox.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import UnprocessableEntityError
from integrations.jira import (
    AddCommentParams,
    CreatedIssue,
    CreateIssueParams,
    GetIssueParams,
    JiraClient,
    JiraComment,
    TransitionIssueParams,
)
from junction.clients import get_client

pytestmark = pytest.mark.prism

ONCE = RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


def client(prism_servers: dict[str, str]) -> JiraClient:
    c = get_client(
        "jira",
        base_url=prism_servers["jira"],
        credentials=Credentials(username="me@example.com", password=SecretStr("api-token")),
        retry=ONCE,
        breaker=CircuitBreaker("jira", failure_threshold=1000),
    )
    assert isinstance(c, JiraClient)
    return c


async def test_create_issue_accepted(prism_servers: dict[str, str]) -> None:
    params = dict(
        project_key="OPS",
        summary="Checkout API down",
        issue_type="Incident",
        description="5xx since 10:02\n\nsee graph",
        labels=["sev1"],
    )
    async with (c := client(prism_servers)):
        # The create body the action sends (the action looks up its marker label first).
        created = await c.request(
            "POST",
            "/rest/api/3/issue",
            action="create_issue",
            model=CreatedIssue,
            json=CreateIssueParams(**params).body(),
        )
        # The action: the search/jql lookup runs first (Prism's example finds one).
        keyed = await c.create_issue(CreateIssueParams(**params, idempotency_key="run-1:s1"))
    assert created.key and not created.existing
    assert keyed.key and keyed.existing


async def test_get_issue_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        issue = await c.get_issue(GetIssueParams(issue_key="OPS-1"))
    assert issue.key


async def test_add_comment_accepted(prism_servers: dict[str, str]) -> None:
    params = AddCommentParams(issue_key="OPS-1", body="Rolled back", idempotency_key="run-1:s2")
    async with (c := client(prism_servers)):
        # The create the action sends (its lookup, GET .../comment, is not in the spec).
        comment = await c.request(
            "POST",
            "/rest/api/3/issue/OPS-1/comment",
            action="add_comment",
            model=JiraComment,
            json=params.request_body(params.scope().key),
        )
    assert comment.id and not comment.existing


async def test_transition_issue_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        moved = await c.transition_issue(
            TransitionIssueParams(issue_key="OPS-1", transition="QA Review")
        )
        health = await c.health_check()
    assert moved.transition_id == "711" and health.ok, health.error


async def test_malformed_request_rejected(prism_servers: dict[str, str]) -> None:
    """``fields`` must be an object: Prism answers 422."""
    async with (c := client(prism_servers)):
        with pytest.raises(UnprocessableEntityError):
            await c.request(
                "POST", "/rest/api/3/issue", action="raw", json={"fields": "not an object"}
            )
