"""Shared fixtures. Real local servers (sandbox, Prism, Alertmanager), no mocks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# Prefect's ephemeral server needs more than its 20 s default on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# Session fixtures: real Stoplight Prism x9 (vendor specs, --errors), real Alertmanager.
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (a throw-away PostgreSQL)
from tests.servers import alertmanager, prism_servers  # noqa: F401

# Session fixture: the service (junction serve's app) in uvicorn, against the sandbox.
from tests.service_helpers import api_server  # noqa: F401

if TYPE_CHECKING:  # the sandbox takes over a second to import: only when a test needs it
    from integrations.sandbox.app import SandboxServer
    from tests.helpers import ClientFactory


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
