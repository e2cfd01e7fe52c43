"""The alerting file against hostile and broken input (issue 9 #6, #7).

Each case goes through the loader API (``load_config`` / ``parse_config``), through
``junction alerts check-config`` and through the engine the monitor builds at start
(``AlertEngine.from_settings``): a clear located error, never a traceback, a MemoryError
or an OverflowError.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from junction.alerting.channels import CHANNEL_TYPES, CHANNELS
from junction.alerting.config import AlertConfigError, load_config, parse_config
from junction.alerting.engine import AlertEngine
from junction.alerting.rules import MAX_DURATION, parse_duration
from junction.alerting.schema import AlertingFile
from junction.settings import Settings, get_settings
from tests.alerting_helpers import alerts_cli, use_home

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "alerting.example.yaml"
SERVICES = {"okta", "gitlab", "jira", "confluence", "openai", "workday"}

_ITEMS = ['"x"', *(f"*{name}" for name in "abcdefgh")]
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([item] * 9)}]\n"
    for name, item in zip("abcdefghi", _ITEMS, strict=True)
)
"""The 9x9 "billion laughs": 9 nine-element lists, each made of the one before (9**9)."""

HOSTILE: dict[str, tuple[bytes, str]] = {
    "alias bomb": (ALIAS_BOMB.encode(), "expands to more than"),
    "invalid utf-8": (b"defaults:\n  down: {enabled: true}\n# caf\xe9\n", ":3: not valid UTF-8"),
    "deep nesting": (b"defaults: " + b"[" * 500 + b"]" * 500 + b"\n", "nests deeper than"),
    "escalation after .inf": (
        b"escalation: {after: .inf}\n",
        ":1: escalation.after: must be a finite duration",
    ),
    "huge weeks": (
        b"grouping:\n  wait: 99999999999999w\n",
        ":2: grouping.wait: must be at most 366d, got '99999999999999w'",
    ),
    "huge number of seconds": (
        b"resolve_after: 1e300\n",
        ":1: resolve_after: must be at most 366d",
    ),
    "burn window of years": (
        b"sla:\n  burn_rates: [{long: 3650d, short: 5m, factor: 2, severity: warning}]\n",
        ":2: sla.burn_rates.0.long: must be at most 7d",
    ),
    "400-digit threshold": (
        b"defaults: {response_time: {warning: 1" + b"0" * 400 + b"}}\n",
        ":1: defaults.response_time.warning: must be a finite number",
    ),
    "100,000-digit integer": (b"min_observations: 1" + b"0" * 100_000 + b"\n", "cannot be read"),
    "not a mapping": (b"- just\n- a list\n", "expected a mapping at the top"),
    "duplicate key": (
        b"routes: {}\nroutes: {}\n",
        ":2: routes: duplicate key 'routes'",
    ),
}

NON_FINITE: dict[str, tuple[str, str]] = {
    "success_rate warning": (
        "defaults:\n  success_rate: {warning: .nan}\n",
        ":2: defaults.success_rate.warning: must be a finite number",
    ),
    "response_time critical": (
        "defaults:\n  response_time: {critical: .inf}\n",
        ":2: defaults.response_time.critical: must be a finite number",
    ),
    "health_score override": (
        "services:\n  gitlab:\n    health_score: {warning: -.inf}\n",
        ":3: services.gitlab.health_score.warning: must be a finite number",
    ),
    "sla target": ("sla: {target: .nan}\n", ":1: sla.target: must be a finite number"),
    "service sla_target": (
        "services: {okta: {sla_target: .nan}}\n",
        ":1: services.okta.sla_target: must be a finite number",
    ),
    "burn factor": (
        "sla:\n  burn_rates:\n    - {long: 1h, short: 5m, factor: .nan, severity: critical}\n",
        ":3: sla.burn_rates.0.factor: must be a finite number",
    ),
    "min_observations": ("min_observations: .nan\n", ":1: min_observations: must be"),
    "duration": (
        "grouping: {dependency_wait: .nan}\n",
        "grouping.dependency_wait: must be a finite",
    ),
    "channel timeout": (
        "channels:\n  hook: {type: webhook, timeout_seconds: .nan}\n",
        ":2: channels.hook.timeout_seconds: must be a finite number",
    ),
    "alertmanager hold": (
        "channels:\n  am:\n    type: alertmanager\n    hold_seconds: .inf\n",
        ":4: channels.am.hold_seconds: must be a finite number",
    ),
}

OUT_OF_RANGE: dict[str, tuple[str, str]] = {
    "rate above 1": ("defaults: {success_rate: {warning: 1.5}}\n", "must be <= 1, got 1.5"),
    "score above 100": ("defaults: {health_score: {critical: 101}}\n", "must be <= 100"),
    "negative latency": ("defaults: {response_time: {warning: -1}}\n", "must not be negative"),
    "text as number": ("defaults: {success_rate: {warning: '0.9'}}\n", "must be a number"),
    "true as number": ("defaults: {success_rate: {warning: true}}\n", "must be a number"),
    "zero factor": (
        "sla: {burn_rates: [{long: 1h, short: 5m, factor: 0, severity: critical}]}\n",
        "factor: must be positive",
    ),
    "factor that can never fire": (
        "sla: {burn_rates: [{long: 1h, short: 5m, factor: 500, severity: critical}]}\n",
        "factor: can never fire: with target 0.99 the burn rate is at most 100",
    ),
    "target of 100%": ("sla: {target: 1}\n", "sla.target: must be below 1"),
    "zero max_step": ("escalation: {max_step: 0s}\n", "escalation.max_step: must be positive"),
    "negative duration": ("resolve_after: -5m\n", "resolve_after: must not be negative"),
    "min_observations zero": ("min_observations: 0\n", "must be an integer >= 1, got 0"),
    "enabled not a bool": ("defaults: {down: {enabled: yes please}}\n", "must be true or false"),
    "section not a mapping": ("services: {gitlab: {success_rate: fast}}\n", "must be a mapping"),
}


def _error(text: str | bytes, tmp_path: Path) -> str:
    path = tmp_path / "alerting.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(AlertConfigError) as info:
        load_config(path, settings=Settings(), known_services=SERVICES)
    return str(info.value)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_one_located_error(case: str, tmp_path: Path) -> None:
    text, expected = HOSTILE[case]
    message = _error(text, tmp_path)
    assert expected in message
    assert message.startswith(str(tmp_path / "alerting.yaml"))
    # the same text, given directly
    with pytest.raises(AlertConfigError) as info:
        parse_config(text, source="inline.yaml", settings=Settings(), known_services=SERVICES)
    tail = expected.split(": ", 1)[1] if expected.startswith(":") else expected
    assert str(info.value).startswith("inline.yaml") and tail in str(info.value)


def test_a_file_of_60_mb_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "alerting.yaml"
    with path.open("wb") as fh:  # sparse: 60 MB on paper, nothing on disk
        fh.truncate(60_000_000)
    with pytest.raises(AlertConfigError, match=r"alerting.yaml: the file is larger than 1000000"):
        load_config(path, settings=Settings(), known_services=SERVICES)


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_every_number_must_be_finite(case: str, tmp_path: Path) -> None:
    text, expected = NON_FINITE[case]
    assert expected in _error(text, tmp_path)


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE))
def test_every_number_must_be_in_range(case: str, tmp_path: Path) -> None:
    text, expected = OUT_OF_RANGE[case]
    assert expected in _error(text, tmp_path)


def test_parse_duration_bounds() -> None:
    assert parse_duration("366d") == MAX_DURATION
    for bad in ("99999999999999w", 1e300, float("inf"), float("nan"), True, None, "1e400"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_every_rule_model_refuses_non_finite_numbers() -> None:
    """The schema itself (not only the values tried above) refuses .inf/.nan."""
    assert AlertingFile.model_config.get("allow_inf_nan") is False
    for cls in CHANNELS.values():
        assert cls.Params.model_config.get("allow_inf_nan") is False, cls


# --- the channel registry ---------------------------------------------------------------


def test_channel_types_come_from_one_registry() -> None:
    assert sorted(CHANNELS) == list(CHANNEL_TYPES)
    for kind, cls in CHANNELS.items():
        assert cls.kind == kind and cls.Params is not None
    import junction.alerting.channels as channels
    import junction.alerting.config as config
    import junction.alerting.rules as rules

    assert not hasattr(rules, "CHANNEL_TYPES")
    assert not hasattr(channels, "PARAMS") and not hasattr(channels, "CHANNEL_CLASSES")
    assert not hasattr(config, "CHANNEL_TYPES")


def test_channel_fields_are_checked_per_type_with_lines(tmp_path: Path) -> None:
    message = _error(
        """channels:
  chat:
    type: webex
    rooom: x
  mail:
    type: email
    to: [not-an-address]
  pager: {type: pagerdooty}
""",
        tmp_path,
    )
    lines = message.splitlines()
    assert lines[0].endswith(":4: channels.chat: unknown field 'rooom' (did you mean 'room_id'?)")
    assert lines[1].endswith(":7: channels.mail.to: not an email address: 'not-an-address'")
    assert lines[2].endswith(
        ":8: channels.pager.type: unknown channel type 'pagerdooty' (did you mean 'pagerduty'?"
        " expected one of: alertmanager, email, pagerduty, slack, webex, webhook)"
    )


# --- fuzzing: mutated example files never escape as anything but AlertConfigError ----------


def _mutations(seed: int, count: int) -> Iterator[str]:
    rng = random.Random(seed)
    base = EXAMPLE.read_text()
    data = yaml.safe_load(base)
    values: list[object] = [
        None, -1, 0, 1.5, math.nan, math.inf, "x", "99999999999999w", [], {}, [1], {"a": 1},
        True, "2026-13-45", 10**50, "-5m", "1e309",
    ]  # fmt: skip

    def paths(node: object, prefix: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
        yield prefix
        if isinstance(node, dict):
            for key, value in node.items():
                yield from paths(value, (*prefix, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from paths(value, (*prefix, index))

    every = [p for p in paths(data) if p]
    for _ in range(count):
        doc = copy.deepcopy(data)
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(every)
            parent: object = doc
            try:
                for part in path[:-1]:
                    parent = parent[part]  # type: ignore[index]
                parent[path[-1]] = rng.choice(values)  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                continue
        yield yaml.dump(doc, Dumper=yaml.CSafeDumper)
    # text-level damage too: cut the file, swap characters
    for _ in range(count // 4):
        cut = rng.randrange(len(base))
        yield base[:cut] + rng.choice(["", ":", "[", "&a", "*a", "\t", "{"]) + base[cut + 1 :]


def test_mutated_files_only_ever_give_alert_config_errors() -> None:
    outcomes = {"ok": 0, "error": 0}
    for text in _mutations(seed=9, count=240):
        try:
            parse_config(text, settings=Settings(), known_services=SERVICES)
        except AlertConfigError as exc:
            assert str(exc) and "Traceback" not in str(exc)
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["error"] > 100 and outcomes["ok"] > 0


# --- through the command line and the monitor's start -----------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield use_home(tmp_path, monkeypatch)
    get_settings.cache_clear()


CLI_CASES = {
    **{name: text for name, (text, _) in HOSTILE.items()},
    "nan threshold": NON_FINITE["success_rate warning"][0].encode(),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_check_config_and_engine_start_give_one_clear_error(case: str, home: Path) -> None:
    path = home / "alerting.yaml"
    path.write_bytes(CLI_CASES[case])
    out = alerts_cli("check-config", str(path))
    assert out.exit_code == 2, out.output
    assert out.output.startswith(f"error: {path}"), out.output
    assert "Traceback" not in out.output and len(out.output.splitlines()) == 1
    # what `junction monitor` does at start: a typed error, not a crash
    with pytest.raises(AlertConfigError):
        AlertEngine.from_settings(Settings(alerting_file=path, home=home))


def test_check_config_lists_several_problems_in_file_order(home: Path) -> None:
    path = home / "alerting.yaml"
    path.write_text("defaults:\n  success_rate: {warning: .nan}\nescalaton: {}\n")
    out = alerts_cli("check-config", str(path))
    assert out.exit_code == 2
    assert out.output.splitlines() == [
        "error: invalid alerting configuration (2 problems):",
        f"{path}:2: defaults.success_rate.warning: must be a finite number (not .inf or .nan),"
        " got nan",
        f"{path}:3: unknown field 'escalaton' (did you mean 'escalation'?)",
    ]


def test_nan_threshold_no_longer_passes_check_config(home: Path) -> None:
    """Issue 9 #7: `.nan` compared false with everything and silently disabled the rule."""
    path = home / "alerting.yaml"
    path.write_text("defaults:\n  health_score: {warning: .nan, critical: .nan}\n")
    out = alerts_cli("check-config", str(path))
    assert out.exit_code == 2 and "must be a finite number" in out.output


def test_the_example_file_passes_check_config(home: Path) -> None:
    out = alerts_cli("check-config", str(EXAMPLE))
    assert out.exit_code == 0, out.output
    assert ": ok (4 channels, 2 service overrides, 3 dependency entries" in out.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JUNCTION_RESPONSE_TIME_WARNING_MS", "inf"),
        ("JUNCTION_RESPONSE_TIME_CRITICAL_MS", "inf"),
        ("JUNCTION_ALERT_SEND_TIMEOUT_SECONDS", "inf"),
        ("JUNCTION_STATUS_PAGE_CACHE_SECONDS", "nan"),
    ],
)
def test_the_settings_alert_defaults_come_from_must_be_finite(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a file the thresholds are the settings': ``inf`` there disabled the rule too."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match="finite number"):
        Settings()
