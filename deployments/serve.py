"""``make serve`` / ``make stop``: Junction on a local Prefect server, left running.

``python -m deployments.serve start`` starts, in the background and in this order: a
Prefect server (its database in ``PREFECT_HOME``, default ``<JUNCTION_HOME>/prefect``, so
deployments and run history survive a restart), the ``junction-process`` work pool with a
concurrency limit, every deployment (``prefect.yaml``'s, one per workflow spec, and one
per monitor shard when ``JUNCTION_MONITOR_SHARDS`` > 1: :mod:`deployments.shards`), a
process worker, and the Junction service (``junction serve``); with ``--sandbox`` first the
built-in sandbox on its default ports. It prints the addresses and returns; each process
runs in its own session with its log beside its pid file in ``<JUNCTION_HOME>/serve/``.
``python -m deployments.serve stop`` stops exactly those processes (a pid is only
signalled while its command line is still the one started: a reused pid is left alone);
``status`` lists them. A start that fails stops what it had started.

Unlike ``python -m deployments.local up`` (a throw-away server in the foreground, for a
try-out), this is the long-running local set-up of one user.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from deployments.automations import deploy_automations
from deployments.blocks import register_blocks
from deployments.local import (
    ROOT,
    WORK_POOL,
    deploy_all,
    deploy_spec_flows,
    ensure_work_pool,
    prefect_executable,
    run_prefect,
    sigint_inheritable,
)
from deployments.shards import run_deploy_shards
from flows.variables import ensure_variables

ORDER = ("sandbox", "prefect-server", "worker", "junction-service")
"""The processes, in start order (stopped in reverse)."""


@dataclass(frozen=True)
class Proc:
    """One background process: where its pid and log are, what its command line holds."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        """``<run_dir>/<name>.pid``: the pid, then the command line started."""
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        """Its stdout and stderr."""
        return self.run_dir / f"{self.name}.log"

    def recorded(self) -> tuple[int, str] | None:
        """The pid and command line written at start, if the pid file is there."""
        try:
            pid_text, command = self.pid_file.read_text().split("\n", 1)
            return int(pid_text), command.strip()
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The pid, while that process still runs the command started (not a reused pid)."""
        found = self.recorded()
        if found is None:
            return None
        pid, command = found
        try:
            actual = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return None
        # A shebang script runs as "<interpreter> <script> args": the recorded line is inside.
        return pid if command and command in actual else None

    def spawn(self, args: Sequence[str], env: dict[str, str], *, sigint: bool = False) -> int:
        """Start ``args`` in its own session, output to the log, and record it."""
        with self.log_file.open("ab") as log:
            context = sigint_inheritable() if sigint else contextlib.nullcontext()
            with context:
                proc = subprocess.Popen(
                    list(args),
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives `make serve`; stopped as a group
                )
        self.pid_file.write_text(f"{proc.pid}\n{' '.join(args)}\n")
        return proc.pid

    def stop(self, grace: float = 20.0) -> bool:
        """Stop the process group (SIGINT for the worker, SIGTERM else, SIGKILL after
        ``grace`` seconds); False if it was not running. The pid file is removed."""
        pid = self.running_pid()
        if pid is not None:
            first = signal.SIGINT if self.name == "worker" else signal.SIGTERM
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, first)
            deadline = time.monotonic() + grace
            while self.running_pid() is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None


def _wait_http(proc: Proc, url: str, ok: Callable[[httpx.Response], bool], timeout: float) -> None:
    """Wait until ``url`` answers ``ok`` while ``proc`` runs.

    Raises:
        RuntimeError: The process ended or the wait timed out (names its log).
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.running_pid() is None:
                raise RuntimeError(f"{proc.name} exited; see {proc.log_file}")
            with contextlib.suppress(httpx.HTTPError):
                if ok(client.get(url)):
                    return
            time.sleep(0.5)
    raise RuntimeError(
        f"{proc.name} not answering {url} after {timeout:.0f} s; see {proc.log_file}"
    )


@dataclass(frozen=True)
class Options:
    """What ``start`` starts, and where."""

    home: Path
    prefect_port: int = 4200
    service_port: int = 8766
    pool: str = WORK_POOL
    pool_limit: int = 4
    sandbox: bool = False
    startup_timeout: float = 300.0


def procs(home: Path) -> dict[str, Proc]:
    """The processes of the set-up under ``home``, by name."""
    return {name: Proc(name, home / "serve") for name in ORDER}


def start(opts: Options) -> dict[str, str]:
    """Start everything (see the module docstring); returns the addresses by name.

    Raises:
        RuntimeError: Something is running already, or a step failed (everything started
            is stopped again).
    """
    running = [p.name for p in procs(opts.home).values() if p.running_pid() is not None]
    if running:
        raise RuntimeError(f"already running: {', '.join(running)} (make stop first)")
    run_dir = opts.home / "serve"
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    prefect_url = f"http://127.0.0.1:{opts.prefect_port}"
    env = dict(os.environ)
    env.update(
        JUNCTION_HOME=str(opts.home),
        PREFECT_HOME=os.environ.get("PREFECT_HOME") or str(opts.home / "prefect"),
        PREFECT_API_URL=f"{prefect_url}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    p = procs(opts.home)
    py = sys.executable
    try:
        if opts.sandbox:
            p["sandbox"].spawn([py, "-m", "junction", "sandbox", "serve"], env)
            sandbox_url = env.get("JUNCTION_SANDBOX_URL", "http://127.0.0.1:8765")
            _wait_http(p["sandbox"], sandbox_url, lambda r: r.status_code < 500, 120)
        server_args = ["server", "start", "--host", "127.0.0.1", "--port", str(opts.prefect_port)]
        p["prefect-server"].spawn([str(prefect_executable()), *server_args], env)
        _wait_http(
            p["prefect-server"],
            f"{prefect_url}/api/health",
            lambda r: r.status_code == 200 and r.json() is True,
            opts.startup_timeout,
        )
        ensure_work_pool(opts.pool, env=env)
        # At most this many flow runs at once on the pool, whatever is scheduled.
        run_prefect(
            ["work-pool", "set-concurrency-limit", opts.pool, str(opts.pool_limit)], env=env
        )
        deploy_all(env=env)
        deploy_spec_flows(env=env, pool=opts.pool)
        run_deploy_shards(env, opts.pool)  # JUNCTION_MONITOR_SHARDS > 1: one per shard
        register_blocks(env["PREFECT_API_URL"])  # credential block types for the UI
        ensure_variables(env["PREFECT_API_URL"])  # non-secret settings, editable in the UI
        deploy_automations(env=env)  # deployments/automations.py: after the deployments
        worker_args = [str(prefect_executable()), "worker", "start", "--pool", opts.pool]
        p["worker"].spawn(worker_args, env, sigint=True)
        service_url = f"http://127.0.0.1:{opts.service_port}"
        service_args = [py, "-m", "junction", "serve", "--port", str(opts.service_port)]
        p["junction-service"].spawn(service_args, env)
        _wait_http(
            p["junction-service"],
            f"{service_url}/api/v2/status",
            lambda r: r.status_code == 200,
            opts.startup_timeout,
        )
    except BaseException:
        stop(opts.home)
        raise
    return {
        "Prefect UI": prefect_url,
        "Junction dashboard": f"{service_url}/",
        "Junction API docs": f"{service_url}/docs",
        "Public status page": f"{service_url}/status",
        "logs and pids": str(run_dir),
    }


def stop(home: Path) -> list[str]:
    """Stop what :func:`start` started under ``home`` (reverse order); the names stopped."""
    return [p.name for p in reversed(procs(home).values()) if p.stop()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deployments.serve start|stop|status``."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.serve",
        description="Junction on a local Prefect server in the background (make serve / "
        "make stop): server, work pool, deployments, worker, service.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("start", help="start everything and print the addresses")
    up.add_argument("--prefect-port", type=int, default=4200)
    up.add_argument("--port", type=int, default=None, help="service port (JUNCTION_SERVE_PORT)")
    up.add_argument("--pool", default=WORK_POOL)
    up.add_argument("--pool-limit", type=int, default=4, help="flow runs at once on the pool")
    up.add_argument("--sandbox", action="store_true", help="also run the built-in sandbox")
    sub.add_parser("stop", help="stop what start started")
    sub.add_parser("status", help="list the processes and whether they run")
    args = parser.parse_args(argv)

    from junction.settings import get_settings  # function-level: pydantic-settings

    settings = get_settings()
    home = settings.home
    if args.command == "stop":
        stopped = stop(home)
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    if args.command == "status":
        for proc in procs(home).values():
            pid = proc.running_pid()
            print(f"{proc.name}: {'running, pid ' + str(pid) if pid else 'not running'}")
        return 0
    opts = Options(
        home=home,
        prefect_port=args.prefect_port,
        service_port=settings.serve_port if args.port is None else args.port,
        pool=args.pool,
        pool_limit=args.pool_limit,
        sandbox=args.sandbox,
    )
    try:
        addresses = start(opts)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    width = max(len(k) for k in addresses)
    for name, address in addresses.items():
        print(f"{name:<{width}}  {address}")
    print("stop with: make stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
