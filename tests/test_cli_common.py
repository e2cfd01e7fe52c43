"""What every command shares: help text, piped tables, one-line errors, private state."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from junction.cli import app
from junction.cli.common import print_table, table
from tests.helpers import run_junction as run


def test_piped_table_never_breaks_a_word(capsys: pytest.CaptureFixture[str]) -> None:
    t = table("Service health", "service", "status", "why", right=("status",))
    t.add_row("microsoft_teams_incoming_webhook", "healthy", "a rather long reason " * 6)
    print_table(t)  # capsys: stdout is not a terminal, as in `| cat` or a CI log
    out = capsys.readouterr().out
    assert "microsoft_teams_incoming_webhook" in out
    assert ("a rather long reason " * 6).strip() in out


def test_help_has_no_type_placeholders_after_flags() -> None:
    for args in (["--help"], ["alerts", "silence", "--help"], ["monitor", "--help"]):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, args


def test_invalid_setting_is_one_line_without_traceback(tmp_path: Path) -> None:
    out = run(["alerts", "list"], {"JUNCTION_HOME": str(tmp_path), "RESPONSE_TIME_WARNING_MS": "x"})
    assert out.returncode == 2
    assert out.stderr.startswith("error: invalid configuration: RESPONSE_TIME_WARNING_MS: ")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_state_written_by_a_command_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    out = run(
        ["integrations", "check", "okta", "--no-record"],
        {"JUNCTION_HOME": str(home), "JUNCTION_SANDBOX_URL": "http://127.0.0.1:9"},
    )
    assert out.returncode == 1, out.stderr  # nothing answers there; the point is the modes
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    prefect_home = home / "prefect"
    assert stat.S_IMODE(prefect_home.stat().st_mode) == 0o700
