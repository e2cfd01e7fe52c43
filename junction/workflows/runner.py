"""The workflow runner: runs a validated :class:`~junction.workflows.spec.WorkflowSpec` as a DAG.

Plain typed Python, testable without Prefect; ``flows/workflow.py`` wraps each step in a
Prefect task through the :data:`~junction.workflows.outcomes.StepWrapper` hook and adds
nothing else. Beside this module: :mod:`~junction.workflows.runtime` (what runs share),
:mod:`~junction.workflows.outcomes` (results), :mod:`~junction.workflows.failures` (retry
and fallback decisions), :mod:`~junction.workflows.items` (``for_each``),
:mod:`~junction.workflows.journal` (unkeyed side effects).

What one run does (:meth:`WorkflowRunner.run`):

* **DAG**: every step is an asyncio task that waits for its upstream steps
  (:meth:`WorkflowSpec.dependencies`), so steps without a path between them run at once.
  After a step fails, no new step starts (steps already calling finish: cancelling a
  side effect halfway would leave it ambiguous); the rest are ``skipped``.
* **Per-integration bound**: calls to one integration go through an
  :class:`asyncio.Semaphore` of the spec's ``concurrency`` (or
  ``JUNCTION_WORKFLOW_INTEGRATION_CONCURRENCY``), shared by every run of the
  :class:`~junction.workflows.runtime.Runtime` (concurrent runs share the bound).
* **Adaptive execution** (:mod:`integrations.adaptive_gate`, on unless
  ``JUNCTION_ADAPTIVE_ENABLED=false``): the clients adapt timeouts, concurrency and send
  rate below that bound; the run's ``priority`` (the spec's, or :meth:`WorkflowRunner.run`'s
  argument) orders its calls there and in the host-wide rate budget; the read-only steps
  of a ``high`` run (an incident's critical path) are hedged after their p95.
* **Cache** (read-only steps with ``cache``): :class:`~junction.workflows.cache.ResultCache`
  keyed on step id + provider + action + rendered inputs, for the step's TTL.
* **Coalescing**: identical read-only calls in flight at once share one request
  (:class:`~junction.workflows.cache.SingleFlight`).
* **Batching**: concurrent calls of an action with a bulk form go out as one request
  (:mod:`junction.workflows.batching`).
* **Breaker and fallback**: an alternative whose circuit breaker is open is skipped
  without a call; on failure the next alternative (the step's ``fallback``, in order) is
  tried, unless the failure is ambiguous for a non-idempotent action (the side effect may
  have happened: a second provider would duplicate it), see
  :func:`~junction.workflows.failures.may_fall_back`.
* **Routing**: a capability step's providers are ordered by recent success rate and p95
  latency from the metrics store (:mod:`junction.workflows.routing`).
* **Retries**: the client retries each request (transport, 429 with ``Retry-After``,
  5xx, resets; non-idempotent requests only when nothing reached the vendor); the step's
  ``retries`` re-run the whole action on top, only when that is safe
  (:func:`~junction.workflows.failures.may_retry`). Each attempt is bounded by the
  step's ``timeout``, and so is the rendering of its templates.
* **Idempotency**: a side-effecting step gets its ``idempotency_key`` (templated, or
  derived from workflow, step and parameters) in the field its action declares for it
  (``ActionSpec.key_field``), so a retry or a rerun reuses the key; the actions
  themselves check before they create. A side effect with neither (a Webex message) is
  recorded in the side-effect journal under the same key, and a rerun reuses it.
* **Recording**: every call's :class:`~integrations.metrics.CallMetric` (``source``
  ``workflow``, ``run_id`` = the run) and one ``workflow_runs`` row per run go to the
  metrics store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from pydantic import BaseModel, ValidationError

from integrations.actions import ActionSpec
from integrations.adaptive import Priority, current_priority, priority_scope
from integrations.base import IntegrationClient
from integrations.breaker import BreakerState
from integrations.errors import APITimeoutError, CircuitOpenError, IntegrationError
from junction.clients import get_action
from junction.events import workflow_failed
from junction.settings import Settings
from junction.workflows.batching import BATCHABLE
from junction.workflows.cache import step_key
from junction.workflows.failures import (
    describe,
    error_class,
    may_fall_back,
    may_retry,
    one_line,
    unkeyed_side_effect,
)
from junction.workflows.items import check_items, for_each_items
from junction.workflows.journal import SideEffectJournal
from junction.workflows.outcomes import (
    RunResult,
    RunStatus,
    StepFailed,
    StepOutcome,
    StepWrapper,
    run_directly,
)
from junction.workflows.runtime import (
    Alternative,
    RunState,
    Runtime,
    alternatives,
    current_run,
    current_step,
)
from junction.workflows.spec import (
    Step,
    WorkflowSpec,
    derive_idempotency_key,
    idempotency_field,
    resolve_params,
)
from junction.workflows.templating import TemplateError, evaluate, render, time_budget

if TYPE_CHECKING:
    from junction.store import MetricsStore

__all__ = ["WorkflowRunner", "run_workflow_once"]


def _as_data(value: Any) -> Any:
    """An action's output as JSON data (what templates read)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_as_data(v) for v in value]
    return value


class WorkflowRunner:
    """Runs one spec (any number of times) on a :class:`Runtime`.

    Args:
        spec: A validated spec (:func:`junction.workflows.validate.load_workflow`).
        runtime: Shared clients, bounds, cache and store.
        wrapper: How each step's body is run (the Prefect flow wraps it in a task).
    """

    def __init__(
        self, spec: WorkflowSpec, runtime: Runtime, *, wrapper: StepWrapper = run_directly
    ) -> None:
        self.spec = spec
        self.runtime = runtime
        self.wrapper = wrapper
        self.deps = spec.dependencies()
        self._actions: dict[str, ActionSpec] = {}

    def _action(self, provider: str, action: str) -> ActionSpec:
        key = f"{provider}.{action}"
        found = self._actions.get(key)
        if found is None:
            found = self._actions[key] = get_action(provider, action)
        return found

    async def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        priority: Priority | None = None,
    ) -> RunResult:
        """Run the workflow once.

        Args:
            params: Parameters (coerced and defaulted by
                :func:`~junction.workflows.spec.resolve_params`).
            run_id: The run's id (default: a new uuid hex).
            priority: The run's calls' priority (default: the spec's ``priority``).

        Returns:
            The run's result (also recorded in ``workflow_runs`` when the runtime has a
            store). Failures are in the result, not raised.

        Raises:
            ParameterError: ``params`` do not fit the spec, or a ``for_each`` that reads
                only parameters gives too many items (before any call).
        """
        resolved = resolve_params(self.spec, params or {})
        check_items(self.spec, resolved, self.runtime.settings)
        run = _Run(self, resolved, run_id or uuid4().hex)
        with priority_scope(priority or self.spec.priority):  # the budget serves high first
            result = await run.execute()
        if self.runtime.store is not None:
            self.runtime.store.append("workflow_runs", [result.row()])
        if not result.ok:  # for Prefect automations (best effort)
            workflow_failed(result.to_dict())
        return result


class _Run:
    """State of one run (one asyncio task per step)."""

    def __init__(self, runner: WorkflowRunner, params: dict[str, Any], run_id: str) -> None:
        self.runner = runner
        self.spec = runner.spec
        self.rt = runner.runtime
        self.params = params
        self.state = RunState(run_id)
        self.outcomes: dict[str, StepOutcome] = {}
        self.done: dict[str, asyncio.Event] = {s.id: asyncio.Event() for s in self.spec.steps}
        self.failed: str | None = None

    def context(self, **extra: Any) -> dict[str, Any]:
        """The template context: params, finished steps, workflow, run."""
        steps = {
            sid: {"output": o.output, "status": o.status, "provider": o.provider}
            for sid, o in self.outcomes.items()
        }
        ctx: dict[str, Any] = {
            "params": self.params,
            "steps": steps,
            "workflow": {"name": self.spec.name},
            "run": {"id": self.state.run_id},
        }
        ctx.update(extra)
        return ctx

    async def execute(self) -> RunResult:
        token = current_run.set(self.state)
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        try:
            tasks = [asyncio.create_task(self._step(s)) for s in self.spec.steps]
            await asyncio.gather(*tasks)
        finally:
            current_run.reset(token)
        duration = (time.perf_counter() - t0) * 1000.0
        ordered = {s.id: self.outcomes[s.id] for s in self.spec.steps}
        status: RunStatus = "failed" if self.failed else "completed"
        error = ordered[self.failed].error if self.failed else None
        outputs: dict[str, Any] = {}
        if not self.failed and self.spec.outputs:
            try:
                with time_budget(self.rt.settings.workflow_step_timeout_seconds):
                    outputs = render(self.spec.outputs, self.context())
            except TemplateError as exc:
                status, error = "failed", f"outputs: {exc}"
        return RunResult(
            run_id=self.state.run_id,
            workflow=self.spec.name,
            status=status,
            started_at=started_at,
            duration_ms=duration,
            steps=ordered,
            outputs=outputs,
            params=self.params,
            error=error,
            failed_step=self.failed,
        )

    def _finish(self, outcome: StepOutcome) -> StepOutcome:
        self.outcomes[outcome.step_id] = outcome
        self.done[outcome.step_id].set()
        return outcome

    async def _step(self, step: Step) -> StepOutcome:
        upstream = sorted(self.runner.deps.get(step.id, set()))
        for dep in upstream:
            await self.done[dep].wait()
        current_step.set(step.id)  # this task's context only
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()

        def skipped(reason: str) -> StepOutcome:
            return self._finish(
                StepOutcome(step.id, "skipped", uses=step.uses, error=reason, started_at=started_at)
            )

        for dep in upstream:
            status = self.outcomes[dep].status
            if status != "ok":
                return skipped(f"upstream step {dep!r} {status}")
        if self.failed is not None:
            return skipped(f"not started: step {self.failed!r} failed")
        try:
            # Rendering is synchronous: it gets the step's time budget, like its calls.
            with time_budget(self.timeout(step)):
                if step.when is not None and not evaluate(step.when, self.context()):
                    return skipped("condition is false")
                items: list[Any] | None = None
                if step.for_each is not None:
                    items = for_each_items(step, self.context(), self.rt.settings)
                # the rendered inputs (with for_each: of every item) key Prefect's cache
                preview: dict[str, Any] = (
                    render(step.with_, self.context())
                    if items is None
                    else {
                        "for_each": [
                            render(step.with_, self.context(item=item, index=i))
                            for i, item in enumerate(items)
                        ]
                    }
                )
        except TemplateError as exc:
            return self._failure(step, t0, started_at, f"step {step.id!r}: {exc}", "TemplateError")

        async def body() -> StepOutcome:
            return await self._body(step, items, t0, started_at)

        try:
            outcome = await self.runner.wrapper(step, preview, body)
        except StepFailed as exc:  # a wrapper re-raising the body's failure
            return self._failure(step, t0, started_at, exc.message, exc.error_class)
        if outcome.status == "failed" and not step.continue_on_error and self.failed is None:
            self.failed = step.id
        return self._finish(outcome)

    def _failure(
        self, step: Step, t0: float, started_at: datetime, message: str, error_class: str | None
    ) -> StepOutcome:
        if not step.continue_on_error and self.failed is None:
            self.failed = step.id
        return self._finish(
            StepOutcome(
                step.id,
                "failed",
                uses=step.uses,
                error=message,
                error_class=error_class,
                duration_ms=(time.perf_counter() - t0) * 1000.0,
                started_at=started_at,
            )
        )

    async def _body(
        self, step: Step, items: list[Any] | None, t0: float, started_at: datetime
    ) -> StepOutcome:
        """Run the step's call (or one per ``for_each`` item) and build its outcome."""
        # Set again: a wrapper (a Prefect task) may run the body in another context.
        current_run.set(self.state)
        current_step.set(step.id)
        outcome = StepOutcome(step.id, "ok", uses=step.uses, started_at=started_at)
        try:
            if items is None:
                outcome.output = await self._call(step, self.context(), None, outcome)
            else:
                limit = asyncio.Semaphore(step.concurrency or len(items) or 1)

                async def one(i: int, item: Any) -> Any:
                    async with limit:
                        ctx = self.context(item=item, index=i)
                        return await self._call(step, ctx, i, outcome)

                outcome.output = list(
                    await asyncio.gather(*(one(i, it) for i, it in enumerate(items)))
                )
        except StepFailed as exc:
            outcome.status = "failed"
            outcome.error = exc.message
            outcome.error_class = exc.error_class
            outcome.output = None
        outcome.duration_ms = (time.perf_counter() - t0) * 1000.0
        outcome.retries += self.state.retries_by_step.get(step.id, 0)
        outcome.calls = self.state.calls_by_step.get(step.id, 0)
        return outcome

    def timeout(self, step: Step) -> float:
        """Seconds one attempt of ``step`` may take (and its templates' render budget)."""
        return step.timeout or self.rt.settings.workflow_step_timeout_seconds

    async def _call(
        self, step: Step, ctx: dict[str, Any], index: int | None, outcome: StepOutcome
    ) -> Any:
        """One execution of the step's action, over its alternatives in order."""
        alts, capability = alternatives(step)
        if capability and len(alts) > 1:
            order = self.rt.rank([a.provider for a in alts])
            by_provider = {a.provider: a for a in alts}
            alts = [by_provider[p] for p in order]
        tried: list[str] = []
        last: BaseException | None = None
        effect_key = self._journal_key(step, alts, ctx, index)
        if effect_key is not None and self.rt.journal is not None:
            done = self.rt.journal.get(effect_key)
            if done is not None:  # an earlier run did it; the vendor could not tell
                outcome.provider, outcome.uses, outcome.reused = done.provider, done.uses, True
                return done.output
        for position, alt in enumerate(alts):
            action = self.runner._action(alt.provider, alt.action)
            client = self.rt.client(alt.provider)
            if client.breaker.state is BreakerState.OPEN:
                tried.append(f"{alt.provider}: circuit breaker open, skipped")
                last = CircuitOpenError(
                    "circuit breaker open",
                    service=alt.provider,
                    action=alt.action,
                    retry_in=client.breaker.snapshot().retry_in,
                )
                continue
            try:
                with time_budget(self.timeout(step)):
                    inputs = render(dict(alt.with_), ctx)
                    if alt.adapt is not None:
                        inputs = alt.adapt(inputs)
                    inputs = self._with_key(step, action, inputs, index, ctx)
                params = action.input.model_validate(inputs)
            except (TemplateError, ValidationError, ValueError) as exc:
                tried.append(f"{alt.uses}: bad inputs: {one_line(exc)}")
                last = exc
                continue
            outcome.uses = alt.uses
            try:
                value = await self._attempts(step, alt, action, client, params, outcome)
            except (IntegrationError, TimeoutError) as exc:
                last = exc
                tried.append(f"{alt.uses}: {describe(exc)}")
                if not may_fall_back(exc, action):
                    if position + 1 < len(alts):
                        tried.append(
                            "no fallback: the side effect may have happened (ambiguous failure "
                            "of a non-idempotent action)"
                        )
                    break
                continue
            outcome.provider = alt.provider
            if position > 0 or tried:
                outcome.fallback = alt.provider
            outcome.tried.extend(tried)
            if (
                effect_key is not None
                and self.rt.journal is not None
                and unkeyed_side_effect(action)
            ):
                self.rt.journal.put(effect_key, alt.provider, alt.uses, value)
            return value
        outcome.tried.extend(tried)
        what = "; ".join(tried) or "no alternative"
        raise StepFailed(
            f"step {step.id!r} ({step.uses}) failed: {what}",
            error_class=error_class(last),
        )

    def _with_key(
        self,
        step: Step,
        action: ActionSpec,
        inputs: dict[str, Any],
        index: int | None,
        ctx: dict[str, Any],
    ) -> dict[str, Any]:
        """Add the idempotency key to a side-effecting action's inputs (see the spec)."""
        if action.read_only:
            return inputs
        name = idempotency_field(action)
        if name is None or name in inputs:
            return inputs
        return {**inputs, name: self._key(step, ctx, index)}

    def _key(self, step: Step, ctx: dict[str, Any], index: int | None) -> str:
        """The step's idempotency key: its template rendered, else derived (see the spec).

        Raises:
            TemplateError: The ``idempotency_key`` template fails.
        """
        if step.idempotency_key is None:
            return derive_idempotency_key(self.spec, step.id, self.params, index)
        key = str(render(step.idempotency_key, ctx))
        template = step.idempotency_key
        if index is not None and "item" not in template and "index" not in template:
            key = f"{key}-{index}"  # one key per item, though the template names none
        return key

    def _journal_key(
        self, step: Step, alts: list[Alternative], ctx: dict[str, Any], index: int | None
    ) -> str | None:
        """The journal key of the step's side effect, when some alternative needs one."""
        if self.rt.journal is None:
            return None
        if not any(unkeyed_side_effect(self.runner._action(a.provider, a.action)) for a in alts):
            return None
        try:
            with time_budget(self.timeout(step)):
                key = self._key(step, ctx, index)
        except TemplateError:
            return None  # reported with the inputs, where the key is rendered again
        return f"{self.spec.name}/{step.id}/{key}"

    async def _attempts(
        self,
        step: Step,
        alt: Alternative,
        action: ActionSpec,
        client: IntegrationClient,
        params: BaseModel,
        outcome: StepOutcome,
    ) -> Any:
        """The step's attempts of one alternative: timeout each, retry when safe."""
        timeout = self.timeout(step)
        delay = step.retry_delay if step.retry_delay is not None else 0.5
        attempt = 0
        while True:
            attempt += 1
            outcome.attempts += 1
            try:
                async with asyncio.timeout(timeout):
                    return await self._invoke(step, alt, action, client, params, outcome)
            except TimeoutError:
                exc: BaseException = APITimeoutError(
                    f"step {step.id!r} timed out after {timeout:g}s",
                    service=alt.provider,
                    action=alt.action,
                )
            except IntegrationError as err:
                exc = err
            if attempt > step.retries or not may_retry(exc, action):
                raise exc
            outcome.retries += 1
            await asyncio.sleep(delay * 2 ** (attempt - 1))

    async def _invoke(
        self,
        step: Step,
        alt: Alternative,
        action: ActionSpec,
        client: IntegrationClient,
        params: BaseModel,
        outcome: StepOutcome,
    ) -> Any:
        """One call: cache, coalescing, batching, the per-integration bound."""
        data = params.model_dump(mode="json", exclude_unset=True)
        cache_ttl = step.cache.ttl if (step.cache and action.read_only) else 0.0
        cache = self.rt.cache if cache_ttl else None
        ckey = step_key(alt.provider, alt.action, data, step_id=step.id)
        if cache is not None:
            hit, value = cache.get(ckey)
            if hit:
                outcome.cached = True
                return value
        adaptive = client.gate is not None  # then the gate's limit adapts below this bound
        limit = self.spec.concurrency.get(
            alt.provider,
            self.rt.settings.adaptive_concurrency_max
            if adaptive
            else self.rt.settings.workflow_integration_concurrency,
        )
        sem = self.rt.semaphore(alt.provider, limit)

        async def call() -> Any:
            batcher = self.rt.batcher(alt.provider, alt.action)
            rule = BATCHABLE.get((alt.provider, alt.action))
            if batcher is not None and rule is not None and set(data) == {rule.key_field}:
                async with sem:
                    try:
                        return _as_data(await batcher.submit(str(data[rule.key_field])))
                    except KeyError:
                        pass  # not in the bulk answer: ask singly for the vendor's 404
            method = getattr(client, alt.action)
            async with sem:
                if (
                    action.read_only
                    and client.gate is not None
                    and current_priority.get() == "high"
                ):
                    # the critical path (an incident run): a read slower than its p95 is hedged
                    return _as_data(await client.gate.hedger.call(alt.uses, lambda: method(params)))
                return _as_data(await method(params))

        if action.read_only and self.rt.singleflight is not None:
            value, shared = await self.rt.singleflight.do(
                step_key(alt.provider, alt.action, data), call
            )
            outcome.coalesced = outcome.coalesced or shared
        else:
            value = await call()
        if cache is not None:
            cache.put(ckey, value, cache_ttl)
        return value


async def run_workflow_once(
    spec: WorkflowSpec,
    params: Mapping[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    store: MetricsStore | None = None,
    run_id: str | None = None,
    wrapper: StepWrapper = run_directly,
    cache: bool = True,
    journal: SideEffectJournal | None = None,
) -> RunResult:
    """Run ``spec`` once on a fresh :class:`Runtime` (the CLI's and the flow's entry point).

    Args:
        spec: The validated spec.
        params: Its parameters.
        settings: Settings (default: the process's).
        store: Metrics store to record into (``None``: not recorded).
        run_id: The run's id.
        wrapper: How steps run (Prefect tasks in the flow).
        cache: In-process caching of read-only steps.
        journal: Where unkeyed side effects are recorded so a rerun does not repeat them.

    Returns:
        The run's result.
    """
    async with Runtime(settings, store=store, cache=cache, journal=journal) as rt:
        return await WorkflowRunner(spec, rt, wrapper=wrapper).run(params, run_id=run_id)
