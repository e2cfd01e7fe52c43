"""Jira Cloud REST API v3: create, read, comment on and transition issues.

Follows https://developer.atlassian.com/cloud/jira/platform/rest/v3/ (issues:
``POST /rest/api/3/issue``, ``GET /rest/api/3/issue/{issueIdOrKey}``, comments, transitions;
search: ``GET /rest/api/3/search/jql``) and the Atlassian Document Format
(https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/) for rich
text. Auth is HTTP basic with an Atlassian account email and API token. The base URL is
the site (``https://<site>.atlassian.net``); paths carry ``/rest/api/3``.

Retry-safety of :meth:`JiraClient.create_issue`: Jira has no idempotency key, so every
issue is created with a marker label ``junction-idem-<key>`` and, before the first
attempt and every re-attempt, ``search/jql`` looks for an issue of the project carrying
it; a found issue is returned instead of creating another. The key is the caller's
(any issue with it counts), else derived from project, summary and issue type (only an
unresolved issue counts: the same summary after the first is done opens a new one).
Jira's search is eventually consistent (the index can lag a write by a moment); the
backoff before a re-attempt gives it that moment, but a duplicate cannot be ruled out
absolutely. :meth:`JiraClient.transition_issue` reads the issue's status first, so a
repeat of a transition whose target status is reached already is a success.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import NotFoundError
from integrations.idempotency import derived_key

LABEL_PREFIX = "junction-idem-"


def adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document Format document.

    Blank lines separate paragraphs; single newlines become hard breaks (ADF forbids
    empty text nodes, so none are emitted).

    Args:
        text: The plain text.

    Returns:
        An ADF ``doc`` node.
    """
    paragraphs: list[dict[str, Any]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        content: list[dict[str, Any]] = []
        for line in block.split("\n"):
            if content:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def idempotency_label(key: str) -> str:
    """The marker label for an idempotency key (labels may not contain spaces)."""
    return LABEL_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "-", key)[:200]


# --- inputs -------------------------------------------------------------------------------


class CreateIssueParams(BaseModel):
    """Input of :meth:`JiraClient.create_issue`.

    Attributes:
        project_key: Project key (``OPS``).
        summary: One-line summary (Jira caps it at 255 characters).
        issue_type: Issue type name (``Task``, ``Bug``, ``Incident``...).
        description: Plain text (converted to ADF) or a ready ADF document.
        labels: Labels (no spaces).
        idempotency_key: Identifies this logical request across retries and reruns
            (e.g. ``<run id>:<step>``). Default: derived from project, summary and issue
            type, so the same request made again finds the unresolved issue it opened.
    """

    project_key: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    summary: str = Field(min_length=1, max_length=255)
    issue_type: str = "Task"
    description: str | dict[str, Any] | None = None
    labels: list[str] = Field(default_factory=list)
    idempotency_key: str | None = Field(None, min_length=1)

    @property
    def key(self) -> str:
        """The idempotency key: the caller's, else derived from the request."""
        return derived_key(
            self.idempotency_key, self.project_key.upper(), self.summary, self.issue_type
        )

    def body(self) -> dict[str, Any]:
        """The ``IssueUpdateDetails`` request body, marker label included."""
        fields: dict[str, Any] = {
            "project": {"key": self.project_key},
            "summary": self.summary,
            "issuetype": {"name": self.issue_type},
            "labels": [*self.labels, idempotency_label(self.key)],
        }
        if self.description is not None:
            fields["description"] = (
                adf(self.description) if isinstance(self.description, str) else self.description
            )
        return {"fields": fields}


class GetIssueParams(BaseModel):
    """Input of :meth:`JiraClient.get_issue`.

    Attributes:
        issue_key: Issue key (``OPS-12``) or id.
        fields: Fields to return.
    """

    issue_key: str = Field(min_length=1)
    fields: list[str] = Field(
        default_factory=lambda: ["summary", "status", "labels", "issuetype", "project"]
    )


class AddCommentParams(BaseModel):
    """Input of :meth:`JiraClient.add_comment`.

    Attributes:
        issue_key: Issue key or id.
        body: Plain text (converted to ADF) or an ADF document.
    """

    issue_key: str = Field(min_length=1)
    body: str | dict[str, Any]


class TransitionIssueParams(BaseModel):
    """Input of :meth:`JiraClient.transition_issue`.

    Attributes:
        issue_key: Issue key or id.
        transition: Transition id, transition name or target status name
            (case-insensitive), e.g. ``Done``.
    """

    issue_key: str = Field(min_length=1)
    transition: str = Field(min_length=1)


# --- outputs ------------------------------------------------------------------------------


class CreatedIssue(BaseModel):
    """A created (or, on a retry, found) issue.

    Attributes:
        existing: Set by Junction (not a Jira field): the issue was found by its marker
            label rather than created by this call.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    key: str
    self_url: str | None = Field(None, alias="self")
    existing: bool = False


class JiraNamed(BaseModel):
    """A named Jira object (status, issue type, project)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    name: str | None = None
    key: str | None = None


class JiraStatus(JiraNamed):
    """An issue's status, with its category (``new``, ``indeterminate``, ``done``)."""

    status_category: JiraNamed | None = Field(None, alias="statusCategory")


class JiraIssueFields(BaseModel):
    """The issue fields Junction reads."""

    model_config = ConfigDict(extra="allow")

    summary: str | None = None
    status: JiraStatus | None = None
    labels: list[str] = Field(default_factory=list)
    issuetype: JiraNamed | None = None
    project: JiraNamed | None = None

    @property
    def is_done(self) -> bool:
        """Whether the issue is resolved (its status category is ``done``)."""
        if self.status is None:
            return False
        category = self.status.status_category
        if category is not None and (category.key or category.name):
            return (category.key or category.name or "").lower() in ("done", "complete")
        return (self.status.name or "").lower() in ("done", "closed", "resolved")


class JiraIssue(BaseModel):
    """An issue (``IssueBean``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    key: str
    self_url: str | None = Field(None, alias="self")
    fields: JiraIssueFields = Field(default_factory=JiraIssueFields)


class SearchResults(BaseModel):
    """Answer of ``search/jql``."""

    model_config = ConfigDict(extra="allow")

    issues: list[JiraIssue] = Field(default_factory=list)
    next_page_token: str | None = Field(None, alias="nextPageToken")
    is_last: bool | None = Field(None, alias="isLast")


class JiraComment(BaseModel):
    """A comment."""

    model_config = ConfigDict(extra="allow")

    id: str
    created: str | None = None
    body: Any = None


class JiraTransition(BaseModel):
    """One available transition."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    to: JiraNamed | None = None


class TransitionList(BaseModel):
    """Answer of ``GET .../transitions``."""

    model_config = ConfigDict(extra="allow")

    transitions: list[JiraTransition] = Field(default_factory=list)


class TransitionResult(BaseModel):
    """Outcome of :meth:`JiraClient.transition_issue`.

    Attributes:
        unchanged: Set by Junction: the issue already was in the target status, so no
            transition ran (``transition_id`` is then empty).
    """

    issue_key: str
    transition_id: str
    transition_name: str | None = None
    to_status: str | None = None
    unchanged: bool = False


# --- client -------------------------------------------------------------------------------


class JiraClient(IntegrationClient):
    """Typed Jira Cloud client (``get_client("jira")``)."""

    service = "jira"

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def create_issue(self, params: CreateIssueParams) -> CreatedIssue:
        """Create an issue, safely retried and rerun (check-before-create by marker label).

        Before the first attempt and every re-attempt, ``search/jql`` looks for an issue
        of the project with the label ``junction-idem-<key>``; if one exists (a previous
        attempt committed but its answer was lost, or an earlier run made the same
        request), it is returned with ``existing=True``. With a derived key only an
        unresolved issue counts. A lookup that fails stops the call: no blind re-create.

        Args:
            params: Project, summary, type, description, labels, idempotency key.

        Returns:
            The created or found issue's id and key.
        """
        label = idempotency_label(params.key)
        any_status = params.idempotency_key is not None

        async def lookup() -> CreatedIssue | None:
            found = await self.request(
                "GET",
                "/rest/api/3/search/jql",
                action="create_issue.lookup",
                model=SearchResults,
                params={
                    "jql": f'project = "{params.project_key}" AND labels = "{label}"',
                    "fields": "summary,labels,status",
                    "maxResults": 20,
                },
            )
            issue = next((i for i in found.issues if any_status or not i.fields.is_done), None)
            if issue is None:
                return None
            return CreatedIssue.model_validate(
                {"id": issue.id, "key": issue.key, "self": issue.self_url, "existing": True}
            )

        async def create() -> CreatedIssue:
            return await self.request(
                "POST",
                "/rest/api/3/issue",
                action="create_issue",
                model=CreatedIssue,
                json=params.body(),
                idempotent=False,
                max_attempts=1,  # re-attempts go through lookup() first, below
            )

        return await self.create_once(lookup=lookup, create=create, lookup_first=True)

    @action(read_only=True)
    async def get_issue(self, params: GetIssueParams) -> JiraIssue:
        """Read an issue.

        Args:
            params: Issue key and the fields wanted.

        Returns:
            The issue.

        Raises:
            NotFoundError: No such issue (or no permission to see it).
        """
        return await self.request(
            "GET",
            self.path("/rest/api/3/issue/{issue}", issue=params.issue_key),
            action="get_issue",
            model=JiraIssue,
            params={"fields": ",".join(params.fields)} if params.fields else None,
        )

    @action(read_only=False, idempotent=False)
    async def add_comment(self, params: AddCommentParams) -> JiraComment:
        """Add a comment to an issue.

        Not retried once the request may have reached Jira (no idempotency key: a
        retry after a lost response would comment twice).

        Args:
            params: Issue key and comment body.

        Returns:
            The created comment.
        """
        body = adf(params.body) if isinstance(params.body, str) else params.body
        return await self.request(
            "POST",
            self.path("/rest/api/3/issue/{issue}/comment", issue=params.issue_key),
            action="add_comment",
            model=JiraComment,
            json={"body": body},
            idempotent=False,
        )

    @action(read_only=False, idempotent=False)
    async def transition_issue(self, params: TransitionIssueParams) -> TransitionResult:
        """Move an issue through its workflow (e.g. to ``Done``).

        Reads the issue's status first: when ``transition`` names the status the issue
        is in already, nothing runs and ``unchanged`` is set (so a rerun of the step
        succeeds). Otherwise looks the transition up among the ones currently available
        (by id, name or target status), then performs it. Not retried after the request
        may have reached Jira: the same transition is usually unavailable from the new
        status.

        Args:
            params: Issue key and transition.

        Returns:
            The transition performed (or ``unchanged``).

        Raises:
            NotFoundError: No available transition matches.
        """
        wanted = params.transition.casefold()
        current = await self.request(
            "GET",
            self.path("/rest/api/3/issue/{issue}", issue=params.issue_key),
            action="transition_issue.status",
            model=JiraIssue,
            params={"fields": "status"},
        )
        status = current.fields.status
        if status is not None and (status.name or "").casefold() == wanted:
            return TransitionResult(
                issue_key=params.issue_key,
                transition_id="",
                to_status=status.name,
                unchanged=True,
            )
        transitions = self.path("/rest/api/3/issue/{issue}/transitions", issue=params.issue_key)
        available = await self.request(
            "GET",
            transitions,
            action="transition_issue.list",
            model=TransitionList,
        )
        match = next(
            (
                t
                for t in available.transitions
                if t.id == params.transition
                or (t.name or "").casefold() == wanted
                or (t.to is not None and (t.to.name or "").casefold() == wanted)
            ),
            None,
        )
        if match is None:
            names = ", ".join(t.name or t.id for t in available.transitions) or "none"
            raise NotFoundError(
                f"no transition {params.transition!r} available for {params.issue_key} "
                f"(available: {names})",
                status_code=404,
                service=self.name,
                action="transition_issue",
            )
        await self.request(
            "POST",
            transitions,
            action="transition_issue",
            json={"transition": {"id": match.id}},
            expect="none",
            idempotent=False,
        )
        return TransitionResult(
            issue_key=params.issue_key,
            transition_id=match.id,
            transition_name=match.name,
            to_status=match.to.name if match.to else None,
        )
