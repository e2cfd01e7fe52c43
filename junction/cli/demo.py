"""``junction demo``: the main job on the embedded defaults."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from junction.cli.common import console, fail, load_settings, prepare_runtime, print_table


def register(app: typer.Typer) -> None:
    """Add ``junction demo`` to the top-level app."""
    app.command("demo")(demo)


def demo(
    port: Annotated[int, typer.Option(help="Sandbox port (0 = any free port).")] = 0,
    faults: Annotated[
        str,
        typer.Option(
            help="Sandbox fault profile: a packaged name (default, flaky) or a YAML file."
        ),
    ] = "default",
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Also write the analytics report over 21 days of generated history.",
        ),
    ] = True,
) -> None:
    """Monitor every integration, run the onboarding workflow, write the analytics report.

    All on the embedded defaults: the sandbox of simulated services, Prefect's ephemeral
    mode and the local metrics store.
    """
    prepare_runtime()
    # Function-level: the sandbox, Prefect and the flows cost seconds to import.
    from prefect.exceptions import FailedRun

    from integrations.sandbox.app import SandboxServer, load_profile
    from junction.cli.monitor import health_table
    from junction.cli.workflow import render_summary
    from junction.health import open_store
    from junction.settings import get_settings

    try:
        profile, source = load_profile(faults)
    except (OSError, ValueError) as exc:
        fail(f"cannot load fault profile {faults!r}: {exc}")
    console.print(
        f"[bold]Junction demo[/]: starting the sandbox of simulated services (faults: {source})..."
    )
    with SandboxServer(port=port, smtp_port=0, profile=profile) as sandbox:
        os.environ["JUNCTION_SANDBOX_URL"] = sandbox.url
        os.environ["JUNCTION_SANDBOX_SMTP_PORT"] = str(sandbox.smtp_port)
        get_settings.cache_clear()
        settings = load_settings()
        console.print(f"sandbox at {sandbox.url} (SMTP on port {sandbox.smtp_port})")
        console.print(
            "1/3 the [bold]monitor-integrations[/] Prefect flow: probe, score, alert "
            "(ephemeral Prefect server; the first flow of a process takes ~20 s to start it)..."
        )
        try:
            sweep, state = asyncio.run(_demo_flows())
        except FailedRun as exc:  # the monitor flow ends Failed with a one-line reason
            fail(str(exc))
        workflow = state.result(raise_on_failure=False)
        if isinstance(workflow, BaseException):
            fail(f"the onboarding workflow could not run: {workflow}")

    print_table(health_table(sweep.services, "Integration health"))
    counts = sweep.counts()
    healthy = counts.get("healthy", 0)
    console.print(
        "2/3 the [bold]employee_onboarding[/] workflow (Workday -> Okta + GitLab -> Webex "
        "welcome + Jira ticket) as a Prefect flow:"
    )
    print_table(render_summary(workflow))
    store = open_store(settings)
    probes, calls, runs = (store.count(t) for t in ("probes", "calls", "workflow_runs"))
    console.print(
        f"{healthy}/{len(sweep.services)} integrations healthy; workflow "
        f"{workflow.get('status')}. Recorded in {settings.metrics_dir}: {probes} probe rows, "
        f"{calls} call rows, {runs} workflow run rows."
    )
    if report:
        console.print(
            "3/3 the [bold]analytics-report[/] flow over 21 days of generated history "
            "(8 services, 5-minute resolution: validation, trends, anomalies, forecasts)..."
        )
        path = _demo_report(Path(settings.home))
        console.print(f"report: {path}  (open it in a browser)")
    if healthy != len(sweep.services) or workflow.get("status") != "completed":
        raise typer.Exit(1)


async def _demo_flows() -> tuple[Any, Any]:
    # Function-level: importing the flows imports Prefect (seconds).
    from flows.monitor import monitor_integrations
    from flows.workflow import run_workflow

    sweep = await monitor_integrations()
    # The sandbox seeds Workday workers; worker 0's ID is the md5 of "worker-0".
    worker = hashlib.md5(b"worker-0", usedforsecurity=False).hexdigest()
    state = await run_workflow("employee_onboarding", {"worker_id": worker}, return_state=True)
    return sweep, state


def _demo_report(home: Path) -> Path:
    # Function-level: pandas, DuckDB, Prophet and Prefect (seconds).
    from analytics.synthetic import generate_history
    from analytics.synthetic_runs import generate_spec_runs
    from flows.analytics_report import analytics_report
    from junction.settings import get_settings

    history = home / "demo-history"
    if not (history / "calls").exists():
        # With the incidents' alert history: the scorecard's detection time needs it.
        truth = generate_history(history, services=8, days=21, seed=7, alerts=True)
        generate_spec_runs(history, truth, seed=7)  # runs of the built-in specs, with run_id
    os.environ["JUNCTION_STORE_DIR"] = str(history)
    get_settings.cache_clear()
    path = analytics_report(out_dir=str(home / "reports"))  # no service filter: never Failed
    return Path(str(path))
