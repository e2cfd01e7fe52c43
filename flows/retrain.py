"""The retrain-success-model flow (weekly deployment ``retrain-success-model``).

Trains a candidate success model on the recorded runs, scores it against the live model
and the naive estimate on the most recent held-out runs, promotes it only if it is better
(:func:`analytics.intelligence.models.train_and_maybe_promote`), and publishes the
comparison as the ``success-model`` artifact. Too little history is a completed run that
says so (predictions keep the naive estimate), not a failure.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from analytics.intelligence.models import TrainResult, train_and_maybe_promote
from junction.settings import get_settings


def _markdown(result: TrainResult) -> str:
    lines = [f"**{result.message}**", ""]
    arms = [("candidate", result.candidate), ("live", result.live), ("naive", result.naive)]
    rows = [(name, s) for name, s in arms if s is not None]
    if rows:
        lines += ["| arm | held-out runs | failed | Brier | ROC AUC |", "|---|---|---|---|---|"]
        for name, s in rows:
            auc = "-" if s.auc is None else f"{s.auc:.3f}"
            lines.append(f"| {name} | {s.n} | {s.failures} | {s.brier:.4f} | {auc} |")
    return "\n".join(lines)


@flow(name="retrain-success-model", log_prints=False)
def retrain_success_model(promote: bool = True) -> dict[str, Any]:
    """Train, evaluate against the live model on the latest held-out runs, maybe promote.

    Args:
        promote: Promote the candidate when it is better (``False``: store it only).

    Returns:
        The round's result (:meth:`TrainResult.to_dict`).
    """
    result = train_and_maybe_promote(get_settings(), promote=promote)
    get_run_logger().info("%s", result.message)
    create_markdown_artifact(
        key="success-model", markdown=_markdown(result), description="Success model retraining"
    )
    return result.to_dict()
