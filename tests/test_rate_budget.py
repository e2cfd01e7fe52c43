"""The host-wide rate budget (integrations.budget): one SQLite file shared by processes,
priorities, pauses, clock jumps. Counts and orders are asserted, never durations."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from integrations.adaptive import Priority
from integrations.budget import BucketSpec, RateBudget, parse_budgets
from tests.helpers import ROOT


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _child(path: Path, code: str) -> str:
    """Run ``code`` in another Python process with ``budget`` open on ``path``."""
    script = textwrap.dedent(
        f"""
        from integrations.budget import BucketSpec, RateBudget
        budget = RateBudget({str(path)!r}, {{"okta": BucketSpec(0.001, 10)}}, waiter_ttl=600)
        """
    ) + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_two_processes_share_one_budget(tmp_path: Path) -> None:
    """A bucket of 10 that refills once in 1,000 s: two processes taking as fast as they
    can get 10 tokens between them, not 10 each."""
    path = tmp_path / "budget.sqlite"
    here = RateBudget(path, {"okta": BucketSpec(0.001, 10)}, waiter_ttl=600)
    other = _child(path, "print(sum(budget.try_take('okta') == 0 for _ in range(7)))")
    mine = sum(here.try_take("okta") == 0 for _ in range(7))
    assert int(other) == 7 and mine == 3
    assert here.try_take("gitlab") == 0  # no budget: never limited
    here.close()


def test_an_urgent_waiter_in_another_process_goes_first(tmp_path: Path) -> None:
    path = tmp_path / "budget.sqlite"
    here = RateBudget(path, {"okta": BucketSpec(0.001, 10)}, waiter_ttl=600, reserve=0.0)
    while here.try_take("okta") == 0:  # drain it
        pass
    # The other process (an incident workflow) waits for a token, at high priority.
    waited = _child(path, "print(budget.try_take('okta', 'high', waiter='incident') > 0)")
    assert waited == "True"
    here._db.execute("UPDATE buckets SET tokens = 5")  # tokens arrive
    assert here.try_take("okta", "low", waiter="bulk") > 0  # bulk must let it pass
    assert here.try_take("okta", "normal", waiter="n") > 0
    took = _child(path, "print(budget.try_take('okta', 'high', waiter='incident'))")
    assert float(took) == 0.0  # the incident got its token; its waiter row is gone
    assert here.try_take("okta", "normal", waiter="n") == 0.0
    assert here.try_take("okta", "low", waiter="bulk") == 0.0
    here.close()


def test_priority_order_reserve_and_stale_waiters(tmp_path: Path) -> None:
    clock = Clock()
    budget = RateBudget(
        tmp_path / "b.sqlite", {"okta": BucketSpec(1.0, 4)}, reserve=0.25, clock=clock
    )
    low = [budget.try_take("okta", "low") for _ in range(4)]
    assert low == [0.0, 0.0, 0.0, pytest.approx(1.0)]  # the last token is kept (reserve)
    assert budget.try_take("okta", "high") == 0.0  # an incident finds it at once
    clock.now += 3.0  # 3 tokens; an incident was served: bulk now pays 4/3 per call
    assert [budget.try_take("okta", "low") for _ in range(2)] == [
        0.0,
        pytest.approx(0.33, abs=0.01),
    ]
    clock.now += 10.0  # no incident for a while: bulk pays 1 again (above the reserve)
    assert [budget.try_take("okta", "low") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.try_take("okta", "high") == 0.0
    assert budget.try_take("okta", "high", waiter="h") > 0  # empty now: it waits
    assert budget.try_take("okta", "normal", waiter="n") > 0
    clock.now += 1.0  # one token
    assert budget.try_take("okta", "normal", waiter="n") > 0  # high is waiting
    assert budget.try_take("okta", "high", waiter="h") == 0.0
    clock.now += 1.0
    assert budget.try_take("okta", "low", waiter="l") > 0  # normal is waiting
    assert budget.try_take("okta", "normal", waiter="n") == 0.0
    # a waiter that stops asking (its process died) stops counting after the TTL
    assert budget.try_take("okta", "high", waiter="ghost") > 0
    clock.now += 10.0
    assert budget.try_take("okta", "normal", waiter="n") == 0.0
    budget.close()


def test_pause_is_capped_and_survives_a_clock_jump(tmp_path: Path) -> None:
    clock = Clock()
    budget = RateBudget(
        tmp_path / "b.sqlite", {"okta": BucketSpec(100.0, 100)}, max_pause=5.0, clock=clock
    )
    budget.pause("okta", 365 * 86400.0)  # a vendor's Retry-After of a year
    assert budget.try_take("okta", "normal") == pytest.approx(5.0)
    assert budget.try_take("okta", "high") == 0.0  # incidents are not held by a pause
    clock.now -= 1e6  # the clock steps back: no endless pause, no negative refill
    assert 0 < budget.try_take("okta", "normal") <= 5.0
    assert budget.tokens("okta") <= 100
    clock.now += 2e6
    assert budget.try_take("okta", "normal") == 0.0
    budget.pause("okta", -1.0)  # nonsense is ignored
    budget.pause("okta", float("nan"))
    assert budget.try_take("okta", "normal") == 0.0
    budget.close()


def test_budget_spec_errors_name_the_entry() -> None:
    assert parse_budgets("okta=20, gitlab=5/10") == {
        "okta": BucketSpec(20.0, 20.0),
        "gitlab": BucketSpec(5.0, 10.0),
    }
    for text, needle in [
        ("okta", "expected name=rate"),
        ("okta=x", "must be numbers"),
        ("okta=0", "positive"),
        ("okta=inf", "positive"),
        ("okta=5/0.5", "burst must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_budgets(text)


async def test_acquire_serves_a_late_high_caller_before_queued_bulk(tmp_path: Path) -> None:
    budget = RateBudget(tmp_path / "b.sqlite", {"okta": BucketSpec(50.0, 2)}, reserve=0.0)
    order: list[str] = []

    async def take(label: str, priority: Priority) -> None:
        await budget.acquire("okta", priority)
        order.append(label)

    bulk = [asyncio.create_task(take(f"low{i}", "low")) for i in range(8)]
    while len(order) < 3:  # the burst is gone, bulk is waiting for refills
        await asyncio.sleep(0.005)
    await take("high", "high")
    await asyncio.gather(*bulk)
    assert order.index("high") <= 5  # not behind the whole queue of bulk calls
    assert len(order) == 9
    budget.close()
