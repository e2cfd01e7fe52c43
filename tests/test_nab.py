"""NAB scoring (bench/nab.py): hand-computable cases, and the reproduction of a published
detector's score (Numenta HTM) from its own result files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import nab

DATA = Path(__file__).parent / "data" / "nab_numenta_scores_ge_0.5.csv"
STD = nab.PROFILES["standard"]


def _file(
    n: int, windows: list[tuple[int, int]], labels: list[int] | None = None
) -> nab.CorpusFile:
    ts = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(n) * np.timedelta64(300, "s")
    return nab.CorpusFile("t/x.csv", ts, np.zeros(n), windows, labels or [])


def test_scaled_sigmoid_landmarks() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.98661
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(3.0) == -1.0


def test_probation_length() -> None:
    assert nab.probation_length(1000) == 150
    assert nab.probation_length(4032) == 604
    assert nab.probation_length(22695) == 750  # capped at 15 % of 5,000


def test_profiles_match_the_corpus_config() -> None:
    root = nab.nab_dir()
    if not (root / "config" / "profiles.json").exists():
        pytest.skip("NAB corpus not present")
    loaded = nab.load_profiles(root)
    for name, p in nab.PROFILES.items():
        assert (p.tp_weight, p.fp_weight, p.fn_weight) == (
            loaded[name].tp_weight,
            loaded[name].fp_weight,
            loaded[name].fn_weight,
        )


def test_hand_computed_file_score() -> None:
    # 1,000 points: probation 150. One window [400, 499] (width 100).
    f = _file(1000, [(400, 499)], labels=[449])
    scores = np.zeros(1000)
    scores[100] = 1.0  # in probation: ignored
    scores[200] = 1.0  # FP before any window: -0.11
    scores[450] = 1.0  # first detection in the window, position -(499-450+1)/100 = -0.5
    scores[460] = 1.0  # later detection in the same window: no effect
    scores[549] = 1.0  # FP 50 points after the window: sigmoid(50/99) * 0.11
    fs = nab.score_file(f, scores, 0.5, STD)
    tp = nab.scaled_sigmoid(-0.5) / nab.scaled_sigmoid(-1.0)
    fp_after = nab.scaled_sigmoid(50 / 99) * 0.11
    assert fs.raw == pytest.approx(-0.11 + tp + fp_after)
    assert (fs.tp, fs.fn, fs.fp) == (1, 0, 2)
    assert fs.delays[0][:2] == (50, 0.5)
    assert fs.delays[0][2] == 50 * 300.0
    assert fs.label_delays == [1]  # one point after the labelled anomaly


def test_window_edges_and_misses() -> None:
    f = _file(1000, [(400, 499), (700, 799)])
    scores = np.zeros(1000)
    scores[400] = 1.0  # left edge: exactly the TP weight
    fs = nab.score_file(f, scores, 0.5, nab.PROFILES["reward_low_FN_rate"])
    assert fs.raw == pytest.approx(1.0 - 2.0)  # second window missed: -fn_weight (2)
    only_last = np.zeros(1000)
    only_last[499] = 1.0  # right edge: position -1/100, almost nothing
    assert nab.score_file(f, only_last, 0.5, STD).raw == pytest.approx(
        nab.scaled_sigmoid(-0.01) / nab.scaled_sigmoid(-1.0) - 1.0
    )


def test_null_and_perfect_detectors_normalise_to_0_and_100() -> None:
    files = [_file(1000, [(400, 499)]), _file(2000, [(500, 599), (1500, 1699)])]
    null = [np.zeros(len(f)) for f in files]
    perfect = []
    for f in files:
        s = np.zeros(len(f))
        s[[w[0] for w in f.windows]] = 1.0
        perfect.append(s)
    for profile in nab.PROFILES.values():
        thr, raw = nab.optimize_threshold(files, null, profile)
        assert nab.normalize(raw, 3, profile) == pytest.approx(0.0)
        thr, raw = nab.optimize_threshold(files, perfect, profile)
        assert thr == 1.0
        assert nab.normalize(raw, 3, profile) == pytest.approx(100.0)


def test_threshold_optimisation_picks_the_best_cut() -> None:
    f = _file(1000, [(400, 499)])
    s = np.zeros(1000)
    s[450] = 0.6  # the true detection
    s[[200, 250, 300, 350, 600, 650, 700, 750, 800, 850, 900]] = 0.7  # 11 FPs above it
    # Firing at 0.6 earns ~0.86 but costs ~11 FPs (about -1.1 + a bit back near the window):
    # compute both cuts by hand and check the optimiser takes the larger.
    at_06 = nab.score_file(f, s, 0.6, STD).raw
    at_07 = nab.score_file(f, s, 0.7, STD).raw
    none = -1.0
    thr, raw = nab.optimize_threshold([f], [s], STD)
    best = max((at_06, 0.6), (at_07, 0.7), (none, 1.1))
    assert (raw, thr) == (pytest.approx(best[0]), best[1])


def _numenta_scores(files: list[nab.CorpusFile]) -> list[np.ndarray]:
    scores = {f.name: np.zeros(len(f)) for f in files}
    with DATA.open() as fh:
        for row in csv.DictReader(fh):
            scores[row["file"]][int(row["index"])] = float(row["anomaly_score"])
    return [scores[f.name] for f in files]


def test_reproduces_numenta_htm_published_scores() -> None:
    """Numenta HTM's own result files (numenta/NAB results/numenta, every point scoring
    >= 0.5; its thresholds are all above 0.5, so lower scores never fire) give the raw
    scores in the corpus' config/thresholds.json at its thresholds, and 70.1/63.1/74.3."""
    root = nab.nab_dir()
    if not (root / "labels" / "combined_windows.json").exists():
        pytest.skip("NAB corpus not present")
    files = nab.load_corpus(root)
    scores = _numenta_scores(files)
    published = {  # config/thresholds.json "numenta"
        "standard": (0.5421876907348634, 46.634450197137596, 70.10105611943965),
        "reward_low_FP_rate": (0.5751955032348636, 30.431072517124093, 63.11684160219828),
        "reward_low_FN_rate": (0.5421876907348634, 26.634450197137568, 74.3202443095115),
    }
    for name, (thr, raw, normalized) in published.items():
        profile = nab.PROFILES[name]
        got = sum(
            nab.score_file(f, s, thr, profile).raw for f, s in zip(files, scores, strict=True)
        )
        assert got == pytest.approx(raw, abs=1e-9)
        assert nab.normalize(got, 116, profile) == pytest.approx(normalized, abs=1e-9)
    # The exhaustive sweep finds the published optimum for standard/low-FN, and a slightly
    # better one for low-FP (63.2: NAB's README notes its older optimiser missed it).
    best = {name: nab.optimize_threshold(files, scores, p) for name, p in nab.PROFILES.items()}
    assert best["standard"][1] == pytest.approx(46.634450197137596, abs=1e-9)
    assert best["reward_low_FN_rate"][1] == pytest.approx(26.634450197137568, abs=1e-9)
    low_fp = nab.normalize(best["reward_low_FP_rate"][1], 116, nab.PROFILES["reward_low_FP_rate"])
    assert low_fp == pytest.approx(63.21, abs=0.01)


def test_production_detector_keeps_its_nab_scores() -> None:
    """The whole corpus through the production detector (~13 s): the scores in
    bench/README.md (70.3 / 59.0 / 76.5) must not fall. A detector change that trades NAB
    for something else has to say so here."""
    root = nab.nab_dir()
    if not (root / "labels" / "combined_windows.json").exists():
        pytest.skip("NAB corpus not present")
    files = nab.load_corpus(root)
    results = nab.evaluate(files, nab.run_detector(files, jobs=2))
    floor = {"standard": 70.3, "reward_low_FP_rate": 59.0, "reward_low_FN_rate": 76.5}
    got = {name: round(r.normalized, 1) for name, r in results.items()}
    assert all(got[name] >= floor[name] for name in floor), got


def test_halves_split_by_file_name() -> None:
    """Hold-out discipline: a fixed hash of the file name; both halves hold windows."""
    assert nab.split_half("realKnownCause/nyc_taxi.csv") == nab.split_half(
        "realKnownCause/nyc_taxi.csv"
    )
    root = nab.nab_dir()
    if not (root / "labels" / "combined_windows.json").exists():
        pytest.skip("NAB corpus not present")
    names = sorted(json.loads((root / "labels" / "combined_windows.json").read_text()))
    halves = {h: [n for n in names if nab.split_half(n) == h] for h in ("tune", "holdout")}
    assert len(halves["tune"]) == 30 and len(halves["holdout"]) == 28
