"""Passive detection benchmark: a service fails under live traffic of another process.

A traffic process (``--traffic`` mode of this file) calls one sandbox service through the
production client (``junction.clients.get_client``) every ``--gap`` seconds, recording
every call into a metrics store as a workflow run does. The service is taken down and up
again on a random schedule (``POST /_admin/outage/<service>``, mode 503). Detection is
measured **from the first failing live call** of each outage (its completion, as the
traffic process saw it) to the *firing* webhook the monitor's alert engine delivers to a
receiver in this process. Arms, side by side on the same store and the same schedule, each
``junction monitor --every <interval>s`` in its own process:

* ``passive``: the monitor of this tree (live calls read from the store's spools as they
  grow, ``junction.tail.StoreTailer.spools_changed``);
* ``passive-before`` (``--before REV``): the same monitor from an older commit
  (``git archive REV``), for a before/after in the same run;
* ``probe-only``: the monitor of this tree with passive monitoring off
  (``JUNCTION_ENHANCED_MONITORING_ENABLED=false``): probes every interval only.

Goals (issue 14): passive p95 <= 1 s; probe-only p95 <= 5 s at a 5 s interval (probe-only
is also reported from the outage start, as ``bench/detection.py`` measures it).

Run: ``.venv/bin/python bench/passive.py [--outages 12] [--before HEAD~1] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.detection import (  # noqa: E402
    PYTHON,
    Arrival,
    JunctionArm,
    Proc,
    Receiver,
    pct,
    schedule,
    start_sandbox,
    workdir,
)

SERVICE = "github"


# --- the traffic process -------------------------------------------------------------------


async def traffic(store_dir: str, gap: float) -> None:
    """Call ``SERVICE``'s health path forever, recording calls; print one JSON line per
    call: ``{"at": completion epoch, "ok": bool}``."""
    from integrations.catalog import load_catalog
    from integrations.retry import RetryPolicy
    from junction.clients import get_client
    from junction.health import recording_calls
    from junction.store import MetricsStore

    path = load_catalog().get(SERVICE).health.path
    store = MetricsStore(store_dir)
    # One attempt per call, as a workflow's read would be after its retries: the outcome
    # is recorded at once (retries would only move the first failure later).
    client = get_client(SERVICE, retry=RetryPolicy(max_attempts=1))
    with recording_calls(store):
        async with client:
            while True:
                ok = True
                try:
                    await client.request("GET", path, action="traffic")
                except Exception:
                    ok = False
                print(json.dumps({"at": time.time(), "ok": ok}), flush=True)
                await asyncio.sleep(gap)


# --- the arms ------------------------------------------------------------------------------


class MonitorArm(JunctionArm):
    """``junction monitor`` on a shared store, optionally from another source tree."""

    def __init__(
        self,
        arm: str,
        work: Path,
        interval: float,
        sandbox_url: str,
        hook: str,
        store: Path,
        env: dict[str, str] | None = None,
        tree: Path | None = None,
    ) -> None:
        self.arm = arm
        super().__init__(work / arm, interval, sandbox_url, SERVICE, hook)
        self.store = store
        self.extra = env or {}
        self.tree = tree

    async def start(self) -> None:
        """Start it like :class:`JunctionArm`, with the shared store and source tree."""
        saved = dict(os.environ)
        os.environ["JUNCTION_STORE_DIR"] = str(self.store)
        os.environ.update(self.extra)
        if self.tree is not None:
            os.environ["PYTHONPATH"] = str(self.tree)
        try:
            await super().start()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def export_tree(rev: str, dest: Path) -> Path:
    """``git archive rev`` unpacked into ``dest`` (the code of another commit)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


# --- measurement ---------------------------------------------------------------------------


@dataclass
class Options:
    """Command-line options."""

    outages: int = 12
    interval: float = 5.0
    down: tuple[float, float] = (10.0, 20.0)
    # Up-gaps longer than the flap rule's quiet period (junction/recovery.py: FLAP_QUIET
    # successes in a row, 50 s at a 5 s interval): outages closer than that are one
    # flapping incident by design (one page), not separate ones to detect.
    up: tuple[float, float] = (60.0, 90.0)
    gap: float = 0.2
    seed: int = 11
    before: str | None = None
    keep: bool = False


def first_failures(
    calls: Sequence[dict[str, Any]], windows: Sequence[tuple[float, float]]
) -> list[float | None]:
    """The completion time of each outage's first failing call (``None``: none failed)."""
    out: list[float | None] = []
    for down, up in windows:
        failed = [c["at"] for c in calls if not c["ok"] and down <= c["at"] <= up + 1.0]
        out.append(min(failed) if failed else None)
    return out


def delays(
    arm: str,
    starts: Sequence[float | None],
    windows: Sequence[tuple[float, float]],
    arrivals: Sequence[Arrival],
    end: float,
) -> list[float | None]:
    """Per outage: first *firing* arrival of ``arm`` at or after ``start``, minus it."""
    out: list[float | None] = []
    for i, start in enumerate(starts):
        nxt = windows[i + 1][0] if i + 1 < len(windows) else end
        if start is None:
            out.append(None)
            continue
        lo = windows[i][0]
        fired = [a.at for a in arrivals if a.arm == arm and a.kind == "firing" and lo <= a.at < nxt]
        out.append(max(0.0, fired[0] - start) if fired else None)
    return out


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """n, missed, p50/p95/max."""
    got = [v for v in values if v is not None]
    return {
        "n": len(values),
        "missed": len(values) - len(got),
        "p50": pct(got, 50),
        "p95": pct(got, 95),
        "max": max(got) if got else None,
    }


async def run(opts: Options, log: Any = print) -> dict[str, Any]:
    """Every arm side by side on one outage schedule; the results as JSON."""
    plan = schedule(opts.outages, opts.seed, opts.down, opts.up)
    receiver = Receiver()
    procs: list[Proc] = []
    arms: list[MonitorArm] = []
    with workdir(opts.keep) as work:
        try:
            await receiver.start()
            sandbox, sandbox_url = await start_sandbox(work)
            procs.append(sandbox)
            store = work / "store"
            store.mkdir()
            specs: list[tuple[str, dict[str, str], Path | None]] = [
                ("passive", {}, None),
                ("probe-only", {"JUNCTION_ENHANCED_MONITORING_ENABLED": "false"}, None),
            ]
            if opts.before:
                specs.append(("passive-before", {}, export_tree(opts.before, work / "before")))
            for name, env, tree in specs:
                arm = MonitorArm(
                    name,
                    work,
                    opts.interval,
                    sandbox_url,
                    f"{receiver.url}/{name}",
                    store,
                    env,
                    tree,
                )
                arms.append(arm)
                await arm.start()
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "JUNCTION_HOME": str(work / "traffic-home"),
                "JUNCTION_SANDBOX_URL": sandbox_url,
                "JUNCTION_INTEGRATIONS": SERVICE,
            }
            feeder = Proc(
                "traffic",
                [PYTHON, str(Path(__file__)), "--traffic", str(store), "--gap", str(opts.gap)],
                work / "traffic.log",
                env,
            )
            procs.append(feeder)
            feeder.start()
            await asyncio.sleep(max(3 * opts.interval, 10))
            receiver.arrivals.clear()

            windows: list[tuple[float, float]] = []
            import httpx

            async with httpx.AsyncClient(base_url=sandbox_url, timeout=5.0) as admin:
                for outage in plan:
                    await asyncio.sleep(outage.gap)
                    down = time.time()
                    r = await admin.post(
                        f"/_admin/outage/{SERVICE}",
                        json={"seconds": outage.duration + 600, "mode": "503"},
                    )
                    r.raise_for_status()
                    await asyncio.sleep(outage.duration)
                    up = time.time()
                    (await admin.delete(f"/_admin/outage/{SERVICE}")).raise_for_status()
                    windows.append((down, up))
                    log(f"outage {outage.index + 1}/{len(plan)}: {outage.duration:.1f}s down")
                    for arm in arms:
                        if arm.proc is not None and not arm.proc.alive():
                            raise RuntimeError(f"{arm.arm} died:\n{arm.proc.tail()}")
            await asyncio.sleep(10)
            end = time.time()
            calls = [
                json.loads(line)
                for line in (work / "traffic.log").read_text().splitlines()
                if line.startswith("{")
            ]
        finally:
            for arm in arms:
                arm.stop()
            for proc in reversed(procs):
                proc.stop()
            await receiver.stop()
    starts = first_failures(calls, windows)
    outage_starts: list[float | None] = [d for d, _ in windows]
    doc: dict[str, Any] = {
        "options": {**opts.__dict__, "down": list(opts.down), "up": list(opts.up)},
        "load_avg": list(os.getloadavg()),
        "calls": len(calls),
        "arms": {},
    }
    for arm in arms:
        doc["arms"][arm.arm] = {
            "from_first_failing_call": summary(
                delays(arm.arm, starts, windows, receiver.arrivals, end)
            ),
            "from_outage_start": summary(
                delays(arm.arm, outage_starts, windows, receiver.arrivals, end)
            ),
        }
    return doc


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(doc: dict[str, Any]) -> str:
    """The Markdown table of the results."""
    lines = [
        "| arm | n | missed | from first failing call p50 / p95 / max (s) "
        "| from outage start p50 / p95 / max (s) |",
        "|---|---|---|---|---|",
    ]
    for name, res in doc["arms"].items():
        a, b = res["from_first_failing_call"], res["from_outage_start"]
        lines.append(
            f"| {name} | {a['n']} | {a['missed']} | {_f(a['p50'])} / {_f(a['p95'])} / "
            f"{_f(a['max'])} | {_f(b['p50'])} / {_f(b['p95'])} / {_f(b['max'])} |"
        )
    arms = doc["arms"]
    if "passive-before" in arms and "passive" in arms:
        new, old = (
            arms["passive"]["from_first_failing_call"],
            arms["passive-before"]["from_first_failing_call"],
        )
        if new["p95"] and old["p95"]:
            lines.append(
                f"\npassive / passive-before: p50 {new['p50'] / old['p50']:.2f}x, "
                f"p95 {new['p95'] / old['p95']:.2f}x"
            )
    load = ", ".join(f"{x:.1f}" for x in doc["load_avg"])
    lines.append(f"\n{doc['calls']} live calls; load average at the end {load}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--traffic", metavar="STORE", help=argparse.SUPPRESS)
    p.add_argument("--gap", type=float, default=Options.gap, help="seconds between live calls")
    p.add_argument("--outages", type=int, default=Options.outages)
    p.add_argument("--interval", type=float, default=Options.interval)
    p.add_argument("--before", help="also run the monitor of this git revision")
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep every process's log and config")
    ns = p.parse_args(argv)
    if ns.traffic:
        asyncio.run(traffic(ns.traffic, ns.gap))
        return 0
    opts = Options(
        outages=ns.outages, interval=ns.interval, gap=ns.gap, before=ns.before, keep=ns.keep
    )
    doc = asyncio.run(run(opts, log=lambda m: print(m, file=sys.stderr, flush=True)))
    print(json.dumps(doc, indent=2) if ns.json else table(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
