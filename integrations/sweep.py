"""One concurrent health sweep over many integrations.

Plain asyncio, no Prefect: the monitoring flow, the CLI and the benchmark all call
:func:`sweep` (the core through ``junction.clients.sweep``, which passes the settings'
configuration). All HTTP clients share one ``httpx.AsyncClient`` whose transport is the
engine's ``http_backend`` (``integrations.transport``: aiohttp by default, or sharded
httpcore pools), and a semaphore bounds the checks in flight.

A monitor sweeps the same integrations again and again: :class:`Sweeper` keeps the clients
and their connections alive across sweeps (no client building, no TCP connects after the
first), and :class:`ProcessSweeper` spreads a large sweep over worker processes, each with
its own :class:`Sweeper` over a shard of the endpoints, so a CPU-bound sweep uses every
core (round-robin slices, :func:`shard_of`). Monitors on several workers each own a
stable part of the integrations: :func:`owned_by`, rendezvous hashing of the names.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx

from integrations.base import HealthResult, IntegrationClient
from integrations.catalog import load_catalog
from integrations.config import EngineConfig, IntegrationConfig
from integrations.errors import IntegrationError
from integrations.metrics import MetricSink
from integrations.registry import get_client
from integrations.transport import sweep_client

ConfigSource = Callable[[str], IntegrationConfig]
"""Gives the configuration of one integration by name (the core reads the environment)."""


def build_clients(
    names: Sequence[str],
    *,
    http: httpx.AsyncClient,
    engine: EngineConfig | None = None,
    configs: ConfigSource | None = None,
    source: str = "probe",
    run_id: str | None = None,
    metric_hook: MetricSink | None = None,
) -> tuple[list[IntegrationClient], list[HealthResult]]:
    """Build a client per name; a misconfigured integration becomes a failed result.

    Args:
        names: Catalog names.
        http: The shared HTTP client.
        engine: Engine configuration (default: the defaults).
        configs: Each integration's configuration (default: none, the sandbox).
        source: Recorded with each call metric.
        run_id: Recorded with each call metric.
        metric_hook: Extra sink for the call metrics.

    Returns:
        ``(clients, failures)``: the usable clients and one failed ``HealthResult`` per
        integration whose configuration is unusable (it is never silently dropped).
    """
    clients: list[IntegrationClient] = []
    failures: list[HealthResult] = []
    for name in names:
        try:
            clients.append(
                get_client(
                    name,
                    engine=engine,
                    config=configs(name) if configs is not None else None,
                    http=http,
                    source=source,
                    run_id=run_id,
                    metric_hook=metric_hook,
                )
            )
        except IntegrationError as exc:
            failures.append(HealthResult.unusable(name, exc))
    return clients, failures


async def check_all(
    clients: Sequence[IntegrationClient], *, concurrency: int, max_attempts: int = 1
) -> list[HealthResult]:
    """Run ``health_check`` on every client, at most ``concurrency`` at once."""
    if concurrency >= len(clients):  # nothing to wait for: no semaphore on the way
        return list(
            await asyncio.gather(*(c.health_check(max_attempts=max_attempts) for c in clients))
        )
    gate = asyncio.Semaphore(concurrency)

    async def one(client: IntegrationClient) -> HealthResult:
        async with gate:
            return await client.health_check(max_attempts=max_attempts)

    return list(await asyncio.gather(*(one(c) for c in clients)))


async def sweep(
    names: Sequence[str] | None = None,
    *,
    engine: EngineConfig | None = None,
    configs: ConfigSource | None = None,
    concurrency: int | None = None,
    source: str = "probe",
    run_id: str | None = None,
    metric_hook: MetricSink | None = None,
    max_attempts: int = 1,
) -> list[HealthResult]:
    """Health-check integrations concurrently.

    Args:
        names: Catalog names; default: every integration of the catalog.
        engine: Engine configuration (default: the defaults).
        configs: Each integration's configuration (default: none, the sandbox).
        concurrency: Checks in flight at once (default: the engine's).
        source: Recorded with each call metric.
        run_id: Recorded with each call metric.
        metric_hook: Extra sink for the call metrics.
        max_attempts: Attempts per check (1 reports the raw signal).

    Returns:
        One result per name, in the order given.

    Raises:
        UnknownIntegrationError: If a name is not in the catalog.
    """
    engine = engine or EngineConfig()
    catalog = load_catalog()
    if names is None:
        names = catalog.names
    else:
        for name in names:
            catalog.get(name)  # unknown names fail before anything is sent
    limit = concurrency or engine.sweep_concurrency
    timeout = httpx.Timeout(engine.timeout_seconds, connect=engine.connect_timeout_seconds)
    async with sweep_client(limit, timeout, backend=engine.http_backend) as http:
        clients, failures = build_clients(
            names,
            engine=engine,
            configs=configs,
            http=http,
            source=source,
            run_id=run_id,
            metric_hook=metric_hook,
        )
        try:
            results = await check_all(clients, concurrency=limit, max_attempts=max_attempts)
        finally:
            for client in clients:
                await client.aclose()
    by_name = {r.service: r for r in [*results, *failures]}
    return [by_name[n] for n in names]


class Sweeper:
    """Health-checks a fixed set of clients once per :meth:`run`, connections kept alive.

    Each sweep sends the checks that took longest last time first: their waits then
    overlap with the CPU work of sending and reading all the others, instead of starting
    after part of it (a slow endpoint late in the order added up to the whole send phase
    to a sweep's wall time). Results are in the clients' order whatever the send order.

    Args:
        clients: The clients (sharing ``http``), built once.
        http: Their shared HTTP client (closed by :meth:`aclose`).
        concurrency: Checks in flight at once.
        max_attempts: Attempts per check.
    """

    def __init__(
        self,
        clients: Sequence[IntegrationClient],
        http: httpx.AsyncClient,
        *,
        concurrency: int,
        max_attempts: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.clients = list(clients)
        self.http = http
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self._order = list(range(len(self.clients)))

    async def run(self) -> list[HealthResult]:
        """One sweep: every client's health check, results in the clients' order."""
        answers = await check_all(
            [self.clients[i] for i in self._order],
            concurrency=self.concurrency,
            max_attempts=self.max_attempts,
        )
        by_index = dict(zip(self._order, answers, strict=True))
        results = [by_index[i] for i in range(len(answers))]
        self._order.sort(key=lambda i: results[i].latency_ms, reverse=True)
        return results

    async def aclose(self) -> None:
        """Close the clients and the shared HTTP client."""
        for client in self.clients:
            await client.aclose()
        await self.http.aclose()


GC_GEN0_THRESHOLD = 20_000
"""Allocations between two young-generation collections in a sweeping process (the
interpreter's default is 700)."""


def quiet_gc() -> None:
    """Make Python's cyclic garbage collector cheap for a process whose job is sweeping.

    A check allocates hundreds of tracked objects and a sweep keeps every check in flight
    at once, so with the default threshold the collector ran ~170 times per 1,000-endpoint
    sweep, promoted in-flight objects to the old generation, and its full collections
    rescanned every object the process holds (modules, clients): ~30% of a sweep's CPU in
    ``bench/sweep.py``. This collects once, freezes what is alive now (``gc.freeze``: the
    long-lived objects leave every later collection) and raises the young generation's
    threshold so most of a check's objects are gone before a collection looks.

    Process-wide: call it once, after start-up, only in a process that sweeps for its
    living (a :class:`ProcessSweeper` worker, the ``junction monitor`` loop). Frozen
    objects are never collected, so what is alive at that moment should stay alive.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_GEN0_THRESHOLD), middle, old)


SweeperFactory = Callable[[int, int], Sweeper]
"""``factory(shard, shards)``: the :class:`Sweeper` of one shard, built in the worker
(a module-level function or a ``functools.partial`` of one, so it can be pickled)."""


@dataclass(frozen=True)
class ShardSweep:
    """What one worker process reports for one sweep."""

    results: list[HealthResult]
    cpu_s: float
    """CPU time (user + system) the worker spent on this sweep."""


def _worker(conn: Connection, factory: SweeperFactory, shard: int, shards: int) -> None:
    asyncio.run(_serve(conn, factory, shard, shards))


async def _serve(conn: Connection, factory: SweeperFactory, shard: int, shards: int) -> None:
    sweeper = factory(shard, shards)
    quiet_gc()  # the worker's process is the sweep's own
    loop = asyncio.get_running_loop()
    try:
        conn.send("ready")
        while await loop.run_in_executor(None, conn.recv) == "sweep":
            cpu = time.process_time()
            results = await sweeper.run()
            conn.send(ShardSweep(results, time.process_time() - cpu))
    finally:
        await sweeper.aclose()
        conn.close()


class ProcessSweeper:
    """A sweep spread over ``shards`` worker processes, each sweeping its own shard.

    Workers are started by :meth:`start` (``spawn``: a clean interpreter each) and live
    until :meth:`close`; each builds its :class:`Sweeper` once with ``factory(shard,
    shards)``. Results come back in shard order.

    Args:
        factory: Builds a shard's sweeper in the worker.
        shards: Worker processes (at least 1).
    """

    def __init__(self, factory: SweeperFactory, shards: int) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self.factory = factory
        self.shards = shards
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self.last_cpu_s: list[float] = []
        """CPU seconds of each worker in the last sweep."""

    def start(self) -> None:
        """Start the workers and wait until each has built its clients."""
        ctx = multiprocessing.get_context("spawn")
        for shard in range(self.shards):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(child, self.factory, shard, self.shards), daemon=True
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        for shard, conn in enumerate(self._conns):
            try:
                ready = conn.recv()
            except EOFError:
                ready = None
            if ready != "ready":
                self.close()
                raise RuntimeError(f"sweep worker {shard} failed to build its clients")

    @property
    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self._procs]

    async def run(self) -> list[HealthResult]:
        """One sweep in every worker at once; all results, shard after shard."""
        if not self._conns:
            raise RuntimeError("ProcessSweeper.run() before start()")
        for conn in self._conns:
            conn.send("sweep")
        answers: list[ShardSweep] = await asyncio.gather(
            *(asyncio.to_thread(conn.recv) for conn in self._conns)
        )
        self.last_cpu_s = [a.cpu_s for a in answers]
        return [r for a in answers for r in a.results]

    def close(self) -> None:
        """Stop the workers (they close their clients first)."""
        for conn in self._conns:
            with contextlib.suppress(OSError):  # the worker is gone already
                conn.send("stop")
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []


def check_shard(shard: int, shards: int) -> None:
    """Refuse a shard index outside ``0 <= shard < shards`` or fewer than one shard.

    Raises:
        ValueError: One line naming the shard and the count.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be between 0 and {shards - 1} (of {shards}), got {shard}")


def shard_weight(key: str, shard: int) -> int:
    """The rendezvous weight of ``key`` on ``shard``: a stable 64-bit hash of both."""
    digest = hashlib.blake2b(f"{shard}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(key: str, shards: int) -> int:
    """The shard of ``shards`` that owns ``key``: the one of highest weight.

    Rendezvous (highest-random-weight) hashing: the owner depends only on the key and the
    shard count, is the same in every process and on every host, and going from ``n`` to
    ``n + 1`` shards moves only the keys the new shard wins (about ``1 / (n + 1)`` of them),
    each to the new shard.

    Raises:
        ValueError: ``shards`` is below 1.
    """
    check_shard(0, shards)
    return max(range(shards), key=lambda s: shard_weight(key, s))


def owned_by(keys: Sequence[str], shard: int, shards: int) -> list[str]:
    """The keys shard ``shard`` of ``shards`` owns (:func:`owner_of`), in their order.

    Every key is owned by exactly one shard; with one shard, all of them. Use this where
    ownership must be stable (monitors on several workers); :func:`shard_of` balances one
    process's work exactly but moves most keys when the count changes.

    Raises:
        ValueError: ``shard`` is not in ``0 .. shards - 1``.
    """
    check_shard(shard, shards)
    if shards == 1:
        return list(keys)
    return [key for key in keys if owner_of(key, shards) == shard]


def shard_of(items: Sequence[Any], shard: int, shards: int) -> list[Any]:
    """The ``shard``-th of ``shards`` round-robin slices of ``items`` (exactly balanced;
    for splitting one sweep over processes, not for stable ownership: see :func:`owned_by`)."""
    return list(items[shard::shards])


def catalog_sweeper(
    names: Sequence[str],
    shard: int = 0,
    shards: int = 1,
    *,
    engine: EngineConfig | None = None,
    configs: ConfigSource | None = None,
    source: str = "probe",
) -> Sweeper:
    """The :class:`Sweeper` of one shard of catalog integrations (a misconfigured one is
    left out: :func:`sweep` reports those).

    ``functools.partial(catalog_sweeper, names, engine=...)`` is a
    :data:`SweeperFactory` for :class:`ProcessSweeper` (``configs``, if given, must then
    be a module-level function so it can be pickled).
    """
    engine = engine or EngineConfig()
    part = shard_of(names, shard, shards)
    timeout = httpx.Timeout(engine.timeout_seconds, connect=engine.connect_timeout_seconds)
    http = sweep_client(max(1, len(part)), timeout, backend=engine.http_backend)
    clients, _ = build_clients(part, engine=engine, configs=configs, http=http, source=source)
    return Sweeper(clients, http, concurrency=max(1, len(part)))
