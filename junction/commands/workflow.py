"""`junction workflow` commands: validate, list, graph, schema (and `run`, from the runner).

``workflow_app`` is the sub-typer; the runner's module ``junction.workflows.cli_run``
adds ``run`` to it through its ``register(workflow_app)`` when it exists.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer

workflow_app = typer.Typer(
    help="Cross-service workflows: validate, list, graph and run YAML specs.",
    no_args_is_help=True,
)


class GraphFormat(StrEnum):
    """Output formats of ``junction workflow graph``."""

    MERMAID = "mermaid"
    DOT = "dot"
    JSON = "json"


def _fail(message: str, code: int = 2) -> None:
    from junction.cli import _fail as fail

    fail(message, code)


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
        _fail("no spec given and no built-in specs found")
    results = []
    for target in targets:
        try:
            results.append(validate_file(target))
        except FileNotFoundError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"cannot read {target}: {exc}")
        except Exception as exc:  # a validator bug must still end in one clear line
            _fail(f"could not validate {target}: {type(exc).__name__}: {exc}")
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
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Built-in workflows", show_lines=True)
    table.add_column("workflow")
    table.add_column("parameters")
    table.add_column("steps (after)")
    for row in rows:
        if "steps" not in row:
            table.add_row(row["name"], "[red]invalid[/]", "")
            continue
        params = "\n".join(
            f"{n}: {p['type']}" + ("*" if p["required"] else f" = {p['default']!r}")
            for n, p in row["parameters"].items()
        )
        steps = "\n".join(
            f"{s['id']}: {s['uses']}" + (f" (after {', '.join(s['needs'])})" if s["needs"] else "")
            for s in row["steps"]
        )
        table.add_row(f"{row['name']}\n[dim]{row['description']}[/]", params, steps)
    Console().print(table)
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
            _fail(str(exc))
        except SpecInvalid as exc:
            _fail(f"invalid spec:\n{exc}")
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


def register(app: typer.Typer) -> None:
    """Add ``junction workflow`` (and the runner's ``run`` when it is installed)."""
    try:
        from junction.workflows import cli_run
    except ImportError:
        cli_run = None  # type: ignore[assignment]
    if cli_run is not None and not any(c.name == "run" for c in workflow_app.registered_commands):
        cli_run.register(workflow_app)
    app.add_typer(workflow_app, name="workflow")
