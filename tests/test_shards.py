"""Monitor shards: rendezvous ownership of the integrations (pure), and monitors of two
shards against the real sandbox and one shared alert database: together they probe every
service exactly once, and a shard never resolves another shard's alerts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integrations.catalog import load_catalog
from integrations.sweep import check_shard, owned_by, owner_of
from junction.monitor import Monitor
from junction.monitor.alerts import EngineHook
from junction.settings import Settings
from junction.store import MetricsStore
from tests.test_monitor import end_outage, make_settings, outage

ROOT = Path(__file__).resolve().parents[1]
KEYS = [f"service-{i:04d}" for i in range(2000)]
NAMES = ["okta", "github", "jira", "slack", "gitlab", "servicenow"]


# --- ownership (pure) --------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 3, 5, 8])
def test_every_key_is_owned_by_exactly_one_shard(shards: int) -> None:
    parts = [owned_by(KEYS, i, shards) for i in range(shards)]
    owned = [k for part in parts for k in part]
    assert sorted(owned) == sorted(KEYS)  # complete, and no key twice
    owners = {k: owner_of(k, shards) for k in KEYS}
    for i, part in enumerate(parts):
        assert part == [k for k in KEYS if owners[k] == i]  # input order kept
        # balanced within a few standard deviations of the binomial spread
        assert abs(len(part) - len(KEYS) / shards) < 4 * (len(KEYS) / shards) ** 0.5 + 1


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7])
def test_adding_a_shard_moves_about_one_in_n_keys_all_to_the_new_shard(shards: int) -> None:
    before = {k: owner_of(k, shards) for k in KEYS}
    after = {k: owner_of(k, shards + 1) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert {after[k] for k in moved} == {shards}  # only to the new shard, never reshuffled
    expected = 1 / (shards + 1)
    assert abs(len(moved) / len(KEYS) - expected) < 0.05, (len(moved), expected)


def test_ownership_is_the_same_in_another_process() -> None:
    names = load_catalog().names
    here = [owner_of(n, 3) for n in names]
    code = (
        "from integrations.catalog import load_catalog\n"
        "from integrations.sweep import owner_of\n"
        "print(','.join(str(owner_of(n, 3)) for n in load_catalog().names))"
    )
    # A fresh interpreter has another hash seed: the owner must not depend on it.
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == ",".join(map(str, here))


def test_bad_shards_are_refused_in_one_line(tmp_path: Path) -> None:
    for shard, shards, text in ((0, 0, "at least 1"), (2, 2, "between 0 and 1"), (-1, 3, "-1")):
        with pytest.raises(ValueError, match=text):
            check_shard(shard, shards)
    settings = Settings(home=tmp_path, monitor_shards=2, monitor_shard=2)
    with pytest.raises(ValueError, match="JUNCTION_MONITOR_SHARD / JUNCTION_MONITOR_SHARDS"):
        Monitor(settings, alerts=False, record=False)


# --- monitors of two shards on the sandbox -------------------------------------------------


async def test_two_shards_cover_every_service_once_and_never_resolve_each_others_alerts(
    sb: Any, tmp_path: Path
) -> None:
    settings = make_settings(sb, tmp_path, monitor_shards=2)
    owner = {n: owner_of(n, 2) for n in NAMES}
    assert set(owner.values()) == {0, 1}  # both shards own something
    failing = next(n for n in NAMES if owner[n] == 1)
    seen: dict[int, list[str]] = {}
    probed: dict[int, set[str]] = {}

    async def sweep_as(shard: int) -> Any:
        async with Monitor(settings, names=NAMES, shard=shard) as mon:
            assert isinstance(mon.alerts, EngineHook)
            seen[shard] = list(mon.names)
            result = await mon.sweep()
            probed.setdefault(shard, set()).update(p.service for p in result.probes)
            return result, {a.fingerprint for a in mon.alerts.engine.active_alerts()}

    # Shard 1 sees its service fail: alerts fire in the shared alert database.
    outage(sb, failing)
    try:
        result, active = await sweep_as(1)
        assert result.service(failing).alerts, result.service(failing)
        fired = {f for f in active if f.startswith(f"{failing}:")}
        assert fired
    finally:
        end_outage(sb, failing)

    # Shard 0 sweeps with the service healthy again: not its service, so not "recovered".
    result, active = await sweep_as(0)
    assert failing not in {s.service for s in result.services}
    assert fired <= active

    # Coverage: each service owned, probed and recorded by exactly one shard.
    assert sorted(seen[0] + seen[1]) == sorted(NAMES)
    assert not set(seen[0]) & set(seen[1])
    for shard in (0, 1):
        assert probed[shard] == {n for n in NAMES if owner[n] == shard}
    rows = MetricsStore(settings.metrics_dir).query("select distinct service from probes")
    assert sorted(rows["service"]) == sorted(NAMES)

    # Its owner resolves it (bounded: the recovery rule may want a second healthy probe).
    for _ in range(6):
        _, active = await sweep_as(1)
        if not fired & active:
            break
    assert not fired & active


def test_junction_monitor_names_the_shard_settings_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUNCTION_")}
    env.update(JUNCTION_HOME=str(tmp_path), JUNCTION_MONITOR_SHARDS="2", JUNCTION_MONITOR_SHARD="5")
    done = subprocess.run(
        [sys.executable, "-m", "junction", "monitor", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: JUNCTION_MONITOR_SHARD / JUNCTION_MONITOR_SHARDS: "
        "shard must be between 0 and 1 (of 2), got 5"
    )
    assert "Traceback" not in done.stdout + done.stderr
