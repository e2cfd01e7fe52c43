"""``junction workflow``: validate, list, graph, schema and run workflow specs.

``junction workflow run`` checks the spec and the parameters first, then runs the spec in
this process, or as a Prefect flow (``flows/workflow.py``: every step a task run in the
UI) when a Prefect server is configured (``PREFECT_API_URL``) or ``--prefect`` asks for
one; it never starts a temporary Prefect server the user did not ask for. Either way the
run is recorded in the metrics store (``calls`` with the run id, one ``workflow_runs``
row). Exit codes: 0 completed, 1 the workflow failed (one line per failed step), 2 bad
input (invalid spec, bad parameters, configuration).

Function-level imports below keep ``junction --help`` fast (the validator, runner and
Prefect cost seconds to import).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tomllib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from junction.cli import workflow_analyze
from junction.cli.common import (
    console,
    err_console,
    fail,
    prepare_runtime,
    print_json,
    print_table,
    table,
    warn,
)
from junction.cli.workflow_generate import register as register_generate

if TYPE_CHECKING:
    from rich.table import Table

    from junction.settings import Settings
    from junction.workflows.outcomes import StepBody, StepOutcome
    from junction.workflows.spec import Step, WorkflowSpec

workflow_app = typer.Typer(
    help="Cross-service workflows: validate, list, graph and run YAML specs.",
    no_args_is_help=True,
)


class GraphFormat(StrEnum):
    """Output formats of ``junction workflow graph``."""

    MERMAID = "mermaid"
    DOT = "dot"
    JSON = "json"


@workflow_app.command("validate")
def validate(
    specs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SPEC", help="Spec files or built-in spec names (default: every built-in)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    strict: Annotated[bool, typer.Option(help="Treat warnings as errors.")] = False,
) -> None:
    """Validate specs without calling anything: every error as `file:line: step 'x': ...`.

    Exit code 0 when every spec is valid, 1 when any has errors, 2 when a file is missing.
    """
    # Function-level: the validator imports the registry and jinja; `--help` must not.
    from junction.workflows.builtins import builtin_specs
    from junction.workflows.validate import validate_file

    targets = list(specs or []) or [str(p) for p in builtin_specs().values()]
    if not targets:
        fail("no spec given and no built-in specs found")
    results = []
    for target in targets:
        try:
            results.append(validate_file(target))
        except FileNotFoundError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot read {target}: {exc}")
        except Exception as exc:  # a validator bug must still end in one clear line
            fail(f"could not validate {target}: {type(exc).__name__}: {exc}")
    failed = False
    report: list[dict[str, Any]] = []
    for result in results:
        bad = bool(result.errors) or (strict and bool(result.warnings))
        failed = failed or bad
        if as_json:
            report.append(
                {
                    "file": result.source,
                    "ok": not bad,
                    "name": result.spec.name if result.spec else None,
                    "errors": [_error_dict(e) for e in result.errors],
                    "warnings": [_error_dict(e) for e in result.warnings],
                }
            )
            continue
        for problem in [*result.errors, *result.warnings]:
            typer.echo(str(problem))
        if not bad and result.spec is not None:
            spec = result.spec
            typer.echo(
                f"{result.source}: ok: workflow {spec.name!r}, {len(spec.steps)} steps, "
                f"{len(spec.parameters)} parameters, {len(spec.topological_order())} waves"
                + (f", {len(result.warnings)} warnings" if result.warnings else "")
            )
        else:
            typer.echo(f"{result.source}: {len(result.errors)} errors")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    if failed:
        raise typer.Exit(1)


def _error_dict(error: Any) -> dict[str, Any]:
    return {"line": error.line, "step": error.step, "message": error.message}


@workflow_app.command("list")
def list_specs(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the built-in specs with their parameters and steps (nothing truncated)."""
    # Function-level: the validator imports the registry and jinja; `--help` must not.
    from junction.workflows.builtins import builtin_specs
    from junction.workflows.validate import validate_file

    rows: list[dict[str, Any]] = []
    for name, path in builtin_specs().items():
        result = validate_file(path)
        spec = result.spec
        if spec is None:
            rows.append({"name": name, "file": str(path), "valid": False})
            continue
        deps = spec.dependencies()
        rows.append(
            {
                "name": spec.name,
                "file": str(path),
                "valid": result.ok,
                "description": spec.description,
                "parameters": {
                    p: {
                        "type": param.type.value,
                        "required": param.is_required,
                        "default": param.default,
                        "description": param.description,
                    }
                    for p, param in spec.parameters.items()
                },
                "steps": [
                    {"id": s.id, "uses": s.uses, "needs": sorted(deps[s.id])} for s in spec.steps
                ],
            }
        )
    if as_json:
        print_json(rows)
        return
    # Plain lines rather than a table: a narrow terminal wraps them, never truncates.
    for row in rows:
        console.print(f"[bold]{row['name']}[/]", highlight=False)
        if "steps" not in row:
            console.print(f"  [red]invalid[/]: run `junction workflow validate {row['file']}`")
            continue
        console.print(f"  {escape(row['description'])}", highlight=False, soft_wrap=True)
        console.print("  parameters:")
        for n, p in row["parameters"].items():
            kind = p["type"] + (" (required)" if p["required"] else f" = {p['default']!r}")
            about = f": {p['description']}" if p["description"] else ""
            console.print(f"    {n}: {escape(kind + about)}", highlight=False, soft_wrap=True)
        console.print("  steps:")
        width = max(len(s["id"]) for s in row["steps"])
        for s in row["steps"]:
            after = f"  (after {', '.join(s['needs'])})" if s["needs"] else ""
            console.print(
                f"    {s['id']:<{width}}  {s['uses']}{after}", highlight=False, soft_wrap=True
            )
        console.print()


@workflow_app.command("graph")
def graph(
    specs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SPEC", help="Spec files or built-in names (default: every built-in)."
        ),
    ] = None,
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format.")] = (
        GraphFormat.MERMAID
    ),
    history: Annotated[
        bool, typer.Option(help="Add co-failures from the metrics store's call history.")
    ] = False,
    window: Annotated[int, typer.Option(help="Co-failure window, seconds.", min=1)] = 60,
    hours: Annotated[
        float, typer.Option(help="History to read, hours back from now.", min=0.0)
    ] = 24.0,
) -> None:
    """The dependency map: workflows -> steps -> services (and co-failing services)."""
    # Function-level: the validator imports the registry and jinja; `--help` must not.
    from junction.workflows.depmap import build_map
    from junction.workflows.validate import SpecInvalid, load_workflow

    chosen = None
    if specs:
        try:
            chosen = [load_workflow(s) for s in specs]
        except FileNotFoundError as exc:
            fail(str(exc))
        except SpecInvalid as exc:
            fail(f"invalid spec:\n{exc}")
    store = None
    since = None
    if history:
        # Function-level: the store imports DuckDB and pyarrow; `--help` must not.
        from junction.health import open_store

        store = open_store()
        since = datetime.now(UTC) - timedelta(hours=hours)
    try:
        dep_map = build_map(chosen, store=store, since=since, window_seconds=window)
    finally:
        if store is not None:
            store.close()
    if fmt is GraphFormat.DOT:
        typer.echo(dep_map.to_dot(), nl=False)
    elif fmt is GraphFormat.JSON:
        typer.echo(json.dumps(dep_map.to_dict(), indent=2))
    else:
        typer.echo(dep_map.to_mermaid(), nl=False)


@workflow_app.command("schema")
def schema(
    write: Annotated[
        bool, typer.Option("--write", help="Rewrite junction/workflows/workflow.schema.json.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when the published schema is stale.")
    ] = False,
) -> None:
    """Print (or publish) the JSON Schema of workflow specs."""
    # Function-level: the spec models import the catalog and jinja; `--help` must not.
    from junction.workflows.spec import render_json_schema
    from junction.workflows.validate import SCHEMA_PATH

    text = render_json_schema()
    if check:
        current = SCHEMA_PATH.read_text("utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            typer.echo(f"{SCHEMA_PATH} is stale: run `junction workflow schema --write`")
            raise typer.Exit(1)
        typer.echo(f"{SCHEMA_PATH} is up to date")
        return
    if write:
        SCHEMA_PATH.write_text(text, "utf-8")
        typer.echo(f"wrote {SCHEMA_PATH}")
        return
    typer.echo(text, nl=False)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}`` (values stay strings; the spec coerces them).

    Raises:
        ValueError: An item without ``=`` or with an empty name.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param expects NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


def configured_prefect_api() -> str | None:
    """The Prefect server the user configured: ``PREFECT_API_URL`` in the environment or
    in the active Prefect profile; ``None`` when there is none (Prefect would start a
    temporary server). Read without importing Prefect (~2 s)."""
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if url:
        return url
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        profiles = tomllib.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    entry = profiles.get("profiles", {}).get(active, {}) if isinstance(active, str) else {}
    value = entry.get("PREFECT_API_URL") if isinstance(entry, dict) else None
    return (str(value).strip() or None) if value else None


class _StepProgress:
    """A live line on stderr while a run is in flight: steps done, steps running."""

    def __init__(self, spec: WorkflowSpec, enabled: bool) -> None:
        self.total = len(spec.steps)
        self.running: list[str] = []
        self.done = 0
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not enabled,
        )
        self.task = self.progress.add_task(spec.name, total=self.total)

    def _show(self) -> None:
        running = ", ".join(self.running) or "-"
        self.progress.update(self.task, completed=self.done, description=f"running {running}")

    async def wrapper(self, step: Step, inputs: dict[str, Any], body: StepBody) -> StepOutcome:
        """A :data:`~junction.workflows.outcomes.StepWrapper` that shows the step running."""
        self.running.append(step.id)
        self._show()
        try:
            return await body()
        finally:
            self.running.remove(step.id)
            self.done += 1
            self._show()


def _run_local(
    spec: WorkflowSpec, params: dict[str, Any], settings: Settings, progress: _StepProgress
) -> dict[str, Any]:
    # Function-level: the runner imports every integration client (~1 s); `--help` must not.
    from junction.health import open_store
    from junction.workflows.journal import SideEffectJournal, journal_path
    from junction.workflows.runner import run_workflow_once

    store = open_store(settings)
    journal = SideEffectJournal(journal_path(settings.home))
    try:
        with progress.progress:
            result = asyncio.run(
                run_workflow_once(
                    spec,
                    params,
                    settings=settings,
                    store=store,
                    wrapper=progress.wrapper,
                    journal=journal,
                )
            )
    finally:
        store.close()
        journal.close()
    return result.to_dict()


def _quiet_prefect_console() -> None:
    """Prefect's console lines (task states, tracebacks of failed tasks, "Still processing
    items" at exit) would bury the summary; they still reach the Prefect server."""
    for name in ("APILogWorker", "EventsWorker"):
        logging.getLogger(name).setLevel(logging.ERROR)
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if type(handler).__name__ == "PrefectConsoleHandler":
                handler.setLevel(logging.CRITICAL)


def _run_prefect(spec_ref: str, params: dict[str, Any]) -> dict[str, Any]:
    # Function-level: importing Prefect and the flow costs ~3 s; `--help` must not.
    from flows.workflow import run_workflow

    _quiet_prefect_console()

    async def go() -> Any:
        return await run_workflow(spec_ref, params, return_state=True)

    with err_console.status("running as a Prefect flow run"):
        state: Any = asyncio.run(go())
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    summary: dict[str, Any] = data
    return summary


def render_summary(summary: dict[str, Any]) -> Table:
    """A rich table of the run's steps."""
    out = table(
        f"{summary['workflow']} run {summary['run_id']}: {summary['status']}",
        *("step", "status", "provider", "ms", "attempts", "fallback", "note"),
        right=("ms", "attempts"),
    )
    colors = {"ok": "green", "failed": "red", "skipped": "yellow"}
    for s in summary["steps"]:
        note = s["error"] or (
            "cached"
            if s["cached"]
            else "done by an earlier run"
            if s.get("reused")
            else "coalesced"
            if s["coalesced"]
            else ""
        )
        out.add_row(
            s["step_id"],
            f"[{colors.get(s['status'], 'white')}]{s['status']}[/]",
            s["provider"] or "-",
            f"{s['duration_ms']:.0f}",
            str(s["attempts"]),
            s["fallback"] or "",
            escape(note),
        )
    return out


def _report_failures(summary: dict[str, Any]) -> None:
    """One line per failed step on stderr: the step that failed the run, then the others."""
    first = summary.get("failed_step")
    for s in summary["steps"]:
        if s["status"] != "failed":
            continue
        error = escape(str(s["error"]))
        if s["step_id"] == first:
            message = f"[red]workflow failed at step {first!r}: {error}[/]"
            err_console.print(message, highlight=False, soft_wrap=True)
        else:
            warn(f"step {s['step_id']!r} failed (continue_on_error): {error}")
    if first is None and summary.get("error"):
        message = f"[red]workflow failed: {escape(str(summary['error']))}[/]"
        err_console.print(message, highlight=False, soft_wrap=True)


WHERE_HELP = """Where it runs: in this process by default; as a Prefect flow run (every step a
task run in the UI) on the Prefect server of PREFECT_API_URL when one is configured, or
with --prefect (on a temporary server when none is configured: it takes ~20 s to start).

Parameters are given with -p NAME=VALUE; `junction workflow list` shows each spec's
parameters. The onboarding and offboarding take a Workday worker's ID (worker_id): on the
sandbox, `junction sandbox records workday` lists the seeded workers and their IDs.

Everything (the spec and the parameters) is checked before anything starts. Exit codes:
0 completed, 1 the workflow failed (one line per failed step), 2 bad input."""


@workflow_app.command("run", epilog=WHERE_HELP)
def run(
    spec: Annotated[
        str, typer.Argument(metavar="SPEC", help="Spec file, or a built-in spec's name.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help="A parameter, NAME=VALUE (repeatable). worker_id: see "
            "`junction sandbox records workday`.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run's summary as JSON.")
    ] = False,
    local: Annotated[
        bool,
        typer.Option("--local", help="Run in this process even when Prefect is configured."),
    ] = False,
    prefect: Annotated[
        bool,
        typer.Option(
            "--prefect",
            help="Run as a Prefect flow run (on a temporary server without PREFECT_API_URL).",
        ),
    ] = False,
) -> None:
    """Run a workflow: per step status, duration, attempts and fallback used."""
    if local and prefect:
        fail("--local and --prefect exclude each other")
    settings = prepare_runtime()
    # Function-level: the validator imports the registry and jinja; `--help` must not.
    from junction.features import FeatureDisabledError, check_orchestration
    from junction.workflows.items import check_items
    from junction.workflows.spec import ParameterError, resolve_params
    from junction.workflows.validate import SpecInvalid, load_workflow

    try:
        loaded = load_workflow(spec)
        params = resolve_params(loaded, parse_params(param or []))
        check_items(loaded, params, settings)
        check_orchestration(loaded, settings)
    except SpecInvalid as exc:
        for error in exc.errors:
            err_console.print(f"[red]{escape(str(error))}[/red]", highlight=False, soft_wrap=True)
        fail(f"{spec}: invalid spec ({len(exc.errors)} error(s)); nothing was run")
    except (ParameterError, FileNotFoundError, ValueError, FeatureDisabledError) as exc:
        fail(f"{exc}; nothing was run")
    api = configured_prefect_api()
    as_flow = prefect or (api is not None and not local)
    if as_flow:
        where = f"the Prefect server at {api}" if api else "a temporary Prefect server (~20 s)"
        err_console.print(
            f"running {loaded.name} as a Prefect flow run on {where}",
            highlight=False,
            soft_wrap=True,
        )
    elif not local:
        err_console.print(
            f"running {loaded.name} in this process (no PREFECT_API_URL; --prefect runs it as "
            "a Prefect flow run)",
            highlight=False,
            soft_wrap=True,
        )
    interactive = err_console.is_terminal and not as_json
    try:
        if as_flow:
            summary = _run_prefect(spec, params)
        else:
            summary = _run_local(loaded, params, settings, _StepProgress(loaded, interactive))
    except (ParameterError, ValueError) as exc:
        fail(str(exc))
    except Exception as exc:  # a failure outside any step must still be one line
        fail(f"the run stopped: {type(exc).__name__}: {exc}", code=1)
    if as_json:
        print_json(summary)
    else:
        print_table(render_summary(summary))
        console.print(
            f"{summary['status']} in {summary['duration_ms'] / 1000:.2f}s, "
            f"{summary['retries']} retries, {summary['fallbacks']} fallback(s)",
            highlight=False,
        )
    if summary["status"] != "completed":
        _report_failures(summary)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``junction workflow`` to the top-level app."""
    app.add_typer(workflow_app, name="workflow")
    register_generate(workflow_app)
    workflow_analyze.register(workflow_app)
