"""Contract: the GitLab actions, sent to Prism serving GitLab's own OpenAPI v2 file, are
accepted; a request that breaks the spec is rejected.

Prism serves Swagger 2.0 without its basePath, and the GitLab file's paths start with
``/api/v4``, so the base URL is ``<prism>/api/v4`` exactly as against gitlab.com.

Not covered, because the trimmed spec does not contain the endpoints (they are tested
against the sandbox): ``GET /projects/:id/issues`` (create_issue's duplicate search --
the POST is checked here through ``post_issue``), ``GET
/projects/:id/pipelines/:id/variables`` (trigger_pipeline's key lookup),
``GET /projects/:id/jobs/:id/trace``, ``/projects/:id/members``, ``/users/:id`` and
``POST /users/:id/block``.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import UnprocessableEntityError
from integrations.gitlab import (
    CreateIssueParams,
    GetPipelineParams,
    GitLabClient,
    ListPipelineJobsParams,
    ListPipelinesParams,
    PipelineVariable,
    TriggerPipelineParams,
)
from junction.clients import get_client

pytestmark = pytest.mark.prism

ONCE = RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


def client(prism_servers: dict[str, str]) -> GitLabClient:
    c = get_client(
        "gitlab",
        base_url=prism_servers["gitlab"] + "/api/v4",
        credentials=Credentials(token=SecretStr("glpat-test")),
        retry=ONCE,
        breaker=CircuitBreaker("gitlab", failure_threshold=1000),
    )
    assert isinstance(c, GitLabClient)
    return c


async def test_list_pipelines_accepted(prism_servers: dict[str, str]) -> None:
    params = ListPipelinesParams(
        project="acme/backend", status="failed", ref="main", source="push", per_page=50
    )
    async with (c := client(prism_servers)):
        pipelines = await c.list_pipelines(params)
    assert pipelines.items and pipelines.items[0].status


async def test_get_pipeline_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        pipeline = await c.get_pipeline(GetPipelineParams(project=1, pipeline_id=61))
    assert pipeline.id


async def test_trigger_pipeline_accepted(prism_servers: dict[str, str]) -> None:
    params = TriggerPipelineParams(
        project="acme/backend",
        ref="main",
        variables=[PipelineVariable(key="DEPLOY_ENV", value="staging")],
        dedupe_window_seconds=0,  # POST only: the trimmed spec lacks pipeline variables
    )
    async with (c := client(prism_servers)):
        pipeline = await c.trigger_pipeline(params)
        assert c.last_status == 201
    assert pipeline.id


async def test_list_pipeline_jobs_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        jobs = await c.list_pipeline_jobs(
            ListPipelineJobsParams(
                project=1, pipeline_id=61, scope=["failed"], include_retried=True
            )
        )
    assert jobs.items and jobs.items[0].name


async def test_issue_post_accepted(prism_servers: dict[str, str]) -> None:
    params = CreateIssueParams(
        project=1,
        title="Pipeline 61 failed",
        description="See job",
        labels=["ci", "junction"],
        assignee_ids=[5],
        confidential=True,
    )
    async with (c := client(prism_servers)):
        issue = await c.post_issue(params)
        assert c.last_status == 201
    assert issue.iid


async def test_malformed_request_rejected(prism_servers: dict[str, str]) -> None:
    """An issue without ``title`` breaks the spec: Prism answers 422."""
    async with (c := client(prism_servers)):
        with pytest.raises(UnprocessableEntityError):
            await c.request(
                "POST", "/projects/1/issues", action="raw", json={"description": "no title"}
            )


async def test_health_check_quirk(prism_servers: dict[str, str]) -> None:
    """The catalog's health check, ``GET /user``, is not in the trimmed spec (INDEX.md):
    Prism answers 404 for it, and ``GET /projects/{id}`` stands in for it here."""
    async with (c := client(prism_servers)):
        result = await c.health_check()
        project = await c.request("GET", "/projects/1", action="health_check")
    assert not result.ok and result.status == 404
    assert project["id"]
