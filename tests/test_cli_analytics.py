"""`junction analytics detect`: output, real-world files (NAB's DST duplicates), streaming
in chunks, and every kind of bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.series_csv import read_series_csv
from bench.nab import nab_dir
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


def test_summary_by_default_lists_the_detection_not_every_point(tmp_path: Path) -> None:
    code, out, _ = _run(str(_write(tmp_path, _series())))
    assert code == 0
    assert not [line for line in out.splitlines() if line.startswith("2024-")]
    assert "400 points, 2024-01-01T00:00:00 .. 2024-01-02T09:15:00" in out
    assert "2024-01-02T01:00:00" in out.split("detection(s)")[1]
    assert "highest score" in out


def test_points_flag_lists_every_point_and_the_detection(tmp_path: Path) -> None:
    code, out, _ = _run(str(_write(tmp_path, _series())), "--points")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("2024-")]
    assert len(rows) == 400
    assert "ANOMALY" in rows[300]
    assert "2024-01-02T01:00:00" in out.split("detection(s)")[1]


def test_json_output(tmp_path: Path) -> None:
    path = str(_write(tmp_path, _series()))
    code, out, _ = _run(path, "--json")
    assert code == 0
    doc = json.loads(out)
    assert "points" not in doc and doc["count"] == 400
    assert "2024-01-02T01:00:00" in [d["timestamp"] for d in doc["detections"]]
    assert doc["warnings"] == [] and doc["first"] == "2024-01-01T00:00:00"
    code, out, _ = _run(path, "--json", "--points")
    full = json.loads(out)
    assert len(full["points"]) == 400
    assert set(full["points"][0]) == {"timestamp", "value", "score", "is_anomaly"}
    assert full["points"][300]["is_anomaly"] is True
    assert full["detections"] == doc["detections"]


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
    code, out, _err = _run(str(_write(tmp_path, "\n".join(shuffled) + "\n")), "--json", "--points")
    assert code == 0
    doc = json.loads(out)
    stamps = [p["timestamp"] for p in doc["points"]]
    assert stamps == sorted(stamps)
    assert any("sorted" in w for w in doc["warnings"])
    # Same scores as the sorted file: the detector saw the points in time order.
    sorted_doc = json.loads(
        _run(str(_write(tmp_path, _series(400), "b.csv")), "--json", "--points")[1]
    )
    assert [p["score"] for p in doc["points"]] == [p["score"] for p in sorted_doc["points"]]


def _with_duplicates(tmp_path: Path) -> Path:
    """400 points, then the 03:00 hour of the second day repeated (a DST change)."""
    lines = _series(400).splitlines()
    repeated = [line.replace(",", ",1") for line in lines[1:] if "2024-01-02 03:" in line]
    at = next(i for i, line in enumerate(lines) if "2024-01-02 04:00" in line)
    return _write(tmp_path, "\n".join([*lines[:at], *repeated, *lines[at:]]) + "\n", "dst.csv")


def test_duplicated_timestamps_warn_and_keep_every_row_in_file_order(tmp_path: Path) -> None:
    path = str(_with_duplicates(tmp_path))
    code, out, err = _run(path, "--json", "--points")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["count"] == 412
    warning = next(w for w in doc["warnings"] if "more than once" in w)
    assert "12 timestamp(s) appear more than once, 12 extra row(s)" in warning
    assert "first: 2024-01-02 03:00:00 at rows 326, 338" in warning
    stamps = [p["timestamp"] for p in doc["points"]]
    assert stamps == sorted(stamps)  # the repeats sit next to their originals
    first = [p["value"] for p in doc["points"] if p["timestamp"] == "2024-01-02T03:00:00"]
    assert len(first) == 2 and first[0] < 1000 < first[1]  # file order: original, repeat
    assert "warning:" in err and "more than once" in err


@pytest.mark.parametrize("how", ["first", "last", "mean"])
def test_duplicates_option_keeps_one_value_per_timestamp(tmp_path: Path, how: str) -> None:
    path = _with_duplicates(tmp_path)
    code, out, _ = _run(str(path), "--json", "--points", "--duplicates", how)
    assert code == 0
    doc = json.loads(out)
    assert doc["count"] == 400
    values = {p["timestamp"]: p["value"] for p in doc["points"]}
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    at_three = [float(v) for t, v in rows if t == "2024-01-02 03:00:00"]
    expected = {"first": at_three[0], "last": at_three[-1], "mean": sum(at_three) / 2}[how]
    assert values["2024-01-02T03:00:00"] == pytest.approx(expected)
    assert any(f"kept the {how}" in w for w in doc["warnings"])


def test_bad_duplicates_option_is_refused(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["analytics", "detect", str(_write(tmp_path, _series())), "--duplicates", "median"]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output


NAB_FILES = [
    "realKnownCause/ec2_request_latency_system_failure.csv",
    "realKnownCause/machine_temperature_system_failure.csv",
]


@pytest.mark.parametrize("name", NAB_FILES)
def test_nab_files_with_repeated_timestamps_are_scored(name: str) -> None:
    path = nab_dir() / "data" / name
    if not path.exists():
        pytest.skip(f"NAB corpus not found ({path})")
    code, out, err = _run(str(path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert any("more than once" in w for w in doc["warnings"])
    assert doc["count"] == sum(1 for _ in path.open()) - 1  # every row kept
    assert doc["detections"]


def test_reading_in_chunks_gives_the_same_series_and_row_numbers(tmp_path: Path) -> None:
    lines = _series(400).splitlines()
    lines[40] = lines[40].split(",")[0] + ","  # a NaN in the third chunk of 16 rows
    lines[1], lines[2] = lines[2], lines[1]  # out of order
    path = _write(tmp_path, "\n".join(lines) + "\n")
    whole = read_series_csv(path)
    chunked = read_series_csv(path, chunk_rows=16)
    assert (whole.timestamps == chunked.timestamps).all()
    assert (whole.values == chunked.values).all()
    assert whole.warnings == chunked.warnings
    assert "rows 41" in whole.warnings[0]
    lines[300] = lines[300].split(",")[0] + ",abc"
    _assert_clean_error(
        _run(str(_write(tmp_path, "\n".join(lines) + "\n", "bad.csv"))), "row 301: value 'abc'"
    )


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
