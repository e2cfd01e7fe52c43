"""SLA tracking: uptime against a target, error budget, multiwindow multi-burn-rate alerts.

Observations ``(ts, ok)`` (probes and live calls alike; feed each outcome once) are counted
in per-minute buckets for the burn-rate windows and per-hour buckets for the SLA period,
so memory per service is bounded: ``longest burn window / 1 min + SLA window / 1 h``
buckets (366 + 721 with the defaults), whatever the traffic.

Definitions (``target`` e.g. 0.99, so the error budget is ``1 - target`` = 1 %):

* **error rate** over a window = failed / total observations in it.
* **burn rate** over a window = error rate / (1 - target): 1.0 spends the budget exactly
  over the SLA period; 14.4 spends 2 % of a 30-day budget in one hour.
* A window ``w`` ending at ``now`` covers the minute buckets ``floor(now) - w < m <=
  floor(now)`` (whole minutes, the current partial minute included): a 5-minute window
  is the current minute and the four before it. Hour buckets work the same way for the
  SLA period.
* A burn-rate alert (SRE workbook, "multiwindow, multi-burn-rate") fires when the burn
  rate over BOTH its long and its short window is ``>= factor``; defaults: fast burn 1 h
  and 5 m at 14.4x -> critical, slow burn 6 h and 30 m at 6x -> warning. A window with no
  observations has burn rate 0.
* **uptime** (SLI) over the SLA period = good / total (``None`` without data);
  **error budget remaining** = ``1 - error_rate / (1 - target)``: 1.0 untouched, 0 spent,
  negative overspent.

After a restart, :meth:`SlaTracker.restore` rebuilds the buckets from the metrics store's
``probes`` rows and the ``calls`` rows that are not probes (``source != 'probe'``: a probe
is recorded in both tables).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from junction.alerting.model import Severity
from junction.alerting.rules import BurnRateWindow, SlaPolicy, format_duration

if TYPE_CHECKING:
    from junction.store import MetricsStore

_MINUTE = 60
_HOUR = 3600
_MAX_BUCKETS = 20_000
"""Hard cap per tier and service, against buckets a wrong clock put far in the future."""

MAX_BURN_WINDOW = timedelta(days=7)
"""Longest burn-rate window: counted in minute buckets, it must stay well under
``_MAX_BUCKETS`` of them (a longer one would be silently cut)."""


def _epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


@dataclass(frozen=True)
class BurnRate:
    """One burn-rate rule's measurement.

    Attributes:
        window: The rule.
        long_rate: Burn rate over the long window.
        short_rate: Burn rate over the short window.
        firing: Both are ``>= window.factor``.
    """

    window: BurnRateWindow
    long_rate: float
    short_rate: float
    firing: bool


@dataclass(frozen=True)
class SlaStatus:
    """A service's SLA standing at ``as_of``.

    Attributes:
        service: The service.
        as_of: When computed.
        target: Availability target.
        total: Observations in the SLA period.
        failed: Failed ones.
        uptime: ``(total - failed) / total``; ``None`` without data.
        error_budget_remaining: ``1 - error_rate / (1 - target)``; ``None`` without data.
        burn_rates: One entry per configured burn-rate rule.
    """

    service: str
    as_of: datetime
    target: float
    total: int
    failed: int
    uptime: float | None
    error_budget_remaining: float | None
    burn_rates: tuple[BurnRate, ...]

    @property
    def burn_severity(self) -> Severity | None:
        """The most severe firing burn-rate rule's severity, or ``None``."""
        firing = [b.window.severity for b in self.burn_rates if b.firing]
        return max(firing, key=lambda s: s.rank) if firing else None

    def describe(self) -> str:
        """One line about the worst firing burn rate (or the budget)."""
        firing = sorted(
            (b for b in self.burn_rates if b.firing), key=lambda b: -b.window.severity.rank
        )
        if firing:
            b = firing[0]
            return (
                f"{b.window.name} burn: error budget burning {b.long_rate:.1f}x over "
                f"{_fmt(b.window.long)} and {b.short_rate:.1f}x over {_fmt(b.window.short)} "
                f"(threshold {b.window.factor:g}x, target {self.target:.3%})"
            )
        if self.error_budget_remaining is None:
            return "no data"
        return f"error budget remaining {self.error_budget_remaining:.1%}"


def _fmt(delta: timedelta) -> str:
    return format_duration(delta)


def _at_least(rate: float, factor: float) -> bool:
    """``rate >= factor``, tolerant of float rounding (0.1 / 0.001 is 99.99999999999991)."""
    return rate >= factor * (1 - 1e-9)


class _Buckets:
    """``{bucket index: [total, failed]}`` at a fixed width in seconds."""

    __slots__ = ("data", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.data: dict[int, list[int]] = {}

    def add(self, epoch: float, ok: bool, count: int = 1, failed: int | None = None) -> None:
        cell = self.data.setdefault(int(epoch // self.width), [0, 0])
        cell[0] += count
        cell[1] += (0 if ok else count) if failed is None else failed

    def window(self, now_epoch: float, seconds: float) -> tuple[int, int]:
        top = int(now_epoch // self.width)
        span = max(1, round(seconds / self.width))
        total = failed = 0
        for index in range(top - span + 1, top + 1):
            cell = self.data.get(index)
            if cell is not None:
                total += cell[0]
                failed += cell[1]
        return total, failed

    def evict(self, now_epoch: float, keep_seconds: float) -> None:
        cutoff = int(now_epoch // self.width) - max(1, round(keep_seconds / self.width))
        for index in [i for i in self.data if i < cutoff]:
            del self.data[index]
        if len(self.data) > _MAX_BUCKETS:
            for index in sorted(self.data)[: len(self.data) - _MAX_BUCKETS]:
                del self.data[index]


class SlaTracker:
    """Per-service SLA and burn-rate state (see the module docstring).

    Args:
        policy: Targets, SLA period and burn-rate rules.
    """

    def __init__(self, policy: SlaPolicy | None = None) -> None:
        self.policy = policy or SlaPolicy()
        longest = max((b.long for b in self.policy.burn_rates), default=timedelta(hours=1))
        self._minute_keep = longest.total_seconds() + _MINUTE
        self._hour_keep = self.policy.window.total_seconds() + _HOUR
        self._minutes: dict[str, _Buckets] = {}
        self._hours: dict[str, _Buckets] = {}

    @property
    def services(self) -> list[str]:
        """Services with data."""
        return sorted(self._hours)

    def observe(self, service: str, ts: datetime, ok: bool) -> None:
        """Count one outcome of ``service`` at ``ts``."""
        self._add(service, _epoch(ts), ok, 1, None)

    def observe_many(self, service: str, items: Iterable[tuple[datetime, bool]]) -> None:
        """Count several ``(ts, ok)`` outcomes of ``service``."""
        for ts, ok in items:
            self._add(service, _epoch(ts), ok, 1, None)

    def _add(self, service: str, epoch: float, ok: bool, count: int, failed: int | None) -> None:
        minutes = self._minutes.get(service)
        if minutes is None:
            minutes = self._minutes[service] = _Buckets(_MINUTE)
            self._hours[service] = _Buckets(_HOUR)
        minutes.add(epoch, ok, count, failed)
        self._hours[service].add(epoch, ok, count, failed)

    def evict(self, now: datetime, service: str | None = None) -> None:
        """Drop buckets older than every window needs, for ``service`` or all services
        (:meth:`status` evicts its own service)."""
        at = _epoch(now)
        for name in self._minutes if service is None else [service]:
            if name in self._minutes:
                self._minutes[name].evict(at, self._minute_keep)
                self._hours[name].evict(at, self._hour_keep)

    def burn_rate(self, service: str, window: timedelta, now: datetime) -> float:
        """Burn rate of ``service`` over ``window`` ending at ``now`` (0 without data)."""
        minutes = self._minutes.get(service)
        if minutes is None:
            return 0.0
        total, failed = minutes.window(_epoch(now), window.total_seconds())
        if total == 0:
            return 0.0
        return (failed / total) / (1.0 - self.policy.target_for(service))

    def status(self, service: str, now: datetime) -> SlaStatus:
        """SLA standing and burn rates of ``service`` at ``now``."""
        self.evict(now, service)
        target = self.policy.target_for(service)
        hours = self._hours.get(service)
        total, failed = (0, 0)
        if hours is not None:
            total, failed = hours.window(_epoch(now), self.policy.window.total_seconds())
        uptime = budget = None
        if total:
            uptime = (total - failed) / total
            budget = 1.0 - (failed / total) / (1.0 - target)
        rates = []
        for rule in self.policy.burn_rates:
            long_rate = self.burn_rate(service, rule.long, now)
            short_rate = self.burn_rate(service, rule.short, now)
            rates.append(
                BurnRate(
                    rule,
                    long_rate,
                    short_rate,
                    _at_least(long_rate, rule.factor) and _at_least(short_rate, rule.factor),
                )
            )
        return SlaStatus(service, now, target, total, failed, uptime, budget, tuple(rates))

    def restore(
        self, store: MetricsStore, now: datetime, services: Collection[str] | None = None
    ) -> int:
        """Replace the buckets with counts from the metrics store's rows of the SLA period.

        Call it once at start-up, before feeding live observations (it replaces, so
        calling it again does not double-count, but observations fed since are dropped).
        ``services`` restricts it to those services (one service's page reads only its rows).

        Returns:
            Number of observations loaded.
        """
        since = datetime.fromtimestamp(_epoch(now) - self._hour_keep, tz=UTC)
        until = datetime.fromtimestamp(_epoch(now) + _MINUTE, tz=UTC)
        sql = """
            SELECT service, epoch(date_trunc('minute', ts)) AS m,
                   count(*) AS total, count(*) FILTER (WHERE NOT ok) AS failed
            FROM (
                SELECT service, ts, ok FROM probes WHERE ts >= ? AND ts < ?{only}
                UNION ALL
                SELECT service, ts, ok FROM calls WHERE ts >= ? AND ts < ?{only}
                    AND source <> 'probe'
            )
            GROUP BY 1, 2
        """
        only = "" if services is None else " AND list_contains(?, service)"
        bounds: list[object] = [since, until] + ([list(services)] if services is not None else [])
        frame = store.query(sql.format(only=only), bounds * 2)
        self._minutes.clear()
        self._hours.clear()
        loaded = 0
        for service, minute, total, failed in frame.itertuples(index=False, name=None):
            self._add(str(service), float(minute), True, int(total), int(failed))
            loaded += int(total)
        self.evict(now)
        return loaded


def sla_report(
    store: MetricsStore, now: datetime, policy: SlaPolicy | None = None
) -> list[SlaStatus]:
    """SLA standing of every service with data in the metrics store (for reports).

    Args:
        store: The metrics store (probes and non-probe calls are read).
        now: End of the SLA period.
        policy: Targets and windows (default: 99 % over 30 days, SRE-workbook burn rates;
            pass ``load_settings_config().sla`` for the configured one).
    """
    tracker = SlaTracker(policy)
    tracker.restore(store, now)
    return [tracker.status(service, now) for service in tracker.services]
