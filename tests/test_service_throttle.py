"""Token guessing is slowed down: wrong tokens per client address, login form and API alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.sandbox.app import SandboxServer
from junction.service.throttle import AuthThrottle
from tests.service_helpers import ApiServer, ServiceServer, service_settings
from tests.test_service_web import csrf_of

LIMIT = 3


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_past_the_limit_block_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    throttle = AuthThrottle(max_failures=3, window=60.0, clock=clock)
    for step in range(3):
        assert throttle.retry_after("a") is None
        throttle.failed("a")
        clock.now += 10.0 if step < 2 else 0.0
    # failures at 1000, 1010, 1020; now 1020: blocked until 1060
    assert throttle.retry_after("a") == pytest.approx(40.0)
    assert throttle.retry_after("b") is None  # per client
    clock.now = 1060.0
    assert throttle.retry_after("a") is None  # the first failure left the window
    throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(10.0)  # 1010 leaves at 1070


def test_a_success_forgets_the_client_and_the_table_is_bounded() -> None:
    clock = Clock()
    throttle = AuthThrottle(max_failures=2, window=60.0, max_clients=100, clock=clock)
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.retry_after("a") is None
    for i in range(1000):
        throttle.failed(f"10.0.{i // 250}.{i % 250}")
    assert len(throttle._failures) == 100  # the oldest went first


@pytest.mark.parametrize(
    "kwargs", [{"max_failures": 0}, {"window": 0.0}, {"window": float("nan")}, {"max_clients": 0}]
)
def test_impossible_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="throttle needs"):
        AuthThrottle(**kwargs)  # type: ignore[arg-type]


@pytest.fixture()
def strict(tmp_path: Path, sandbox: SandboxServer) -> Iterator[ApiServer]:
    values = service_settings(tmp_path / "home", sandbox, api_auth_max_failures=LIMIT)
    with ServiceServer(values) as server:
        yield server.info()


def test_the_api_refuses_a_guesser_even_with_the_right_token(strict: ApiServer) -> None:
    with strict.client(auth=False) as c:
        # No token at all is not a guess: never counted.
        for _ in range(LIMIT + 2):
            assert c.get("/api/v2/alerts").status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        for _ in range(LIMIT):
            resp = c.get("/api/v2/alerts", headers=wrong)
            assert resp.status_code == 401
            assert resp.json()["error"]["code"] == "unauthorized"
        blocked = c.get("/api/v2/alerts", headers=strict.headers)
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "too_many_attempts"
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        assert strict.token not in blocked.text
        # The login form shares the count: the same address is blocked there too.
        login = c.get("/login")
        page = c.post(
            "/login",
            data={"token": strict.token, "next": "/", "csrf_token": csrf_of(login.text)},
        )
        assert page.status_code == 429 and "Too many wrong tokens" in page.text
        assert "Retry-After" in page.headers


def test_the_login_form_counts_wrong_tokens_and_a_success_resets(strict: ApiServer) -> None:
    with strict.client(auth=False) as c:
        login = c.get("/login")
        form = {"token": "wrong", "next": "/", "csrf_token": csrf_of(login.text)}
        for _ in range(LIMIT - 1):
            assert c.post("/login", data=form).status_code == 401
        ok = c.post("/login", data={**form, "token": strict.token})
        assert ok.status_code == 303
        # the success forgot the failures: LIMIT - 1 more wrong ones are still answered 401
        for _ in range(LIMIT - 1):
            assert c.get("/api/v2/alerts", headers={"Authorization": "Bearer x"}).status_code == 401
        assert c.get("/api/v2/alerts", headers=strict.headers).status_code == 200
