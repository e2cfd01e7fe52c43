"""Prefect test servers whose teardown cannot hang on another module's leftovers.

Prefect's event and log workers are process-wide: an instance created for a server that
a test has since stopped (or killed) keeps its queue, and ``prefect_test_harness``'s exit
drains every instance without a time limit. Seen in full runs: a module's harness
teardown waiting for events addressed to a dead server until pytest-timeout killed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

DRAIN_TIMEOUT_S = 20.0


def drain_prefect_workers(timeout: float = DRAIN_TIMEOUT_S) -> None:
    """Stop every Prefect event and API-log worker, waiting at most ``timeout`` for each kind.

    A stopped worker leaves Prefect's instance cache at once, so a later unbounded drain
    (the harness's own) finds nothing left to wait for; what a worker could not deliver
    to a server that is gone is dropped.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


@contextlib.contextmanager
def harness(startup_timeout: int = 120) -> Iterator[None]:
    """``prefect_test_harness`` with a bounded drain of Prefect's workers before its exit."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=startup_timeout):
        try:
            yield
        finally:
            drain_prefect_workers()
