"""Pages bench: a scripted week of faults, judged by the monitor and the alert engine.

A week of probes at the monitor's default interval (30 s, plus the monitor's immediate
confirmation re-probe 0.5 s after a healthy service's first failure) in simulated time
(seconds per arm, no sleeping): the outcome of every probe comes from a script of the
sandbox's fault modes (an outage answers 503 fast, a degradation answers slower and fails
more), and goes through the real judgement: each service's
:class:`junction.monitor.state.ServiceState` (window, score, down/recovery verdict), the
real :class:`junction.alerting.engine.AlertEngine` (SQLite, grouping, inhibition, SLA
burn rates; clock injected) with routes ``warning -> chat``, ``critical -> pager``.

Services (ground truth: the incidents the script injects):

- ``okta``: six outages (20 s, 45 s, 2 min, 5 min, 12 min, 30 min);
- ``gitlab``: two outages (8 min, 2 h);
- ``jira``: two slow degradations (p95 300 -> 7,000 ms and failures 0 -> 20 % over 3 h,
  one hour at the worst, then fixed); the incident is the time it is over a critical line
  (p95 > 5 s or failures > 10 %), pages from the start of the ramp count for it;
- ``slack``: three 20-minute flapping episodes (down 30-90 s, up 30-120 s, repeated);
- ``github``: noisy but healthy: 2 % random failures, 2 % slow (1.5 s) answers; no incident;
- ``webex``: healthy.

Arms (same script, same run): ``before``: no inhibition and the old monitor verdict (down
on 2 failures in a row, window averages judge status and alerts for 15 minutes); the two
halves (``inhibition only``, ``recovery only``); ``after``: both (the defaults); ``after +
resolve_wait 5m``: also ``grouping.resolve_wait: 5m`` (a resolved incident stays open,
quiet, five minutes; a relapse or a flap rejoins it instead of paging again).

Reported per arm: pages (notifications to ``pager``: firing, escalation, repeat) per real
incident (goal 1.0), false pages (outside any incident and its 30-minute tail; goal 0),
missed incidents, time-to-page (first page - incident start, median / max), time-to-
recovered (incident end -> the service's status no longer critical, median / max) and
time-to-resolved (incident end -> the pager's resolved message, median / max).

Run: ``.venv/bin/python bench/pages.py [--days 7] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from junction.alerting.engine import AlertEngine, ServiceSnapshot
from junction.alerting.model import NotificationKind, Severity
from junction.alerting.rules import AlertingConfig, settings_thresholds
from junction.monitor.state import ServiceState
from junction.scoring import Observation, ServiceWindow
from junction.settings import Settings

INTERVAL = 30.0
CONFIRM_DELAY = 0.5
TAIL = 1800.0
"""Pages up to this long after an incident's end still belong to it."""
T0 = datetime(2026, 11, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Incident:
    """One injected incident: ``start``/``end`` in seconds from the week's start."""

    service: str
    kind: str
    start: float
    end: float
    window_start: float  # pages from here count for it (a degradation's ramp)


Outcome = tuple[bool, float, str | None]


@dataclass
class Script:
    """The week's faults: a probe outcome per service and time, and the ground truth."""

    seed: int
    days: float
    incidents: list[Incident] = field(default_factory=list)
    outages: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    ramps: list[tuple[float, float, float]] = field(default_factory=list)  # jira

    def outcome(self, service: str, t: float, rng: random.Random) -> Outcome:
        """Probe outcome of ``service`` at ``t`` (seconds)."""
        for start, end in self.outages.get(service, ()):
            if start <= t < end:
                return False, rng.uniform(3, 12), "ServerError"
        base = rng.gauss(150, 25)
        if service == "github":
            if rng.random() < 0.02:
                return False, rng.uniform(3, 12), "ServerError"
            return True, 1500.0 if rng.random() < 0.02 else base, None
        if service == "jira":
            for start, peak, end in self.ramps:
                if start <= t < end:
                    x = min(1.0, (t - start) / (peak - start))
                    if rng.random() < 0.2 * x:
                        return False, rng.uniform(3, 12), "ServerError"
                    return True, 300 + 6700 * x * rng.uniform(0.85, 1.0), None
        return True, max(20.0, base), None


def build_script(days: float, seed: int) -> Script:
    """The scripted week (times spread over ``days``, jittered by ``seed``)."""
    rng = random.Random(seed)
    script = Script(seed=seed, days=days)
    span = days * 86400

    def at(fraction: float) -> float:
        return fraction * span + rng.uniform(0, 3600)

    def outage(service: str, start: float, length: float, kind: str = "outage") -> None:
        script.outages.setdefault(service, []).append((start, start + length))
        script.incidents.append(Incident(service, kind, start, start + length, start))

    for frac, length in zip(
        (0.07, 0.19, 0.31, 0.53, 0.63, 0.84), (20, 45, 120, 300, 720, 1800), strict=True
    ):
        outage("okta", at(frac), length)
    outage("gitlab", at(0.25), 480)
    outage("gitlab", at(0.71), 7200)
    for frac in (0.36, 0.78):
        start = at(frac)
        peak = start + 3 * 3600
        end = peak + 3600
        script.ramps.append((start, peak, end))
        # Critical from where p95 passes 5 s or failures 10 % (x = 0.5 and 0.70): x = 0.5.
        script.incidents.append(Incident("jira", "degradation", start + 1.5 * 3600, end, start))
    for frac in (0.12, 0.45, 0.92):
        start = t = at(frac)
        stop = start + 1200
        while t < stop:
            down = rng.uniform(30, 90)
            script.outages.setdefault("slack", []).append((t, t + down))
            last_end = t + down
            t = last_end + rng.uniform(30, 120)
        script.incidents.append(Incident("slack", "flapping", start, last_end, start))
    script.incidents.sort(key=lambda i: i.start)
    return script


SERVICES = ("okta", "gitlab", "jira", "slack", "github", "webex")


@dataclass
class ArmResult:
    """What one arm measured."""

    name: str
    pages: list[tuple[float, str]] = field(default_factory=list)  # (t, group)
    resolved: list[tuple[float, str]] = field(default_factory=list)  # (t, group)
    page_groups: dict[str, str] = field(default_factory=dict)  # group -> service
    status: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)  # critical?
    seconds: float = 0.0


def run_arm(
    name: str,
    script: Script,
    *,
    inhibit: bool,
    recovery: bool,
    workdir: Path,
    resolve_wait: float = 0.0,
) -> ArmResult:
    """Replay the week through the monitor's judgement and a fresh alert engine."""
    settings = Settings()
    config = AlertingConfig(
        defaults=settings_thresholds(settings),
        channels={"chat": {"type": "webhook"}, "pager": {"type": "webhook"}},
        routes={Severity.WARNING: ("chat",), Severity.CRITICAL: ("pager",)},
    )
    if not inhibit:
        config = replace(config, inhibit=())
    config = replace(config, resolve_wait=timedelta(seconds=resolve_wait))
    engine = AlertEngine(workdir / f"{name.replace(' ', '-')}.db", config)
    window = timedelta(seconds=settings.monitor_window_seconds)
    states = {s: ServiceState(s, ServiceWindow(window)) for s in SERVICES}
    rng = {s: random.Random(f"{script.seed}-{s}") for s in SERVICES}
    result = ArmResult(name, status={s: [] for s in SERVICES})
    clock = time.perf_counter()
    t = 0.0
    end = script.days * 86400
    try:
        while t < end:
            snaps = []
            for service in SERVICES:
                state = states[service]
                times = [t]
                first = script.outcome(service, t, rng[service])
                outcomes = [first]
                if not first[0] and state.up:  # the monitor confirms a first failure at once
                    times.append(t + CONFIRM_DELAY)
                    outcomes.append(script.outcome(service, t + CONFIRM_DELAY, rng[service]))
                for ts, (ok, latency, error) in zip(times, outcomes, strict=True):
                    obs = Observation(T0 + timedelta(seconds=ts), ok, latency, error)
                    now = T0 + timedelta(seconds=ts)
                    state.add(obs, now)
                    engine.observe(service, [obs])
                now = T0 + timedelta(seconds=times[-1])
                health = state.health(now, settings, settings.monitor_down_after, recovery=recovery)
                result.status[service].append((t, health.status == "critical"))
                assert health.stats is not None and health.breakdown is not None
                snaps.append(
                    ServiceSnapshot(
                        service,
                        health.stats,
                        health.breakdown,
                        down=health.down,
                        consecutive_failures=health.consecutive_failures,
                    )
                )
            evaluated = engine.evaluate(snaps, now=T0 + timedelta(seconds=t + CONFIRM_DELAY))
            for n in evaluated.notifications:
                if n.channel != "pager":
                    continue
                if n.kind is NotificationKind.RESOLVED:
                    result.resolved.append((t, n.group_key))
                else:
                    result.pages.append((t, n.group_key))
                    result.page_groups[n.group_key] = n.labels.get("service", "")
            t += INTERVAL
    finally:
        engine.close()
    result.seconds = time.perf_counter() - clock
    return result


@dataclass(frozen=True)
class Summary:
    """An arm's numbers."""

    name: str
    incidents: int
    pages: int
    per_incident: float
    false_pages: int
    missed: int
    to_page: list[float]
    to_recovered: list[float]
    to_resolved: list[float]
    seconds: float
    false_by_service: dict[str, int]


def summarise(result: ArmResult, script: Script) -> Summary:
    """Attribute pages to incidents and measure the times."""
    attributed: dict[int, list[float]] = {i: [] for i in range(len(script.incidents))}
    false_pages = 0
    false_by_service: dict[str, int] = {}
    groups_of: dict[int, set[str]] = {i: set() for i in attributed}
    for t, group in result.pages:
        service = result.page_groups.get(group, "")
        match = [
            i
            for i, inc in enumerate(script.incidents)
            if inc.service == service and inc.window_start <= t <= inc.end + TAIL
        ]
        if match:
            attributed[match[0]].append(t)
            groups_of[match[0]].add(group)
        else:
            false_pages += 1
            false_by_service[service] = false_by_service.get(service, 0) + 1
    to_page, to_recovered, to_resolved = [], [], []
    for i, inc in enumerate(script.incidents):
        if attributed[i]:
            to_page.append(min(attributed[i]) - inc.start)
        after = [t for t, critical in result.status[inc.service] if t >= inc.end and not critical]
        if after:
            to_recovered.append(after[0] - inc.end)
        done = [t for t, g in result.resolved if g in groups_of[i] and t >= inc.end]
        if done:
            to_resolved.append(min(done) - inc.end)
    pages = sum(len(v) for v in attributed.values())
    return Summary(
        name=result.name,
        incidents=len(script.incidents),
        pages=pages,
        per_incident=pages / len(script.incidents),
        false_pages=false_pages,
        missed=sum(1 for v in attributed.values() if not v),
        to_page=to_page,
        to_recovered=to_recovered,
        to_resolved=to_resolved,
        seconds=result.seconds,
        false_by_service=false_by_service,
    )


def _med_max(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):,.0f} / {max(values):,.0f}"


def by_kind(result: ArmResult, script: Script) -> dict[str, tuple[int, int]]:
    """Kind -> (incidents, pages attributed)."""
    out: dict[str, tuple[int, int]] = {}
    for inc in script.incidents:
        n = sum(
            1
            for t, g in result.pages
            if result.page_groups.get(g) == inc.service and inc.window_start <= t <= inc.end + TAIL
        )
        count, pages = out.get(inc.kind, (0, 0))
        out[inc.kind] = (count + 1, pages + n)
    return out


ARMS: list[tuple[str, bool, bool, float]] = [
    ("before", False, False, 0.0),
    ("inhibition only", True, False, 0.0),
    ("recovery only", False, True, 0.0),
    ("after", True, True, 0.0),
    ("after + resolve_wait 5m", True, True, 300.0),
]


def main(argv: list[str] | None = None) -> None:
    """Run every arm over the same script and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    script = build_script(args.days, args.seed)
    results: list[tuple[ArmResult, Summary]] = []
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        for name, inhibit, recovery, wait in ARMS:
            result = run_arm(
                name,
                script,
                inhibit=inhibit,
                recovery=recovery,
                workdir=Path(tmp),
                resolve_wait=wait,
            )
            results.append((result, summarise(result, script)))
    kinds = sorted({i.kind for i in script.incidents})
    print(
        f"{args.days:g} simulated days, probes every {INTERVAL:g} s, "
        f"{len(script.incidents)} incidents ({', '.join(kinds)}), seed {args.seed}"
    )
    head = (
        "| arm | pages / incident | false pages | missed | time-to-page s (med / max) "
        "| time-to-recovered s (med / max) | time-to-resolved s (med / max) | "
        + " | ".join(f"pages/{k}" for k in kinds)
        + " | run s |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for result, s in results:
        kind_pages = by_kind(result, script)
        cells = " | ".join(f"{p / n:.2f}" for n, p in (kind_pages[k] for k in kinds))
        print(
            f"| {s.name} | {s.per_incident:.2f} ({s.pages}/{s.incidents}) | {s.false_pages} "
            f"| {s.missed} | {_med_max(s.to_page)} | {_med_max(s.to_recovered)} "
            f"| {_med_max(s.to_resolved)} | {cells} | {s.seconds:.1f} |"
        )
    for _, s in results:
        where = ", ".join(f"{k} {v}" for k, v in sorted(s.false_by_service.items()))
        print(f"false pages of {s.name}: {where or 'none'}")
    before, after = results[0][1], results[3][1]
    if after.per_incident:
        print(
            f"pages per incident before/after: {before.per_incident / after.per_incident:.2f}x; "
            f"false pages {before.false_pages} -> {after.false_pages}"
        )


if __name__ == "__main__":
    main()
