"""Adaptive execution on real calls: hedged reads (first answer wins, the loser is
cancelled, never for writes), priorities through the runner, and GitLab's create-first
user creation against the sandbox's 409."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from integrations.adaptive import AdaptiveConfig, current_priority
from integrations.adaptive_gate import gates
from integrations.errors import ConflictError
from integrations.gitlab import CreateUserParams, GitLabClient
from integrations.hedge import Hedger
from integrations.sandbox.app import SandboxServer
from junction.workflows.runner import WorkflowRunner
from junction.workflows.runtime import Runtime
from tests.helpers import FAST, ClientFactory, route_requests, sandbox_settings, set_faults
from tests.test_runner import WORKER_0, make_spec

HEDGE = AdaptiveConfig(min_samples=3, hedge_max_ratio=1.0)


async def test_hedge_first_answer_wins_and_the_loser_is_cancelled() -> None:
    hedger = Hedger(HEDGE)
    for _ in range(3):  # learn the read's usual latency (a few ms at most)
        await hedger.call("okta.get_user", _fast)
    assert hedger.delay("okta.get_user") is not None
    stuck = asyncio.Event()
    cancelled: list[int] = []
    calls = 0

    async def read() -> str:
        nonlocal calls
        calls += 1
        mine = calls
        if mine == 1:  # the first attempt hangs (a slow replica)
            try:
                await stuck.wait()
            except asyncio.CancelledError:
                cancelled.append(mine)
                raise
        return f"answer {mine}"

    assert await hedger.call("okta.get_user", read) == "answer 2"
    assert cancelled == [1] and hedger.hedges == 1 and hedger.hedge_wins == 1


async def test_hedge_waits_for_the_other_attempt_when_one_fails() -> None:
    hedger = Hedger(HEDGE)
    for _ in range(3):
        await hedger.call("k", _fast)
    calls = 0
    release = asyncio.Event()

    async def read() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
            return "slow but right"
        release.set()
        raise RuntimeError("hedge failed")

    assert await hedger.call("k", read) == "slow but right"


async def test_no_hedge_before_samples_or_beyond_the_ratio() -> None:
    hedger = Hedger(AdaptiveConfig(min_samples=3, hedge_max_ratio=0.0))
    assert hedger.delay("k") is None
    for _ in range(5):
        await hedger.call("k", _fast)
    assert hedger.hedges == 0  # ratio 0: never


async def _fast() -> str:
    return "ok"


# --- through the runner -----------------------------------------------------------------------


def _read_then_write() -> dict[str, Any]:
    return {
        "name": "hedge_test",
        "priority": "high",
        "parameters": {"n": {"type": "integer"}},
        "steps": [
            {"id": "look", "uses": "workday.get_worker", "with": {"worker_id": WORKER_0}},
            {
                "id": "make",
                "uses": "gitlab.create_user",
                "with": {
                    "email": "h{{ params.n }}@example.com",
                    "username": "h{{ params.n }}",
                    "name": "Hedge {{ params.n }}",
                },
            },
        ],
    }


def test_runner_hedges_reads_never_writes_and_runs_at_the_spec_priority(
    sb: SandboxServer,
) -> None:
    """Once the runtime knows the p95 and both services turn slower than it, the read is
    hedged and the create never is (the sandbox sees one POST per run)."""
    gates.clear()
    spec = make_spec(_read_then_write())
    assert spec.priority == "high"
    for service in ("workday", "gitlab"):
        set_faults(sb, service, latency_ms={"min": 1, "max": 20})
    settings = sandbox_settings(sb).model_copy(
        update={"adaptive_hedge_max_ratio": 1.0, "workflow_step_timeout_seconds": 20.0}
    )
    seen: list[str] = []

    async def go() -> tuple[int, int]:
        async with Runtime(settings, client_options={"retry": FAST}, cache=False) as rt:
            runner = WorkflowRunner(spec, rt)
            workday, gitlab = rt.client("workday"), rt.client("gitlab")
            assert workday.gate is not None and gitlab.gate is not None
            for n in range(30):
                if n == 25:  # the p95 is known; now every call is slower than it
                    set_faults(sb, "workday", latency_ms=150)
                    set_faults(sb, "gitlab", latency_ms=150)
                result = await runner.run({"n": n})
                assert result.ok, result.error
            seen.append(current_priority.get())
            return workday.gate.hedger.hedges, gitlab.gate.hedger.calls

    hedges, write_hedger_calls = asyncio.run(go())
    assert hedges > 0 and write_hedger_calls == 0
    assert route_requests(sb, "gitlab", "POST /users") == 30
    assert seen == ["normal"]  # the run's priority stays inside the run
    gates.clear()


# --- GitLab: create-first on 409 -----------------------------------------------------------------


async def test_gitlab_create_user_goes_first_and_reads_only_on_409(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (gl := make_client(GitLabClient)):
        made = await gl.create_user(
            CreateUserParams(email="new@example.com", username="newbie", name="New Bie")
        )
        assert made.username == "newbie" and not made.unchanged
        assert route_requests(sb, "gitlab", "GET /users") == 0  # one request, no lookup
        again = await gl.create_user(
            CreateUserParams(email="new@example.com", username="newbie", name="New Bie")
        )
        assert again.id == made.id and again.unchanged  # the 409, then the lookup
        assert route_requests(sb, "gitlab", "GET /users") == 1
        with pytest.raises(ConflictError, match="already been taken"):
            await gl.create_user(  # alice exists with another email: not ours
                CreateUserParams(email="other@example.com", username="alice", name="Not Alice")
            )


async def test_gitlab_create_user_lost_answer_is_found_not_duplicated(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    set_faults(sb, "gitlab", lost_after_commit=1.0, lost_methods=["POST"])
    async with (gl := make_client(GitLabClient, retry=FAST)):
        user = await gl.create_user(
            CreateUserParams(email="lost@example.com", username="lost", name="Lost Answer")
        )
    assert user.username == "lost" and user.unchanged
    assert route_requests(sb, "gitlab", "POST /users") == 1
