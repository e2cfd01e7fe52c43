"""``/api/v2/workflows/enhanced/optimization``: recommendations, and applying them.

The same functions as ``junction analytics recommend|apply``:
:func:`analytics.report.pipeline.recommendations_for` over the metrics store's window and
:func:`analytics.apply.apply_recommendations`, which validates every edited spec before
writing it, keeps the previous revision and returns the diff. The specs analysed and
edited are those of ``JUNCTION_ANALYTICS_SPEC_DIR`` (default: the built-in specs).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StrictBool

from analytics.apply import apply_recommendations
from analytics.recommend import Recommendation
from analytics.report.pipeline import default_spec_dir, recommendations_for
from analytics.report.queries import window_end
from integrations.yamlconfig import did_you_mean
from junction.service.deps import StateDep, require_token
from junction.service.errors import ApiError
from junction.service.lookups import error_responses, invalid
from junction.service.state import ServiceState

router = APIRouter(
    prefix="/api/v2/workflows/enhanced/optimization",
    tags=["optimization"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)


_APPLY_LOCK = threading.Lock()
"""One apply at a time: two would number the same revision and race on the spec file."""


class AnalyzeRequest(BaseModel):
    """Which history to analyse."""

    # strict: JSON's true is not a number of days or a confidence (lax mode takes it as 1).
    model_config = {"strict": True}

    days: Annotated[
        int | None,
        Field(
            ge=1, le=366, description="Days of history (default: JUNCTION_ANALYTICS_REPORT_DAYS)."
        ),
    ] = None


class ApplyRequest(AnalyzeRequest):
    """Which recommendations to write: those accepted by id, else every one at or above
    the confidence threshold."""

    accept: list[str] | None = Field(
        None, description="Recommendation ids to apply whatever their confidence."
    )
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Confidence for automatic apply (default: "
        "JUNCTION_ANALYTICS_AUTO_APPLY_CONFIDENCE).",
    )
    dry_run: StrictBool = Field(False, description="Compute the diffs, write nothing.")


class Window(BaseModel):
    """The history analysed."""

    start: datetime
    end: datetime


class RecommendationInfo(BaseModel):
    """One optimization found in the recorded runs."""

    id: str
    kind: str
    workflow: str
    step: str
    service: str
    title: str
    saving_ms_per_day: float
    saving_calls_per_day: float
    confidence: float
    change: str
    rationale: str


class Analysis(BaseModel):
    """Recommendations, most confident first (``window`` is null for an empty store)."""

    window: Window | None
    recommendations: list[RecommendationInfo]


class AppliedSpec(BaseModel):
    """One spec file changed (or that would change, in a dry run)."""

    spec: str
    revision: str | None
    applied: list[str]
    diff: str


class Skipped(BaseModel):
    """A recommendation not applied, and why (a change the validator rejects is one)."""

    id: str
    reason: str


class ApplyReport(BaseModel):
    """What apply wrote: per spec the revision kept and the diff; what it skipped."""

    dry_run: bool
    specs: list[AppliedSpec]
    skipped: list[Skipped]


def _recommendations(
    state: ServiceState, days: int | None
) -> tuple[Window | None, list[Recommendation]]:
    settings = state.settings
    if not settings.workflow_optimization_enabled:
        raise ApiError(
            403,
            "disabled",
            "workflow optimization is disabled (JUNCTION_WORKFLOW_OPTIMIZATION_ENABLED=false)",
        )
    store = state.store()
    end = window_end(store)
    if end is None:
        return None, []
    start = end - timedelta(days=days or settings.analytics_report_days)
    folder = settings.analytics_spec_dir or default_spec_dir()
    return Window(start=start, end=end), recommendations_for(store, start, end, folder)


@router.post(
    "/analyze",
    response_model=Analysis,
    responses=error_responses(403),
    summary="Recommend workflow optimizations",
)
def analyze(state: StateDep, request: AnalyzeRequest | None = None) -> Analysis:
    """Optimization recommendations from the recorded workflow runs and calls: caching,
    parallel steps, batching, a better provider, retries and timeouts, each with its
    estimated saving and confidence. Their ids are what ``apply`` accepts."""
    window, recs = _recommendations(state, (request or AnalyzeRequest()).days)
    return Analysis(
        window=window,
        recommendations=[RecommendationInfo.model_validate(r.as_row()) for r in recs],
    )


@router.post(
    "/apply",
    response_model=ApplyReport,
    responses=error_responses(403),
    summary="Apply workflow optimizations",
)
def apply(request: ApplyRequest, state: StateDep) -> ApplyReport:
    """Write recommended changes into the workflow specs: each edited spec is validated
    first (a change that would make it invalid is skipped with the reason, nothing
    written), the previous revision is kept and the diff returned. An unknown id in
    ``accept`` is a 422 and nothing is written."""
    _, recs = _recommendations(state, request.days)
    if request.accept is not None:
        ids = [r.id for r in recs]
        for i, rec_id in enumerate(request.accept):
            if rec_id not in ids:
                raise invalid(
                    f"body.accept[{i}]",
                    f"unknown recommendation id {rec_id!r}{did_you_mean(rec_id, ids)}; "
                    "nothing was applied",
                )
    threshold = request.threshold
    result = apply_recommendations(
        recs,
        threshold=state.settings.analytics_auto_apply_confidence
        if threshold is None
        else threshold,
        accept=request.accept,
        dry_run=request.dry_run,
    )
    return ApplyReport.model_validate(result.as_dict())
