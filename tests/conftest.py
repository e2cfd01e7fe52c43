"""Shared fixtures. Real local servers (sandbox, Prism, Alertmanager), no mocks."""

from __future__ import annotations

import os

# Prefect's ephemeral server needs more than its 20 s default on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# Session fixtures: real Stoplight Prism x9 (vendor specs, --errors), real Alertmanager.
from tests.servers import alertmanager, prism_servers  # noqa: E402, F401
