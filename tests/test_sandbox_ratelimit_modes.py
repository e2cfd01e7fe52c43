"""The sandbox's rate-limit models: the token bucket (a rejected request is free), the
sliding-window log (every request counts, rejected ones too) and the penalty box (repeated
429s lock the service out, longer while the client keeps sending). Limiters on a fake
clock; the configuration through the admin API on the session's real sandbox."""

from __future__ import annotations

import httpx
import pytest

from integrations.sandbox.app import SandboxServer
from integrations.sandbox.faults import FaultController
from integrations.sandbox.profile import FaultProfile, ProfileError, RateLimitSpec
from integrations.sandbox.ratelimit import (
    PenaltyBox,
    ServiceQueues,
    SlidingWindowLog,
    TokenBucket,
    make_limiter,
)
from tests.helpers import set_faults


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admitted(limiter: SlidingWindowLog | TokenBucket | PenaltyBox, n: int) -> int:
    return sum(limiter.take() == 0.0 for _ in range(n))


def test_token_bucket_rejections_are_free() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 10, clock)
    assert admitted(bucket, 50) == 10  # 40 rejected, nothing charged for them
    clock.now += 1.0
    assert admitted(bucket, 50) == 10


def test_sliding_log_counts_rejected_requests() -> None:
    clock = Clock()
    log = SlidingWindowLog(10, 1.0, clock)
    assert admitted(log, 10) == 10
    wait = log.take()
    assert wait == pytest.approx(1.0)  # the oldest of the 10 leaves the window in 1 s
    # A client that keeps sending 20/s never gets in: its own rejections fill the log.
    for _ in range(20):
        clock.now += 0.05
        assert log.take() > 0
    assert log.remaining() == 0
    # One that stops for a whole window is served again.
    clock.now += 1.0
    assert log.remaining() == 10 and admitted(log, 12) == 10
    assert log.full_in() == pytest.approx(1.0)


def test_penalty_box_grows_while_the_client_hammers() -> None:
    clock = Clock()
    box = PenaltyBox(TokenBucket(10, 10, clock), after=5, first=2.0, longest=8.0, window=1.0,
                     clock=clock)  # fmt: skip
    assert admitted(box, 10) == 10
    waits = [box.take() for _ in range(5)]
    assert waits[-1] == pytest.approx(2.0) and box.level == 1  # 5 429s: boxed for 2 s
    clock.now += 1.0  # the bucket refilled, but the box holds
    assert box.take() == pytest.approx(1.0) and box.remaining() == 0
    for _ in range(4):  # 5 requests while boxed: the next box is twice as long
        wait = box.take()
    assert wait == pytest.approx(4.0) and box.level == 2
    for _ in range(10):
        box.take()
    assert box.level == 4 and box.take() == pytest.approx(8.0 - 0.0)  # capped at 8 s
    # A client that honours Retry-After is served after it, and forgiven after a window.
    clock.now += 8.0
    assert box.take() == 0.0
    clock.now += 1.5
    assert admitted(box, 3) == 3 and box.level == 0


def test_make_limiter_and_spec() -> None:
    clock = Clock()
    assert isinstance(make_limiter(RateLimitSpec(requests_per_second=5), clock), TokenBucket)
    spec = RateLimitSpec(requests_per_second=40, mode="sliding_log", window_seconds=0.5)
    log = make_limiter(spec, clock)
    assert isinstance(log, SlidingWindowLog) and log.capacity == 20
    boxed = make_limiter(spec.model_copy(update={"penalty_after": 3}), clock)
    assert isinstance(boxed, PenaltyBox) and boxed.capacity == 20
    with pytest.raises(ValueError, match="mode"):
        RateLimitSpec.model_validate({"requests_per_second": 1, "mode": "leaky"})


def test_sliding_log_and_penalty_through_the_admin_api(sb: SandboxServer) -> None:
    set_faults(
        sb,
        "okta",
        rate_limit={
            "requests_per_second": 0.5,
            "mode": "sliding_log",
            "window_seconds": 60,
            "penalty_after": 3,
            "penalty_seconds": 120,
        },
    )
    url = f"{sb.url}/okta/api/v1/users/me"
    auth = {"Authorization": "SSWS sandbox-token"}
    with httpx.Client() as http:
        codes = [http.get(url, headers=auth) for _ in range(35)]
        assert [r.status_code for r in codes[:30]] == [200] * 30  # 0.5/s x 60 s
        assert all(r.status_code == 429 for r in codes[30:])
        assert int(codes[31].headers["retry-after"]) <= 60  # the log's own wait
        assert int(codes[32].headers["retry-after"]) >= 119  # 3 429s: the box
        assert codes[34].headers["x-rate-limit-remaining"] == "0"
    assert sb.faults.describe("okta")["effective"]["rate_limit"]["mode"] == "sliding_log"


def test_a_bad_mode_is_one_line(sb: SandboxServer) -> None:
    with pytest.raises(ProfileError, match=r"rate_limit\.mode"):
        sb.faults.set("okta", rate_limit={"requests_per_second": 1, "mode": "leaky"})


def test_a_service_queues_past_its_capacity_and_a_reset_forgets_the_queue() -> None:
    """Within the capacity the base latency; past it the latency grows with the requests
    in flight (squared with contention 2); a reset starts a fresh count while the old
    requests finish."""
    queues = ServiceQueues()
    assert queues.factor("okta", None, 2.0) == 1.0
    with queues.serving("okta"), queues.serving("okta"), queues.serving("okta"):
        assert queues.factor("okta", 4, 2.0) == 1.0  # the 4th fits
        with queues.serving("okta"), queues.serving("okta"), queues.serving("okta"):
            assert queues.factor("okta", 4, 2.0) == pytest.approx((7 / 4) ** 2)
            assert queues.factor("okta", 4, 1.0) == pytest.approx(7 / 4)
    assert queues.in_flight("okta") == 0
    faults = FaultController(
        FaultProfile.model_validate(
            {"services": {"okta": {"latency_ms": 100, "capacity": 1, "contention": 2}}}
        )
    )
    with faults.queues.serving("okta"):
        assert faults.queued_latency("okta", 0.1) == pytest.approx(0.4)
        faults.reset(keep_faults=True)
        assert faults.queued_latency("okta", 0.1) == pytest.approx(0.1)
