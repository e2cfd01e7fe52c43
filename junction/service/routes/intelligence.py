"""``/api/v2/workflows/enhanced/intelligence``: analysing and generating workflows.

``analyze``: a spec's validation, critical path, gaps and predicted success
(:mod:`analytics.intelligence.analyze`). ``generate``: a spec from plain words, previewed
and optionally saved, never run (:mod:`analytics.intelligence.generate`). Both after the
token check like every write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from analytics.intelligence.analyze import Analysis, analyze_spec, analyze_text
from analytics.intelligence.generate import GenerateError, generate
from integrations.yamlconfig import YamlLimits
from junction.service.deps import SettingsDep, StateDep, require_token
from junction.service.errors import ApiError
from junction.service.lookups import error_responses, invalid
from junction.service.routes.workflows import builtin_path

router = APIRouter(
    prefix="/api/v2/workflows/enhanced/intelligence",
    tags=["intelligence"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401),
)


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


class GenerateRequest(BaseModel):
    """A workflow described in plain words."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1_000_000, description="What the workflow does.")
    name: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="The spec's name."
    )
    save: StrictBool = Field(
        False, description="Store a valid spec in the spec folder as a new revision."
    )


class GeneratedProblem(BaseModel):
    """One validation error or warning of the generated spec."""

    line: int | None
    step: str | None
    message: str


class GeneratedValidation(BaseModel):
    """The validator's result on the generated YAML."""

    ok: bool
    errors: list[GeneratedProblem]
    warnings: list[GeneratedProblem]


class GenerateResponse(BaseModel):
    """A generated spec's preview (``ok: false``: ``refusal`` says why in one line)."""

    ok: bool
    refusal: str | None
    name: str | None
    source: str = Field(description="`offline` (the planner) or `llm`.")
    confidence: float
    assumptions: list[str]
    unmapped: list[str] = Field(description="Words of the request not mapped to anything.")
    spec: dict[str, Any] | None
    yaml: str | None
    validation: GeneratedValidation | None
    unsafe: list[str]
    existing: str | None = Field(description="The spec of the same name `diff` compares with.")
    diff: str | None
    saved: str | None
    revision: str | None = Field(description="Where `save` kept the previous text.")


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses=error_responses(403, 422),
    summary="Generate a workflow from a description",
)
def generate_workflow(request: GenerateRequest, settings: SettingsDep) -> GenerateResponse:
    """A workflow spec from plain words: the YAML, the diff against a spec of the same
    name, confidence and assumptions; validated like a hand-written spec, never run."""
    try:
        result = generate(request.text, settings, name=request.name, save=request.save)
    except GenerateError as exc:
        if exc.field == "flag":
            raise ApiError(403, "disabled", str(exc)) from None
        raise invalid(f"body.{exc.field}", str(exc).removeprefix(f"{exc.field}: ")) from None
    except OSError as exc:  # `save` into a spec folder the server cannot write
        message = f"cannot write the spec folder: {exc.strerror}"
        raise ApiError(500, "spec_folder", message) from None
    body = result.as_dict()
    for key in ("existing", "saved", "revision"):  # file names only, not the server's paths
        body[key] = body[key] and Path(body[key]).name
    return GenerateResponse.model_validate(body)
