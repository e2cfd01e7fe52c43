"""The Prefect task every workflow step runs in (logic lives in junction.workflows.runner).

One generic task function serves every step; :func:`prefect_step` gives each call the
step's id as its task and task-run name (what the Prefect UI shows) and, for a cached
read-only step, a cache policy keyed on the step's identity *and* inputs
(``TASK_SOURCE`` + :func:`~junction.workflows.cache.prefect_cache_key`, which includes
the step id and the action: ``INPUTS`` alone let one task read another's result) with
the step's TTL as ``cache_expiration``. The step's body is not a task parameter (it is
not serializable); it is handed over through a registry keyed by a one-use token.

A failed step ends its task run in a ``Failed`` state carrying the outcome (returned, not
raised: an ordinary step failure is no reason for a traceback in the logs).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, cast
from uuid import uuid4

from prefect import task
from prefect.cache_policies import NO_CACHE, TASK_SOURCE, CacheKeyFnPolicy
from prefect.states import Failed, State

from junction.clients import get_action
from junction.workflows.cache import prefect_cache_key
from junction.workflows.capabilities import get_capability
from junction.workflows.outcomes import StepBody, StepOutcome
from junction.workflows.runtime import Alternative, alternatives
from junction.workflows.spec import Step

_BODIES: dict[str, StepBody] = {}


@task(name="workflow-step", cache_policy=NO_CACHE, retries=0, log_prints=False)
async def run_step(
    step_id: str,
    uses: str,
    inputs: dict[str, Any],
    cache_ttl: float | None,
    token: str,
) -> dict[str, Any] | State[Any]:
    """Run one workflow step (its body, registered under ``token``).

    ``step_id``, ``uses``, ``inputs`` and ``cache_ttl`` identify the step
    for the cache key and the UI; the body does the work.

    Returns:
        The outcome (``StepOutcome.to_dict()``); for a failed step, a ``Failed`` state
        whose data is the outcome.
    """
    body = _BODIES.pop(token)
    outcome = await body()
    if outcome.status == "failed":
        return Failed(data=outcome.to_dict(), message=outcome.error or f"{step_id} failed")
    return outcome.to_dict()


async def prefect_step(step: Step, inputs: dict[str, Any], body: StepBody) -> StepOutcome:
    """:data:`~junction.workflows.outcomes.StepWrapper` running ``body`` as a Prefect task.

    Args:
        step: The step (its id names the task and the task run).
        inputs: The step's rendered inputs (part of the cache key).
        body: What the step does.

    Returns:
        The step's outcome; ``cached`` when Prefect answered from its cache.
    """
    ttl: float | None = None
    if step.cache is not None:
        alts, capability = alternatives(step)
        read_only = get_capability(step.uses).read_only if capability else _read_only(alts)
        ttl = step.cache.ttl if read_only else None
    token = uuid4().hex
    _BODIES[token] = body
    options: dict[str, Any] = {"name": step.id, "task_run_name": step.id}
    if ttl:
        options.update(
            cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=prefect_cache_key),
            cache_expiration=timedelta(seconds=ttl),
            persist_result=True,
        )
    started = time.perf_counter()
    try:
        # An async task called with return_state gives a coroutine of the state.
        pending = run_step.with_options(**options)(
            step.id, step.uses, inputs, ttl, token, return_state=True
        )
        state = await cast("Awaitable[State[Any]]", pending)
    finally:
        ran = token not in _BODIES
        _BODIES.pop(token, None)
    data = await state.aresult(raise_on_failure=False)
    if isinstance(data, BaseException):  # the body itself crashed: not a step outcome
        raise data
    outcome = StepOutcome.from_dict(data)
    if state.is_failed():
        return outcome
    if not ran:  # Prefect answered from its cache: no call was made in this run
        outcome.cached = True
        outcome.attempts = outcome.retries = outcome.calls = 0
        outcome.fallback = None
        outcome.duration_ms = (time.perf_counter() - started) * 1000.0
    return outcome


def _read_only(alts: list[Alternative]) -> bool:
    return all(get_action(a.provider, a.action).read_only for a in alts)
