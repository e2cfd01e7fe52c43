"""Run the sandbox in a process of its own, as a user would (`junction sandbox serve`).

Benchmarks use it so the simulated services do not share the measured process's CPU or
event loop; :class:`integrations.sandbox.app.SandboxServer` (a thread) is for tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from integrations.sandbox.admin import ADMIN_TOKEN_ENV

_ROOT = Path(__file__).resolve().parents[2]


def start_sandbox_process(
    port: int, *, smtp_port: int = 0, timeout: float = 90.0, admin_token: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``junction sandbox serve`` on ``port`` and wait until its admin API answers.

    The process leads its own session: stop it with ``os.killpg(proc.pid, SIGTERM)``.

    Args:
        port: TCP port on 127.0.0.1.
        smtp_port: Port of the sandbox's SMTP server (0: any free port).
        timeout: Seconds to wait for ``/_admin/health``.
        admin_token: The admin token the sandbox requires (``None``: none, whatever
            ``JUNCTION_SANDBOX_ADMIN_TOKEN`` says in this process's environment, so a
            benchmark's admin calls work the same everywhere).

    Raises:
        RuntimeError: It did not answer in time (the process is killed first).
    """
    command = [sys.executable, "-m", "junction", "sandbox", "serve", "--port", str(port)]
    command += ["--smtp-port", str(smtp_port)]
    env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV}
    headers = {}
    if admin_token is not None:
        env[ADMIN_TOKEN_ENV] = admin_token
        headers["Authorization"] = f"Bearer {admin_token}"
    proc = subprocess.Popen(
        command,
        cwd=_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    health = f"http://127.0.0.1:{port}/_admin/health"
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, headers=headers, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"the sandbox did not answer on port {port} within {timeout:g} s")
