"""Shared fixtures. Real local servers (sandbox, Prism, Alertmanager), no mocks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# Prefect's ephemeral server needs more than its 20 s default on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# Session fixtures: real Stoplight Prism x9 (vendor specs, --errors), real Alertmanager.
from tests.servers import alertmanager, prism_servers  # noqa: E402, F401


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    """One sandbox server for the session (tests that change faults must reset them)."""
    from integrations.sandbox.app import SandboxServer

    with SandboxServer(port=0, smtp_port=0) as server:
        yield server
