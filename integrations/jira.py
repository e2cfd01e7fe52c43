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

Retry- and rerun-safety of :meth:`JiraClient.add_comment`: the comment carries its key
as a comment property (``properties: [{"key": "junction.idempotency", "value": {"key":
<key>}}]``, hidden from readers) and, before the first attempt and every re-attempt, the
issue's comments (``GET /rest/api/3/issue/{issueIdOrKey}/comment?orderBy=-created&
expand=properties``, ``startAt`` paging) are searched for it; a found comment is returned
with ``existing=True``. The key is the caller's (any comment of the issue counts), else
derived from issue and body (comments of the last ``dedupe_window_seconds`` count,
default 300; 0 always comments, and only this call's own re-attempts look). The list
reads the database, not the search index, so it does not lag the write. Atlassian
documents ``expand=renderedBody`` on that list and ``properties`` on the comment bean;
a site that ignored ``expand=properties`` would make every lookup come back empty.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import NotFoundError
from integrations.idempotency import KeyScope, derived_key, key_scope

LABEL_PREFIX = "junction-idem-"

COMMENT_PROPERTY = "junction.idempotency"
"""Key of the comment property that carries a comment's idempotency key."""

COMMENT_PAGES = 10
"""Pages of 100 comments (newest first) read by one comment lookup."""


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
        idempotency_key: Identifies this logical comment across retries and reruns
            (e.g. ``<run id>:<step>``); a comment of the issue carrying it is returned
            instead of commenting again. Default: derived from issue and body, searched
            over ``dedupe_window_seconds``.
        dedupe_window_seconds: Without ``idempotency_key``: the same comment added this
            recently is this one (0: always comment).
    """

    issue_key: str = Field(min_length=1)
    body: str | dict[str, Any]
    idempotency_key: str | None = Field(None, min_length=1, max_length=1000)
    dedupe_window_seconds: int = Field(300, ge=0, le=86400)

    def scope(self) -> KeyScope:
        """The idempotency key and which comments a lookup counts (a caller's key: any
        comment of the issue, so the look-back is unbounded)."""
        return key_scope(
            self.idempotency_key,
            self.dedupe_window_seconds,
            self.issue_key.upper(),
            self.body,
            caller_look_back=None,
        )

    def request_body(self, key: str) -> dict[str, Any]:
        """The ``Comment`` request body: ADF, the key as a comment property."""
        body = adf(self.body) if isinstance(self.body, str) else self.body
        return {
            "body": body,
            "properties": [{"key": COMMENT_PROPERTY, "value": {"key": key}}],
        }


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


class EntityProperty(BaseModel):
    """A Jira entity property (``key`` plus any JSON ``value``)."""

    model_config = ConfigDict(extra="allow")

    key: str
    value: Any = None


class JiraComment(BaseModel):
    """A comment.

    Attributes:
        existing: Set by Junction (not a Jira field): found by its idempotency property
            (an earlier attempt or run added it), not added by this call.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    created: str | None = None
    body: Any = None
    properties: list[EntityProperty] = Field(default_factory=list)
    existing: bool = False

    def carries(self, key: str) -> bool:
        """Whether the comment's properties hold the idempotency key ``key``."""
        return any(
            p.key == COMMENT_PROPERTY and isinstance(p.value, dict) and p.value.get("key") == key
            for p in self.properties
        )

    def created_at(self) -> datetime | None:
        """``created`` as a datetime (Jira writes ``2024-01-02T03:04:05.000+0000``)."""
        if not self.created:
            return None
        try:
            return datetime.strptime(self.created, "%Y-%m-%dT%H:%M:%S.%f%z")
        except ValueError:
            return None


class PageOfComments(BaseModel):
    """Answer of ``GET .../comment`` (offset paging)."""

    model_config = ConfigDict(extra="allow")

    comments: list[JiraComment] = Field(default_factory=list)
    start_at: int = Field(0, alias="startAt")
    max_results: int = Field(0, alias="maxResults")
    total: int = 0


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

        return await self.post_once(
            "/rest/api/3/issue",
            action="create_issue",
            model=CreatedIssue,
            json=params.body(),
            lookup=lookup,
            lookup_first=True,
        )

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

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def add_comment(self, params: AddCommentParams) -> JiraComment:
        """Add a comment to an issue, once per idempotency key.

        The key rides in a comment property. Before the first attempt and after an
        ambiguous failure (5xx, timeout, reset, 429), the issue's comments are searched
        for it (newest first) and a found comment is returned with ``existing=True``;
        only when the lookup proves nothing was added is the comment added (again). A
        lookup that fails stops the call.

        Args:
            params: Issue key, comment body, idempotency key and dedupe window.

        Returns:
            The created (or found) comment.
        """
        path = self.path("/rest/api/3/issue/{issue}/comment", issue=params.issue_key)
        scope = params.scope()

        return await self.post_once(
            path,
            action="add_comment",
            model=JiraComment,
            json=params.request_body(scope.key),
            lookup=lambda: self._find_comment(path, scope),
            lookup_first=scope.lookup_first,
        )

    async def _find_comment(self, path: str, scope: KeyScope) -> JiraComment | None:
        """The issue's comment carrying ``scope.key``, created since ``scope.since``."""
        start = 0
        for _ in range(COMMENT_PAGES):
            page = await self.request(
                "GET",
                path,
                action="add_comment.lookup",
                model=PageOfComments,
                params={
                    "orderBy": "-created",
                    "expand": "properties",
                    "startAt": start,
                    "maxResults": 100,
                },
            )
            for comment in page.comments:
                created = comment.created_at()
                if created is not None and created < scope.since:
                    return None  # newest first: the rest are older still
                if comment.carries(scope.key):
                    return comment.model_copy(update={"existing": True})
            start = page.start_at + len(page.comments)
            if not page.comments or start >= page.total:
                break
        return None

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
