"""What concurrent workflow runs share (:class:`Runtime`): clients, per-integration bounds,
cache, coalescing, batching, routing statistics, the metrics store and the side-effect
journal; and the ways a step can run (:class:`Alternative`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from integrations.base import IntegrationClient, RetryPolicy
from integrations.metrics import CallMetric
from junction.clients import get_client
from junction.settings import Settings, get_settings
from junction.workflows.batching import BATCHABLE, MicroBatcher
from junction.workflows.cache import ResultCache, SingleFlight
from junction.workflows.capabilities import candidates
from junction.workflows.journal import SideEffectJournal
from junction.workflows.routing import ProviderStats, RoutingPolicy, load_stats, rank_providers
from junction.workflows.spec import Step

if TYPE_CHECKING:
    from junction.store import MetricsStore

__all__ = ["Alternative", "RunState", "Runtime", "alternatives", "current_run", "current_step"]

log = logging.getLogger(__name__)

current_run: contextvars.ContextVar[RunState | None] = contextvars.ContextVar(
    "junction_workflow_run", default=None
)
"""The run a task belongs to (the shared clients' metric hook reads it)."""

current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "junction_workflow_step", default=None
)
"""The step a task belongs to."""


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
            ),
        )
        # Workflow calls adapt (timeouts, concurrency, budget); probes keep fixed ones.
        self.client_options.setdefault(
            "engine",
            replace(self.settings.engine_config(), adaptive=self.settings.adaptive_policy()),
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
        run = current_run.get()
        if run is not None:
            metric.run_id = run.run_id
            run.on_metric(metric, current_step.get())
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


@dataclass
class RunState:
    """Counters of one run that the shared clients' metric hook fills (by run and step).

    Attributes:
        run_id: The run.
        retries_by_step: Request retries per step.
        calls_by_step: Requests per step.
    """

    run_id: str
    retries_by_step: dict[str, int] = field(default_factory=dict)
    calls_by_step: dict[str, int] = field(default_factory=dict)

    def on_metric(self, metric: CallMetric, step_id: str | None) -> None:
        """Count one call of ``step_id``."""
        if step_id is None:
            return
        self.calls_by_step[step_id] = self.calls_by_step.get(step_id, 0) + 1
        extra = max(0, metric.attempts - 1)
        self.retries_by_step[step_id] = self.retries_by_step.get(step_id, 0) + extra
