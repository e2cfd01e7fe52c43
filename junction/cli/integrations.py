"""``junction integrations``: the catalog and health checks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from junction.cli.common import (
    console,
    err_console,
    fail,
    load_settings,
    prepare_runtime,
    print_json,
    print_table,
    table,
)

if TYPE_CHECKING:
    from rich.table import Table

    from integrations.base import HealthResult
    from integrations.catalog import IntegrationSpec

integrations_app = typer.Typer(
    help="The integration catalog and health checks.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``junction integrations`` to the top-level app."""
    app.add_typer(integrations_app, name="integrations")


def result_dict(r: HealthResult) -> dict[str, Any]:
    """One health result as JSON-ready data."""
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


def health_table(results: Sequence[HealthResult], title: str = "Integration health") -> Table:
    """A table of health results: one row per integration, failures explained."""
    out = table(
        title,
        "integration",
        "status",
        "HTTP",
        "latency ms",
        "breaker",
        "error",
        right=("HTTP", "latency ms"),
    )
    for r in results:
        status = "[green]healthy[/]" if r.ok else "[red]failing[/]"
        out.add_row(
            r.service,
            status,
            str(r.status) if r.status is not None else "-",
            f"{r.latency_ms:.0f}",
            r.breaker_state,
            f"{r.error_class}: {r.error}" if r.error else "",
        )
    return out


def catalog_table(specs: Sequence[IntegrationSpec], base_urls: dict[str, str]) -> Table:
    """A table of catalog entries with their effective base URL."""
    out = table(
        f"{len(specs)} integrations", "name", "capabilities", "auth", "base URL", "health check"
    )
    for s in specs:
        health = s.health.method if s.transport == "smtp" else f"{s.health.method} {s.health.path}"
        out.add_row(
            s.name, ", ".join(s.capabilities), s.auth.scheme, base_urls.get(s.name, ""), health
        )
    return out


@integrations_app.command("list")
def integrations_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    capability: Annotated[
        str | None, typer.Option(help="Only integrations with this capability (notify, ticket...).")
    ] = None,
) -> None:
    """List every integration: name, capabilities, auth, base URL, health endpoint."""
    # Function-level: the catalog loads YAML and pydantic models, not needed for --help.
    from integrations.catalog import load_catalog

    settings = load_settings()
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
        print_json(
            [
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
        )
        return
    print_table(catalog_table(specs, urls))


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
    settings = prepare_runtime()
    # Function-level: the clients pull in httpx, aiohttp and the store (DuckDB).
    from integrations.errors import IntegrationError
    from integrations.sweep import sweep
    from junction.health import run_sweep

    try:
        if record:
            _, results = asyncio.run(
                run_sweep(names or None, settings=settings, concurrency=concurrency)
            )
        else:
            results = asyncio.run(sweep(names or None, settings=settings, concurrency=concurrency))
    except IntegrationError as exc:
        fail(exc.message)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        print_json([result_dict(r) for r in results])
    else:
        print_table(health_table(results))
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
