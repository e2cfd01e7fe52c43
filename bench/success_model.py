"""Success model benchmark: the calibrated model against the naive estimate, same runs.

For each history (``analytics.synthetic_runs.generate_spec_history``: the services the
built-in specs call, with outages, and runs of the four built-in specs whose failures
follow the services' health at that moment), the runs are ordered by start; the model
(:mod:`analytics.intelligence.training`: calibrated gradient boosting on the features of
:mod:`analytics.intelligence.features`) trains on the earlier 70 % and both arms predict the
later 30 %:

- ``naive``: the product over the services the steps call first of their success rate in
  the hour before the run (what one would compute by hand);
- ``model``: the calibrated model's P(success).

Per arm: held-out runs, failed runs, Brier score (lower is better; ratio model/naive), ROC
AUC, and the reliability curve (per bin of predicted P(success): runs, mean predicted,
observed share completed). Also the share of held-out runs the model is confident about
(``max(p, 1 - p) >= 0.85``) and the accuracy of those predictions.

Run: ``.venv/bin/python bench/success_model.py [--days 21] [--seeds 1 2 3] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics.intelligence.features import FEATURES
from analytics.intelligence.models import LoadedModel
from analytics.intelligence.training import fit, known_plans, load_dataset, score
from analytics.synthetic_runs import generate_spec_history
from junction.store import MetricsStore

THRESHOLD = 0.85


def one(days: float, seed: int, incidents: float) -> dict[str, Any]:
    """Generate a history, train on the earlier runs, score both arms on the later ones."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_spec_history(
            tmp,
            days=days,
            seed=seed,
            incidents_per_30_days=incidents,
            start=datetime(2026, 9, 1, tzinfo=UTC),
        )
        data = load_dataset(MetricsStore(tmp), known_plans())
        t1 = time.perf_counter()
        train, test = data.split(0.3)
        model = fit(train, seed=seed)
        t2 = time.perf_counter()
        p = LoadedModel("bench", model, FEATURES).predict(test.features)
        arms = {
            "naive": score(test.y, test.features["naive"].to_numpy(float)),
            "model": score(test.y, p),
        }
        confident = (abs(p - 0.5) + 0.5) >= THRESHOLD
        right = ((p >= 0.5) == (test.y == 1))[confident]
        return {
            "days": days,
            "seed": seed,
            "runs": len(data),
            "failed": data.failures,
            "train_runs": len(train),
            "data_s": round(t1 - t0, 1),
            "fit_s": round(t2 - t1, 1),
            "arms": {k: v.to_dict() for k, v in arms.items()},
            "confident_share": round(float(confident.mean()), 4),
            "confident_accuracy": round(float(right.mean()), 4) if right.size else None,
        }


def main() -> None:
    """Parse arguments, run every history, print the table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=21)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--incidents", type=float, default=10.0, help="outages per service per 30 days")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = [one(args.days, s, args.incidents) for s in args.seeds]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(
        f"{args.days:g} days of history per seed, {args.incidents:g} outages/service/30 d; "
        "train on the earlier 70 % of runs, score on the later 30 %"
    )
    print(
        "| seed | runs (failed) | held-out (failed) | arm | Brier | Brier model/naive "
        "| ROC AUC | confident share (accuracy) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        naive, model = r["arms"]["naive"], r["arms"]["model"]
        for name, arm in (("naive", naive), ("model", model)):
            ratio = f"{model['brier'] / naive['brier']:.2f}" if name == "model" else ""
            conf = (
                f"{r['confident_share']:.1%} ({r['confident_accuracy']:.1%})"
                if name == "model" and r["confident_accuracy"] is not None
                else ""
            )
            print(
                f"| {r['seed']} | {r['runs']} ({r['failed']}) | {arm['n']} ({arm['failures']}) "
                f"| {name} | {arm['brier']:.4f} | {ratio} | {arm['auc']:.3f} | {conf} |"
            )
    last = results[-1]
    print(
        f"\nReliability, seed {last['seed']} (bin of predicted P(success): runs, "
        "mean predicted -> observed completed)"
    )
    print("| bin | naive | model |")
    print("|---|---|---|")
    bins: dict[float, dict[str, str]] = {}
    for name in ("naive", "model"):
        for b in last["arms"][name]["reliability"]:
            bins.setdefault(b["lo"], {})[name] = (
                f"{b['n']}: {b['predicted']:.3f} -> {b['observed']:.3f}"
            )
    for lo in sorted(bins):
        row = bins[lo]
        print(f"| {lo:.1f}-{lo + 0.1:.1f} | {row.get('naive', '')} | {row.get('model', '')} |")
    print(
        f"\ndata {sum(r['data_s'] for r in results):.1f} s, "
        f"fit {sum(r['fit_s'] for r in results):.1f} s in total"
    )


if __name__ == "__main__":
    main()
