"""The worker processes that fit forecasts and run the streaming detector for the report.

A ``spawn`` pool (fork is unsafe next to Prefect's and DuckDB's threads) whose workers
import Prophet once, up front, and run at ``nice 5`` so the parent, which holds the
critical path (validation, SQL, HTML), wins contended cores. :func:`shared_pool` starts
one per process and warms it while the caller does other work; :func:`submit_parallel`
hands it jobs and returns a :class:`Pending`, whose ``result()`` runs inline whatever
the pool could not (it failed to start, or broke), with a warning.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any


def silence_cmdstanpy() -> None:
    """Keep cmdstanpy's per-fit INFO lines out of the logs (warnings still pass).

    cmdstanpy adds its own stream handler unless the logger already has one, so a
    NullHandler goes in first; handlers it already added are removed.
    """
    for name in ("cmdstanpy", "prophet"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.WARNING)
    # Prophet logs an ERROR at import when plotly (interactive plots, unused here) is absent.
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)


def prepare_worker() -> None:
    """Initializer of the worker processes: lower priority, quiet cmdstanpy, Prophet loaded."""
    # The parent holds the critical path (validation, SQL, HTML) while the workers fit:
    # let it win the cores when they are contended.
    with contextlib.suppress(OSError):
        os.nice(5)
    silence_cmdstanpy()
    import prophet  # noqa: F401  # function-level: the ~2.5 s import, once per worker, up front


def _new_pool(workers: int, initializer: Callable[[], None] | None) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=initializer)


class Pending:
    """Jobs handed to a process pool; :meth:`result` waits for them.

    Jobs the pool could not run (it failed to start, or broke) run inline in
    :meth:`result`, with a warning, so a caller always gets every result.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        jobs: Mapping[Hashable, tuple[Any, ...]],
        futures: dict[Hashable, Future[Any]],
        stack: contextlib.ExitStack | None = None,
        finish: Callable[[dict[Hashable, Any]], Any] | None = None,
    ) -> None:
        self._fn, self._jobs, self._futures = fn, jobs, futures
        self._stack, self._finish = stack, finish

    def result(self) -> Any:
        """Every job's result (``{key: value}``, or what ``finish`` makes of it)."""
        out: dict[Hashable, Any] = {}
        try:
            for key, fut in self._futures.items():
                out[key] = fut.result()
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            logging.getLogger(__name__).warning("process pool failed (%s); running inline", exc)
        finally:
            if self._stack is not None:
                self._stack.close()
        for key, args in self._jobs.items():
            if key not in out:
                out[key] = self._fn(*args)
        ordered = {key: out[key] for key in self._jobs}
        return ordered if self._finish is None else self._finish(ordered)

    def cancel(self) -> None:
        """Cancel the jobs not started yet (running ones finish in their worker)."""
        for fut in self._futures.values():
            fut.cancel()
        if self._stack is not None:
            self._stack.close()


def submit_parallel(
    fn: Callable[..., Any],
    jobs: Mapping[Hashable, tuple[Any, ...]],
    *,
    workers: int | None = None,
    initializer: Callable[[], None] | None = None,
    weight: Callable[[tuple[Any, ...]], float] | None = None,
    pool: Executor | None = None,
    finish: Callable[[dict[Hashable, Any]], Any] | None = None,
) -> Pending:
    """Start ``fn(*args)`` for every job on a ``spawn`` process pool.

    Args:
        fn: A module-level function (it is pickled by name).
        jobs: ``key -> args``.
        workers: Pool size for a new pool (default: the CPU count); with 1 worker, or at
            most 2 jobs and no ``pool``, the jobs run inline in ``result()`` (a new pool
            costs ~3 s to start).
        initializer: Run once in each worker of a new pool.
        weight: Jobs start heaviest first, so a big one does not leave a core idle last.
        pool: A running pool (:func:`shared_pool`) instead of a new one.
        finish: Turns ``{key: result}`` into what ``result()`` returns.
    """
    order = list(jobs)
    if weight is not None:
        order.sort(key=lambda k: -weight(jobs[k]))
    n_workers = min(workers or os.cpu_count() or 1, len(jobs))
    if pool is None and (n_workers <= 1 or len(jobs) <= 2):
        return Pending(fn, jobs, {}, finish=finish)  # inline, in result()
    stack = contextlib.ExitStack()
    futures: dict[Hashable, Future[Any]] = {}
    try:
        if pool is None:
            pool = stack.enter_context(_new_pool(n_workers, initializer))
        for key in order:
            futures[key] = pool.submit(fn, *jobs[key])
    except (BrokenProcessPool, OSError, RuntimeError) as exc:
        logging.getLogger(__name__).warning("process pool failed (%s); running inline", exc)
    return Pending(fn, jobs, futures, stack, finish)


_shared_lock = threading.Lock()
_shared: dict[str, Any] = {}


def _noop() -> None:
    return None


def shared_pool(workers: int | None = None) -> Executor | None:
    """A process-wide pool of Prophet-ready workers, started (and warmed) on first use.

    Warming submits one no-op per worker at once, so the workers' ~3 s of imports run
    while the caller does other work (e.g. data validation). ``None`` for one worker.
    Closed at interpreter exit or by :func:`close_shared_pool`.
    """
    n = workers or os.cpu_count() or 1
    if n <= 1:
        return None
    with _shared_lock:
        pool = _shared.get("pool")
        if pool is not None and (_shared.get("n") != n or getattr(pool, "_broken", False)):
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
        if pool is None:
            pool = _new_pool(n, prepare_worker)
            for _ in range(n):
                pool.submit(_noop)
            if not _shared.get("atexit"):
                atexit.register(close_shared_pool)
                _shared["atexit"] = True
            _shared.update(pool=pool, n=n)
        return pool


def close_shared_pool() -> None:
    """Stop the shared pool's workers (a no-op when none runs)."""
    with _shared_lock:
        pool = _shared.pop("pool", None)
        _shared.pop("n", None)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


__all__ = [
    "Pending",
    "close_shared_pool",
    "prepare_worker",
    "shared_pool",
    "silence_cmdstanpy",
    "submit_parallel",
]
