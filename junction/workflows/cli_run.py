"""`junction workflow run SPEC|NAME [--param k=v ...] [--json]`.

:func:`register` adds ``run`` to the ``workflow`` sub-app (``junction/commands/workflow.py``
calls it). By default the run is a Prefect flow run (``flows/workflow.py``: every step a
task run in the UI; the first flow of a process starts Prefect's ephemeral server unless
``PREFECT_API_URL`` points at one); ``--local`` runs the same runner in process without
Prefect. Either way the run is recorded in the metrics store (``calls`` with the run id,
one ``workflow_runs`` row).

Exit codes: 0 completed, 1 the workflow failed (the failing step is named), 2 bad input
(invalid spec, bad parameters, configuration).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer


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


def render_summary(summary: dict[str, Any]) -> Any:
    """A rich table of the run's steps."""
    from rich.table import Table

    table = Table(title=f"{summary['workflow']} run {summary['run_id']}: {summary['status']}")
    for col in ("step", "status", "provider", "ms", "attempts", "fallback", "note"):
        table.add_column(col, justify="right" if col in {"ms", "attempts"} else "left")
    colors = {"ok": "green", "failed": "red", "skipped": "yellow"}
    for s in summary["steps"]:
        note = s["error"] or ("cached" if s["cached"] else "coalesced" if s["coalesced"] else "")
        table.add_row(
            s["step_id"],
            f"[{colors.get(s['status'], 'white')}]{s['status']}[/]",
            s["provider"] or "-",
            f"{s['duration_ms']:.0f}",
            str(s["attempts"]),
            s["fallback"] or "",
            note,
        )
    return table


def register(workflow_app: typer.Typer) -> None:
    """Add ``run`` to the ``junction workflow`` sub-app."""

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
        from junction.cli import _fail, _prepare_runtime, console, err_console

        _prepare_runtime()
        from integrations.errors import IntegrationError
        from junction.workflows.spec import ParameterError
        from junction.workflows.validate import SpecInvalid

        try:
            params = parse_params(param or [])
            summary = _run_local(spec, params) if local else _run_prefect(spec, params)
        except SpecInvalid as exc:
            for error in exc.errors:
                err_console.print(f"[red]{error}[/red]", highlight=False)
            _fail(f"{spec}: invalid spec ({len(exc.errors)} error(s)); nothing was run")
            return
        except (ParameterError, FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
            return
        except IntegrationError as exc:
            _fail(exc.message)
            return
        if as_json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            console.print(render_summary(summary))
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
