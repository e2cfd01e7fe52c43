"""``/api/v2/workflows``: list, validate and run workflow specs, and read a run back.

The same functions as ``junction workflow list|validate|run``: the built-in specs
(:mod:`junction.workflows.builtins`), the validator (:mod:`junction.workflows.validate`)
and the runner, which records the run in the metrics store (``calls`` with its run id,
one ``workflow_runs`` row). A run goes through the Prefect deployment when a Prefect
server is configured and answering (202 with the flow run), else it runs in the service's
process (200 with its result); :mod:`junction.service.runs` decides.

A spec is named by its built-in name, never by a path: a client of the API must not be
able to make the server read a file of its choosing. ``validate`` also takes the YAML text.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from junction.features import FeatureDisabledError, check_orchestration
from junction.service import runs
from junction.service.deps import StateDep, require_token
from junction.service.errors import ApiError
from junction.service.lookups import error_responses, invalid, unknown
from junction.service.state import ServiceState
from junction.workflows.builtins import builtin_specs
from junction.workflows.items import check_items
from junction.workflows.problems import SpecError, ValidationResult
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


class FlowRun(BaseModel):
    """The Prefect flow run of a workflow run (its id is the workflow run's id)."""

    id: str
    name: str
    state: str | None = Field(description="State name: Scheduled, Running, Completed...")
    state_type: str | None = Field(description="SCHEDULED, PENDING, RUNNING, COMPLETED...")
    message: str | None
    url: str | None = Field(description="The flow run in the Prefect UI.")


class RunStarted(BaseModel):
    """A run started as a Prefect flow run (a worker runs it); follow it at ``status_url``."""

    run_id: str
    workflow: str
    status: str = Field(description="The flow run's state type in lower case: scheduled...")
    deployment: str
    status_url: str
    flow_run: FlowRun


class RunRecord(BaseModel):
    """A run: the metrics store's record once it has one (``recorded``), else what Prefect
    reports of its flow run (``status`` is then the flow run's state: scheduled, running,
    crashed...)."""

    run_id: str
    workflow: str | None
    status: str
    recorded: bool = Field(description="The metrics store has the run's record.")
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: float | None
    steps: int | None
    retries: int | None
    fallbacks: int | None
    error: str | None
    failed_step: str | None
    params: dict[str, Any]
    calls: int
    failed_calls: int
    flow_run: FlowRun | None = None


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


def _flow_run(info: runs.FlowRunInfo) -> FlowRun:
    return FlowRun.model_validate(info, from_attributes=True)


def _prefect_error(exc: Exception) -> ApiError:
    """A Prefect problem in the one error shape: 409 for the missing deployment (with how
    to deploy it), 503 for a server that failed the request."""
    if isinstance(exc, runs.DeploymentMissingError):
        return ApiError(
            409, "deployment_missing", str(exc), {"deployment": runs.WORKFLOW_DEPLOYMENT}
        )
    return ApiError(503, "prefect_unavailable", str(exc))


def check_run(request: RunRequest, state: ServiceState) -> tuple[WorkflowSpec, dict[str, Any]]:
    """The spec and its resolved parameters, checked; nothing has run.

    Raises:
        ApiError: 403 a cross-service spec while orchestration is disabled, 404 unknown
            spec, 422 invalid spec or parameters.
    """
    settings = state.settings
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
        check_orchestration(spec, settings)
    except FeatureDisabledError as exc:
        raise ApiError(403, "disabled", f"{exc}; nothing was run") from None
    try:
        params = resolve_params(spec, request.params)
        check_items(spec, params, settings)
    except ParameterError as exc:
        # The field of the first problem: every message names its parameter this way.
        named = re.search(r"parameter '([^']+)'", str(exc))
        field = f"body.params.{named.group(1)}" if named else "body.params"
        raise invalid(field, f"{exc}; nothing was run") from None
    return spec, params


async def start_run(request: RunRequest, state: ServiceState) -> RunSummary | RunStarted:
    """Check the request, then start the run: a Prefect flow run of the workflow
    deployment when a Prefect server is configured and answering, else in this process.

    Returns:
        :class:`RunStarted` (Prefect) or the finished run's :class:`RunSummary`.

    Raises:
        ApiError: As :func:`check_run`; 409 the deployment is missing; 503 Prefect failed.
    """
    spec, params = check_run(request, state)
    if await runs.prefect_reachable() is None:
        result = await runs.run_in_process(spec, params, state.settings, state.store())
        return RunSummary.model_validate(result.to_dict())
    try:
        # The built-in's name, which the flow resolves the same way (not a path: the
        # worker's checkout may live elsewhere).
        name = request.spec.removesuffix(".yaml")
        info = await runs.start_flow_run(name, dict(request.params))
    except (runs.DeploymentMissingError, runs.PrefectUnavailableError) as exc:
        raise _prefect_error(exc) from None
    return RunStarted(
        run_id=info.id,
        workflow=spec.name,
        status=info.status,
        deployment=runs.WORKFLOW_DEPLOYMENT,
        status_url=f"{router.prefix}/runs/{info.id}",
        flow_run=_flow_run(info),
    )


def _record(
    run_id: str,
    found: runs.RecordedRun | None,
    info: runs.FlowRunInfo | None,
    calls: tuple[int, int],
) -> RunRecord:
    flow_run = _flow_run(info) if info is not None else None
    if found is not None:
        values = asdict(found)
        values.pop("flow_run_url")
        return RunRecord(
            **values, recorded=True, calls=calls[0], failed_calls=calls[1], flow_run=flow_run
        )
    assert info is not None
    return RunRecord(
        run_id=run_id,
        workflow=info.workflow,
        status=info.status,
        recorded=False,
        started_at=None,
        ended_at=None,
        duration_ms=None,
        steps=None,
        retries=None,
        fallbacks=None,
        error=info.message if info.status in ("failed", "crashed") else None,
        failed_step=runs.failed_step(info.message),
        params=info.params,
        calls=calls[0],
        failed_calls=calls[1],
        flow_run=flow_run,
    )


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
    responses={
        202: {"model": RunStarted, "description": "Started as a Prefect flow run"},
        **error_responses(403, 404, 409, 503),
    },
    summary="Run a workflow (through the Prefect deployment when a server is configured)",
)
async def run_workflow(request: RunRequest, state: StateDep) -> Any:
    """Check the spec and the parameters, then run the workflow. With a Prefect server
    configured (``PREFECT_API_URL``) and answering, it becomes a flow run of the
    ``workflow/run-workflow`` deployment and the answer is 202 with the flow run (follow
    ``status_url``; 409 when the deployment is missing, with how to deploy it). Otherwise
    it runs in the service's process and the answer is 200 with its result; either way it
    is recorded in the metrics store. Bad parameters are a 422 and nothing runs."""
    started = await start_run(request, state)
    if isinstance(started, RunStarted):
        return JSONResponse(started.model_dump(mode="json"), status_code=202)
    return started


@router.get(
    "/runs/{run_id}",
    response_model=RunRecord,
    responses=error_responses(404, 503),
    summary="A workflow run (recorded, or its Prefect flow run)",
)
async def get_run(run_id: str, state: StateDep) -> RunRecord:
    """The run ``run_id``: its ``workflow_runs`` record and how many calls it made (failed
    ones too); for a Prefect flow run, also its state in Prefect (before the run is
    recorded, that state is all there is)."""
    store = state.store()
    found = runs.find_run(store, run_id)
    info: runs.FlowRunInfo | None = None
    if runs.is_flow_run_id(run_id) and await runs.prefect_reachable() is not None:
        try:
            info = await runs.read_flow_run(run_id)
        except runs.PrefectUnavailableError as exc:
            if found is None:
                raise _prefect_error(exc) from None
    if found is None and info is None:
        raise ApiError(
            404,
            "unknown_run",
            f"no workflow run {run_id!r} in the metrics store"
            + (" or on the Prefect server" if runs.prefect_api_url() else ""),
            {"field": "path.run_id"},
        )
    counted = store.query(
        "SELECT count(*) AS n, count(*) FILTER (WHERE NOT ok) AS failed FROM calls "
        "WHERE run_id = ?",
        [run_id],
    )
    calls = (int(counted["n"].iloc[0]), int(counted["failed"].iloc[0]))
    return _record(run_id, found, info, calls)
