"""Shared fixtures. Real local servers (sandbox, Prism, Alertmanager), no mocks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# Prefect's ephemeral server needs more than its 20 s default on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# Under pytest-xdist (`make test` runs two workers) each worker process gets its own Prefect
# and Junction homes: one SQLite database (Prefect's ephemeral server, Junction's state)
# per process.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    for _var in ("PREFECT_HOME", "JUNCTION_HOME"):
        if os.environ.get(_var):
            os.environ[_var] = os.path.join(os.environ[_var], "xdist", _WORKER)
            os.makedirs(os.environ[_var], exist_ok=True)

# Session fixtures: real Stoplight Prism x9 (vendor specs, --errors), real Alertmanager.
from tests.pg import postgres_cluster, postgres_url  # noqa: F401, E402  (a throw-away PostgreSQL)
from tests.servers import alertmanager, prism_servers  # noqa: F401, E402

# Session fixture: the service (junction serve's app) in uvicorn, against the sandbox.
from tests.service_helpers import api_server  # noqa: F401, E402  (after the homes above)

if TYPE_CHECKING:  # the sandbox takes over a second to import: only when a test needs it
    from integrations.sandbox.app import SandboxServer
    from tests.helpers import ClientFactory


@pytest.fixture(scope="module", autouse=True)
def _prefect_workers_drained() -> Iterator[None]:
    """After each module, stop Prefect's process-wide event and log workers (bounded):
    one left addressed to a server the module stopped would hang a later module."""
    yield
    if "prefect" in sys.modules:
        from tests.prefect_harness import drain_prefect_workers

        drain_prefect_workers()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """One sandbox server (HTTP and SMTP) for the session; most tests want ``sb``."""
    from integrations.sandbox.app import SandboxServer

    with SandboxServer(port=0, smtp_port=0) as server:
        yield server


@pytest.fixture
def sb(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    """The session sandbox as a freshly started one: no state, tokens, request log or
    faults, the default fault profile. Restored again afterwards for tests that use
    ``sandbox`` directly."""
    from tests.helpers import restore

    restore(sandbox)
    yield sandbox
    restore(sandbox)


@pytest.fixture
def make_client(sb: SandboxServer) -> ClientFactory:
    """``make_client(OktaClient, **kwargs)``: a client of the clean sandbox ``sb``."""
    from tests.helpers import ClientFactory

    return ClientFactory(sb)
