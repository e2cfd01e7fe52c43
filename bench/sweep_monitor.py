"""CPU per probe of the monitor's sweep against the bare sweep, same services, one process.

Over every catalog integration on the sandbox, alternating in one process (after
``quiet_gc``, as ``junction monitor`` runs): ``sweeper`` (``integrations.sweep.Sweeper``:
the health checks alone), ``monitor`` (``Monitor.sweep`` without recording: probes,
confirmation bookkeeping, windows, status) and ``monitor + record`` (also the ``probes``
rows and the probes' call metrics in the metrics store). Alerts and passive detection off.

Run: ``.venv/bin/python bench/sweep_monitor.py [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from deployments.local import free_port  # noqa: E402
from integrations.catalog import load_catalog  # noqa: E402
from integrations.sandbox.process import start_sandbox_process  # noqa: E402
from integrations.sweep import catalog_sweeper, quiet_gc  # noqa: E402
from junction.monitor import Monitor  # noqa: E402
from junction.settings import Settings  # noqa: E402


async def measure(url: str, rounds: int) -> tuple[int, dict[str, list[float]]]:
    """The number of services and each arm's CPU seconds per sweep."""
    names = list(load_catalog().names)
    settings = Settings(sandbox_url=url)
    sweeper = catalog_sweeper(names, engine=settings.engine_config())
    common: dict[str, Any] = {"names": names, "alerts": False, "passive": False}
    try:
        async with (
            Monitor(settings, record=False, **common) as bare,
            Monitor(settings, record=True, **common) as recording,
        ):
            quiet_gc()
            arms: dict[str, Callable[[], Awaitable[Any]]] = {
                "sweeper": sweeper.run,
                "monitor": bare.sweep,
                "monitor + record": recording.sweep,
            }
            for run in arms.values():
                for _ in range(2):
                    await run()
            cpu: dict[str, list[float]] = {arm: [] for arm in arms}
            for _ in range(rounds):
                for arm, run in arms.items():
                    started = time.process_time()
                    await run()
                    cpu[arm].append(time.process_time() - started)
    finally:
        await sweeper.aclose()
    return len(names), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    port = free_port()
    sandbox = start_sandbox_process(port)
    os.environ["JUNCTION_HOME"] = tempfile.mkdtemp(prefix="junction-sweep-monitor-")
    try:
        count, cpu = asyncio.run(measure(f"http://127.0.0.1:{port}", args.rounds))
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        sandbox.wait(10)
    ref = statistics.median(cpu["sweeper"])
    print(f"\n{count} catalog integrations, {args.rounds} rounds, medians; one process.\n")
    print("| arm | CPU ms / probe | x sweeper |")
    print("|---|---|---|")
    for arm, xs in cpu.items():
        med = statistics.median(xs)
        print(f"| {arm} | {med / count * 1000:.3f} | {med / ref:.2f} |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load}")


if __name__ == "__main__":
    main()
