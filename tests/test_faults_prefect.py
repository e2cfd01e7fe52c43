"""Faults on a real Prefect server (the cases: ``tests/isolated_faults_prefect.py``).

They kill and restart the Prefect server and PostgreSQL under running flows, so Prefect's
in-process services of the test process (event and log workers) are left pointing at
servers that went away; in the full session a later module's test-server teardown then
waited on them until its timeout. So the cases run in a pytest process of their own
(:func:`tests.helpers.run_pytest_isolated`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_pytest_isolated

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(1500)]


def test_prefect_fault_cases_pass_in_their_own_process(tmp_path: Path) -> None:
    module = Path(__file__).resolve().parent / "isolated_faults_prefect.py"
    out = run_pytest_isolated(module, tmp_path, timeout=1450)
    assert " passed" in out and "failed" not in out, out[-3000:]
