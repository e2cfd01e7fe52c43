"""HTTP plumbing shared by every client: one TLS context, and a sharded pool for sweeps.

Why sharding: httpcore's connection pool re-scans every queued request against every
connection on each state change, so one pool with ~1,000 concurrent requests spends
seconds of CPU in bookkeeping (encode/httpx#3215; measured in bench/sweep.py: a shared
pool was 4x slower than per-client pools at 200 endpoints). Several small pools behind
one transport keep each scan short while staying a plain ``httpx.AsyncClient``.
"""

from __future__ import annotations

import itertools
import ssl
from functools import lru_cache

import httpx


@lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process (building one loads the CA bundle: ~10-100 ms)."""
    return httpx.create_ssl_context()


class ShardedTransport(httpx.AsyncBaseTransport):
    """Spread requests round-robin over several independent httpcore pools.

    Args:
        shards: Number of pools.
        connections_per_shard: Connection limit of each pool.
    """

    def __init__(self, shards: int, connections_per_shard: int) -> None:
        limits = httpx.Limits(
            max_connections=connections_per_shard,
            max_keepalive_connections=connections_per_shard,
        )
        self._pools = [
            httpx.AsyncHTTPTransport(verify=shared_ssl_context(), limits=limits)
            for _ in range(max(1, shards))
        ]
        self._next = itertools.cycle(range(len(self._pools)))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pools[next(self._next)].handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def sweep_client(concurrency: int, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``concurrency`` simultaneous requests to many hosts.

    Pools of at most 32 connections: small enough that httpcore's per-request scan stays
    cheap, large enough to keep a handful of pools for a full catalog sweep.
    """
    per_shard = 32
    shards = max(1, -(-concurrency // per_shard))
    return httpx.AsyncClient(
        transport=ShardedTransport(shards, per_shard), timeout=timeout, follow_redirects=False
    )
