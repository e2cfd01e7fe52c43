"""``junction serve``: the service (the API; with ``--monitor`` the monitor loop too).

Binds loopback unless told otherwise; beyond loopback it requires JUNCTION_API_TOKEN.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated

import typer

from junction.cli.common import console, fail, prepare_runtime, warn

if TYPE_CHECKING:
    from junction.settings import Settings


def register(app: typer.Typer) -> None:
    """Add ``junction serve`` to the top-level app."""
    app.command("serve")(serve)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a taken port or bad address is one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"--host {host}: cannot resolve it ({exc.strerror})")
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(True)
    return sock


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            metavar="HOST", help="Interface to listen on (default JUNCTION_SERVE_HOST, 127.0.0.1)."
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT", help="Port (default JUNCTION_SERVE_PORT, 8766; 0 = any free port)."
        ),
    ] = None,
    monitor: Annotated[
        bool, typer.Option("--monitor", help="Also run the monitor loop in this process.")
    ] = False,
) -> None:
    """Serve Junction's API (/api/v2, /metrics, OpenAPI at /docs) until Ctrl-C.

    Every write and internal read needs JUNCTION_API_TOKEN as a bearer token; without a
    token configured the service refuses any address but loopback.
    """
    settings = prepare_runtime()
    host = host or settings.serve_host
    port = settings.serve_port if port is None else port
    if not 0 <= port < 65536:
        fail(f"--port {port}: not a port number (0-65535)")
    # Function-level: integrations.urls imports httpx (~200 ms), which `junction --help`
    # should not pay.
    from integrations.urls import is_loopback

    if settings.api_token is None and not is_loopback(host):
        fail(
            f"--host {host}: refusing to serve beyond loopback without a token; "
            "set JUNCTION_API_TOKEN (clients send it as `Authorization: Bearer <token>`)"
        )
    sock = _listen(host, port)  # before the slow imports: a taken port fails at once
    # Function-level: FastAPI, uvicorn and the service's imports (pandas, DuckDB through
    # the store) are not needed for `junction --help`.
    import uvicorn

    from junction.service.app import create_app
    from junction.service.web import vendor_warning

    if (note := vendor_warning(settings)) is not None:
        warn(note)
    if monitor and (note := _delivery_warning(settings)) is not None:
        warn(note)  # alerts only recorded: say so once
    bound = sock.getsockname()[1]
    app = create_app(settings, monitor=monitor)
    config = uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=10)
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"serving Junction on http://{shown}:{bound} (API docs at /docs"
        f"{', monitor running' if monitor else ''}; Ctrl-C to stop)",
        highlight=False,
        soft_wrap=True,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _delivery_warning(settings: Settings) -> str | None:
    """The no-channel warning of the alerting configuration (None if it is invalid: the
    monitor reports that itself)."""
    # Function-level: the alerting modules are not needed for `junction --help`.
    from junction.alerting.config import AlertConfigError, load_settings_config
    from junction.alerting.rules import delivery_warning

    try:
        return delivery_warning(load_settings_config(settings))
    except AlertConfigError:
        return None
