"""Junction's home does not depend on the current directory; ``junction config`` shows each
value in effect and where it came from (default, environment, env file, derived)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from junction.cli.config import effective_settings
from junction.settings import Settings, default_home, env_file_path

ROOT = Path(__file__).resolve().parents[1]


def _clean_env(user_home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without Junction/Prefect/XDG settings, HOME = user_home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUNCTION_", "PREFECT_", "XDG_"))
        and k not in {"RESPONSE_TIME_WARNING_MS", "AI_WORKFLOW_ENABLED"}
    }
    env.update(HOME=str(user_home), COLUMNS="200", **extra)
    return env


def _junction(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "junction", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _config(cwd: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    done = _junction(["config", "--json"], cwd, env)
    assert done.returncode == 0, done.stderr
    return {row["variable"]: row for row in json.loads(done.stdout)}


def test_default_home_is_per_user_not_per_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JUNCTION_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".local" / "state" / "junction"
    assert default_home() == expected
    monkeypatch.chdir(tmp_path / "..")
    assert Settings().home == expected
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert Settings().home == tmp_path / "state" / "junction"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")  # the XDG spec ignores these
    assert Settings().home == expected
    monkeypatch.setenv("JUNCTION_HOME", "rel")  # made absolute once, where it was read
    assert Settings().home == tmp_path.parent / "rel"


def test_env_file_is_read_below_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("JUNCTION_ENV_FILE", raising=False)
    monkeypatch.delenv("JUNCTION_SWEEP_CONCURRENCY", raising=False)
    monkeypatch.delenv("JUNCTION_OKTA_BASE_URL", raising=False)
    path = tmp_path / "junction" / "junction.env"
    assert env_file_path() == path
    path.parent.mkdir()
    path.write_text(
        "JUNCTION_SWEEP_CONCURRENCY=7\nRESPONSE_TIME_WARNING_MS=1200\n"
        "JUNCTION_OKTA_BASE_URL=https://acme.okta.example\n"
    )
    settings = Settings()
    assert settings.sweep_concurrency == 7 and settings.response_time_warning_ms == 1200
    assert settings.integration("okta").base_url == "https://acme.okta.example"
    monkeypatch.setenv("JUNCTION_SWEEP_CONCURRENCY", "9")
    monkeypatch.setenv("JUNCTION_OKTA_BASE_URL", "https://env.okta.example")
    settings = Settings()
    assert settings.sweep_concurrency == 9
    assert settings.integration("okta").base_url == "https://env.okta.example"
    rows = {r.variable: r for r in effective_settings(settings)}
    assert rows["JUNCTION_SWEEP_CONCURRENCY"].source == "environment (JUNCTION_SWEEP_CONCURRENCY)"
    assert rows["RESPONSE_TIME_WARNING_MS"].source.startswith(f"env file ({path}")
    assert rows["JUNCTION_HTTP_TIMEOUT_SECONDS"].source == "default"


def test_state_written_in_one_directory_is_read_from_another(tmp_path: Path) -> None:
    """The reported bug: `alerts` from another directory silently saw no state."""
    user = tmp_path / "user"
    (here := tmp_path / "project").mkdir(parents=True)
    (elsewhere := tmp_path / "elsewhere").mkdir()
    env = _clean_env(user)
    made = _junction(
        ["alerts", "silence", "--service", "okta", "--for", "1h", "-c", "x"], here, env
    )
    assert made.returncode == 0, made.stderr
    listed = _junction(["alerts", "silences", "--json"], elsewhere, env)
    assert listed.returncode == 0, listed.stderr
    assert "okta" in listed.stdout
    home = user / ".local" / "state" / "junction"
    assert (home / "alerts.db").is_file()
    assert not (here / ".junction").exists() and not (elsewhere / ".junction").exists()


def test_config_shows_values_and_their_sources(tmp_path: Path) -> None:
    user = tmp_path / "user"
    env_file = tmp_path / "j.env"
    env_file.write_text("JUNCTION_SWEEP_CONCURRENCY=11\n")
    env = _clean_env(
        user,
        JUNCTION_ENV_FILE=str(env_file),
        JUNCTION_API_TOKEN="s3cret-token-value",
        RESPONSE_TIME_WARNING_MS="1500",
    )
    rows = _config(tmp_path, env)
    home = user / ".local" / "state" / "junction"
    assert rows["JUNCTION_HOME"] == {
        "variable": "JUNCTION_HOME",
        "value": str(home),
        "source": "default",
        "description": rows["JUNCTION_HOME"]["description"],
    }
    assert rows["JUNCTION_STORE_DIR"]["value"] == str(home / "metrics")
    assert rows["JUNCTION_STORE_DIR"]["source"] == "derived (JUNCTION_HOME)"
    assert rows["JUNCTION_ALERTS_DB"]["value"] == str(home / "alerts.db")
    assert rows["PREFECT_HOME"]["value"] == str(home / "prefect")
    assert rows["RESPONSE_TIME_WARNING_MS"]["value"] == "1500.0"
    assert rows["RESPONSE_TIME_WARNING_MS"]["source"] == "environment (RESPONSE_TIME_WARNING_MS)"
    assert rows["JUNCTION_SWEEP_CONCURRENCY"]["value"] == "11"
    assert rows["JUNCTION_SWEEP_CONCURRENCY"]["source"].startswith(f"env file ({env_file}")
    assert rows["JUNCTION_API_TOKEN"]["value"] == "********"
    assert rows["JUNCTION_ENV_FILE"]["value"] == str(env_file)

    env["JUNCTION_HOME"] = str(tmp_path / "explicit")
    rows = _config(tmp_path, env)
    assert rows["JUNCTION_HOME"]["value"] == str(tmp_path / "explicit")
    assert rows["JUNCTION_HOME"]["source"] == "environment (JUNCTION_HOME)"

    env["JUNCTION_SANDBOX_URL"] = "http://127.0.0.1:1/[/bold]x"  # text, not rich markup
    table = _junction(["config"], tmp_path, env)
    assert table.returncode == 0, table.stderr
    assert "http://127.0.0.1:1/[/bold]x" in table.stdout
    assert "s3cret-token-value" not in table.stdout + table.stderr
    assert "environment (JUNCTION_HOME)" in table.stdout
    described = _junction(["config", "--describe"], tmp_path, env)
    assert "~/.local/state/junction" in described.stdout
