"""`junction models list|train|promote|rollback` against a real synthetic store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.synthetic_runs import generate_spec_history
from junction.cli import app
from junction.settings import get_settings

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models-cli-store")
    generate_spec_history(
        root, days=7, seed=5, incidents_per_30_days=18, start=datetime(2026, 9, 1, tzinfo=UTC)
    )
    return root


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Path) -> Iterator[Path]:
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JUNCTION_STORE_DIR", str(store))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def _models(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["models", *args])
    return res.exit_code, res.stdout, res.stderr


def _one_line_error(result: tuple[int, str, str], fragment: str) -> None:
    code, _out, err = result
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], err


def test_models_lifecycle(home: Path) -> None:
    code, out, _ = _models("list")
    assert code == 0 and "no model versions" in out and "naive" in out

    code, out, _ = _models("train")
    assert code == 0 and out.startswith("v1: Brier") and "promoted" in out, out
    code, out, _ = _models("train", "--no-promote", "--json")
    result = json.loads(out)
    assert code == 0 and result["version"] == "v2" and not result["promoted"]
    assert result["candidate"]["brier"] < result["naive"]["brier"]
    assert result["live_version"] == "v1"

    code, out, _ = _models("list")
    assert code == 0 and "v1" in out and "v2" in out and "live: v1" in out
    listed = json.loads(_models("list", "--json")[1])
    assert listed["live"] == "v1" and [v["version"] for v in listed["versions"]] == ["v1", "v2"]
    assert all(v["sklearn_version"] and v["training_window"] for v in listed["versions"])
    assert (home / "models" / "success" / "v2.pickle").is_file()

    assert _models("promote", "v2")[:2] == (0, "v2 is live\n")
    _one_line_error(_models("promote", "v9"), "unknown model version 'v9'")
    assert _models("rollback")[:2] == (0, "v1 is live\n")
    assert _models("rollback")[:2] == (0, "no model is live: naive estimate\n")
    _one_line_error(_models("rollback"), "no live model")


def test_train_with_too_little_history_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JUNCTION_STORE_DIR", str(tmp_path / "empty-store"))
    get_settings.cache_clear()
    try:
        code, out, _ = _models("train")
    finally:
        get_settings.cache_clear()
    assert code == 0 and "too little history: 0 recorded runs" in out and "naive" in out
