"""The one duration grammar shared by the CLI, alerting files and workflow specs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from junction.durations import duration_seconds, parse_since

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1m30s", 90.0),
        (" 1 m 30 s ", 90.0),
        ("2", 2.0),
        ("-3", -3.0),
        ("5S", 5.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "s", "1s5", "-1s", "nan", "inf", "5 days"])
def test_not_durations(text: str) -> None:
    assert duration_seconds(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", NOW - timedelta(hours=1)),
        ("3600", NOW - timedelta(hours=1)),
        ("2026-11-27T11:00:00Z", datetime(2026, 11, 27, 11, tzinfo=UTC)),
        ("2026-11-27T11:00", datetime(2026, 11, 27, 11, tzinfo=UTC)),  # naive: UTC
        ("2026-11-27T12:00+01:00", datetime(2026, 11, 27, 11, tzinfo=UTC)),
    ],
)
def test_since(text: str, expected: datetime) -> None:
    since = parse_since(text, NOW)
    assert since == expected and since.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("soon", "is neither a duration"),
        ("-5", "is negative"),
        ("0001-01-01T00:00:00+01:00", "reaches before year 1"),
        ("99999999999d", "reaches before year 1"),
    ],
)
def test_not_since(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_since(text, NOW)
