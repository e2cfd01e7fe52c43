"""The catalog: the one registry of integrations and what they provide.

A bad edit is one ``catalog.yaml:LINE: field: problem`` line; every provider of a
capability action names a real typed action and real input fields; ``junction
integrations list --capability`` refuses an unknown capability with suggestions.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from integrations.catalog import catalog_path, load_catalog, read_catalog
from integrations.errors import UnknownCapabilityError
from integrations.registry import client_class, get_action
from integrations.yamlconfig import ConfigError
from tests.helpers import run_junction

ENTRY = """\
integrations:
  - name: acme
    title: Acme
    capabilities: [notify]
    base_url: https://api.acme.test
    auth: {scheme: bearer}
    health: {path: /me}
"""


def problem(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        read_catalog("catalog.yaml", text=text)
    return str(err.value)


def test_the_packaged_catalog_loads() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 40 and "okta" in catalog
    assert read_catalog(catalog_path()).names == catalog.names


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("scheme: bearer", "scheme: beare"), "catalog.yaml:6: integrations.0.auth.scheme: "),
        (("title: Acme", "titel: Acme"), "catalog.yaml:3: integrations.0: unknown field 'titel'"),
        (("title: Acme", "title: Acme\n    capabilities: [x]"), "duplicate key 'capabilities'"),
        (("    health: {path: /me}\n", ""), "catalog.yaml:2: integrations.0: missing required"),
        (("name: acme", "name: Acme"), "catalog.yaml:2: integrations.0.name: "),
        (
            ("    health: {path: /me}\n", "    health: {path: /me}\n    client: nope.mod:X\n"),
            "catalog.yaml:8: integrations.0.client: no module 'nope.mod'",
        ),
        (
            ("/me}\n", "/me}\n    provides: {notify: {action: x}}\n"),
            "is not a capability action",
        ),
        (
            (
                "    health: {path: /me}\n",
                "    health: {path: /me}\n    provides:\n      ticket.create: {action: x}\n",
            ),
            "provides ticket.create but capabilities lacks ticket",
        ),
    ],
)
def test_a_bad_edit_is_one_located_line(edit: tuple[str, str], expected: str) -> None:
    message = problem(ENTRY.replace(*edit))
    assert expected in message and "Traceback" not in message
    assert all(line.startswith("catalog.yaml:") for line in message.splitlines())


def test_duplicate_names_and_yaml_bombs_are_refused() -> None:
    twice = ENTRY + ENTRY.split("\n", 1)[1]
    assert "integration 'acme' is listed twice" in problem(twice)
    bomb = "a: &a [" + ",".join(["x"] * 10) + "]\n"
    for i in range(1, 8):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    assert "too many aliases" in problem(bomb)


def test_providers_in_preference_order() -> None:
    catalog = load_catalog()
    notify = catalog.providers("notify.send")
    assert [(p.integration, p.action) for p in notify] == [
        ("webex", "create_message"),
        ("slack", "post_message"),
        ("smtp", "send_email"),
    ]
    assert [p.integration for p in catalog.providers("ticket.create")] == [
        "jira",
        "gitlab",
        "servicenow",
    ]
    assert catalog.capability_actions == [
        "incident.create",
        "llm.complete",
        "notify.send",
        "ticket.create",
    ]
    with pytest.raises(UnknownCapabilityError, match=r"did you mean notify\.send"):
        catalog.providers("notify.sned")


def test_every_provider_names_a_real_action_and_real_fields() -> None:
    """The catalog is data about code: each ``provides`` entry must match its client."""
    for spec in load_catalog():
        for capability, provision in spec.provides.items():
            action = get_action(spec.name, provision.action)
            fields = set(action.input.model_fields)
            unknown = set(provision.inputs) - fields
            assert not unknown, f"{spec.name} {capability}: {sorted(unknown)} not inputs"
            assert not action.read_only or capability == "llm.complete"


def test_with_capability_accepts_tags_and_capability_actions() -> None:
    catalog = load_catalog()
    tagged = {s.name for s in catalog.with_capability("notify")}
    assert {"webex", "slack", "smtp", "twilio"} <= tagged and len(tagged) >= 14
    assert [s.name for s in catalog.with_capability("notify.send")] == ["webex", "slack", "smtp"]
    with pytest.raises(UnknownCapabilityError) as err:
        catalog.with_capability("notfy")
    assert "did you mean notify, notify.send?" in err.value.message


def test_client_classes_import_without_a_guard() -> None:
    for spec in load_catalog():
        if spec.client:
            assert client_class(spec).service == spec.name


def junction(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_junction(args, {"COLUMNS": "100", **env})


def test_cli_unknown_capability_is_one_line_with_suggestions(tmp_path: Path) -> None:
    out = junction("integrations", "list", "--capability", "bogus", JUNCTION_HOME=str(tmp_path))
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: unknown capability 'bogus'; known: alerting, chat")
    assert "notify.send" in line
    out = junction("integrations", "list", "--capability", "notfy", JUNCTION_HOME=str(tmp_path))
    assert "did you mean notify, notify.send?" in out.stderr and out.returncode == 2
    out = junction("integrations", "list", "--capability", "ticket.create", "--json")
    assert out.returncode == 0 and '"provides"' in out.stdout and '"jira"' in out.stdout


def test_cli_check_with_the_sandbox_down_hints_first_then_one_line_each(
    tmp_path: Path,
) -> None:
    out = junction(
        "integrations",
        "check",
        "okta",
        "jira",
        "webex",
        "--no-record",
        JUNCTION_HOME=str(tmp_path),
        JUNCTION_SANDBOX_URL="http://127.0.0.1:9",  # discard: nothing listens
    )
    assert out.returncode == 1
    assert out.stderr.startswith("hint: nothing answers at the sandbox (http://127.0.0.1:9)")
    rows = [line for line in out.stdout.splitlines() if "failing" in line]
    assert [r.split()[1] for r in rows] == ["okta", "jira", "webex"]
    assert len(out.stdout.splitlines()) <= 10  # title, borders, header, 3 rows, summary
    assert "0/3 healthy" in out.stdout
