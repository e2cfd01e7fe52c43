"""``/api/v2/workflows``: list, validate and run workflow specs, and read a run back.

The same functions as ``junction workflow list|validate|run``: the built-in specs
(:mod:`junction.workflows.builtins`), the validator (:mod:`junction.workflows.validate`)
and :func:`junction.workflows.runner.run_workflow_once`, which records the run in the
metrics store (``calls`` with its run id, one ``workflow_runs`` row).

A spec is named by its built-in name, never by a path: a client of the API must not be
able to make the server read a file of its choosing. ``validate`` also takes the YAML text.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from junction.service.deps import StateDep, require_token
from junction.service.errors import ApiError
from junction.service.lookups import error_responses, invalid, unknown
from junction.workflows.builtins import builtin_specs
from junction.workflows.items import check_items
from junction.workflows.journal import SideEffectJournal, journal_path
from junction.workflows.problems import SpecError, ValidationResult
from junction.workflows.runner import run_workflow_once
from junction.workflows.spec import ParameterError, WorkflowSpec, resolve_params
from junction.workflows.validate import SpecInvalid, load_workflow, validate_file, validate_text

router = APIRouter(
    prefix="/api/v2/workflows",
    tags=["workflows"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)


# --- models ---------------------------------------------------------------------------------


class ParameterInfo(BaseModel):
    """One declared parameter of a spec."""

    type: str
    required: bool
    default: Any = None
    description: str | None = None


class StepInfo(BaseModel):
    """One step of a spec and the steps it waits for."""

    id: str
    uses: str
    needs: list[str]


class WorkflowInfo(BaseModel):
    """A built-in spec (``valid: false``: see ``POST /api/v2/workflows/validate``)."""

    name: str
    valid: bool
    description: str | None = None
    parameters: dict[str, ParameterInfo] = Field(default_factory=dict)
    steps: list[StepInfo] = Field(default_factory=list)


class WorkflowList(BaseModel):
    """The built-in specs."""

    workflows: list[WorkflowInfo]


class ValidateRequest(BaseModel):
    """A spec to validate: a built-in name or the YAML text (exactly one)."""

    spec: str | None = Field(None, description="A built-in spec's name.")
    text: str | None = Field(None, description="A spec's YAML text.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ValidateRequest:
        if (self.spec is None) == (self.text is None):
            raise ValueError("give exactly one of `spec` (a built-in name) or `text` (YAML)")
        return self


class Problem(BaseModel):
    """One validation error or warning, with its line and step."""

    line: int | None
    step: str | None
    message: str


class ValidationReport(BaseModel):
    """What the validator found (nothing was run or sent)."""

    source: str
    ok: bool
    name: str | None
    steps: int | None
    errors: list[Problem]
    warnings: list[Problem]


class RunRequest(BaseModel):
    """A built-in spec to run, with its parameters."""

    spec: str = Field(description="A built-in spec's name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters by name.")


class StepResult(BaseModel):
    """What one step of a run did."""

    step_id: str
    status: str
    uses: str
    provider: str | None
    fallback: str | None
    attempts: int
    retries: int
    calls: int
    cached: bool
    reused: bool
    coalesced: bool
    duration_ms: float
    started_at: datetime | None
    output: Any = None
    error: str | None
    error_class: str | None
    tried: list[str]


class RunSummary(BaseModel):
    """A finished run: ``status`` is ``completed`` or ``failed`` (a failed run is a result,
    not an error: ``failed_step`` and ``error`` say why)."""

    run_id: str
    workflow: str
    status: str
    started_at: datetime
    duration_ms: float
    retries: int
    fallbacks: int
    error: str | None
    failed_step: str | None
    params: dict[str, Any]
    outputs: dict[str, Any]
    steps: list[StepResult]


class RunRecord(BaseModel):
    """A run as the metrics store recorded it."""

    run_id: str
    workflow: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    duration_ms: float
    steps: int
    retries: int
    fallbacks: int
    error: str | None
    params: dict[str, Any]
    calls: int
    failed_calls: int


# --- helpers --------------------------------------------------------------------------------


def builtin_path(name: str, field: str) -> Path:
    """The built-in spec called ``name``; 404 with the closest name otherwise."""
    specs = builtin_specs()
    path = specs.get(name.removesuffix(".yaml"))
    if path is None:
        raise unknown("spec", name, specs, field=field)
    return path


def _problem(error: SpecError) -> Problem:
    return Problem(line=error.line, step=error.step, message=error.message)


def _report(result: ValidationResult, source: str) -> ValidationReport:
    spec = result.spec
    return ValidationReport(
        source=source,
        ok=result.ok,
        name=spec.name if spec else None,
        steps=len(spec.steps) if spec else None,
        errors=[_problem(e) for e in result.errors],
        warnings=[_problem(e) for e in result.warnings],
    )


def _info(name: str, result: ValidationResult) -> WorkflowInfo:
    spec = result.spec
    if spec is None:
        return WorkflowInfo(name=name, valid=False)
    deps = spec.dependencies()
    return WorkflowInfo(
        name=spec.name,
        valid=result.ok,
        description=spec.description,
        parameters={
            p: ParameterInfo(
                type=param.type.value,
                required=param.is_required,
                default=param.default,
                description=param.description,
            )
            for p, param in spec.parameters.items()
        },
        steps=[StepInfo(id=s.id, uses=s.uses, needs=sorted(deps[s.id])) for s in spec.steps],
    )


def _opt(value: Any) -> Any:
    """A store cell as JSON data: NaN/NaT (pandas' missing values) -> ``None``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "to_pydatetime"):
        return None if str(value) == "NaT" else value.to_pydatetime()
    return value


# --- routes ---------------------------------------------------------------------------------


@router.get("", response_model=WorkflowList, summary="List the built-in workflow specs")
def list_workflows() -> WorkflowList:
    """Every built-in spec with its parameters and steps."""
    return WorkflowList(
        workflows=[_info(name, validate_file(path)) for name, path in builtin_specs().items()]
    )


@router.post(
    "/validate",
    response_model=ValidationReport,
    responses=error_responses(404),
    summary="Validate a workflow spec",
)
def validate_workflow(request: ValidateRequest) -> ValidationReport:
    """Validate a built-in spec or posted YAML without running anything: every error with
    its line and step. An invalid spec is a result (``ok: false``), not an error."""
    if request.spec is not None:
        path = builtin_path(request.spec, "body.spec")
        return _report(validate_file(path), path.name)
    return _report(validate_text(request.text or "", source="<body.text>"), "<body.text>")


@router.post(
    "/run",
    response_model=RunSummary,
    responses=error_responses(403, 404),
    summary="Run a workflow in this process",
)
async def run_workflow(request: RunRequest, state: StateDep) -> RunSummary:
    """Check the spec and the parameters, then run the workflow in the service's process;
    the run (its calls and one ``workflow_runs`` row) is recorded in the metrics store.
    Bad parameters are a 422 and nothing runs."""
    settings = state.settings
    if not settings.cross_service_orchestration_enabled:
        raise ApiError(
            403,
            "disabled",
            "workflow runs are disabled (JUNCTION_CROSS_SERVICE_ORCHESTRATION_ENABLED=false)",
        )
    path = builtin_path(request.spec, "body.spec")
    try:
        spec: WorkflowSpec = load_workflow(path)
    except SpecInvalid as exc:
        raise ApiError(
            422,
            "invalid_spec",
            f"{path.name}: invalid spec ({len(exc.errors)} error(s)); nothing was run",
            [_problem(e).model_dump() for e in exc.errors],
        ) from None
    try:
        params = resolve_params(spec, request.params)
        check_items(spec, params, settings)
    except ParameterError as exc:
        # The field of the first problem: every message names its parameter this way.
        named = re.search(r"parameter '([^']+)'", str(exc))
        field = f"body.params.{named.group(1)}" if named else "body.params"
        raise invalid(field, f"{exc}; nothing was run") from None
    store = state.store()
    journal = SideEffectJournal(journal_path(settings.home))
    try:
        result = await run_workflow_once(
            spec, params, settings=settings, store=store, journal=journal
        )
    finally:
        journal.close()
        store.flush()  # the run is readable from the store once this answers
    return RunSummary.model_validate(result.to_dict())


@router.get(
    "/runs/{run_id}",
    response_model=RunRecord,
    responses=error_responses(404),
    summary="A recorded workflow run",
)
def get_run(run_id: str, state: StateDep) -> RunRecord:
    """The ``workflow_runs`` row of ``run_id`` and how many calls it made (failed ones too)."""
    store = state.store()
    runs = store.query(
        "SELECT * FROM workflow_runs WHERE run_id = ? ORDER BY started_at DESC LIMIT 1",
        [run_id],
    )
    if runs.empty:
        raise ApiError(
            404,
            "unknown_run",
            f"no workflow run {run_id!r} in the metrics store",
            {"field": "path.run_id"},
        )
    calls = store.query(
        "SELECT count(*) AS n, count(*) FILTER (WHERE NOT ok) AS failed FROM calls "
        "WHERE run_id = ?",
        [run_id],
    )
    row = {k: _opt(v) for k, v in runs.iloc[0].to_dict().items()}
    return RunRecord(
        run_id=row["run_id"],
        workflow=row["workflow"],
        status=row["status"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        duration_ms=row["duration_ms"],
        steps=int(row["steps"]),
        retries=int(row["retries"]),
        fallbacks=int(row["fallbacks"]),
        error=row["error"],
        params=json.loads(row["params_json"]) if row["params_json"] else {},
        calls=int(calls["n"].iloc[0]),
        failed_calls=int(calls["failed"].iloc[0]),
    )
