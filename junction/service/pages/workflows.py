"""``/workflows``: recent runs (status, duration, retries and fallbacks, the failed step, the
flow run in the Prefect UI when it ran as one) and the built-in workflows, each with a
"validate" and a "run" form.

The forms go through the API's own code (:func:`junction.service.routes.workflows.
validate_workflow` and :func:`~junction.service.routes.workflows.start_run`): the same
checks, the same choice between the Prefect deployment and this process, the same record
in the metrics store. Each post redirects back with one line saying what happened.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from analytics.intelligence.models import live_summary
from junction.service.deps import StateDep
from junction.service.errors import ApiError
from junction.service.pages.flash import flash, see_other, take_flashes
from junction.service.routes.workflows import (
    RunRequest,
    RunStarted,
    ValidateRequest,
    list_workflows,
    start_run,
    validate_workflow,
)
from junction.service.runs import (
    FlowRunInfo,
    PrefectUnavailableError,
    prefect_api_url,
    prefect_reachable,
    recent_runs,
    unfinished_flow_runs,
)
from junction.service.web import CsrfDep, PageDep, render

router = APIRouter(include_in_schema=False)

PAGE = "/workflows"
RUNS_SHOWN = 50
"""Recent runs listed."""

PARAM_PREFIX = "param."
"""Form fields ``param.<name>`` carry the workflow's parameters."""


def shown_default(value: Any) -> str:
    """A parameter's default as the form's placeholder: text as is, the rest as JSON (what
    the field accepts)."""
    return value if isinstance(value, str) else json.dumps(value)


@router.get(PAGE, response_class=HTMLResponse)
async def workflows_page(request: Request, state: StateDep, _session: PageDep) -> HTMLResponse:
    """Recent runs, the Prefect flow runs not finished yet, and the built-in workflows."""
    recorded = await asyncio.to_thread(recent_runs, state.store(), limit=RUNS_SHOWN)
    prefect = await prefect_reachable()
    unfinished: list[FlowRunInfo] = []
    problem = None
    if prefect is not None:
        try:
            unfinished = await unfinished_flow_runs()
        except PrefectUnavailableError as exc:
            problem = str(exc)
    done = {r.run_id for r in recorded}
    return render(
        request,
        "workflows.html",
        {
            "flashes": take_flashes(request),
            "runs": recorded,
            "unfinished": [r for r in unfinished if r.id not in done],
            "workflows": list_workflows().workflows,
            "shown": shown_default,
            "prefect": prefect,
            "prefect_configured": prefect_api_url(),
            "problem": problem,
            "success_model": live_summary(state.settings),
        },
        active="workflows",
    )


@router.post(f"{PAGE}/{{name}}/validate")
def validate(request: Request, name: str, _session: PageDep, _csrf: CsrfDep) -> RedirectResponse:
    """Validate a built-in spec (nothing runs)."""
    try:
        report = validate_workflow(ValidateRequest(spec=name, text=None))
    except ApiError as exc:
        flash(request, exc.message, "error")
        return see_other(PAGE)
    if report.ok:
        warned = f", {len(report.warnings)} warning(s)" if report.warnings else ""
        flash(request, f"{report.source}: valid ({report.steps} steps{warned})")
        return see_other(PAGE)
    first = report.errors[0]
    where = f"line {first.line}: " if first.line else ""
    flash(
        request,
        f"{report.source}: {len(report.errors)} error(s); {where}{first.message}",
        "error",
    )
    return see_other(PAGE)


@router.post(f"{PAGE}/{{name}}/run")
async def run(
    request: Request, name: str, state: StateDep, _session: PageDep, _csrf: CsrfDep
) -> RedirectResponse:
    """Run a built-in spec with the parameters filled in (empty ones take their default)."""
    form = await request.form()
    params = {
        key.removeprefix(PARAM_PREFIX): value.strip()
        for key, value in form.items()
        if key.startswith(PARAM_PREFIX) and isinstance(value, str) and value.strip()
    }
    try:
        result = await start_run(RunRequest(spec=name, params=params), state)
    except ApiError as exc:
        flash(request, exc.message.replace("body.params.", "").replace("body.", ""), "error")
        return see_other(PAGE)
    if isinstance(result, RunStarted):
        flash(
            request,
            f"{result.workflow}: started as Prefect flow run {result.flow_run.name} "
            f"({result.status}); it appears below once a worker has run it",
        )
    elif result.status == "completed":
        flash(request, f"{result.workflow}: run {result.run_id} completed")
    else:
        step = f" at step {result.failed_step!r}" if result.failed_step else ""
        flash(
            request, f"{result.workflow}: run {result.run_id} failed{step}: {result.error}", "error"
        )
    return see_other(PAGE)
