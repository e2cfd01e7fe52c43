"""GitLabClient end to end against the running sandbox (state checked via the admin API),
plus MockTransport cases for request shapes the sandbox cannot observe."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.errors import (
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    NotFoundError,
    ServerError,
)
from integrations.gitlab import (
    IDEMPOTENCY_VARIABLE,
    AddProjectMemberParams,
    BlockUserParams,
    CreateIssueParams,
    GetJobLogParams,
    GetPipelineParams,
    GitLabClient,
    ListPipelineJobsParams,
    ListPipelinesParams,
    PipelineVariable,
    TriggerPipelineParams,
    issue_marker,
    project_ref,
)
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.urls import expand
from tests.helpers import ClientFactory, clear_faults, faults_seen, mock_client, set_faults, state

SEEDED_PIPELINES = 25


def api_pipelines(sb: SandboxServer) -> list[dict[str, Any]]:
    return [p for p in state(sb, "gitlab")["pipelines"].values() if p["source"] == "api"]


# --- pipelines ------------------------------------------------------------------------------


async def test_list_pipelines_follows_pages(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (gl := make_client(GitLabClient)):
        everything = await gl.list_pipelines(ListPipelinesParams(project=1, per_page=10))
        capped = await gl.list_pipelines(
            ListPipelinesParams(project="acme/backend", per_page=10, max_pages=2)
        )
        failed_main = await gl.list_pipelines(
            ListPipelinesParams(project=1, status="failed", ref="main")
        )
    assert len(everything.items) == SEEDED_PIPELINES == everything.total
    assert everything.pages == 3 and not everything.truncated
    ids = [p.id for p in everything.items]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    assert {str(i) for i in ids} == set(state(sb, "gitlab")["pipelines"])
    assert len(capped.items) == 20 and capped.pages == 2 and capped.truncated
    assert failed_main.items and all(
        p.status == "failed" and p.ref == "main" for p in failed_main.items
    )
    assert failed_main.items[0].id == 1001


async def test_get_pipeline_and_unknown_project(make_client: ClientFactory) -> None:
    async with (gl := make_client(GitLabClient)):
        pipeline = await gl.get_pipeline(
            GetPipelineParams(project="acme/backend", pipeline_id=1001)
        )
        with pytest.raises(NotFoundError, match="Project Not Found"):
            await gl.get_pipeline(GetPipelineParams(project="acme/nope", pipeline_id=1001))
        with pytest.raises(NotFoundError):
            await gl.get_pipeline(GetPipelineParams(project=2, pipeline_id=1001))
    assert pipeline.status == "failed" and pipeline.ref == "main" and pipeline.project_id == 1


async def test_pipeline_jobs_scope_and_job_log_tail(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (gl := make_client(GitLabClient)):
        failed = await gl.list_pipeline_jobs(
            ListPipelineJobsParams(project=1, pipeline_id=1001, scope=["failed"])
        )
        two = await gl.list_pipeline_jobs(
            ListPipelineJobsParams(project=1, pipeline_id=1001, scope=["failed", "skipped"])
        )
        every = await gl.list_pipeline_jobs(ListPipelineJobsParams(project=1, pipeline_id=1001))
        [job] = failed.items
        tail = await gl.get_job_log(GetJobLogParams(project=1, job_id=job.id, tail_lines=2))
        full = await gl.get_job_log(GetJobLogParams(project="acme/backend", job_id=job.id))
    assert job.name == "test" and job.failure_reason == "script_failure"
    assert sorted(j.name for j in two.items) == ["deploy", "test"]
    assert len(every.items) == 4 and every.total == 4
    stored = state(sb, "gitlab")["traces"][str(job.id)]["text"]
    assert full.text == stored and not full.truncated
    assert tail.truncated and tail.total_lines == len(stored.splitlines())
    assert tail.text.splitlines() == stored.splitlines()[-2:]
    assert tail.text.endswith("ERROR: Job failed: exit code 1")


async def test_trigger_pipeline_creates_with_variables(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = TriggerPipelineParams(
        project="acme/backend", ref="develop", variables=[PipelineVariable(key="ENV", value="qa")]
    )
    async with (gl := make_client(GitLabClient)):
        first = await gl.trigger_pipeline(params)
        # No caller key: the key is derived from the request, so the same request made
        # again (a rerun after a crash) finds the pipeline instead of starting another...
        again = await gl.trigger_pipeline(params)
        # ...unless the caller asks for a new pipeline each time.
        second = await gl.trigger_pipeline(params.model_copy(update={"dedupe_window_seconds": 0}))
        with pytest.raises(BadRequestError) as bad_ref:
            await gl.trigger_pipeline(TriggerPipelineParams(project=1, ref="no-such-branch"))
        assert "Reference not found" in bad_ref.value.body_excerpt
    assert again.id == first.id and again.unchanged and not first.unchanged
    assert first.id != second.id and not second.unchanged
    assert first.ref == "develop" and first.source == "api"
    variables = [
        v
        for v in state(sb, "gitlab")["pipeline_variables"].values()
        if v["pipeline_id"] == first.id
    ]
    assert {v["key"]: v["value"] for v in variables}.keys() == {"ENV", IDEMPOTENCY_VARIABLE}
    assert len(api_pipelines(sb)) == 2


async def test_trigger_pipeline_with_key_runs_once(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = TriggerPipelineParams(project=1, ref="main", idempotency_key="deploy-42")
    async with (gl := make_client(GitLabClient)):
        first = await gl.trigger_pipeline(params)
        rerun = await gl.trigger_pipeline(params)
        other = await gl.trigger_pipeline(
            params.model_copy(update={"idempotency_key": "deploy-43"})
        )
    assert rerun.unchanged and rerun.id == first.id
    assert other.id != first.id
    assert len(api_pipelines(sb)) == 2


async def test_trigger_pipeline_lost_response_never_duplicates(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """The POST commits, its answer is lost (504): the client finds the pipeline by the
    key variable it attached instead of starting a second one."""
    set_faults(sb, "gitlab", lost_after_commit=1.0)
    async with (gl := make_client(GitLabClient)):
        pipeline = await gl.trigger_pipeline(TriggerPipelineParams(project=1, ref="main"))
    assert faults_seen(sb, "gitlab", "lost_after_commit") == 1
    assert pipeline.unchanged
    assert [p["id"] for p in api_pipelines(sb)] == [pipeline.id]


async def test_trigger_pipeline_rerun_after_failed_call(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """Single attempt: the call fails, a re-run with the same key finds the pipeline."""
    params = TriggerPipelineParams(project=1, ref="main", idempotency_key="run-7-step-3")
    set_faults(sb, "gitlab", lost_after_commit=1.0)
    async with (gl := make_client(GitLabClient, retry=RetryPolicy(max_attempts=1))):
        with pytest.raises(ServerError):
            await gl.trigger_pipeline(params)
        clear_faults(sb, "gitlab")
        again = await gl.trigger_pipeline(params)
    assert again.unchanged
    assert len(api_pipelines(sb)) == 1


# --- issues ----------------------------------------------------------------------------------


async def test_create_issue_once_per_title(sb: SandboxServer, make_client: ClientFactory) -> None:
    params = CreateIssueParams(
        project=1,
        title="Pipeline 1001 failed",
        description="See job 5002",
        labels=["ci", "junction"],
    )
    async with (gl := make_client(GitLabClient)):
        first = await gl.create_issue(params)
        again = await gl.create_issue(params.model_copy(update={"description": "changed"}))
        other = await gl.create_issue(params.model_copy(update={"title": "Pipeline 999 failed"}))
        keyed = await gl.create_issue(params.model_copy(update={"idempotency_key": "incident-9"}))
    assert not first.unchanged and again.unchanged and again.iid == first.iid
    assert other.iid != first.iid and keyed.iid not in (first.iid, other.iid)
    assert first.labels == ["ci", "junction"] and first.state == "opened"
    issues = list(state(sb, "gitlab")["issues"].values())
    assert len(issues) == 3
    stored = next(i for i in issues if i["iid"] == first.iid)
    assert stored["description"].startswith("See job 5002")
    assert issue_marker(gl.issue_key(params)) in stored["description"]


async def test_create_issue_ignores_same_title_without_our_marker(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """A human's issue with the same title is not ours: a new one is opened."""
    async with (gl := make_client(GitLabClient)):
        human = await gl.request(
            "POST", "/projects/1/issues", action="raw", json={"title": "Disk full"}
        )
        ours = await gl.create_issue(CreateIssueParams(project=1, title="Disk full"))
    assert ours.iid != human["iid"] and not ours.unchanged
    assert len(state(sb, "gitlab")["issues"]) == 2


async def test_create_issue_lost_response_never_duplicates(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateIssueParams(project="acme/backend", title="Deploy stuck")
    set_faults(sb, "gitlab", lost_after_commit=1.0)
    async with (gl := make_client(GitLabClient)):
        issue = await gl.create_issue(params)
        assert faults_seen(sb, "gitlab", "lost_after_commit") == 1
        clear_faults(sb, "gitlab")
        again = await gl.create_issue(params)
    assert issue.unchanged and again.iid == issue.iid
    assert len(state(sb, "gitlab")["issues"]) == 1


# --- members and users ----------------------------------------------------------------------


async def test_add_project_member_then_409_returns_existing(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (gl := make_client(GitLabClient)):
        added = await gl.add_project_member(
            AddProjectMemberParams(
                project=1, user_id=3, access_level="developer", expires_at="2030-01-31"
            )
        )
        again = await gl.add_project_member(
            AddProjectMemberParams(project=1, user_id=3, access_level=50)
        )
        with pytest.raises(NotFoundError):
            await gl.add_project_member(AddProjectMemberParams(project=1, user_id=99))
    assert added.username == "bob" and added.access_level == 30 and not added.unchanged
    assert again.unchanged and again.access_level == 30  # an existing role is not changed
    assert state(sb, "gitlab")["members"]["1:3"]["expires_at"] == "2030-01-31"


async def test_add_project_member_lost_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    set_faults(sb, "gitlab", lost_after_commit=1.0)
    async with (gl := make_client(GitLabClient)):
        member = await gl.add_project_member(AddProjectMemberParams(project=2, user_id=4))
    assert (
        faults_seen(sb, "gitlab", "lost_after_commit") == 1 and member.unchanged and member.id == 4
    )
    assert [k for k in state(sb, "gitlab")["members"] if k.startswith("2:")] == ["2:4"]


def test_access_level_names() -> None:
    assert (
        AddProjectMemberParams(project=1, user_id=1, access_level="Maintainer").access_level == 40
    )
    with pytest.raises(ValidationError):
        AddProjectMemberParams(project=1, user_id=1, access_level="boss")
    with pytest.raises(ValidationError):
        ListPipelinesParams(project="/")


async def test_block_user_idempotent(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (gl := make_client(GitLabClient)):
        blocked = await gl.block_user(BlockUserParams(user_id=4))
        again = await gl.block_user(BlockUserParams(user_id=4))
        with pytest.raises(NotFoundError):
            await gl.block_user(BlockUserParams(user_id=99))
    assert blocked.state == "blocked" and not blocked.unchanged and again.unchanged
    assert state(sb, "gitlab")["users"]["4"]["state"] == "blocked"


async def test_block_user_lost_response(sb: SandboxServer, make_client: ClientFactory) -> None:
    """The block commits, its answer is lost; the retry blocks a blocked user: success."""
    set_faults(sb, "gitlab", lost_after_commit=1.0, lost_methods=["POST"])
    async with (gl := make_client(GitLabClient)):
        # POST is lost every time, so the engine's retries all fail; the re-run succeeds.
        with pytest.raises(ServerError):
            await gl.block_user(BlockUserParams(user_id=3))
        clear_faults(sb, "gitlab")
        user = await gl.block_user(BlockUserParams(user_id=3))
    assert user.state == "blocked" and user.unchanged
    assert state(sb, "gitlab")["users"]["3"]["state"] == "blocked"


# --- errors and request shapes ------------------------------------------------------------------


async def test_bad_token_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (gl := make_client(GitLabClient, wrong_secret="glpat-wrong")):
        with pytest.raises(AuthenticationError):
            await gl.list_pipelines(ListPipelinesParams(project=1))
        with pytest.raises(AuthenticationError):
            await gl.create_issue(CreateIssueParams(project=1, title="x"))
    assert not state(sb, "gitlab").get("issues")


async def test_garbled_answer_is_malformed_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    set_faults(sb, "gitlab", malformed_rate=1.0)
    async with (gl := make_client(GitLabClient)):
        with pytest.raises(MalformedResponseError, match="invalid JSON"):
            await gl.get_pipeline(GetPipelineParams(project=1, pipeline_id=1001))


def gitlab_mock(handler: Any) -> GitLabClient:
    return mock_client(
        GitLabClient,
        handler,
        base_url="https://gitlab.example.test/api/v4",
        credentials=Credentials(token=SecretStr("glpat-x")),
    )


async def test_pipeline_missing_status_is_malformed() -> None:
    async with (gl := gitlab_mock(lambda r: httpx.Response(200, json=[{"id": 1}]))):
        with pytest.raises(MalformedResponseError, match="status"):
            await gl.list_pipelines(ListPipelinesParams(project=1))


async def test_request_shapes() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/jobs"):
            return httpx.Response(200, json=[], headers={"X-Next-Page": ""})
        return httpx.Response(201, json={"id": 7, "status": "created", "ref": "main"})

    async with (gl := gitlab_mock(handler)):
        await gl.list_pipeline_jobs(
            ListPipelineJobsParams(
                project="grp/sub/proj", pipeline_id=5, scope=["failed", "canceled"]
            )
        )
        await gl.trigger_pipeline(
            TriggerPipelineParams(project="grp/sub/proj", ref="main", dedupe_window_seconds=0)
        )
    jobs, trigger = seen
    assert jobs.url.raw_path.startswith(b"/api/v4/projects/grp%2Fsub%2Fproj/pipelines/5/jobs?")
    assert jobs.url.params.get_list("scope[]") == ["failed", "canceled"]
    assert jobs.headers["Authorization"] == "Bearer glpat-x"
    assert trigger.url.raw_path == b"/api/v4/projects/grp%2Fsub%2Fproj/pipeline"
    assert b'"ref":"main"' in trigger.content and IDEMPOTENCY_VARIABLE.encode() in trigger.content


def test_project_path_is_one_segment() -> None:
    assert expand("/projects/{p}", {"p": project_ref(42)}) == "/projects/42"
    path = expand("/projects/{p}/issues", {"p": project_ref("/group/sub/project/")})
    assert path == "/projects/group%2Fsub%2Fproject/issues"


def test_action_flags() -> None:
    for name in ("list_pipelines", "get_pipeline", "list_pipeline_jobs", "get_job_log"):
        assert get_action("gitlab", name).read_only
    for name in ("trigger_pipeline", "create_issue", "add_project_member", "block_user"):
        spec = get_action("gitlab", name)
        assert spec.idempotent and not spec.read_only
