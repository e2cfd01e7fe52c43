"""Who may compact an object store: a lease object written with S3 conditional requests,
or a PostgreSQL advisory lock when Junction's state lives in PostgreSQL.

Both are the storage's own primitives, not a protocol of ours on top of plain writes:

* :class:`S3Lease` creates ``_leases/compact.json`` with ``If-None-Match: *`` (exactly one
  creator wins), renews and releases it with ``If-Match: <its ETag>`` (fails once anyone
  else replaced it), and takes over an expired one with ``If-Match`` on the ETag it read
  (of two compactors taking over, one wins). Expiry is judged on the taker's clock against
  the holder's, so clocks must agree to within the lease's length (minutes).
* :class:`PgAdvisoryLock` holds ``pg_try_advisory_lock`` on its own session; the server
  drops it when that session ends, so a dead compactor never blocks the next one.

``check()`` is the fence before a compactor publishes: it renews the lease (or pings the
session), and raises :class:`LeaseLost` if another compactor may have taken over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg
    import s3fs

log = logging.getLogger("junction.store")

LEASE_KEY = "_leases/compact.json"
"""The compaction lease, under the store's prefix."""


class LeaseLost(RuntimeError):
    """Another compactor may hold the lock now: stop before publishing anything."""


class CompactionLock(Protocol):
    """One compactor at a time over one object store."""

    def acquire(self) -> bool:
        """Take the lock without waiting; False if someone else holds it."""
        ...

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lock is still ours (and extend it)."""
        ...

    def release(self) -> None:
        """Give the lock up (best effort: an expired lease needs no release)."""
        ...


def split_path(path: str) -> tuple[str, str]:
    """``bucket/key`` (an fsspec path) -> ``(bucket, key)``."""
    bucket, _, key = path.partition("/")
    return bucket, key


class S3Lease:
    """The compaction lease as an object written with S3 conditional requests.

    Args:
        fs: The store's filesystem.
        path: ``bucket/prefix/_leases/compact.json``.
        seconds: How long a lease lasts without renewal.
    """

    def __init__(self, fs: s3fs.S3FileSystem, path: str, seconds: float) -> None:
        self.fs = fs
        self.path = path
        self.seconds = seconds
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.etag: str | None = None

    def _body(self) -> bytes:
        expires = datetime.now(UTC) + timedelta(seconds=self.seconds)
        return json.dumps({"owner": self.owner, "expires": expires.isoformat()}).encode()

    def _put(self, **condition: str) -> str:
        bucket, key = split_path(self.path)
        out: dict[str, Any] = self.fs.call_s3(
            "put_object", Bucket=bucket, Key=key, Body=self._body(), **condition
        )
        return str(out["ETag"])

    def acquire(self) -> bool:
        """Create the lease, or take over an expired one; False if it is held."""
        try:
            self.etag = self._put(IfNoneMatch="*")
            return True
        except FileExistsError:
            pass
        try:
            # The file's reads carry If-Match on the ETag it stat-ed: body and ETag agree.
            self.fs.invalidate_cache(self.path)  # stat the lease as it is now
            with self.fs.open(self.path, "rb") as fh:
                body = fh.read()
                etag = str(fh.details["ETag"])
        except FileNotFoundError:
            return False  # released meanwhile: the next run takes it
        try:
            holder = json.loads(body)
            expires = datetime.fromisoformat(holder["expires"])
        except (ValueError, KeyError, TypeError):
            holder, expires = {}, datetime.min.replace(tzinfo=UTC)  # unreadable: expired
        if expires > datetime.now(UTC):
            return False
        try:
            self.etag = self._put(IfMatch=etag)
        except OSError:  # another compactor took it over first (412)
            return False
        log.warning("compaction lease of %s expired; taken over", holder.get("owner", "?"))
        return True

    def check(self) -> None:
        """Renew the lease; raise :class:`LeaseLost` if it is no longer ours."""
        if self.etag is None:
            raise LeaseLost("the compaction lease is not held")
        try:
            self.etag = self._put(IfMatch=self.etag)
        except FileNotFoundError as exc:
            raise LeaseLost("the compaction lease was removed") from exc
        except OSError as exc:
            raise LeaseLost("another compactor took the compaction lease over") from exc

    def release(self) -> None:
        """Delete the lease if it is still ours."""
        if self.etag is None:
            return
        bucket, key = split_path(self.path)
        try:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=self.etag)
        except OSError as exc:  # taken over (412) or unreachable: it expires by itself
            log.warning("compaction lease not released: %s", type(exc).__name__)
        self.etag = None


class PgAdvisoryLock:
    """The compaction lock as a PostgreSQL advisory lock on its own session.

    Args:
        url: ``postgresql://`` URL (its password never appears in logs or errors).
        name: What is locked (the store's URL); hashed to the lock key.
    """

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.key = zlib.crc32(f"junction.store.compact:{name}".encode()) - 2**31
        self.conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> bool:
        """Open a session and try the lock; False if another session holds it."""
        import psycopg  # deferred: only stores that compact with PostgreSQL need it

        try:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            self._close()
            # psycopg's text may quote the connection string: name only the error class.
            raise RuntimeError(
                f"compaction lock: PostgreSQL (JUNCTION_STATE_URL) failed: {type(exc).__name__}"
            ) from None
        if not (row and row[0]):
            self._close()
            return False
        return True

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the session (and with it the lock) is gone."""
        import psycopg  # deferred: see acquire

        try:
            if self.conn is None:
                raise LeaseLost("the compaction lock is not held")
            self.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LeaseLost("the PostgreSQL session holding the compaction lock ended") from exc

    def release(self) -> None:
        """Unlock and close the session."""
        if self.conn is not None:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except Exception as exc:  # closing the session releases it anyway
                log.warning("compaction lock not released cleanly: %s", type(exc).__name__)
        self._close()

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
