"""``junction integrations``: the catalog and health checks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

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
    from junction.settings import Settings

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


def short_error(r: HealthResult) -> str:
    """A failure on one line: its class and message, without the ``service.action:`` prefix
    (the row names the service already)."""
    if not r.error:
        return ""
    message = " ".join(r.error.split())
    prefix = f"{r.service}.health_check: "
    return f"{r.error_class}: {message.removeprefix(prefix)}"


def health_table(results: Sequence[HealthResult], title: str = "Integration health") -> Table:
    """A table of health results: one line per integration, failures explained in one line."""
    out = table(
        title,
        "integration",
        "status",
        "HTTP",
        "latency ms",
        "breaker",
        right=("HTTP", "latency ms"),
    )
    # One line per service: a long error ends in an ellipsis on a terminal (piped output
    # is printed at its natural width, whole).
    out.add_column("error", overflow="ellipsis", no_wrap=True)
    for r in results:
        status = "[green]healthy[/]" if r.ok else "[red]failing[/]"
        out.add_row(
            r.service,
            status,
            str(r.status) if r.status is not None else "-",
            f"{r.latency_ms:.0f}",
            r.breaker_state,
            short_error(r),
        )
    return out


def sandbox_unreachable(results: Sequence[HealthResult], settings: Settings) -> bool:
    """Whether failures say the sandbox is not running: a service configured to use it
    (no base URL of its own) could not connect."""
    unreachable = ("APIConnectionError", "APITimeoutError")
    return any(
        not r.ok
        and r.error_class in unreachable
        and settings.integration(r.service).base_url is None
        for r in results
    )


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
        str | None,
        typer.Option(
            help="Only integrations with this capability tag (notify, ticket...) or "
            "providing this capability action (notify.send, ticket.create...)."
        ),
    ] = None,
) -> None:
    """List every integration: name, capabilities, auth, base URL, health endpoint."""
    # Function-level: the catalog loads YAML and pydantic models, not needed for --help.
    from integrations.catalog import load_catalog
    from integrations.errors import UnknownCapabilityError

    settings = load_settings()
    catalog = load_catalog()
    try:
        specs = catalog.with_capability(capability) if capability else list(catalog)
    except UnknownCapabilityError as exc:
        fail(exc.message)
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
                    "provides": {k: p.action for k, p in s.provides.items()},
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
        list[str] | None,
        typer.Argument(metavar="NAME", help="Integrations to check (default: all enabled)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    record: Annotated[bool, typer.Option(help="Record the probes in the metrics store.")] = True,
    concurrency: Annotated[int | None, typer.Option(help="Checks in flight at once.")] = None,
) -> None:
    """Run one concurrent health sweep; exit 1 if any integration is failing."""
    settings = prepare_runtime()
    # Function-level: the clients pull in httpx, aiohttp and the store (DuckDB).
    from integrations.errors import IntegrationError
    from junction.clients import sweep
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
    # The hint first: when the sandbox is down, it is the one thing to read.
    if sandbox_unreachable(results, settings):
        err_console.print(
            f"hint: nothing answers at the sandbox ({settings.sandbox_url}): start it with "
            "`junction sandbox serve` in another terminal, or run `junction demo`.",
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        print_json([result_dict(r) for r in results])
    else:
        print_table(health_table(results))
        healthy = sum(r.ok for r in results)
        console.print(f"{healthy}/{len(results)} healthy")
    if not all(r.ok for r in results):
        raise typer.Exit(1)
