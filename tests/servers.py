"""Real server processes for tests: Stoplight Prism mocks and a Prometheus Alertmanager.

Prism (``node_modules/.bin/prism``, from ``package-lock.json``) serves the vendors' own
OpenAPI specs kept in ``$JUNCTION_SPECS_DIR`` (default ``../shared/specs`` next to the repo)
and validates every request against them; Alertmanager is Debian's
``prometheus-alertmanager`` binary. Both are installed by ``scripts/install-system-deps.sh``
(run by ``make test`` and CI).

Every server runs in its own process group (``start_new_session=True``) with its output in
a log file, and is stopped by killing the whole group, so no child survives a test run.

The pytest fixtures at the bottom (``prism_servers``, ``alertmanager``) are registered in
``tests/conftest.py``; they fail, never skip, when a tool is not installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

import psutil
import pytest
import yaml

from deployments.local import free_port, stop_process_group  # free_port: tests import it here

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
"""The repository root (the parent of ``tests/``)."""

PRISM_BIN: Path = REPO_ROOT / "node_modules" / ".bin" / "prism"
"""Prism's CLI as installed by ``npm ci``; run directly, never through npx."""

ALERTMANAGER_BIN: Path = Path(
    os.environ.get("JUNCTION_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")
)
"""Debian's Alertmanager binary (override with ``JUNCTION_ALERTMANAGER_BIN``)."""

INSTALL_HINT = (
    "run `make test` or `scripts/install-system-deps.sh` first (CI runs it); "
    "these tests do not skip when a tool is missing"
)

PRISM_SPECS: dict[str, str] = {
    "openai": "openai/openapi.trimmed.yaml",
    "gitlab": "gitlab/openapi_v2.trimmed.yaml",
    "okta": "okta/management.trimmed.yaml",
    "webex": "webex/webex-messaging.trimmed.json",
    "slack": "slack/slack_web_openapi_v2.trimmed.json",
    "github": "github/api.github.com.trimmed.json",
    "pagerduty": "pagerduty/openapiv3.trimmed.json",
    "alertmanager": "alertmanager/openapi.v0.25.0.yaml",
    "jira": "jira/swagger-v3.trimmed.json",
}
"""Service name -> spec path relative to :func:`specs_dir`, one Prism server each."""

PRISM_STARTUP_TIMEOUT_S = 60.0
ALERTMANAGER_STARTUP_TIMEOUT_S = 30.0
_STOP_GRACE_S = 5.0
_POLL_INTERVAL_S = 0.1
_LOG_TAIL_CHARS = 4000
_PORT_RETRIES = 2
_ADDR_IN_USE = ("EADDRINUSE", "address already in use")


_PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` asking Linux to SIGTERM the child when this process dies.

    A safety net for a test run that is killed (SIGTERM/SIGKILL) before its fixtures'
    teardown runs: the servers then go away instead of holding their ports. The signal
    fires when the *thread* that started the server exits, so start servers from the
    main thread (pytest fixtures do). None where ``prctl`` is unavailable.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


_PREEXEC = _parent_death_signal()


class ServerStartError(RuntimeError):
    """A test server did not start or did not answer in time."""


DEFAULT_SPECS_DIRS = (REPO_ROOT.parent / "shared" / "specs", Path("/work/shared/specs"))


def specs_dir() -> Path:
    """Return the vendor specs directory.

    ``$JUNCTION_SPECS_DIR`` if set (a relative value is taken relative to the repo root),
    else the first of :data:`DEFAULT_SPECS_DIRS` that exists: ``../shared/specs`` next to
    the checkout, then the workplace's shared folder (CI may clone the repository
    somewhere else than beside it).
    """
    raw = os.environ.get("JUNCTION_SPECS_DIR")
    if raw:
        path = Path(raw)
        return (path if path.is_absolute() else REPO_ROOT / path).resolve()
    for candidate in DEFAULT_SPECS_DIRS:
        if candidate.is_dir():
            return candidate.resolve()
    return DEFAULT_SPECS_DIRS[0].resolve()


def _tcp_open(host: str, port: int) -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """Return the HTTP status of ``GET path``, or None if no HTTP answer came."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _listens_on(pid: int, port: int) -> bool:
    """Return True if process ``pid`` or one of its children listens on TCP ``port``.

    Guards against a free-port race: another program on the port would otherwise answer
    the readiness probe in place of our server.
    """
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return False
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            return True
    return False


class _ServerProcess:
    """A server subprocess in its own process group, logging to a temp file.

    Subclasses set ``name``, build ``command`` and implement :meth:`_is_ready`.
    Use as a context manager, or call :meth:`start`, :meth:`wait_ready` and :meth:`stop`.
    """

    name: str = "server"

    def __init__(self, port: int | None, startup_timeout: float) -> None:
        self.host = "127.0.0.1"
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:4010`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def workdir(self) -> Path:
        """A private temp directory for this server (log, config, storage)."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix=f"junction-{self.name}-")
        return Path(self._tmpdir.name)

    def command(self) -> list[str]:
        """Return the argv that runs the server."""
        raise NotImplementedError

    def _is_ready(self) -> bool:
        """Return True once the server answers requests."""
        raise NotImplementedError

    def start(self) -> None:
        """Launch the process (does not wait for it to answer)."""
        if self.proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.log_path = self.workdir / f"{self.name}.log"
        self._log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_PREEXEC,  # only calls prctl(2): see _parent_death_signal
        )

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """Return the last ``chars`` characters of the server's output."""
        if self.log_path is None or not self.log_path.exists():
            return "(no output captured)"
        data = self.log_path.read_bytes()[-chars:]
        return data.decode("utf-8", errors="replace") or "(no output)"

    def wait_ready(self) -> None:
        """Block until the server answers; raise :class:`ServerStartError` on timeout/exit."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} not started")
        deadline = time.monotonic() + self.startup_timeout
        retries = _PORT_RETRIES if self._auto_port else 0
        while True:
            code = self.proc.poll()
            if code is not None:
                tail = self.log_tail()
                if retries > 0 and any(marker in tail for marker in _ADDR_IN_USE):
                    # Lost a free-port race: try again on another port.
                    retries -= 1
                    self._restart_on_new_port()
                    continue
                raise ServerStartError(
                    f"{self.describe()} exited with code {code} before answering.\n"
                    f"--- output ({self.log_path}) ---\n{tail}"
                )
            if (
                _tcp_open(self.host, self.port)
                and _listens_on(self.proc.pid, self.port)
                and self._is_ready()
            ):
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.describe()} did not answer within {self.startup_timeout:.0f} s.\n"
                    f"--- output ({self.log_path}) ---\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _restart_on_new_port(self) -> None:
        """Relaunch the (exited) process on a fresh port."""
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.proc = None
        self.port = free_port()
        self.start()

    def describe(self) -> str:
        """One-line description for error messages."""
        return f"{self.name} on {self.url}"

    def stop(self) -> None:
        """Kill the whole process group (SIGTERM, then SIGKILL) and clean up. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, signal.SIGTERM, _STOP_GRACE_S)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PrismServer(_ServerProcess):
    """``prism mock <spec> --errors`` on 127.0.0.1, for one vendor spec.

    ``spec_relpath`` is relative to :func:`specs_dir` (or absolute). With ``--errors``
    Prism rejects requests that break the spec (400/401/404/405/406/415/422) instead of
    answering with an example anyway.

    Note: for Swagger 2.0 specs Prism ignores ``basePath`` (Alertmanager answers ``/status``,
    Slack ``/api.test``); for OpenAPI 3 specs it ignores the path of ``servers[].url``.
    """

    name = "prism"

    def __init__(
        self,
        spec_relpath: str,
        port: int | None = None,
        *,
        startup_timeout: float = PRISM_STARTUP_TIMEOUT_S,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(port, startup_timeout)
        self.spec_relpath = spec_relpath
        self.spec_path = (specs_dir() / spec_relpath).resolve()
        self.extra_args = list(extra_args)

    def command(self) -> list[str]:
        """Return the Prism argv (the binary itself, not npx)."""
        return [
            str(PRISM_BIN),
            "mock",
            str(self.spec_path),
            "--errors",
            "-h",
            self.host,
            "-p",
            str(self.port),
            *self.extra_args,
        ]

    def start(self) -> None:
        """Check the binary and the spec exist, then launch Prism."""
        if not PRISM_BIN.exists():
            raise ServerStartError(f"Prism is not installed at {PRISM_BIN}: {INSTALL_HINT}")
        if not self.spec_path.is_file():
            raise ServerStartError(
                f"spec {self.spec_path} not found (JUNCTION_SPECS_DIR={specs_dir()})"
            )
        super().start()

    def _is_ready(self) -> bool:
        # Any HTTP answer (usually 404 for "/") means Prism has loaded the spec and serves.
        return _http_status(self.host, self.port, "/") is not None

    def describe(self) -> str:
        """One-line description for error messages."""
        return f"prism mock {self.spec_relpath} on {self.url}"


def start_prism_servers(
    specs: Sequence[str] | Mapping[str, str],
) -> dict[str, PrismServer]:
    """Start one Prism per spec, all at once, and wait until every one answers.

    ``specs`` is a list of spec paths (the result is keyed by spec path) or a mapping
    ``{key: spec path}`` (keyed by ``key``). The caller must ``stop()`` each server
    (see :func:`stop_servers` / :func:`running_prism_servers`). If any fails to start,
    all are stopped and :class:`ServerStartError` is raised.
    """
    items = list(specs.items()) if isinstance(specs, Mapping) else [(s, s) for s in specs]
    servers: dict[str, PrismServer] = {}
    ports: set[int] = set()
    try:
        for key, relpath in items:
            server = PrismServer(relpath)  # auto port: retried if another program takes it
            while server.port in ports:  # the OS may hand out the same free port twice
                server.port = free_port()
            ports.add(server.port)
            servers[key] = server
            server.start()
        # They boot concurrently; waiting for each in turn costs only the slowest.
        for server in servers.values():
            server.wait_ready()
    except BaseException:
        stop_servers(servers.values())
        raise
    return servers


def stop_servers(servers: Iterable[_ServerProcess]) -> None:
    """Stop every server in ``servers``; servers not started (or already stopped) are fine."""
    for server in servers:
        server.stop()


@contextlib.contextmanager
def running_prism_servers(
    specs: Sequence[str] | Mapping[str, str],
) -> Iterator[dict[str, PrismServer]]:
    """Context manager around :func:`start_prism_servers` that stops them all on exit."""
    servers = start_prism_servers(specs)
    try:
        yield servers
    finally:
        stop_servers(servers.values())


class AlertmanagerServer(_ServerProcess):
    """A real Prometheus Alertmanager on 127.0.0.1 with a minimal config.

    One receiver, ``junction-test``: a webhook to ``webhook_url`` if given, else a null
    receiver (no notifications). Alerts are grouped by ``alertname`` and sent at once
    (group_wait 0s, group_interval 1s, repeat_interval 1h). Clustering is disabled.
    """

    name = "alertmanager"
    RECEIVER = "junction-test"

    def __init__(
        self,
        webhook_url: str | None = None,
        port: int | None = None,
        *,
        startup_timeout: float = ALERTMANAGER_STARTUP_TIMEOUT_S,
    ) -> None:
        super().__init__(port, startup_timeout)
        self.webhook_url = webhook_url

    @property
    def api_url(self) -> str:
        """Base URL of the v2 API, e.g. ``http://127.0.0.1:9093/api/v2``."""
        return f"{self.url}/api/v2"

    @property
    def config_path(self) -> Path:
        """Where the generated config file is written."""
        return self.workdir / "alertmanager.yml"

    def config_text(self) -> str:
        """Return the Alertmanager YAML config."""
        receiver: dict[str, object] = {"name": self.RECEIVER}
        if self.webhook_url:
            receiver["webhook_configs"] = [{"url": self.webhook_url, "send_resolved": True}]
        config = {
            "route": {
                "receiver": self.RECEIVER,
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [receiver],
        }
        return yaml.safe_dump(config, sort_keys=False)

    def command(self) -> list[str]:
        """Return the Alertmanager argv."""
        return [
            str(ALERTMANAGER_BIN),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
        ]

    def start(self) -> None:
        """Check the binary, write the config, launch Alertmanager."""
        if not (ALERTMANAGER_BIN.exists() or shutil.which(str(ALERTMANAGER_BIN))):
            raise ServerStartError(
                f"Alertmanager is not installed at {ALERTMANAGER_BIN}: {INSTALL_HINT}"
            )
        self.config_path.write_text(self.config_text())
        (self.workdir / "data").mkdir(exist_ok=True)
        super().start()

    def _is_ready(self) -> bool:
        return _http_status(self.host, self.port, "/api/v2/status") == 200


# --------------------------------------------------------------------------- fixtures
# Registered in tests/conftest.py by importing them.


def _fail_if_missing(path: Path, what: str) -> None:
    """Fail the test (never skip) when a required tool is not installed."""
    if not path.exists():
        pytest.fail(f"{what} is not installed ({path} missing): {INSTALL_HINT}", pytrace=False)


_T = TypeVar("_T")


def _start_or_fail(start: Callable[[], _T]) -> _T:
    """Run ``start`` and turn a :class:`ServerStartError` into a test failure."""
    try:
        return start()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def prism_servers() -> Iterator[dict[str, str]]:
    """Start a Prism mock for every spec in :data:`PRISM_SPECS`; yield ``{service: url}``.

    The URL has no path: Prism serves each spec's paths at the root (see PrismServer).
    """
    _fail_if_missing(PRISM_BIN, "Prism")
    servers: dict[str, PrismServer] = {}
    try:
        servers = _start_or_fail(lambda: start_prism_servers(PRISM_SPECS))
        yield {service: server.url for service, server in servers.items()}
    finally:
        stop_servers(servers.values())


@pytest.fixture(scope="session")
def alertmanager() -> Iterator[AlertmanagerServer]:
    """A real Alertmanager (null receiver) for the session; use ``.url`` / ``.api_url``."""
    _fail_if_missing(ALERTMANAGER_BIN, "prometheus-alertmanager")
    server = AlertmanagerServer()
    _start_or_fail(server.__enter__)
    try:
        yield server
    finally:
        server.stop()
