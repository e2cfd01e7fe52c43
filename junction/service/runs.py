"""Where a workflow run started by the service runs: through Prefect, or in this process.

With a Prefect server configured (``PREFECT_API_URL``, from the environment or the active
Prefect profile) and answering, a run is a flow run of the generic workflow deployment
(:data:`WORKFLOW_DEPLOYMENT`, the ``run-workflow`` entry of ``prefect.yaml``), created
with :func:`prefect.deployments.arun_deployment` (``run_deployment``'s async form) without
waiting: a worker runs ``flows/workflow.py``, whose flow run id is the workflow run's id
in the metrics store, and its state is read back from Prefect. Without a server the run
happens in the service's process, as ``junction workflow run`` does; a temporary
(ephemeral) Prefect server is never started.

:func:`recent_runs` turns the metrics store's ``workflow_runs`` rows into what the
dashboard shows, with the step that failed each run and, for a run that was a Prefect flow
run, its page in the Prefect UI.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import get_current_settings
from prefect.utilities.urls import url_for

from junction.settings import Settings
from junction.store import MetricsStore
from junction.workflows.journal import SideEffectJournal, journal_path
from junction.workflows.outcomes import RunResult
from junction.workflows.runner import run_workflow_once
from junction.workflows.spec import WorkflowSpec

log = logging.getLogger(__name__)

WORKFLOW_DEPLOYMENT = "workflow/run-workflow"
"""The generic workflow deployment (``<flow name>/<deployment name>``) in prefect.yaml."""

DEPLOY_HINT = (
    "deploy it from the repository root: `prefect deploy --name run-workflow --no-prompt` "
    "(or `python -m deployments.local deploy`), with a worker on the junction-process pool"
)

PREFECT_TIMEOUT = 5.0
"""Seconds the service waits for the Prefect server to answer its health check."""

_FAILED_STEP = re.compile(r"^step '([^']+)'")


class DeploymentMissingError(LookupError):
    """The Prefect server has no :data:`WORKFLOW_DEPLOYMENT`."""


class PrefectUnavailableError(RuntimeError):
    """The Prefect server did not accept or answer a request."""


@dataclass(frozen=True)
class FlowRunInfo:
    """A flow run as Prefect reports it.

    Attributes:
        id: The flow run's id (also the workflow run's id).
        name: Its generated name.
        state: State name (``Scheduled``, ``Running``, ``Completed``, ``Failed``...).
        state_type: State type (``SCHEDULED``, ``PENDING``, ``RUNNING``, ``COMPLETED``...).
        message: The state's message (a failed run's names the step).
        workflow: The spec the run was given (its ``spec`` parameter).
        params: The workflow parameters it was given.
        url: Its page in the Prefect UI, when the UI's address is known.
        expected_start: When it was scheduled to start.
    """

    id: str
    name: str
    state: str | None
    state_type: str | None
    message: str | None
    workflow: str | None
    params: dict[str, Any]
    url: str | None
    expected_start: datetime | None = None

    @property
    def status(self) -> str:
        """The state type in lower case (``scheduled``, ``running``, ``completed``...)."""
        return (self.state_type or "unknown").lower()

    @classmethod
    def from_flow_run(cls, run: FlowRun) -> FlowRunInfo:
        """From Prefect's flow run object."""
        state = run.state
        params = run.parameters.get("params")
        spec = run.parameters.get("spec")
        return cls(
            id=str(run.id),
            name=run.name,
            state=state.name if state else None,
            state_type=state.type.value if state else None,
            message=state.message if state else None,
            workflow=str(spec) if spec is not None else None,
            params=dict(params) if isinstance(params, dict) else {},
            url=flow_run_url(str(run.id)),
            expected_start=run.expected_start_time,
        )


def prefect_api_url() -> str | None:
    """The configured Prefect API (``PREFECT_API_URL``, environment or profile), or None."""
    url = get_current_settings().api.url
    return url.rstrip("/") if url else None


def flow_run_url(run_id: str) -> str | None:
    """The flow run's page in the Prefect UI (``PREFECT_UI_URL``, or derived from
    ``PREFECT_API_URL``); None when no Prefect server is configured (or its address is
    not an http(s) URL: it becomes a link on a page)."""
    url = url_for("flow-run", obj_id=run_id)
    return url if url and url.startswith(("http://", "https://")) else None


def is_flow_run_id(run_id: str) -> bool:
    """Whether ``run_id`` has the form of a Prefect flow run id (a UUID with dashes; runs
    made in-process have a dashless hex id)."""
    try:
        return str(uuid.UUID(run_id)) == run_id.lower()
    except ValueError:
        return False


async def prefect_reachable() -> str | None:
    """The configured Prefect API if it answers, else None (not configured, or down).

    Any HTTP answer counts (an auth error is reported by the request that needs it); a
    connection error or a timeout means it is down.
    """
    api = prefect_api_url()
    if api is None:
        return None
    try:
        async with httpx.AsyncClient(timeout=PREFECT_TIMEOUT) as client:
            await client.get(f"{api}/health")
    except httpx.HTTPError as exc:
        log.warning("Prefect server %s does not answer (%s): running workflows here", api, exc)
        return None
    return api


async def start_flow_run(spec: str, params: dict[str, Any]) -> FlowRunInfo:
    """Create a flow run of :data:`WORKFLOW_DEPLOYMENT` and return at once (no waiting).

    Args:
        spec: The built-in spec's name.
        params: The workflow's parameters (already checked).

    Raises:
        DeploymentMissingError: The server has no such deployment.
        PrefectUnavailableError: The server refused or failed the request.
    """
    try:
        async with get_client() as client:
            run = await arun_deployment(
                WORKFLOW_DEPLOYMENT,
                client=client,
                parameters={"spec": spec, "params": params},
                timeout=0,
                as_subflow=False,
            )
    except ObjectNotFound:
        raise DeploymentMissingError(
            f"the Prefect server {prefect_api_url()} has no deployment {WORKFLOW_DEPLOYMENT!r}: "
            f"{DEPLOY_HINT}"
        ) from None
    except (PrefectHTTPStatusError, httpx.HTTPError) as exc:
        raise PrefectUnavailableError(_failure("start a flow run", exc)) from None
    return FlowRunInfo.from_flow_run(run)


async def read_flow_run(run_id: str) -> FlowRunInfo | None:
    """The flow run ``run_id`` from Prefect; None when the server does not know it.

    Raises:
        PrefectUnavailableError: The server failed the request.
    """
    try:
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(run_id))
    except ObjectNotFound:
        return None
    except (PrefectHTTPStatusError, httpx.HTTPError) as exc:
        raise PrefectUnavailableError(_failure("read the flow run", exc)) from None
    return FlowRunInfo.from_flow_run(run)


UNFINISHED = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
"""Flow run states of a run that has not recorded its result yet."""


async def unfinished_flow_runs(limit: int = 20) -> list[FlowRunInfo]:
    """Flow runs of :data:`WORKFLOW_DEPLOYMENT` not finished yet (scheduled, pending,
    running, paused), newest first: the runs the metrics store has no record of yet.

    Raises:
        PrefectUnavailableError: The server failed the request.
    """
    flow_name, deployment_name = WORKFLOW_DEPLOYMENT.split("/")
    try:
        async with get_client() as client:
            found = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=[deployment_name])
                ),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED))
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=limit,
            )
    except (PrefectHTTPStatusError, httpx.HTTPError) as exc:
        raise PrefectUnavailableError(_failure("list the flow runs", exc)) from None
    return [FlowRunInfo.from_flow_run(run) for run in found]


def _failure(what: str, exc: Exception) -> str:
    """One line: what failed against which server, with the HTTP status when there is one."""
    status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
    reason = f"HTTP {status}" if status is not None else type(exc).__name__
    return f"could not {what} on the Prefect server {prefect_api_url()} ({reason})"


async def run_in_process(
    spec: WorkflowSpec, params: dict[str, Any], settings: Settings, store: MetricsStore
) -> RunResult:
    """Run ``spec`` in this process, recorded in ``store`` (flushed before returning, so
    the run is readable at once), with the side-effect journal of ``settings.home``."""
    journal = SideEffectJournal(journal_path(settings.home))
    try:
        return await run_workflow_once(
            spec, params, settings=settings, store=store, journal=journal
        )
    finally:
        journal.close()
        store.flush()


# --- the recorded runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRun:
    """One ``workflow_runs`` row, as the dashboard and the API show it.

    Attributes:
        run_id: The run's id (a Prefect flow run's id when it ran as one).
        workflow: The spec's name.
        status: ``completed`` or ``failed``.
        started_at: Start (UTC).
        ended_at: End (UTC), when recorded.
        duration_ms: Wall time.
        steps: Steps that ran.
        retries: Retries of every step.
        fallbacks: Steps answered by a fallback provider.
        error: Why it failed.
        failed_step: The step that failed it (from its error, which names the step).
        params: Its parameters.
        flow_run_url: Its flow run in the Prefect UI, when it was a Prefect flow run and
            a Prefect server is configured.
    """

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
    failed_step: str | None
    params: dict[str, Any] = field(default_factory=dict)
    flow_run_url: str | None = None


def failed_step(error: str | None) -> str | None:
    """The step a run's error names (``step 'hire' (workday.hire) failed: ...``), if any:
    the runner records the failing step's own error as the run's error."""
    if not error:
        return None
    found = _FAILED_STEP.match(error)
    return found.group(1) if found else None


def _cell(value: Any) -> Any:
    """A store cell as plain data: NaN/NaT (pandas' missing values) -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "to_pydatetime"):
        return None if str(value) == "NaT" else value.to_pydatetime()
    return value


def recorded_run(row: Mapping[Any, Any]) -> RecordedRun:
    """A ``workflow_runs`` row (as the store's query returns it) as a :class:`RecordedRun`."""
    cells = {k: _cell(v) for k, v in row.items()}
    run_id = str(cells["run_id"])
    error = cells.get("error")
    return RecordedRun(
        run_id=run_id,
        workflow=str(cells["workflow"]),
        status=str(cells["status"]),
        started_at=cells["started_at"],
        ended_at=cells.get("ended_at"),
        duration_ms=float(cells["duration_ms"]),
        steps=int(cells["steps"]),
        retries=int(cells["retries"]),
        fallbacks=int(cells["fallbacks"]),
        error=error,
        failed_step=failed_step(error),
        params=json.loads(cells["params_json"]) if cells.get("params_json") else {},
        flow_run_url=flow_run_url(run_id) if is_flow_run_id(run_id) else None,
    )


def find_run(store: MetricsStore, run_id: str) -> RecordedRun | None:
    """The recorded run ``run_id`` (its latest row), or None."""
    rows = store.query(
        "SELECT * FROM workflow_runs WHERE run_id = ? ORDER BY started_at DESC LIMIT 1",
        [run_id],
    )
    return None if rows.empty else recorded_run(rows.iloc[0].to_dict())


def recent_runs(
    store: MetricsStore, *, limit: int = 50, workflow: str | None = None
) -> list[RecordedRun]:
    """The latest ``limit`` recorded runs, newest first (of one ``workflow`` if given)."""
    where, args = ("WHERE workflow = ?", [workflow]) if workflow else ("", [])
    rows = store.query(
        f"SELECT * FROM workflow_runs {where} ORDER BY started_at DESC LIMIT {int(limit)}",
        args,
    )
    return [recorded_run(r) for r in rows.to_dict("records")]


__all__ = [
    "DEPLOY_HINT",
    "WORKFLOW_DEPLOYMENT",
    "DeploymentMissingError",
    "FlowRunInfo",
    "PrefectUnavailableError",
    "RecordedRun",
    "failed_step",
    "find_run",
    "flow_run_url",
    "is_flow_run_id",
    "prefect_api_url",
    "prefect_reachable",
    "read_flow_run",
    "recent_runs",
    "recorded_run",
    "run_in_process",
    "start_flow_run",
    "unfinished_flow_runs",
]
