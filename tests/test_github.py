"""GitHub client against the sandbox: issues (retry-safe by body marker), workflow runs,
repositories, typed errors, headers."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.errors import AuthenticationError, NotFoundError
from integrations.github import (
    CreateIssueParams,
    GetRepoParams,
    GitHubClient,
    ListWorkflowRunsParams,
)
from integrations.metrics import collecting
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from tests.helpers import ClientFactory, collection, mock_client


def test_actions_and_their_safety() -> None:
    assert get_action("github", "create_issue").idempotent
    assert get_action("github", "list_workflow_runs").read_only
    assert get_action("github", "get_repo").read_only


async def test_create_issue_with_marker_and_labels(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(GitHubClient)):
        issue = await client.create_issue(
            CreateIssueParams(
                owner="junction-org",
                repo="app",
                title="CI red on main",
                body="Run 9002 failed",
                labels=["ci", "bug"],
            )
        )
    assert (issue.number, issue.state, issue.existing) == (1, "open", False)
    stored = collection(sb, "github", "issues")["junction-org/app#1"]
    assert stored["title"] == "CI red on main"
    assert stored["body"].startswith("Run 9002 failed\n\n<!-- junction-idempotency-key: ")
    assert [label["name"] for label in stored["labels"]] == ["ci", "bug"]


async def test_catalog_headers_are_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": 1, "name": "app", "full_name": "o/app"})

    client = mock_client(
        GitHubClient,
        handler,
        base_url="https://gh.example",
        credentials=Credentials(token=SecretStr("ghp_test")),
    )
    repo = await client.get_repo(GetRepoParams(owner="o", repo="app"))
    assert repo.full_name == "o/app"
    (req,) = seen
    assert req.url.path == "/repos/o/app"
    assert req.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert "application/vnd.github+json" in req.headers["Accept"]
    assert req.headers["Authorization"] == "Bearer ghp_test"


async def test_same_key_finds_the_issue_instead_of_duplicating(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateIssueParams(
        owner="junction-org",
        repo="app",
        title="Flaky test",
        labels=["flaky"],
        idempotency_key="run-42:open-issue",
    )
    async with (client := make_client(GitHubClient)):
        first = await client.create_issue(params)
        again = await client.create_issue(params)
    assert (again.number, again.existing, first.existing) == (first.number, True, False)
    assert len(collection(sb, "github", "issues")) == 1


@pytest.mark.parametrize("mode", ["504", "reset"])
async def test_create_issue_retry_safe_after_lost_response(
    sb: SandboxServer, make_client: ClientFactory, mode: str
) -> None:
    sb.faults.set("github", lost_after_commit=1.0, lost_mode=mode)
    with collecting() as metrics:
        async with (client := make_client(GitHubClient)):
            issue = await client.create_issue(
                CreateIssueParams(owner="junction-org", repo="app", title="lost answer")
            )
    assert issue.existing and issue.number == 1
    assert list(collection(sb, "github", "issues")) == ["junction-org/app#1"]
    lookup = "create_issue.lookup"
    assert [m.action for m in metrics] == [lookup, "create_issue", lookup]


async def test_list_workflow_runs_filters(make_client: ClientFactory) -> None:
    async with (client := make_client(GitHubClient)):
        every = await client.list_workflow_runs(
            ListWorkflowRunsParams(owner="junction-org", repo="app")
        )
        failed = await client.list_workflow_runs(
            ListWorkflowRunsParams(owner="junction-org", repo="app", status="failure")
        )
        ci = await client.list_workflow_runs(
            ListWorkflowRunsParams(
                owner="junction-org", repo="app", workflow_id="ci.yml", branch="main", per_page=1
            )
        )
    assert every.total_count == 5 and len(every.workflow_runs) == 5
    created = [r.created_at.isoformat() for r in every.workflow_runs if r.created_at]
    assert len(created) == 5 and created == sorted(created, reverse=True)  # newest first
    assert [r.conclusion for r in failed.workflow_runs] == ["failure"]
    assert ci.total_count == 2 and len(ci.workflow_runs) == 1
    assert ci.workflow_runs[0].head_branch == "main"


async def test_get_repo_and_not_found(make_client: ClientFactory) -> None:
    async with (client := make_client(GitHubClient)):
        repo = await client.get_repo(GetRepoParams(owner="junction-org", repo="infra"))
        assert (repo.full_name, repo.private, repo.default_branch) == (
            "junction-org/infra",
            True,
            "main",
        )
        with pytest.raises(NotFoundError):
            await client.get_repo(GetRepoParams(owner="junction-org", repo="missing"))
        with pytest.raises(NotFoundError):
            await client.create_issue(
                CreateIssueParams(owner="junction-org", repo="missing", title="x")
            )


async def test_bad_token_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(GitHubClient, wrong_secret="ghp_wrongwrongwrong")):
        with pytest.raises(AuthenticationError) as err:
            await client.create_issue(
                CreateIssueParams(owner="junction-org", repo="app", title="x")
            )
    assert "wrongwrong" not in str(err.value)
    assert collection(sb, "github", "issues") == {}
