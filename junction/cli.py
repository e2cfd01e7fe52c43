"""The ``junction`` command line.

Imports stay inside the commands: ``junction --help`` must not pay for Prefect, pandas
or DuckDB.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console

app = typer.Typer(
    help="Junction: cross-service workflows, integration health monitoring and analytics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
integrations_app = typer.Typer(
    help="The integration catalog and health checks.", no_args_is_help=True
)
sandbox_app = typer.Typer(help="The built-in sandbox of simulated services.", no_args_is_help=True)
app.add_typer(integrations_app, name="integrations")
app.add_typer(sandbox_app, name="sandbox")


def _register_command_groups() -> None:
    from junction.commands import alerts, analytics, monitor, workflow

    for module in (monitor, alerts, workflow, analytics):
        module.register(app)


_register_command_groups()

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _settings() -> Any:
    """Load settings, turning a validation error into a clear message."""
    from pydantic import ValidationError

    from junction.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        _fail(f"invalid configuration: {problems}")


def _prepare_runtime() -> None:
    """Environment a command that runs flows or clients needs, set before imports."""
    settings = _settings()
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        str(settings.prefect_ephemeral_startup_timeout_seconds),
    )
    os.environ.setdefault("PREFECT_HOME", str(Path(settings.home).resolve() / "prefect"))
    # No network here but the registries: Prefect's telemetry would only log errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect creates its home without parents and then fails obscurely on a fresh machine.
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    from integrations.redaction import install_log_redaction

    install_log_redaction()


def _result_dict(r: Any) -> dict[str, Any]:
    return {
        "integration": r.service,
        "ok": r.ok,
        "status": r.status,
        "latency_ms": round(r.latency_ms, 1),
        "attempts": r.attempts,
        "breaker_state": r.breaker_state,
        "error_class": r.error_class,
        "error": r.error,
        "checked_at": r.checked_at.isoformat(),
    }


# --- integrations -------------------------------------------------------------------------


@integrations_app.command("list")
def integrations_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    capability: Annotated[
        str | None, typer.Option(help="Only integrations with this capability (notify, ticket...).")
    ] = None,
) -> None:
    """List every integration: name, capabilities, auth, base URL, health endpoint."""
    from integrations.catalog import load_catalog

    settings = _settings()
    catalog = load_catalog()
    specs = catalog.with_capability(capability) if capability else list(catalog)
    enabled = set(settings.enabled_names(catalog.names))
    urls: dict[str, str] = {}
    for s in specs:
        configured = settings.integration(s.name).base_url
        urls[s.name] = configured or s.sandbox_base_url(settings.sandbox_url)
        if s.transport == "smtp" and not configured:
            urls[s.name] = f"{urls[s.name]}:{settings.sandbox_smtp_port}"
    if as_json:
        out = [
            {
                "name": s.name,
                "title": s.title,
                "capabilities": list(s.capabilities),
                "auth": s.auth.scheme,
                "base_url": urls[s.name],
                "vendor_base_url": s.base_url,
                "health": {"method": s.health.method, "path": s.health.path},
                "enabled": s.name in enabled,
                "typed_client": s.client,
                "status_page": s.status_page,
            }
            for s in specs
        ]
        print(json.dumps(out, indent=2))
        return
    from junction.render import catalog_table

    console.print(catalog_table(specs, urls))


@integrations_app.command("check")
def integrations_check(
    names: Annotated[
        list[str] | None, typer.Argument(help="Integrations to check (default: all enabled).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    record: Annotated[bool, typer.Option(help="Record the probes in the metrics store.")] = True,
    concurrency: Annotated[int | None, typer.Option(help="Checks in flight at once.")] = None,
) -> None:
    """Run one concurrent health sweep; exit 1 if any integration is failing."""
    _prepare_runtime()
    from integrations.errors import IntegrationError

    settings = _settings()
    try:
        if record:
            from junction.health import run_sweep

            _, results = asyncio.run(
                run_sweep(names or None, settings=settings, concurrency=concurrency)
            )
        else:
            from integrations.sweep import sweep

            results = asyncio.run(sweep(names or None, settings=settings, concurrency=concurrency))
    except IntegrationError as exc:
        _fail(exc.message)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps([_result_dict(r) for r in results], indent=2))
    else:
        from junction.render import health_table

        console.print(health_table(results))
        healthy = sum(r.ok for r in results)
        console.print(f"{healthy}/{len(results)} healthy")
    sandbox = urlsplit(settings.sandbox_url).netloc
    if any(not r.ok and sandbox in (r.error or "") for r in results):
        err_console.print(
            f"hint: nothing answers at the sandbox ({settings.sandbox_url}): start it with "
            "`junction sandbox serve` in another terminal, or run `junction demo`."
        )
    if not all(r.ok for r in results):
        raise typer.Exit(1)


# --- sandbox -------------------------------------------------------------------------------


@sandbox_app.command("serve")
def sandbox_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port (0 = any free port).")] = 8765,
    faults: Annotated[
        Path | None, typer.Option(help="Fault profile YAML (see integrations/sandbox/profiles/).")
    ] = None,
    smtp_port: Annotated[
        int, typer.Option(help="SMTP port of the sandbox's mail server (0 = any free port).")
    ] = 8025,
    smtp: Annotated[bool, typer.Option(help="Run the SMTP server (--no-smtp to skip it).")] = True,
) -> None:
    """Serve every catalog integration locally, with state and fault injection."""
    from integrations.sandbox.app import serve

    if faults is not None and not faults.is_file():
        _fail(f"fault profile not found: {faults}")
    try:
        serve(host=host, port=port, faults_file=faults, smtp_port=smtp_port if smtp else None)
    except (ValueError, OSError) as exc:
        _fail(str(exc))


# --- config ---------------------------------------------------------------------------------


def config_rows() -> list[tuple[str, str, str]]:
    """(env var, default, description) for every setting, the README's table."""
    from pydantic_core import PydanticUndefined

    from junction.settings import IntegrationSettings, Settings

    rows = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        env = str(choices[0]) if choices else f"JUNCTION_{name.upper()}"
        default = field.default
        if default is None or default is PydanticUndefined:
            shown = ""
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = str(default)
        rows.append((env, shown, field.description or ""))
    for name, field in IntegrationSettings.model_fields.items():
        rows.append((f"JUNCTION_<NAME>_{name.upper()}", "", field.description or ""))
    return rows


@app.command("config")
def config(
    markdown: Annotated[bool, typer.Option(help="Print the README's markdown table.")] = False,
) -> None:
    """Show every setting: environment variable, default, description."""
    rows = config_rows()
    if markdown:
        print("| variable | default | description |\n|---|---|---|")
        for env, default, desc in rows:
            print(f"| `{env}` | {f'`{default}`' if default else ''} | {desc} |")
        return
    from rich.table import Table

    table = Table(title="Settings (argument > environment > default)", title_justify="left")
    for col in ("variable", "default", "description"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# --- demo -------------------------------------------------------------------------------------


@app.command("demo")
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
    _prepare_runtime()
    from integrations.sandbox.app import SandboxServer, load_profile

    try:
        profile, source = load_profile(faults)
    except (OSError, ValueError) as exc:
        _fail(f"cannot load fault profile {faults!r}: {exc}")
    console.print(
        f"[bold]Junction demo[/]: starting the sandbox of simulated services (faults: {source})..."
    )
    with SandboxServer(port=port, smtp_port=0, profile=profile) as sandbox:
        os.environ["JUNCTION_SANDBOX_URL"] = sandbox.url
        os.environ["JUNCTION_SANDBOX_SMTP_PORT"] = str(sandbox.smtp_port)
        from junction.settings import get_settings

        get_settings.cache_clear()
        settings = _settings()
        console.print(f"sandbox at {sandbox.url} (SMTP on port {sandbox.smtp_port})")
        console.print(
            "1/3 the [bold]monitor-integrations[/] Prefect flow: probe, score, alert "
            "(ephemeral Prefect server; the first flow of a process takes ~20 s to start it)..."
        )
        sweep, state = asyncio.run(_demo_flows())
        workflow = state.result(raise_on_failure=False)
        if isinstance(workflow, BaseException):
            _fail(f"the onboarding workflow could not run: {workflow}")
    from junction.commands.monitor import health_table
    from junction.health import open_store
    from junction.workflows.cli_run import render_summary

    console.print(health_table(sweep.services, "Integration health"))
    counts = sweep.counts()
    healthy = counts.get("healthy", 0)
    console.print(
        "2/3 the [bold]employee_onboarding[/] workflow (Workday -> Okta + GitLab -> Webex "
        "welcome + Jira ticket) as a Prefect flow:"
    )
    console.print(render_summary(workflow))
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
    import hashlib

    from flows.monitor import monitor_integrations
    from flows.workflow import run_workflow

    sweep = await monitor_integrations()
    # The sandbox seeds Workday workers; worker 0's ID is the md5 of "worker-0".
    worker = hashlib.md5(b"worker-0", usedforsecurity=False).hexdigest()
    state = await run_workflow("employee_onboarding", {"worker_id": worker}, return_state=True)
    return sweep, state


def _demo_report(home: Path) -> Path:
    from analytics.synthetic import generate_history
    from flows.analytics_report import analytics_report
    from junction.settings import get_settings

    history = home / "demo-history"
    if not (history / "calls").exists():
        generate_history(history, services=8, days=21, seed=7)
    os.environ["JUNCTION_STORE_DIR"] = str(history)
    get_settings.cache_clear()
    return Path(analytics_report(out_dir=str(home / "reports")))


def main() -> None:
    """Entry point for ``python -m junction``."""
    app(prog_name="junction")


if __name__ == "__main__":
    main()
