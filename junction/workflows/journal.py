"""The side-effect journal: what a rerun must not do again when the vendor cannot tell.

Most side-effecting actions are safe to repeat: they take an idempotency key the vendor
deduplicates on (``ActionSpec.key_field``: Jira, ServiceNow, PagerDuty, email) or look
before they create (Okta, GitLab, memberships, Slack and Teams messages, Jira comments).
A few can do neither: a Webex message can be read back only where the bot can read the
room. For those, the runner records the step's output here under the step's idempotency
key once the vendor answered, and a rerun of the same workflow with the same parameters
(the same key) reuses it instead of posting again.

One SQLite file per Junction home (``<home>/workflow_journal.db``, mode 0600: it holds
step outputs), shared by processes (WAL); entries older than :data:`KEEP_DAYS` are
dropped when it is opened. What it cannot cover: a process killed after the vendor
committed and before the entry was written (the window of one response).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["KEEP_DAYS", "JournalEntry", "SideEffectJournal", "journal_path"]

KEEP_DAYS = 30
"""How long an entry is kept (a rerun after that sends again)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    uses TEXT NOT NULL,
    output TEXT NOT NULL,
    at REAL NOT NULL
)
"""


def journal_path(home: str | Path) -> Path:
    """Where the journal of a Junction home lives."""
    return Path(home).expanduser() / "workflow_journal.db"


@dataclass(frozen=True)
class JournalEntry:
    """A side effect done earlier.

    Attributes:
        provider: The integration that did it.
        uses: ``provider.action``.
        output: The action's output (JSON data).
    """

    provider: str
    uses: str
    output: Any


class SideEffectJournal:
    """Outputs of unkeyed side effects, by ``workflow/step/idempotency key``.

    Args:
        path: The SQLite file (created with its directory).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        self.path.chmod(0o600)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed entry survives the process dying (kill -9), and a
        # write costs no fsync on the step's path (only an OS crash may lose the last one).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.execute("DELETE FROM effects WHERE at < ?", (time.time() - KEEP_DAYS * 86400,))

    def get(self, key: str) -> JournalEntry | None:
        """The side effect recorded under ``key``, if any."""
        row = self._db.execute(
            "SELECT provider, uses, output FROM effects WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return JournalEntry(row[0], row[1], json.loads(row[2]))

    def put(self, key: str, provider: str, uses: str, output: Any) -> None:
        """Record that the side effect ``key`` was done (the first record wins)."""
        self._db.execute(
            "INSERT OR IGNORE INTO effects (key, provider, uses, output, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (key, provider, uses, json.dumps(output, default=str), time.time()),
        )

    def close(self) -> None:
        """Close the database."""
        self._db.close()
