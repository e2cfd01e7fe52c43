"""The transactional outbox: retry with backoff, ambiguous, failed, timeouts, unknown
channels, ordering, and a process killed between send and mark-delivered."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

from junction.alerting.model import DeliveryOutcome, DeliveryResult
from junction.alerting.outbox import Outbox
from tests.alerting_helpers import FakeChannel, at, engine, failing, healthy, queued

ROOT = Path(__file__).resolve().parent.parent
RETRY = DeliveryResult(DeliveryOutcome.RETRY, "503 from vendor")


def status(eng, key: str) -> str:
    return str(eng.conn.execute("SELECT status FROM outbox WHERE key = ?", (key,)).fetchone()[0])


async def test_delivered_once(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    chat, oncall = FakeChannel("chat"), FakeChannel("oncall", kind="pagerduty")
    report = await eng.deliver({"chat": chat, "oncall": oncall}, now=at(1))
    assert len(report.delivered) == 2 and len(chat.sent) == 1 and len(oncall.sent) == 1
    again = await eng.deliver({"chat": chat, "oncall": oncall}, now=at(2))
    assert again.delivered == [] and len(chat.sent) == 1
    assert eng.outbox.summary()["delivered"] == 2


async def test_channel_down_waits_and_delivers_later_honouring_retry_after(
    tmp_path: Path,
) -> None:
    eng = engine(tmp_path)
    eng.outbox.rng = random.Random(1)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    chat = FakeChannel(
        "chat", outcomes=[DeliveryResult(DeliveryOutcome.RETRY, "429", retry_after_seconds=30)]
    )
    oncall = FakeChannel("oncall", outcomes=[RETRY] * 6)
    channels = {"chat": chat, "oncall": oncall}
    report = await eng.deliver(channels, now=at(1))
    assert sorted(report.retrying) == sorted(n.key for n in queued(eng))
    row = eng.conn.execute("SELECT next_attempt_at FROM outbox WHERE channel = 'chat'").fetchone()
    assert row[0] >= at(31).timestamp()  # Retry-After honoured over the 2 s backoff
    assert (await eng.deliver(channels, now=at(20))).delivered == []  # chat not due yet
    # resolved while the channels are still down: it queues behind the firing message
    eng.evaluate(healthy(["okta"], at(25)), now=at(25))
    t = 31.0
    delivered: list[str] = []
    for _ in range(40):  # the on-call channel recovers after 6 failed attempts
        delivered += (await eng.deliver(channels, now=at(t))).delivered
        t += 600
    assert [n.kind.value for n in chat.sent] == ["firing", "firing", "resolved"]
    assert [n.kind.value for n in oncall.sent].count("resolved") == 1
    assert oncall.sent[-1].kind.value == "resolved" and len(oncall.sent) == 8
    assert eng.outbox.summary()["delivered"] == 4 and len(delivered) == 4


def test_backoff_grows_with_jitter_and_cap() -> None:
    box = Outbox(None, backoff_base=2, backoff_max=60, rng=random.Random(7))  # type: ignore[arg-type]
    delays = [box.backoff(n) for n in range(1, 10)]
    for n, d in enumerate(delays, start=1):
        full = min(60, 2 * 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert box.backoff(1, retry_after=45) == 45


async def test_ambiguous_is_never_resent(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    chat = FakeChannel("chat", outcomes=[DeliveryResult(DeliveryOutcome.AMBIGUOUS, "timeout")])
    oncall = FakeChannel("oncall")
    report = await eng.deliver({"chat": chat, "oncall": oncall}, now=at(1))
    assert len(report.needs_check) == 1 and report.errors[report.needs_check[0]] == "timeout"
    for t in (100, 1000, 10000):
        await eng.deliver({"chat": chat, "oncall": oncall}, now=at(t))
    assert len(chat.sent) == 1
    (row,) = eng.outbox.needs_check()
    # an operator checked the room: it did not arrive -> re-queue, delivered next round
    eng.outbox.settle(row.key, delivered=False)
    await eng.deliver({"chat": chat}, now=at(10001))
    assert len(chat.sent) == 2 and status(eng, row.key) == "delivered"


async def test_failed_gives_up_and_keeps_the_error(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    chat = FakeChannel("chat", outcomes=[DeliveryResult(DeliveryOutcome.FAILED, "401 bad token")])
    report = await eng.deliver({"chat": chat, "oncall": FakeChannel("oncall")}, now=at(1))
    (key,) = report.failed
    await eng.deliver({"chat": chat}, now=at(1000))
    assert len(chat.sent) == 1 and status(eng, key) == "failed"
    assert eng.outbox.rows("failed")[0].last_error == "401 bad token"


async def test_timeout_does_not_block_other_channels(tmp_path: Path) -> None:
    eng = engine(tmp_path, send_timeout=0.2)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    slow_chat = FakeChannel("chat", kind="slack", delay=30)
    slow_oncall = FakeChannel("oncall", kind="pagerduty", delay=30)
    report = await eng.deliver({"chat": slow_chat, "oncall": slow_oncall}, now=at(1))
    chat_key = next(n.key for n in queued(eng) if n.channel == "chat")
    oncall_key = next(n.key for n in queued(eng) if n.channel == "oncall")
    # slack cannot dedupe: a timeout may have posted -> needs a check, no blind resend
    assert report.needs_check == [chat_key]
    # pagerduty dedupes by dedup_key: a resend is harmless -> retried
    assert report.retrying == [oncall_key]
    assert "timed out" in report.errors[chat_key]
    fast = FakeChannel("oncall", kind="pagerduty")
    assert (await eng.deliver({"oncall": fast}, now=at(100))).delivered == [oncall_key]


async def test_unknown_channel_keeps_the_row(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    report = await eng.deliver({"chat": FakeChannel("chat")}, now=at(1))
    (key,) = report.unknown_channel
    assert report.errors[key] == "unknown channel 'oncall' (configured: chat)"
    assert status(eng, key) == "pending"
    oncall = FakeChannel("oncall")
    assert (await eng.deliver({"oncall": oncall}, now=at(120))).delivered == [key]


def test_enqueue_is_idempotent(tmp_path: Path) -> None:
    from junction.alerting import outbox

    eng = engine(tmp_path)
    r = eng.evaluate(failing(["okta"], at(0)), now=at(0))
    with eng.conn:
        assert not outbox.enqueue(eng.conn, r.notifications[0], at(0))
    assert len(eng.outbox.rows()) == 2


CRASH = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from junction.alerting.channels import CHANNELS
from junction.alerting.model import DeliveryOutcome, DeliveryResult
from tests.alerting_helpers import engine, at

class Dying:
    def __init__(self, name, kind):
        self.name, self.kind = name, kind
        self.dedupes = CHANNELS[kind].dedupes
    async def send(self, notification):
        with open({log!r}, "a") as f:
            f.write(notification.key + "\\n")
        os._exit(9)  # the vendor got it; we die before marking it delivered
    async def aclose(self):
        pass

eng = engine(Path({home!r}))
asyncio.run(eng.deliver({{{channel!r}: Dying({channel!r}, {kind!r})}}, now=at(1)))
"""


def crash_during_send(tmp_path: Path, channel: str, kind: str) -> list[str]:
    log = tmp_path / "sent.log"
    script = CRASH.format(
        root=str(ROOT), log=str(log), home=str(tmp_path), channel=channel, kind=kind
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=60
    )
    assert proc.returncode == 9, proc.stderr
    return log.read_text().split()


async def test_crash_between_send_and_mark_is_not_resent_blindly(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    (key,) = crash_during_send(tmp_path, "chat", "webex")
    chat = FakeChannel("chat", kind="webex")
    # within the lease nothing happens; after it the row is flagged, not resent
    assert (await eng.deliver({"chat": chat}, now=at(2))).needs_check == []
    report = await eng.deliver({"chat": chat}, now=at(1 + 120))
    assert report.needs_check == [key] and "may have arrived" in report.errors[key]
    await eng.deliver({"chat": chat}, now=at(1000))
    assert chat.sent == []


async def test_crash_between_send_and_mark_resends_to_deduplicating_channel(
    tmp_path: Path,
) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    (key,) = crash_during_send(tmp_path, "oncall", "pagerduty")
    pd = FakeChannel("oncall", kind="pagerduty")
    report = await eng.deliver({"oncall": pd}, now=at(1 + 120))
    assert report.requeued == [key] and report.delivered == [key]
    assert [n.key for n in pd.sent] == [key]  # same key: the vendor folds the duplicate


async def test_deliveries_survive_a_restart(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    await eng.deliver({"chat": FakeChannel("chat", outcomes=[RETRY])}, now=at(1))
    eng.close()
    eng = engine(tmp_path)
    chat = FakeChannel("chat")
    report = await eng.deliver(
        {"chat": chat, "oncall": FakeChannel("oncall")}, now=at(1) + timedelta(hours=1)
    )
    assert len(report.delivered) == 2 and len(chat.sent) == 1


async def test_clock_stepping_back_does_not_delay_a_retry(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    chat = FakeChannel("chat", outcomes=[RETRY])
    oncall = FakeChannel("oncall")
    await eng.deliver({"chat": chat, "oncall": oncall}, now=at(3600))
    # the clock steps back an hour: the retry due at ~3602 s is due now, not in an hour
    report = await eng.deliver({"chat": chat, "oncall": oncall}, now=at(5))
    assert len(report.delivered) == 1 and [n.channel for n in chat.sent] == ["chat", "chat"]


async def test_firing_and_resolved_go_in_order_in_one_round(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    eng.evaluate(healthy(["okta"], at(1)), now=at(1))  # resolved before anything was sent
    chat = FakeChannel("chat", outcomes=[RETRY])
    oncall = FakeChannel("oncall")
    report = await eng.deliver({"chat": chat, "oncall": oncall}, now=at(2))
    assert [n.kind.value for n in oncall.sent] == ["firing", "resolved"]
    # chat's firing got RETRY: its resolved was handed back unsent, not sent out of order
    assert [n.kind.value for n in chat.sent] == ["firing"]
    assert len(report.delivered) == 2 and len(report.retrying) == 2
    await eng.deliver({"chat": chat, "oncall": oncall}, now=at(100))
    assert [n.kind.value for n in chat.sent] == ["firing", "firing", "resolved"]
    rows = eng.conn.execute("SELECT kind, attempts FROM outbox WHERE channel = 'chat'")
    assert sorted(tuple(r) for r in rows) == [("firing", 2), ("resolved", 1)]
