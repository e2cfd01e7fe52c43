"""`make serve` / `make stop` (deployments/serve.py) for real: a Prefect server, the work pool
with its concurrency limit, every deployment, a worker and the Junction service left
running in the background, then stopped exactly."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from deployments.local import WORK_POOL, free_port
from deployments.serve import ORDER, Options, procs, start, stop

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(900)]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_serve_starts_everything_and_stop_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    opts = Options(home=home, prefect_port=free_port(), service_port=free_port(), pool_limit=2)
    try:
        addresses = start(opts)
        assert addresses["Prefect UI"] == f"http://127.0.0.1:{opts.prefect_port}"
        assert addresses["Junction dashboard"] == f"http://127.0.0.1:{opts.service_port}/"
        running = {name: p.running_pid() for name, p in procs(home).items()}
        assert running["sandbox"] is None  # not asked for
        assert all(running[n] for n in ORDER[1:]), running
        assert (home / "prefect").is_dir()  # the server's state is in the home

        api = f"http://127.0.0.1:{opts.prefect_port}/api"
        with httpx.Client(base_url=api, timeout=60.0) as client:
            pool = client.get(f"/work_pools/{WORK_POOL}").json()
            assert pool["concurrency_limit"] == 2
            names = {d["name"] for d in client.post("/deployments/filter", json={}).json()}
            assert {"health-sweep", "run-workflow", "employee_onboarding"} <= names, names
            # The credential block types, for the UI's Blocks page.
            assert client.get("/block_types/slug/junction-api-key").status_code == 200
            workers = client.post(f"/work_pools/{WORK_POOL}/workers/filter", json={})
            assert workers.status_code == 200
        status = httpx.get(f"http://127.0.0.1:{opts.service_port}/api/v2/status", timeout=30)
        assert status.status_code == 200

        with pytest.raises(RuntimeError, match="already running"):
            start(opts)
    finally:
        stopped = stop(home)
    assert stopped == ["junction-service", "worker", "prefect-server"]
    assert not _listening(opts.prefect_port) and not _listening(opts.service_port)
    assert not list((home / "serve").glob("*.pid"))
    assert stop(home) == []  # nothing left to stop


def test_a_reused_pid_is_not_signalled(tmp_path: Path) -> None:
    proc = procs(tmp_path)["worker"]
    proc.run_dir.mkdir(parents=True)
    # This test's own process under a command line that is not the one recorded.
    proc.pid_file.write_text(f"{os.getpid()}\n/nonexistent/prefect worker start\n")
    assert proc.running_pid() is None
    assert proc.stop() is False and not proc.pid_file.exists()
