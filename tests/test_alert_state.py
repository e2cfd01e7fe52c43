"""The alert database file: private permissions, damage detected at open, the reset recovery
(issue 9 #14 and #17, alert side)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from junction.alerting import state
from junction.alerting.engine import AlertEngine
from junction.alerting.rules import default_config
from junction.settings import Settings, get_settings
from tests.alerting_helpers import alerts_cli, at, failing, use_home

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _filled(path: Path) -> Path:
    """A database with enough rows to span many pages, checkpointed into the main file."""
    conn = state.connect(path)
    with state.transaction(conn):
        for i in range(1500):
            state.meta_set(conn, f"filler:{i}", "x" * 200)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def _damage_a_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = 4096 * 5  # a b-tree page well inside the file, not the header
    data[start : start + 256] = bytes((i * 37 + 11) % 256 for i in range(256))
    path.write_bytes(bytes(data))


DAMAGE = {
    "not a database": lambda p: p.write_bytes(b"this is not sqlite\n" * 200),
    "truncated": lambda p: p.write_bytes(_filled(p).read_bytes()[: 4096 * 20]),
    "damaged page": lambda p: _damage_a_page(_filled(p)),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_database_is_one_typed_error_naming_file_and_fix(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "alerts.db"
    DAMAGE[kind](path)
    with pytest.raises(state.AlertDatabaseError) as info:
        state.connect(path)
    message = str(info.value)
    assert info.value.corrupt and info.value.path == path
    assert message.startswith(f"alert database {path} is corrupt (")
    assert "`junction alerts reset`" in message and "\n" not in message
    # the engine the monitor builds at start raises the same, not a sqlite traceback
    with pytest.raises(state.AlertDatabaseError, match="is corrupt"):
        AlertEngine(path, default_config(Settings()))


def test_a_database_damaged_after_it_passed_its_check_is_still_detected(tmp_path: Path) -> None:
    """The check is remembered per file identity: a write in place (same size, same inode)
    moves the modification time, and the next open checks again."""
    path = _filled(tmp_path / "alerts.db")
    old = path.stat().st_mtime_ns - 3600 * 10**9  # older than the racy margin: remembered
    os.utime(path, ns=(old, old))
    for _ in range(2):
        state.connect(path).close()
    assert state.file_identity(path) == state._CHECKED[str(path.absolute())]
    size = path.stat().st_size
    _damage_a_page(path)
    assert path.stat().st_size == size
    with pytest.raises(state.AlertDatabaseError, match="is corrupt"):
        state.connect(path)
    assert str(path.absolute()) not in state._CHECKED


def test_an_unopenable_database_is_not_called_corrupt(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(state.AlertDatabaseError) as info:
        state.connect(blocker / "alerts.db")  # its "directory" is a file
    assert not info.value.corrupt
    assert str(info.value).startswith(f"cannot open the alert database {blocker / 'alerts.db'}")


def test_the_database_and_its_new_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "home" / "alerts.db"
    eng = AlertEngine(path, default_config(Settings()))
    eng.evaluate(failing(["okta"], at(0)), now=at(0))  # writes: the WAL files appear
    try:
        assert _mode(path.parent) == 0o700
        assert _mode(path) == 0o600
        for companion in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert companion.exists() and _mode(companion) == 0o600, companion
    finally:
        eng.close()


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    state.connect(path).close()
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    state.connect(path).close()
    assert _mode(path) == 0o600
    assert _mode(tmp_path) == 0o755  # an existing directory may be shared: left alone


def test_reset_moves_a_damaged_database_aside(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    DAMAGE["damaged page"](path)
    damaged = path.read_bytes()
    moved = state.reset_database(path, NOW)
    assert moved == tmp_path / "alerts.db.corrupt-20261207T120000Z"
    assert moved.read_bytes() == damaged  # kept for inspection
    state.connect(path).close()  # a fresh, healthy database
    with pytest.raises(ValueError, match="is healthy: nothing to reset"):
        state.reset_database(path, NOW)
    assert state.reset_database(path, NOW, force=True) is not None
    assert state.reset_database(tmp_path / "none.db", NOW) is None


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield use_home(tmp_path, monkeypatch)
    get_settings.cache_clear()


COMMANDS = [
    ["list"],
    ["list", "--json"],
    ["silences"],
    ["outbox", "--json"],
    ["ack", "1"],
    ["silence", "--service", "okta", "--for", "1h"],
    ["unsilence", "s1"],
    ["settle", "k", "--delivered"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_every_command_on_a_corrupt_database_is_one_line(home: Path, args: list[str]) -> None:
    (home / "alerts.db").write_bytes(b"not sqlite at all " * 500)
    out = alerts_cli(*args)
    assert out.exit_code == 2, out.output
    assert out.output == (
        f"error: alert database {home / 'alerts.db'} is corrupt (file is not a database); run "
        "`junction alerts reset` to move it aside and start with a fresh one\n"
    )


def test_alerts_reset_recovers(home: Path) -> None:
    (home / "alerts.db").write_bytes(b"garbage" * 1000)
    out = alerts_cli("reset")
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"moved {home / 'alerts.db'} to {home / 'alerts.db.corrupt-'}")
    assert alerts_cli("list").output.strip() == "no active alerts"
    out = alerts_cli("reset")
    assert out.exit_code == 2 and "is healthy: nothing to reset (--force" in out.output
    assert alerts_cli("reset", "--force").exit_code == 0
