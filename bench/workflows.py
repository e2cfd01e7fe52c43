"""Workflow benchmark: the employee onboarding, three ways, on a flaky sandbox.

200 runs (``--runs``) of the built-in ``employee_onboarding`` spec
(``junction/workflows/specs``) against the sandbox (in its own process) with latencies of
50-300 ms on every answer and 15% transient failures per request (7% 5xx drawn from
500/502/503, 4% 429 with ``Retry-After: 1``, 4% connection resets). Arms, in the same
run, each on a clean sandbox state:

- ``naive``: the steps as a user writes them by hand: one ``httpx.AsyncClient``, the
  vendor routes called in sequence, no retries, no lookups.
- ``prefect``: the same requests as plain sequential Prefect tasks (``retries=2``,
  ``retry_delay_seconds=[0.5, 1]``), one flow run per workflow run.
- ``junction``: ``flows.workflow.run_workflow`` (the production flow), one flow run per
  workflow run: the DAG runner, every step a task; the runs share one Prefect client pair
  (``flows.workflow.prefect_clients``, as a long-lived caller does).
- ``junction-added-jitter``: the ``junction`` arm with the retry policy before full
  jitter (``AddedJitterPolicy``: ``base * 2**(n-1) + U(0, base)``, the same settings);
  ``junction`` and ``junction-before`` retry by the policy that ships.
- ``junction-before``: the same flow as it was before the overhead work: its result
  persistence left to the server's default (a storage lookup per run) and two new Prefect
  clients per flow run. The overhead rows give both, measured in the same run.
- ``junction-batch``: ``flows.workflow.run_workflows``: the runs as tasks of one parent
  flow run sharing one runtime (what Prefect's per-flow-run cost leaves on the table).

With ``--concurrency 1`` (the default) the arms take turns run by run on each hire (the
side-effect services wiped before every run), so all see the same load; with more, the
runs of an arm go ``--concurrency`` at a time, in rounds of distinct hires (the sandbox has
130 workers; the side-effect services are wiped between rounds, so no run meets a user an
earlier run created). Per run: success, latency (the caller's wall time).
Also measured in the same run: the cost of an empty flow run (async and sync flows), the
DAG's critical path (longest chain of the junction arm's mean step durations), and, in a
second phase with ``lost_after_commit: 0.2`` on every write (the vendor commits, the answer
is lost), the duplicate side effects each arm leaves after its runs plus one rerun of each
failed run (what an operator does). A third phase (``--clean-runs``, no injected failure,
the same latencies) gives the workflow overhead rows: Junction's run less the empty flow
against the script's, and at 15% faults the p50 of Junction's runs against the p50 of the
script's successful ones.

Run: ``.venv/bin/python bench/workflows.py [--runs 200] [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from integrations.base import IntegrationClient  # noqa: E402
from integrations.retry import RetryPolicy  # noqa: E402
from integrations.sandbox.process import start_sandbox_process  # noqa: E402
from junction.settings import Settings  # noqa: E402
from junction.workflows.journal import journal_path  # noqa: E402
from junction.workflows.validate import load_workflow  # noqa: E402

# Prefect, the flows and deployments.local are imported inside the functions, after
# main() has pointed PREFECT_HOME and JUNCTION_HOME at a fresh directory: Prefect reads
# its settings when it is first imported.

PY = sys.executable
SPEC = "employee_onboarding"
FAULTS: dict[str, Any] = {
    "latency_ms": {"min": 50, "max": 300},
    "error_rate": 0.07,
    "error_status": [500, 502, 503],
    "burst_429": 0.04,
    "retry_after_seconds": 1,
    "reset_rate": 0.04,
}
"""15% transient failures per request (5xx / 429 + Retry-After / resets), 50-300 ms."""

SIDE_EFFECTS = ("okta", "gitlab", "webex", "jira", "servicenow")
PROVIDERS = ("workday", *SIDE_EFFECTS, "smtp")
"""Every integration the onboarding spec may call (fallbacks included)."""
GROUP = "Engineering"
PROJECT = "acme/backend"


# --- the sandbox ------------------------------------------------------------------------------


class Admin:
    """The sandbox's admin API."""

    def __init__(self, url: str) -> None:
        # Function-level: the arms import only what they measure.
        import httpx

        self.url = url
        self.http = httpx.Client(timeout=30)

    def faults(self, **extra: Any) -> None:
        """Set the benchmark's fault mix on every service (plus ``extra``)."""
        self.http.delete(f"{self.url}/_admin/faults/*").raise_for_status()
        self.http.post(f"{self.url}/_admin/faults/*", json={**FAULTS, **extra}).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete(f"{self.url}/_admin/faults/*").raise_for_status()

    def wipe(self) -> None:
        """Forget what the side-effect services stored (they re-seed on next use), and
        Junction's side-effect journal with them: a run after a wipe must do its side
        effects again, not find an earlier arm's (or round's) in the journal."""
        for service in SIDE_EFFECTS:
            self.http.delete(f"{self.url}/_admin/state/{service}").raise_for_status()
        home = os.environ.get("JUNCTION_HOME")  # main() sets it; the tests' sandbox may not
        journal = journal_path(home) if home else None
        if journal is not None and journal.exists():
            with closing(sqlite3.connect(journal, timeout=30.0)) as db:
                db.execute("DELETE FROM effects")
                db.commit()

    def state(self, service: str) -> dict[str, dict[str, Any]]:
        resp = self.http.get(f"{self.url}/_admin/state/{service}")
        resp.raise_for_status()
        collections: dict[str, dict[str, Any]] = resp.json()["collections"]
        return collections

    def workers(self) -> list[str]:
        """Workday ids of the sandbox's workers (seeded on first use)."""
        # Function-level: the arms import only what they measure.
        import httpx

        # one authenticated request seeds the collection
        token = self.http.post(
            f"{self.url}/workday/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("sandbox-client", "sandbox-password"),
        ).json()["access_token"]
        httpx.get(
            f"{self.url}/workday/ccx/api/v1/tenant/workers",
            headers={"Authorization": f"Bearer {token}"},
            params={"limit": 1},
        )
        return list(self.state("workday")["workers"])

    def duplicates(self) -> dict[str, int]:
        """Side effects that exist more than once, by kind."""
        out: dict[str, int] = {}

        def extra(counter: Counter[Any]) -> int:
            return sum(n - 1 for n in counter.values() if n > 1)

        okta = self.state("okta").get("users", {}).values()
        out["okta users"] = extra(Counter(u["profile"]["login"].lower() for u in okta))
        gitlab = self.state("gitlab").get("users", {}).values()
        out["gitlab users"] = extra(Counter(u["username"].lower() for u in gitlab))
        messages = self.state("webex").get("messages", {}).values()
        out["webex messages"] = extra(
            Counter(
                (m.get("toPersonEmail"), m.get("markdown") or m.get("text"))
                for m in messages
                if m.get("toPersonEmail")
            )
        )
        issues = self.state("jira").get("issues", {}).values()
        out["jira issues"] = extra(Counter(i["fields"]["summary"] for i in issues))
        return out


# --- samples and stats ------------------------------------------------------------------------


@dataclass
class Sample:
    """One workflow run of an arm."""

    ok: bool
    latency_ms: float
    error: str | None = None
    steps: dict[str, float] = field(default_factory=dict)
    inner_ms: float | None = None  # the workflow run itself, inside its flow run
    raw_steps: list[dict[str, Any]] = field(default_factory=list)  # the summary's steps


def p95(values: list[float]) -> float:
    """95th percentile (inclusive method; the value itself for one sample)."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Success rate, mean/p95 latency (all runs and successful runs)."""
    lat = [s.latency_ms for s in samples]
    good = [s.latency_ms for s in samples if s.ok]
    errors = Counter((s.error or "")[:80] for s in samples if not s.ok)
    inner = [s.inner_ms for s in samples if s.ok and s.inner_ms is not None]
    return {
        "mean_inner_ok_ms": statistics.fmean(inner) if inner else None,
        "runs": len(samples),
        "success_rate": sum(s.ok for s in samples) / len(samples) if samples else 0.0,
        "mean_ms": statistics.fmean(lat) if lat else 0.0,
        "p95_ms": p95(lat),
        "mean_ok_ms": statistics.fmean(good) if good else 0.0,
        "p95_ok_ms": p95(good),
        "p50_ms": statistics.median(lat) if lat else 0.0,
        "p50_ok_ms": statistics.median(good) if good else 0.0,
        "top_errors": errors.most_common(3),
    }


# --- arm: naive -------------------------------------------------------------------------------


class Naive:
    """The onboarding's requests by hand: sequential, no retries, no lookups."""

    def __init__(self, url: str) -> None:
        # Function-level: the arms import only what they measure.
        import httpx

        self.url = url
        self.http = httpx.AsyncClient(timeout=10)
        self.token: str | None = None

    async def workday_token(self) -> str:
        if self.token is None:
            resp = await self.http.post(
                f"{self.url}/workday/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("sandbox-client", "sandbox-password"),
            )
            resp.raise_for_status()
            self.token = str(resp.json()["access_token"])
        return self.token

    async def run(self, wid: str) -> None:
        """One onboarding; raises on the first failure."""
        u, http = self.url, self.http
        okta = {"Authorization": "SSWS sandbox-token"}
        bearer = {"Authorization": "Bearer sandbox-token"}
        token = await self.workday_token()
        r = await http.get(
            f"{u}/workday/ccx/api/v1/tenant/workers/{wid}",
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        hire = r.json()
        name, email = hire["descriptor"], hire["primaryWorkEmail"]
        first, _, last = name.partition(" ")
        r = await http.post(
            f"{u}/okta/api/v1/users",
            params={"activate": "true"},
            headers=okta,
            json={
                "profile": {"firstName": first, "lastName": last, "email": email, "login": email}
            },
        )
        r.raise_for_status()
        user_id = r.json()["id"]
        r = await http.get(
            f"{u}/okta/api/v1/groups", params={"q": GROUP, "limit": 10}, headers=okta
        )
        r.raise_for_status()
        group_id = r.json()[0]["id"]
        r = await http.put(f"{u}/okta/api/v1/groups/{group_id}/users/{user_id}", headers=okta)
        r.raise_for_status()
        r = await http.post(
            f"{u}/gitlab/api/v4/users",
            headers=bearer,
            json={
                "email": email,
                "username": email.split("@")[0],
                "name": name,
                "reset_password": True,
                "skip_confirmation": True,
            },
        )
        r.raise_for_status()
        gitlab_id = r.json()["id"]
        r = await http.post(
            f"{u}/gitlab/api/v4/projects/{quote(PROJECT, safe='')}/members",
            headers=bearer,
            json={"user_id": gitlab_id, "access_level": 30},
        )
        r.raise_for_status()
        r = await http.post(
            f"{u}/webex/v1/messages",
            headers=bearer,
            json={"toPersonEmail": email, "markdown": f"Welcome aboard, {first}! ({email})"},
        )
        r.raise_for_status()
        r = await http.post(
            f"{u}/jira/rest/api/3/issue",
            auth=("sandbox-user", "sandbox-password"),
            json={
                "fields": {
                    "project": {"key": "OPS"},
                    "summary": f"Equipment for new hire {name}",
                    "issuetype": {"name": "Task"},
                    "labels": ["onboarding", "equipment"],
                }
            },
        )
        r.raise_for_status()

    async def sample(self, wid: str) -> Sample:
        t0 = time.perf_counter()
        try:
            await self.run(wid)
        except Exception as exc:  # any failure ends a hand-written script
            return Sample(False, (time.perf_counter() - t0) * 1000, f"{type(exc).__name__}")
        return Sample(True, (time.perf_counter() - t0) * 1000)


# --- arm: plain Prefect -----------------------------------------------------------------------


def plain_prefect_flow(url: str) -> Callable[[str], Awaitable[Any]]:
    """The naive requests as sequential Prefect tasks with Prefect retries."""
    # Function-level: Prefect loads in the arms that use it, not in the naive one.
    from prefect import flow, task

    naive = Naive(url)
    retry = {"retries": 2, "retry_delay_seconds": [0.5, 1.0]}

    @task(name="onboard-steps", **retry)  # type: ignore[call-overload]
    async def token() -> str:
        return await naive.workday_token()

    steps: list[Callable[..., Awaitable[Any]]] = []

    def step(name: str) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
        def wrap(fn: Callable[..., Awaitable[Any]]) -> Any:
            return task(name=name, **retry)(fn)  # type: ignore[call-overload]

        return wrap

    okta = {"Authorization": "SSWS sandbox-token"}
    bearer = {"Authorization": "Bearer sandbox-token"}
    http, u = naive.http, url

    async def call(method: str, path: str, **kw: Any) -> Any:
        r = await http.request(method, f"{u}{path}", **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    @step("hire")
    async def hire(wid: str, tok: str) -> Any:
        return await call(
            "GET",
            f"/workday/ccx/api/v1/tenant/workers/{wid}",
            headers={"Authorization": f"Bearer {tok}"},
        )

    @step("okta_user")
    async def okta_user(first: str, last: str, email: str) -> Any:
        return await call(
            "POST",
            "/okta/api/v1/users",
            params={"activate": "true"},
            headers=okta,
            json={
                "profile": {"firstName": first, "lastName": last, "email": email, "login": email}
            },
        )

    @step("find_groups")
    async def find_groups() -> Any:
        return await call("GET", "/okta/api/v1/groups", params={"q": GROUP}, headers=okta)

    @step("okta_groups")
    async def okta_groups(gid: str, uid: str) -> Any:
        return await call("PUT", f"/okta/api/v1/groups/{gid}/users/{uid}", headers=okta)

    @step("gitlab_user")
    async def gitlab_user(email: str, name: str) -> Any:
        body = {
            "email": email,
            "username": email.split("@")[0],
            "name": name,
            "reset_password": True,
            "skip_confirmation": True,
        }
        return await call("POST", "/gitlab/api/v4/users", headers=bearer, json=body)

    @step("gitlab_membership")
    async def gitlab_membership(uid: int) -> Any:
        path = f"/gitlab/api/v4/projects/{quote(PROJECT, safe='')}/members"
        return await call("POST", path, headers=bearer, json={"user_id": uid, "access_level": 30})

    @step("welcome")
    async def welcome(email: str, first: str) -> Any:
        body = {"toPersonEmail": email, "markdown": f"Welcome aboard, {first}! ({email})"}
        return await call("POST", "/webex/v1/messages", headers=bearer, json=body)

    @step("equipment")
    async def equipment(name: str) -> Any:
        fields = {
            "project": {"key": "OPS"},
            "summary": f"Equipment for new hire {name}",
            "issuetype": {"name": "Task"},
            "labels": ["onboarding", "equipment"],
        }
        return await call(
            "POST",
            "/jira/rest/api/3/issue",
            auth=("sandbox-user", "sandbox-password"),
            json={"fields": fields},
        )

    @flow(name="plain-onboarding", log_prints=False, validate_parameters=False)
    async def plain_onboarding(wid: str) -> None:
        tok = await token()
        h = await hire(wid, tok)
        name, email = h["descriptor"], h["primaryWorkEmail"]
        first, _, last = name.partition(" ")
        user = await okta_user(first, last, email)
        groups = await find_groups()
        await okta_groups(groups[0]["id"], user["id"])
        gl = await gitlab_user(email, name)
        await gitlab_membership(gl["id"])
        await welcome(email, first)
        await equipment(name)

    del steps
    return plain_onboarding


# --- running an arm ---------------------------------------------------------------------------


async def run_arm(
    sample: Callable[[str], Awaitable[Sample]],
    workers: list[str],
    runs: int,
    concurrency: int,
    admin: Admin,
) -> list[Sample]:
    """``runs`` runs, ``concurrency`` at a time, in rounds of distinct hires."""
    out: list[Sample] = []
    done = 0
    while done < runs:
        admin.wipe()
        batch = workers[: min(len(workers), runs - done)]
        out.extend(await run_arm_no_wipe(sample, batch, concurrency))
        done += len(batch)
    return out


async def flow_sample(fn: Callable[..., Awaitable[Any]], *args: Any) -> Sample:
    """Time one flow run from the caller's side; failed states are failed runs."""
    t0 = time.perf_counter()
    try:
        state = await fn(*args, return_state=True)
    except Exception as exc:  # the orchestrator itself failed (ephemeral API 503s)
        latency = (time.perf_counter() - t0) * 1000
        return Sample(False, latency, f"orchestrator: {type(exc).__name__}: {exc}"[:120])
    latency = (time.perf_counter() - t0) * 1000
    data = await state.aresult(raise_on_failure=False)
    steps: dict[str, float] = {}
    raw: list[dict[str, Any]] = []
    inner = None
    if isinstance(data, dict):
        raw = list(data.get("steps", []))
        steps = {s["step_id"]: s["duration_ms"] for s in raw}
        inner = data.get("duration_ms")
    if state.is_completed():
        return Sample(True, latency, None, steps, inner, raw)
    return Sample(False, latency, (state.message or "failed")[:120], steps, inner, raw)


async def empty_flow_cost(repeats: int) -> dict[str, float]:
    """Mean wall of an empty async flow run, an empty subflow, and a task, after warm-up."""
    # Function-level: Prefect loads in the arms that use it, not in the naive one.
    from prefect import flow, task

    @flow(name="empty-async")
    async def empty() -> int:
        return 1

    @task(name="empty-task")
    async def nothing() -> int:
        return 1

    @flow(name="empty-parent")
    async def parent(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await empty()
            times.append(time.perf_counter() - t0)
        for _ in range(n):
            t0 = time.perf_counter()
            await nothing()
            times.append(time.perf_counter() - t0)
        return times

    await empty()
    flows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await empty()
        flows.append(time.perf_counter() - t0)
    inner = await parent(repeats)
    return {
        "async_flow_ms": statistics.fmean(flows) * 1000,
        "subflow_ms": statistics.fmean(inner[:repeats]) * 1000,
        "task_ms": statistics.fmean(inner[repeats:]) * 1000,
    }


def sync_flow_cost(repeats: int) -> dict[str, float]:
    """Mean wall of an empty *sync* flow run (the engine joins its heartbeat thread), and
    the same with the heartbeat switched off (``flows.heartbeat_frequency = None``, which
    only a profile or ``temporary_settings`` can set: the env var must be an int >= 30)."""
    # Function-level: Prefect loads in the arms that use it, not in the naive one.
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    @flow(name="empty-sync")
    def empty() -> int:
        return 1

    def timed() -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            empty()
            times.append(time.perf_counter() - t0)
        return statistics.fmean(times) * 1000

    empty()
    out = {"sync_flow_ms": timed()}
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        out["sync_flow_no_heartbeat_ms"] = timed()
    return out


def critical_path(step_ms: dict[str, list[float]]) -> tuple[float, list[str]]:
    """The longest chain of the spec's DAG weighted by the mean step durations."""
    spec = load_workflow(SPEC)
    deps = spec.dependencies()
    mean = {k: statistics.fmean(v) for k, v in step_ms.items() if v}
    best: dict[str, tuple[float, list[str]]] = {}
    for wave in spec.topological_order():
        for sid in wave:
            before = max((best[d] for d in deps[sid]), default=(0.0, []), key=lambda b: b[0])
            best[sid] = (before[0] + mean.get(sid, 0.0), [*before[1], sid])
    return max(best.values(), key=lambda b: b[0])


# --- retry policies -------------------------------------------------------------------------


@dataclass(frozen=True)
class AddedJitterPolicy(RetryPolicy):
    """The workflow retry policy before full jitter: ``base * 2**(n-1)`` plus ``U(0,
    jitter)`` seconds (tenacity's ``wait_exponential_jitter``), capped; ``Retry-After``
    and which failures are retried as in :class:`RetryPolicy`."""

    jitter: float = 0.1  # seconds here, not a share of the delay

    def wait_seconds(self, exc: BaseException | None, attempt: int) -> float:
        hint = getattr(exc, "retry_after", None)
        if hint is not None:
            return float(min(max(hint, 0.0), self.retry_after_max))
        exponential = self.backoff_base * 2 ** (attempt - 1) + random.uniform(0, self.jitter)
        return float(min(exponential, self.backoff_max))


def workflow_policies(settings: Settings) -> dict[str, RetryPolicy]:
    """The workflow runtime's policy from ``settings`` (``full-jitter``, what ships) and
    the one before it with the same numbers (``added-jitter``)."""
    numbers: dict[str, Any] = {
        "max_attempts": settings.workflow_retry_max_attempts,
        "backoff_base": settings.workflow_retry_backoff_base_seconds,
        "backoff_max": settings.workflow_retry_backoff_max_seconds,
        "retry_after_max": settings.retry_after_max_seconds,
    }
    return {
        "full-jitter": RetryPolicy(**numbers),
        "added-jitter": AddedJitterPolicy(
            **numbers, jitter=settings.workflow_retry_backoff_base_seconds
        ),
    }


async def use_retry_policy(policy: RetryPolicy, settings: Settings) -> None:
    """Make the flows' shared workflow runtime (of this event loop) retry by ``policy``."""
    # Function-level: Prefect loads in the arms that use it, not in the naive one.
    from flows.workflow import shared_runtime

    runtime = await shared_runtime(settings)
    runtime.client_options["retry"] = policy
    for provider in PROVIDERS:
        client = runtime.client(provider)
        if isinstance(client, IntegrationClient):
            client.retry = policy


def retry_policy_arm(
    fn: Callable[[str], Awaitable[Sample]], policy: RetryPolicy, settings: Settings
) -> Callable[[str], Awaitable[Sample]]:
    """``fn`` with the shared workflow runtime's clients retrying by ``policy`` (arms
    that share the runtime take turns one run at a time, so each sets its own first)."""

    async def sample(wid: str) -> Sample:
        await use_retry_policy(policy, settings)
        return await fn(wid)

    return sample


# --- main ---------------------------------------------------------------------------------------


def unshared(fn: Callable[[str], Awaitable[Sample]]) -> Callable[[str], Awaitable[Sample]]:
    """``fn`` outside any shared Prefect client: each flow run builds its own (the
    ``junction-before`` arm). The arms run their samples as tasks, whose context copies
    are their own, so clearing the variables here does not reach the other arms."""
    # Function-level: Prefect loads in the arms that use it, not in the naive one.
    from prefect.context import AsyncClientContext, SyncClientContext

    async def sample(wid: str) -> Sample:
        AsyncClientContext.__var__.set(None)  # type: ignore[arg-type]
        SyncClientContext.__var__.set(None)  # type: ignore[arg-type]
        return await fn(wid)

    return sample


async def bench(args: argparse.Namespace, url: str, admin: Admin) -> dict[str, Any]:
    # Function-level: Prefect loads in the arms that use it, not in the naive one.
    from flows.workflow import prefect_clients

    workers = admin.workers()
    costs_unshared = await empty_flow_cost(5)
    async with prefect_clients():
        costs = await empty_flow_cost(5)
        costs["async_flow_unshared_ms"] = costs_unshared["async_flow_ms"]
        return await bench_arms(args, url, admin, workers, costs)


async def bench_arms(
    args: argparse.Namespace, url: str, admin: Admin, workers: list[str], costs: dict[str, Any]
) -> dict[str, Any]:
    """Every phase, inside one shared Prefect client pair (``costs``: empty flow runs)."""
    # Function-level: Prefect loads in the arms that use it, not in the naive one.
    from flows.workflow import run_workflow, run_workflows
    from junction.settings import get_settings

    settings = get_settings()
    policies = workflow_policies(settings)
    full = policies["full-jitter"]
    before_flow = run_workflow.with_options(persist_result=None)
    naive = Naive(url)
    plain = plain_prefect_flow(url)
    results: dict[str, Any] = {"costs": costs}
    arms: dict[str, list[Sample]] = {}

    async def junction_sample(wid: str) -> Sample:
        return await flow_sample(run_workflow, SPEC, {"worker_id": wid})

    async def plain_sample(wid: str) -> Sample:
        return await flow_sample(plain, wid)

    async def before_run(wid: str) -> Sample:
        return await flow_sample(before_flow, SPEC, {"worker_id": wid})

    before_sample = retry_policy_arm(unshared(before_run), full, settings)

    admin.faults()
    started: dict[str, float] = {}
    fault_fns = {
        "naive": naive.sample,
        "prefect": plain_sample,
        "junction": retry_policy_arm(junction_sample, full, settings),
        "junction-added-jitter": retry_policy_arm(
            junction_sample, policies["added-jitter"], settings
        ),
        "junction-before": before_sample,
    }
    if args.concurrency == 1:  # one run at a time: the arms alternate, same load for all
        arms, started = await alternate(fault_fns, workers, args.runs, admin)
    for arm, fn in fault_fns.items():
        if args.concurrency > 1:
            t0 = time.perf_counter()
            arms[arm] = await run_arm(fn, workers, args.runs, args.concurrency, admin)
            started[arm] = time.perf_counter() - t0
        print(f"{arm}: {json.dumps(summarize(arms[arm]), default=str)}", file=sys.stderr)

    await use_retry_policy(full, settings)  # from here on, the policy that ships
    # junction-batch: the same runs as tasks of one parent flow run per round
    t0 = time.perf_counter()
    batch: list[Sample] = []
    done = 0
    while done < args.runs:
        admin.wipe()
        chunk = workers[: min(len(workers), args.runs - done)]
        try:
            summaries = await run_workflows(
                SPEC, [{"worker_id": w} for w in chunk], concurrency=args.concurrency
            )
        except Exception as exc:  # the parent flow run could not be created
            summaries = [
                {"status": "failed", "duration_ms": 0.0, "error": f"orchestrator: {exc}"[:120]}
                | {"steps": []}
                for _ in chunk
            ]
        for summary in summaries:
            steps = {x["step_id"]: x["duration_ms"] for x in summary["steps"]}
            ok = summary["status"] == "completed"
            batch.append(
                Sample(ok, summary["duration_ms"], summary["error"], steps, summary["duration_ms"])
            )
        done += len(chunk)
    arms["junction-batch"] = batch
    started["junction-batch"] = time.perf_counter() - t0

    step_ms: dict[str, list[float]] = {}
    for s in arms["junction"]:
        if s.ok:
            for k, v in s.steps.items():
                step_ms.setdefault(k, []).append(v)
    path_ms, path = critical_path(step_ms)
    results["critical_path"] = {"ms": path_ms, "steps": path}
    results["arms"] = {
        arm: {**summarize(samples), "arm_wall_s": started[arm]} for arm, samples in arms.items()
    }

    # overhead without faults: the same latencies, no injected failure
    admin.faults(error_rate=0.0, burst_429=0.0, reset_rate=0.0)
    clean: dict[str, Any] = {}
    clean_fns = {
        "naive": naive.sample,
        "junction": junction_sample,
        "junction-before": before_sample,
    }
    clean_samples, _ = await alternate(clean_fns, workers, args.clean_runs, admin)
    clean = {arm: summarize(samples) for arm, samples in clean_samples.items()}
    results["clean"] = clean

    # duplicates under lost responses: every write's answer lost with probability 0.2
    dup_runs = min(args.runs, args.dup_runs)
    dups: dict[str, Any] = {}
    admin.faults(lost_after_commit=0.2)
    for arm, fn in (
        ("naive", naive.sample),
        ("prefect", plain_sample),
        ("junction", junction_sample),
    ):
        admin.wipe()
        first = await run_arm_no_wipe(fn, workers[:dup_runs], 4)
        failed = [w for w, s in zip(workers[:dup_runs], first, strict=True) if not s.ok]
        rerun = await run_arm_no_wipe(fn, failed, 4)
        dups[arm] = {
            "runs": dup_runs,
            "failed_then_rerun": len(failed),
            "still_failed": sum(not s.ok for s in rerun),
            "duplicates": admin.duplicates(),
        }
    admin.clear_faults()
    results["duplicates"] = dups
    return results


async def alternate(
    fns: dict[str, Callable[[str], Awaitable[Sample]]],
    workers: list[str],
    runs: int,
    admin: Admin,
) -> tuple[dict[str, list[Sample]], dict[str, float]]:
    """``runs`` runs per arm, one at a time, the arms taking turns on each hire (a wiped
    sandbox before each run), so every arm sees the same load; and each arm's wall (s)."""
    samples: dict[str, list[Sample]] = {arm: [] for arm in fns}
    wall = dict.fromkeys(fns, 0.0)
    names = list(fns)
    for i in range(runs):
        wid = workers[i % len(workers)]
        # the order rotates: a run right after another arm's meets what that one left
        # behind (429 bursts, the shared runtime's adaptive limits)
        for arm in names[i % len(names) :] + names[: i % len(names)]:
            fn = fns[arm]
            admin.wipe()  # each arm onboards the same hire afresh
            t0 = time.perf_counter()
            samples[arm].extend(await run_arm_no_wipe(fn, [wid], 1))
            wall[arm] += time.perf_counter() - t0
    return samples, wall


async def run_arm_no_wipe(
    sample: Callable[[str], Awaitable[Sample]], wids: list[str], concurrency: int
) -> list[Sample]:
    gate = asyncio.Semaphore(concurrency)

    async def one(wid: str) -> Sample:
        async with gate:
            return await sample(wid)

    return list(await asyncio.gather(*(one(w) for w in wids)))


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The report table."""
    costs = results["costs"]
    empty = costs["async_flow_ms"]
    path = results["critical_path"]
    arms = results["arms"]
    naive_mean = arms["naive"]["mean_ms"]
    lines = [
        f"{args.runs} onboarding runs per arm, {args.concurrency} at a time; every request "
        "50-300 ms, 15% transient failures (7% 5xx, 4% 429 + Retry-After 1 s, 4% resets).",
        f"Empty flow run: async {empty:.0f} ms, sync {costs['sync_flow_ms']:.0f} ms "
        f"(sync without heartbeat {costs['sync_flow_no_heartbeat_ms']:.0f} ms); "
        f"empty subflow {costs['subflow_ms']:.0f} ms; empty task {costs['task_ms']:.0f} ms.",
        f"Critical path (junction's mean step durations): {path['ms']:.0f} ms "
        f"({' -> '.join(path['steps'])}).",
        "",
        "arm                   | success | mean ms | p95 ms | mean ok ms | in-flow ok ms | "
        "mean/naive | (ok - empty flow) / crit. path | arm wall s",
        "--------------------- | ------- | ------- | ------ | ---------- | ------------- | "
        "---------- | ------------------------------ | ----------",
    ]
    for arm, a in arms.items():
        flows = {"prefect", "junction", "junction-added-jitter"}
        less = a["mean_ok_ms"] - (empty if arm in flows else 0.0)
        ratio = less / path["ms"] if path["ms"] else 0.0
        inner = a["mean_inner_ok_ms"]
        lines.append(
            f"{arm:<21} | {a['success_rate'] * 100:6.1f}% | {a['mean_ms']:7.0f} | "
            f"{a['p95_ms']:6.0f} | {a['mean_ok_ms']:10.0f} | "
            f"{'-' if inner is None else f'{inner:.0f}':>13} | "
            f"{a['mean_ms'] / naive_mean if naive_mean else 0:10.2f} | "
            f"{ratio:30.2f} | {a['arm_wall_s']:10.1f}"
        )
    clean = results["clean"]
    naive_clean = clean["naive"]["mean_ms"]
    naive_p50 = arms["naive"]["p50_ok_ms"]
    empties = {"junction": empty, "junction-before": costs["async_flow_unshared_ms"]}
    lines += [
        "",
        f"Empty async flow run without a shared Prefect client: {empties['junction-before']:.0f}"
        " ms (subtracted from junction-before; the shared one from junction).",
        f"{'workflow overhead (issue 14)':<59} | junction | script | ratio | goal",
        f"{'-' * 59} | -------- | ------ | ----- | -----",
    ]
    for arm in ("junction", "junction-before"):
        less = clean[arm]["mean_ms"] - empties[arm]
        lines.append(
            f"0% faults, {arm:<22}: mean less the empty flow | {less:8.0f} | "
            f"{naive_clean:6.0f} | {less / naive_clean if naive_clean else 0:5.2f} | <= 1.1"
        )
    for arm in ("junction", "junction-added-jitter", "junction-before", "junction-batch"):
        p50 = arms[arm]["p50_ms"]
        lines.append(
            f"15% faults, {arm:<21}: p50 (script: successful) | {p50:8.0f} | "
            f"{naive_p50:6.0f} | {p50 / naive_p50 if naive_p50 else 0:5.2f} | <= 1.2"
        )
    lines.append("")
    lines.append("duplicate side effects under lost responses (lost_after_commit 0.2 on writes):")
    for arm, d in results["duplicates"].items():
        total = sum(d["duplicates"].values())
        detail = ", ".join(f"{k} {v}" for k, v in d["duplicates"].items() if v) or "none"
        lines.append(
            f"  {arm:<9} {d['runs']} runs, {d['failed_then_rerun']} failed and rerun "
            f"({d['still_failed']} failed again): {total} duplicates ({detail})"
        )
    for arm, a in arms.items():
        if a["top_errors"]:
            lines.append(f"  {arm} errors: {a['top_errors']}")
    return "\n".join(lines)


def start_bench_sandbox(prefix: str = "junction-bench-wf-") -> subprocess.Popen[bytes]:
    """Point Prefect and Junction at a fresh home (a temporary directory named from
    ``prefix``; ``JUNCTION_HOME`` is its ``junction``) and start the sandbox in its own
    process (its group: ``os.killpg`` stops it); the environment names its URL."""
    # Function-level: the arms' child processes import this module and do not need it.
    from deployments.local import free_port

    port, smtp = free_port(), free_port()
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        JUNCTION_SANDBOX_URL=f"http://127.0.0.1:{port}",
        JUNCTION_SANDBOX_SMTP_PORT=str(smtp),
        JUNCTION_HOME=str(home / "junction"),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="CRITICAL",  # failed runs are counted, not printed
        DO_NOT_TRACK="1",
    )
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    return start_sandbox_process(port, smtp_port=smtp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="Runs per arm.")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="Runs in flight per arm in the latency phase (more than 1 measures Prefect's "
        "SQLite API under bursts rather than the runs).",
    )
    parser.add_argument("--dup-runs", type=int, default=40, help="Runs per arm, lost phase.")
    parser.add_argument(
        "--clean-runs", type=int, default=40, help="Runs per arm without faults (overhead)."
    )
    parser.add_argument("--quick", action="store_true", help="20 runs, 10 in the lost phase.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.dup_runs = min(args.runs, 20), min(args.dup_runs, 10)
        args.clean_runs = min(args.clean_runs, 10)

    proc = start_bench_sandbox()
    try:
        admin = Admin(os.environ["JUNCTION_SANDBOX_URL"])
        sync_costs = sync_flow_cost(3)  # before the event loop: a sync flow blocks it
        results = asyncio.run(bench(args, admin.url, admin))
        results["costs"].update(sync_costs)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    results["config"] = {"runs": args.runs, "concurrency": args.concurrency, "faults": FAULTS}
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(render(results, args))


if __name__ == "__main__":
    main()
