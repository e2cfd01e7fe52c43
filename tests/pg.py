"""A throw-away PostgreSQL cluster for tests and benchmarks (never a system service).

``initdb`` into a temporary directory, ``postgres`` on a free loopback port with its unix
socket in that directory, one database created; everything removed on exit::

    with PostgresCluster() as pg:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = pg.url  # postgresql+asyncpg://...

PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres`` user the
Debian package creates (``nobody`` without it), through ``runuser``. The binaries come
from Debian's ``postgresql`` package (``scripts/install-system-deps.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import pytest

from deployments.local import free_port, stop_process_group

INSTALL_HINT = "run scripts/install-system-deps.sh (Debian package `postgresql`)"
SUPERUSER = "junction"


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``, else PATH's."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _run_as() -> str | None:
    """The unix user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and there is no `postgres` or `nobody` user")


class PostgresCluster:
    """A PostgreSQL cluster of its own in a temporary directory.

    Tuned for throw-away data (``fsync``, ``synchronous_commit`` and full-page writes off):
    never use these settings for data that must survive a crash.

    Args:
        database: Name of the database created at start.
        startup_timeout: Seconds to wait for the server to accept connections.
    """

    def __init__(self, database: str = "prefect", *, startup_timeout: float = 60.0) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError(f"PostgreSQL is not installed (no initdb): {INSTALL_HINT}")
        self.bindir = bindir
        self.database = database
        self.startup_timeout = startup_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.root = Path()
        self._tmp: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._user = _run_as()

    @property
    def url(self) -> str:
        """SQLAlchemy URL for Prefect (``PREFECT_API_DATABASE_CONNECTION_URL``)."""
        return f"postgresql+asyncpg://{SUPERUSER}@{self.host}:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        """File receiving the server's output."""
        return self.root / "postgres.log"

    def _argv(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self._user, "--"] if self._user else []
        return [*prefix, *args]

    def __enter__(self) -> Self:
        self._tmp = tempfile.mkdtemp(prefix="junction-pg-")
        self.root = Path(self._tmp)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        data = self.root / "data"
        initdb = [
            str(self.bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        ]  # fmt: skip
        try:
            subprocess.run(
                self._argv(*initdb),
                check=True,
                capture_output=True,
                cwd=self.root,
            )
            self.port = free_port(self.host)
            self._start_server()
            self._create_database()
        except subprocess.CalledProcessError as exc:
            self._stop()
            stderr = exc.stderr.decode(errors="replace")
            raise RuntimeError(f"{exc.cmd[0]} failed: {stderr}") from None
        except BaseException:
            self._stop()
            raise
        return self

    def _start_server(self) -> None:
        server = [
            str(self.bindir / "postgres"), "-D", str(self.root / "data"),
            "-h", self.host, "-p", str(self.port), "-k", str(self.root),
            "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200",
        ]  # fmt: skip
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self._argv(*server),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )

    def restart(self) -> None:
        """Stop the server as ``pg_ctl stop -m fast`` does (SIGINT: open sessions rolled
        back, clients disconnected) and start it again on the same port and data
        directory; returns once it accepts connections. The data survives."""
        if self._proc is None:
            raise RuntimeError("the cluster is not running")
        stop_process_group(self._proc, signal.SIGINT, 15.0)
        if self._log is not None:
            self._log.close()
        self._start_server()
        assert self._proc is not None
        ready = [str(self.bindir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"]
        deadline = time.monotonic() + self.startup_timeout
        while subprocess.run(ready, capture_output=True, cwd=self.root).returncode != 0:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self._proc.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres not ready after restart: {self._log_tail()}")
            time.sleep(0.2)

    def _create_database(self) -> None:
        assert self._proc is not None
        createdb = [
            str(self.bindir / "createdb"), "-h", self.host, "-p", str(self.port),
            "-U", SUPERUSER, self.database,
        ]  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self._proc.returncode}: {self._log_tail()}")
            done = subprocess.run(createdb, capture_output=True, cwd=self.root)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"postgres not ready after {self.startup_timeout:.0f} s: "
                    f"{done.stderr.decode(errors='replace')}{self._log_tail()}"
                )
            time.sleep(0.3)

    def create_database(self, name: str) -> str:
        """Create another database on the running cluster and return its asyncpg URL."""
        createdb = [
            str(self.bindir / "createdb"), "-h", self.host, "-p", str(self.port),
            "-U", SUPERUSER, name,
        ]  # fmt: skip
        done = subprocess.run(createdb, capture_output=True, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"createdb {name}: {done.stderr.decode(errors='replace')}")
        return f"postgresql+asyncpg://{SUPERUSER}@{self.host}:{self.port}/{name}"

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        return ""

    def _stop(self) -> None:
        if self._proc is not None:
            # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, exit at once.
            stop_process_group(self._proc, signal.SIGINT, 15.0)
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


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throw-away PostgreSQL cluster for the session.

    Fails (never skips) when PostgreSQL is not installed.
    """
    if postgres_bindir() is None:
        pytest.fail(f"PostgreSQL is not installed (no initdb): {INSTALL_HINT}", pytrace=False)
    try:
        cluster = PostgresCluster().__enter__()
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.__exit__(None, None, None)


_DATABASES = itertools.count(1)


@pytest.fixture(scope="module")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh database on the session's cluster for each test module (its asyncpg URL):
    a module's Prefect server sees only its own deployments, runs and artifacts."""
    return postgres_cluster.create_database(f"module_{next(_DATABASES)}")
