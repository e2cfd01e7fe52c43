"""GitLab (gitlab.com or self-managed): pipelines, jobs, issues, members, users.

Follows the GitLab REST API v4 reference, https://docs.gitlab.com/ee/api/pipelines.html,
.../jobs.html, .../issues.html, .../members.html and .../user_moderation.html (spec:
gitlab-org/gitlab ``doc/api/openapi/openapi_v2.yaml``). The base URL ends in
``/api/v4``; a project is its numeric id or its full path (``group/sub/project``),
URL-encoded as one path segment. Lists page with ``page``/``per_page`` and the
``X-Next-Page``/``X-Total`` headers, followed here up to ``max_pages``.

Retry safety of the side-effecting actions:

- ``create_issue``: the description carries an invisible marker
  ``<!-- junction-idempotency-key: KEY -->``; before creating, and again after any
  ambiguous failure, the client searches the project's *open* issues with the same title
  for that marker and returns the match. The key defaults to a hash of project + title
  (so "ensure one open issue titled X" is the default meaning); pass
  ``idempotency_key`` to scope it differently.
- ``trigger_pipeline``: the pipeline gets a ``JUNCTION_IDEMPOTENCY_KEY`` variable (the
  caller's key, else one derived from project, ref and variables). Before creating and
  after an ambiguous failure the client looks at the ref's recent API-triggered
  pipelines (24 hours for a caller's key, ``dedupe_window_seconds`` for a derived one)
  for one carrying that key.
- ``add_project_member``: 409 "Member already exists" -> the existing member.
- ``block_user``: GitLab answers success for an already blocked user; the user is then
  re-read.
- ``create_user`` (``POST /users``, administrators): create-first. GitLab answers 409
  when the username or email is taken; then (and after an ambiguous failure) the exact
  ``username`` is looked up (``GET /users?username=``) and a user with the same email is
  returned (``unchanged``); taken by someone else, the 409 is raised as ``ConflictError``.
- ``find_user`` reads only: ``GET /users?username=`` (exact) or ``GET /users?search=``
  (by email: administrators can search every user's email, others the public email)
  keeping only an exact, case-insensitive email match.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import ConflictError, NotFoundError
from integrations.idempotency import derived_key, key_scope

T = TypeVar("T")

IDEMPOTENCY_VARIABLE = "JUNCTION_IDEMPOTENCY_KEY"
"""Name of the pipeline variable that carries the trigger's idempotency key."""

ACCESS_LEVELS: dict[str, int] = {
    "no_access": 0,
    "minimal_access": 5,
    "guest": 10,
    "planner": 15,
    "reporter": 20,
    "developer": 30,
    "maintainer": 40,
    "owner": 50,
}

PipelineStatus = Literal[
    "created",
    "waiting_for_resource",
    "preparing",
    "waiting_for_callback",
    "pending",
    "running",
    "success",
    "failed",
    "canceling",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
]


def project_ref(project: str | int) -> str:
    """A project id or ``group/project`` path as GitLab names it in a URL (one segment,
    ``group%2Fproject`` once :meth:`IntegrationClient.path` encodes it)."""
    return str(project).strip("/")


def issue_marker(key: str) -> str:
    """The hidden line that ties an issue to its idempotency key."""
    return f"<!-- junction-idempotency-key: {key} -->"


# --- inputs -------------------------------------------------------------------------------


class _ProjectParams(BaseModel):
    project: str | int = Field(description="Project id or full path (group/project).")

    @field_validator("project")
    @classmethod
    def _not_empty(cls, value: str | int) -> str | int:
        if isinstance(value, str) and not value.strip("/"):
            raise ValueError("project must be an id or a group/project path")
        return value


class ListPipelinesParams(_ProjectParams):
    """Input of :meth:`GitLabClient.list_pipelines`.

    Attributes:
        project: Project id or path.
        status: Only pipelines in this status.
        ref: Only pipelines of this branch or tag.
        source: Only pipelines from this source (``push``, ``api``, ``schedule``...).
        per_page: Page size (GitLab caps it at 100).
        max_pages: Stop following ``X-Next-Page`` after this many pages.
    """

    status: PipelineStatus | None = None
    ref: str | None = None
    source: str | None = None
    per_page: int = Field(20, ge=1, le=100)
    max_pages: int = Field(5, ge=1, le=100)


class GetPipelineParams(_ProjectParams):
    """Input of :meth:`GitLabClient.get_pipeline`."""

    pipeline_id: int = Field(ge=1)


class PipelineVariable(BaseModel):
    """A CI/CD variable passed to a new pipeline."""

    key: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    value: str
    variable_type: Literal["env_var", "file"] = "env_var"


class TriggerPipelineParams(_ProjectParams):
    """Input of :meth:`GitLabClient.trigger_pipeline`.

    Attributes:
        project: Project id or path.
        ref: Branch or tag to run.
        variables: Extra CI/CD variables.
        idempotency_key: Makes re-runs of the same workflow step reuse the pipeline the
            first run created (looked for over the last 24 hours).
        dedupe_window_seconds: Without ``idempotency_key``: a pipeline Junction started
            for the same project, ref and variables this recently is the same one (a
            rerun after a crash reuses it); 0 always starts a new pipeline.
    """

    ref: str = Field(min_length=1)
    variables: list[PipelineVariable] = Field(default_factory=list)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    dedupe_window_seconds: int = Field(300, ge=0, le=86400)


class ListPipelineJobsParams(_ProjectParams):
    """Input of :meth:`GitLabClient.list_pipeline_jobs`.

    Attributes:
        pipeline_id: The pipeline.
        scope: Only jobs in these statuses (``["failed"]``).
        include_retried: Include jobs that were retried.
        per_page: Page size.
        max_pages: Page cap.
    """

    pipeline_id: int = Field(ge=1)
    scope: list[PipelineStatus] = Field(default_factory=list)
    include_retried: bool = False
    per_page: int = Field(100, ge=1, le=100)
    max_pages: int = Field(5, ge=1, le=100)


class GetJobLogParams(_ProjectParams):
    """Input of :meth:`GitLabClient.get_job_log`.

    Attributes:
        job_id: The job.
        tail_lines: Keep only the last N lines (the log can be megabytes).
    """

    job_id: int = Field(ge=1)
    tail_lines: int | None = Field(None, ge=1)


class CreateIssueParams(_ProjectParams):
    """Input of :meth:`GitLabClient.create_issue`.

    Attributes:
        title: Issue title.
        description: Markdown body (the idempotency marker is appended).
        labels: Label names.
        assignee_ids: User ids to assign.
        confidential: Make the issue confidential.
        idempotency_key: What makes two calls "the same issue"; default: project + title.
    """

    title: str = Field(min_length=1, max_length=255)
    description: str | None = None
    labels: list[str] = Field(default_factory=list)
    assignee_ids: list[int] = Field(default_factory=list)
    confidential: bool = False
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class AddProjectMemberParams(_ProjectParams):
    """Input of :meth:`GitLabClient.add_project_member`.

    Attributes:
        user_id: The user to add.
        access_level: 10 guest ... 50 owner, or the role name (``developer``).
        expires_at: Membership end date.
    """

    user_id: int = Field(ge=1)
    access_level: int = 30
    expires_at: date | None = None

    @field_validator("access_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.isdigit():
            try:
                return ACCESS_LEVELS[value.lower()]
            except KeyError:
                raise ValueError(f"unknown access level {value!r}") from None
        return value


class BlockUserParams(BaseModel):
    """Input of :meth:`GitLabClient.block_user` (an administrator's token is needed)."""

    user_id: int = Field(ge=1)


_USERNAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
_EMAIL = r"^[^@\s]+@[^@\s]+$"


class FindUserParams(BaseModel):
    """Input of :meth:`GitLabClient.find_user`: exactly one of ``username`` and ``email``."""

    username: str | None = Field(None, min_length=1, max_length=255, pattern=_USERNAME)
    email: str | None = Field(None, pattern=_EMAIL)

    @model_validator(mode="after")
    def _one(self) -> FindUserParams:
        if (self.username is None) == (self.email is None):
            raise ValueError("give exactly one of username and email")
        return self


class CreateUserParams(BaseModel):
    """Input of :meth:`GitLabClient.create_user` (an administrator's token is needed).

    Attributes:
        email: The user's email (confirmed: ``skip_confirmation``).
        username: The username (GitLab's rules: letters, digits, ``_.-``).
        name: Display name.
        external: An external user (no access to internal projects).
    """

    email: str = Field(pattern=_EMAIL)
    username: str = Field(min_length=2, max_length=255, pattern=_USERNAME)
    name: str = Field(min_length=1, max_length=255)
    external: bool = False


# --- outputs ------------------------------------------------------------------------------


class Pipeline(BaseModel):
    """A CI/CD pipeline.

    Attributes:
        unchanged: Set by Junction: ``trigger_pipeline`` found the pipeline an earlier
            attempt created instead of creating one.
    """

    model_config = ConfigDict(extra="allow")

    id: int
    iid: int | None = None
    project_id: int | None = None
    status: str
    ref: str | None = None
    sha: str | None = None
    source: str | None = None
    web_url: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    unchanged: bool = False


class _PagedList(BaseModel, Generic[T]):
    """Items gathered over pages (``X-Next-Page``).

    Attributes:
        items: The items, in GitLab's order.
        total: ``X-Total`` (absent for very large lists).
        pages: Pages fetched.
        truncated: More pages existed beyond ``max_pages``.
    """

    items: list[T]
    total: int | None = None
    pages: int
    truncated: bool


class PipelineList(_PagedList[Pipeline]):
    """Pipelines gathered over pages, newest first (GitLab's default order).

    Attributes:
        items: The pipelines.
        total: ``X-Total`` (absent for very large lists).
        pages: Pages fetched.
        truncated: More pages existed beyond ``max_pages``.
    """


class Job(BaseModel):
    """A CI/CD job."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    stage: str | None = None
    status: str
    ref: str | None = None
    allow_failure: bool | None = None
    failure_reason: str | None = None
    duration: float | None = None
    web_url: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobList(_PagedList[Job]):
    """Jobs gathered over pages (same fields as :class:`PipelineList`)."""


class JobLog(BaseModel):
    """A job's log (trace), possibly only its tail.

    Attributes:
        job_id: The job.
        text: The log text (ANSI colour codes kept, as GitLab stores them).
        total_lines: Lines in the whole log.
        truncated: Only the last ``tail_lines`` lines are in ``text``.
    """

    job_id: int
    text: str
    total_lines: int
    truncated: bool


class Issue(BaseModel):
    """A project issue.

    Attributes:
        unchanged: Set by Junction: an open issue with the same idempotency key existed
            and was returned instead of creating another.
    """

    model_config = ConfigDict(extra="allow")

    id: int
    iid: int
    project_id: int | None = None
    title: str
    description: str | None = None
    state: str
    labels: list[str] = Field(default_factory=list)
    web_url: str | None = None
    created_at: datetime | None = None
    unchanged: bool = False


class ProjectMember(BaseModel):
    """A project member.

    Attributes:
        unchanged: Set by Junction: the user was already a member (GitLab's 409).
    """

    model_config = ConfigDict(extra="allow")

    id: int
    username: str
    name: str | None = None
    state: str | None = None
    access_level: int
    expires_at: date | None = None
    unchanged: bool = False


class GitLabUser(BaseModel):
    """A user account.

    Attributes:
        state: ``active``, ``blocked``, ``deactivated``...
        unchanged: Set by Junction: ``block_user`` found the user already blocked.
    """

    model_config = ConfigDict(extra="allow")

    id: int
    username: str
    name: str | None = None
    state: str
    email: str | None = None
    public_email: str | None = None
    unchanged: bool = False

    def has_email(self, email: str) -> bool:
        """Whether ``email`` is this user's (primary or public) email, ignoring case."""
        wanted = email.strip().lower()
        return any(e and e.strip().lower() == wanted for e in (self.email, self.public_email))


# --- the client ---------------------------------------------------------------------------


L = TypeVar("L", bound=_PagedList[Any])


class _Paging(Protocol):
    per_page: int
    max_pages: int


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


class GitLabClient(IntegrationClient):
    """Typed client of the GitLab REST API v4."""

    service = "gitlab"

    async def _paged(
        self, path: str, query: dict[str, Any], result: type[L], paging: _Paging, action: str
    ) -> L:
        """Follow ``X-Next-Page`` from page 1, up to ``paging.max_pages`` pages."""
        items: list[Any] = []
        page: int | None = 1
        pages = 0
        total: int | None = None
        while page is not None and pages < paging.max_pages:
            batch = await self.request(
                "GET",
                path,
                action=action,
                model=result.model_fields["items"].annotation,  # list[Pipeline], list[Job]
                params={**query, "page": page, "per_page": paging.per_page},
                with_response=True,
            )
            items.extend(batch.data)
            pages += 1
            total = _int_header(batch.headers, "X-Total")
            page = _int_header(batch.headers, "X-Next-Page")  # empty on the last page
        return result(items=items, total=total, pages=pages, truncated=page is not None)

    # -- pipelines

    @action(read_only=True)
    async def list_pipelines(self, params: ListPipelinesParams) -> PipelineList:
        """List a project's pipelines, newest first, following pages up to ``max_pages``.

        Args:
            params: Project, filters and paging.

        Returns:
            The pipelines, ``X-Total`` and whether the list was cut short.
        """
        filters = {"status": params.status, "ref": params.ref, "source": params.source}
        query = {k: v for k, v in filters.items() if v is not None}
        path = self.path("/projects/{project}/pipelines", project=project_ref(params.project))
        return await self._paged(path, query, PipelineList, params, "list_pipelines")

    @action(read_only=True)
    async def get_pipeline(self, params: GetPipelineParams) -> Pipeline:
        """Fetch one pipeline.

        Args:
            params: Project and pipeline id.

        Returns:
            The pipeline.
        """
        return await self.request(
            "GET",
            self.path(
                "/projects/{project}/pipelines/{pipeline}",
                project=project_ref(params.project),
                pipeline=params.pipeline_id,
            ),
            action="get_pipeline",
            model=Pipeline,
        )

    async def _pipeline_with_key(
        self, params: TriggerPipelineParams, key: str, since: datetime
    ) -> Pipeline | None:
        project = project_ref(params.project)
        recent = await self.request(
            "GET",
            self.path("/projects/{project}/pipelines", project=project),
            action="trigger_pipeline",
            model=list[Pipeline],
            params={
                "ref": params.ref,
                "source": "api",
                "created_after": since.isoformat().replace("+00:00", "Z"),
                "order_by": "id",
                "sort": "desc",
                "per_page": 20,
            },
        )
        for pipeline in recent:
            variables = await self.request(
                "GET",
                self.path(
                    "/projects/{project}/pipelines/{pipeline}/variables",
                    project=project,
                    pipeline=pipeline.id,
                ),
                action="trigger_pipeline",
            )
            wanted = {"key": IDEMPOTENCY_VARIABLE, "value": key}
            if any(isinstance(v, dict) and wanted.items() <= v.items() for v in variables or []):
                pipeline.unchanged = True
                return pipeline
        return None

    def _trigger_body(self, params: TriggerPipelineParams, key: str) -> dict[str, Any]:
        variables = [v.model_dump() for v in params.variables if v.key != IDEMPOTENCY_VARIABLE]
        variables.append({"key": IDEMPOTENCY_VARIABLE, "value": key, "variable_type": "env_var"})
        return {"ref": params.ref, "variables": variables}

    async def _post_pipeline(self, params: TriggerPipelineParams, key: str) -> Pipeline:
        return await self.request(
            "POST",
            self.path("/projects/{project}/pipeline", project=project_ref(params.project)),
            action="trigger_pipeline",
            model=Pipeline,
            json=self._trigger_body(params, key),
            idempotent=False,
        )

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def trigger_pipeline(self, params: TriggerPipelineParams) -> Pipeline:
        """Create (run) a pipeline for a ref, without starting it twice for one request.

        Retry-safe through the ``JUNCTION_IDEMPOTENCY_KEY`` pipeline variable: the ref's
        recent API pipelines are searched for the key before the first attempt and
        after an ambiguous failure. The key is the caller's ``idempotency_key`` (searched
        over 24 hours), else derived from project, ref and variables (searched over
        ``dedupe_window_seconds``; at 0 a new pipeline is always started and only this
        call's retries are protected).

        Args:
            params: Project, ref, variables, an optional idempotency key, the window.

        Returns:
            The pipeline; ``unchanged`` when an earlier attempt's pipeline was found.
        """
        scope = key_scope(
            params.idempotency_key,
            params.dedupe_window_seconds,
            project_ref(params.project),
            params.ref,
            params.variables,
        )
        return await self.create_once(
            lookup=lambda: self._pipeline_with_key(params, scope.key, scope.since),
            create=lambda: self._post_pipeline(params, scope.key),
            lookup_first=scope.lookup_first,
        )

    @action(read_only=True)
    async def list_pipeline_jobs(self, params: ListPipelineJobsParams) -> JobList:
        """List a pipeline's jobs (e.g. only the failed ones).

        Args:
            params: Project, pipeline, status scope and paging.

        Returns:
            The jobs.
        """
        query: dict[str, Any] = {}
        if len(params.scope) == 1:
            query["scope"] = params.scope[0]
        elif params.scope:
            query["scope[]"] = list(params.scope)
        if params.include_retried:
            query["include_retried"] = "true"
        path = self.path(
            "/projects/{project}/pipelines/{pipeline}/jobs",
            project=project_ref(params.project),
            pipeline=params.pipeline_id,
        )
        return await self._paged(path, query, JobList, params, "list_pipeline_jobs")

    @action(read_only=True)
    async def get_job_log(self, params: GetJobLogParams) -> JobLog:
        """Fetch a job's log (``/trace``, plain text), optionally only its last lines.

        Args:
            params: Project, job and how many trailing lines to keep.

        Returns:
            The log text and its line count.
        """
        text = await self.request(
            "GET",
            self.path(
                "/projects/{project}/jobs/{job}/trace",
                project=project_ref(params.project),
                job=params.job_id,
            ),
            action="get_job_log",
            expect="text",
        )
        lines = text.splitlines()
        truncated = params.tail_lines is not None and len(lines) > params.tail_lines
        if truncated:
            text = "\n".join(lines[-(params.tail_lines or 0) :])
        return JobLog(job_id=params.job_id, text=text, total_lines=len(lines), truncated=truncated)

    # -- issues

    def issue_key(self, params: CreateIssueParams) -> str:
        """The idempotency key of an issue request (given, or derived from project + title)."""
        return derived_key(params.idempotency_key, project_ref(params.project), params.title)

    async def _find_issue(self, params: CreateIssueParams, marker: str) -> Issue | None:
        candidates = await self.request(
            "GET",
            self.path("/projects/{project}/issues", project=project_ref(params.project)),
            action="create_issue",
            model=list[Issue],
            params={"state": "opened", "search": params.title, "in": "title", "per_page": 100},
        )
        for issue in candidates:
            if issue.title == params.title and marker in (issue.description or ""):
                issue.unchanged = True
                return issue
        return None

    def issue_body(self, params: CreateIssueParams) -> dict[str, Any]:
        """The ``POST /projects/:id/issues`` body, idempotency marker included."""
        marker = issue_marker(self.issue_key(params))
        description = f"{params.description}\n\n{marker}" if params.description else marker
        body: dict[str, Any] = {"title": params.title, "description": description}
        if params.labels:
            body["labels"] = params.labels
        if params.assignee_ids:
            body["assignee_ids"] = params.assignee_ids
        if params.confidential:
            body["confidential"] = True
        return body

    async def post_issue(self, params: CreateIssueParams) -> Issue:
        """Send the bare ``POST /projects/:id/issues`` (no search; not retry-safe alone)."""
        return await self.request(
            "POST",
            self.path("/projects/{project}/issues", project=project_ref(params.project)),
            action="create_issue",
            model=Issue,
            json=self.issue_body(params),
            idempotent=False,
        )

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def create_issue(self, params: CreateIssueParams) -> Issue:
        """Open an issue unless an open one with the same idempotency key exists.

        Retry-safe: the key is stored as a hidden marker in the description and open
        issues with the same title are searched for it before creating and after any
        ambiguous failure.

        Args:
            params: Project, title, description, labels, assignees, optional key.

        Returns:
            The issue; ``unchanged`` when an existing one was returned.
        """
        marker = issue_marker(self.issue_key(params))
        return await self.create_once(
            lookup=lambda: self._find_issue(params, marker),
            create=lambda: self.post_issue(params),
            lookup_first=True,
        )

    # -- members and users

    @action(read_only=False, idempotent=True)
    async def add_project_member(self, params: AddProjectMemberParams) -> ProjectMember:
        """Add a user to a project; an existing membership is returned as is.

        Retry-safe: GitLab answers 409 "Member already exists" to a repeat, which is
        turned into a read of that member (its access level is not changed).

        Args:
            params: Project, user, access level, optional expiry.

        Returns:
            The member; ``unchanged`` when the user already was one.
        """
        project = project_ref(params.project)
        body: dict[str, Any] = {"user_id": params.user_id, "access_level": params.access_level}
        if params.expires_at:
            body["expires_at"] = params.expires_at.isoformat()
        try:
            return await self.request(
                "POST",
                self.path("/projects/{project}/members", project=project),
                action="add_project_member",
                model=ProjectMember,
                json=body,
                idempotent=True,  # a replay gets 409, handled below
            )
        except ConflictError:
            member = await self.request(
                "GET",
                self.path(
                    "/projects/{project}/members/{user}", project=project, user=params.user_id
                ),
                action="add_project_member",
                model=ProjectMember,
            )
            member.unchanged = True
            return member

    async def _users(self, query: dict[str, str], action: str) -> list[GitLabUser]:
        return await self.request(
            "GET",
            "/users",
            action=action,
            model=list[GitLabUser],
            params={**query, "per_page": 100},
        )

    @action(read_only=True)
    async def find_user(self, params: FindUserParams) -> GitLabUser:
        """Find a user by exact username or exact email.

        Args:
            params: The username or the email.

        Returns:
            The user.

        Raises:
            NotFoundError: No user has that username or email.
        """
        if params.username is not None:
            users = await self._users({"username": params.username}, "find_user")
            found = [u for u in users if u.username.lower() == params.username.lower()]
            wanted = f"username {params.username!r}"
        else:
            assert params.email is not None  # the model requires one of the two
            users = await self._users({"search": params.email}, "find_user")
            found = [u for u in users if u.has_email(params.email)]
            wanted = f"email {params.email!r}"
        if not found:
            raise NotFoundError(
                f"no GitLab user with {wanted}",
                status_code=404,
                service=self.name,
                action="find_user",
            )
        return found[0]

    async def _user_by_username(self, params: CreateUserParams) -> GitLabUser | None:
        users = await self._users({"username": params.username}, "create_user")
        for user in users:
            if user.username.lower() == params.username.lower() and user.has_email(params.email):
                user.unchanged = True
                return user
        return None

    async def post_user(self, params: CreateUserParams) -> GitLabUser:
        """Send the bare ``POST /users`` (no lookup; not retry-safe alone)."""
        body: dict[str, Any] = {
            "email": params.email,
            "username": params.username,
            "name": params.name,
            "reset_password": True,  # GitLab mails a set-password link; we never hold one
            "skip_confirmation": True,
        }
        if params.external:
            body["external"] = True
        return await self.request(
            "POST", "/users", action="create_user", model=GitLabUser, json=body, idempotent=False
        )

    @action(read_only=False, idempotent=True)
    async def create_user(self, params: CreateUserParams) -> GitLabUser:
        """Create a user account unless that username with that email exists already.

        Create-first (as Okta's ``create_user``): GitLab refuses a taken username or
        email with 409, so the ``POST`` goes first and the lookup runs only on that 409
        or after an ambiguous failure: one request on the common path instead of two.

        Args:
            params: Email, username, name.

        Returns:
            The user; ``unchanged`` when it existed.

        Raises:
            ConflictError: The username or email belongs to another user.
        """
        try:
            return await self.create_once(
                lookup=lambda: self._user_by_username(params),
                create=lambda: self.post_user(params),
                lookup_first=False,
            )
        except ConflictError:
            found = await self._user_by_username(params)
            if found is None:  # taken by someone else
                raise
            return found

    @action(read_only=False, idempotent=True)
    async def block_user(self, params: BlockUserParams) -> GitLabUser:
        """Block a user (administrators only); an already blocked user is success.

        Args:
            params: The user id.

        Returns:
            The user as it is after the call (``state`` ``blocked``).
        """
        user_path = self.path("/users/{user}", user=params.user_id)
        before = await self.request("GET", user_path, action="block_user", model=GitLabUser)
        if before.state == "blocked":
            before.unchanged = True
            return before
        await self.request(
            "POST",
            self.path("/users/{user}/block", user=params.user_id),
            action="block_user",
            expect="none",
            idempotent=True,  # blocking a blocked user is a no-op success in GitLab
        )
        return await self.request("GET", user_path, action="block_user", model=GitLabUser)
