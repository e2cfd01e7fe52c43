"""The durable event spool (:mod:`junction.event_spool`) against a REAL `prefect server start`.

Events emitted while the server is away (a closed port) wait in the spool; once a server
listens on that port they are replayed, each taken once (counted through the server's
``/events/filter``), and a second replay sends nothing. A corrupt spool file costs one
warning and a fresh spool, never an exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.local import PrefectServer, free_port
from junction.events import ALERT_FIRED, emit, integration_resource, replay, spool_path

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]

SERVICE = "spooltest"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Junction home of its own (its own spool)."""
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _emit(api_url: str, n: int) -> str:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        event = emit(ALERT_FIRED, integration_resource(SERVICE), payload={"n": n})
    assert event is not None
    return str(event.id)


def _counts() -> dict[str, int]:
    from junction.event_spool import EventSpool

    spool = EventSpool(spool_path())
    try:
        return spool.counts()
    finally:
        spool.close()


def _on_server(api: httpx.Client) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "event": {"name": [ALERT_FIRED]},
            "resource": {"id": [f"junction.integration.{SERVICE}"]},
        },
        "limit": 50,
    }
    response = api.post("/events/filter", json=body)
    response.raise_for_status()
    return list(response.json()["events"])


def _until_ids(api: httpx.Client, want: set[str], timeout: float = 60.0) -> list[dict[str, Any]]:
    """The server's events once all of ``want`` are stored (a deadline loop)."""
    deadline = time.monotonic() + timeout
    while True:
        events = _on_server(api)
        if want <= {e["id"] for e in events}:
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"events {want} not on the server: {events}")
        time.sleep(0.5)


def test_events_emitted_while_the_server_is_away_are_replayed_once(home: Path) -> None:
    port = free_port("127.0.0.1")
    api_url = f"http://127.0.0.1:{port}/api"
    ids = [_emit(api_url, n) for n in range(3)]  # nobody listens on the port
    assert replay(wait=True) == 0
    assert _counts() == {"pending": 3, "sent": 0}

    with PrefectServer(port=port, scheduler=False, ui=False, startup_timeout=240) as server:
        replay(wait=True)  # the sender's own retry may have sent them first: either way
        assert _counts() == {"pending": 0, "sent": 3}
        assert replay(wait=True) == 0  # a second replay sends nothing
        with httpx.Client(base_url=server.api_url, timeout=30.0) as api:
            _until_ids(api, set(ids))
            # A later event stored is the barrier: a duplicate of the first three would be
            # stored by then too.
            marker = _emit(api_url, 99)
            events = _until_ids(api, {marker})
    stored = [e["id"] for e in events]
    assert sorted(stored) == sorted([*ids, marker])  # each once
    by_id = {e["id"]: e for e in events}
    assert [by_id[i]["payload"]["n"] for i in ids] == [0, 1, 2]
    assert _counts() == {"pending": 0, "sent": 4}


def test_a_corrupt_spool_is_replaced_with_one_warning(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = spool_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a database " * 300)
    api_url = f"http://127.0.0.1:{free_port('127.0.0.1')}/api"
    with caplog.at_level(logging.WARNING, logger="junction"):
        _emit(api_url, 1)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "unreadable" in warnings[0].getMessage(), warnings
    assert path.with_name(path.name + ".corrupt").read_bytes().startswith(b"not a database")
    assert _counts() == {"pending": 1, "sent": 0}


def test_the_spool_drops_its_oldest_unsent_events_beyond_its_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from junction.event_spool import EventSpool

    spool = EventSpool(tmp_path / "events.sqlite", max_events=2)
    try:
        for n in range(4):
            spool.append(f"id-{n}", ALERT_FIRED, "http://127.0.0.1:9/api", "{}")
        spool.append("id-3", ALERT_FIRED, "http://127.0.0.1:9/api", "{}")  # same id: once
        with caplog.at_level(logging.WARNING, logger="junction"):
            assert spool.trim() == 2
        assert "dropped 2 unsent" in caplog.text
        assert [e.id for e in spool.pending()] == ["id-2", "id-3"]
    finally:
        spool.close()
