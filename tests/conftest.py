"""Shared fixtures. Real local servers (sandbox, Prism, Alertmanager), no mocks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Prefect's ephemeral server needs more than its 20 s default on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


@pytest.fixture(scope="session")
def prism_servers() -> Iterator[dict[str, str]]:
    """Stoplight Prism serving every vendor spec in --errors mode: {service: base url}."""
    from tests.servers import PRISM_SPECS, start_prism_servers

    servers = start_prism_servers(list(PRISM_SPECS.values()))
    try:
        yield {svc: servers[path].url for svc, path in PRISM_SPECS.items()}
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
