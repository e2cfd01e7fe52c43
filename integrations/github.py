"""GitHub REST API: issues, workflow runs, repositories.

Follows https://docs.github.com/en/rest (``POST /repos/{owner}/{repo}/issues``, ``GET
/repos/{owner}/{repo}/issues``, ``GET /repos/{owner}/{repo}/actions/runs``, ``GET
/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs``, ``GET /repos/{owner}/{repo}``;
spec: github/rest-api-description). Auth: ``Authorization: Bearer <token>``; the catalog
adds ``Accept: application/vnd.github+json`` and ``X-GitHub-Api-Version: 2022-11-28``.

Retry- and rerun-safety of :meth:`GitHubClient.create_issue`: GitHub has no idempotency
key, so the issue body ends with a hidden marker ``<!-- junction-idempotency-key: <key>
-->`` and, before the first attempt and every re-attempt, the most recently created
issues of the repository (``GET .../issues?sort=created&direction=desc``, narrowed by
the issue's labels) are searched for it. The key is the caller's (an issue in any state
counts), else derived from repository and title (only an open issue counts). The list
endpoint reads the database directly (the search API is indexed and lags, so it is not
used). A found issue is returned instead of a new one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import NotFoundError
from integrations.idempotency import derived_key

MARKER = "<!-- junction-idempotency-key: {key} -->"
_NAME = r"^[A-Za-z0-9_.-]+$"

RunStatus = Literal[
    "completed",
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "skipped",
    "stale",
    "success",
    "timed_out",
    "in_progress",
    "queued",
    "requested",
    "waiting",
    "pending",
]


# --- inputs -------------------------------------------------------------------------------


class CreateIssueParams(BaseModel):
    """Input of :meth:`GitHubClient.create_issue`.

    Attributes:
        owner: Repository owner (user or organisation).
        repo: Repository name.
        title: Issue title.
        body: Issue body (Markdown); the idempotency marker is appended.
        labels: Label names (dropped by GitHub unless the token has push access).
        assignees: Logins to assign.
        idempotency_key: Identifies this logical request across retries and reruns
            (e.g. ``<run id>:<step>``). Default: derived from repository and title, so
            the same request made again finds the open issue it opened.
    """

    owner: str = Field(pattern=_NAME)
    repo: str = Field(pattern=_NAME)
    title: str = Field(min_length=1)
    body: str = ""
    labels: list[str] = Field(default_factory=list)
    assignees: list[str] = Field(default_factory=list)
    idempotency_key: str | None = Field(None, min_length=1, pattern=r"^[^<>\n]+$")

    @property
    def marker(self) -> str:
        """The hidden marker appended to the body."""
        key = derived_key(self.idempotency_key, self.owner.lower(), self.repo.lower(), self.title)
        return MARKER.format(key=key)

    def request_body(self) -> dict[str, Any]:
        """The JSON body of ``POST .../issues``."""
        text = f"{self.body}\n\n{self.marker}" if self.body else self.marker
        body: dict[str, Any] = {"title": self.title, "body": text}
        if self.labels:
            body["labels"] = self.labels
        if self.assignees:
            body["assignees"] = self.assignees
        return body


class ListWorkflowRunsParams(BaseModel):
    """Input of :meth:`GitHubClient.list_workflow_runs`.

    Attributes:
        owner: Repository owner.
        repo: Repository name.
        workflow_id: Only runs of this workflow (id or file name, ``ci.yml``).
        branch: Only runs for this branch.
        status: Only runs with this status or conclusion.
        event: Only runs triggered by this event (``push``).
        per_page: Page size (1-100).
        page: Page number (from 1).
    """

    owner: str = Field(pattern=_NAME)
    repo: str = Field(pattern=_NAME)
    workflow_id: int | str | None = None
    branch: str | None = None
    status: RunStatus | None = None
    event: str | None = None
    per_page: int = Field(30, ge=1, le=100)
    page: int = Field(1, ge=1)


class GetRepoParams(BaseModel):
    """Input of :meth:`GitHubClient.get_repo`."""

    owner: str = Field(pattern=_NAME)
    repo: str = Field(pattern=_NAME)


# --- outputs ------------------------------------------------------------------------------


class GitHubLabel(BaseModel):
    """A label on an issue."""

    model_config = ConfigDict(extra="allow")

    name: str


class GitHubIssue(BaseModel):
    """An issue.

    Attributes:
        existing: Set by Junction (not a GitHub field): found by its marker on a retry
            rather than created by this call.
    """

    model_config = ConfigDict(extra="allow")

    id: int
    number: int
    title: str
    body: str | None = None
    state: str
    html_url: str | None = None
    labels: list[GitHubLabel | str] = Field(default_factory=list)
    created_at: datetime | None = None
    pull_request: dict[str, Any] | None = None
    existing: bool = False


class WorkflowRun(BaseModel):
    """A GitHub Actions workflow run."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str | None = None
    head_branch: str | None = None
    head_sha: str | None = None
    run_number: int | None = None
    event: str | None = None
    status: str | None = None
    conclusion: str | None = None
    workflow_id: int | None = None
    html_url: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class WorkflowRunList(BaseModel):
    """A page of workflow runs."""

    model_config = ConfigDict(extra="allow")

    total_count: int
    workflow_runs: list[WorkflowRun]


class GitHubRepo(BaseModel):
    """A repository (the fields Junction reads)."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    full_name: str
    private: bool = False
    default_branch: str | None = None
    html_url: str | None = None
    open_issues_count: int | None = None


# --- client -------------------------------------------------------------------------------


class GitHubClient(IntegrationClient):
    """Typed GitHub REST client (``get_client("github")``)."""

    service = "github"

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def create_issue(self, params: CreateIssueParams) -> GitHubIssue:
        """Create an issue, safely retried and rerun (check-before-create by body marker).

        Before the first attempt and every re-attempt, the 100 most recently created
        issues (open ones only for a derived key; with the issue's labels, if any) are
        searched for the body marker; a found issue is returned with ``existing=True``.
        A 404 from the lookup is read as "nothing yet": it means the repository is
        missing or hidden, and the create then reports that itself.

        Args:
            params: Repository, title, body, labels, assignees, idempotency key.

        Returns:
            The created (or found) issue.
        """
        issues_path = self.path(
            "/repos/{owner}/{repo}/issues", owner=params.owner, repo=params.repo
        )
        marker = params.marker

        async def lookup() -> GitHubIssue | None:
            query: dict[str, Any] = {
                "state": "all" if params.idempotency_key else "open",
                "sort": "created",
                "direction": "desc",
                "per_page": 100,
            }
            if params.labels:
                query["labels"] = ",".join(params.labels)
            try:
                issues = await self.request(
                    "GET",
                    issues_path,
                    action="create_issue.lookup",
                    model=list[GitHubIssue],
                    params=query,
                )
            except NotFoundError:
                return None
            for issue in issues:
                if issue.pull_request is None and marker in (issue.body or ""):
                    return issue.model_copy(update={"existing": True})
            return None

        return await self.post_once(
            issues_path,
            action="create_issue",
            model=GitHubIssue,
            json=params.request_body(),
            lookup=lookup,
            lookup_first=True,
        )

    @action(read_only=True)
    async def list_workflow_runs(self, params: ListWorkflowRunsParams) -> WorkflowRunList:
        """List GitHub Actions runs of a repository (or of one workflow), newest first.

        Args:
            params: Repository, filters and page.

        Returns:
            One page of runs and the total count.
        """
        repo = {"owner": params.owner, "repo": params.repo}
        path = self.path("/repos/{owner}/{repo}/actions/runs", **repo)
        if params.workflow_id is not None:
            path = self.path(
                "/repos/{owner}/{repo}/actions/workflows/{workflow}/runs",
                workflow=params.workflow_id,
                **repo,
            )
        query: dict[str, Any] = {"per_page": params.per_page, "page": params.page}
        for key in ("branch", "status", "event"):
            value = getattr(params, key)
            if value is not None:
                query[key] = value
        return await self.request(
            "GET", path, action="list_workflow_runs", model=WorkflowRunList, params=query
        )

    @action(read_only=True)
    async def get_repo(self, params: GetRepoParams) -> GitHubRepo:
        """Read a repository.

        Args:
            params: Owner and name.

        Returns:
            The repository.
        """
        return await self.request(
            "GET",
            self.path("/repos/{owner}/{repo}", owner=params.owner, repo=params.repo),
            action="get_repo",
            model=GitHubRepo,
        )
