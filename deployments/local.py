"""Deploy Junction's flows to a Prefect server and run a worker, from Python or a shell.

Deploying Junction to a real Prefect server (self-hosted ``prefect server start`` or
Prefect Cloud), from the repository root, with the project's venv active::

    prefect config set PREFECT_API_URL=http://<server>:4200/api   # or `prefect cloud login`
    prefect work-pool create junction-process --type process      # once per server
    prefect deploy --all --no-prompt                              # every prefect.yaml entry
    prefect worker start --pool junction-process                  # on the machine that runs flows

or the same through this module (``python -m deployments.local deploy`` creates the pool
if it is missing and deploys; ``python -m deployments.local worker`` runs the worker until
Ctrl-C). Besides ``prefect.yaml``'s entries, every workflow spec (built-in, and the user's
spec folder) is a typed deployment of its own, generated from the spec by
``python -m deployments.specs`` (:mod:`deployments.specs`; ``deploy`` and ``up`` run it):
run it again after adding or changing a spec.

The worker's machine needs this checkout at the same absolute path as the machine
that deployed it (the deployment's pull step ``set_working_directory`` stores that path),
the venv, and Junction's environment (``JUNCTION_HOME``, the integrations' credentials or
``JUNCTION_SANDBOX_URL`` / ``JUNCTION_SANDBOX_SMTP_PORT``): the process worker passes its
own environment to every flow run, each in a new Python process.

``python -m deployments.local up [--sandbox]`` does everything on this machine: a local
Prefect server (throw-away ``PREFECT_HOME`` unless ``--home``), the work pool, the
deployments and a worker, plus the Junction sandbox with ``--sandbox``; Ctrl-C stops it all.

Pitfalls this module works around:

* ``{{ $PWD }}`` in ``prefect.yaml``'s pull step is resolved by ``prefect deploy``
  (deploy time) from the ``PWD`` *environment variable*, not from the process's working
  directory. Shells keep ``PWD`` right; a program that starts ``prefect deploy`` with
  ``cwd=`` does not, so :func:`deploy_all` sets ``PWD`` itself.
* The worker is stopped with SIGINT (Ctrl-C); it did not stop on SIGTERM while runs were
  queued. A worker started by a process that ignores SIGINT (a background job of a
  non-interactive shell, nohup) ignores it too, whatever Prefect's handler says:
  :class:`Worker` starts it with SIGINT deliverable, and kills it after a grace period.

Nothing here imports Prefect: every action is the ``prefect`` CLI of this venv, so the
helpers are cheap to import and behave exactly like the documented shell commands.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from deployments.automations import deploy_automations

ROOT = Path(__file__).resolve().parents[1]
"""Repository root (holds ``prefect.yaml``)."""

WORK_POOL = "junction-process"
"""The process work pool every deployment in ``prefect.yaml`` uses."""


def prefect_executable() -> Path:
    """The ``prefect`` CLI installed next to this interpreter (same venv)."""
    return Path(sys.executable).parent / "prefect"


def _environ(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(os.environ if env is None else env)


def run_prefect(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``prefect <args>`` of this venv and capture its output.

    Args:
        args: CLI arguments after ``prefect``.
        env: Full environment of the command (default: this process's).
        cwd: Working directory (default: the repository root).
        timeout: Seconds before the command is killed.
        check: Raise :class:`RuntimeError` (with the output) on a non-zero exit.

    Returns:
        The completed process (text stdout/stderr).
    """
    full_env = _environ(env)
    # Wide, colourless output: Rich wraps and styles it otherwise, which breaks parsing.
    full_env.setdefault("COLUMNS", "200")
    full_env.setdefault("NO_COLOR", "1")
    result = subprocess.run(
        [str(prefect_executable()), *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"`prefect {' '.join(args)}` exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def ensure_work_pool(
    name: str = WORK_POOL, *, env: Mapping[str, str] | None = None, pool_type: str = "process"
) -> bool:
    """Create the work pool if it does not exist yet (idempotent).

    Args:
        name: Work pool name.
        env: Environment of the CLI calls (``PREFECT_API_URL`` picks the server).
        pool_type: Worker type of a pool created here.

    Returns:
        True if this call created the pool, False if it already existed.
    """
    if run_prefect(["work-pool", "inspect", name], env=env, check=False).returncode == 0:
        return False
    created = run_prefect(["work-pool", "create", name, "--type", pool_type], env=env, check=False)
    if created.returncode == 0:
        return True
    # Someone else may have created it in between: fine if it exists now.
    run_prefect(["work-pool", "inspect", name], env=env)
    return False


def deploy_all(
    *, env: Mapping[str, str] | None = None, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """``prefect deploy --all --no-prompt`` from the repository root.

    Args:
        env: Environment of the command (``PREFECT_API_URL`` picks the server).
        timeout: Seconds before the command is killed.

    Returns:
        The completed ``prefect deploy`` process.

    Raises:
        RuntimeError: The deploy failed (message holds its output).
    """
    full_env = _environ(env)
    # prefect.yaml's pull step is `directory: "{{ $PWD }}"`, which `prefect deploy` fills in
    # from the PWD variable; subprocess's cwd= does not update it, so set it explicitly.
    full_env["PWD"] = str(ROOT)
    return run_prefect(["deploy", "--all", "--no-prompt"], env=full_env, cwd=ROOT, timeout=timeout)


def deploy_spec_flows(
    *, env: Mapping[str, str] | None = None, pool: str = WORK_POOL, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """``python -m deployments.specs``: every workflow spec as a typed deployment.

    Args:
        env: Environment of the command (``PREFECT_API_URL`` picks the server,
            ``JUNCTION_HOME`` / ``JUNCTION_ANALYTICS_SPEC_DIR`` the user's spec folder).
        pool: Work pool of the deployments.
        timeout: Seconds before the command is killed.

    Returns:
        The completed process (its output lists the deployments).

    Raises:
        RuntimeError: The deploy failed (message holds its output).
    """
    args = [sys.executable, "-m", "deployments.specs", "--pool", pool]
    result = subprocess.run(
        args, cwd=ROOT, env=_environ(env), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`python -m deployments.specs` exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def sigint_inheritable() -> Iterator[None]:
    """Let a child started inside this block take SIGINT, even if this process ignores it.

    A process started in the background by a non-interactive shell (``cmd &``, some CI
    runners, nohup) ignores SIGINT, and an ignored signal stays ignored across exec: the
    worker would then ignore the SIGINT that stops it (Prefect's handler re-raises the
    signal with the handler it found at start-up). A *handled* signal is reset to the
    default by exec, so install Python's own handler for the duration of the Popen.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_process_group(
    proc: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM, grace: float = 5.0
) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started.

    Sends ``first`` to its process group, waits up to ``grace`` seconds, then SIGKILLs the
    group (stragglers included). Safe to call on a process that has already exited.

    Args:
        proc: The group's leader.
        first: The polite signal (SIGTERM; SIGINT for what handles Ctrl-C).
        grace: Seconds to wait after it.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Kill stragglers too (children that outlive the leader keep ports and files open).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class PrefectServer:
    """A real ``prefect server start`` (SQLite) on a free loopback port.

    Runs in its own process group with its own ``PREFECT_HOME`` (a temporary directory
    unless ``home`` is given), so it never touches the user's profile or database::

        with PrefectServer() as server:
            ensure_work_pool(env=server.env)
            deploy_all(env=server.env)

    Args:
        port: Port to listen on (default: a free one).
        home: ``PREFECT_HOME`` of the server and of :attr:`env` (default: a temporary
            directory, removed on exit).
        scheduler: Run the scheduler service (off: deployments' schedules create no runs).
        ui: Serve the UI (off saves start-up time in tests).
        startup_timeout: Seconds to wait for ``/api/health`` (a fresh SQLite database
            takes ~22 s on 2 idle cores).
        stop_timeout: Seconds between SIGTERM and SIGKILL on exit.
        database_url: ``PREFECT_API_DATABASE_CONNECTION_URL`` (e.g. PostgreSQL's
            ``postgresql+asyncpg://...``, the production backend); default: SQLite in home.
    """

    def __init__(
        self,
        port: int | None = None,
        home: Path | None = None,
        *,
        scheduler: bool = True,
        ui: bool = True,
        startup_timeout: float = 180.0,
        stop_timeout: float = 15.0,
        database_url: str | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.database_url = database_url
        self.port = port or free_port(self.host)
        self._home_arg = home
        self.home = home or Path()
        self.scheduler = scheduler
        self.ui = ui
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._tmp: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL (the UI, when enabled)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``PREFECT_API_URL`` of this server."""
        return f"{self.url}/api"

    @property
    def log_path(self) -> Path:
        """File receiving the server's stdout and stderr."""
        return self.home / "server.log"

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients of this server (CLI calls, workers, flow runs).

        This process's environment without its ``PREFECT_*`` settings (a user's profile,
        API key or URL must not leak in), plus this server's URL and home.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_API_URL=self.api_url,
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        return env

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the server's log."""
        return _tail(self.log_path, lines)

    def __enter__(self) -> Self:
        if self._home_arg is None:
            self._tmp = tempfile.mkdtemp(prefix="junction-prefect-")
            self.home = Path(self._tmp)
        self.home.mkdir(parents=True, exist_ok=True)
        args = [
            str(prefect_executable()), "server", "start",
            "--host", self.host, "--port", str(self.port),
            "--scheduler" if self.scheduler else "--no-scheduler",
            "--ui" if self.ui else "--no-ui",
        ]  # fmt: skip
        self._log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                args,
                cwd=self.home,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole on exit
            )
            self._wait_healthy()
        except BaseException:
            self._stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"prefect server exited {self._proc.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get(f"{self.api_url}/health")
                    if response.status_code == 200 and response.json() is True:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"prefect server not healthy after {self.startup_timeout:.0f} s:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.5)

    def _stop(self) -> None:
        if self._proc is not None:
            stop_process_group(self._proc, signal.SIGTERM, self.stop_timeout)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()


class Worker:
    """``prefect worker start --pool <pool>`` in its own process group.

    Stopped with SIGINT (the worker ignores SIGTERM while runs are queued), then SIGKILL
    after ``grace`` seconds. Every flow run is a new Python process that inherits ``env``.

    Args:
        pool: Work pool to poll.
        env: Full environment of the worker and its flow runs (``PREFECT_API_URL``,
            ``JUNCTION_*``); default: this process's.
        log_path: File receiving the worker's (and its flow runs') output (default: a
            temporary file, kept so a failure can be inspected).
        name: Worker name (default: Prefect picks one).
        grace: Seconds between SIGINT and SIGKILL on exit.
    """

    def __init__(
        self,
        pool: str = WORK_POOL,
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        name: str | None = None,
        grace: float = 30.0,
    ) -> None:
        self.pool = pool
        self.env = _environ(env)
        if log_path is None:
            fd, path = tempfile.mkstemp(prefix="junction-worker-", suffix=".log")
            os.close(fd)
            log_path = Path(path)
        self.log_path = log_path
        self.name = name
        self.grace = grace
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the worker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 80) -> str:
        """The last ``lines`` lines of the worker's log."""
        return _tail(self.log_path, lines)

    def wait(self) -> int:
        """Block until the worker exits (e.g. on Ctrl-C); returns its exit code."""
        assert self._proc is not None, "worker not started"
        return self._proc.wait()

    def __enter__(self) -> Self:
        args = [str(prefect_executable()), "worker", "start", "--pool", self.pool]
        if self.name:
            args += ["--name", self.name]
        self._log = self.log_path.open("ab")
        with sigint_inheritable():
            self._proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in our terminal is ours to forward
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            stop_process_group(self._proc, signal.SIGINT, self.grace)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def _maybe_sandbox(enabled: bool, env: dict[str, str]) -> Iterator[None]:
    """Run the Junction sandbox and point ``env`` at it, if ``enabled``."""
    if not enabled:
        yield
        return
    from integrations.sandbox.app import SandboxServer  # heavy: only when asked for

    with SandboxServer(port=0, smtp_port=0) as sandbox:
        env["JUNCTION_SANDBOX_URL"] = sandbox.url
        env["JUNCTION_SANDBOX_SMTP_PORT"] = str(sandbox.smtp_port)
        print(f"sandbox at {sandbox.url} (SMTP port {sandbox.smtp_port})")
        yield


def _run_worker_until_interrupted(env: Mapping[str, str], pool: str) -> int:
    with Worker(pool, env=env) as worker:
        print(f"worker polling {pool!r}; log: {worker.log_path}; Ctrl-C to stop")
        try:
            return worker.wait()
        except KeyboardInterrupt:
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deployments.local up|deploy|worker`` (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.local",
        description="Deploy Junction's flows (prefect.yaml) to a Prefect server and run a "
        "process worker. `up` does it all on this machine with a local server.",
        epilog="Details and pitfalls: the docstring of deployments/local.py and README.md.",
    )
    parser.add_argument("--pool", default=WORK_POOL, help="work pool name")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="local server + work pool + deployments + worker")
    up.add_argument("--port", type=int, default=4200, help="server port (0: a free one)")
    up.add_argument("--home", type=Path, default=None, help="PREFECT_HOME (default: temporary)")
    up.add_argument("--sandbox", action="store_true", help="also run the Junction sandbox")
    sub.add_parser(
        "deploy", help="create the work pool if missing, deploy prefect.yaml and every spec"
    )
    sub.add_parser("worker", help="run a worker on the pool until Ctrl-C")
    args = parser.parse_args(argv)
    # Treat SIGTERM like Ctrl-C so the context managers stop the server and the worker:
    # they run in their own process groups and would outlive us otherwise.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    try:
        if args.command == "deploy":
            created = ensure_work_pool(args.pool)
            print(f"work pool {args.pool!r} {'created' if created else 'exists'}")
            print(deploy_all().stdout)
            print(deploy_spec_flows(pool=args.pool).stdout)
            print(deploy_automations().stdout)
            return 0
        if args.command == "worker":
            return _run_worker_until_interrupted(os.environ, args.pool)
        with PrefectServer(port=args.port or None, home=args.home) as server:
            print(f"Prefect server at {server.url} (PREFECT_API_URL={server.api_url})")
            env = server.env
            ensure_work_pool(args.pool, env=env)
            print(deploy_all(env=env).stdout)
            print(deploy_spec_flows(env=env, pool=args.pool).stdout)
            print(deploy_automations(env=env).stdout)
            with _maybe_sandbox(args.sandbox, env):
                return _run_worker_until_interrupted(env, args.pool)
    except KeyboardInterrupt:  # interrupted before the worker ran; everything is stopped
        return 130


if __name__ == "__main__":
    sys.exit(main())


class RetryOn503(httpx.HTTPTransport):
    """An httpx transport that retries a 503 as Prefect's own client does.

    A Prefect server on SQLite answers 503 ("database is locked") while flow runs hold
    its database (see FINDINGS); scripts and tests talking to its REST API directly wait
    it out (0.5, 1, 2, 4, 8 s) instead of failing::

        httpx.Client(base_url=server.api_url, transport=RetryOn503())
    """

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; on 503, back off and send it again (up to 5 times)."""
        for delay in (0.5, 1.0, 2.0, 4.0, 8.0):
            response = super().handle_request(request)
            if response.status_code != 503:
                return response
            response.read()
            response.close()
            time.sleep(delay)
        return super().handle_request(request)
