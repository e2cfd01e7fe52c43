"""The generic workflow flow: run any validated spec as a DAG of Prefect tasks.

Each step is a task run named after the step id (``tasks/steps.py``); the DAG, bounds,
caching, coalescing, batching, breaker/fallback, routing and recording live in
:mod:`junction.workflows.runner`. The flow run's id is the workflow run's id, so the
``calls`` and ``workflow_runs`` rows of a run point back at it in the Prefect UI.

A failed workflow ends the flow run in a ``Failed`` state whose message names the step;
the state's data is the run's summary (``RunResult.to_dict()``) either way.

Per flow run Prefect's own cost dominates (Junction's pieces take under 100 ms): the
flows do not persist their result (the summary is the ``workflow_runs`` row; persisting
would cost a server lookup of the default result storage per run), and a caller that
starts many flow runs in one process wraps them in :func:`prefect_clients` so they share
one API client pair instead of building two (an SSL context and a CSRF token each) per run.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prefect import flow
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from flows.runlog import batch_lines, emit, run_logger, workflow_lines
from flows.variables import apply_prefect_variables
from junction.features import FeatureDisabledError, check_orchestration
from junction.health import open_store
from junction.settings import Settings, get_settings
from junction.workflows.builtins import resolve_spec_path
from junction.workflows.journal import SideEffectJournal, journal_path
from junction.workflows.runner import WorkflowRunner
from junction.workflows.runtime import Runtime
from junction.workflows.spec import ParameterError, Priority, WorkflowSpec
from junction.workflows.validate import load_workflow
from tasks.steps import prefect_step

_SPECS: dict[tuple[str, int], WorkflowSpec] = {}
_RUNTIMES: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[Runtime, AsyncGenerator[None, None]]
] = weakref.WeakKeyDictionary()


async def _closing(runtime: Runtime) -> AsyncGenerator[None, None]:
    """Closes ``runtime`` when the event loop shuts down (``shutdown_asyncgens``)."""
    try:
        yield
        await asyncio.Event().wait()  # pragma: no cover - parked until the loop ends
    finally:
        await runtime.aclose()
        if runtime.store is not None:
            runtime.store.close()
        if runtime.journal is not None:
            runtime.journal.close()


async def shared_runtime(settings: Settings) -> Runtime:
    """The runtime of this event loop, shared by the flow runs the loop runs.

    Flow runs of one process and loop (a script or a benchmark calling the flow in a
    loop) reuse clients, connections, OAuth tokens, the store and the side-effect journal
    instead of building them per run; the runtime is closed when the loop shuts down
    (``asyncio.run`` closes pending async generators). Prefect's cache replaces the
    in-process cache.
    """
    loop = asyncio.get_running_loop()
    found = _RUNTIMES.get(loop)
    if found is not None and found[0].settings is settings:
        return found[0]
    if found is not None:  # settings changed (tests): start over
        await found[1].aclose()
    journal = SideEffectJournal(journal_path(settings.home))
    runtime = Runtime(settings, store=open_store(settings), cache=False, journal=journal)
    keeper = _closing(runtime)
    await keeper.__anext__()
    _RUNTIMES[loop] = (runtime, keeper)
    return runtime


@asynccontextmanager
async def prefect_clients() -> AsyncIterator[None]:
    """Share one async and one sync Prefect API client among the flow runs started inside.

    Without it every flow run builds both (an SSL context each, ~50 ms of CPU on the
    event loop, plus a CSRF-token round trip); a long-lived caller starting many flow runs
    (a script, a benchmark, a service) enters this once. Reentrant: an enclosing context's
    clients are reused.
    """
    with SyncClientContext.get_or_create():
        async with AsyncClientContext.get_or_create():
            yield


def load_spec(spec: str) -> WorkflowSpec:
    """Load and validate ``spec`` once per process and file version.

    Validation (schema, registry lookups, templates, cycles) costs ~0.1 s; a process that
    runs many flow runs of one spec pays it once, and again only when the file changes.

    Raises:
        FileNotFoundError: No such file or built-in spec.
        SpecInvalid: The spec does not validate.
    """
    path = resolve_spec_path(spec).resolve()
    key = (str(path), path.stat().st_mtime_ns)
    loaded = _SPECS.get(key)
    if loaded is None:
        loaded = _SPECS[key] = load_workflow(path)
    return loaded


def _refused(exc: Exception) -> State[Any]:
    """A run refused before anything ran: one line in the log and the state's message
    (the spec, the parameters or a feature flag named), no traceback."""
    message = "; ".join(str(exc).splitlines()) + "; nothing was run"
    run_logger().error("%s", message)
    return Failed(message=message)


# persist_result=False: the summary is stored in ``workflow_runs`` already, and an unset
# value makes every flow run ask the server for its default result storage.
@flow(name="workflow", log_prints=False, validate_parameters=False, persist_result=False)
async def run_workflow(
    spec: str, params: dict[str, Any] | None = None, priority: Priority | None = None
) -> State[Any]:
    """Run the workflow ``spec`` (a YAML path or a built-in name) once.

    Args:
        spec: The spec file, or a built-in spec's name (``employee_onboarding``).
        params: The workflow's parameters (strings are coerced to the declared types).
        priority: ``high``, ``normal`` or ``low`` in the shared rate budget (default:
            the spec's ``priority``).

    Returns:
        A ``Completed`` or ``Failed`` state carrying the run's summary dict.
    """
    await apply_prefect_variables()  # Prefect Variables fill unset settings
    settings = get_settings()
    try:
        loaded = load_spec(spec)  # validation before any side effect
        check_orchestration(loaded, settings)
    except (FileNotFoundError, ValueError, FeatureDisabledError) as exc:  # SpecInvalid too
        return _refused(exc)
    runtime = await shared_runtime(settings)
    runner = WorkflowRunner(loaded, runtime, wrapper=prefect_step)
    try:
        result = await runner.run(
            params or {}, run_id=str(flow_run.id or "") or None, priority=priority
        )
    except ParameterError as exc:  # raised before any call: nothing ran
        return _refused(exc)
    finally:
        if runtime.store is not None:
            runtime.store.flush()  # the monitor sees this run's rows now
    summary = result.to_dict()
    emit(run_logger(), workflow_lines(summary))
    if result.ok:
        return Completed(data=summary, message=f"{loaded.name}: completed")
    return Failed(data=summary, message=result.error or f"{loaded.name}: failed")


@flow(name="workflow-batch", log_prints=False, validate_parameters=False, persist_result=False)
async def run_workflows(
    spec: str,
    params_list: list[dict[str, Any]],
    concurrency: int = 4,
    priority: Priority | None = None,
) -> list[dict[str, Any]]:
    """Run ``spec`` once per parameter set inside one flow run (steps are its task runs).

    One flow run pays Prefect's per-flow-run cost once for the whole batch, and the runs
    share one runtime: clients and their connections and OAuth tokens, per-integration
    bounds, coalescing and batching across runs (onboarding a list of hires). Each run
    still records its own ``workflow_runs`` row and ``calls`` rows under its own run id.

    Args:
        spec: The spec file, or a built-in spec's name.
        params_list: One parameter mapping per run.
        concurrency: Runs in flight at once.
        priority: The runs' priority in the shared rate budget (default: the spec's).

    Returns:
        Each run's summary (``RunResult.to_dict()``), in order.
    """
    await apply_prefect_variables()  # Prefect Variables fill unset settings
    loaded = load_spec(spec)
    settings = get_settings()
    check_orchestration(loaded, settings)  # FeatureDisabledError: one line naming the flag
    runtime = await shared_runtime(settings)
    runner = WorkflowRunner(loaded, runtime, wrapper=prefect_step)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(params: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return (await runner.run(params, priority=priority)).to_dict()

    try:
        summaries = list(await asyncio.gather(*(one(p) for p in params_list)))
    finally:
        if runtime.store is not None:
            runtime.store.flush()
    emit(run_logger(), batch_lines(loaded.name, summaries))
    return summaries
