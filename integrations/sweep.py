"""One concurrent health sweep over many integrations.

Plain asyncio, no Prefect: the monitoring flow, the CLI and the benchmark all call
:func:`sweep` (the core through ``junction.clients.sweep``, which passes the settings'
configuration). All HTTP clients share one ``httpx.AsyncClient`` whose transport is the
engine's ``http_backend`` (``integrations.transport``: aiohttp by default, or sharded
httpcore pools), and a semaphore bounds the checks in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

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
