"""Junction's sandbox: one local server that plays every catalog integration, with state
and scriptable faults. This module builds it and runs it.

* :func:`build_app`: the ASGI app (:class:`integrations.sandbox.asgi.SandboxApp`).
* :class:`SandboxServer`: the app and the SMTP server (:mod:`integrations.sandbox.smtp`)
  on a background thread, for tests (``with SandboxServer() as sb: sb.url``).
* :func:`serve`: the same in the foreground, for ``junction sandbox serve``.

The parts: per-service mounts and vendor modules (:mod:`~integrations.sandbox.routing`,
``vendors/``), auth (:mod:`~integrations.sandbox.auth`), faults
(:mod:`~integrations.sandbox.profile`, :mod:`~integrations.sandbox.faults`), health and
error bodies (``services.yaml``), rate-limit headers
(:mod:`~integrations.sandbox.ratelimit`), state and the request log
(:mod:`~integrations.sandbox.state`), the admin API and its guard
(:mod:`~integrations.sandbox.admin`), seeded records
(:mod:`~integrations.sandbox.records`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import uvicorn

from integrations.sandbox.admin import exposure_warning
from integrations.sandbox.asgi import SandboxApp
from integrations.sandbox.faults import FaultController
from integrations.sandbox.profile import FaultProfile, load_profile
from integrations.sandbox.smtp import start_smtp_server
from integrations.sandbox.state import RequestLog, StateRegistry

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SMTP_PORT",
    "SandboxServer",
    "build_app",
    "load_profile",
    "serve",
]

log = logging.getLogger("integrations.sandbox")

DEFAULT_PORT = 8765
DEFAULT_SMTP_PORT = 8025


def build_app(
    profile: FaultProfile | None = None,
    *,
    bind_host: str = "127.0.0.1",
    admin_token: str | None = None,
) -> SandboxApp:
    """Build the sandbox ASGI app (a :class:`~starlette.applications.Starlette`).

    Args:
        profile: Initial fault profile (default: no faults).
        bind_host: The interface it will listen on (checked against the admin API's
            ``Host`` header).
        admin_token: Require ``Authorization: Bearer <token>`` on the admin API.
    """
    return SandboxApp(profile, bind_host=bind_host, admin_token=admin_token)


# --- running it ---------------------------------------------------------------------------


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop and httptools are optional third-party speed-ups (uvicorn's "standard" extra):
    # without them the sandbox runs on asyncio's loop and h11, only slower.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - in the lock file
        return None
    return uvloop.new_event_loop


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401  (optional third-party, see _loop_factory)
    except ImportError:  # pragma: no cover - in the lock file
        return "h11"
    return "httptools"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class SandboxServer:
    """The sandbox on a background thread with its own event loop (uvloop + httptools).

    Use as a context manager::

        with SandboxServer() as sb:
            settings = Settings(sandbox_url=sb.url, sandbox_smtp_port=sb.smtp_port)
            sb.faults.set("okta", error_rate=1.0)
            ...

    Args:
        host: Interface to listen on.
        port: HTTP port (0 = a free port).
        profile: Initial fault profile (default: no faults).
        smtp_port: SMTP port (0 = a free port, ``None`` = no SMTP server).
        admin_token: Require ``Authorization: Bearer <token>`` on the admin API.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        profile: FaultProfile | None = None,
        smtp_port: int | None = 0,
        *,
        admin_token: str | None = None,
    ) -> None:
        self.host = host
        self.app = build_app(profile, bind_host=host, admin_token=admin_token)
        self._requested_port = port
        self._requested_smtp = smtp_port
        self._sock: socket.socket | None = None
        self._port = 0
        self._smtp_port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- what tests use

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>`` (pass it as ``Settings.sandbox_url``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The HTTP port."""
        return self._port

    @property
    def smtp_port(self) -> int | None:
        """The SMTP port (``None`` without an SMTP server)."""
        return self._smtp_port

    @property
    def state(self) -> StateRegistry:
        """The in-process state registry (``sb.state.get("okta").collection("users")``)."""
        return self.app.registry

    @property
    def faults(self) -> FaultController:
        """The live fault configuration (``sb.faults.set("okta", error_rate=1.0)``)."""
        return self.app.faults

    @property
    def request_log(self) -> RequestLog:
        """Request and fault counters (same data as ``GET /_admin/requests``)."""
        return self.app.request_log

    def requests(self, service: str | None = None) -> dict[str, Any]:
        """The request-log summary (as ``GET /_admin/requests?service=...``)."""
        return self.app.request_log.summary(service)

    def reset(self, *, keep_faults: bool = False) -> None:
        """Forget state, tokens, the request log, and faults unless ``keep_faults``."""
        self.app.reset(keep_faults=keep_faults)

    # -- lifecycle

    def start(self, timeout: float = 15.0) -> Self:
        """Start serving and wait until the sockets accept connections.

        Raises:
            RuntimeError: The server did not come up (with the reason).
        """
        warning = exposure_warning(self.host, self.app.admin_guard.token_required)
        if warning is not None:
            log.warning("%s", warning)
        self._sock = _bind(self.host, self._requested_port)
        self._port = self._sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._thread_main, name="junction-sandbox", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"sandbox did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving (hung requests are released) and join the thread."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.app.begin_shutdown)
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("sandbox thread did not stop within %.0fs", timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self, on_ready: Callable[[], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.app._closing = asyncio.Event()
        smtp_server: asyncio.Server | None = None
        if self._requested_smtp is not None:
            smtp_server = await start_smtp_server(
                self.app.registry,
                self.app.faults,
                self.app.request_log,
                self.host,
                self._requested_smtp,
            )
            self._smtp_port = smtp_server.sockets[0].getsockname()[1]
            self.app.smtp_port = self._smtp_port
        config = uvicorn.Config(
            self.app,
            http=_http_impl(),
            loop="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            backlog=4096,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        self._server = server
        assert self._sock is not None
        task = asyncio.create_task(server.serve(sockets=[self._sock]))
        try:
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            if not server.started:
                await task
                raise RuntimeError("uvicorn exited during startup")
            if on_ready is not None:
                on_ready()
            self._ready.set()
            await task
        finally:
            if smtp_server is not None:
                smtp_server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(smtp_server.wait_closed(), 2)

    def run_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM."""
        self._sock = _bind(self.host, self._requested_port)
        self._port = self._sock.getsockname()[1]
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._main(on_ready))
        finally:
            self._sock.close()
            self._sock = None


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    faults_file: str | Path | None = None,
    smtp_port: int | None = DEFAULT_SMTP_PORT,
    *,
    admin_token: str | None = None,
) -> None:
    """Run the sandbox in the foreground (``junction sandbox serve``) until Ctrl-C.

    Args:
        host: Interface to listen on (beyond loopback, a warning says who can reach the
            admin API).
        port: HTTP port (0 = a free one).
        faults_file: A fault profile YAML, or the name of a packaged one (``flaky``);
            default: the packaged ``default.yaml`` (small realistic latencies, no errors).
        smtp_port: SMTP port (0 = a free one, ``None`` = no SMTP server).
        admin_token: Require ``Authorization: Bearer <token>`` on the admin API.

    Raises:
        integrations.yamlconfig.ConfigError: The profile is invalid (each problem as
            ``file:line: field: problem``).
        OSError: A port is taken (the message names host and ports).
    """
    profile, source = load_profile(faults_file)
    server = SandboxServer(host, port, profile, smtp_port, admin_token=admin_token)
    warning = exposure_warning(host, admin_token is not None)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr, flush=True)

    def ready() -> None:
        smtp = f", SMTP on {host}:{server.smtp_port}" if server.smtp_port else ""
        print(
            f"Junction sandbox listening on {server.url}{smtp}\n"
            f"  {len(server.app.mounts)} HTTP services at {server.url}/<name>, admin API at "
            f"{server.url}/_admin, fault profile {source}\n"
            f"  point Junction at it with JUNCTION_SANDBOX_URL={server.url}"
            + (f" JUNCTION_SANDBOX_SMTP_PORT={server.smtp_port}" if server.smtp_port else "")
            + "\n  seeded records (e.g. Workday worker ids for worker_id): "
            "junction sandbox records workday",
            flush=True,
        )

    try:
        server.run_forever(on_ready=ready)
    except OSError as exc:  # port taken, or no such interface: say which
        smtp = f" / SMTP port {smtp_port}" if smtp_port is not None else ""
        raise OSError(
            exc.errno, f"sandbox cannot listen on {host}:{port}{smtp}: {exc.strerror or exc}"
        ) from None
