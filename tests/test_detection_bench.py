"""Smoke of bench/detection.py: the matching of notifications to outages, and the peer
stack's generated configuration checked by the real tools (promtool, amtool, blackbox)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_detection", REPO / "bench" / "detection.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_detection"] = module
    spec.loader.exec_module(module)
    return module


det = _load()


def test_measure_matches_firing_and_resolved_to_their_outage() -> None:
    a = det.Arrival
    windows = [(100.0, 130.0), (200.0, 225.0), (300.0, 320.0)]
    arrivals = [
        a("x", "firing", 104.0),
        a("x", "firing", 110.0),  # a repeat: only the first counts
        a("x", "resolved", 137.0),
        a("x", "firing", 205.5),
        # outage 2 resolves only after outage 3 began: not counted for either
        a("x", "resolved", 301.0),
        a("other", "firing", 301.0),  # another arm's
        a("x", "resolved", 330.0),  # outage 3 never fired but its resolve came
    ]
    r = det.measure("x", windows, arrivals, end=400.0)
    assert r.detected == [4.0, 5.5, None]
    assert r.resolved == [7.0, None, 10.0]
    s = r.stats()
    assert (s["n"], s["missed"], s["unresolved"]) == (3, 1, 1)
    assert s["detect_p50"] == pytest.approx(4.75) and s["detect_max"] == 5.5


def test_percentiles_and_schedule() -> None:
    assert det.pct([], 50) is None
    assert det.pct([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert det.pct([float(i) for i in range(1, 21)], 95) == pytest.approx(19.05)
    plan = det.schedule(20, 7, (20.0, 40.0), (40.0, 60.0))
    assert plan == det.schedule(20, 7, (20.0, 40.0), (40.0, 60.0))
    assert len(plan) == 20 and all(20 <= o.duration <= 40 and 40 <= o.gap <= 60 for o in plan)


def test_report_ratio_and_table() -> None:
    j = det.ArmResult("junction", 2, [2.0, 4.0], [3.0, 5.0])
    p = det.ArmResult("prometheus-tuned", 2, [4.0, 8.0], [6.0, 10.0])
    doc = det.report(det.Options(outages=2), [], [j, p])
    ratio = doc["ratio_junction_over_peer"]["prometheus-tuned"]
    assert ratio["detect_p50"] == pytest.approx(0.5)
    text = det.table(doc)
    assert "| junction | 2 | 0 | 3.0 / 3.9 / 4.0 |" in text
    assert "detection p50 0.50x" in text


def test_write_readme_replaces_only_its_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## other\n\nkeep me\n")
    doc = det.report(det.Options(outages=1), [], [det.ArmResult("junction", 1, [1.0], [2.0])])
    det.write_readme(doc, readme)
    det.write_readme(doc, readme)
    text = readme.read_text()
    assert text.count(det.BEGIN) == 1 and "keep me" in text and "| junction | 1 |" in text


def test_generated_peer_configs_pass_the_real_checkers(tmp_path: Path) -> None:
    arm = det.PeerArm(
        det.PEER_DOCS, tmp_path, 5.0, "http://127.0.0.1:1/github/user", 9115, "http://x/y"
    )
    am_path, prom_path = arm._write()
    prom = subprocess.run(
        ["/usr/bin/promtool", "check", "config", str(prom_path)], capture_output=True, text=True
    )
    assert prom.returncode == 0, prom.stdout + prom.stderr
    am = subprocess.run(
        ["/usr/bin/amtool", "check-config", str(am_path)], capture_output=True, text=True
    )
    assert am.returncode == 0, am.stdout + am.stderr
    route = yaml.safe_load(am_path.read_text())["route"]
    assert (route["group_wait"], route["group_interval"]) == ("30s", "5m")
    bb = tmp_path / "blackbox.yml"
    bb.write_text(yaml.safe_dump(det.BLACKBOX_CONFIG))
    check = subprocess.run(
        [det.BLACKBOX_BIN, f"--config.file={bb}", "--config.check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
