"""Fault injection: every fault kind reaches the client as the right typed error, retries
are visible in the sandbox's request log, profiles load and validate, and randomness is
reproducible. The session's real ``SandboxServer``, clean for every test; the generic client
engine."""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrations.base import IntegrationClient, RetryPolicy
from integrations.catalog import load_catalog
from integrations.errors import (
    APIConnectionError,
    APITimeoutError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
)
from integrations.sandbox.api import SandboxRequest, VendorRoutes, json_response
from integrations.sandbox.app import SandboxServer
from integrations.sandbox.faults import FaultController
from integrations.sandbox.profile import (
    PROFILES_DIR,
    FaultProfile,
    LognormalLatency,
    ProfileError,
    UniformLatency,
    load_profile,
    sample_latency_ms,
)
from integrations.yamlconfig import ConfigError
from tests.helpers import quiet_breaker, requests_log, sandbox_engine

CATALOG = load_catalog()
ITEMS = "/_test/items"


@pytest.fixture(scope="module", autouse=True)
def _items_endpoint(sandbox: SandboxServer) -> None:
    """A side-effecting endpoint of our own (the vendor modules are tested elsewhere),
    mounted on the session sandbox under a path no vendor uses."""
    routes = VendorRoutes("webhook")

    @routes.route("POST", ITEMS)
    async def create(req: SandboxRequest) -> Any:
        item = {"id": req.state.next_id("item-"), **(req.json() or {})}
        req.state.collection("items")[item["id"]] = item
        return json_response(item, status=201)

    @routes.route("GET", ITEMS)
    async def list_items(req: SandboxRequest) -> Any:
        return json_response(list(req.state.collection("items").values()))

    sandbox.app.add_routes(routes)


def client(
    sb: SandboxServer, name: str = "asana", *, attempts: int = 3, timeout: float | None = None
) -> IntegrationClient:
    """The generic engine (no typed client), with short real backoffs."""
    return IntegrationClient(
        CATALOG.get(name),
        engine=sandbox_engine(sb),
        retry=RetryPolicy(max_attempts=attempts, backoff_base=0.01, backoff_max=0.02, jitter=0.0),
        breaker=quiet_breaker(name),
        timeout=timeout,
    )


async def get_me(c: IntegrationClient) -> Any:
    return await c.request("GET", "/users/me", action="get_me")


def attempts(sb: SandboxServer, service: str, route: str) -> dict[str, Any]:
    found: dict[str, Any] = requests_log(sb, service)["routes"][route]
    return found


# --- status faults and retries --------------------------------------------------------------


async def test_error_rate_gives_server_error_and_get_is_retried(sb: SandboxServer) -> None:
    sb.faults.set("asana", error_rate=1.0)
    async with client(sb) as c:
        with pytest.raises(ServerError) as info:
            await get_me(c)
    assert info.value.status_code == 503
    assert "Service Unavailable" in info.value.message  # Asana's {"errors": [...]} body
    route = attempts(sb, "asana", "GET /users/me")
    assert route["requests"] == 3
    assert route["faults"] == {"error": 3}


async def test_post_is_not_retried_on_503(sb: SandboxServer) -> None:
    sb.faults.set("webhook", error_rate=1.0, error_status=[502])
    async with client(sb, "webhook") as c:
        with pytest.raises(ServerError) as info:
            await c.request("POST", ITEMS, action="create", json={"name": "x"})
    assert info.value.status_code == 502
    assert attempts(sb, "webhook", f"POST {ITEMS}")["requests"] == 1


async def test_error_next_recovers_within_retries(sb: SandboxServer) -> None:
    sb.faults.set("asana", error_next=2, error_retry_after_seconds=0)
    async with client(sb) as c:
        body = await get_me(c)
    assert body["data"]["resource_type"] == "user"
    assert attempts(sb, "asana", "GET /users/me")["statuses"] == {"503": 2, "200": 1}


async def test_burst_429_carries_retry_after(sb: SandboxServer) -> None:
    sb.faults.set("github", burst_429=1.0, retry_after_seconds=7)
    async with client(sb, "github", attempts=1) as c:
        with pytest.raises(RateLimitError) as info:
            await c.request("GET", "/user", action="get_user")
    assert info.value.retry_after == 7
    assert "API rate limit exceeded" in info.value.message


async def test_429_is_retried_even_for_post(sb: SandboxServer) -> None:
    sb.faults.set("webhook", burst_429=1.0, retry_after_seconds=0)
    async with client(sb, "webhook") as c:
        with pytest.raises(RateLimitError):
            await c.request("POST", ITEMS, action="create", json={})
    route = attempts(sb, "webhook", f"POST {ITEMS}")
    assert route["requests"] == 3 and route["faults"] == {"burst_429": 3}
    assert sb.state.get("webhook").counts() == {}  # a 429 never reaches the handler


async def test_token_bucket_rate_limit(sb: SandboxServer) -> None:
    sb.faults.set("okta", rate_limit={"requests_per_second": 0.5, "burst": 2})
    async with client(sb, "okta", attempts=1) as c:
        await c.request("GET", "/api/v1/users/me", action="me")
        await c.request("GET", "/api/v1/users/me", action="me")
        with pytest.raises(RateLimitError) as info:
            await c.request("GET", "/api/v1/users/me", action="me")
    assert info.value.retry_after == 2  # ceil(1 token / 0.5 per s)
    assert '"errorCode": "E0000047"' in info.value.body_excerpt
    with httpx.Client() as http:
        r = http.get(
            f"{sb.url}/okta/api/v1/users/me", headers={"Authorization": "SSWS sandbox-token"}
        )
    assert r.status_code == 429
    assert r.headers["x-rate-limit-remaining"] == "0"
    assert r.headers["x-rate-limit-limit"] == "2"
    assert r.headers["retry-after"].isdigit()


# --- transport faults -----------------------------------------------------------------------


async def test_hang_times_out_the_client(sb: SandboxServer) -> None:
    sb.faults.set("asana", hang_rate=1.0)  # hang_seconds defaults to an hour
    async with client(sb, attempts=1, timeout=0.3) as c:
        with pytest.raises(APITimeoutError):
            await get_me(c)
    # The server notices the client left and frees the request (no hour-long task).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if attempts(sb, "asana", "GET /users/me")["statuses"].get("hang"):
            break
        time.sleep(0.05)
    assert attempts(sb, "asana", "GET /users/me")["statuses"] == {"hang": 1}


async def test_short_hang_is_just_slow(sb: SandboxServer) -> None:
    sb.faults.set("asana", hang_rate=1.0, hang_seconds=0.05)
    async with client(sb, attempts=1, timeout=5) as c:
        assert (await get_me(c))["data"]["gid"] == "1"


async def test_reset_is_a_connection_error_and_get_retries(sb: SandboxServer) -> None:
    sb.faults.set("asana", reset_rate=1.0)
    async with client(sb) as c:
        with pytest.raises(APIConnectionError) as info:
            await get_me(c)
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.request_sent
    route = attempts(sb, "asana", "GET /users/me")
    assert route["requests"] == 3 and route["statuses"] == {"reset": 3}


@pytest.mark.parametrize(("kind", "words"), [("json", "invalid JSON"), ("html", "HTML")])
async def test_malformed_bodies(sb: SandboxServer, kind: str, words: str) -> None:
    sb.faults.set("asana", malformed_rate=1.0, malformed=kind)
    async with client(sb, attempts=1) as c:
        with pytest.raises(MalformedResponseError) as info:
            await get_me(c)
    assert words in info.value.message


async def test_malformed_html_with_502_is_server_error(sb: SandboxServer) -> None:
    sb.faults.set("asana", malformed_rate=1.0, malformed="html", malformed_status=502)
    async with client(sb, attempts=1) as c:
        with pytest.raises(ServerError) as info:
            await get_me(c)
    assert "HTML error page" in info.value.message


# --- outages ----------------------------------------------------------------------------------


async def test_outage_window_begins_and_ends(sb: SandboxServer) -> None:
    async with client(sb, attempts=1) as c:
        await get_me(c)  # warm the connection so the first call lands inside the window
        sb.faults.set("asana", outages=[{"start": 0, "end": 1.5}])
        with pytest.raises(ServerError) as info:
            await get_me(c)
        assert info.value.status_code == 503
        deadline = time.monotonic() + 15
        recovered = False
        while time.monotonic() < deadline and not recovered:
            time.sleep(0.1)
            try:
                await get_me(c)
                recovered = True
            except ServerError:
                pass
    assert recovered
    assert attempts(sb, "asana", "GET /users/me")["faults"]["outage"] >= 1


def test_outage_windows_follow_the_clock() -> None:
    """Relative and absolute windows, admin outages and their early end, on a fake clock."""
    now = [1_000_000.0]
    base = datetime.fromtimestamp(now[0], UTC)
    profile = FaultProfile.from_dict(
        {
            "services": {
                "okta": {
                    "outages": [
                        {"start": 10, "end": 20, "mode": "hang"},
                        {
                            "start": (base + timedelta(seconds=30)).isoformat(),
                            "end": (base + timedelta(seconds=40)).isoformat(),
                        },
                    ]
                }
            }
        }
    )
    c = FaultController(profile, wall=lambda: now[0])

    def at(t: float, service: str = "okta") -> str | None:
        now[0] = 1_000_000.0 + t
        return c.outage_mode(service)

    assert [at(5), at(10), at(19.9), at(20), at(35), at(40)] == [
        None,
        "hang",
        "hang",
        None,
        "503",
        None,
    ]
    at(12)
    c.end_outage("okta")  # ends the window in progress ...
    assert at(13) is None
    assert at(31) == "503"  # ... but not later ones
    c.start_outage("*", 5, "reset")
    assert (at(32, "github"), at(32)) == ("reset", "reset")
    assert at(37, "github") is None
    with pytest.raises(ProfileError):
        c.start_outage("okta", 5, "boom")


@pytest.mark.parametrize(
    ("mode", "error"),
    [("hang", APITimeoutError), ("reset", APIConnectionError), ("503", ServerError)],
)
async def test_outage_modes(sb: SandboxServer, mode: str, error: type[Exception]) -> None:
    sb.faults.start_outage("asana", 30, mode)
    async with client(sb, attempts=1, timeout=0.3) as c:
        with pytest.raises(error):
            await get_me(c)
        sb.faults.end_outage("asana")
        await get_me(c)


async def test_absolute_outage_windows(sb: SandboxServer) -> None:
    now = datetime.now(UTC)
    sb.faults.set(
        "asana",
        outages=[
            {
                "start": (now - timedelta(hours=2)).isoformat(),
                "end": (now - timedelta(hours=1)).isoformat(),
            }
        ],
    )
    async with client(sb, attempts=1) as c:
        await get_me(c)  # a past window does nothing
        sb.faults.set(
            "asana",
            outages=[
                {
                    "start": (now - timedelta(minutes=1)).isoformat(),
                    "end": (now + timedelta(minutes=5)).isoformat(),
                }
            ],
        )
        with pytest.raises(ServerError):
            await get_me(c)


async def test_star_outage_takes_everything_down(sb: SandboxServer) -> None:
    sb.faults.start_outage("*", 30)
    async with client(sb, "box", attempts=1) as box, client(sb, "zoom", attempts=1) as zoom:
        for c in (box, zoom):
            with pytest.raises(ServerError):
                await get_me(c)


# --- lost after commit --------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "error"), [("504", ServerError), ("reset", APIConnectionError)])
async def test_lost_after_commit_keeps_side_effect(
    sb: SandboxServer, mode: str, error: type[Exception]
) -> None:
    sb.faults.set("webhook", lost_after_commit=1.0, lost_mode=mode)
    async with client(sb, "webhook") as c:
        with pytest.raises(error):
            await c.request("POST", ITEMS, action="create", json={"name": "deploy"})
        items = await c.request("GET", ITEMS, action="list")  # reads are never "lost"
    assert [i["name"] for i in items] == ["deploy"]  # committed despite the client's error
    assert sb.state.get("webhook").counts() == {"items": 1}
    route = attempts(sb, "webhook", f"POST {ITEMS}")
    assert route["requests"] == 1 and route["faults"] == {"lost_after_commit": 1}


async def test_blind_retry_after_lost_commit_duplicates(sb: SandboxServer) -> None:
    """What lost_after_commit exists to catch: a client that retries a write it wrongly
    marked idempotent creates a duplicate."""
    sb.faults.set("webhook", lost_after_commit=1.0)
    async with client(sb, "webhook") as c:
        with pytest.raises(ServerError):
            await c.request("POST", ITEMS, action="create", json={}, idempotent=True)
    assert sb.state.get("webhook").counts() == {"items": 3}


# --- latency, determinism -----------------------------------------------------------------


def test_latency_distributions() -> None:
    rng = random.Random(1)
    uniform = [sample_latency_ms(UniformLatency(min=20, max=200), rng) for _ in range(2000)]
    assert min(uniform) >= 20 and max(uniform) <= 200
    logn = sorted(sample_latency_ms(LognormalLatency(p50=50, p95=200), rng) for _ in range(4000))
    assert 45 < logn[2000] < 55
    assert 170 < logn[3800] < 230
    capped = [sample_latency_ms(LognormalLatency(p50=50, p95=200, max=80), rng) for _ in range(500)]
    assert max(capped) == 80
    assert sample_latency_ms(12.5, rng) == 12.5 and sample_latency_ms(None, rng) == 0


def test_seed_makes_faults_reproducible() -> None:
    profile = FaultProfile.from_dict(
        {
            "seed": 5,
            "services": {
                "*": {"error_rate": 0.3, "reset_rate": 0.1, "latency_ms": {"min": 1, "max": 9}}
            },
        }
    )

    def run(p: FaultProfile) -> list[tuple[float, str | None]]:
        c = FaultController(p)
        out = []
        for _ in range(200):
            latency, fault = c.before("okta")
            out.append((latency, fault.kind if fault else None))
        return out

    first, second = run(profile), run(profile)
    assert first == second
    assert 40 < sum(1 for _, k in first if k == "error") < 80
    assert run(profile.model_copy(update={"seed": 6})) != first
    # services draw from their own streams
    c = FaultController(profile)
    assert [c.before("okta") for _ in range(5)] != [c.before("github") for _ in range(5)]


async def test_latency_is_applied(sb: SandboxServer) -> None:
    """Latency is injected (checked through what the controller drew, not wall time)."""
    sb.faults.set("asana", latency_ms=30)
    latency, fault = sb.faults.before("asana")
    assert (latency, fault) == (0.03, None)
    async with client(sb) as c:
        assert (await get_me(c))["data"]["gid"] == "1"


# --- profiles -------------------------------------------------------------------------------


def test_packaged_profiles_load() -> None:
    default = FaultProfile.packaged("default")
    flaky = FaultProfile.packaged("flaky")
    star = default.for_service("okta")
    assert isinstance(star.latency_ms, UniformLatency)
    assert star.random_rate == 0 and not star.outages
    assert math.isclose(flaky.for_service("okta").random_rate, 0.15)
    assert flaky.for_service("okta").malformed == "html"
    assert flaky.for_service("github").rate_limit is not None
    assert {p.stem for p in PROFILES_DIR.glob("*.yaml")} >= {"default", "flaky"}


@pytest.mark.parametrize(
    ("yaml_text", "names"),
    [
        ("services:\n  okta: {error_rate: 1.5}\n", ["services.okta.error_rate"]),
        ("services:\n  oktaa: {error_rate: 0.1}\n", ["oktaa", "okta"]),
        ("services:\n  okta: {latency_ms: {min: 5}}\n", ["services.okta.latency_ms", "max"]),
        ("services:\n  okta: {latency_ms: fast}\n", ["services.okta.latency_ms"]),
        (
            "services:\n  okta: {rate_limit: {requests_per_second: 0}}\n",
            ["services.okta.rate_limit.requests_per_second"],
        ),
        (
            "services:\n  okta: {outages: [{start: 10, end: 5}]}\n",
            ["services.okta.outages.0", "end must be after start"],
        ),
        ("services:\n  okta: {error_status: 404}\n", ["services.okta.error_status", "5xx"]),
        ("services:\n  okta: {hang_rate: 0.6, error_rate: 0.6}\n", ["<= 1"]),
        ("seed: 1\nservics: {}\n", ["bad.yaml:2:", "servics", "did you mean 'services'"]),
        ("services: [1, 2\n", ["invalid YAML"]),
        (  # every problem at once, each on its line
            "services:\n  oktaa: {}\n  okta: {error_rate: 2}\n",
            ["bad.yaml:2: services.oktaa: unknown service", "bad.yaml:3: services.okta.error_rate"],
        ),
        # Every number finite and in range (.inf and .nan are valid YAML floats).
        ("services:\n  okta: {hang_seconds: .inf}\n", ["bad.yaml:2:", "hang_seconds", "finite"]),
        ("services:\n  okta: {latency_ms: .nan}\n", ["services.okta.latency_ms", "finite"]),
        ("services:\n  okta: {latency_ms: {p50: 1, p95: .inf}}\n", ["p95", "finite"]),
        ("services:\n  okta: {rate_limit: {requests_per_second: .inf}}\n", ["finite"]),
        ("services:\n  okta: {outages: [{start: 5, end: .inf}]}\n", ["outages.0.end"]),
        (
            "services:\n  okta: {outages: [{start: -5}]}\n",
            ["outages.0.start", "greater than or equal to 0"],
        ),
        (
            "services:\n  okta: {outages: [{start: 1e300}]}\n",
            ["outages.0.start", "less than or equal to"],
        ),
        ("services:\n  okta: {token_ttl_seconds: 1e30}\n", ["token_ttl_seconds"]),
        ("services:\n  okta: {latency_ms: 99999999999}\n", ["latency_ms"]),
        ("synthetic: {count: 10, latency_ms: .inf}\n", ["synthetic.latency_ms", "finite"]),
        ("seed: " + "9" * 30 + "\n", ["seed"]),
        ("a: &a [1, 2]\nb: [*a, *a]\n", ["unknown field 'a'"]),
    ],
)
def test_profile_errors_name_file_line_and_field(
    tmp_path: Path, yaml_text: str, names: list[str]
) -> None:
    """Profiles load through the one YAML loader: ``file:line: field: problem``, and no
    number that is infinite, NaN or out of range gets in."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        FaultProfile.from_yaml(path)
    for name in names:
        assert name in str(info.value)
    assert str(info.value).startswith(f"{path}:")


def test_profile_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="too many aliases"):
        FaultProfile.from_yaml(path)


def test_load_profile_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_profile(tmp_path / "nope.yaml")
    assert load_profile("flaky")[0].name == "flaky"


def test_profile_star_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "seed: 9\n"
        "services:\n"
        "  '*': {error_rate: 0.1, latency_ms: 50}\n"
        "  okta: {error_rate: 0.0}\n"
        "  github:\n"
        "synthetic: {count: 10, latency_ms: {p50: 20, p95: 40}}\n"
    )
    profile = FaultProfile.from_yaml(path)
    assert profile.for_service("okta").error_rate == 0.0
    assert profile.for_service("okta").latency_ms == 50
    assert profile.for_service("github").error_rate == 0.1
    assert profile.for_service("zoom").error_rate == 0.1
    assert profile.synthetic is not None and profile.synthetic.count == 10


def test_controller_update_validates_and_merges() -> None:
    c = FaultController()
    c.set("okta", error_rate=0.2)
    c.set("okta", hang_rate=0.3)
    entry = c.entry("okta")
    assert entry is not None and (entry.error_rate, entry.hang_rate) == (0.2, 0.3)
    with pytest.raises(ProfileError, match="hang_seconds"):
        c.set("okta", hang_seconds=-1)
    with pytest.raises(ProfileError, match="did you mean"):
        c.set("oktaa", error_rate=0.1)
    with pytest.raises(ProfileError, match="merged with"):
        c.set("*", burst_429=0.9)  # + okta's own 0.2 errors and 0.3 hangs > 1
    c.clear("okta")
    assert c.effective("okta").random_rate == 0


async def test_profile_loaded_into_server(sb: SandboxServer) -> None:
    profile = FaultProfile.from_dict({"services": {"asana": {"error_next": 1}}})
    sb.faults.load(profile)
    async with client(sb, attempts=1) as c:
        with pytest.raises(ServerError):
            await get_me(c)
        await get_me(c)
