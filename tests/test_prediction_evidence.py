"""A prediction needs evidence: a fresh store, ten minutes of data and the 21-day demo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.forecast import NotEnoughData, hourly_series
from analytics.prediction import (
    MIN_EVIDENCE_HOURS,
    Prediction,
    predict_error_budget,
    predict_services,
)
from analytics.report.model import ReportData
from analytics.report.render import sections
from analytics.synthetic import generate_history
from junction.store import MetricsStore

SLO = 0.99


def _predict(hourly: pd.DataFrame) -> dict[str, list[Prediction | NotEnoughData]]:
    return predict_services(
        hourly, {}, latency_critical_ms=5000, success_rate_critical=0.9, slo=SLO
    )


def _section_text(predictions: dict[str, list[Prediction | NotEnoughData]]) -> str:
    now = datetime.now(UTC)
    data = ReportData(generated_at=now, start=now - timedelta(days=1), end=now)
    data.predictions = predictions
    (section,) = [s for s in sections(data, chart_count=0) if s.key == "predictions"]
    return " ".join(str(b.text) for b in section.blocks if b.kind in ("p", "nodata"))


def test_a_fresh_store_predicts_nothing() -> None:
    empty = pd.DataFrame(columns=["service", "ds", "calls", "failures"])
    assert _predict(empty) == {}
    assert "no services with data" in _section_text({})


def test_ten_minutes_after_install_says_there_is_too_little_data(tmp_path: Path) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    generate_history(
        tmp_path,
        services=["okta", "jira", "slack"],
        start=end - timedelta(minutes=10),
        duration=timedelta(minutes=10),
        step=timedelta(seconds=30),
        tables=("calls",),
        seed=3,
    )
    hourly = hourly_series(MetricsStore(tmp_path), days=1)
    out = _predict(hourly)
    assert sorted(out) == ["jira", "okta", "slack"]
    for outcomes in out.values():
        assert all(isinstance(o, NotEnoughData) for o in outcomes)
        assert all(f"predictions need {MIN_EVIDENCE_HOURS:.0f} h" in o.reason for o in outcomes)
    text = _section_text(out)
    assert text.startswith("0 risks at >= 50%")
    assert "3 of 3 services have too little history to predict" in text


def test_an_empty_budget_is_not_an_exhausted_one() -> None:
    # Two days of a trickle: 0.02 calls an hour on average -> a budget under one failure.
    hours = pd.date_range("2026-10-01", periods=48, freq="h")
    frame = pd.DataFrame(
        {"service": "svc", "ds": hours[::12], "calls": 1, "failures": [1, 0, 0, 0]}
    )
    out = predict_error_budget(frame, "svc", SLO)
    assert isinstance(out, NotEnoughData) and "the budget needs at least 1" in out.reason


@pytest.fixture(scope="module")
def demo_hourly(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("demo")
    generate_history(root, services=8, days=21, seed=7, tables=("calls",))  # `junction demo`'s
    return hourly_series(MetricsStore(root), days=21)


def test_the_demo_budget_is_exhausted_only_while_it_still_burns(
    demo_hourly: pd.DataFrame,
) -> None:
    out = predict_services(
        demo_hourly,
        {},
        latency_critical_ms=5000,
        success_rate_critical=0.9,
        slo=SLO,
        window_days=21,
    )
    spent_quiet = 0
    for svc, (_, _, budget) in out.items():
        assert isinstance(budget, Prediction), svc
        rows = demo_hourly[demo_hourly["service"] == svc].sort_values("ds")
        day = rows[rows["ds"] > rows["ds"].iloc[-1] - timedelta(hours=24)]
        burn = day["failures"].sum() / ((1 - SLO) * day["calls"].sum())
        overspent = rows["failures"].sum() > (1 - SLO) * rows["calls"].sum()
        if budget.probability == 1.0:
            assert overspent and burn >= 1.0, budget.explanation
            assert "still burning" in budget.explanation
        if overspent and burn < 1.0:
            spent_quiet += 1
            assert budget.probability < 1.0 and "spent by past failures" in budget.explanation
            assert "already exhausted" not in budget.explanation
    assert spent_quiet >= 1  # the demo has such services (healthy now, budget spent earlier)


def test_success_rate_needs_a_day_too() -> None:
    hours = pd.date_range("2026-10-01", periods=20, freq="h")
    frame = pd.DataFrame(
        {"service": "svc", "ds": hours, "calls": 100, "failures": np.linspace(0, 30, 20)}
    )
    out = _predict(frame)["svc"]
    assert all(isinstance(o, NotEnoughData) and "20 h of history" in o.reason for o in out)
