"""``junction workflow``: validate, list, graph, schema and run workflow specs.

``junction workflow run`` runs a spec as a Prefect flow (``flows/workflow.py``: every step
a task run in the UI; the first flow of a process starts Prefect's ephemeral server unless
``PREFECT_API_URL`` points at one), or in process with ``--local`` (the same runner).
Either way the run is recorded in the metrics store (``calls`` with the run id, one
``workflow_runs`` row). Exit codes: 0 completed, 1 the workflow failed (the failing step
is named), 2 bad input (invalid spec, bad parameters, configuration).
"""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from junction.cli.common import (
    console,
    err_console,
    fail,
    prepare_runtime,
    print_table,
    table,
)

if TYPE_CHECKING:
    from rich.table import Table

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
        typer.Argument(help="Spec files or built-in spec names (default: every built-in)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    strict: Annotated[bool, typer.Option(help="Treat warnings as errors.")] = False,
) -> None:
    """Validate specs without calling anything: every error as `file:line: step 'x': ...`.

    Exit code 0 when every spec is valid, 1 when any has errors, 2 when a file is missing.
    """
    from junction.workflows.validate import builtin_specs, validate_file

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
    """List the built-in specs with their parameters and steps."""
    from junction.workflows.validate import builtin_specs, validate_file

    rows: list[dict[str, Any]] = []
    for name, path in builtin_specs().items():
        result = validate_file(path)
        spec = result.spec
        if spec is None:
            rows.append({"name": name, "file": str(path), "valid": False})
            continue
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
                    {"id": s.id, "uses": s.uses, "needs": sorted(spec.dependencies()[s.id])}
                    for s in spec.steps
                ],
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    listing = table("Built-in workflows", "workflow", "parameters", "steps (after)")
    listing.show_lines = True
    for row in rows:
        if "steps" not in row:
            listing.add_row(row["name"], "[red]invalid[/]", "")
            continue
        params = "\n".join(
            f"{n}: {p['type']}" + ("*" if p["required"] else f" = {p['default']!r}")
            for n, p in row["parameters"].items()
        )
        steps = "\n".join(
            f"{s['id']}: {s['uses']}" + (f" (after {', '.join(s['needs'])})" if s["needs"] else "")
            for s in row["steps"]
        )
        listing.add_row(f"{row['name']}\n[dim]{row['description']}[/]", params, steps)
    print_table(listing)
    typer.echo("* required")


@workflow_app.command("graph")
def graph(
    specs: Annotated[
        list[str] | None,
        typer.Argument(help="Spec files or built-in names (default: every built-in)."),
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
        from datetime import UTC, datetime, timedelta

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


def _run_local(spec_ref: str, params: dict[str, Any]) -> dict[str, Any]:
    from junction.health import open_store
    from junction.settings import get_settings
    from junction.workflows.runner import run_workflow_once
    from junction.workflows.validate import load_workflow

    spec = load_workflow(spec_ref)
    settings = get_settings()
    store = open_store(settings)
    try:
        result = asyncio.run(run_workflow_once(spec, params, settings=settings, store=store))
    finally:
        store.close()
    return result.to_dict()


def _run_prefect(spec_ref: str, params: dict[str, Any]) -> dict[str, Any]:
    from junction.workflows.validate import load_workflow

    load_workflow(spec_ref)  # fail fast (exit 2) before starting Prefect
    from flows.workflow import run_workflow

    async def go() -> Any:
        return await run_workflow(spec_ref, params, return_state=True)

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
        note = s["error"] or ("cached" if s["cached"] else "coalesced" if s["coalesced"] else "")
        out.add_row(
            s["step_id"],
            f"[{colors.get(s['status'], 'white')}]{s['status']}[/]",
            s["provider"] or "-",
            f"{s['duration_ms']:.0f}",
            str(s["attempts"]),
            s["fallback"] or "",
            note,
        )
    return out


@workflow_app.command("run")
def run(
    spec: Annotated[str, typer.Argument(help="Spec file, or a built-in spec's name.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A parameter, NAME=VALUE (repeatable)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run's summary as JSON.")
    ] = False,
    local: Annotated[
        bool,
        typer.Option("--local", help="Run in process, without Prefect (same runner)."),
    ] = False,
) -> None:
    """Run a workflow: per step status, duration, attempts and fallback used."""
    prepare_runtime()
    from integrations.errors import IntegrationError
    from junction.workflows.spec import ParameterError
    from junction.workflows.validate import SpecInvalid

    try:
        params = parse_params(param or [])
        summary = _run_local(spec, params) if local else _run_prefect(spec, params)
    except SpecInvalid as exc:
        for error in exc.errors:
            err_console.print(f"[red]{error}[/red]", highlight=False)
        fail(f"{spec}: invalid spec ({len(exc.errors)} error(s)); nothing was run")
        return
    except (ParameterError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
        return
    except IntegrationError as exc:
        fail(exc.message)
        return
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_table(render_summary(summary))
        console.print(
            f"{summary['status']} in {summary['duration_ms'] / 1000:.2f}s, "
            f"{summary['retries']} retries, {summary['fallbacks']} fallback(s)"
        )
    if summary["status"] != "completed":
        step = summary.get("failed_step")
        where = f" at step {step!r}" if step else ""
        err_console.print(
            f"[red]workflow failed{where}: {summary.get('error')}[/red]", highlight=False
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``junction workflow`` to the top-level app."""
    app.add_typer(workflow_app, name="workflow")
