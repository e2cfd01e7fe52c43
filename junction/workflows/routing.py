"""Performance-based routing: which provider a capability step tries first.

A capability step (``notify.send``) names providers in order (its own provider plus its
``fallback`` list). Routing reorders them by what the metrics store saw recently: every
integration call (``calls``, from workflows, CLI and the monitor's probes' calls) and every
health probe (``probes``) in the last ``window`` seconds.

The rule, in order (documented in ``bench/README.md`` too):

1. A provider whose circuit breaker is open in this process goes last (calling it would
   fail at once; it stays in the list as a last resort because the breaker half-opens).
2. Providers with at least ``min_samples`` recent observations and a success rate at or
   above ``healthy_rate`` come first: higher success rate first (compared in 1-point
   buckets, so 99.2% and 99.6% tie), then lower p95 latency of the successful calls
   (compared in ``latency_bucket_ms`` buckets), then the declared order.
3. Then providers with too few observations to judge, in declared order (no data is
   not evidence of sickness, nor of health).
4. Then providers known to be unhealthy (below ``healthy_rate``), best first.

The pure part (:func:`rank_providers`) takes :class:`ProviderStats`; :func:`load_stats`
reads them from a :class:`~junction.store.MetricsStore` with one DuckDB query.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from integrations.breaker import BreakerState, breakers

if TYPE_CHECKING:
    from junction.store import MetricsStore


@dataclass(frozen=True)
class ProviderStats:
    """Recent observations of one provider.

    Attributes:
        service: Catalog name.
        samples: Calls plus probes seen in the window.
        success_rate: Share of them that succeeded (0..1).
        p95_ms: 95th percentile latency of the successful ones (``None`` when none).
    """

    service: str
    samples: int
    success_rate: float
    p95_ms: float | None


@dataclass(frozen=True)
class RoutingPolicy:
    """Knobs of :func:`rank_providers` (see the module docstring).

    Attributes:
        window_seconds: How far back :func:`load_stats` looks.
        min_samples: Observations needed before a provider is judged.
        healthy_rate: Success rate at or above which a provider counts as healthy.
        latency_bucket_ms: p95 latencies are compared in buckets of this size.
    """

    window_seconds: float = 900.0
    min_samples: int = 5
    healthy_rate: float = 0.9
    latency_bucket_ms: float = 25.0


def _breaker_open(service: str) -> bool:
    """Whether this process's breaker of ``service`` refuses calls right now."""
    for snap in breakers.snapshots():
        if snap.service == service:
            return snap.state is BreakerState.OPEN
    return False


def rank_providers(
    candidates: Sequence[str],
    stats: Mapping[str, ProviderStats],
    *,
    policy: RoutingPolicy | None = None,
    open_breakers: Iterable[str] | None = None,
) -> list[str]:
    """Order ``candidates`` best first (see the module docstring for the rule).

    Args:
        candidates: Provider names in declared order (duplicates are dropped).
        stats: Recent observations by provider (missing = no data).
        policy: Thresholds (default :class:`RoutingPolicy`).
        open_breakers: Providers whose breaker is open (default: asked of the process's
            breaker registry).

    Returns:
        The same providers, reordered.
    """
    policy = policy or RoutingPolicy()
    unique = list(dict.fromkeys(candidates))
    opened = (
        set(open_breakers) if open_breakers is not None else {s for s in unique if _breaker_open(s)}
    )

    def key(item: tuple[int, str]) -> tuple[int, float, float, int]:
        index, name = item
        if name in opened:
            return (3, 0.0, 0.0, index)
        seen = stats.get(name)
        if seen is None or seen.samples < policy.min_samples:
            return (1, 0.0, 0.0, index)
        rate_bucket = -math.floor(seen.success_rate * 100 + 1e-9)
        p95 = seen.p95_ms if seen.p95_ms is not None else math.inf
        latency_bucket = (
            math.floor(p95 / policy.latency_bucket_ms) if math.isfinite(p95) else math.inf
        )
        tier = 0 if seen.success_rate >= policy.healthy_rate else 2
        return (tier, rate_bucket, latency_bucket, index)

    return [name for _, name in sorted(enumerate(unique), key=key)]


def load_stats(
    store: MetricsStore,
    services: Sequence[str],
    *,
    window_seconds: float = 900.0,
    now: datetime | None = None,
) -> dict[str, ProviderStats]:
    """Recent success rate and p95 latency of ``services`` from ``calls`` and ``probes``.

    Args:
        store: The metrics store.
        services: Catalog names to look up.
        window_seconds: Look back this far.
        now: End of the window (default: now, UTC).

    Returns:
        Stats of every service with at least one observation.
    """
    if not services:
        return {}
    since = (now or datetime.now(UTC)) - timedelta(seconds=window_seconds)
    marks = ", ".join("?" for _ in services)
    sql = f"""
        SELECT service, count(*) AS n, avg(CASE WHEN ok THEN 1.0 ELSE 0.0 END) AS rate,
               quantile_cont(CASE WHEN ok THEN latency_ms END, 0.95) AS p95
        FROM (
            SELECT service, ok, latency_ms FROM calls WHERE ts >= ? AND service IN ({marks})
            UNION ALL
            SELECT service, ok, latency_ms FROM probes WHERE ts >= ? AND service IN ({marks})
        ) GROUP BY service
    """
    frame = store.query(sql, [since, *services, since, *services])
    found: dict[str, ProviderStats] = {}
    records: list[dict[Any, Any]] = frame.to_dict("records")
    for row in records:
        raw = row["p95"]
        p95 = None if raw is None or math.isnan(float(raw)) else float(raw)
        found[str(row["service"])] = ProviderStats(
            service=str(row["service"]),
            samples=int(row["n"]),
            success_rate=float(row["rate"]),
            p95_ms=p95,
        )
    return found
