"""`junction monitor`: one sweep with a health table, or continuous monitoring.

``junction monitor --once [--json]`` probes every enabled integration once (windows
restored from the metrics store, so the rates cover the configured window) and prints
the health table; exit status 1 when a service is critical. ``junction monitor --every
5s`` sweeps until Ctrl-C, printing one line per sweep and every status or alert change.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.markup import escape

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

if TYPE_CHECKING:
    from rich.table import Table

    from junction.monitor import MonitorEvent, ServiceHealth, SweepResult

_STYLE = {"healthy": "green", "warning": "yellow", "critical": "red", "unknown": "dim"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def health_table(services: list[ServiceHealth], title: str) -> Table:
    """The monitor's health table: one row per service."""
    out = table(
        title,
        "service",
        "status",
        "score",
        "success",
        "p50 ms",
        "p95 ms",
        "uptime",
        "breaker",
        "alerts",
        "why",
        right=("score", "success", "p50 ms", "p95 ms", "uptime"),
    )
    for s in services:
        style = _STYLE.get(s.status, "")
        out.add_row(
            s.service,
            f"[{style}]{s.status}[/]",
            "-" if s.score is None else f"{s.score:.0f}",
            _pct(s.success_rate),
            _ms(s.p50_latency_ms),
            _ms(s.p95_latency_ms),
            _pct(s.uptime),
            s.breaker_state or "-",
            escape(", ".join(s.alerts)),
            escape("; ".join(s.reasons[:2])) if s.status != "healthy" else "",
        )
    return out


def _summary(result: SweepResult) -> str:
    counts = result.counts()
    bad = [s.service for s in result.services if s.status in ("warning", "critical")]
    parts = [f"{counts['healthy']} healthy"]
    for status in ("warning", "critical", "unknown"):
        if counts[status]:
            parts.append(f"{counts[status]} {status}")
    line = (
        f"{result.finished_at.astimezone(UTC):%H:%M:%S} sweep of {len(result.services)}: "
        f"{', '.join(parts)} in {result.duration_ms:.0f} ms"
    )
    if result.confirmations:
        line += f", {result.confirmations} re-probe(s)"
    if result.skipped:
        line += f", skipped (still probing): {', '.join(result.skipped)}"
    if bad:
        line += f" [{', '.join(bad[:8])}{'...' if len(bad) > 8 else ''}]"
    return line


def _sandbox_hint(settings: Any, result: SweepResult) -> str | None:
    """The `integrations check` hint when nothing answers at the sandbox."""
    sandbox = urlsplit(settings.sandbox_url).netloc
    if any(not p.ok and sandbox in (p.error or "") for p in result.probes):
        return (
            f"hint: nothing answers at the sandbox ({settings.sandbox_url}): start it with "
            "`junction sandbox serve` in another terminal, or run `junction demo`."
        )
    return None


def register(app: typer.Typer) -> None:
    """Add ``junction monitor`` to the top-level app."""
    app.command("monitor")(monitor)


def monitor(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="NAME", help="Integrations to monitor (default: all enabled)."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run one sweep, print the table, exit.")
    ] = False,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="Sweep continuously at this interval (5s, 500ms, 1m; default "
            "JUNCTION_MONITOR_INTERVAL_SECONDS).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="JSON output (--once: the sweep; --every: one per line)."),
    ] = False,
    alerts: Annotated[
        bool, typer.Option(help="Evaluate alert rules and deliver notifications.")
    ] = True,
    record: Annotated[bool, typer.Option(help="Record probes in the metrics store.")] = True,
) -> None:
    """Monitor integrations: health scores over sliding windows, alerts within seconds.

    --once: one sweep and the health table (exit 1 if a service is critical).
    Otherwise sweep every --every until Ctrl-C/SIGTERM, one line per sweep plus every
    status change and alert transition.
    """
    # Function-level: the monitor pulls in the HTTP stack and the alert engine, which
    # `junction --help` should not pay for.
    from integrations.errors import IntegrationError
    from integrations.sweep import quiet_gc
    from junction.alerting.state import AlertDatabaseError
    from junction.monitor import Monitor, check_interval, parse_duration

    if once and every is not None:
        fail("--once and --every are exclusive: pick one")
    interval = None
    if not once:
        try:
            interval = parse_duration(every) if every is not None else None
        except ValueError as exc:
            fail(f"--every: {exc}")
    settings = prepare_runtime()
    if interval is None:
        interval = settings.monitor_interval_seconds
    if not once:
        try:
            check_interval(interval, settings.monitor_min_interval_seconds)
        except ValueError as exc:
            source = (
                f"--every {every}" if every is not None else "JUNCTION_MONITOR_INTERVAL_SECONDS"
            )
            fail(f"{source}: {exc}")

    def on_event(event: MonitorEvent) -> None:
        if once:
            return
        if as_json:
            print(
                json.dumps(
                    {
                        "event": event.kind,
                        "at": event.at.isoformat(),
                        "service": event.service,
                        "old": event.old,
                        "new": event.new,
                        "message": event.message,
                    }
                ),
                flush=True,
            )
        elif event.kind != "passive_failure":
            style = {"alert": "bold", "error": "red", "clock_jump": "yellow"}.get(event.kind, "")
            text = escape(f"{event.at.astimezone(UTC):%H:%M:%S} {event.message}")
            console.print(f"[{style}]{text}[/]" if style else text, highlight=False)

    def on_sweep(result: SweepResult) -> None:
        if as_json:
            print(json.dumps({"event": "sweep", **result.to_json()}), flush=True)
        else:
            console.print(_summary(result), highlight=False, markup=False)

    # Function-level: analytics (pandas) stays out of `junction --help`.
    from analytics.anomaly_monitor import anomaly_judges

    async def main() -> SweepResult | None:
        async with Monitor(
            settings,
            names=names or None,
            record=record,
            alerts=None if alerts else False,
            judges=anomaly_judges(settings),
            on_event=on_event,
        ) as mon:
            await mon.restore()
            note = getattr(mon.alerts, "delivery_warning", None)
            if note:  # alerts only recorded: say so once
                warn(note)
            if once:
                return await mon.sweep()
            assert interval is not None
            quiet_gc()  # this process sweeps from now on (cheaper collections)
            console.print(
                f"monitoring {len(mon.names)} integrations"
                + (f" (shard {mon.shard} of {mon.shards})" if mon.shards > 1 else "")
                + f" every {interval:g} s (Ctrl-C to stop)",
                highlight=False,
            )
            await mon.run_forever(interval, on_sweep=on_sweep)
            return None

    try:
        result = asyncio.run(main())
    except IntegrationError as exc:
        fail(exc.message)
    except AlertDatabaseError as exc:  # corrupt alerts.db: the message names the recovery
        fail(str(exc))
    except ValueError as exc:  # bad JUNCTION_INTEGRATIONS, invalid alerting file
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if result is None:
        return
    if as_json:
        print_json(result.to_json())
    else:
        counts = result.counts()
        print_table(health_table(result.services, "Service health"))
        console.print(
            f"{counts['healthy']}/{len(result.services)} healthy, "
            f"{counts['warning']} warning, {counts['critical']} critical "
            f"(window {settings.monitor_window_seconds:g} s)",
            highlight=False,
        )
    hint = _sandbox_hint(settings, result)
    if hint:
        err_console.print(hint)
    if any(s.status == "critical" for s in result.services):
        raise typer.Exit(1)
