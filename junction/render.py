"""Terminal rendering (rich) of what the CLI shows."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from integrations.base import HealthResult
from integrations.catalog import IntegrationSpec


def health_table(results: Sequence[HealthResult], title: str = "Integration health") -> Table:
    """A table of health results: one row per integration, failures explained."""
    table = Table(title=title, title_justify="left")
    table.add_column("integration")
    table.add_column("status")
    table.add_column("HTTP", justify="right")
    table.add_column("latency ms", justify="right")
    table.add_column("breaker")
    table.add_column("error", overflow="fold", max_width=70)
    for r in results:
        status = "[green]healthy[/]" if r.ok else "[red]failing[/]"
        table.add_row(
            r.service,
            status,
            str(r.status) if r.status is not None else "-",
            f"{r.latency_ms:.0f}",
            r.breaker_state,
            f"{r.error_class}: {r.error}" if r.error else "",
        )
    return table


def catalog_table(specs: Sequence[IntegrationSpec], base_urls: dict[str, str]) -> Table:
    """A table of catalog entries with their effective base URL."""
    table = Table(title=f"{len(specs)} integrations", title_justify="left")
    for col in ("name", "capabilities", "auth", "base URL", "health check"):
        table.add_column(col, overflow="fold")
    for s in specs:
        health = s.health.method if s.transport == "smtp" else f"{s.health.method} {s.health.path}"
        table.add_row(
            s.name, ", ".join(s.capabilities), s.auth.scheme, base_urls.get(s.name, ""), health
        )
    return table
