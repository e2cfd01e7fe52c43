"""Caching and coalescing of read-only workflow steps.

Two mechanisms, both keyed on the step's *identity and* its inputs, never on the inputs
alone (Prefect's ``INPUTS`` policy alone was seen to hand one task another task's cached
result when both were called with the same arguments; see /work/shared/FINDINGS.md):

* :class:`ResultCache`: results of read-only steps kept for the step's ``cache`` TTL, in
  process (the plain-Python runner). The Prefect flow uses Prefect's own cache instead
  (:func:`prefect_cache_key`, results persisted under ``$PREFECT_HOME/storage`` and
  reused across processes and flow runs).
* :class:`SingleFlight`: identical reads *in flight at the same time* (same provider,
  action and inputs; typically many concurrent runs reading the same group list) share
  one call: the first caller makes it, the others await its result.

The key (:func:`step_key`) is a SHA-256 of ``(provider, action, canonical JSON of the
inputs)`` plus, for the cache, the step id: two different steps never share a cached
result, while concurrent identical reads from different steps may still coalesce (they
are, by construction, the same request).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces; non-JSON values via ``str``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def step_key(provider: str, action: str, inputs: Mapping[str, Any], *, step_id: str = "") -> str:
    """The identity of one call: provider, action, inputs (and the step, when given).

    Args:
        provider: Catalog name that serves the call.
        action: Action name.
        inputs: Rendered inputs.
        step_id: The step's id (cache keys include it; coalescing keys do not).

    Returns:
        A hex digest.
    """
    raw = canonical_json([step_id, provider, action, inputs])
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class _Entry:
    value: Any
    expires: float


class ResultCache:
    """An in-process TTL cache of step results.

    Args:
        clock: Monotonic clock (injectable for tests).
        max_entries: Oldest entries are dropped beyond this many.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000
    ) -> None:
        self._clock = clock
        self._max = max_entries
        self._data: dict[str, _Entry] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` for a live entry, else ``(False, None)``."""
        entry = self._data.get(key)
        if entry is None or entry.expires <= self._clock():
            if entry is not None:
                del self._data[key]
            self.misses += 1
            return False, None
        self.hits += 1
        return True, entry.value

    def put(self, key: str, value: Any, ttl_seconds: float) -> None:
        """Keep ``value`` for ``ttl_seconds`` (a TTL <= 0 stores nothing)."""
        if ttl_seconds <= 0:
            return
        if len(self._data) >= self._max:
            oldest = min(self._data, key=lambda k: self._data[k].expires)
            del self._data[oldest]
        self._data[key] = _Entry(value, self._clock() + ttl_seconds)

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class SingleFlight:
    """Coalesce identical concurrent calls: one runs, the others await its outcome.

    The outcome (value or exception) is shared only while the call is in flight; the
    next call after it finished starts a new one.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self.coalesced = 0

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Run ``fn`` once per concurrent ``key``.

        Args:
            key: Identity of the call (see :func:`step_key`).
            fn: Makes the call.

        Returns:
            ``(result, shared)``: ``shared`` is True when another caller's call was awaited.
        """
        running = self._inflight.get(key)
        if running is not None:
            self.coalesced += 1
            # shield: one waiter's cancellation (its step timed out) must not cancel the call
            return await asyncio.shield(running), True
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await fn()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: no "never retrieved" warning
            raise
        else:
            future.set_result(value)
            return value, False
        finally:
            self._inflight.pop(key, None)


def prefect_cache_key(context: Any, parameters: Mapping[str, Any]) -> str | None:
    """``cache_key_fn`` for the step task: step id + provider/action + inputs.

    The step task is one generic function, so Prefect's ``TASK_SOURCE`` alone cannot
    tell steps apart; the step id and action are among its parameters and go into the
    key explicitly (the task also combines this with ``TASK_SOURCE``, so a code change
    invalidates old entries).

    Args:
        context: Prefect's task run context (unused).
        parameters: The task's parameters (``step_id``, ``uses``, ``inputs``...).

    Returns:
        The key, or ``None`` (no caching) for a step without a cache TTL.
    """
    if not parameters.get("cache_ttl"):
        return None
    uses = str(parameters.get("uses", ""))
    provider, _, action = uses.partition(".")
    return "junction-step-" + step_key(
        provider, action, parameters.get("inputs") or {}, step_id=str(parameters.get("step_id", ""))
    )
