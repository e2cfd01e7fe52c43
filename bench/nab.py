"""NAB (Numenta Anomaly Benchmark) scoring, and the production detector run over its corpus.

Scoring follows the NAB paper and the README of ``../shared/nab`` (the corpus at numenta/NAB
ea702d7):

- Every labelled anomaly window is scored by the *first* detection inside it, weighted by a
  scaled sigmoid of its relative position: ``2 * sigmoid(-5 * y) - 1`` with ``y = -(right -
  i + 1) / width`` (-1 at the left edge, ~0 at the right edge), divided by its value at
  ``y = -1`` so the earliest detection earns exactly the profile's TP weight. A window
  without a detection costs ``-fn_weight``.
- A detection outside every window costs ``fp_weight * scaled_sigmoid(d)``, ``d`` the
  distance past the end of the previous window in units of that window's width minus one
  (-fp_weight when no window precedes it, or d >= 3): a detection just after a window
  costs almost nothing, a distant one the full weight.
- The probationary period, ``min(floor(0.15 * n), 750)`` points at the start of each file,
  is not scored at all.
- One threshold per profile is chosen over the whole corpus (exhaustive sweep over every
  distinct anomaly score: a detection is ``score >= threshold``) to maximise the summed
  raw score.
- Normalisation per profile: ``100 * (raw - null) / (perfect - null)``, ``null`` = every
  window missed (``-fn_weight * windows``), ``perfect`` = ``tp_weight * windows``.

Run: ``.venv/bin/python -m bench.nab [--files N] [--jobs 2] [--half tune|holdout]`` (the
production detector over the corpus, cached under /tmp), or
``.venv/bin/python -m bench.nab --results DIR`` to score a published detector's own
result files (``results/<detector>`` of numenta/NAB).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analytics.anomaly import DetectorConfig, StreamingDetector

DEFAULT_NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "nab"
PROBATION_PERCENT = 0.15


@dataclass(frozen=True)
class Profile:
    """One NAB application profile: the weights of its cost matrix."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


@dataclass
class CorpusFile:
    """One labelled series: its values and its windows as inclusive index ranges."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # the labelled anomaly points

    def __len__(self) -> int:
        return len(self.values)


def nab_dir() -> Path:
    """The corpus directory: ``$JUNCTION_NAB_DIR``, else ``../shared/nab`` next to the
    repo, else the workplace's ``/work/shared/nab`` (as the vendor specs are found)."""
    if "JUNCTION_NAB_DIR" in os.environ:
        return Path(os.environ["JUNCTION_NAB_DIR"])
    for candidate in (Path(DEFAULT_NAB_DIR), Path("/work/shared/nab")):
        if (candidate / "labels").is_dir():
            return candidate
    return Path(DEFAULT_NAB_DIR)


def split_half(name: str) -> str:
    """``"tune"`` or ``"holdout"`` for a corpus file: the parity of a SHA-256 of its name.

    Hold-out discipline: parameters are chosen on the TUNE half only, and the HOLDOUT half
    is reported beside the whole corpus (``--half``; ``bench/alarms.py``).
    """
    return "holdout" if hashlib.sha256(name.encode()).digest()[0] & 1 else "tune"


def load_profiles(root: Path) -> dict[str, Profile]:
    """Read ``config/profiles.json`` (the weights we also hard-code in ``PROFILES``)."""
    raw = json.loads((root / "config" / "profiles.json").read_text())
    return {
        name: Profile(
            name,
            float(p["CostMatrix"]["tpWeight"]),
            float(p["CostMatrix"]["fpWeight"]),
            float(p["CostMatrix"]["fnWeight"]),
            float(p["CostMatrix"]["tnWeight"]),
        )
        for name, p in raw.items()
    }


def _read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open() as fh:
        rows = list(csv.reader(fh))
    body = rows[1:]
    ts = np.array([r[0] for r in body], dtype="datetime64[s]")
    values = np.array([float(r[1]) for r in body], dtype=float)
    return ts, values


def _window_indices(ts: np.ndarray, limits: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    out = []
    for start, end in limits:
        t0, t1 = np.datetime64(start[:19], "s"), np.datetime64(end[:19], "s")
        i0, i1 = int(np.searchsorted(ts, t0)), int(np.searchsorted(ts, t1))
        if i0 >= len(ts) or ts[i0] != t0 or i1 >= len(ts) or ts[i1] != t1:
            raise ValueError(f"window {start}..{end} does not match a timestamp of the file")
        out.append((i0, i1))
    return out


def load_corpus(root: Path | None = None, names: Sequence[str] | None = None) -> list[CorpusFile]:
    """Load the corpus' series with their windows (``labels/combined_windows.json``).

    Args:
        root: The corpus directory (default: ``nab_dir()``).
        names: Only these relative paths (``realKnownCause/nyc_taxi.csv``), in this order.
    """
    root = root or nab_dir()
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    points_path = root / "labels" / "combined_labels.json"
    points = json.loads(points_path.read_text()) if points_path.exists() else {}
    wanted = list(names) if names is not None else sorted(windows)
    files = []
    for name in wanted:
        ts, values = _read_series(root / "data" / name)
        stamps = [np.datetime64(t[:19], "s") for t in points.get(name, [])]
        labels = [int(np.searchsorted(ts, t)) for t in stamps]
        files.append(CorpusFile(name, ts, values, _window_indices(ts, windows[name]), labels))
    return files


# --- scoring ----------------------------------------------------------------------------


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid: +0.987 at -1 (left edge of a window), 0 at 0, -1 from 3 on."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def _vsigmoid(pos: np.ndarray) -> np.ndarray:
    """``scaled_sigmoid`` over an array."""
    return np.where(pos >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(pos, 3.0))) - 1.0)


def probation_length(n: int) -> int:
    """Points at the start of a file that are not scored: ``min(floor(15 % of n), 750)``."""
    return int(min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000))


@dataclass
class PointWeights:
    """Per-point scoring weights of one file under one profile.

    ``weight[i]`` is what a detection at point i contributes (TP value inside a window,
    negative FP cost outside); ``window[i]`` is the window's index in the file (-1 outside
    every window, -2 in the probationary period: never scored).
    """

    weight: np.ndarray
    window: np.ndarray


def point_weights(n: int, windows: Sequence[tuple[int, int]], profile: Profile) -> PointWeights:
    """Weights of every point of a file of ``n`` points with these windows."""
    max_tp = scaled_sigmoid(-1.0)
    idx = np.arange(n)
    weight = np.empty(n)
    window = np.full(n, -1, dtype=np.int64)
    lefts = np.array([w[0] for w in windows], dtype=np.int64)
    rights = np.array([w[1] for w in windows], dtype=np.int64)
    for k, (left, right) in enumerate(windows):
        width = float(right - left + 1)
        pos = -(right - idx[left : right + 1] + 1) / width
        weight[left : right + 1] = _vsigmoid(pos) * profile.tp_weight / max_tp
        window[left : right + 1] = k
    outside = window == -1
    # The window that ended most recently before each point (-1: none yet).
    prev = np.searchsorted(rights, idx, side="left") - 1
    pos = np.full(n, 3.0)
    has_prev = outside & (prev >= 0)
    if has_prev.any():
        p_right = rights[prev[has_prev]]
        p_width = (rights - lefts + 1)[prev[has_prev]].astype(float)
        # A one-point window would divide by zero; NAB has none: treat as far away.
        with np.errstate(divide="ignore"):
            pos[has_prev] = np.where(
                p_width > 1, np.abs(p_right - idx[has_prev]) / (p_width - 1), 3.0
            )
    weight[outside] = _vsigmoid(pos[outside]) * profile.fp_weight
    window[: probation_length(n)] = -2
    return PointWeights(weight, window)


def scored_windows(n: int, windows: Sequence[tuple[int, int]]) -> int:
    """Windows with at least one point after the probationary period (the ones NAB scores)."""
    p = probation_length(n)
    return sum(1 for _, right in windows if right >= p)


@dataclass
class FileScore:
    """One file's raw score at a threshold, with its counts and detection delays."""

    name: str
    raw: float
    tp: int
    fn: int
    fp: int
    # (points, fraction of window, seconds) from the window's start to the first detection
    delays: list[tuple[int, float, float]]
    # points from the labelled anomaly inside the window to the first detection (< 0: before)
    label_delays: list[int] = field(default_factory=list)


def score_file(f: CorpusFile, scores: np.ndarray, threshold: float, profile: Profile) -> FileScore:
    """Score one file's anomaly scores at a fixed threshold (``score >= threshold`` fires)."""
    pw = point_weights(len(f), f.windows, profile)
    fired = (np.asarray(scores) >= threshold) & (pw.window != -2)
    raw = float(pw.weight[fired & (pw.window == -1)].sum())
    fp = int((fired & (pw.window == -1)).sum())
    tp = fn = 0
    delays = []
    label_delays = []
    for k, (left, right) in enumerate(f.windows):
        in_window = pw.window == k
        if not in_window.any():
            continue  # entirely in the probationary period
        hits = np.flatnonzero(fired & in_window)
        if len(hits):
            first = int(hits[0])
            raw += float(pw.weight[first])
            tp += 1
            seconds = float((f.timestamps[first] - f.timestamps[left]) / np.timedelta64(1, "s"))
            delays.append((first - left, (first - left) / (right - left + 1), seconds))
            inside = [p for p in f.labels if left <= p <= right]
            if inside:
                label_delays.append(first - inside[0])
        else:
            raw -= profile.fn_weight
            fn += 1
    return FileScore(f.name, raw, tp, fn, fp, delays, label_delays)


def optimize_threshold(
    files: Sequence[CorpusFile], scores: Sequence[np.ndarray], profile: Profile
) -> tuple[float, float]:
    """The corpus-wide threshold maximising the summed raw score, and that score.

    Exhaustive, like NAB's sweeper: every distinct anomaly score is a candidate threshold;
    walking the points from the highest score down, a window's contribution is the best
    (earliest) detection so far or ``-fn_weight``, false positives add up.

    Returns:
        ``(threshold, raw score)``; the threshold is 1.1 (nothing fires) if no detection
        improves on the null detector.
    """
    all_scores, all_weights, all_windows = [], [], []
    n_windows = 0
    for f, s in zip(files, scores, strict=True):
        pw = point_weights(len(f), f.windows, profile)
        keep = pw.window != -2
        all_scores.append(np.asarray(s, dtype=float)[keep])
        all_weights.append(pw.weight[keep])
        w = pw.window[keep]
        all_windows.append(np.where(w >= 0, w + n_windows, -1))
        n_windows += len(f.windows)
    sc = np.concatenate(all_scores)
    wt = np.concatenate(all_weights)
    win = np.concatenate(all_windows)
    order = np.argsort(-sc, kind="stable")
    sc, wt, win = sc[order], wt[order], win[order]
    scored = np.unique(win[win >= 0])
    best_in_window = dict.fromkeys(scored.tolist(), -profile.fn_weight)
    total = -profile.fn_weight * len(scored)
    best_score, best_threshold = total, 1.1
    wt_l, win_l, sc_l = wt.tolist(), win.tolist(), sc.tolist()
    for i in range(len(sc_l)):
        k = win_l[i]
        if k < 0:
            total += wt_l[i]
        elif wt_l[i] > best_in_window[k]:
            total += wt_l[i] - best_in_window[k]
            best_in_window[k] = wt_l[i]
        # A threshold is only realisable once every point with the same score is in.
        if (i + 1 == len(sc_l) or sc_l[i + 1] != sc_l[i]) and total > best_score:
            best_score, best_threshold = total, sc_l[i]
    return best_threshold, best_score


def normalize(raw: float, n_windows: int, profile: Profile) -> float:
    """NAB's 0-100 score: 0 = the null detector (misses every window), 100 = perfect."""
    null = -profile.fn_weight * n_windows
    perfect = profile.tp_weight * n_windows
    return 100.0 * (raw - null) / (perfect - null)


@dataclass
class ProfileResult:
    """A detector's result under one profile over a corpus."""

    profile: str
    threshold: float
    raw: float
    normalized: float
    tp: int
    fn: int
    fp: int
    delay_fraction_median: float
    delay_points_median: float
    delay_seconds_median: float
    delay_from_label_median: float
    detected_by_label_fraction: float
    files: list[FileScore]


def evaluate(
    files: Sequence[CorpusFile],
    scores: Sequence[np.ndarray],
    profiles: dict[str, Profile] | None = None,
) -> dict[str, ProfileResult]:
    """Optimise the threshold per profile and score the corpus there."""
    out = {}
    n_windows = sum(scored_windows(len(f), f.windows) for f in files)
    for name, profile in (profiles or PROFILES).items():
        threshold, raw = optimize_threshold(files, scores, profile)
        per_file = [
            score_file(f, s, threshold, profile) for f, s in zip(files, scores, strict=True)
        ]
        delays = [d for fs in per_file for d in fs.delays]
        med = (
            tuple(float(np.median([d[j] for d in delays])) for j in range(3))
            if delays
            else (math.nan, math.nan, math.nan)
        )
        from_label = [d for fs in per_file for d in fs.label_delays]
        out[name] = ProfileResult(
            name,
            threshold,
            raw,
            normalize(raw, n_windows, profile),
            sum(fs.tp for fs in per_file),
            sum(fs.fn for fs in per_file),
            sum(fs.fp for fs in per_file),
            med[1],
            med[0],
            med[2],
            float(np.median(from_label)) if from_label else math.nan,
            float(np.mean([d <= 0 for d in from_label])) if from_label else math.nan,
            per_file,
        )
    return out


# --- running detectors ------------------------------------------------------------------


def load_result_scores(results_dir: Path, files: Sequence[CorpusFile]) -> list[np.ndarray]:
    """Anomaly scores from a NAB detector's own result files (``<detector>_<file>.csv``)."""
    detector = results_dir.name
    out = []
    for f in files:
        folder, base = f.name.split("/")
        path = results_dir / folder / f"{detector}_{base}"
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        s = np.array([float(r["anomaly_score"]) for r in rows], dtype=float)
        # NAB zips the labels' timestamps with the result rows: extra rows are ignored.
        out.append(s[: len(f)])
    return out


def detector_scores(f: CorpusFile, params: dict[str, Any] | None = None) -> np.ndarray:
    """Stream one file through the production detector (point by point)."""
    cfg = DetectorConfig(**params) if params else DetectorConfig()
    det = StreamingDetector(cfg)
    ts = f.timestamps.astype("datetime64[s]").astype(np.int64).tolist()
    return np.array([det.update(t, v) for t, v in zip(ts, f.values.tolist(), strict=True)])


def _cached_scores(f: CorpusFile, cache: Path | None, tag: str) -> np.ndarray:
    if cache is None:
        return detector_scores(f)
    path = cache / tag / (f.name.replace("/", "__") + ".npy")
    if path.exists():
        return np.asarray(np.load(path))
    s = detector_scores(f)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, s)
    return s


def run_detector(
    files: Sequence[CorpusFile],
    jobs: int = 1,
    cache: Path | None = None,
    tag: str = "default",
    progress: Callable[[str], None] | None = None,
) -> list[np.ndarray]:
    """Scores of the production detector for every file (in parallel over ``jobs`` processes)."""
    if jobs <= 1:
        out = []
        for f in files:
            out.append(_cached_scores(f, cache, tag))
            if progress:
                progress(f.name)
        return out
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_cached_scores, files, [cache] * len(files), [tag] * len(files)))


def format_results(results: dict[str, ProfileResult]) -> str:
    """A Markdown table of the per-profile results."""
    lines = [
        "| profile | normalized | raw | threshold | TP | FN | FP | median delay from window "
        "start (fraction / points / hours) | median delay from the labelled anomaly (points) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        lines.append(
            f"| {r.profile} | **{r.normalized:.1f}** | {r.raw:.2f} | {r.threshold:.4f} | "
            f"{r.tp} | {r.fn} | {r.fp} | {r.delay_fraction_median:.3f} / "
            f"{r.delay_points_median:.0f} / {r.delay_seconds_median / 3600:.1f} | "
            f"{r.delay_from_label_median:+.0f} ({r.detected_by_label_fraction:.0%} at or "
            "before it) |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: score the production detector, or a published detector's results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--nab", type=Path, default=None, help="corpus directory")
    ap.add_argument("--results", type=Path, help="score NAB result files of this detector dir")
    ap.add_argument("--files", type=int, default=0, help="only the first N files (0 = all)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=None, help="cache detector scores here")
    ap.add_argument("--tag", default="default", help="cache sub-directory (detector version)")
    ap.add_argument("--per-file", action="store_true", help="print the standard per-file scores")
    ap.add_argument(
        "--half", choices=("tune", "holdout"), help="only this half of the files (split_half)"
    )
    args = ap.parse_args(argv)

    files = load_corpus(args.nab)
    if args.half:
        files = [f for f in files if split_half(f.name) == args.half]
    if args.files:
        files = files[: args.files]
    t0 = time.perf_counter()
    if args.results:
        scores = load_result_scores(args.results, files)
        label = f"{args.results.name} (its own result files)"
    else:
        scores = run_detector(files, args.jobs, args.cache, args.tag)
        label = "analytics.anomaly.StreamingDetector"
    elapsed = time.perf_counter() - t0
    results = evaluate(files, scores)
    n_points = sum(len(f) for f in files)
    print(f"{label}: {len(files)} files, {n_points} points, scored in {elapsed:.1f} s")
    print(format_results(results))
    if args.per_file:
        for fs in results["standard"].files:
            print(f"{fs.name:60s} raw {fs.raw:7.3f} tp {fs.tp} fn {fs.fn} fp {fs.fp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
