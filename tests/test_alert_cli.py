"""`junction alerts list|ack|silence|silences|unsilence|outbox|check-config`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from junction.alerting.engine import AlertEngine
from junction.alerting.rules import default_config
from junction.cli import app
from junction.settings import Settings, get_settings
from tests.alerting_helpers import at, failing, healthy

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in ("JUNCTION_ALERTS_DB", "JUNCTION_ALERTING_FILE", "JUNCTION_STORE_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def invoke(*args: str):
    return runner.invoke(app, ["alerts", *args], env={"COLUMNS": "200"})


def seed(home: Path) -> None:
    eng = AlertEngine(home / "alerts.db", default_config(Settings()))
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    eng.evaluate([*failing(["gitlab"], at(5)), *healthy(["okta"], at(5))], now=at(5))
    eng.close()


def test_list_json_and_all(home: Path) -> None:
    seed(home)
    out = invoke("list", "--json")
    assert out.exit_code == 0, out.output
    active = json.loads(out.output)
    assert {a["fingerprint"] for a in active} == {"gitlab:success_rate", "gitlab:health_score"}
    assert {a["state"] for a in active} == {"firing"}
    everything = json.loads(invoke("list", "--all", "--json").output)
    assert len(everything) == 4
    table = invoke("list")
    assert "gitlab:success_rate" in table.output and "okta" not in table.output


def test_ack_by_fingerprint_and_id(home: Path) -> None:
    seed(home)
    out = invoke("ack", "gitlab:success_rate", "--by", "alice")
    assert out.exit_code == 0 and "by alice" in out.output
    alerts = {a["fingerprint"]: a for a in json.loads(invoke("list", "--json").output)}
    assert alerts["gitlab:success_rate"]["state"] == "acknowledged"
    assert alerts["gitlab:success_rate"]["acked_by"] == "alice"
    other = alerts["gitlab:health_score"]["id"]
    assert invoke("ack", str(other), "--by", "bob").exit_code == 0
    # the transitions reached the metrics store's history
    from junction.store import MetricsStore

    with MetricsStore(home / "metrics") as store:
        states = store.query("SELECT state FROM alerts")["state"].tolist()
    assert states.count("acknowledged") == 2


def test_ack_errors_are_one_line(home: Path) -> None:
    seed(home)
    out = invoke("ack", "999")
    assert out.exit_code == 2
    assert out.output.strip() == "error: no alert with id or fingerprint '999'"
    resolved = next(
        a for a in json.loads(invoke("list", "--all", "--json").output) if a["state"] == "resolved"
    )
    out = invoke("ack", str(resolved["id"]))
    assert out.exit_code == 2 and "already resolved" in out.output


def test_silence_lifecycle(home: Path) -> None:
    out = invoke(
        "silence",
        "--service",
        "okta",
        "--rule",
        "success_rate",
        "--label",
        "team=id",
        "--for",
        "2h",
        "--comment",
        "upgrade",
        "--by",
        "alice",
    )
    assert out.exit_code == 0, out.output
    assert out.output.startswith("silence s1 until ") and "(2h)" in out.output
    listed = json.loads(invoke("silences", "--json").output)
    assert listed[0]["service"] == "okta" and listed[0]["labels"] == {"team": "id"}
    assert listed[0]["comment"] == "upgrade" and listed[0]["created_by"] == "alice"
    assert invoke("unsilence", "s1").exit_code == 0
    assert json.loads(invoke("silences", "--json").output) == []
    assert len(json.loads(invoke("silences", "--all", "--json").output)) == 1
    out = invoke("unsilence", "s9")
    assert out.exit_code == 2 and "no silence with id 's9'" in out.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "okta", "--for", "soon"], "--for: not a duration: 'soon'"),
        (["--for", "1h"], "would silence everything"),
        (["--service", "oktaa", "--for", "1h"], "unknown service 'oktaa'"),
        (["--rule", "latency", "--for", "1h"], "unknown rule 'latency'"),
        (["--label", "team", "--for", "1h"], "--label must look like key=value"),
        (["--service", "okta", "--for", "0s"], "positive duration"),
    ],
)
def test_silence_errors(home: Path, args: list[str], message: str) -> None:
    out = invoke("silence", *args)
    assert out.exit_code == 2
    assert message in out.output and "Traceback" not in out.output


def test_outbox_and_check_config(home: Path, tmp_path: Path) -> None:
    seed(home)
    assert "outbox empty" in invoke("outbox").output  # no channels configured by default
    good = Path(__file__).resolve().parent.parent / "alerting.example.yaml"
    out = invoke("check-config", str(good))
    assert out.exit_code == 0 and ": ok (4 channels" in out.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  critical: [nobody]\n")
    out = invoke("check-config", str(bad))
    assert out.exit_code == 2
    assert f"{bad}:2: routes.critical[0]: unknown channel 'nobody'" in out.output


async def test_outbox_needs_check_and_settle(home: Path) -> None:
    from junction.alerting.model import DeliveryOutcome, DeliveryResult
    from junction.alerting.rules import parse_config
    from tests.alerting_helpers import FakeChannel

    cfg = parse_config(
        'channels: {chat: {type: webhook, url: "http://127.0.0.1:9/x"}}\n'
        "routes: {critical: [chat]}\n",
        settings=Settings(),
    )
    eng = AlertEngine(home / "alerts.db", cfg)
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    chat = FakeChannel("chat", outcomes=[DeliveryResult(DeliveryOutcome.AMBIGUOUS, "lost")])
    await eng.deliver({"chat": chat}, now=at(1))
    eng.close()
    rows = json.loads(invoke("outbox", "--json").output)
    assert [(r["status"], r["last_error"]) for r in rows] == [("needs_check", "lost")]
    out = invoke("settle", rows[0]["key"], "--delivered")
    assert out.exit_code == 0 and "marked delivered" in out.output
    assert invoke("outbox").output.strip() == "outbox empty"
    out = invoke("settle", rows[0]["key"], "--resend")
    assert out.exit_code == 2 and "waiting for a check" in out.output
