"""Routing (provider ranking from recorded metrics), the result cache, single-flight and
the micro-batcher, as plain Python."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from junction.store import MetricsStore
from junction.workflows.batching import MicroBatcher
from junction.workflows.cache import ResultCache, SingleFlight, prefect_cache_key, step_key
from junction.workflows.routing import ProviderStats, RoutingPolicy, load_stats, rank_providers


def stats(service: str, samples: int, rate: float, p95: float | None) -> ProviderStats:
    return ProviderStats(service, samples, rate, p95)


def test_rank_by_success_rate_then_p95_then_declared_order() -> None:
    seen = {
        "webex": stats("webex", 50, 0.80, 100.0),
        "slack": stats("slack", 50, 0.99, 400.0),
        "smtp": stats("smtp", 50, 0.995, 90.0),
    }
    # slack and smtp share the 99% bucket: the faster one wins; webex is unhealthy
    assert rank_providers(["webex", "slack", "smtp"], seen, open_breakers=[]) == [
        "smtp",
        "slack",
        "webex",
    ]
    # p95 within one bucket (25 ms): declared order stays
    close = {
        "webex": stats("webex", 50, 1.0, 101.0),
        "slack": stats("slack", 50, 1.0, 110.0),
    }
    assert rank_providers(["slack", "webex"], close, open_breakers=[]) == ["slack", "webex"]


def test_unknown_providers_rank_between_healthy_and_unhealthy_and_open_breakers_last() -> None:
    seen = {
        "webex": stats("webex", 50, 0.5, 100.0),
        "slack": stats("slack", 2, 0.0, None),  # too few samples: unknown
        "smtp": stats("smtp", 50, 1.0, 300.0),
    }
    order = rank_providers(["webex", "slack", "smtp", "teams"], seen, open_breakers=[])
    assert order == ["smtp", "slack", "teams", "webex"]
    assert rank_providers(["smtp", "slack"], seen, open_breakers=["smtp"]) == ["slack", "smtp"]
    policy = RoutingPolicy(min_samples=1)
    assert rank_providers(["slack", "teams"], seen, policy=policy, open_breakers=[]) == [
        "teams",
        "slack",
    ]


def test_load_stats_reads_calls_and_probes_in_the_window(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "m")
    now = datetime.now(UTC)
    call = {
        "service": "webex",
        "action": "create_message",
        "method": "POST",
        "path": "/messages",
        "status": 200,
        "attempts": 1,
        "breaker_state": "closed",
        "source": "workflow",
    }
    store.append(
        "calls",
        [
            {**call, "ts": now, "ok": True, "latency_ms": 100.0},
            {**call, "ts": now, "ok": False, "latency_ms": 5000.0, "status": 503},
            {**call, "ts": now - timedelta(hours=2), "ok": False, "latency_ms": 1.0},
        ],
    )
    store.append(
        "probes",
        [
            {
                "sweep_id": "s",
                "service": "webex",
                "ok": True,
                "status": 200,
                "latency_ms": 200.0,
                "breaker_state": "closed",
                "ts": now,
            }
        ],
    )
    store.flush()
    found = load_stats(store, ["webex", "slack"], window_seconds=900)
    assert set(found) == {"webex"}
    webex = found["webex"]
    assert webex.samples == 3 and webex.success_rate == pytest.approx(2 / 3)
    assert webex.p95_ms is not None and 100.0 < webex.p95_ms <= 200.0  # failures excluded
    store.close()


def test_result_cache_ttl_and_keys() -> None:
    now = [0.0]
    cache = ResultCache(clock=lambda: now[0])
    a = step_key("workday", "get_worker", {"worker_id": "1"}, step_id="a")
    b = step_key("workday", "get_worker", {"worker_id": "1"}, step_id="b")
    assert a != b  # same inputs, another step: another entry
    assert step_key("x", "y", {"k": 1, "j": 2}) == step_key("x", "y", {"j": 2, "k": 1})
    cache.put(a, {"id": "1"}, 10)
    assert cache.get(a) == (True, {"id": "1"}) and cache.get(b) == (False, None)
    now[0] = 10.0
    assert cache.get(a) == (False, None)
    params: dict[str, Any] = {"step_id": "a", "uses": "workday.get_worker", "inputs": {}}
    assert prefect_cache_key(None, {**params, "cache_ttl": None}) is None
    key_a = prefect_cache_key(None, {**params, "cache_ttl": 60})
    key_b = prefect_cache_key(None, {**params, "step_id": "b", "cache_ttl": 60})
    assert key_a and key_b and key_a != key_b


async def test_single_flight_shares_one_call_and_its_error() -> None:
    flight = SingleFlight()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(flight.do("k", fetch) for _ in range(5)))
    assert calls == 1 and [r[0] for r in results] == [42] * 5
    assert sum(shared for _, shared in results) == 4

    async def boom() -> int:
        await asyncio.sleep(0.01)
        raise RuntimeError("down")

    outcomes = await asyncio.gather(
        *(flight.do("e", boom) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert (await flight.do("k", fetch))[1] is False and calls == 2  # not in flight any more


async def test_micro_batcher_merges_concurrent_keys() -> None:
    batches: list[list[str]] = []

    async def bulk(keys: Sequence[str]) -> Mapping[str, str]:
        batches.append(list(keys))
        return {k: k.upper() for k in keys if k != "missing"}

    batcher = MicroBatcher(bulk, window=0.01, max_size=3)
    got = await asyncio.gather(
        *(batcher.submit(k) for k in ["a", "b", "a", "c", "d", "missing"]),
        return_exceptions=True,
    )
    assert got[:5] == ["A", "B", "A", "C", "D"]
    assert isinstance(got[5], KeyError)
    assert batches[0] == ["a", "b", "c"]  # full at three distinct keys
    assert sorted(batches[1]) == ["d", "missing"]
