"""End to end: engine -> outbox -> the real webhook channel -> a local HTTP receiver that
is down for a while. One notification per incident, delivered once, resolved once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from junction.alerting.config import parse_config
from junction.alerting.engine import AlertEngine
from junction.settings import Settings
from tests.alerting_helpers import at, failing, healthy


class Receiver:
    """A webhook receiver; answers 503 while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False
        self.posts: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.posts.append((self.headers.get("Idempotency-Key", ""), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def test_storm_reaches_the_webhook_once_and_resolves_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    apps = [f"app{i}" for i in range(10)]
    cfg = parse_config(
        f"""
channels:
  hook: {{type: webhook, url: "{receiver.url}", path: /hook}}
routes: {{warning: [hook], critical: [hook]}}
dependencies:
"""
        + "".join(f"  {a}: [db]\n" for a in apps),
        settings=Settings(),
        known_services={"db", *apps},
    )
    eng = AlertEngine(tmp_path / "alerts.db", cfg)
    channels = {"hook": eng.config.build_channels(Settings())["hook"]}
    try:
        for t in range(0, 30, 5):
            eng.evaluate(failing(["db", *apps], at(t), 0.5), now=at(t))
            await eng.deliver(channels, now=at(t))
        assert [p[1]["kind"] for p in receiver.posts] == ["firing"]
        key, body = receiver.posts[0]
        assert key == body["key"] and len(body["fingerprints"]) == 22

        receiver.down = True  # the receiver is down when the incident ends
        eng.evaluate(healthy(["db", *apps], at(30)), now=at(30))
        report = await eng.deliver(channels, now=at(30))
        assert len(report.retrying) == 1 and receiver.posts[-1][1]["kind"] == "firing"
        receiver.down = False
        for minute in range(1, 10):
            await eng.deliver(channels, now=at(30) + timedelta(minutes=minute))
        assert [p[1]["kind"] for p in receiver.posts] == ["firing", "resolved"]
        assert receiver.posts[1][1]["fingerprints"] == body["fingerprints"]
    finally:
        for channel in channels.values():
            await channel.aclose()
        eng.close()


async def test_real_alertmanager_shows_the_incident_then_nothing(
    tmp_path: Path, alertmanager: Any
) -> None:
    """warning -> critical -> resolved through the engine, the outbox and the Alertmanager
    channel: Alertmanager's API shows the incident while it lasts and nothing after."""
    from integrations.alertmanager import AlertmanagerClient, ListAlertsParams
    from tests.alerting_helpers import snap

    cfg = parse_config(
        f"""
channels:
  am: {{type: alertmanager, base_url: "{alertmanager.api_url}"}}
routes: {{warning: [am], critical: [am]}}
""",
        settings=Settings(),
        known_services={"gitlab"},
    )
    eng = AlertEngine(tmp_path / "alerts.db", cfg)
    channels = eng.config.build_channels(Settings())

    async def active(group: str) -> list[Any]:
        async with AlertmanagerClient(base_url=alertmanager.api_url) as client:
            found = await client.list_alerts(ListAlertsParams(filter=[f'junction_group="{group}"']))
        return [a for a in found if a.status.state == "active"]

    # Alertmanager checks startsAt against its own clock: run this incident in real time.
    base = datetime.now(UTC) - timedelta(seconds=30)

    def at(seconds: float) -> datetime:
        return base + timedelta(seconds=seconds)

    try:
        r = eng.evaluate([snap("gitlab", at(0), rate=0.93)], now=at(0))
        group = r.notifications[0].group_key
        assert (await eng.deliver(channels, now=at(0))).delivered
        shown = await active(group)
        assert {a.labels["severity"] for a in shown} == {"warning"}
        assert {a.labels["service"] for a in shown} == {"gitlab"}

        eng.evaluate([snap("gitlab", at(5), rate=0.5)], now=at(5))  # now critical
        assert (await eng.deliver(channels, now=at(5))).delivered
        assert {a.labels["severity"] for a in await active(group)} == {"warning", "critical"}

        eng.evaluate([snap("gitlab", at(10))], now=at(10))
        report = await eng.deliver(channels, now=at(10))
        assert len(report.delivered) == 1, report.errors
        assert await active(group) == []
    finally:
        for channel in channels.values():
            await channel.aclose()
        eng.close()
