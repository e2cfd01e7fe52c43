"""Sliding-window health stats and the 0-100 health score (junction/scoring.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from integrations.base import HealthResult
from integrations.metrics import CallMetric
from junction.scoring import (
    Observation,
    ServiceWindow,
    WindowStats,
    health_score,
    percentile,
)
from junction.settings import Settings

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def obs(
    seconds: float,
    ok: bool = True,
    latency: float = 100.0,
    breaker: str = "closed",
    error_class: str | None = None,
) -> Observation:
    return Observation(
        ts=at(seconds),
        ok=ok,
        latency_ms=latency,
        error_class=error_class if error_class or ok else "APIStatusError",
        breaker_state=breaker,
    )


def settings(**overrides: float) -> Settings:
    values: dict[str, float] = {
        "response_time_warning_ms": 1000,
        "response_time_critical_ms": 5000,
        "success_rate_warning": 0.95,
        "success_rate_critical": 0.90,
        "health_score_warning": 80,
        "health_score_critical": 60,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def stats(
    *,
    rate: float = 1.0,
    p95: float | None = 100.0,
    error_age: float | None = None,
    breaker: str = "closed",
    count: int = 100,
) -> WindowStats:
    """Hand-built stats, so each score component can be set on its own."""
    return WindowStats(
        as_of=T0,
        count=count,
        successes=round(rate * count),
        success_rate=rate,
        p50_latency_ms=p95,
        p95_latency_ms=p95,
        uptime=rate,
        seconds_since_last_error=error_age,
        last_error_at=None if error_age is None else T0 - timedelta(seconds=error_age),
        last_breaker_state=breaker,
    )


# --- observations -------------------------------------------------------------------------


def test_from_health_and_from_call_copy_the_fields() -> None:
    probe = HealthResult(
        service="okta",
        ok=False,
        status=503,
        latency_ms=42.5,
        error_class="APIStatusError",
        error="boom",
        breaker_state="half_open",
        checked_at=at(5),
    )
    assert Observation.from_health(probe) == Observation(
        at(5), False, 42.5, "APIStatusError", "half_open"
    )

    call = CallMetric(
        service="okta",
        action="get_user",
        method="GET",
        path="/api/v1/users/1",
        status=200,
        ok=True,
        latency_ms=7.0,
        error_class=None,
        error=None,
        attempts=1,
        breaker_state="closed",
        ts=at(9),
    )
    assert Observation.from_call(call) == Observation(at(9), True, 7.0, None, "closed")


def test_timestamps_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    aware = Observation(ts=datetime(2026, 1, 1, 14, 0, tzinfo=plus_two), ok=True, latency_ms=1)
    naive = Observation(ts=datetime(2026, 1, 1, 12, 0), ok=True, latency_ms=1)
    assert aware.ts == T0 and aware.ts.tzinfo is UTC
    assert naive.ts == T0 and naive.ts.tzinfo is UTC


# --- the window ---------------------------------------------------------------------------


def test_eviction_drops_only_what_is_older_than_the_window() -> None:
    window = ServiceWindow(window=timedelta(seconds=60))
    for second in (0, 10, 20, 30):
        window.add(obs(second), now=at(second))
    assert len(window) == 4

    # At t=75 the cutoff is t=15: 0 and 10 go, 20 and 30 stay.
    assert window.evict(at(75)) == 2
    assert [o.ts for o in window.observations] == [at(20), at(30)]

    # Exactly on the cutoff is kept (older-than, not older-or-equal).
    assert window.evict(at(80)) == 0
    assert window.evict(at(80.001)) == 1
    assert [o.ts for o in window.observations] == [at(30)]


def test_add_evicts_relative_to_now_and_rejects_stale_arrivals() -> None:
    window = ServiceWindow(window=timedelta(seconds=60))
    window.add(obs(100), now=at(100))
    # A late arrival already older than the window is dropped at once.
    window.add(obs(30), now=at(100))
    assert [o.ts for o in window.observations] == [at(100)]


def test_out_of_order_arrivals_are_kept_sorted_and_evicted_by_timestamp() -> None:
    window = ServiceWindow(window=timedelta(seconds=100))
    window.add(obs(50, latency=5), now=at(50))
    window.add(obs(10, latency=1), now=at(50))
    window.add(obs(30, ok=False, breaker="open"), now=at(50))
    window.add(obs(20, latency=2), now=at(50))
    assert [o.ts for o in window.observations] == [at(10), at(20), at(30), at(50)]

    # The newest by timestamp (t=50, closed) is the "last", not the last to arrive.
    s = window.stats(at(50))
    assert s.last_breaker_state == "closed"
    assert s.last_error_at == at(30)
    assert s.seconds_since_last_error == 20.0

    # Eviction at t=125 (cutoff 25) removes t=10 and t=20 although they arrived last.
    window.evict(at(125))
    assert [o.ts for o in window.observations] == [at(30), at(50)]


def test_stats_ignores_observations_after_now() -> None:
    window = ServiceWindow()
    window.extend([obs(0), obs(10, ok=False)], now=at(0))
    s = window.stats(at(5))
    assert (s.count, s.successes, s.last_error_at) == (1, 1, None)


def test_empty_window_stats() -> None:
    s = ServiceWindow().stats(T0)
    assert s == WindowStats(as_of=T0)
    assert s.success_rate is None and s.uptime is None and s.last_breaker_state is None


def test_stats_counts_and_latency_percentiles_of_successes_only() -> None:
    window = ServiceWindow()
    # 20 successes with latencies 10, 20, ..., 200 and two failures with huge latencies.
    items = [obs(i, latency=10.0 * (i + 1)) for i in range(20)]
    items += [obs(20, ok=False, latency=9000), obs(21, ok=False, latency=9999)]
    window.extend(items, now=at(30))
    s = window.stats(at(30))
    assert (s.count, s.successes, s.failures) == (22, 20, 2)
    assert s.success_rate == pytest.approx(20 / 22)
    # Nearest rank: p50 -> rank ceil(10) = 10 -> 100; p95 -> rank ceil(19) = 19 -> 190.
    assert s.p50_latency_ms == 100.0
    assert s.p95_latency_ms == 190.0
    assert s.seconds_since_last_error == 9.0


def test_no_successes_means_no_latency_percentiles() -> None:
    window = ServiceWindow()
    window.add(obs(0, ok=False, latency=50), now=at(0))
    s = window.stats(at(0))
    assert s.p50_latency_ms is None and s.p95_latency_ms is None
    assert s.success_rate == 0.0


def test_percentile_nearest_rank_on_known_data() -> None:
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(data, 5) == 15.0  # rank ceil(0.25) = 1
    assert percentile(data, 30) == 20.0  # rank ceil(1.5) = 2
    assert percentile(data, 40) == 20.0  # rank 2 exactly
    assert percentile(data, 50) == 35.0  # rank ceil(2.5) = 3
    assert percentile(data, 100) == 50.0
    assert percentile(reversed(data), 95) == 50.0  # order of input does not matter
    assert percentile(range(1, 101), 95) == 95
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(data, 0)


def test_uptime_is_time_weighted_on_a_hand_computed_sequence() -> None:
    window = ServiceWindow()
    # up 0-10, down 10-40, up 40-100, down 100-120 (now): 70 s up of 120 s.
    window.extend([obs(0), obs(10, ok=False), obs(40), obs(100, ok=False)], now=at(120))
    assert window.stats(at(120)).uptime == pytest.approx(70 / 120)
    # Repeated states only split intervals: same answer.
    window.add(obs(70), now=at(120))
    assert window.stats(at(120)).uptime == pytest.approx(70 / 120)


def test_uptime_with_zero_span_uses_the_latest_state() -> None:
    window = ServiceWindow()
    window.add(obs(0, ok=False), now=at(0))
    assert window.stats(at(0)).uptime == 0.0
    window.add(obs(0), now=at(0))  # same instant, arrived later: it is the latest
    assert window.stats(at(0)).uptime == 1.0


# --- score components at their boundaries -------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "points"),
    [
        (1.0, 50.0),
        (0.95, 50.0),  # at warning: full
        (0.925, 37.5),  # halfway between warning and critical
        (0.90, 25.0),  # at critical: half
        (0.875, 12.5),
        (0.85, 0.0),  # critical minus the 0.05 gap: zero
        (0.5, 0.0),
    ],
)
def test_success_component(rate: float, points: float) -> None:
    result = health_score(stats(rate=rate), settings())
    assert result.success == pytest.approx(points)


@pytest.mark.parametrize(
    ("p95", "points"),
    [
        (100.0, 25.0),
        (1000.0, 25.0),  # at warning: full
        (2000.0, 18.75),
        (3000.0, 12.5),
        (5000.0, 0.0),  # at critical: zero
        (9000.0, 0.0),
        (None, 0.0),  # no successful call to measure
    ],
)
def test_latency_component(p95: float | None, points: float) -> None:
    result = health_score(stats(p95=p95), settings())
    assert result.latency == pytest.approx(points)


@pytest.mark.parametrize(
    ("age", "points"),
    [
        (None, 15.0),
        (0.0, 0.0),
        (60.0, 0.0),  # a minute old: still zero
        (330.0, 7.5),  # halfway from 60 s to 600 s
        (600.0, 15.0),  # ten minutes: full
        (900.0, 15.0),
    ],
)
def test_error_recency_component(age: float | None, points: float) -> None:
    result = health_score(stats(error_age=age), settings())
    assert result.error_recency == pytest.approx(points)


def test_error_recency_follows_the_now_argument() -> None:
    s = stats(error_age=60.0)
    assert health_score(s, settings()).error_recency == 0.0
    later = health_score(s, settings(), now=T0 + timedelta(seconds=270))  # error is 330 s old
    assert later.error_recency == pytest.approx(7.5)


@pytest.mark.parametrize(
    ("state", "points"), [("closed", 10.0), ("half_open", 5.0), ("open", 0.0), ("weird", 0.0)]
)
def test_breaker_component(state: str, points: float) -> None:
    assert health_score(stats(breaker=state), settings()).breaker == points


def test_perfect_service_scores_100_and_is_healthy() -> None:
    result = health_score(stats(), settings())
    assert result.score == 100.0
    assert result.status == "healthy"
    assert result.reasons == ()


def test_score_is_the_sum_of_components() -> None:
    # 37.5 (rate 0.925) + 18.75 (p95 2000) + 7.5 (error 330 s ago) + 5 (half open)
    result = health_score(
        stats(rate=0.925, p95=2000.0, error_age=330.0, breaker="half_open"), settings()
    )
    assert result.score == pytest.approx(68.75)
    assert result.status == "warning"


# --- status rules -------------------------------------------------------------------------


def test_status_from_score_thresholds() -> None:
    # Rate and latency stay healthy; only error recency and the breaker vary.
    cfg = settings(health_score_warning=90, health_score_critical=80)

    def status(**kw: object) -> tuple[float | None, str]:
        result = health_score(stats(**kw), cfg)  # type: ignore[arg-type]
        return result.score, result.status

    assert status(error_age=240.0) == (pytest.approx(90.0), "healthy")  # at warning line
    assert status(error_age=150.0) == (pytest.approx(87.5), "warning")
    assert status(error_age=60.0, breaker="half_open") == (80.0, "warning")  # at critical
    assert status(error_age=60.0, breaker="unknown-state") == (75.0, "critical")


def test_default_settings_thresholds_are_used() -> None:
    # 85 with default settings (warning 80) is healthy; with warning 90 it is not.
    s = stats(error_age=60.0)
    assert health_score(s, Settings()).status == "healthy"
    assert health_score(s, settings(health_score_warning=90)).status == "warning"


def test_success_rate_below_critical_is_critical_whatever_the_score() -> None:
    # 0.899: success 24.5 + 25 + 15 + 10 = 74.5 would only be "warning" by score.
    result = health_score(stats(rate=0.899), settings())
    assert result.score == pytest.approx(74.5)
    assert result.status == "critical"
    assert any("success rate" in r for r in result.reasons)
    # Exactly at the critical rate is not below it: 75 by score -> warning.
    assert health_score(stats(rate=0.90), settings()).status == "warning"


def test_success_rate_below_warning_is_at_least_warning() -> None:
    result = health_score(stats(rate=0.94), settings())
    assert result.score == pytest.approx(95.0)  # 45 + 25 + 15 + 10: healthy by score
    assert result.status == "warning"
    assert health_score(stats(rate=0.95), settings()).status == "healthy"


def test_p95_above_critical_is_critical_whatever_the_score() -> None:
    # With success 50, recency 15, breaker 10 and latency 0 the score is 75.
    cfg = settings(health_score_warning=70, health_score_critical=50)
    # At the critical line it is only above warning.
    assert health_score(stats(p95=5000.0), cfg).status == "warning"
    result = health_score(stats(p95=5000.5), cfg)
    assert result.score == 75.0
    assert result.status == "critical"


def test_p95_above_warning_is_at_least_warning() -> None:
    cfg = settings(health_score_warning=70, health_score_critical=50)
    assert health_score(stats(p95=1000.0), cfg).status == "healthy"
    assert health_score(stats(p95=1001.0), cfg).status == "warning"


def test_open_breaker_is_critical_even_with_a_high_score() -> None:
    cfg = settings(health_score_warning=50, health_score_critical=10)
    result = health_score(stats(breaker="open"), cfg)
    assert result.score == 90.0
    assert result.status == "critical"
    assert "circuit breaker open" in result.reasons
    # Half open costs points but is not a hard rule.
    assert health_score(stats(breaker="half_open"), cfg).status == "healthy"


def test_thresholds_come_from_settings() -> None:
    # The same window is healthy or critical depending only on the Settings instance.
    s = stats(rate=0.97, p95=1500.0)
    assert health_score(s, settings()).status == "warning"  # p95 > 1000 ms
    loose = settings(response_time_warning_ms=2000, success_rate_warning=0.96)
    assert health_score(s, loose).status == "healthy"
    strict = settings(success_rate_warning=0.99, success_rate_critical=0.98)
    assert health_score(s, strict).status == "critical"


def test_empty_window_is_unknown() -> None:
    result = health_score(ServiceWindow().stats(T0), settings())
    assert result.score is None
    assert result.status == "unknown"
    assert result.success is None and result.breaker is None


def test_end_to_end_window_to_score() -> None:
    window = ServiceWindow(window=timedelta(minutes=15))
    # 19 fast successes then one failure 2 minutes before now, breaker closed.
    items = [obs(i * 30, latency=200.0) for i in range(19)]
    items.append(obs(19 * 30, ok=False))
    window.extend(items, now=at(19 * 30 + 120))
    s = window.stats(at(19 * 30 + 120))
    assert s.success_rate == pytest.approx(0.95)
    result = health_score(s, settings())
    # success 50 + latency 25 + recency 15 * (120 - 60) / 540 + breaker 10
    assert result.score == pytest.approx(85 + 15 * 60 / 540)
    assert result.status == "healthy"
