"""Dask forecasts and the capacity watch on a Prefect server, in a fresh interpreter.

The cases live in ``tests/isolated_dask_forecast.py``. In the full session the in-process
Dask LocalCluster's fan-out failed, and the module's Prefect test server then hung, while
the same cases pass in a process of their own (twice, at load 6): they run in their own
pytest process (:func:`tests.helpers.run_pytest_isolated`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_pytest_isolated

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(600)]


def test_dask_forecasts_and_the_capacity_watch_pass_in_their_own_process(
    tmp_path: Path,
) -> None:
    module = Path(__file__).resolve().parent / "isolated_dask_forecast.py"
    out = run_pytest_isolated(module, tmp_path, timeout=580)
    assert "2 passed" in out, out[-3000:]
