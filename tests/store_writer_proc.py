"""Writer process for the multi-process metrics store tests (run as a script).

Appends ``--rows`` rows to ``calls`` in batches of ``--batch`` and prints ``accepted N``
after every append, then ``READY N``. ``--hang`` then sleeps until killed (crash tests),
``--no-close`` exits without closing the store (the atexit hook must flush).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from junction.store import MetricsStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--flush-rows", type=int, default=5000)
    parser.add_argument("--flush-seconds", type=float, default=60.0)
    parser.add_argument("--prefix", default="", help="deterministic ids <prefix>-<n>")
    parser.add_argument("--days", type=int, default=1, help="spread ts over this many days")
    parser.add_argument("--base", help="ISO timestamp of row 0 (default: now)")
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--no-close", action="store_true")
    args = parser.parse_args()

    store = MetricsStore(args.root, flush_rows=args.flush_rows, flush_seconds=args.flush_seconds)
    now = datetime.fromisoformat(args.base) if args.base else datetime.now(UTC)
    accepted = 0
    for start in range(0, args.rows, args.batch):
        rows = []
        for i in range(start, min(start + args.batch, args.rows)):
            row: dict[str, object] = {
                "ts": now - timedelta(days=i % args.days, microseconds=i),
                "service": f"svc{i % 7}",
                "action": "get_thing",
                "method": "GET",
                "path": f"/things/{i}",
                "status": 200 if i % 10 else 503,
                "ok": bool(i % 10),
                "latency_ms": i / 10,
                "error_class": None if i % 10 else "ServerError",
                "error": None,
                "attempts": 1 + (i % 3),
                "breaker_state": "closed",
                "source": "workflow",
                "run_id": None,
            }
            if args.prefix:
                row["id"] = f"{args.prefix}-{i:06d}"
            rows.append(row)
        accepted += store.append("calls", rows)
        print(f"accepted {accepted}", flush=True)
    print(f"READY {accepted}", flush=True)
    if args.hang:
        time.sleep(600)
    if not args.no_close:
        store.close()


if __name__ == "__main__":
    main()
