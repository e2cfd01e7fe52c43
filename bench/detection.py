"""Detection benchmark: outage start -> alert delivered, recovery -> resolved delivered.

Takes one sandbox service down and up again on a random schedule (``--outages`` times,
each outage 20-40 s at a random phase, the same schedule for every arm) and measures,
per arm, when a webhook receiver in this process gets the *firing* notification and the
*resolved* one. Arms, all running side by side against the same sandbox, probing every
``--interval`` seconds (5 s):

* ``junction``: ``junction monitor --every 5s`` (the monitor + alert engine) with one
  webhook channel (``junction.alerting.channels``) pointing at the receiver.
* ``prometheus-docs``: Prometheus + blackbox_exporter + Alertmanager (Debian packages)
  configured as their documentation advises: scrape and evaluation interval = the probe
  interval, the alert rule ``probe_success == 0`` with ``for:`` omitted, Alertmanager's
  documented route defaults ``group_wait 30s``, ``group_interval 5m``,
  ``repeat_interval 4h``, ``send_resolved`` (default true).
* ``prometheus-tuned`` (``--tuned``, on by default): the same with ``group_wait 0s`` and
  ``group_interval 5s`` (the fastest sane Alertmanager settings, see
  /work/shared/FINDINGS.md).

Every process runs on 127.0.0.1 with free ports and temporary config/data directories,
in its own process group, and is killed at the end (also on Ctrl-C).

Run: ``.venv/bin/python bench/detection.py [--outages 20] [--interval 5] [--quick]
[--json] [--write-readme]``. ``--quick`` is a smoke run (3 short outages).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from deployments.local import free_port
from integrations.catalog import load_catalog

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PROMETHEUS_BIN = os.environ.get("JUNCTION_PROMETHEUS_BIN", "/usr/bin/prometheus")
BLACKBOX_BIN = os.environ.get("JUNCTION_BLACKBOX_BIN", "/usr/bin/prometheus-blackbox-exporter")
ALERTMANAGER_BIN = os.environ.get("JUNCTION_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")
README = REPO / "bench" / "README.md"
BEGIN, END = "<!-- detection:begin -->", "<!-- detection:end -->"

# The monitored service: a catalog entry with a bearer-token health check, so the
# blackbox prober can send the same credential Junction's client sends.
DEFAULT_SERVICE = "github"
TOKEN = "sandbox-token"  # the sandbox's public test token, not a secret


def health_url(service: str, sandbox_url: str) -> str:
    """The sandbox URL of ``service``'s catalog health check (bearer-token services only)."""
    spec = load_catalog().get(service)
    if spec.auth.scheme != "bearer" or spec.health.method != "GET" or "{" in spec.health.path:
        raise ValueError(f"{service}: pick a service with a bearer-token GET health check")
    return spec.sandbox_base_url(sandbox_url) + spec.health.path


# --- processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process in its own process group, logging to a file."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch it."""
        out = self.log.open("wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.log.parent,
            env=self.env,
            start_new_session=True,
        )
        out.close()

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.popen is not None and self.popen.poll() is None

    def tail(self, chars: int = 2000) -> str:
        """The end of its log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL; idempotent."""
        proc, self.popen = self.popen, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGINT if self.name == "junction" else signal.SIGTERM)
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


async def wait_http(
    url: str, proc: Proc, timeout: float = 60.0, ok: Sequence[int] = (200,)
) -> None:
    """Poll ``url`` until it answers one of ``ok``; fail with the process's log otherwise."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code in ok:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout:.0f}s:\n{proc.tail()}")


# --- the receiver --------------------------------------------------------------------------


@dataclass
class Arrival:
    """One notification received: which arm, firing or resolved, when."""

    arm: str
    kind: str  # "firing" | "resolved"
    at: float
    detail: str = ""


class Receiver:
    """Webhook receiver for every arm: ``POST /<arm>``.

    Understands Junction's webhook body (``Notification.to_json()``: ``kind``) and
    Alertmanager's (``{"alerts": [{"status": "firing"|"resolved", ...}]}``).
    """

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.port = free_port()
        self._runner: Any = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve on 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/{arm}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: Any) -> Any:
        now = time.time()
        arm = request.match_info["arm"]
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        if isinstance(body, dict) and "alerts" in body:  # Alertmanager
            for alert in body.get("alerts") or []:
                status = alert.get("status", body.get("status", ""))
                self.arrivals.append(Arrival(arm, status, now, alert.get("startsAt", "")))
        elif isinstance(body, dict) and "kind" in body:  # Junction
            kind = "resolved" if body["kind"] == "resolved" else "firing"
            self.arrivals.append(Arrival(arm, kind, now, f"{body['kind']} {body.get('title', '')}"))
        return web.json_response({"ok": True})


# --- the arms -------------------------------------------------------------------------------


BLACKBOX_CONFIG = {
    "modules": {
        "http_sandbox": {
            "prober": "http",
            "timeout": "4s",
            "http": {
                "method": "GET",
                "headers": {"Authorization": f"Bearer {TOKEN}"},
                "preferred_ip_protocol": "ip4",
            },
        }
    }
}

ALERT_RULES = {
    "groups": [
        {
            "name": "junction-bench",
            "rules": [
                {
                    # blackbox_exporter's documented example: the probe failed. `for:` is
                    # omitted (a pending period would only add to the delay).
                    "alert": "EndpointDown",
                    "expr": 'probe_success{job="blackbox"} == 0',
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "{{ $labels.instance }} is down"},
                }
            ],
        }
    ]
}


@dataclass(frozen=True)
class PeerConfig:
    """One Prometheus + Alertmanager arm."""

    arm: str
    group_wait: str
    group_interval: str
    repeat_interval: str = "4h"


PEER_DOCS = PeerConfig("prometheus-docs", "30s", "5m")
PEER_TUNED = PeerConfig("prometheus-tuned", "0s", "5s")


class PeerArm:
    """Prometheus + Alertmanager for one configuration (blackbox_exporter is shared)."""

    def __init__(
        self, cfg: PeerConfig, work: Path, interval: float, target: str, bb_port: int, hook: str
    ) -> None:
        self.cfg = cfg
        self.dir = work / cfg.arm
        self.dir.mkdir(parents=True)
        self.interval = interval
        self.target = target
        self.bb_port = bb_port
        self.hook = hook
        self.prom_port = free_port()
        self.am_port = free_port()
        self.procs: list[Proc] = []

    def _write(self) -> tuple[Path, Path]:
        am = {
            "route": {
                "receiver": "bench",
                "group_by": ["alertname"],
                "group_wait": self.cfg.group_wait,
                "group_interval": self.cfg.group_interval,
                "repeat_interval": self.cfg.repeat_interval,
            },
            "receivers": [
                {"name": "bench", "webhook_configs": [{"url": self.hook, "send_resolved": True}]}
            ],
        }
        step = f"{self.interval:g}s"
        prom = {
            "global": {
                "scrape_interval": step,
                "evaluation_interval": step,
                "scrape_timeout": f"{max(1.0, self.interval - 1):g}s",
            },
            "rule_files": ["rules.yml"],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.am_port}"]}]}]
            },
            "scrape_configs": [
                {
                    "job_name": "blackbox",
                    "metrics_path": "/probe",
                    "params": {"module": ["http_sandbox"]},
                    "static_configs": [{"targets": [self.target]}],
                    "relabel_configs": [
                        {"source_labels": ["__address__"], "target_label": "__param_target"},
                        {"source_labels": ["__param_target"], "target_label": "instance"},
                        {"target_label": "__address__", "replacement": f"127.0.0.1:{self.bb_port}"},
                    ],
                }
            ],
        }
        (self.dir / "rules.yml").write_text(yaml.safe_dump(ALERT_RULES, sort_keys=False))
        am_path, prom_path = self.dir / "alertmanager.yml", self.dir / "prometheus.yml"
        am_path.write_text(yaml.safe_dump(am, sort_keys=False))
        prom_path.write_text(yaml.safe_dump(prom, sort_keys=False))
        return am_path, prom_path

    async def start(self) -> None:
        """Start Alertmanager, then Prometheus; wait until both are ready."""
        am_path, prom_path = self._write()
        am = Proc(
            f"{self.cfg.arm}-alertmanager",
            [
                ALERTMANAGER_BIN,
                f"--config.file={am_path}",
                f"--storage.path={self.dir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.am_port}",
                "--cluster.listen-address=",
            ],
            self.dir / "alertmanager.log",
        )
        prom = Proc(
            f"{self.cfg.arm}-prometheus",
            [
                PROMETHEUS_BIN,
                f"--config.file={prom_path}",
                f"--storage.tsdb.path={self.dir / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
            ],
            self.dir / "prometheus.log",
        )
        self.procs = [am, prom]
        am.start()
        await wait_http(f"http://127.0.0.1:{self.am_port}/-/ready", am)
        prom.start()
        await wait_http(f"http://127.0.0.1:{self.prom_port}/-/ready", prom)

    async def healthy(self) -> bool:
        """Whether Prometheus has scraped the target as up at least once."""
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query"
        async with httpx.AsyncClient(timeout=2.0) as http:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                data = (await http.get(url, params={"query": "probe_success"})).json()
                values = [r["value"][1] for r in data["data"]["result"]]
                return values == ["1"]
        return False

    def stop(self) -> None:
        """Kill both."""
        for proc in reversed(self.procs):
            proc.stop()


def down_only_alerting(hook: str) -> dict[str, Any]:
    """An alerting configuration with one webhook channel (``hook``) for both severities
    and only the monitor's confirmed ``down`` verdict on.

    The same alert as a blackbox peer's ``probe_success == 0``. The window rules (success
    rate over 15 min, score, burn rate) stay firing through a run that is down a third of
    the time, so they are off: they measure something else than "is it down now".
    """
    base, _, path = hook.rpartition("/")
    off = {"enabled": False}
    return {
        "defaults": {
            "down": {"enabled": True},
            "success_rate": off,
            "response_time": off,
            "health_score": off,
            "burn_rate": off,
        },
        "channels": {"bench": {"type": "webhook", "url": base, "path": f"/{path}"}},
        "routes": {"warning": ["bench"], "critical": ["bench"]},
    }


class JunctionArm:
    """``junction monitor --every <interval>`` with a webhook channel to the receiver."""

    arm = "junction"

    def __init__(
        self, work: Path, interval: float, sandbox_url: str, service: str, hook: str
    ) -> None:
        self.dir = work / "junction"
        self.dir.mkdir(parents=True)
        self.interval = interval
        self.sandbox_url = sandbox_url
        self.service = service
        self.hook = hook
        self.proc: Proc | None = None

    def config(self) -> dict[str, Any]:
        """The alerting configuration: one webhook channel for both severities."""
        return down_only_alerting(self.hook)

    async def start(self) -> None:
        """Start the monitor process."""
        cfg = self.dir / "alerting.yaml"
        cfg.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        env = {
            **os.environ,
            "JUNCTION_HOME": str(self.dir / "home"),
            "JUNCTION_SANDBOX_URL": self.sandbox_url,
            "JUNCTION_INTEGRATIONS": self.service,
            "JUNCTION_ALERTING_FILE": str(cfg),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        }
        argv = [PYTHON, "-m", "junction", "monitor", "--every", f"{self.interval:g}s", "--json"]
        self.proc = Proc("junction", argv, self.dir / "monitor.log", env)
        self.proc.start()
        # Ready once the first sweep's JSON line is out (start-up imports take ~10-25 s).
        deadline = time.monotonic() + 120
        while '"event": "sweep"' not in self.proc.tail(20000):
            if not self.proc.alive():
                raise RuntimeError(f"junction monitor exited:\n{self.proc.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"junction monitor made no sweep in 120 s:\n{self.proc.tail()}")
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        """Stop the monitor (SIGINT: its clean shutdown)."""
        if self.proc is not None:
            self.proc.stop()


# --- the schedule and the measurements ------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    """One scheduled outage: wall-clock start and end (filled in when it happened)."""

    index: int
    gap: float  # seconds up before it starts
    duration: float


def schedule(n: int, seed: int, down: tuple[float, float], up: tuple[float, float]) -> list[Outage]:
    """``n`` outages with random durations and random up-gaps (random phase vs probes)."""
    rng = random.Random(seed)
    return [Outage(i, rng.uniform(*up), rng.uniform(*down)) for i in range(n)]


@dataclass
class ArmResult:
    """Latencies of one arm."""

    arm: str
    n: int
    detected: list[float | None] = field(default_factory=list)
    resolved: list[float | None] = field(default_factory=list)

    @property
    def missed(self) -> int:
        """Outages without a firing notification."""
        return sum(1 for d in self.detected if d is None)

    @property
    def unresolved(self) -> int:
        """Outages without a resolved notification before the next one began."""
        return sum(1 for r in self.resolved if r is None)

    def stats(self) -> dict[str, Any]:
        """p50/p95/max of detection, p50/p95 of resolve."""
        det = [d for d in self.detected if d is not None]
        res = [r for r in self.resolved if r is not None]
        return {
            "arm": self.arm,
            "n": self.n,
            "missed": self.missed,
            "unresolved": self.unresolved,
            "detect_p50": pct(det, 50),
            "detect_p95": pct(det, 95),
            "detect_max": max(det) if det else None,
            "resolve_p50": pct(res, 50),
            "resolve_p95": pct(res, 95),
        }


def pct(values: Sequence[float], q: float) -> float | None:
    """Percentile with linear interpolation (numpy's default), ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def measure(
    arm: str, windows: Sequence[tuple[float, float]], arrivals: Sequence[Arrival], end: float
) -> ArmResult:
    """Match notifications to outages.

    Outage ``i`` (down at ``d_i``, up at ``u_i``) is detected by the first *firing*
    arrival in ``[d_i, d_{i+1})`` and resolved by the first *resolved* arrival in
    ``[u_i, d_{i+1})`` (``end`` for the last one): a notification that comes after the
    next outage began cannot be told apart from that one's.
    """
    result = ArmResult(arm, len(windows))
    mine = sorted((a for a in arrivals if a.arm == arm), key=lambda a: a.at)
    for i, (down, up) in enumerate(windows):
        nxt = windows[i + 1][0] if i + 1 < len(windows) else end
        fired = [a.at for a in mine if a.kind == "firing" and down <= a.at < nxt]
        gone = [a.at for a in mine if a.kind == "resolved" and up <= a.at < nxt]
        result.detected.append(fired[0] - down if fired else None)
        result.resolved.append(gone[0] - up if gone else None)
    return result


# --- the run --------------------------------------------------------------------------------


@dataclass
class Options:
    """Command-line options."""

    outages: int = 20
    interval: float = 5.0
    down: tuple[float, float] = (20.0, 40.0)
    # Up-gaps longer than the flap rule's quiet period (junction/recovery.py: FLAP_QUIET
    # successes in a row, 50 s at a 5 s interval): outages closer than that are one
    # flapping incident by design (one page), not separate ones to detect.
    up: tuple[float, float] = (60.0, 90.0)
    seed: int = 7
    mode: str = "503"
    service: str = DEFAULT_SERVICE
    tuned: bool = True
    junction: bool = True
    tail: float = 60.0
    keep: bool = False


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    """A temporary directory (configs, data, every process's log), removed at the end
    unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix="junction-detection-"))
    try:
        yield path
    finally:
        if keep:
            print(f"logs and configs kept in {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


async def start_sandbox(work: Path) -> tuple[Proc, str]:
    """The sandbox in its own process (log ``work/sandbox.log``), answering; and its URL."""
    port = free_port()
    sandbox = Proc(
        "sandbox",
        [
            PYTHON,
            "-c",
            f"from integrations.sandbox.app import serve; serve(port={port}, smtp_port=None)",
        ],
        work / "sandbox.log",
        {**os.environ, "PYTHONPATH": str(REPO)},
    )
    sandbox.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{url}/_admin/health", sandbox)
    except BaseException:
        sandbox.stop()
        raise
    return sandbox, url


async def start_blackbox(config: Path, port: int) -> Proc:
    """blackbox_exporter with ``config`` on ``port`` (log beside the config), answering."""
    blackbox = Proc(
        "blackbox",
        [BLACKBOX_BIN, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
        config.parent / "blackbox.log",
    )
    blackbox.start()
    try:
        await wait_http(f"http://127.0.0.1:{port}/metrics", blackbox)
    except BaseException:
        blackbox.stop()
        raise
    return blackbox


async def run(opts: Options, log: Any = print) -> dict[str, Any]:
    """Run every arm side by side on one outage schedule; return the results as JSON."""
    for binary in (PROMETHEUS_BIN, BLACKBOX_BIN, ALERTMANAGER_BIN):
        if not Path(binary).exists():
            raise RuntimeError(f"{binary} missing: run scripts/install-system-deps.sh")
    plan = schedule(opts.outages, opts.seed, opts.down, opts.up)
    receiver = Receiver()
    procs: list[Proc] = []
    peers: list[PeerArm] = []
    junction: JunctionArm | None = None
    with workdir(opts.keep) as work:
        try:
            await receiver.start()
            sandbox, sandbox_url = await start_sandbox(work)
            procs.append(sandbox)

            (work / "blackbox.yml").write_text(yaml.safe_dump(BLACKBOX_CONFIG))
            bb_port = free_port()
            procs.append(await start_blackbox(work / "blackbox.yml", bb_port))

            target = health_url(opts.service, sandbox_url)
            configs = [PEER_DOCS, PEER_TUNED] if opts.tuned else [PEER_DOCS]
            for cfg in configs:
                peer = PeerArm(
                    cfg, work, opts.interval, target, bb_port, f"{receiver.url}/{cfg.arm}"
                )
                peers.append(peer)
                await peer.start()
            if opts.junction:
                junction = JunctionArm(
                    work, opts.interval, sandbox_url, opts.service, f"{receiver.url}/junction"
                )
                await junction.start()

            # Warm-up: every peer has seen the target up; Junction had a few sweeps.
            deadline = time.monotonic() + 60
            while not all([await p.healthy() for p in peers]):
                if time.monotonic() > deadline:
                    raise RuntimeError("Prometheus never saw the target up")
                await asyncio.sleep(1)
            await asyncio.sleep(max(3 * opts.interval, 10))
            receiver.arrivals.clear()  # start-up noise is not part of the measurement

            windows: list[tuple[float, float]] = []
            async with httpx.AsyncClient(base_url=sandbox_url, timeout=5.0) as admin:
                for outage in plan:
                    await asyncio.sleep(outage.gap)
                    down = time.time()
                    r = await admin.post(
                        f"/_admin/outage/{opts.service}",
                        json={"seconds": outage.duration + 600, "mode": opts.mode},
                    )
                    r.raise_for_status()
                    await asyncio.sleep(outage.duration)
                    up = time.time()
                    (await admin.delete(f"/_admin/outage/{opts.service}")).raise_for_status()
                    windows.append((down, up))
                    log(
                        f"outage {outage.index + 1}/{len(plan)}: {outage.duration:.1f}s down "
                        f"after {outage.gap:.1f}s up; arrivals so far {len(receiver.arrivals)}"
                    )
                    if (
                        junction is not None
                        and junction.proc is not None
                        and not junction.proc.alive()
                    ):
                        raise RuntimeError(f"junction monitor died:\n{junction.proc.tail()}")
            await asyncio.sleep(opts.tail)
            end = time.time()
            arms = ([junction.arm] if junction else []) + [p.cfg.arm for p in peers]
            results = [measure(a, windows, receiver.arrivals, end) for a in arms]
        finally:
            if junction is not None:
                junction.stop()
            for peer in peers:
                peer.stop()
            for proc in reversed(procs):
                proc.stop()
            await receiver.stop()
    return report(opts, plan, results)


def report(opts: Options, plan: Sequence[Outage], results: Sequence[ArmResult]) -> dict[str, Any]:
    """The JSON document: options, schedule, per-arm stats and latencies, ratios."""
    stats = {r.arm: r.stats() for r in results}
    ratios: dict[str, dict[str, float | None]] = {}
    if "junction" in stats:
        j = stats["junction"]
        for arm, s in stats.items():
            if arm == "junction":
                continue
            ratios[arm] = {
                key: (j[key] / s[key]) if j[key] is not None and s[key] else None
                for key in ("detect_p50", "detect_p95", "resolve_p50", "resolve_p95")
            }
    return {
        "options": {**asdict(opts), "down": list(opts.down), "up": list(opts.up)},
        "schedule": [asdict(o) for o in plan],
        "arms": stats,
        "latencies": {r.arm: {"detected": r.detected, "resolved": r.resolved} for r in results},
        "ratio_junction_over_peer": ratios,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(doc: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    rows = [
        "| arm | n | missed | detection p50 / p95 / max (s) | resolve p50 / p95 (s) | unresolved |",
        "|---|---|---|---|---|---|",
    ]
    for arm, s in doc["arms"].items():
        rows.append(
            f"| {arm} | {s['n']} | {s['missed']} | {_fmt(s['detect_p50'])} / "
            f"{_fmt(s['detect_p95'])} / {_fmt(s['detect_max'])} | {_fmt(s['resolve_p50'])} / "
            f"{_fmt(s['resolve_p95'])} | {s['unresolved']} |"
        )
    for arm, r in doc["ratio_junction_over_peer"].items():
        rows.append("")
        rows.append(
            f"Junction / {arm}: detection p50 {_fmt2(r['detect_p50'])}, p95 "
            f"{_fmt2(r['detect_p95'])}; resolve p50 {_fmt2(r['resolve_p50'])}, p95 "
            f"{_fmt2(r['resolve_p95'])}"
        )
    return "\n".join(rows)


def _fmt2(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


README_INTRO = """## `bench/detection.py`: Detection

`.venv/bin/python bench/detection.py [--outages 20] [--interval 5] [--quick] [--json]
[--write-readme]`. One sandbox service (`github`, in its own process) is taken down
through `POST /_admin/outage/github` (mode 503) for 20-40 s, then up again for 40-60 s,
`--outages` times; the same schedule drives every arm, all running side by side and
probing every 5 s. Detection = outage start -> a *firing* notification reaches the
webhook receiver in the harness; resolve = recovery -> *resolved* reaches it. A
notification arriving after the next outage began is not counted for the earlier one
(`missed` / `unresolved`).

- **junction**: `junction monitor --every 5s` (monitor + alert engine + outbox) with one
  webhook channel (`junction.alerting.channels`).
- **prometheus-docs**: Prometheus 2.42 + blackbox_exporter 0.23 + Alertmanager 0.25
  (Debian 12), configured as their docs advise: scrape and evaluation interval 5 s (the
  same probe interval), rule `probe_success == 0` without `for:`, Alertmanager's
  documented defaults `group_wait 30s`, `group_interval 5m`, `repeat_interval 4h`.
- **prometheus-tuned**: the same with `group_wait 0s`, `group_interval 5s`
  (/work/shared/FINDINGS.md).
"""


def write_readme(doc: dict[str, Any], path: Path = README) -> None:
    """Replace the marked "Detection" results block of bench/README.md (or append it)."""
    o = doc["options"]
    block = "\n".join(
        [
            BEGIN,
            f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {o['outages']} outages "
            f"of `{o['service']}` (mode {o['mode']}, {o['down'][0]:g}-{o['down'][1]:g} s down, "
            f"{o['up'][0]:g}-{o['up'][1]:g} s up between, seed {o['seed']}), probe interval "
            f"{o['interval']:g} s, all arms side by side.",
            "",
            table(doc),
            END,
        ]
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + README_INTRO + "\n" + block + "\n"
    path.write_text(text)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, argparse.Namespace]:
    """Options from the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outages", type=int, default=20, help="number of outages (default 20)")
    p.add_argument("--interval", type=float, default=5.0, help="probe interval, seconds (5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 short outages")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--mode", choices=["503", "hang", "reset"], default="503")
    p.add_argument("--no-tuned", action="store_true", help="skip the tuned Prometheus arm")
    p.add_argument("--no-junction", action="store_true", help="peers only")
    p.add_argument("--tail", type=float, default=60.0, help="seconds to wait after the last")
    p.add_argument("--json", action="store_true", help="print the JSON results on stdout")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    p.add_argument("--write-readme", action="store_true", help="update bench/README.md")
    ns = p.parse_args(argv)
    opts = Options(
        outages=ns.outages,
        interval=ns.interval,
        seed=ns.seed,
        mode=ns.mode,
        tuned=not ns.no_tuned,
        junction=not ns.no_junction,
        tail=ns.tail,
        keep=ns.keep,
    )
    if ns.quick:
        opts.outages = min(ns.outages, 3)
        opts.down = (12.0, 18.0)
        opts.up = (20.0, 25.0)
        opts.tail = min(ns.tail, 30.0)
    return opts, ns


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    opts, ns = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if ns.json else sys.stdout, flush=True)

    doc = asyncio.run(run(opts, log))
    if ns.json:
        print(json.dumps(doc, indent=2))
    else:
        print(table(doc))
    if ns.write_readme:
        write_readme(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
