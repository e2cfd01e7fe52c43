"""The operations-metric corpus (analytics/opscorpus.py): labels, determinism, the split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analytics import opscorpus
from analytics.opscorpus import SCORED_FROM_DAY, corpus, generate_series, split_of, write_corpus
from bench import nab


def test_deterministic_per_id() -> None:
    a, b = generate_series(59), generate_series(59)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.timestamps, b.timestamps)
    assert a.incidents == b.incidents
    assert not np.array_equal(generate_series(60).values[:100], a.values[:100])


def test_series_shape_and_labels() -> None:
    series = corpus(range(36))
    kinds = set()
    for s in series:
        per_day = 86400 // s.resolution_s
        assert s.resolution_s in (60, 120, 300)
        assert 28 * per_day <= len(s) <= 31 * per_day
        assert np.all(np.diff(s.timestamps).astype(int) == s.resolution_s)
        assert np.all(np.isfinite(s.values)) and np.all(s.values >= 0)
        if s.metric == "error_rate":
            assert s.values.max() <= 100.0
        assert s.scored_from == SCORED_FROM_DAY * per_day
        previous_end = -1
        for inc in s.incidents:
            kinds.add(inc.kind)
            assert inc.start >= (SCORED_FROM_DAY + 1) * per_day  # after the learning week
            left, right = inc.window
            assert left <= inc.start <= right < len(s)
            assert left > previous_end  # windows never overlap
            previous_end = right
            if inc.kind == "seasonal_break":
                assert s.metric == "volume"
    assert kinds == set(opscorpus.INCIDENT_KINDS)
    # Healthy-but-noisy series without incidents are part of it.
    assert any(not s.incidents for s in series)


def test_a_seasonal_break_stays_inside_the_days_range() -> None:
    """Traffic missing at its peak: no value outside yesterday's range, yet far below
    yesterday's peak: only the seasonal expectation shows it."""
    s = generate_series(59)
    inc = next(i for i in s.incidents if i.kind == "seasonal_break")
    per_day = 86400 // s.resolution_s
    during = s.values[inc.start : inc.end]
    yesterday = s.values[inc.start - per_day : inc.end - per_day]
    day_before = s.values[inc.start - per_day - per_day // 2 : inc.start - per_day // 2]
    assert during.min() >= day_before.min() and during.max() <= day_before.max()
    assert np.median(during) < 0.75 * np.median(yesterday)


def test_split_is_a_fixed_rule() -> None:
    ids = range(opscorpus.DEFAULT_SERIES)
    parts = {i: split_of(i) for i in ids}
    assert parts == {i: split_of(i) for i in ids}  # stable
    tune = [s.series_id for s in corpus(range(40), split="tune")]
    holdout = [s.series_id for s in corpus(range(40), split="holdout")]
    assert tune and holdout and not set(tune) & set(holdout)
    assert sorted(tune + holdout) == list(range(40))
    # Both parts hold every metric.
    counts = {p: {m: 0 for m in opscorpus.METRICS} for p in ("tune", "holdout")}
    for i in ids:
        counts[parts[i]][opscorpus.METRICS[i % 3]] += 1
    assert all(n >= 10 for part in counts.values() for n in part.values())


def test_written_in_nabs_layout(tmp_path: Path) -> None:
    series = [generate_series(i) for i in (17, 59)]
    write_corpus(tmp_path, series)
    files = nab.load_corpus(tmp_path, [s.name for s in series])
    for s, f in zip(series, files, strict=True):
        assert f.windows == s.windows
        assert np.allclose(f.values, s.values)
        assert [f.timestamps[i] for i in f.labels] == [s.timestamps[i.start] for i in s.incidents]
    kinds = json.loads((tmp_path / "labels" / "incidents.json").read_text())
    assert kinds[series[1].name] == [i.kind for i in series[1].incidents]
