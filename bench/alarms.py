"""False alarms and incidents caught, per sensitivity, on NAB and the operations corpus.

Arms, all run over the same series in the same run:

* ``rolling z``: the textbook baseline, ``|x - mean| / std`` of the previous day of points
  (288 points at least), an alarm at z >= 3;
* ``streaming``: :class:`analytics.anomaly.StreamingDetector` at its NAB-tuned threshold
  (0.515), as shipped before the alarm stage;
* ``alarm low | medium | high``: :class:`analytics.anomaly_alarm.AlarmDetector` at each
  sensitivity.

An alarm is the first point of an excursion above the arm's threshold, at least an hour
after the arm's previous alarm (the same rule for every arm). Per corpus: **false alarms
per series-month** (alarms outside every labelled window, over the scored span: after
NAB's probationary period, or after the operations corpus' first week) and **recall**
(share of labelled windows with an alarm inside). Plus NAB's own standard and low-FP
profile scores of each arm's continuous score (threshold optimised per corpus, as NAB
does): the rolling z-score as ``z / (1 + z)``, the streaming detector's score, the alarm
detector's strength as ``s / (1 + s)`` (the confidence's order; the confidence itself
rounds to 1.0 in floating point beyond strength 12, and ties lose NAB's early credit).

Corpora: NAB whole; NAB's held-out half (:func:`nab_split`: a hash of the file name; the
other half is the one parameters may be chosen on); the operations corpus' TUNE part and
its HOLDOUT2 part (:data:`analytics.opscorpus.HOLDOUT2_IDS`), never tuned on.

Run: ``.venv/bin/python -m bench.alarms [--jobs 2] [--part holdout2|holdout|tune]
[--no-nab]`` (``--part`` picks the operations part reported beside TUNE; ``--tune`` reports
only the TUNE parts, NAB's included: the ones parameters are chosen on).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analytics import opscorpus
from analytics.anomaly_alarm import (
    COOLDOWN_SECONDS,
    SENSITIVITY_THRESHOLDS,
    AlarmDetector,
)
from bench import nab

STREAMING_THRESHOLD = 0.515
ROLLING_Z = 3.0
GOAL_FALSE_ALARMS = 2.0
GOAL_RECALL = 0.85


nab_split = nab.split_half


@dataclass
class Series:
    """A labelled series as the alarm metrics see it."""

    name: str
    timestamps: np.ndarray  # datetime64[s]
    values: np.ndarray
    windows: list[tuple[int, int]]
    scored_from: int
    kinds: list[str] = field(default_factory=list)

    @property
    def months(self) -> float:
        """Scored span in months of 30 days."""
        span = (self.timestamps[-1] - self.timestamps[self.scored_from]) / np.timedelta64(1, "s")
        return max(float(span), 0.0) / (30 * 86400)

    def corpus_file(self) -> nab.CorpusFile:
        """The same series for NAB's scorer."""
        return nab.CorpusFile(self.name, self.timestamps, self.values, self.windows)


def nab_series(files: Sequence[nab.CorpusFile]) -> list[Series]:
    """NAB files, scored after NAB's probationary period."""
    return [
        Series(f.name, f.timestamps, f.values, f.windows, nab.probation_length(len(f)))
        for f in files
    ]


def ops_series(series: Sequence[opscorpus.OpsSeries]) -> list[Series]:
    """Operations-corpus series, scored after their first week."""
    return [
        Series(
            s.name, s.timestamps, s.values, s.windows, s.scored_from, [i.kind for i in s.incidents]
        )
        for s in series
    ]


@dataclass
class Scores:
    """One series' continuous scores per arm."""

    rolling_z: np.ndarray
    streaming: np.ndarray
    strength: np.ndarray


def rolling_z(values: np.ndarray, window: int) -> np.ndarray:
    """``|x - mean| / std`` of the previous ``window`` points (0 before there are 30)."""
    s = pd.Series(values)
    prev = s.shift(1).rolling(window, min_periods=30)
    std = prev.std().to_numpy()
    z = np.abs(values - prev.mean().to_numpy()) / np.where(std > 0, std, np.nan)
    return np.nan_to_num(z, nan=0.0, posinf=0.0)


def score_series(s: Series) -> Scores:
    """Every arm's scores for one series (the detectors streamed point by point)."""
    det = AlarmDetector()
    ts = s.timestamps.astype("datetime64[s]").astype(np.int64).tolist()
    out = [det.strength(t, v) for t, v in zip(ts, s.values.tolist(), strict=True)]
    step = float(np.median(np.diff(ts[:50]))) if len(ts) > 1 else 300.0
    window = max(288, round(86400 / step)) if step > 0 else 288
    return Scores(
        rolling_z(s.values.astype(float), window),
        np.array([o[0] for o in out]),
        np.array([o[1] for o in out]),
    )


def alarm_points(s: Series, fired: np.ndarray) -> np.ndarray:
    """Indices of alarms: rising edges of ``fired``, one per cooldown, in the scored span."""
    edges = np.flatnonzero(fired & ~np.concatenate([[False], fired[:-1]]))
    secs = s.timestamps.astype("datetime64[s]").astype(np.int64)
    out = []
    last: int | None = None
    for i in edges.tolist():
        if last is None or secs[i] - last > COOLDOWN_SECONDS:
            out.append(i)
            last = int(secs[i])
    idx = np.array(out, dtype=np.int64)
    return idx[idx >= s.scored_from]


@dataclass
class AlarmResult:
    """One arm on one corpus."""

    false_alarms: int
    months: float
    caught: int
    incidents: int
    by_kind: dict[str, list[int]]

    @property
    def per_month(self) -> float:
        """False alarms per series-month."""
        return self.false_alarms / self.months if self.months else 0.0

    @property
    def recall(self) -> float:
        """Share of labelled windows with an alarm inside."""
        return self.caught / self.incidents if self.incidents else 0.0


def alarm_result(series: Sequence[Series], fired: Sequence[np.ndarray]) -> AlarmResult:
    """False alarms and windows caught over a corpus, given each series' fired points."""
    res = AlarmResult(0, 0.0, 0, 0, {})
    for s, f in zip(series, fired, strict=True):
        idx = alarm_points(s, f)
        inside = np.zeros(len(idx), dtype=bool)
        kinds = s.kinds or ["?"] * len(s.windows)
        for (left, right), kind in zip(s.windows, kinds, strict=True):
            if right < s.scored_from:
                continue
            hit = (idx >= left) & (idx <= right)
            inside |= hit
            counts = res.by_kind.setdefault(kind, [0, 0])
            counts[1] += 1
            res.incidents += 1
            if hit.any():
                res.caught += 1
                counts[0] += 1
        res.false_alarms += int((~inside).sum())
        res.months += s.months
    return res


def confidences(strength: np.ndarray) -> np.ndarray:
    """:func:`analytics.anomaly_alarm.confidence` over an array."""
    return np.where(strength > 0, 1.0 - 20.0 ** -np.maximum(strength, 0.0), 0.0)


ARMS = ("rolling z", "streaming", *(f"alarm {k}" for k in SENSITIVITY_THRESHOLDS))


def fired_for(arm: str, sc: Scores) -> np.ndarray:
    """The points where an arm is above its threshold."""
    if arm == "rolling z":
        return sc.rolling_z >= ROLLING_Z
    if arm == "streaming":
        return sc.streaming >= STREAMING_THRESHOLD
    threshold = SENSITIVITY_THRESHOLDS[arm.split()[1]]
    return confidences(sc.strength) >= threshold


def _unit(strength: np.ndarray) -> np.ndarray:
    """``s / (1 + s)``, 1 where ``s`` is infinite (a streaming score of 1)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(strength), 1.0, strength / (1.0 + strength))


def nab_profiles(series: Sequence[Series], scores: Sequence[Scores]) -> dict[str, dict[str, float]]:
    """NAB standard and low-FP scores of each arm's continuous score."""
    files = [s.corpus_file() for s in series]
    arms = {
        "rolling z": [sc.rolling_z / (1.0 + sc.rolling_z) for sc in scores],
        "streaming": [sc.streaming for sc in scores],
        # strength / (1 + strength): the confidence's order without its rounding to 1.0
        "alarm": [_unit(sc.strength) for sc in scores],
    }
    profiles = {k: nab.PROFILES[k] for k in ("standard", "reward_low_FP_rate")}
    return {
        arm: {name: r.normalized for name, r in nab.evaluate(files, sc, profiles).items()}
        for arm, sc in arms.items()
    }


def run_corpus(series: Sequence[Series], jobs: int = 1) -> list[Scores]:
    """Scores of every series (over ``jobs`` processes)."""
    if jobs <= 1:
        return [score_series(s) for s in series]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(score_series, series))


def table(name: str, series: Sequence[Series], scores: Sequence[Scores]) -> str:
    """The Markdown table of one corpus."""
    profiles = nab_profiles(series, scores)
    lines = [
        f"**{name}** ({len(series)} series, {sum(s.months for s in series):.1f} "
        "series-months scored)",
        "",
        "| arm | false alarms / series-month | recall | caught by kind | NAB standard | "
        "NAB low-FP |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        r = alarm_result(series, [fired_for(arm, sc) for sc in scores])
        kinds = ", ".join(f"{k} {c}/{n}" for k, (c, n) in sorted(r.by_kind.items()) if k != "?")
        prof = profiles["alarm" if arm.startswith("alarm") else arm]
        nab_cells = (
            f"{prof['standard']:.1f} | {prof['reward_low_FP_rate']:.1f}"
            if arm in ("rolling z", "streaming", "alarm medium")
            else "as medium | as medium"
        )
        lines.append(
            f"| {arm} | {r.per_month:.2f} | {r.recall:.1%} ({r.caught}/{r.incidents}) | "
            f"{kinds or '-'} | {nab_cells} |"
        )
    return "\n".join(lines)


def corpora(
    ops_n: int, part: opscorpus.Split, *, tune: bool = False, with_nab: bool = True
) -> dict[str, list[Series]]:
    """The corpora the bench reports: NAB whole, NAB's held-out half, ops TUNE and the ops
    ``part`` (only the TUNE parts with ``tune``; NAB left out without ``with_nab``)."""
    out: dict[str, list[Series]] = {}
    if with_nab:
        files = nab.load_corpus()
        half = "tune" if tune else "holdout"
        out["NAB whole"] = nab_series(files)
        out[f"NAB {half} half"] = nab_series([f for f in files if nab_split(f.name) == half])
    parts: list[opscorpus.Split] = ["tune"] if tune else ["tune", part]
    for p in dict.fromkeys(parts):
        ids = None if p == "holdout2" else range(ops_n)
        out[f"ops {p}"] = ops_series(opscorpus.corpus(ids, split=p))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print one table per corpus."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--ops-series", type=int, default=opscorpus.DEFAULT_SERIES)
    ap.add_argument("--tune", action="store_true", help="report only the TUNE parts")
    ap.add_argument("--part", choices=["holdout2", "holdout", "tune"], default="holdout2")
    ap.add_argument("--no-nab", action="store_true", help="leave NAB out")
    args = ap.parse_args(argv)
    scored: dict[str, list[Scores]] = {}
    all_corpora = corpora(args.ops_series, args.part, tune=args.tune, with_nab=not args.no_nab)
    whole = all_corpora.get("NAB whole", [])
    t0 = time.perf_counter()
    whole_scores = run_corpus(whole, args.jobs)
    by_name = dict(zip([s.name for s in whole], whole_scores, strict=True))
    for name, series in all_corpora.items():
        if name.startswith("NAB"):
            scored[name] = [by_name[s.name] for s in series]
        else:
            scored[name] = run_corpus(series, args.jobs)
    print(f"scored in {time.perf_counter() - t0:.0f} s")
    for name, series in all_corpora.items():
        print()
        print(table(name, series, scored[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
