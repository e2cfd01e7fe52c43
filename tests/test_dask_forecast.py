"""Dask forecasts and the capacity watch on a Prefect server, in a fresh interpreter.

The cases live in ``tests/isolated_dask_forecast.py``. In the full session the in-process
Dask LocalCluster's fan-out failed, and the module's Prefect test server then hung, while
the same cases pass in a process of their own (twice, at load 6): a LocalCluster brings
its own threads and event loops, and the session's earlier servers and loops are no place
to share them with. So they run in their own pytest process, with their own Prefect and
Junction homes and none of this session's ``PREFECT_*`` settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(600)]


def test_dask_forecasts_and_the_capacity_watch_pass_in_their_own_process(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "JUNCTION_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        JUNCTION_HOME=str(tmp_path / "junction"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
    )
    (tmp_path / "prefect").mkdir()
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--timeout", "300", str(HERE / "isolated_dask_forecast.py"),
        ],
        cwd=HERE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]
