"""Shared test helpers: the sandbox's admin API, clients pointed at the sandbox, clients on
an ``httpx.MockTransport``, and wrong credentials of the right shape.

The fixtures built on these (``sb``, ``make_client``) live in ``tests/conftest.py``.
"""

from __future__ import annotations

import atexit
import functools
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import httpx
from pydantic import SecretStr

from integrations.auth import SANDBOX_USER, Credentials
from integrations.base import IntegrationClient, RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.catalog import load_catalog
from integrations.config import EngineConfig
from junction.clients import get_client
from junction.settings import Settings

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

C = TypeVar("C", bound=IntegrationClient)

ROOT = Path(__file__).resolve().parents[1]

#: Three attempts, no waiting: retries are counted, not timed.
FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


# --- the command line ------------------------------------------------------------------------


def run_junction(
    args: Sequence[str], env: Mapping[str, str] | None = None, *, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m junction ARGS`` from the repository root, as a user would.

    The child sees none of this process's ``JUNCTION_*`` variables and ``COLUMNS=200``
    (``env`` may override it). A run that names its ``JUNCTION_HOME`` (``home`` or
    ``env``) also drops ``PREFECT_HOME``, so the CLI derives ``<home>/prefect``.

    Args:
        args: The command line after ``junction``.
        env: Extra environment variables.
        home: ``JUNCTION_HOME`` for the run.
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("JUNCTION_")}
    full["COLUMNS"] = "200"
    if home is not None:
        full["JUNCTION_HOME"] = str(home)
    full.update(env or {})
    if "JUNCTION_HOME" in full:
        full.pop("PREFECT_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "junction", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full,
        timeout=120,
    )


# --- the sandbox's admin API ----------------------------------------------------------------


@functools.cache
def _admin() -> httpx.Client:
    # One pooled client for every admin call: building an httpx client loads the CA bundle
    # (about 60 ms), which per call would cost more than the calls themselves. Idle
    # connections are dropped well before the sandbox's 30 s keep-alive ends them.
    client = httpx.Client(timeout=10.0, limits=httpx.Limits(keepalive_expiry=5.0))
    atexit.register(client.close)
    return client


def restore(sb: SandboxServer) -> None:
    """Put the sandbox back as it was at start-up: no state, tokens, request log or faults.

    ``POST /_admin/reset`` keeps the fault profile's seed and synthetic endpoints (a test may
    have replaced them through ``/_admin/profile`` or ``/_admin/synthetic``), so the default
    profile is loaded first.
    """
    _admin().post(f"{sb.url}/_admin/profile", json={}).raise_for_status()
    _admin().post(f"{sb.url}/_admin/reset").raise_for_status()


def state(sb: SandboxServer, service: str) -> dict[str, dict[str, Any]]:
    """Every collection of ``service`` (``GET /_admin/state/<service>``)."""
    resp = _admin().get(f"{sb.url}/_admin/state/{service}")
    resp.raise_for_status()
    collections: dict[str, dict[str, Any]] = resp.json()["collections"]
    return collections


def collection(sb: SandboxServer, service: str, name: str) -> dict[str, Any]:
    """One collection of ``service`` (empty when nothing was stored in it yet)."""
    return state(sb, service).get(name, {})


def set_faults(sb: SandboxServer, service: str, **faults: Any) -> None:
    """Merge ``faults`` into ``service``'s entry (``POST /_admin/faults/<service>``)."""
    resp = _admin().post(f"{sb.url}/_admin/faults/{service}", json=faults)
    resp.raise_for_status()


def clear_faults(sb: SandboxServer, service: str) -> None:
    """Drop ``service``'s faults (``DELETE /_admin/faults/<service>``)."""
    resp = _admin().delete(f"{sb.url}/_admin/faults/{service}")
    resp.raise_for_status()


def requests_log(sb: SandboxServer, service: str) -> dict[str, Any]:
    """``service``'s request log: ``{"requests", "faults", "routes": {route: {...}}}``
    (``GET /_admin/requests?service=<service>``; zeros before its first request)."""
    resp = _admin().get(f"{sb.url}/_admin/requests", params={"service": service})
    resp.raise_for_status()
    empty: dict[str, Any] = {"requests": 0, "faults": {}, "routes": {}}
    found: dict[str, Any] = resp.json()["services"].get(service, empty)
    return found


def faults_seen(sb: SandboxServer, service: str, kind: str) -> int:
    """How many faults of ``kind`` (``lost_after_commit``, ``error``...) ``service`` got."""
    return int(requests_log(sb, service)["faults"].get(kind, 0))


def route_requests(sb: SandboxServer, service: str, route: str) -> int:
    """Requests to one route of ``service`` (``"GET /messages"``)."""
    return int(requests_log(sb, service)["routes"].get(route, {}).get("requests", 0))


# --- clients ----------------------------------------------------------------------------------


def quiet_breaker(service: str) -> CircuitBreaker:
    """A private breaker that never opens (one test's failures never trip another's)."""
    return CircuitBreaker(service, failure_threshold=1000)


def bad_credentials(service: str, secret: str) -> Credentials:
    """Credentials of the shape ``service``'s auth scheme takes, with a wrong ``secret``
    (token, password or client secret; the sandbox's user and client id otherwise)."""
    scheme = load_catalog().get(service).auth.scheme
    if scheme == "basic":
        return Credentials(username=SANDBOX_USER, password=SecretStr(secret))
    if scheme == "oauth2":
        return Credentials(client_id="sandbox-client", client_secret=SecretStr(secret))
    return Credentials(token=SecretStr(secret))


def sandbox_settings(sb: SandboxServer) -> Settings:
    """Settings pointing every integration (HTTP and SMTP) at ``sb``."""
    if sb.smtp_port is None:
        return Settings(sandbox_url=sb.url)
    return Settings(sandbox_url=sb.url, sandbox_smtp_port=sb.smtp_port)


def sandbox_engine(sb: SandboxServer) -> EngineConfig:
    """The client engine configuration pointing every integration (HTTP and SMTP) at ``sb``."""
    if sb.smtp_port is None:
        return EngineConfig(sandbox_url=sb.url)
    return EngineConfig(sandbox_url=sb.url, sandbox_smtp_port=sb.smtp_port)


@overload
def new_client(target: type[C], /, **kwargs: Any) -> C: ...


@overload
def new_client(target: str, /, **kwargs: Any) -> IntegrationClient: ...


def new_client(target: str | type[C], /, **kwargs: Any) -> Any:
    """``get_client`` for a catalog name or a typed client class (checked), with test
    defaults: :data:`FAST` retries and a :func:`quiet_breaker`."""
    name = target if isinstance(target, str) else target.service
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("breaker", quiet_breaker(name))
    client = get_client(name, **kwargs)
    if not isinstance(target, str):
        assert isinstance(client, target), f"{name} built {type(client).__name__}"
    return client


class ClientFactory:
    """Builds clients talking to one sandbox (the ``make_client`` fixture).

    ``make_client(OktaClient)`` gives the typed client of ``OktaClient.service``;
    ``make_client("asana")`` whatever the registry builds for that catalog name. Defaults:
    :data:`FAST` retries and a :func:`quiet_breaker`; ``wrong_secret`` swaps in
    :func:`bad_credentials`; any other keyword goes to ``get_client``.
    """

    def __init__(self, sb: SandboxServer) -> None:
        self.sb = sb

    @overload
    def __call__(
        self, target: type[C], /, *, wrong_secret: str | None = None, **kwargs: Any
    ) -> C: ...

    @overload
    def __call__(
        self, target: str, /, *, wrong_secret: str | None = None, **kwargs: Any
    ) -> IntegrationClient: ...

    def __call__(
        self, target: str | type[C], /, *, wrong_secret: str | None = None, **kwargs: Any
    ) -> Any:
        name = target if isinstance(target, str) else target.service
        if wrong_secret is not None:
            kwargs["credentials"] = bad_credentials(name, wrong_secret)
        kwargs.setdefault("engine", sandbox_engine(self.sb))
        return new_client(target, **kwargs)


def mock_client(
    target: type[C], handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> C:
    """The typed client of ``target`` answered by ``handler`` on an ``httpx.MockTransport``
    (pass ``base_url`` and, unless the service needs none, ``credentials``)."""
    return new_client(target, transport=httpx.MockTransport(handler), **kwargs)


def run_pytest_isolated(module: Path, tmp_path: Path, *, timeout: float) -> str:
    """Run one test file in a pytest process of its own; returns its output.

    For modules whose in-process Prefect clients, event loops or thread pools must not
    meet the session's: real-server fault tests kill servers that the process's Prefect
    workers still point at, and a later module's test-server teardown then waits on them.
    The child gets its own Prefect and Junction homes and none of this process's
    ``PREFECT_*``/``JUNCTION_*`` settings.

    Raises:
        AssertionError: The child's tests did not all pass (its output's tail attached).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "JUNCTION_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        JUNCTION_HOME=str(tmp_path / "junction"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
    )
    (tmp_path / "prefect").mkdir(exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
        cwd=module.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc.stdout
