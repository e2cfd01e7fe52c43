"""Continuous integration monitoring: probes, live calls, sliding windows, alerts.

A :class:`Monitor` keeps one :class:`ServiceState` (a sliding
:class:`junction.scoring.ServiceWindow`, failure streak, last probe, status) per monitored
integration and fills it from three sources:

* **probes** (:mod:`.probing`): :meth:`Monitor.sweep` health-checks every enabled
  integration concurrently (bounded by ``JUNCTION_SWEEP_CONCURRENCY``) over one shared
  HTTP client, records each probe in the metrics store's ``probes`` table as soon as it
  completes and returns a typed :class:`SweepResult` (:mod:`.results`);
* **live calls in this process** and **of other processes** (:mod:`.passive`): the
  metric hook, and the metrics store's ``calls`` table read by a
  :class:`junction.tail.StoreTailer` (unflushed spools of live writers included), each
  row once.

How a failure is detected fast without alerting on a blip:

* **First-failure confirmation** (:mod:`.probing`): a service that was up and fails is
  re-probed after ``JUNCTION_MONITOR_CONFIRM_DELAY_SECONDS``; its status and alerts are
  updated once that confirmation is in.
* **Down** (:mod:`.state`): a service whose last ``JUNCTION_MONITOR_DOWN_AFTER``
  observations all failed is ``critical`` whatever its window averages say.
* **Alerts** (:mod:`.dispatch`, :mod:`.alerts`): the alert engine runs as soon as a
  service's status changes or it fails, batched with services changing at the same
  moment; each evaluation is followed by an outbox delivery round.

Continuous mode (:mod:`.scheduler`): drift-free ticks on the monotonic clock, an interval
floor (``JUNCTION_MONITOR_MIN_INTERVAL_SECONDS``), SIGINT/SIGTERM handling. Observations
are stamped by a :class:`MonitorClock` (:mod:`.clock`) that survives wall-clock jumps.

Run it once (``await run_once()``), or continuously::

    async with Monitor(settings) as monitor:
        await monitor.restore()                      # windows from the metrics store
        await monitor.run_forever(5.0, on_sweep=print)  # until SIGINT/SIGTERM or stop()
"""

from __future__ import annotations

from junction.monitor.alerts import (
    ANNOTATION_WAIT_SECONDS,
    AlertHook,
    EngineHook,
    check_alerting,
    default_alert_hook,
)
from junction.monitor.clock import CLOCK_JUMP_TOLERANCE, MonitorClock
from junction.monitor.core import Monitor, run_once
from junction.monitor.dispatch import EVAL_BATCH_SECONDS, AlertDispatcher
from junction.monitor.passive import LiveCall, LiveCallFeed, classify_call
from junction.monitor.probing import ProbeBreaker, Prober, probe_breaker
from junction.monitor.results import (
    EventKind,
    MonitorEvent,
    OnEvent,
    OnSweep,
    ServiceHealth,
    SweepResult,
)
from junction.monitor.scheduler import check_interval, next_tick, parse_duration
from junction.monitor.state import ServiceState

__all__ = [
    "ANNOTATION_WAIT_SECONDS",
    "CLOCK_JUMP_TOLERANCE",
    "EVAL_BATCH_SECONDS",
    "AlertDispatcher",
    "AlertHook",
    "EngineHook",
    "EventKind",
    "LiveCall",
    "LiveCallFeed",
    "Monitor",
    "MonitorClock",
    "MonitorEvent",
    "OnEvent",
    "OnSweep",
    "ProbeBreaker",
    "Prober",
    "ServiceHealth",
    "ServiceState",
    "SweepResult",
    "check_alerting",
    "check_interval",
    "classify_call",
    "default_alert_hook",
    "next_tick",
    "parse_duration",
    "probe_breaker",
    "run_once",
]
