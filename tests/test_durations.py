"""The one duration grammar shared by the CLI, alerting files and workflow specs."""

from __future__ import annotations

import pytest

from junction.durations import duration_seconds


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
