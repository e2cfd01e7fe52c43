"""The service under test: the real app in a real uvicorn server, on a free loopback port.

``api_server`` (session fixture, registered in ``tests/conftest.py``) serves
:func:`junction.service.app.create_app` against a temporary ``JUNCTION_HOME`` and the session
sandbox, with a token; tests call it over HTTP with httpx. ``ServiceServer`` runs other
configurations (a monitor, another body limit) for one test.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import pytest

if TYPE_CHECKING:  # conftest imports this module: heavy imports only when a test serves
    import httpx
    from fastapi import FastAPI

    from integrations.sandbox.app import SandboxServer
    from junction.settings import Settings


@dataclass(frozen=True)
class ApiServer:
    """A running service: where it answers, its token, its settings."""

    url: str
    token: str
    settings: Settings

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>``."""
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, *, auth: bool = True, **kwargs: Any) -> httpx.Client:
        """An httpx client of the service (with the token unless ``auth=False``)."""
        import httpx

        headers = self.headers if auth else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    def __iter__(self) -> Iterator[str]:
        # `base_url, token = api_server` (the shape the service contract names).
        return iter((self.url, self.token))


def service_settings(home: Path, sandbox: SandboxServer, **overrides: Any) -> Settings:
    """Settings of a service under test: its own home, the sandbox, a fresh token."""
    from junction.settings import Settings

    values: dict[str, Any] = {
        "home": home,
        "sandbox_url": sandbox.url,
        "sandbox_smtp_port": sandbox.smtp_port or 8025,
        "api_token": secrets.token_urlsafe(24),
        # Many tests send wrong tokens to one session server from one address; the
        # throttle itself is tested with its default (test_service_throttle.py).
        "api_auth_max_failures": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


class ServiceServer:
    """The service's app in uvicorn on a background thread (its own event loop).

    Args:
        settings: The app's settings.
        monitor: Run the monitor loop in the app (``create_app(monitor=True)``).
        app: An app built by the test from ``create_app(settings)`` (extra routes).
    """

    def __init__(
        self, settings: Settings, *, monitor: bool = False, app: FastAPI | None = None
    ) -> None:
        # Function-level: FastAPI and uvicorn only for the tests that serve the app.
        from junction.service.app import create_app

        self.settings = settings
        self.app = app if app is not None else create_app(settings, monitor=monitor)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._sock is not None
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def info(self) -> ApiServer:
        """Its :class:`ApiServer` (url, token, settings)."""
        token = self.settings.api_token
        return ApiServer(self.url, token.get_secret_value() if token else "", self.settings)

    def start(self, timeout: float = 60.0) -> Self:
        """Serve and wait until start-up (the app's lifespan included) is done."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._main, name="junction-service", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"service did not start: {self._error!r}")
        return self

    def _main(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=5
        )
        self._server = server = uvicorn.Server(config)

        async def serve() -> None:
            assert self._sock is not None
            task = asyncio.create_task(server.serve(sockets=[self._sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            if not server.started:
                await task
                raise RuntimeError("uvicorn exited during start-up")
            self._ready.set()
            await task

        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down (the app's lifespan: the monitor stops, the store is closed)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
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


@pytest.fixture(scope="session")
def api_server(
    sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """The service for the session: a token, a temporary home, the session sandbox."""
    settings = service_settings(tmp_path_factory.mktemp("service-home"), sandbox)
    with ServiceServer(settings) as server:
        yield server.info()
