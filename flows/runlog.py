"""What each flow run says in its Prefect log: counts, slow steps, what failed, alerts.

Plain functions from results to ``(level, message)`` lines (testable without Prefect);
:func:`emit` writes them to the run's logger (:func:`run_logger`), so a run's log in
the UI tells what it did, not only "Finished in state Completed()". Messages carry names,
numbers and the errors the clients already redacted; never parameters or outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from junction.events import replay as replay_events

if TYPE_CHECKING:
    from analytics.report.model import ReportData
    from integrations.base import HealthResult
    from junction.monitor import SweepResult

Line = tuple[int, str]

SLOWEST = 3
"""How many of the slowest steps, probes or stages a run's log names."""

SLOW_STAGE_SECONDS = 10.0
"""A report stage at least this long is logged as a warning (it is what to look at)."""


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The run's logger inside a flow or task run; outside one (a flow's body called
    directly, as the CLI's tests and benchmarks do) the ``junction.flows`` logger.

    A flow run asks for its logger as it starts: the Prefect events a server away
    missed are replayed then (:func:`junction.events.replay`, a wake-up, not a wait)."""
    try:
        logger = get_run_logger()
    except MissingContextError:
        return logging.getLogger("junction.flows")
    replay_events()
    return logger


def emit(logger: logging.Logger | logging.LoggerAdapter[Any], lines: Iterable[Line]) -> None:
    """Write ``lines`` to ``logger`` (a run logger), each at its level."""
    for level, message in lines:
        logger.log(level, "%s", message)


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def _slowest(pairs: Iterable[tuple[str, float]], unit: str = "ms") -> str:
    top = sorted(pairs, key=lambda p: -p[1])[:SLOWEST]
    if unit == "s":
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in top)
    return ", ".join(f"{name} {_ms(ms)}" for name, ms in top)


def workflow_lines(summary: Mapping[str, Any]) -> list[Line]:
    """A workflow run (``RunResult.to_dict()``): outcome, step counts, slowest steps,
    fallbacks used and each failed step."""
    steps: Sequence[Mapping[str, Any]] = summary.get("steps") or []
    by_status: dict[str, int] = {}
    for step in steps:
        by_status[step["status"]] = by_status.get(step["status"], 0) + 1
    counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items())) or "none"
    calls = sum(int(s.get("calls") or 0) for s in steps)
    cached = sum(1 for s in steps if s.get("cached"))
    ok = summary.get("status") == "completed"
    lines: list[Line] = [
        (
            logging.INFO if ok else logging.ERROR,
            f"workflow {summary.get('workflow')} {summary.get('status')} in "
            f"{_ms(float(summary.get('duration_ms') or 0))}: {len(steps)} steps ({counts}), "
            f"{calls} calls, {summary.get('retries', 0)} retries, "
            f"{summary.get('fallbacks', 0)} fallbacks, {cached} cached",
        )
    ]
    ran = [
        (s["step_id"], float(s.get("duration_ms") or 0)) for s in steps if s["status"] != "skipped"
    ]
    if ran:
        lines.append((logging.INFO, f"slowest steps: {_slowest(ran)}"))
    for s in steps:
        if s.get("fallback"):
            lines.append(
                (
                    logging.WARNING,
                    f"step {s['step_id']!r} used fallback {s.get('provider')} "
                    f"(tried {', '.join(s.get('tried') or []) or '-'})",
                )
            )
        if s["status"] == "failed":
            lines.append((logging.ERROR, f"step {s['step_id']!r} failed: {s.get('error')}"))
    return lines


def batch_lines(workflow: str, summaries: Sequence[Mapping[str, Any]]) -> list[Line]:
    """A batch of runs of one workflow: how many completed, the slowest, each failure."""
    failed = [s for s in summaries if s.get("status") != "completed"]
    lines: list[Line] = [
        (
            logging.ERROR if failed else logging.INFO,
            f"batch of {len(summaries)} {workflow} runs: {len(summaries) - len(failed)} "
            f"completed, {len(failed)} failed",
        )
    ]
    if summaries:
        runs = ((str(s.get("run_id")), float(s.get("duration_ms") or 0)) for s in summaries)
        lines.append((logging.INFO, f"slowest runs: {_slowest(runs)}"))
    lines += [
        (
            logging.ERROR,
            f"run {s.get('run_id')} failed at {s.get('failed_step')!r}: {s.get('error')}",
        )
        for s in failed
    ]
    return lines


def probe_lines(results: Sequence[HealthResult]) -> list[Line]:
    """A health sweep: how many integrations answered, which failed and why, the slowest."""
    failing = [r for r in results if not r.ok]
    lines: list[Line] = [
        (
            logging.WARNING if failing else logging.INFO,
            f"probed {len(results)} integrations: {len(results) - len(failing)} ok, "
            f"{len(failing)} failing",
        )
    ]
    if results:
        lines.append(
            (logging.INFO, f"slowest: {_slowest((r.service, r.latency_ms) for r in results)}")
        )
    for r in failing:
        why = f"{r.error_class or 'error'}: {r.error}" if r.error else r.error_class or "failed"
        lines.append((logging.WARNING, f"{r.service} failing: {why}"))
    return lines


def sweep_lines(result: SweepResult) -> list[Line]:
    """A monitoring sweep: statuses, probes, services not healthy and why, active alerts."""
    counts = result.counts()
    not_healthy = [s for s in result.services if s.status != "healthy"]
    lines: list[Line] = [
        (
            logging.WARNING if counts["critical"] else logging.INFO,
            f"sweep {result.sweep_id}: {len(result.services)} services, "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
            + f"; {len(result.probes)} probes ({result.confirmations} confirmations), "
            f"{len(result.skipped)} skipped, {_ms(result.duration_ms)}",
        )
    ]
    if result.probes:
        lines.append(
            (
                logging.INFO,
                f"slowest probes: {_slowest((p.service, p.latency_ms) for p in result.probes)}",
            )
        )
    for s in not_healthy:
        why = "; ".join(s.reasons) or "no reason given"
        lines.append((logging.WARNING, f"{s.service} {s.status}: {why}"))
    alerting = [s for s in result.services if s.alerts]
    if alerting:
        lines.append(
            (
                logging.WARNING,
                f"{sum(len(s.alerts) for s in alerting)} alerts firing: "
                + "; ".join(f"{s.service}: {', '.join(s.alerts)}" for s in alerting),
            )
        )
    else:
        lines.append((logging.INFO, "no alerts firing"))
    return lines


def report_lines(data: ReportData, path: str) -> list[Line]:
    """An analytics report: window, what it found, where it went, the slow stages."""
    met = sum(1 for k in data.kpis if k.met)
    missed = sum(1 for k in data.kpis if k.met is False)
    likely = sum(
        1
        for outcomes in data.predictions.values()
        for p in outcomes
        if float(getattr(p, "probability", 0.0)) >= 0.5
    )
    lines: list[Line] = [
        (
            logging.INFO,
            f"report over {data.start:%Y-%m-%d %H:%M} .. {data.end:%Y-%m-%d %H:%M} UTC: "
            f"{len(data.performance)} services, KPIs {met} met / {missed} missed of "
            f"{len(data.kpis)}, {len(data.recommendations)} recommendations, "
            f"{likely} failure risks >= 50%, {len(data.alerts_active)} alerts active",
        ),
        (logging.INFO, f"report written to {path}"),
    ]
    if data.timings:
        total = sum(data.timings.values())
        lines.append(
            (
                logging.INFO,
                f"stages took {total:.1f} s; slowest: {_slowest(data.timings.items(), 's')}",
            )
        )
        for stage, seconds in data.timings.items():
            if seconds >= SLOW_STAGE_SECONDS:
                lines.append((logging.WARNING, f"slow stage {stage}: {seconds:.1f} s"))
    lines += [(logging.INFO, f"note: {note}") for note in data.notes[:10]]
    return lines
