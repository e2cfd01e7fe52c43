"""`junction analytics detect`: output and every kind of bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from junction.cli import app

runner = CliRunner()


def _write(tmp_path: Path, text: str, name: str = "s.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _series(n: int = 400, spike_at: int | None = 300) -> str:
    lines = ["timestamp,value"]
    for i in range(n):
        v = 100 + 10 * math.sin(2 * math.pi * i / 288) + (i * 7919 % 13) / 3
        if i == spike_at:
            v += 80
        minute = i * 5
        lines.append(
            f"2024-01-{1 + minute // 1440:02d} {minute // 60 % 24:02d}:{minute % 60:02d}:00,{v}"
        )
    return "\n".join(lines) + "\n"


def _run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["analytics", "detect", *args])
    return res.exit_code, res.stdout, res.stderr


def _assert_clean_error(result: tuple[int, str, str], fragment: str) -> None:
    code, _out, err = result
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert fragment in lines[0], lines[0]


def test_table_output_lists_every_point_and_the_detection(tmp_path: Path) -> None:
    code, out, _ = _run(str(_write(tmp_path, _series())))
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("2024-")]
    assert len(rows) == 400
    assert "ANOMALY" in rows[300]
    assert "1 detection(s)" in out or "detection(s)" in out
    assert "2024-01-02T01:00:00" in out.split("detection(s)")[1]


def test_json_output(tmp_path: Path) -> None:
    code, out, _ = _run(str(_write(tmp_path, _series())), "--json")
    assert code == 0
    doc = json.loads(out)
    assert len(doc["points"]) == 400
    assert set(doc["points"][0]) == {"timestamp", "value", "score", "is_anomaly"}
    assert doc["points"][300]["is_anomaly"] is True
    assert "2024-01-02T01:00:00" in [d["timestamp"] for d in doc["detections"]]
    assert doc["warnings"] == []


def test_threshold_option_changes_detections(tmp_path: Path) -> None:
    path = str(_write(tmp_path, _series()))
    loose = json.loads(_run(path, "--json", "--threshold", "0.05")[1])
    strict = json.loads(_run(path, "--json", "--threshold", "1.0")[1])
    assert len(loose["detections"]) > len(strict["detections"])
    assert loose["threshold"] == 0.05
    _assert_clean_error(_run(path, "--threshold", "3"), "--threshold must be in (0, 1]")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "empty file"),
        ("timestamp,value\n", "no data rows"),
        ("time,val\n2024-01-01,1\n", "expected columns timestamp,value; found: time, val"),
        ("timestamp,value\n2024-01-01 00:00,1\n2024-01-01 00:05,abc\n", "row 3: value 'abc'"),
        ("timestamp,value\nyesterday,1\n2024-01-01 00:05,2\n", "row 2: timestamp 'yesterday'"),
        ("timestamp,value\n2024-01-01 00:00,1\n2024-01-01 00:05,inf\n", "not finite"),
        (
            "timestamp,value\n2024-01-01 00:00,1\n2024-01-01 00:05,2\n2024-01-01 00:00,3\n",
            "duplicated timestamp 2024-01-01 00:00:00 (rows 2, 4)",
        ),
        ("timestamp,value\n2024-01-01 00:00,1\n", "not enough data: 1 point(s)"),
        ("timestamp,value\n2024-01-01 00:00,1\n2024-01-01 00:05,nan\n", "not enough data"),
        ('timestamp,value\n"2024-01-01,1\n', "not"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path: Path, content: str, fragment: str) -> None:
    _assert_clean_error(_run(str(_write(tmp_path, content))), fragment)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _assert_clean_error(_run(str(tmp_path / "nope.csv")), "no such file")
    _assert_clean_error(_run(str(tmp_path)), "is a directory")


def test_unsorted_rows_are_sorted_with_a_warning(tmp_path: Path) -> None:
    lines = _series(400).splitlines()
    shuffled = [lines[0], *reversed(lines[1:])]
    code, out, _err = _run(str(_write(tmp_path, "\n".join(shuffled) + "\n")), "--json")
    assert code == 0
    doc = json.loads(out)
    stamps = [p["timestamp"] for p in doc["points"]]
    assert stamps == sorted(stamps)
    assert any("sorted" in w for w in doc["warnings"])
    # Same scores as the sorted file: the detector saw the points in time order.
    sorted_doc = json.loads(_run(str(_write(tmp_path, _series(400), "b.csv")), "--json")[1])
    assert [p["score"] for p in doc["points"]] == [p["score"] for p in sorted_doc["points"]]


def test_nan_values_are_dropped_with_a_warning(tmp_path: Path) -> None:
    lines = _series(400).splitlines()
    lines[10] = lines[10].split(",")[0] + ","
    lines[20] = lines[20].split(",")[0] + ",NaN"
    code, out, err = _run(str(_write(tmp_path, "\n".join(lines) + "\n")))
    assert code == 0
    assert "dropped 2 rows with an empty or NaN value (rows 11, 21)" in err
    assert "398 points" in out


def test_short_and_constant_series_say_so(tmp_path: Path) -> None:
    code, out, err = _run(str(_write(tmp_path, _series(20, spike_at=None))))
    assert code == 0
    assert "not enough data to detect: 20 points" in err
    flat = "timestamp,value\n" + "".join(
        f"2024-01-01 {h:02d}:{m:02d}:00,5\n" for h in range(20) for m in range(0, 60, 5)
    )
    code, out, err = _run(str(_write(tmp_path, flat, "flat.csv")))
    assert code == 0
    assert "constant series: nothing to detect" in err
    assert "0 detection(s)" in out
