"""Each cut of the probe path measured alone: one process, sweeps alternating with it off.

Between fresh processes the CPU of a 1,000-endpoint sweep varies by 10-20% on this shared
host, more than most single cuts save. Here one persistent sweeper (the production backend,
``quiet_gc`` applied, as ``junction monitor`` runs) sweeps the sandbox's 1,000 synthetic
endpoints (20-200 ms) again and again; each round runs every variant once, in a shuffled
order, each variant's timed sweep preceded by one untimed sweep in the same variant:

* ``all cuts``: the code as it is;
* ``cookies``: the client keeps a cookie jar fed by every response (httpx's default);
* ``default gc``: the interpreter's collector (``gc.unfreeze``, threshold 700);
* ``no redact cache``: the metric path redacted on every call (``redact``);
* ``semaphore``: ``check_all`` through its semaphore (concurrency one below the count);
* ``clients' order``: checks sent in the clients' order, not longest-last-time first.

Reported: the median CPU per check (this process) and sweep wall time of each variant,
and the ratio to ``all cuts``. The sandbox runs in its own process.

Run: ``.venv/bin/python bench/sweep_ab.py [--endpoints 1000] [--rounds 12]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

import integrations.base as base_module  # noqa: E402
from bench.sweep import make_sweeper  # noqa: E402
from deployments.local import free_port  # noqa: E402
from integrations.redaction import redact, redact_path  # noqa: E402
from integrations.sandbox.process import start_sandbox_process  # noqa: E402
from integrations.sweep import GC_GEN0_THRESHOLD, Sweeper, quiet_gc  # noqa: E402

VARIANTS = (
    "all cuts",
    "cookies",
    "default gc",
    "no redact cache",
    "semaphore",
    "clients' order",
)


def switch(variant: str, sweeper: Sweeper, count: int) -> Callable[[], None]:
    """Put ``sweeper`` (and the process) in ``variant``; return what restores the cuts."""
    jar = sweeper.http._jar  # type: ignore[attr-defined]
    if variant == "cookies":
        sweeper.http._jar = httpx.Cookies()  # type: ignore[attr-defined]
    elif variant == "default gc":
        gc.unfreeze()
        gc.set_threshold(700, *gc.get_threshold()[1:])
    elif variant == "no redact cache":
        base_module.redact_path = redact  # type: ignore[assignment]
    elif variant == "semaphore":
        sweeper.concurrency = count - 1
    elif variant == "clients' order":
        sweeper._order = list(range(count))

    def restore() -> None:
        sweeper.http._jar = jar  # type: ignore[attr-defined]
        base_module.redact_path = redact_path
        sweeper.concurrency = count
        if variant == "default gc":
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])

    return restore


async def measure(url: str, count: int, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """CPU seconds and wall seconds of each variant's timed sweeps."""
    sweeper = make_sweeper(url, count)
    quiet_gc()
    out: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in VARIANTS}
    order = list(VARIANTS)
    try:
        for _ in range(2):
            await sweeper.run()  # connections up, send order learnt
        for _ in range(rounds):
            random.shuffle(order)
            for variant in order:
                restore = switch(variant, sweeper, count)
                try:
                    await sweeper.run()
                    if variant == "clients' order":  # the untimed sweep re-sorted it
                        sweeper._order = list(range(count))
                    cpu, wall = time.process_time(), time.perf_counter()
                    await sweeper.run()
                    out[variant][0].append(time.process_time() - cpu)
                    out[variant][1].append(time.perf_counter() - wall)
                finally:
                    restore()
    finally:
        await sweeper.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    config = {"count": args.endpoints, "latency_ms": {"min": 20, "max": 200}, "seed": 1}
    port = free_port()
    sandbox = start_sandbox_process(port)
    url = f"http://127.0.0.1:{port}"
    try:
        httpx.post(f"{url}/_admin/synthetic", json=config).raise_for_status()
        out = asyncio.run(measure(url, args.endpoints, args.rounds))
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        sandbox.wait(10)
    ref_cpu = statistics.median(out["all cuts"][0])
    ref_wall = statistics.median(out["all cuts"][1])
    print(f"\n{args.endpoints} endpoints, {args.rounds} rounds, medians; one process.\n")
    print("| variant | CPU ms / check | x all cuts | sweep wall ms | x all cuts |")
    print("|---|---|---|---|---|")
    for variant, (cpus, walls) in out.items():
        cpu, wall = statistics.median(cpus), statistics.median(walls)
        print(
            f"| {variant} | {cpu / args.endpoints * 1000:.3f} | {cpu / ref_cpu:.2f} "
            f"| {wall * 1000:.0f} | {wall / ref_wall:.2f} |"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load}")


if __name__ == "__main__":
    main()
