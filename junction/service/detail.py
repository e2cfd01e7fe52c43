"""One service in depth over a window: what the service page and its API show.

Plain functions over explicit inputs (the metrics store, the SLA policy, a dependency map)
returning pydantic models, so the page, the API and the tests share one computation:

* :func:`latency_and_errors`: latency percentiles (p50/p95/p99 of successful calls) per
  time bucket and overall, the error mix by error class and by HTTP status, and the most
  recent failed calls (their text passed through :func:`integrations.redaction.redact`
  once more: the store's rows are redacted when written, secrets loaded since are not).
* :func:`restore_sla` and :func:`sla_view`: the SLA standing and error-budget burn from
  :class:`junction.alerting.sla.SlaTracker`, with the configured policy, plus the burn
  rate over the chosen window.
* :func:`dependency_view`: the workflows that use the service, the services it depends
  on and those depending on it (:mod:`junction.workflows.depmap`);
  :func:`peer_cofailures`: the services that failed together with it.

The forecast band is slower and lives in :mod:`junction.service.detail_band`; the vendor's
status page in :mod:`junction.service.detail_vendor`.

Every query reads the ``calls`` table of one service, bounded by ``ts`` and by the
``date`` partitions the window touches, with bound parameters.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from integrations.redaction import redact
from junction.alerting.model import Severity
from junction.alerting.rules import BurnRateWindow, SlaPolicy
from junction.alerting.sla import MAX_BURN_WINDOW, SlaTracker
from junction.durations import duration_seconds
from junction.store import MetricsStore
from junction.workflows.depmap import WORKFLOW_PREFIX, DependencyMap

WINDOW_CHOICES: dict[str, int] = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
"""The windows the page offers."""
DEFAULT_WINDOW_SECONDS = 3600
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = int(MAX_BURN_WINDOW.total_seconds())
"""Longest window: the SLA tracker counts the window's burn rate in minute buckets."""

TARGET_BUCKETS = 120
"""Most time buckets a window is cut into (the bucket grows with the window)."""
_BUCKET_LADDER = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

RECENT_ERRORS = 25
"""Failed calls listed, newest first."""
ERROR_TEXT_MAX = 500
"""Characters of a vendor's error text shown (the rest is cut: it is vendor-controlled)."""


# --------------------------------------------------------------------------- the window


def parse_window(text: str | None) -> int:
    """Seconds of a window given as seconds (``3600``) or a duration (``1h``, ``7d``).

    Args:
        text: What the client sent; ``None`` or empty is the default (one hour).

    Raises:
        ValueError: Not a duration, or outside [1 minute, 7 days] (the message says which).
    """
    if text is None or not text.strip():
        return DEFAULT_WINDOW_SECONDS
    seconds = duration_seconds(text)
    if seconds is None:
        return _bad_window(f"{text[:40]!r} is not a duration (seconds, or 1h, 24h, 7d)")
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        return _bad_window(f"{seconds:.0f} s is outside 60 s (1m) to {MAX_WINDOW_SECONDS} s (7d)")
    return int(seconds)


def _bad_window(message: str) -> int:
    raise ValueError(message)


def bucket_seconds(window_seconds: float) -> int:
    """The time-bucket width for a window: the smallest step of a round ladder (10 s ...
    1 day) that cuts it into at most :data:`TARGET_BUCKETS` buckets."""
    for step in _BUCKET_LADDER:
        if window_seconds / step <= TARGET_BUCKETS:
            return step
    return _BUCKET_LADDER[-1]


def window_label(seconds: float) -> str:
    """``3600`` -> ``1h``; a window that is no round number of units stays in seconds."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@dataclasses.dataclass(frozen=True)
class Window:
    """The period a page shows: ``since < ts <= until``, cut into ``bucket``-second steps."""

    seconds: int
    until: datetime
    bucket: int

    @classmethod
    def ending(cls, seconds: int, until: datetime | None = None) -> Window:
        """The window of ``seconds`` ending at ``until`` (default: now)."""
        end = (until or datetime.now(UTC)).astimezone(UTC)
        return cls(seconds, end, bucket_seconds(seconds))

    @property
    def since(self) -> datetime:
        """Its start."""
        return self.until - timedelta(seconds=self.seconds)

    def bounds(self) -> list[Any]:
        """``[first day, last day, since, until]``: the parameters of :data:`_WHERE`."""
        return [self.since.date(), self.until.date(), self.since, self.until]


_WHERE = "service = ? AND date >= ? AND date <= ? AND ts > ? AND ts <= ?"
"""One service in the window: ``date`` prunes the day partitions before any file is
opened, ``ts`` is the exact bound."""


# --------------------------------------------------------------------------- results


class Percentiles(BaseModel):
    """Calls and latency percentiles (successful calls) of a bucket or the whole window."""

    calls: int = Field(description="Calls (probes included) in the period.")
    failures: int = Field(description="Calls that failed.")
    success_rate: float | None = Field(description="Successful share of the calls.")
    p50_ms: float | None = Field(description="Median latency of the successful calls.")
    p95_ms: float | None = Field(description="95th percentile latency of the successful calls.")
    p99_ms: float | None = Field(description="99th percentile latency of the successful calls.")


class LatencyBucket(Percentiles):
    """One time bucket."""

    start: datetime = Field(description="Start of the bucket (UTC).")


class ErrorShare(BaseModel):
    """Failed calls with one error class or one HTTP status."""

    key: str = Field(description="The error class, or the HTTP status ('none': no response).")
    count: int
    share: float = Field(description="Share of the window's failed calls.")


class RecentError(BaseModel):
    """One failed call from the call log."""

    ts: datetime
    action: str
    method: str
    path: str
    status: int | None
    error_class: str | None
    error: str | None = Field(description="The vendor's error text, redacted and cut short.")
    attempts: int
    source: str = Field(description="probe, workflow, cli ...")
    run_id: str | None


class LatencyAndErrors(BaseModel):
    """Latency and errors of one service over the window."""

    overall: Percentiles
    buckets: list[LatencyBucket] = Field(description="Every bucket of the window, oldest first.")
    errors_by_class: list[ErrorShare]
    errors_by_status: list[ErrorShare]
    recent_errors: list[RecentError] = Field(description="Newest first.")


class BurnRateView(BaseModel):
    """One burn-rate rule's measurement (error rate / error budget)."""

    name: str
    long_seconds: float
    short_seconds: float
    factor: float = Field(description="Threshold of the rule.")
    severity: str
    long_rate: float
    short_rate: float
    firing: bool


class SlaView(BaseModel):
    """SLA standing over the SLA period and the budget burn over the chosen window."""

    as_of: datetime = Field(description="When it was computed (it is reused for a minute).")
    target: float = Field(description="Availability target.")
    period_seconds: float = Field(description="The SLA period (the error budget's).")
    total: int = Field(description="Observations in the SLA period (probes and live calls).")
    failed: int
    uptime: float | None
    error_budget_remaining: float | None = Field(
        description="1 untouched, 0 spent, negative overspent."
    )
    window_burn_rate: float = Field(
        description="Burn rate over the chosen window (1.0 spends the budget exactly)."
    )
    burn_rates: list[BurnRateView] = Field(description="The configured burn-rate rules.")
    summary: str = Field(description="One line: the worst firing burn rate, or the budget.")


class WorkflowUse(BaseModel):
    """A workflow with steps that may call the service."""

    workflow: str
    steps: list[str]
    fallback_only: bool = Field(description="The service is only a fallback in every step.")


class PeerCoFailure(BaseModel):
    """Another service that failed in the same windows as this one."""

    service: str
    both: int = Field(description="Windows where both failed.")
    jaccard: float
    p_peer_given_this: float = Field(description="P(peer fails | this service fails).")


class DependencyView(BaseModel):
    """Where the service sits in the workflows' dependency map (from the specs)."""

    workflows: list[WorkflowUse]
    depends_on: list[str] = Field(description="Services upstream of its steps.")
    dependents: list[str] = Field(description="Services whose steps run after its steps.")
    dependent_workflows: list[str]


# --------------------------------------------------------------------------- latency, errors


def _value(value: Any) -> Any:
    """``value`` with pandas' missing markers (NA, NaN, NaT) as ``None``."""
    if value is None or isinstance(value, list | tuple | np.ndarray):
        return value
    return None if pd.isna(value) else value


def _num(value: Any) -> float | None:
    value = _value(value)
    return None if value is None else round(float(value), 3)


def _quantiles(value: Any) -> tuple[float | None, float | None, float | None]:
    value = _value(value)
    if value is None:
        return None, None, None
    p50, p95, p99 = (_num(v) for v in list(value))
    return p50, p95, p99


def _percentiles(calls: int, failures: int, q: Any) -> dict[str, Any]:
    p50, p95, p99 = _quantiles(q)
    return {
        "calls": calls,
        "failures": failures,
        "success_rate": round((calls - failures) / calls, 6) if calls else None,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
    }


def _shares(counts: dict[str, int], total: int) -> list[ErrorShare]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        ErrorShare(key=k, count=n, share=round(n / total, 6) if total else 0.0) for k, n in ordered
    ]


def clean_error_text(text: str | None) -> str | None:
    """A vendor's error text fit to show: redacted again, cut to :data:`ERROR_TEXT_MAX`."""
    if text is None:
        return None
    shown = redact(text)
    return shown if len(shown) <= ERROR_TEXT_MAX else shown[: ERROR_TEXT_MAX - 1] + "…"


def _recent_failures(
    store: MetricsStore, service: str, window: Window, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` failed calls, reading the newest day partition first and older
    days only while fewer were found (a busy week need not be scanned for 25 rows)."""
    found: list[dict[str, Any]] = []
    day = window.until.date()
    while day >= window.since.date() and len(found) < limit:
        rows = store.query(
            f"""
            SELECT ts, action, method, path, status, error_class, error, attempts, source, run_id
            FROM calls WHERE {_WHERE} AND NOT ok ORDER BY ts DESC LIMIT ?
            """,
            [service, day, day, window.since, window.until, limit - len(found)],
        )
        found.extend({str(k): v for k, v in r.items()} for r in rows.to_dict("records"))
        day -= timedelta(days=1)
    return found


def latency_and_errors(
    store: MetricsStore, service: str, window: Window, *, recent: int = RECENT_ERRORS
) -> LatencyAndErrors:
    """Latency percentiles per bucket and overall, the error mix and the recent errors.

    Args:
        store: The metrics store (its ``calls`` table: probes and live calls).
        service: The service.
        window: The period and its bucket width.
        recent: How many recent failed calls to list.
    """
    where = window.bounds()
    # One scan for the buckets, the error mix and the whole window (grouping sets); the
    # mix counts failed calls only, so its groups of successful calls count 0.
    stats = store.query(
        f"""
        SELECT grouping(b) AS by_time, grouping(error_class, status) AS by_error,
               b, error_class, status,
               count(*) AS calls,
               count(*) FILTER (WHERE NOT ok) AS failures,
               quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FILTER (WHERE ok) AS q
        FROM (
            SELECT CAST(floor(epoch(ts) / ?) AS BIGINT) AS b, ok, latency_ms, error_class, status
            FROM calls WHERE {_WHERE}
        )
        GROUP BY GROUPING SETS ((b), (error_class, status), ())
        """,
        [window.bucket, service, *where],
    )
    overall = Percentiles(**_percentiles(0, 0, None))
    by_bucket: dict[int, dict[str, Any]] = {}
    by_class: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for by_time, by_error, b, error_class, status, calls, failures, q in stats.itertuples(
        index=False, name=None
    ):
        if by_time == 0:
            by_bucket[int(b)] = _percentiles(int(calls), int(failures), q)
        elif by_error == 0:
            if failures:
                cls = _value(error_class) or "unknown"
                code = "none" if _value(status) is None else str(int(status))
                by_class[cls] = by_class.get(cls, 0) + int(failures)
                by_status[code] = by_status.get(code, 0) + int(failures)
        else:
            overall = Percentiles(**_percentiles(int(calls), int(failures), q))
    first = int(window.since.timestamp() // window.bucket)
    last = int(window.until.timestamp() // window.bucket)
    empty = _percentiles(0, 0, None)
    buckets = [
        LatencyBucket(
            start=datetime.fromtimestamp(i * window.bucket, UTC), **by_bucket.get(i, empty)
        )
        for i in range(first, last + 1)
    ]
    failed = sum(by_class.values())
    errors = [
        RecentError(
            ts=r["ts"].to_pydatetime(),
            action=r["action"],
            method=r["method"],
            path=r["path"],
            status=None if _value(r["status"]) is None else int(r["status"]),
            error_class=_value(r["error_class"]),
            error=clean_error_text(_value(r["error"])),
            attempts=int(r["attempts"]),
            source=r["source"],
            run_id=_value(r["run_id"]),
        )
        for r in _recent_failures(store, service, window, recent)
    ]
    return LatencyAndErrors(
        overall=overall,
        buckets=buckets,
        errors_by_class=_shares(by_class, failed),
        errors_by_status=_shares(by_status, failed),
        recent_errors=errors,
    )


# --------------------------------------------------------------------------- SLA


KEEP_RULE = "keep"
"""A burn-rate rule over the longest window (not an alerting rule): the tracker then keeps
minute buckets long enough for the burn rate of any window the page offers."""


@dataclasses.dataclass(frozen=True)
class RestoredSla:
    """One service's :class:`SlaTracker`, restored from the store at ``as_of``."""

    service: str
    tracker: SlaTracker
    as_of: datetime


def restore_sla(store: MetricsStore, service: str, policy: SlaPolicy, now: datetime) -> RestoredSla:
    """Restore ``service``'s SLA tracker from the store's rows of the SLA period (the scan
    of a whole period: reuse the result for every window).

    Args:
        store: The metrics store (probes and non-probe calls).
        service: The service.
        policy: The configured SLA policy (``load_settings_config(settings).sla``).
        now: End of the SLA period.
    """
    keep = BurnRateWindow(KEEP_RULE, MAX_BURN_WINDOW, MAX_BURN_WINDOW, 1.0, Severity.WARNING)
    tracker = SlaTracker(dataclasses.replace(policy, burn_rates=(*policy.burn_rates, keep)))
    tracker.restore(store, now, services=[service])
    return RestoredSla(service, tracker, now)


def sla_view(sla: RestoredSla, window: Window) -> SlaView:
    """SLA standing, the configured burn rates and the chosen window's burn rate.

    All from :class:`SlaTracker` (no second SLA computation), as of the restore.

    Args:
        sla: From :func:`restore_sla`.
        window: The chosen window (its burn rate: error rate over it / error budget).
    """
    tracker = sla.tracker
    keep = tracker.policy.burn_rates[-1]  # restore_sla's, after the configured ones
    status = tracker.status(sla.service, sla.as_of)
    configured = tuple(b for b in status.burn_rates if b.window is not keep)
    measured = tracker.burn_rate(sla.service, timedelta(seconds=window.seconds), sla.as_of)
    return SlaView(
        as_of=sla.as_of,
        target=status.target,
        period_seconds=tracker.policy.window.total_seconds(),
        total=status.total,
        failed=status.failed,
        uptime=status.uptime,
        error_budget_remaining=status.error_budget_remaining,
        window_burn_rate=measured,
        burn_rates=[
            BurnRateView(
                name=b.window.name,
                long_seconds=b.window.long.total_seconds(),
                short_seconds=b.window.short.total_seconds(),
                factor=b.window.factor,
                severity=b.window.severity.value,
                long_rate=b.long_rate,
                short_rate=b.short_rate,
                firing=b.firing,
            )
            for b in configured
        ],
        summary=dataclasses.replace(status, burn_rates=configured).describe(),
    )


# --------------------------------------------------------------------------- dependencies


def dependency_view(depmap: DependencyMap, service: str) -> DependencyView:
    """The workflows using ``service`` and its dependencies in ``depmap``.

    Args:
        depmap: From :func:`junction.workflows.depmap.build_map`.
        service: The service.
    """
    uses: dict[str, tuple[list[str], bool]] = {}
    for node in depmap.steps:
        if service not in node.services:
            continue
        steps, only_fallback = uses.get(node.workflow, ([], True))
        steps.append(node.step)
        uses[node.workflow] = (steps, only_fallback and service in node.fallbacks)
    deps = depmap.service_dependencies()
    dependents = {k for k, v in deps.items() if service in v}
    return DependencyView(
        workflows=[WorkflowUse(workflow=w, steps=s, fallback_only=f) for w, (s, f) in uses.items()],
        depends_on=sorted(deps.get(service, set())),
        dependents=sorted(d for d in dependents if not d.startswith(WORKFLOW_PREFIX)),
        dependent_workflows=sorted(
            d.removeprefix(WORKFLOW_PREFIX) for d in dependents if d.startswith(WORKFLOW_PREFIX)
        ),
    )


def peer_cofailures(
    depmap: DependencyMap, service: str
) -> tuple[list[PeerCoFailure], list[list[str]]]:
    """The services that failed together with ``service`` in ``depmap``'s history
    (strongest first) and the co-failure groups it belongs to."""
    peers: list[PeerCoFailure] = []
    for c in depmap.cofailures:
        if service not in (c.a, c.b):
            continue
        this_is_a = c.a == service
        peers.append(
            PeerCoFailure(
                service=c.b if this_is_a else c.a,
                both=c.both,
                jaccard=round(c.jaccard, 4),
                p_peer_given_this=round(c.p_b_given_a if this_is_a else c.p_a_given_b, 4),
            )
        )
    groups = [sorted(g) for g in depmap.cofailure_groups() if service in g]
    return peers, groups


__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "MAX_WINDOW_SECONDS",
    "MIN_WINDOW_SECONDS",
    "WINDOW_CHOICES",
    "BurnRateView",
    "DependencyView",
    "ErrorShare",
    "LatencyAndErrors",
    "LatencyBucket",
    "PeerCoFailure",
    "Percentiles",
    "RecentError",
    "RestoredSla",
    "SlaView",
    "Window",
    "WorkflowUse",
    "bucket_seconds",
    "clean_error_text",
    "dependency_view",
    "latency_and_errors",
    "parse_window",
    "peer_cofailures",
    "restore_sla",
    "sla_view",
    "window_label",
]
