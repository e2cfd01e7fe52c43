"""Smoke test of bench/workflows.py's building blocks on the test sandbox (no Prefect)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import workflows as bench  # noqa: E402  (bench/ is not a package)

WORKER_0 = "2f5d8d236660d0591e487847bd050202"


def test_naive_arm_onboards_and_duplicates_are_counted(sb: Any) -> None:
    admin = bench.Admin(sb.url)
    assert WORKER_0 in admin.workers()

    async def go() -> list[bench.Sample]:
        naive = bench.Naive(sb.url)
        try:
            return [await naive.sample(WORKER_0), await naive.sample(WORKER_0)]
        finally:
            await naive.http.aclose()

    first, again = asyncio.run(go())
    assert first.ok, first.error
    assert not again.ok  # by hand, a rerun hits Okta's "login already exists"
    assert admin.duplicates() == {
        "okta users": 0,
        "gitlab users": 0,
        "webex messages": 0,
        "jira issues": 0,
    }
    admin.wipe()
    assert admin.state("okta").get("users", {}) == {}  # forgotten (re-seeded on next use)


def test_critical_path_and_summary() -> None:
    steps = {
        "hire": [100.0],
        "find_groups": [500.0],
        "okta_user": [100.0],
        "okta_groups": [50.0],
        "gitlab_user": [100.0],
        "gitlab_membership": [100.0],
        "welcome": [100.0],
        "equipment": [100.0],
    }
    total, path = bench.critical_path(steps)
    assert path == ["find_groups", "okta_groups", "welcome"] and total == 650.0
    summary = bench.summarize(
        [bench.Sample(True, 100.0), bench.Sample(False, 300.0, "boom"), bench.Sample(True, 200.0)]
    )
    assert summary["success_rate"] == 2 / 3 and summary["mean_ok_ms"] == 150.0
    assert summary["top_errors"] == [("boom", 1)]
