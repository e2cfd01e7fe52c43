"""The shared engine: retries, breaker, auth, typed errors, redaction, metrics.

Unit cases on ``httpx.MockTransport``; the sandbox tests cover the same paths over a
real socket.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from integrations.auth import Credentials, OAuth2ClientCredentials
from integrations.base import (
    APIResponse,
    IntegrationClient,
    RetryPolicy,
    next_link,
    parse_retry_after,
)
from integrations.breaker import BreakerState, CircuitBreaker
from integrations.catalog import load_catalog
from integrations.config import EngineConfig, IntegrationConfig
from integrations.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    InvalidBaseURLError,
    MalformedResponseError,
    MissingCredentialsError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UnknownActionError,
    UnknownIntegrationError,
)
from integrations.metrics import collecting
from integrations.pagerduty import PagerDutyClient, SendEventParams
from integrations.redaction import install_log_redaction, redact, register_secret
from integrations.registry import get_action
from junction.clients import get_client
from junction.settings import Settings

FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_max=0.0, jitter=0.0)

Handler = Callable[[httpx.Request], httpx.Response]


def make(
    name: str,
    handler: Handler,
    *,
    retry: RetryPolicy = FAST,
    breaker: CircuitBreaker | None = None,
    cls: type[IntegrationClient] = IntegrationClient,
    **kwargs: object,
) -> IntegrationClient:
    spec = load_catalog().get(name)
    return cls(
        spec,
        engine=EngineConfig(sandbox_url="http://sandbox.test"),
        transport=httpx.MockTransport(handler),
        retry=retry,
        breaker=breaker or CircuitBreaker(name, failure_threshold=50),
        **kwargs,  # type: ignore[arg-type]
    )


class Counter:
    def __init__(self, responses: list[httpx.Response | Exception]) -> None:
        self.responses = responses
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        item = self.responses[min(len(self.calls), len(self.responses)) - 1]
        if isinstance(item, Exception):
            raise item
        return item


async def test_get_retries_5xx_then_succeeds_and_reports_attempts() -> None:
    handler = Counter(
        [httpx.Response(503, json={"message": "busy"}), httpx.Response(200, json={"ok": 1})]
    )
    client = make("github", handler)
    with collecting() as metrics:
        body = await client.request("GET", "/user", action="get_user")
    assert body == {"ok": 1}
    assert len(handler.calls) == 2
    (metric,) = metrics
    assert (metric.service, metric.action, metric.ok, metric.attempts, metric.status) == (
        "github",
        "get_user",
        True,
        2,
        200,
    )
    assert metric.breaker_state == "closed"


async def test_post_is_not_retried_on_5xx_but_is_with_idempotency_key() -> None:
    handler = Counter([httpx.Response(502, text="bad gateway")])
    client = make("stripe", handler)
    with pytest.raises(ServerError) as err:
        await client.request("POST", "/v1/charges", action="charge", json={})
    assert len(handler.calls) == 1
    assert err.value.status_code == 502
    handler2 = Counter([httpx.Response(502, text="x"), httpx.Response(200, json={})])
    client2 = make("stripe", handler2)
    await client2.request("POST", "/v1/charges", action="charge", json={}, idempotency_key="k-1")
    assert len(handler2.calls) == 2
    assert all(r.headers["Idempotency-Key"] == "k-1" for r in handler2.calls)


async def test_post_is_retried_when_connection_was_refused_or_429() -> None:
    handler = Counter(
        [
            httpx.ConnectError("refused"),
            httpx.Response(429, headers={"Retry-After": "0"}, json={"message": "slow"}),
            httpx.Response(201, json={"id": 1}),
        ]
    )
    client = make("github", handler)
    assert await client.request("POST", "/repos/a/b/issues", action="create_issue", json={}) == {
        "id": 1
    }
    assert len(handler.calls) == 3


async def test_post_not_retried_after_reset_mid_response() -> None:
    handler = Counter([httpx.RemoteProtocolError("peer closed"), httpx.Response(201, json={})])
    client = make("github", handler)
    with pytest.raises(APIConnectionError) as err:
        await client.request("POST", "/repos/a/b/issues", action="create_issue", json={})
    assert err.value.request_sent and len(handler.calls) == 1


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays this test's thread sleeps, skipped; other threads (servers) really sleep."""
    delays: list[float] = []
    real_sleep = asyncio.sleep
    ours = threading.get_ident()

    async def fake_sleep(seconds: float, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != ours:
            return await real_sleep(seconds, *args, **kwargs)
        delays.append(seconds)
        return None

    monkeypatch.setattr("asyncio.sleep", fake_sleep)
    return delays


async def test_retry_after_is_honoured_and_capped(slept: list[float]) -> None:
    handler = Counter(
        [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json={})]
    )
    policy = RetryPolicy(
        max_attempts=3, backoff_base=0.0, backoff_max=0.0, jitter=0.0, retry_after_max=5
    )
    await make("github", handler, retry=policy).request("GET", "/user", action="me")
    assert slept == [2.0]

    too_long = Counter(
        [httpx.Response(429, headers={"Retry-After": "120"}, json={"message": "later"})]
    )
    with pytest.raises(RateLimitError) as err:
        await make("github", too_long, retry=policy).request("GET", "/user", action="me")
    assert err.value.retry_after == 120 and len(too_long.calls) == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    exact = RetryPolicy(backoff_base=0.5, backoff_max=4.0, jitter=0.0)
    assert [exact.wait_seconds(None, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    full = RetryPolicy(backoff_base=0.5, backoff_max=4.0)  # full jitter: uniform in [0, d]
    first, second, late = ([full.wait_seconds(None, n) for _ in range(50)] for n in (1, 2, 9))
    assert all(0 <= w <= 0.5 for w in first) and all(0 <= w <= 1.0 for w in second)
    assert all(0 <= w <= 4.0 for w in late) and max(late) > 2.0
    assert full.wait_seconds(None, 10_000) <= 4.0  # no float overflow on a long run


def test_throttle_without_retry_after_backs_off_from_the_throttle_base() -> None:
    policy = RetryPolicy(backoff_base=0.1, throttle_base=0.5, jitter=0.0)
    assert policy.wait_seconds(RateLimitError("429", retry_after=None), 1) == 0.5
    assert policy.wait_seconds(RateLimitError("429", retry_after=0.2), 1) == 0.2
    assert policy.wait_seconds(ServerError("502", status_code=502), 1) == 0.1
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.5)


def test_parse_retry_after_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("soon") is None


async def test_breaker_opens_fails_fast_then_half_open_trial_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker("github", failure_threshold=2, reset_timeout=10, clock=lambda: now[0])
    handler = Counter(
        [httpx.Response(500, json={}), httpx.Response(500, json={}), httpx.Response(200, json={})]
    )
    client = make("github", handler, breaker=breaker, retry=RetryPolicy(max_attempts=1))
    for _ in range(2):
        with pytest.raises(ServerError):
            await client.request("GET", "/user", action="me")
    assert breaker.state is BreakerState.OPEN
    with collecting() as metrics, pytest.raises(CircuitOpenError) as err:
        await client.request("GET", "/user", action="me")
    assert len(handler.calls) == 2  # not sent
    assert err.value.retry_in == pytest.approx(10)
    assert metrics[0].error_class == "CircuitOpenError" and metrics[0].breaker_state == "open"
    now[0] = 11.0
    assert breaker.state is BreakerState.HALF_OPEN
    handler.responses[2:] = [httpx.Response(200, json={})]
    await client.request("GET", "/user", action="me")
    assert breaker.state is BreakerState.CLOSED


def test_breaker_half_open_allows_one_trial_and_reopens_on_failure() -> None:
    now = [0.0]
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker("x", failure_threshold=1, reset_timeout=5, clock=lambda: now[0])
    breaker.add_listener(lambda s, old, new: changes.append((old.value, new.value)))
    breaker.record_failure()
    now[0] = 6
    assert breaker.allow() == (True, 0.0)
    assert breaker.allow()[0] is False  # second caller waits for the trial
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]


async def test_4xx_does_not_trip_breaker() -> None:
    breaker = CircuitBreaker("github", failure_threshold=1)
    client = make(
        "github", Counter([httpx.Response(404, json={"message": "Not Found"})]), breaker=breaker
    )
    with pytest.raises(NotFoundError, match="Not Found"):
        await client.request("GET", "/repos/x/y", action="get_repo")
    assert breaker.state is BreakerState.CLOSED


async def test_401_is_typed_names_env_var_and_never_leaks_the_token() -> None:
    secret = "ghp_supersecretvalue123"
    handler = Counter(
        [httpx.Response(401, json={"message": f"Bad credentials for token {secret}"})]
    )
    client = make(
        "github",
        handler,
        base_url="https://api.github.com",
        credentials=Credentials(token=SecretStr(secret)),
    )
    with pytest.raises(AuthenticationError) as err:
        await client.request("GET", "/user", action="me")
    text = str(err.value) + err.value.body_excerpt
    assert secret not in text
    assert "JUNCTION_GITHUB_" in str(err.value)
    assert handler.calls[0].headers["Authorization"] == f"Bearer {secret}"


async def test_html_and_invalid_json_are_malformed_responses() -> None:
    html = Counter(
        [
            httpx.Response(
                200, text="<html><body>Login</body></html>", headers={"content-type": "text/html"}
            )
        ]
    )
    with pytest.raises(MalformedResponseError, match="got HTML"):
        await make("github", html).request("GET", "/user", action="me", max_attempts=1)
    broken = Counter(
        [httpx.Response(200, content=b'{"id": 1', headers={"content-type": "application/json"})]
    )
    with pytest.raises(MalformedResponseError, match="invalid JSON"):
        await make("github", broken).request("GET", "/user", action="me", max_attempts=1)


async def test_garbled_json_is_retried_for_reads_only() -> None:
    handler = Counter([httpx.Response(200, content=b"{"), httpx.Response(200, json={"a": 1})])
    assert await make("github", handler).request("GET", "/user", action="me") == {"a": 1}
    post = Counter([httpx.Response(200, content=b"{"), httpx.Response(200, json={"a": 1})])
    with pytest.raises(MalformedResponseError):
        await make("github", post).request("POST", "/x", action="create", json={})
    assert len(post.calls) == 1


class User(BaseModel):
    id: int
    login: str


async def test_response_not_matching_model_is_malformed() -> None:
    handler = Counter([httpx.Response(200, json={"id": "abc"})])
    with pytest.raises(MalformedResponseError, match=r"id: .*login: Field required"):
        await make("github", handler).request("GET", "/user", action="me", model=User)
    ok = Counter([httpx.Response(200, json=[{"id": 1, "login": "a"}])])
    users = await make("github", ok).request("GET", "/users", action="list", model=list[User])
    assert users == [User(id=1, login="a")]


async def test_timeouts_and_connection_errors_are_typed() -> None:
    slow = Counter([httpx.ReadTimeout("slow")])
    with pytest.raises(APITimeoutError, match="within the timeout"):
        await make("github", slow).request("GET", "/user", action="me")
    assert len(slow.calls) == 3
    refused = Counter([httpx.ConnectError("[Errno 111] Connection refused")])
    with pytest.raises(APIConnectionError, match="cannot connect") as err:
        await make("github", refused).request("GET", "/user", action="me")
    assert not err.value.request_sent


def test_unknown_integration_and_action_suggest_names() -> None:
    with pytest.raises(UnknownIntegrationError, match="Did you mean: okta"):
        get_client("oktaa")
    with pytest.raises(UnknownActionError, match="unknown action 'fly'"):
        get_action("zendesk", "fly")


def test_missing_credentials_name_the_env_var_and_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUNCTION_OKTA_TOKEN", raising=False)
    monkeypatch.setenv("JUNCTION_OKTA_BASE_URL", "https://acme.okta.com")
    with pytest.raises(MissingCredentialsError) as err:
        get_client("okta", settings=Settings())
    assert "JUNCTION_OKTA_TOKEN" in str(err.value)
    assert "JUNCTION_OKTA_SECRET_BLOCK" in str(err.value)
    monkeypatch.setenv("JUNCTION_JIRA_BASE_URL", "https://acme.atlassian.net")
    with pytest.raises(
        MissingCredentialsError, match="JUNCTION_JIRA_USERNAME and JUNCTION_JIRA_PASSWORD"
    ):
        get_client("jira", settings=Settings())


def test_env_credentials_are_used_and_registered_for_redaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUNCTION_OKTA_BASE_URL", "https://acme.okta.com")
    monkeypatch.setenv("JUNCTION_OKTA_TOKEN", "00abcdefSECRETokta")
    client = get_client("okta", settings=Settings())
    assert client.credentials.source == "env" and not client.sandbox
    assert "00abcdefSECRETokta" not in redact("token is 00abcdefSECRETokta")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("acme.okta.com", "malformed base URL"),
        ("ftp://acme.okta.com", "malformed base URL"),
        ("https://", "malformed base URL"),
        ("https://{yourOktaDomain}", "placeholders"),
        ("https://acme.okta.com:99999", "bad port"),
    ],
)
def test_malformed_base_url(url: str, match: str) -> None:
    with pytest.raises(InvalidBaseURLError, match=match):
        get_client("okta", base_url=url, credentials=Credentials(token=SecretStr("t0ken-value")))


def test_sandbox_is_the_default() -> None:
    client = get_client("openai", settings=Settings(sandbox_url="http://127.0.0.1:9999/"))
    assert client.base_url == "http://127.0.0.1:9999/openai/v1"
    assert client.sandbox and client.credentials.source == "sandbox"


async def test_oauth2_token_cached_refreshed_before_expiry_and_on_401() -> None:
    tokens = iter(["tok-1", "tok-2", "tok-3"])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            assert request.headers["Authorization"].startswith("Basic ")
            return httpx.Response(200, json={"access_token": next(tokens), "expires_in": 3600})
        seen.append(request.headers["Authorization"])
        if request.url.path == "/teams/v1.0/expired":
            return (
                httpx.Response(401, json={})
                if seen[-1] == "Bearer tok-1"
                else httpx.Response(200, json={})
            )
        return httpx.Response(200, json={"value": []})

    client = make("teams", handler)
    auth = client._auth
    assert isinstance(auth, OAuth2ClientCredentials)
    await client.request("GET", "/organization", action="org")
    await client.request("GET", "/organization", action="org")
    assert auth.fetches == 1 and seen == ["Bearer tok-1", "Bearer tok-1"]
    await client.request("GET", "/expired", action="x")  # 401 -> refresh -> replay
    assert auth.fetches == 2 and seen[-1] == "Bearer tok-2"
    auth._expires_at = 0  # inside the refresh margin: refreshed before use
    await client.request("GET", "/organization", action="org")
    assert auth.fetches == 3 and seen[-1] == "Bearer tok-3"


def test_oauth2_token_url_derived_from_base_url() -> None:
    client = get_client(
        "workday",
        base_url="https://wd2-impl.workday.com/ccx/api/v1/acme",
        credentials=Credentials(client_id="c", client_secret=SecretStr("s3cret-value")),
    )
    auth = client._auth
    assert isinstance(auth, OAuth2ClientCredentials)
    assert auth.token_url == "https://wd2-impl.workday.com/ccx/oauth2/acme/token"


def test_redaction_patterns_and_log_records(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("hunter2-very-secret")
    install_log_redaction()
    logger = logging.getLogger("integrations.test")
    with caplog.at_level(logging.INFO):
        logger.info("calling %s with %s", "https://x.test/?token=abc123&x=1", "hunter2-very-secret")
        logger.info("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload")
    text = caplog.text
    assert "hunter2-very-secret" not in text and "abc123" not in text and "eyJhbGci" not in text
    assert "x=1" in text
    assert redact("key sk-proj-abcdefghijkl") == "key sk-***"
    assert redact("https://user:pw123@host/x") == "https://user:***@host/x"


# --- with_response, Link pagination -------------------------------------------------------


async def test_with_response_returns_this_calls_headers_and_status_concurrently() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        # The slower call finishes last: a shared "last response" would mix them up.
        await asyncio.sleep(0.05 if request.url.path.endswith("/slow") else 0)
        tag = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(201, json={"id": 1, "login": tag}, headers={"X-Tag": tag})

    client = make("github", handler)  # type: ignore[arg-type]
    slow, fast = await asyncio.gather(
        client.request("GET", "/users/slow", action="get", model=User, with_response=True),
        client.request("GET", "/users/fast", action="get", model=User, with_response=True),
    )
    assert isinstance(slow, APIResponse) and slow.data == User(id=1, login="slow")
    assert (slow.status, slow.headers["X-Tag"], fast.headers["X-Tag"]) == (201, "slow", "fast")
    text = await client.request("GET", "/x", action="get", expect="text", with_response=True)
    assert text.data == '{"id":1,"login":"x"}' and text.status == 201


async def test_with_response_still_validates_the_model() -> None:
    client = make("github", Counter([httpx.Response(200, json={"id": "abc"})]))
    with pytest.raises(MalformedResponseError, match="login"):
        await client.request("GET", "/user", action="me", model=User, with_response=True)


def test_next_link_reads_one_or_many_relations_per_header() -> None:
    per_rel = httpx.Headers(
        [
            ("link", '<https://x/a?after=1>; rel="self"'),
            ("link", '<https://x/a?after=2>; rel="next"'),
        ]
    )
    combined = httpx.Headers({"link": '<https://x/p1>; rel="prev", <https://x/p3>; rel=next'})
    assert next_link(per_rel) == "https://x/a?after=2"
    assert next_link(combined) == "https://x/p3"
    assert next_link(httpx.Headers({"link": '<https://x/a>; rel="self"'})) is None
    assert next_link(None) is None


async def test_link_pages_follows_next_sends_params_once_and_reports_truncation() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        page = int(request.url.params.get("page", "1"))
        link = {"link": f'<http://sandbox.test/github/items?page={page + 1}>; rel="next"'}
        return httpx.Response(
            200, json=[{"id": page, "login": "u"}], headers=link if page < 3 else {}
        )

    client = make("github", handler)
    pages, truncated = await client.link_pages(
        "/items", action="list", model=list[User], params={"per_page": 1}, max_pages=5
    )
    assert [p[0].id for p in pages] == [1, 2, 3] and not truncated
    assert seen == [
        "http://sandbox.test/github/items?per_page=1",
        "http://sandbox.test/github/items?page=2",
        "http://sandbox.test/github/items?page=3",
    ]
    first_two, cut = await client.link_pages("/items", action="list", model=list[User], max_pages=2)
    assert len(first_two) == 2 and cut


# --- the _check_response hook, status errors ----------------------------------------------


class OkFalseClient(IntegrationClient):
    """Refuses Slack-style ``{"ok": false}`` answers as server errors."""

    def _check_response(
        self, response: httpx.Response, body: Any, *, where: str, action: str
    ) -> None:
        if isinstance(body, dict) and body.get("ok") is False:
            raise self._make_status_error(
                ServerError,
                f"failed inside a 200 from {where}",
                response,
                action=action,
                status_code=503,
            )


async def test_check_response_hook_fails_the_attempt_inside_retries_and_metrics() -> None:
    handler = Counter(
        [
            httpx.Response(200, json={"ok": False}, headers={"Retry-After": "0"}),
            httpx.Response(200, json={"ok": True, "id": 1, "login": "a"}),
        ]
    )
    client = make("github", handler, cls=OkFalseClient)
    with collecting() as metrics:
        user = await client.request("GET", "/user", action="me", model=User)
    assert user.login == "a" and len(handler.calls) == 2
    assert (metrics[0].ok, metrics[0].attempts) == (True, 2)

    post = Counter([httpx.Response(200, json={"ok": False}, headers={"Retry-After": "7"})])
    with collecting() as metrics, pytest.raises(ServerError) as err:
        await make("github", post, cls=OkFalseClient).request("POST", "/x", action="create")
    assert len(post.calls) == 1  # a POST is not retried on a server error
    assert (err.value.status_code, err.value.retry_after) == (503, 7.0)
    assert "failed inside a 200 from POST /github/x" in str(err.value)
    assert (metrics[0].ok, metrics[0].error_class) == (False, "ServerError")


async def test_bare_json_string_error_body_is_the_message() -> None:
    handler = Counter([httpx.Response(400, json="labels in body is required")])
    with pytest.raises(BadRequestError, match=r"HTTP 400 from .*: labels in body is required"):
        await make("alertmanager", handler).request("POST", "/alerts", action="post", json=[])


def test_retry_later_errors_carry_retry_after() -> None:
    limited = RateLimitError("slow down", retry_after=3.0)
    failed = ServerError("down", status_code=503, service="x", retry_after=1.5)
    assert (limited.status_code, limited.retry_after, limited.retryable) == (429, 3.0, True)
    assert (failed.status_code, failed.retry_after, failed.message) == (503, 1.5, "x: down")


# --- create_once --------------------------------------------------------------------------


class Vendor:
    """A vendor without idempotency keys: ``POST /items`` creates, ``GET /items`` lists.

    ``script`` says what each POST does: ``ok``; ``lost`` (commits, then answers 504);
    ``fail`` (503, nothing committed); ``bad`` (400). ``lookups_fail`` makes GET answer 503.
    """

    def __init__(self, *script: str, lookups_fail: bool = False) -> None:
        self.script = list(script)
        self.lookups_fail = lookups_fail
        self.items: list[dict[str, Any]] = []
        self.posts = 0
        self.gets = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.gets += 1
            if self.lookups_fail:
                return httpx.Response(503, json={"message": "search down"})
            return httpx.Response(200, json=self.items)
        outcome = self.script[min(self.posts, len(self.script) - 1)]
        self.posts += 1
        if outcome == "bad":
            return httpx.Response(400, json={"message": "invalid"})
        if outcome == "fail":
            return httpx.Response(503, json={"message": "busy"})
        item = {"id": len(self.items) + 1, "login": "made"}
        self.items.append(item)
        return httpx.Response(504 if outcome == "lost" else 201, json=item)


async def create_item(client: IntegrationClient, *, lookup_first: bool = False) -> User:
    async def lookup() -> User | None:
        found = await client.request("GET", "/items", action="create.lookup", model=list[User])
        return found[0].model_copy(update={"login": "found"}) if found else None

    async def create() -> User:
        return await client.request(
            "POST", "/items", action="create", model=User, json={}, idempotent=False
        )

    return await client.create_once(lookup=lookup, create=create, lookup_first=lookup_first)


async def test_create_once_finds_what_a_lost_attempt_committed() -> None:
    vendor = Vendor("lost")
    item = await create_item(make("github", vendor))
    assert item == User(id=1, login="found")
    assert (vendor.posts, vendor.gets, len(vendor.items)) == (1, 1, 1)


async def test_create_once_retries_when_the_lookup_proves_nothing_was_created() -> None:
    vendor = Vendor("fail", "ok")
    item = await create_item(make("github", vendor))
    assert item == User(id=1, login="made")
    assert (vendor.posts, vendor.gets, len(vendor.items)) == (2, 1, 1)


async def test_create_once_looks_up_first_only_when_asked() -> None:
    vendor = Vendor("ok")
    vendor.items.append({"id": 7, "login": "earlier run"})
    assert (await create_item(make("github", vendor), lookup_first=True)).id == 7
    assert (vendor.posts, vendor.gets) == (0, 1)
    fresh = Vendor("ok")
    assert (await create_item(make("github", fresh))).login == "made"
    assert (fresh.posts, fresh.gets) == (1, 0)


async def test_create_once_stops_rather_than_create_blind_when_the_lookup_fails() -> None:
    vendor = Vendor("fail", "ok", lookups_fail=True)
    with pytest.raises(ServerError, match="search down") as err:
        await create_item(make("github", vendor))
    assert vendor.posts == 1 and vendor.items == []
    assert isinstance(err.value.__cause__, ServerError)  # the create's ambiguous failure
    assert "busy" in str(err.value.__cause__)


async def test_create_once_raises_non_retryable_errors_at_once() -> None:
    vendor = Vendor("bad")
    with pytest.raises(BadRequestError):
        await create_item(make("github", vendor))
    assert (vendor.posts, vendor.gets) == (1, 0)


async def test_create_once_is_bounded_and_waits_by_the_policy(slept: list[float]) -> None:
    vendor = Vendor("fail")
    policy = RetryPolicy(max_attempts=3, backoff_base=1.0, backoff_max=1.5, jitter=0.0)
    with pytest.raises(ServerError):
        await create_item(make("github", vendor, retry=policy))
    assert (vendor.posts, vendor.gets) == (3, 2)
    assert slept == [1.0, 1.5]  # backoff_base * 2**(n-1), capped at backoff_max


# --- per-integration settings -------------------------------------------------------------


async def test_pagerduty_events_url_and_routing_key_come_from_the_integration_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "R0UT1NGfromENV00000000000000001"
    monkeypatch.setenv("JUNCTION_PAGERDUTY_EVENTS_URL", "http://relay.test/v2/enqueue")
    monkeypatch.setenv("JUNCTION_PAGERDUTY_ROUTING_KEY", key)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"status": "success", "dedup_key": "d1"})

    settings = Settings(sandbox_url="http://sandbox.test")
    client = get_client("pagerduty", settings=settings, transport=httpx.MockTransport(handler))
    assert isinstance(client, PagerDutyClient)
    await client.send_event(SendEventParams(summary="s", source="x", severity="info"))
    (request,) = seen
    assert str(request.url) == "http://relay.test/v2/enqueue"
    assert key.encode() in request.content and key not in redact(f"key {key}")
    # An explicit config is the whole truth: the environment is not read behind it.
    explicit = get_client(
        "pagerduty",
        settings=settings,
        config=IntegrationConfig(events_url="http://other.test/enqueue"),
    )
    assert isinstance(explicit, PagerDutyClient)
    assert explicit.events_url == "http://other.test/enqueue" and explicit._routing_key is None
