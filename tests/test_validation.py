"""GX validation: every check fails on a crafted bad frame, passes on good data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analytics.synthetic import generate_history
from analytics.validation import (
    DataValidationError,
    ValidationReport,
    probe_gaps,
    validate_frame,
    validate_store,
)
from junction.store import MetricsStore

START = datetime(2026, 4, 6, tzinfo=UTC)
NOW = START + timedelta(days=2)
STEP = timedelta(minutes=15)
TABLES = ("calls", "probes", "workflow_runs", "alerts")


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("history")
    generate_history(
        root, services=3, days=1, step=STEP, start=START, alerts=True, incidents_per_30_days=60
    )
    with MetricsStore(root) as store:
        return {t: store.query(f"SELECT * EXCLUDE (date) FROM {t} ORDER BY 2") for t in TABLES}


def run(frame: pd.DataFrame, table: str, **kw: object) -> ValidationReport:
    kw.setdefault("now", NOW)
    kw.setdefault("probe_interval", STEP)
    kw.setdefault("max_clock_skew", timedelta(minutes=5))
    kw.setdefault("gap_factor", 3.0)
    return validate_frame(frame, table, **kw)  # type: ignore[arg-type]


def failed(report: ValidationReport) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


@pytest.mark.parametrize("table", TABLES)
def test_good_data_passes_every_check(frames: dict[str, pd.DataFrame], table: str) -> None:
    report = run(frames[table], table)
    assert report.passed and not report.warnings, report.to_frame()
    assert report.rows[table] == len(frames[table]) > 0
    assert len(report.checks) >= 6


def _set(col: str, value: Any, row: int = 0) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        if value is None and df[col].dtype == bool:
            df[col] = df[col].astype(object)
        df.loc[df.index[row], col] = value
        return df

    return change


def _dup_id(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.loc[df.index[1], "id"] = df["id"].iloc[0]
    return df


def _dup_row(df: pd.DataFrame) -> pd.DataFrame:
    extra = df.iloc[[3]].copy()
    extra["id"] = "another-id"
    return pd.concat([df, extra], ignore_index=True)


CRITICAL = [
    ("calls", "latency_non_negative", _set("latency_ms", -5.0)),
    ("calls", "latency_not_null", _set("latency_ms", np.nan)),
    ("calls", "ok_known", _set("ok", None)),
    ("calls", "id_unique", _dup_id),
    ("calls", "ts_not_in_future", _set("ts", NOW + timedelta(hours=1))),
    ("calls", "ts_not_null", _set("ts", pd.NaT)),
    ("probes", "latency_non_negative", _set("latency_ms", -0.001)),
    ("probes", "id_unique", _dup_id),
    ("workflow_runs", "latency_non_negative", _set("duration_ms", -1.0)),
    ("workflow_runs", "started_at_not_in_future", _set("started_at", NOW + timedelta(days=1))),
    ("alerts", "id_unique", _dup_id),
]


@pytest.mark.parametrize(
    ("table", "check", "spoil"), CRITICAL, ids=[f"{t}-{c}" for t, c, _ in CRITICAL]
)
def test_critical_checks_stop_with_a_clear_message(
    frames: dict[str, pd.DataFrame],
    table: str,
    check: str,
    spoil: Callable[[pd.DataFrame], pd.DataFrame],
) -> None:
    bad = spoil(frames[table])
    with pytest.raises(DataValidationError) as info:
        run(bad, table)
    message = str(info.value)
    assert f"{table}.{check}" in message and " rows violate" in message, message
    assert {c.name for c in info.value.report.critical_failures} == {check}
    report = run(bad, table, raise_on_critical=False)
    assert not report.passed and report.check(table, check).details  # says where


WARNINGS = [
    ("calls", "status_known", _set("status", 999)),
    ("calls", "no_duplicate_rows", _dup_row),
    ("probes", "no_duplicate_rows", _dup_row),
    ("probes", "status_known", _set("status", 42)),
    ("workflow_runs", "status_known", _set("status", "exploded")),
    ("workflow_runs", "ended_after_started", _set("ended_at", START - timedelta(days=1))),
    ("alerts", "status_known", _set("state", "on-fire")),
    ("alerts", "severity_known", _set("severity", "meh")),
]


@pytest.mark.parametrize(
    ("table", "check", "spoil"), WARNINGS, ids=[f"{t}-{c}" for t, c, _ in WARNINGS]
)
def test_warnings_are_reported_not_raised(
    frames: dict[str, pd.DataFrame],
    table: str,
    check: str,
    spoil: Callable[[pd.DataFrame], pd.DataFrame],
) -> None:
    report = run(spoil(frames[table]), table)
    assert report.passed
    assert [w.name for w in report.warnings] == [check]
    assert "1 of" in report.check(table, check).observed


def test_timestamps_before_the_bound_warn(frames: dict[str, pd.DataFrame]) -> None:
    report = run(frames["calls"], "calls", earliest=START + timedelta(hours=12))
    check = report.check("calls", "ts_not_before_bound")
    assert not check.passed and check.severity == "warning" and report.passed
    assert (
        run(frames["calls"], "calls", earliest=START).check("calls", "ts_not_before_bound").passed
    )


def test_probe_gaps(frames: dict[str, pd.DataFrame]) -> None:
    probes = frames["probes"]
    hole = (probes["ts"] >= START + timedelta(hours=5)) & (
        probes["ts"] < START + timedelta(hours=7)
    )
    gappy = probes[~hole]
    report = run(gappy, "probes")
    check = report.check("probes", "probe_gaps")
    assert not check.passed and check.severity == "warning" and report.passed
    assert "3 services 2026-04-06 04:45..07:00" in check.details, check.details
    # One service stops reporting: its trailing gap is caught too.
    last = probes["service"].iloc[0]
    quiet = probes[~((probes["service"] == last) & (probes["ts"] > START + timedelta(hours=20)))]
    assert not run(quiet, "probes").check("probes", "probe_gaps").passed
    # Without a configured interval the median gap is the interval.
    assert run(probes, "probes", probe_interval=None).check("probes", "probe_gaps").passed
    gaps = probe_gaps(gappy)
    assert list(gaps.columns) == ["service", "gap_start", "gap_end", "gap_seconds"]
    assert gaps["gap_seconds"].max() > 2 * 3600


def test_empty_single_row_and_wrong_columns(frames: dict[str, pd.DataFrame]) -> None:
    empty = run(frames["calls"].iloc[0:0], "calls")
    assert empty.passed and empty.not_enough_data("calls")
    assert "not enough data" in empty.check("calls", "rows").observed
    single = run(frames["probes"].iloc[[0]], "probes")
    assert single.passed
    assert "not enough data" in single.check("probes", "probe_gaps").observed
    with pytest.raises(DataValidationError, match="missing columns: latency_ms"):
        run(frames["calls"].drop(columns=["latency_ms"]), "calls")
    typed = frames["calls"].assign(latency_ms=frames["calls"]["latency_ms"].astype(str))
    with pytest.raises(DataValidationError, match=r"latency_ms \(expected number"):
        run(typed, "calls")
    renamed = frames["calls"].rename(columns={"ts": "timestamp"})
    with pytest.raises(DataValidationError, match="missing columns: ts"):
        run(renamed, "calls")
    with pytest.raises(ValueError, match="unknown table"):
        run(frames["calls"], "nope")


def test_report_rendering(frames: dict[str, pd.DataFrame]) -> None:
    report = run(_set("status", 999)(frames["calls"]), "calls")
    table = report.to_frame()
    assert list(table.columns) == ["table", "name", "severity", "passed", "observed", "details"]
    assert "**FAIL**" in report.to_markdown() and "status_known" in report.to_markdown()


def test_validate_store(tmp_path: Path) -> None:
    generate_history(
        tmp_path,
        services=3,
        days=1,
        step=STEP,
        start=START,
        monitor_outages=1,
        alerts=True,
        incidents_per_30_days=60,
    )
    with MetricsStore(tmp_path) as store:
        report = validate_store(
            store, ("calls", "probes", "workflow_runs", "alerts"), now=NOW, probe_interval=STEP
        )
        assert report.passed and [w.name for w in report.warnings] == ["probe_gaps"]
        assert report.rows["calls"] == store.count("calls")
        window = validate_store(
            store,
            ("calls",),
            since=START + timedelta(hours=6),
            until=START + timedelta(hours=7),
            now=NOW,
        )
        assert 0 < window.rows["calls"] < report.rows["calls"]
        store.append(
            "calls",
            [
                {
                    "ts": START + timedelta(hours=1),
                    "service": "openai",
                    "action": "x",
                    "method": "GET",
                    "path": "/",
                    "ok": True,
                    "latency_ms": -3.0,
                    "attempts": 1,
                    "breaker_state": "closed",
                    "source": "cli",
                }
            ],
        )
        store.flush()
        with pytest.raises(DataValidationError, match=r"calls\.latency_non_negative"):
            validate_store(store, ("calls",), now=NOW)


def test_validate_empty_store(tmp_path: Path) -> None:
    with MetricsStore(tmp_path) as store:
        report = validate_store(store, now=NOW)
        assert report.passed
        assert all(report.not_enough_data(t) for t in ("calls", "probes", "workflow_runs"))
