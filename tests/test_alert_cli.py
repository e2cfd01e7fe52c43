"""`junction alerts list|ack|silence|silences|unsilence|outbox|check-config`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from junction.alerting.engine import AlertEngine
from junction.alerting.rules import default_config
from junction.settings import Settings, get_settings
from tests.alerting_helpers import alerts_cli, at, failing, healthy, use_home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield use_home(tmp_path, monkeypatch)
    get_settings.cache_clear()


def seed(home: Path) -> None:
    eng = AlertEngine(home / "alerts.db", default_config(Settings()))
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    eng.evaluate([*failing(["gitlab"], at(5)), *healthy(["okta"], at(5))], now=at(5))
    eng.close()


def test_list_json_and_all(home: Path) -> None:
    seed(home)
    out = alerts_cli("list", "--json")
    assert out.exit_code == 0, out.output
    active = json.loads(out.output)
    assert {a["fingerprint"] for a in active} == {"gitlab:success_rate", "gitlab:health_score"}
    assert {a["state"] for a in active} == {"firing"}
    everything = json.loads(alerts_cli("list", "--all", "--json").output)
    assert len(everything) == 4
    table = alerts_cli("list")
    assert "gitlab:success_rate" in table.output and "okta" not in table.output


def test_ack_by_fingerprint_and_id(home: Path) -> None:
    seed(home)
    out = alerts_cli("ack", "gitlab:success_rate", "--by", "alice")
    assert out.exit_code == 0 and "by alice" in out.output
    alerts = {a["fingerprint"]: a for a in json.loads(alerts_cli("list", "--json").output)}
    assert alerts["gitlab:success_rate"]["state"] == "acknowledged"
    assert alerts["gitlab:success_rate"]["acked_by"] == "alice"
    other = alerts["gitlab:health_score"]["id"]
    assert alerts_cli("ack", str(other), "--by", "bob").exit_code == 0
    # the transitions reached the metrics store's history
    from junction.store import MetricsStore

    with MetricsStore(home / "metrics") as store:
        states = store.query("SELECT state FROM alerts")["state"].tolist()
    assert states.count("acknowledged") == 2


def test_ack_errors_are_one_line(home: Path) -> None:
    seed(home)
    out = alerts_cli("ack", "999")
    assert out.exit_code == 2
    assert out.output.strip() == "error: no alert with id or fingerprint '999'"
    resolved = next(
        a
        for a in json.loads(alerts_cli("list", "--all", "--json").output)
        if a["state"] == "resolved"
    )
    out = alerts_cli("ack", str(resolved["id"]))
    assert out.exit_code == 2 and "already resolved" in out.output


def test_silence_lifecycle(home: Path) -> None:
    out = alerts_cli(
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
    listed = json.loads(alerts_cli("silences", "--json").output)
    assert listed[0]["service"] == "okta" and listed[0]["labels"] == {"team": "id"}
    assert listed[0]["comment"] == "upgrade" and listed[0]["created_by"] == "alice"
    assert alerts_cli("unsilence", "s1").exit_code == 0
    assert json.loads(alerts_cli("silences", "--json").output) == []
    assert len(json.loads(alerts_cli("silences", "--all", "--json").output)) == 1
    out = alerts_cli("unsilence", "s9")
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
        # once an OverflowError traceback (timedelta of 6e19 seconds)
        (["--service", "okta", "--for", "99999999999999w"], "--for: must be at most 366d"),
        (["--service", "okta", "--for", "nan"], "--for: not a duration: 'nan'"),
    ],
)
def test_silence_errors(home: Path, args: list[str], message: str) -> None:
    out = alerts_cli("silence", *args)
    assert out.exit_code == 2
    assert message in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("rule", ["success_model", "capacity"])
def test_rules_of_junctions_own_components_can_be_silenced(home: Path, rule: str) -> None:
    out = alerts_cli("silence", "--rule", rule, "--for", "1h")
    assert out.exit_code == 0, out.output
    assert json.loads(alerts_cli("silences", "--json").output)[0]["rule"] == rule


def test_outbox_and_check_config(home: Path, tmp_path: Path) -> None:
    seed(home)
    assert "outbox empty" in alerts_cli("outbox").output  # no channels configured by default
    good = Path(__file__).resolve().parent.parent / "alerting.example.yaml"
    out = alerts_cli("check-config", str(good))
    assert out.exit_code == 0 and ": ok (4 channels" in out.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  critical: [nobody]\n")
    out = alerts_cli("check-config", str(bad))
    assert out.exit_code == 2
    assert out.output == f"error: {bad}:2: routes.critical.0: unknown channel 'nobody'\n"


async def test_outbox_needs_check_and_settle(home: Path) -> None:
    from junction.alerting.config import parse_config
    from junction.alerting.model import DeliveryOutcome, DeliveryResult
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
    rows = json.loads(alerts_cli("outbox", "--json").output)
    assert [(r["status"], r["last_error"]) for r in rows] == [("needs_check", "lost")]
    out = alerts_cli("settle", rows[0]["key"], "--delivered")
    assert out.exit_code == 0 and "marked delivered" in out.output
    assert alerts_cli("outbox").output.strip() == "outbox empty"
    out = alerts_cli("settle", rows[0]["key"], "--resend")
    assert out.exit_code == 2 and "waiting for a check" in out.output


def test_listings_stay_readable_when_piped(home: Path) -> None:
    seed(home)
    out = alerts_cli("list", columns=80)
    assert out.exit_code == 0
    rows = [line for line in out.output.splitlines() if "gitlab:success_rate" in line]
    # one row, the whole message on it: no cell folded mid-word at 80 columns
    assert len(rows) == 1 and "success rate 0.0% < 90.0% (n=100)" in rows[0]
    alerts_cli("silence", "--service", "gitlab", "--for", "2h", "--comment", "a long reason " * 8)
    out = alerts_cli("silences", columns=80)
    assert ("a long reason " * 8).strip() in out.output


def test_every_listing_command_has_json(home: Path) -> None:
    seed(home)
    for args in (["list"], ["silences"], ["outbox"], ["channel-types"]):
        out = alerts_cli(*args, "--json")
        assert out.exit_code == 0, (args, out.output)
        assert isinstance(json.loads(out.output), list), args


def test_channel_types_are_listed_from_the_registry(home: Path) -> None:
    from junction.alerting.channels import CHANNELS

    listed = json.loads(alerts_cli("channel-types", "--json").output)
    assert [c["type"] for c in listed] == sorted(CHANNELS)
    email = next(c for c in listed if c["type"] == "email")
    assert email["fields"]["to"]["required"] and "from" in email["fields"]
    assert not email["resend_safe"]
    table_out = alerts_cli("channel-types").output
    assert all(kind in table_out for kind in CHANNELS)


def test_markup_in_alert_text_is_printed_as_text(home: Path) -> None:
    eng = AlertEngine(home / "alerts.db", default_config(Settings()))
    eng.evaluate(failing(["okta"], at(0)), now=at(0))
    eng.close()
    alerts_cli("silence", "--service", "okta", "--for", "1h", "--comment", "[bold]x[/bold] [red]")
    out = alerts_cli("silences")
    assert out.exit_code == 0 and "[bold]x[/bold] [red]" in out.output
