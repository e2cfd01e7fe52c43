"""The workflow runner: runs a validated :class:`~junction.workflows.spec.WorkflowSpec` as a DAG.

Plain typed Python, testable without Prefect; ``flows/workflow.py`` wraps each step in a
Prefect task through the :data:`StepWrapper` hook and adds nothing else.

What one run does (:meth:`WorkflowRunner.run`):

* **DAG**: every step is an asyncio task that waits for its upstream steps
  (:meth:`WorkflowSpec.dependencies`), so steps without a path between them run at once.
  After a step fails, no new step starts (steps already calling finish: cancelling a
  side effect halfway would leave it ambiguous); the rest are ``skipped``.
* **Per-integration bound**: calls to one integration go through an
  :class:`asyncio.Semaphore` of the spec's ``concurrency`` (or
  ``JUNCTION_WORKFLOW_INTEGRATION_CONCURRENCY``), shared by every run of the
  :class:`Runtime` (concurrent runs share the bound).
* **Cache** (read-only steps with ``cache``): :class:`~junction.workflows.cache.ResultCache`
  keyed on step id + provider + action + rendered inputs, for the step's TTL.
* **Coalescing**: identical read-only calls in flight at once share one request
  (:class:`~junction.workflows.cache.SingleFlight`).
* **Batching**: concurrent calls of an action with a bulk form go out as one request
  (:mod:`junction.workflows.batching`).
* **Breaker and fallback**: an alternative whose circuit breaker is open is skipped
  without a call; on failure the next alternative (the step's ``fallback``, in order) is
  tried, unless the failure is ambiguous for a non-idempotent action (the side effect may
  have happened: a second provider would duplicate it), see :func:`may_fall_back`.
* **Routing**: a capability step's providers are ordered by recent success rate and p95
  latency from the metrics store (:mod:`junction.workflows.routing`).
* **Retries**: the client retries each request (transport, 429 with ``Retry-After``,
  5xx, resets; non-idempotent requests only when nothing reached the vendor); the step's
  ``retries`` re-run the whole action on top, only when that is safe
  (:func:`may_retry`). Each attempt is bounded by the step's ``timeout``.
* **Idempotency**: a side-effecting step gets its ``idempotency_key`` (templated, or
  derived from workflow, step and parameters) in the field its action declares for it
  (``ActionSpec.key_field``), so a retry or a rerun reuses the key; the actions
  themselves check before they create. A side effect with neither (a Slack message) is
  recorded in the side-effect journal under the same key, and a rerun reuses it.
* **Recording**: every call's :class:`~integrations.metrics.CallMetric` (``source``
  ``workflow``, ``run_id`` = the run) and one ``workflow_runs`` row per run go to the
  metrics store.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

from pydantic import BaseModel, ValidationError

from integrations.base import ActionSpec, IntegrationClient, RetryPolicy
from integrations.breaker import BreakerState
from integrations.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CircuitOpenError,
    ConfigurationError,
    IntegrationError,
    RateLimitError,
)
from integrations.metrics import CallMetric
from junction.clients import get_action, get_client
from junction.settings import Settings, get_settings
from junction.workflows.batching import BATCHABLE, MicroBatcher
from junction.workflows.cache import ResultCache, SingleFlight, step_key
from junction.workflows.capabilities import candidates
from junction.workflows.journal import SideEffectJournal
from junction.workflows.routing import ProviderStats, RoutingPolicy, load_stats, rank_providers
from junction.workflows.spec import (
    ParameterError,
    Step,
    WorkflowSpec,
    derive_idempotency_key,
    idempotency_field,
    resolve_params,
)
from junction.workflows.templating import (
    TemplateError,
    evaluate,
    references,
    render,
    time_budget,
)

if TYPE_CHECKING:
    from junction.store import MetricsStore

log = logging.getLogger(__name__)

StepStatus = Literal["ok", "failed", "skipped"]
RunStatus = Literal["completed", "failed"]

_current_run: contextvars.ContextVar[_RunState | None] = contextvars.ContextVar(
    "junction_workflow_run", default=None
)
_current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "junction_workflow_step", default=None
)


# --- results ----------------------------------------------------------------------------------


@dataclass
class StepOutcome:
    """What one step did.

    Attributes:
        step_id: The step.
        status: ``ok``, ``failed`` or ``skipped``.
        uses: The ``<integration>.<action>`` that produced the outcome (the last tried).
        provider: The integration that answered (``None`` when nothing did).
        fallback: The provider used when it was not the first choice (else ``None``).
        attempts: Step-level attempts over every alternative (0 when skipped or cached).
        retries: Step-level retries plus the clients' request retries.
        calls: Integration calls made (one per action request, after its retries).
        cached: The output came from the cache.
        reused: The side effect was done by an earlier run with the same idempotency key
            (the side-effect journal); nothing was sent.
        coalesced: The output came from an identical call in flight.
        duration_ms: From start (dependencies met) to end.
        started_at: When the step started (UTC).
        output: The action's output as JSON data (a list with ``for_each``).
        error: Why it failed or was skipped.
        error_class: The failure's error class.
        tried: ``provider: error`` of each failed alternative, in order.
    """

    step_id: str
    status: StepStatus
    uses: str = ""
    provider: str | None = None
    fallback: str | None = None
    attempts: int = 0
    retries: int = 0
    calls: int = 0
    cached: bool = False
    reused: bool = False
    coalesced: bool = False
    duration_ms: float = 0.0
    started_at: datetime | None = None
    output: Any = None
    error: str | None = None
    error_class: str | None = None
    tried: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``--json``, Prefect task results)."""
        return {
            "step_id": self.step_id,
            "status": self.status,
            "uses": self.uses,
            "provider": self.provider,
            "fallback": self.fallback,
            "attempts": self.attempts,
            "retries": self.retries,
            "calls": self.calls,
            "cached": self.cached,
            "reused": self.reused,
            "coalesced": self.coalesced,
            "duration_ms": round(self.duration_ms, 1),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "output": self.output,
            "error": self.error,
            "error_class": self.error_class,
            "tried": list(self.tried),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepOutcome:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        started = values.get("started_at")
        values["started_at"] = datetime.fromisoformat(started) if started else None
        return cls(**values)


@dataclass
class RunResult:
    """What one workflow run did.

    Attributes:
        run_id: The run's id (``calls.run_id`` of its calls).
        workflow: The spec's name.
        status: ``completed`` or ``failed``.
        started_at: Start (UTC).
        duration_ms: Wall time of the run.
        steps: Outcome per step, in the spec's order.
        outputs: The spec's ``outputs``, rendered (empty when the run failed).
        params: The resolved parameters.
        error: Why the run failed (names the step).
        failed_step: The first step that failed.
    """

    run_id: str
    workflow: str
    status: RunStatus
    started_at: datetime
    duration_ms: float
    steps: dict[str, StepOutcome]
    outputs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

    @property
    def retries(self) -> int:
        """Retries of every step (step-level and request-level)."""
        return sum(s.retries for s in self.steps.values())

    @property
    def fallbacks(self) -> int:
        """Steps answered by a fallback provider."""
        return sum(1 for s in self.steps.values() if s.fallback)

    @property
    def steps_run(self) -> int:
        """Steps that were not skipped."""
        return sum(1 for s in self.steps.values() if s.status != "skipped")

    def row(self) -> dict[str, Any]:
        """The ``workflow_runs`` row of this run."""
        return {
            "id": uuid4().hex,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "started_at": self.started_at,
            "ended_at": datetime.now(UTC),
            "status": self.status,
            "duration_ms": self.duration_ms,
            "steps": self.steps_run,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "error": self.error,
            "params_json": json.dumps(self.params, default=str, sort_keys=True),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``junction workflow run --json``)."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "duration_ms": round(self.duration_ms, 1),
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "error": self.error,
            "failed_step": self.failed_step,
            "params": self.params,
            "outputs": self.outputs,
            "steps": [s.to_dict() for s in self.steps.values()],
        }


class StepFailed(Exception):
    """A step failed; the message names the step and every alternative's error."""

    def __init__(self, message: str, *, error_class: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_class = error_class


# --- retry and fallback decisions ---------------------------------------------------------------


def nothing_happened(exc: BaseException) -> bool:
    """Whether a failure proves the vendor did not act on the request.

    True for an open breaker (never sent), a refused connection, a 429, a 503 (the
    service refused to take the request: down, in maintenance, overloaded), a
    client-side configuration error, and a 4xx refusal (the vendor rejected it). A 500,
    502, 504, a timeout or a reset after the request went out are ambiguous: the side
    effect may have committed (the sandbox's ``lost_after_commit`` answers 504 or resets).
    """
    if isinstance(exc, CircuitOpenError | ConfigurationError | RateLimitError):
        return True
    if isinstance(exc, APIConnectionError) and not exc.request_sent:
        return True
    if isinstance(exc, APIStatusError):
        code = exc.status_code
        return code == 503 or (400 <= code < 500 and code != 408)
    return False


def may_retry(exc: BaseException, action: ActionSpec) -> bool:
    """Whether a step-level retry of the same action is worth it and safe.

    Transient failures only (timeouts, connection errors, 5xx, 429, garbled bodies,
    an open breaker that will half-open); for a non-idempotent action only when
    :func:`nothing_happened`.
    """
    if not isinstance(exc, IntegrationError) or isinstance(exc, ConfigurationError):
        return False
    transient = exc.retryable or isinstance(exc, CircuitOpenError)
    if not transient:
        return False
    return action.idempotent or nothing_happened(exc)


def may_fall_back(exc: BaseException, action: ActionSpec) -> bool:
    """Whether the next alternative may be tried after ``exc``.

    Always for reads and idempotent actions (they check before they create); for a
    non-idempotent action only when :func:`nothing_happened`, because an ambiguous
    failure (timeout, reset, 5xx after the request went out) may hide a delivered side
    effect that a second provider would duplicate.
    """
    if action.read_only or action.idempotent:
        return True
    return nothing_happened(exc)


# --- for_each ----------------------------------------------------------------------------------


def for_each_items(step: Step, context: Mapping[str, Any], settings: Settings) -> list[Any]:
    """The items of a ``for_each`` step: a list of at most ``JUNCTION_WORKFLOW_MAX_ITEMS``.

    Raises:
        TemplateError: The expression fails, gives no list, or too many items.
    """
    value = evaluate(step.for_each or "[]", context)
    if not isinstance(value, list | tuple):
        raise TemplateError(f"for_each gave {type(value).__name__}, not a list")
    limit = settings.workflow_max_items
    if len(value) > limit:
        raise TemplateError(
            f"for_each gave {len(value)} items, more than the limit of {limit} "
            "(JUNCTION_WORKFLOW_MAX_ITEMS); nothing was sent for this step"
        )
    return list(value)


_STATIC_ROOTS = frozenset({"params", "workflow"})


def _reads_only_params(expression: str) -> bool:
    try:
        refs = references(expression, expression=True)
    except TemplateError:
        return False
    return {r[0] for r in refs} <= _STATIC_ROOTS


def check_items(spec: WorkflowSpec, params: Mapping[str, Any], settings: Settings) -> None:
    """Before a run starts: each ``for_each`` that reads only parameters is within the cap.

    (``for_each: '["Engineering"] * params.n'`` with ``n=5000`` fails here, before the
    first step sends anything.) Steps whose ``when`` reads only parameters and is false
    are left out; expressions reading step outputs are checked when the step runs.

    Raises:
        ParameterError: Every step over the cap, named.
    """
    context = {"params": dict(params), "workflow": {"name": spec.name}}
    problems: list[str] = []
    for step in spec.steps:
        if step.for_each is None or not _reads_only_params(step.for_each):
            continue
        try:
            with time_budget(step.timeout or settings.workflow_step_timeout_seconds):
                static_when = step.when is not None and _reads_only_params(step.when)
                if static_when and not evaluate(step.when or "", context):
                    continue
                value = evaluate(step.for_each, context)
        except TemplateError:
            continue  # reported when the step runs, with the step's context
        limit = settings.workflow_max_items
        if isinstance(value, list | tuple) and len(value) > limit:
            problems.append(
                f"step {step.id!r}: for_each gives {len(value)} items, more than the limit "
                f"of {limit} (JUNCTION_WORKFLOW_MAX_ITEMS)"
            )
    if problems:
        raise ParameterError("; ".join(problems))


# --- alternatives ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alternative:
    """One way to run a step: a provider, its action, and the inputs' template.

    Attributes:
        provider: Catalog name.
        action: Action name.
        with_: Inputs template (the step's ``with`` unless the fallback has its own).
        adapt: Maps the rendered (capability) inputs to the action's inputs.
    """

    provider: str
    action: str
    with_: Mapping[str, Any]
    adapt: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def uses(self) -> str:
        """``provider.action``."""
        return f"{self.provider}.{self.action}"


def alternatives(step: Step) -> tuple[list[Alternative], bool]:
    """The alternatives of ``step`` in declared order, and whether it is a capability step.

    From :func:`junction.workflows.capabilities.candidates`: ``<integration>.<action>``
    steps give the action then each ``fallback``; capability steps the providers bound
    to the capability (their inputs mapped from the generic ones).
    """
    found = [
        Alternative(
            c.integration,
            c.action,
            c.with_,
            c.binding.map_inputs if c.binding is not None else None,
        )
        for c in candidates(step)
    ]
    return found, step.target().kind == "capability"


# --- the runtime (shared by runs) ---------------------------------------------------------------


StepBody = Callable[[], Awaitable[StepOutcome]]
StepWrapper = Callable[[Step, dict[str, Any], StepBody], Awaitable[StepOutcome]]
"""``wrapper(step, rendered_inputs, body)``: runs ``body`` (e.g. inside a Prefect task)."""


async def run_directly(step: Step, inputs: dict[str, Any], body: StepBody) -> StepOutcome:
    """The default :data:`StepWrapper`: just run the step."""
    return await body()


class Runtime:
    """What concurrent runs share: clients, per-integration bounds, cache, coalescing,
    batching, routing stats and the metrics store.

    Use ``async with Runtime(...) as rt: await WorkflowRunner(spec, rt).run(params)``.

    Args:
        settings: Settings (default: the process's).
        store: Where calls and runs are recorded, and routing reads from (``None``: no
            recording, routing keeps the declared order).
        cache: Cache read-only steps with ``cache`` in process (off in the Prefect flow,
            which uses Prefect's cache).
        journal: The side-effect journal (:mod:`junction.workflows.journal`): a rerun
            does not repeat a side effect no vendor can deduplicate (``None``: off).
        coalesce: Share identical concurrent reads.
        batch: Merge concurrent calls of batchable actions.
        routing: Reorder capability providers by recent metrics.
        client_options: Extra keyword arguments for every client (``transport``,
            ``breaker``... in tests); ``retry`` defaults to the ``JUNCTION_WORKFLOW_RETRY_*``
            policy.
        routing_policy: Thresholds of the routing rule.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: MetricsStore | None = None,
        cache: bool = True,
        journal: SideEffectJournal | None = None,
        coalesce: bool = True,
        batch: bool = True,
        routing: bool = True,
        client_options: Mapping[str, Any] | None = None,
        routing_policy: RoutingPolicy | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.store = store
        self.cache: ResultCache | None = ResultCache() if cache else None
        self.journal = journal
        self.singleflight: SingleFlight | None = SingleFlight() if coalesce else None
        self.batch = batch
        self.routing = routing
        self.routing_policy = routing_policy or RoutingPolicy(
            window_seconds=self.settings.workflow_routing_window_seconds
        )
        self.client_options = dict(client_options or {})
        # A run waits on its slowest chain: retry transient failures sooner than the
        # foundation's default (a server's Retry-After still wins).
        self.client_options.setdefault(
            "retry",
            RetryPolicy(
                max_attempts=self.settings.workflow_retry_max_attempts,
                backoff_base=self.settings.workflow_retry_backoff_base_seconds,
                backoff_max=self.settings.workflow_retry_backoff_max_seconds,
                retry_after_max=self.settings.retry_after_max_seconds,
                jitter=self.settings.workflow_retry_backoff_base_seconds,
            ),
        )
        self._clients: dict[str, IntegrationClient] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._batchers: dict[tuple[str, str], MicroBatcher[str, Any]] = {}
        self._stats: tuple[float, dict[str, ProviderStats]] | None = None

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every client (and flush the store's rows of this runtime)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        if self.store is not None:
            self.store.flush()

    def client(self, provider: str) -> IntegrationClient:
        """The runtime's client of ``provider`` (one per integration, shared by runs).

        Its metrics carry the current run's id (set through a context variable, since
        the client is shared) and go to the store.
        """
        client = self._clients.get(provider)
        if client is None:
            options: dict[str, Any] = {"source": "workflow", **self.client_options}
            client = get_client(
                provider, settings=self.settings, metric_hook=self._on_metric, **options
            )
            self._clients[provider] = client
        return client

    def _on_metric(self, metric: CallMetric) -> None:
        run = _current_run.get()
        if run is not None:
            metric.run_id = run.run_id
            run.on_metric(metric, _current_step.get())
        if self.store is not None:
            self.store.record_call(metric)

    def semaphore(self, provider: str, limit: int) -> asyncio.Semaphore:
        """The bound of concurrent calls to ``provider`` (created with ``limit``)."""
        sem = self._semaphores.get(provider)
        if sem is None:
            sem = self._semaphores[provider] = asyncio.Semaphore(limit)
        return sem

    def batcher(self, provider: str, action: str) -> MicroBatcher[str, Any] | None:
        """The batcher of ``provider.action`` if it has a bulk form (and batching is on)."""
        rule = BATCHABLE.get((provider, action))
        if rule is None or not self.batch:
            return None
        key = (provider, action)
        batcher = self._batchers.get(key)
        if batcher is None:
            client = self.client(provider)

            async def bulk(keys: Sequence[str]) -> Mapping[str, Any]:
                return await rule.bulk(client, keys)

            batcher = self._batchers[key] = MicroBatcher(bulk)
        return batcher

    def rank(self, providers: Sequence[str]) -> list[str]:
        """Providers best first (routing), or as declared without a store."""
        if not self.routing or self.store is None or len(providers) < 2:
            return list(providers)
        now = time.monotonic()
        if (
            self._stats is None
            or now - self._stats[0] > self.settings.workflow_routing_refresh_seconds
        ):
            try:
                stats = load_stats(
                    self.store,
                    sorted(set(providers)),
                    window_seconds=self.routing_policy.window_seconds,
                )
            except Exception:  # routing must never fail a run: keep the declared order
                log.warning("routing stats unavailable", exc_info=True)
                stats = {}
            self._stats = (now, stats)
        return rank_providers(providers, self._stats[1], policy=self.routing_policy)


# --- one run ------------------------------------------------------------------------------------


@dataclass
class _RunState:
    run_id: str
    retries_by_step: dict[str, int] = field(default_factory=dict)
    calls_by_step: dict[str, int] = field(default_factory=dict)

    def on_metric(self, metric: CallMetric, step_id: str | None) -> None:
        if step_id is None:
            return
        self.calls_by_step[step_id] = self.calls_by_step.get(step_id, 0) + 1
        extra = max(0, metric.attempts - 1)
        self.retries_by_step[step_id] = self.retries_by_step.get(step_id, 0) + extra


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
        self, params: Mapping[str, Any] | None = None, *, run_id: str | None = None
    ) -> RunResult:
        """Run the workflow once.

        Args:
            params: Parameters (coerced and defaulted by
                :func:`~junction.workflows.spec.resolve_params`).
            run_id: The run's id (default: a new uuid hex).

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
        result = await run.execute()
        if self.runtime.store is not None:
            self.runtime.store.append("workflow_runs", [result.row()])
        return result


class _Run:
    """State of one run (one asyncio task per step)."""

    def __init__(self, runner: WorkflowRunner, params: dict[str, Any], run_id: str) -> None:
        self.runner = runner
        self.spec = runner.spec
        self.rt = runner.runtime
        self.params = params
        self.state = _RunState(run_id)
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
        token = _current_run.set(self.state)
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        try:
            tasks = [asyncio.create_task(self._step(s)) for s in self.spec.steps]
            await asyncio.gather(*tasks)
        finally:
            _current_run.reset(token)
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
        _current_step.set(step.id)  # this task's context only
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
        _current_run.set(self.state)
        _current_step.set(step.id)
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
                tried.append(f"{alt.uses}: bad inputs: {_one_line(exc)}")
                last = exc
                continue
            outcome.uses = alt.uses
            try:
                value = await self._attempts(step, alt, action, client, params, outcome)
            except (IntegrationError, TimeoutError) as exc:
                last = exc
                tried.append(f"{alt.uses}: {_describe(exc)}")
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
            if effect_key is not None and self.rt.journal is not None and _unkeyed(action):
                self.rt.journal.put(effect_key, alt.provider, alt.uses, value)
            return value
        outcome.tried.extend(tried)
        what = "; ".join(tried) or "no alternative"
        raise StepFailed(
            f"step {step.id!r} ({step.uses}) failed: {what}",
            error_class=_error_class(last),
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
        if not any(_unkeyed(self.runner._action(a.provider, a.action)) for a in alts):
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
        limit = self.spec.concurrency.get(
            alt.provider, self.rt.settings.workflow_integration_concurrency
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


def _unkeyed(action: ActionSpec) -> bool:
    """A side effect no vendor can deduplicate: no key field, not idempotent by itself."""
    return not action.read_only and not action.idempotent and action.key_field is None


def _one_line(exc: BaseException) -> str:
    """An input error as one line (pydantic's message spans several, with a docs link)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'inputs'}: {e['msg']}" for e in exc.errors()
        )
    return " ".join(str(exc).split())


def _describe(exc: BaseException) -> str:
    """One line: a vendor's message may span several."""
    if isinstance(exc, IntegrationError):
        return " ".join(f"{exc.error_class}: {exc.message}".split())
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _error_class(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, IntegrationError):
        return exc.error_class
    return type(exc).__name__


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
