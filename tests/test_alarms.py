"""Alarms an operator can trust (analytics/anomaly_alarm.py, bench/alarms.py): the goals on
a small held-out slice, and the sensitivity / alert_threshold settings, both ways."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from analytics import opscorpus
from analytics.anomaly_alarm import (
    SENSITIVITY_THRESHOLDS,
    AlarmDetector,
    confidence,
    threshold_for,
)
from analytics.report.anomalies import score_tail, stream_detections
from bench import alarms, nab
from junction.settings import Settings, get_settings


def _slice() -> dict[str, list[alarms.Series]]:
    """A small held-out slice, by rule: the first 8 HOLDOUT2 series of the operations corpus
    at 5-minute resolution with incidents, and the 3 shortest files of NAB's held-out half."""
    ops = [
        s
        for s in opscorpus.corpus(opscorpus.HOLDOUT2_IDS[:20], split="holdout2")
        if s.resolution_s == 300 and s.incidents
    ]
    out = {"ops": alarms.ops_series(ops[:8])}
    root = nab.nab_dir()
    if (root / "labels" / "combined_windows.json").exists():
        files = [f for f in nab.load_corpus(root) if alarms.nab_split(f.name) == "holdout"]
        out["nab"] = alarms.nab_series(sorted(files, key=len)[:3])
    return out


def test_goals_on_a_held_out_slice() -> None:
    """What the alarm stage delivers on held-out data, against the arms it replaces (the
    issue's absolute goals, <= 2 false alarms per series-month at >= 85 % recall, are
    reported by bench/alarms.py on the whole HOLDOUT2 part: see bench/README.md)."""
    corpora = _slice()
    series = [s for part in corpora.values() for s in part]
    scores = dict(zip([s.name for s in series], alarms.run_corpus(series, jobs=2), strict=True))
    ops = corpora["ops"]
    ops_scores = [scores[s.name] for s in ops]
    result = {
        arm: alarms.alarm_result(ops, [alarms.fired_for(arm, sc) for sc in ops_scores])
        for arm in alarms.ARMS
    }
    medium = result["alarm medium"]
    print({arm: (round(r.per_month, 2), round(r.recall, 3)) for arm, r in result.items()})
    assert medium.incidents >= 8
    # 8 series (6 series-months) are too few for the absolute goal (a few false alarms
    # more is 1 per series-month more); the whole HOLDOUT2 part meets it (bench/README.md).
    assert medium.per_month <= 2 * alarms.GOAL_FALSE_ALARMS
    assert medium.per_month < 0.1 * result["rolling z"].per_month
    assert medium.per_month < 0.5 * result["streaming"].per_month
    for arm in ("rolling z", "streaming"):
        assert medium.recall >= result[arm].recall, arm
    # Sensitivity orders false alarms and recall.
    low, high = result["alarm low"], result["alarm high"]
    # (Not medium <= high: a lower threshold merges neighbouring excursions into one alarm.)
    assert low.per_month <= min(medium.per_month, high.per_month)
    assert low.recall <= medium.recall <= high.recall
    # NAB's low-FP profile: on operations metrics the alarm score beats the rolling z-score;
    # on NAB's own series the streaming score does (the alarm score does not: README).
    best = {"ops": "alarm", "nab": "streaming"}
    for name, part in corpora.items():
        profiles = alarms.nab_profiles(part, [scores[s.name] for s in part])
        low_fp = {arm: p["reward_low_FP_rate"] for arm, p in profiles.items()}
        print(name, low_fp)
        assert low_fp[best[name]] > low_fp["rolling z"], low_fp


def test_confidence_and_documented_thresholds() -> None:
    assert confidence(0.0) == 0.0 and confidence(-1.0) == 0.0
    assert confidence(1.0) == pytest.approx(0.95)
    assert SENSITIVITY_THRESHOLDS == {"low": 0.98, "medium": 0.95, "high": 0.92}
    assert threshold_for("medium") == 0.95
    with pytest.raises(ValueError, match="sensitivity must be one of low, medium, high"):
        threshold_for("extreme")
    with pytest.raises(ValueError, match="alert_threshold"):
        AlarmDetector(alert_threshold=1.5)


@functools.cache
def _frame() -> pd.DataFrame:
    """A TUNE volume series up to just after its first seasonal break (traffic missing at
    the usual peak), as the report reads a series (ds, y)."""
    s = opscorpus.generate_series(59)
    inc = s.incidents[0]
    assert inc.kind == "seasonal_break"
    end = inc.window[1] + 12
    return pd.DataFrame({"ds": s.timestamps[:end], "y": s.values[:end]})


@functools.cache
def _run(sensitivity: str, alert_threshold: float) -> pd.DataFrame:
    """The report's scoring of that series (each combination streamed once per session)."""
    out = score_tail(_frame(), 0, sensitivity=sensitivity, alert_threshold=alert_threshold)
    assert out is not None
    return out


@pytest.fixture(scope="module")
def incident_frame() -> pd.DataFrame:
    return _frame()


def test_sensitivity_orders_the_anomalies() -> None:
    flagged = {k: _run(k, 0.95)["is_anomaly"].to_numpy() for k in ("low", "high")}
    medium = _run("medium", 0.95)
    assert np.all(flagged["low"] <= medium["is_anomaly"].to_numpy())
    assert np.all(medium["is_anomaly"].to_numpy() <= flagged["high"])
    assert flagged["high"].sum() > flagged["low"].sum()
    # The seasonal break is caught at medium (an alarm inside its window).
    inc = opscorpus.generate_series(59).incidents[0]
    alarm_at = np.flatnonzero(medium["alarm"].to_numpy())
    assert any(inc.window[0] <= i <= inc.window[1] for i in alarm_at)


def test_alert_threshold_gates_the_reports_detections() -> None:
    everything, nothing = _run("medium", 0.0), _run("medium", 1.0)
    assert everything["alert"].tolist() == everything["alarm"].tolist()
    assert everything["alert"].any() and not nothing["alert"].any()
    found = stream_detections({("svc", "volume"): everything})
    assert len(found) == int(everything["alert"].sum())
    assert stream_detections({("svc", "volume"): nothing}).empty
    # At high sensitivity with the default gate (0.95), anomalies below it do not alert.
    high = _run("high", 0.95)
    assert (high.loc[high["alert"], "confidence"] >= 0.95).all()
    assert (high.loc[high["alarm"] & ~high["alert"], "confidence"] < 0.95).all()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_settings_drive_the_report(
    settings_env: pytest.MonkeyPatch, incident_frame: pd.DataFrame
) -> None:
    assert Settings().anomaly_sensitivity == "medium"
    assert Settings().anomaly_alert_threshold == 0.95
    settings_env.setenv("JUNCTION_ANOMALY_SENSITIVITY", "high")
    settings_env.setenv("JUNCTION_ANOMALY_ALERT_THRESHOLD", "1")
    get_settings.cache_clear()
    out = score_tail(incident_frame, 0)
    assert out is not None
    assert out["is_anomaly"].tolist() == _run("high", 0.95)["is_anomaly"].tolist()
    assert not out["alert"].any()  # nothing reaches a confidence of 1
    settings_env.setenv("JUNCTION_ANOMALY_SENSITIVITY", "extreme")
    with pytest.raises(ValueError, match="anomaly_sensitivity"):
        Settings()
    settings_env.setenv("JUNCTION_ANOMALY_SENSITIVITY", "low")
    settings_env.setenv("JUNCTION_ANOMALY_ALERT_THRESHOLD", "1.5")
    with pytest.raises(ValueError, match="anomaly_alert_threshold"):
        Settings()
