"""``/api/v2/workflows/enhanced/intelligence``: analysing and generating workflows.

Both endpoints of the product plan are here so the API's shape is complete; the workflow
intelligence they serve (issue 12) is not built yet, so each answers 501
``not_implemented`` saying so, after the token check like every write.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from analytics.intelligence.analyze import Analysis, analyze_spec, analyze_text
from integrations.yamlconfig import YamlLimits
from junction.service.deps import StateDep, require_token
from junction.service.errors import ApiError
from junction.service.lookups import ErrorBody, error_responses
from junction.service.routes.workflows import builtin_path

router = APIRouter(
    prefix="/api/v2/workflows/enhanced/intelligence",
    tags=["intelligence"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401),
)

NOT_BUILT = (
    "workflow intelligence is not implemented yet (issue 12 builds it); "
    "meanwhile use POST /api/v2/workflows/validate and /api/v2/workflows/enhanced/"
    "optimization/analyze"
)


def _placeholder(what: str, summary: str, plan: str) -> None:
    """Register ``POST /<what>``: it answers 501 ``not_implemented`` naming issue 12."""

    def endpoint() -> ErrorBody:
        raise ApiError(501, "not_implemented", f"intelligence/{what}: {NOT_BUILT}")

    endpoint.__name__ = what
    endpoint.__doc__ = f"{plan}; answers 501 until issue 12 builds it."
    router.post(
        f"/{what}",
        response_model=ErrorBody,
        status_code=501,
        responses=error_responses(501),
        summary=f"{summary} (not implemented yet)",
    )(endpoint)


class AnalyzeRequest(BaseModel):
    """A spec to analyse: a built-in name or the YAML text (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    spec: str | None = Field(None, max_length=200, description="A built-in spec's name.")
    text: str | None = Field(
        None, max_length=YamlLimits().max_bytes, description="A spec's YAML text."
    )
    days: int | None = Field(
        None,
        ge=1,
        le=366,
        strict=True,
        description="Days of history read (default: JUNCTION_ANALYTICS_REPORT_DAYS).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AnalyzeRequest:
        if (self.spec is None) == (self.text is None):
            raise ValueError("give exactly one of `spec` (a built-in name) or `text` (YAML)")
        return self


@router.post(
    "/analyze",
    response_model=Analysis,
    responses=error_responses(404, 422, 503),
    summary="Analyse a workflow",
)
def analyze_workflow(request: AnalyzeRequest, state: StateDep) -> Analysis:
    """A spec's validation, critical path with p50/p95 per step from the metrics store,
    steps that could run in parallel, steps without retries/timeout/fallback, side effects
    without an idempotency key, the predicted success probability, and the same with the
    recommended changes applied (what-if). Nothing runs, nothing is written; an invalid
    spec is a result (``validation.ok: false``)."""
    store = state.store()
    if request.spec is not None:
        path = builtin_path(request.spec, "body.spec")
        analysis = analyze_spec(path, state.settings, store=store, days=request.days)
        # The file's name only, as /workflows/validate answers: not the server's paths.
        return analysis.model_copy(update={"source": path.name})
    return analyze_text(
        request.text or "", state.settings, source="<body.text>", store=store, days=request.days
    )


_placeholder(
    "generate",
    "Generate a workflow from a description",
    "Will generate a workflow spec from plain English",
)
