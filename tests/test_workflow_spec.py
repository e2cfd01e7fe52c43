"""The workflow spec models, the published JSON Schema, capabilities, the built-in specs and
the `junction workflow validate|list|graph|schema` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from integrations.catalog import load_catalog
from integrations.errors import UnknownCapabilityError
from junction.cli import app
from junction.clients import get_action
from junction.workflows.builtins import builtin_specs
from junction.workflows.capabilities import (
    CAPABILITIES,
    TRANSFORMS,
    candidates,
    get_capability,
)
from junction.workflows.spec import (
    CacheSpec,
    Fallback,
    Parameter,
    ParameterError,
    ParamType,
    Step,
    WorkflowSpec,
    derive_idempotency_key,
    idempotency_field,
    parse_duration,
    render_json_schema,
    resolve_params,
)
from junction.workflows.validate import SCHEMA_PATH, validate_file

BUILTINS = ["ci_failure_triage", "employee_offboarding", "employee_onboarding", "incident_response"]


def spec_of(steps: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": "t", "steps": steps, **extra})


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2", 2.0),
    ],
)
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-1s", 0, True, "5 days", None])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_step_fields_and_shorthands() -> None:
    step = Step.model_validate(
        {
            "id": "a",
            "uses": "okta.get_user",
            "with": {"login": "x"},
            "needs": "b",
            "cache": "5m",
            "timeout": "2s",
            "fallback": ["slack", {"uses": "webex.create_message", "with": {"text": "t"}}],
        }
    )
    assert step.with_ == {"login": "x"} and step.needs == ["b"]
    assert step.cache == CacheSpec(ttl=300.0) and step.timeout == 2.0
    assert step.fallback == [
        Fallback(uses="slack"),
        Fallback(uses="webex.create_message", with_={"text": "t"}),
    ]
    assert step.display_name == "a" and step.retries == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "A-b", "uses": "okta.get_user"},  # ids are identifiers
        {"id": "a", "uses": "okta"},  # uses needs a dot
        {"id": "a", "uses": "okta.get_user", "retries": 99},
        {"id": "a", "uses": "okta.get_user", "surprise": 1},
        {"id": "a", "uses": "okta.get_user", "concurrency": 0},
    ],
)
def test_bad_steps(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Step.model_validate(bad)


def test_target_tells_actions_from_capabilities() -> None:
    action = Step(id="a", uses="okta.get_user").target()
    capability = Step(id="b", uses="notify.send").target()
    assert (action.kind, action.left, action.right) == ("action", "okta", "get_user")
    assert (capability.kind, capability.text) == ("capability", "notify.send")


def test_parameters_defaults_and_requiredness() -> None:
    assert Parameter(type=ParamType.STRING).is_required
    assert not Parameter(type=ParamType.INTEGER, default=3).is_required
    assert not Parameter(required=False).is_required
    with pytest.raises(ValidationError, match="not of type integer"):
        Parameter(type=ParamType.INTEGER, default="3")
    with pytest.raises(ValidationError, match="cannot be required"):
        Parameter(default="x", required=True)
    with pytest.raises(ValidationError, match="not one of"):
        Parameter(default="c", enum=["a", "b"])


def test_resolve_params_coerces_cli_strings() -> None:
    spec = spec_of(
        [{"id": "a", "uses": "okta.get_user"}],
        parameters={
            "s": {"type": "string"},
            "i": {"type": "integer", "default": 1},
            "f": {"type": "number", "default": 0.5},
            "b": {"type": "boolean", "default": False},
            "l": {"type": "array", "default": []},
            "o": {"type": "object", "required": False},
            "e": {"type": "string", "enum": ["x", "y"], "default": "x"},
        },
    )
    got = resolve_params(spec, {"s": "42", "i": "7", "f": "2", "b": "yes", "l": '["a"]'})
    assert got == {"s": "42", "i": 7, "f": 2.0, "b": True, "l": ["a"], "o": None, "e": "x"}
    assert resolve_params(spec, {"s": "x", "i": 3, "b": False})["i"] == 3


def test_resolve_params_lists_every_problem() -> None:
    spec = spec_of(
        [{"id": "a", "uses": "okta.get_user"}],
        parameters={
            "s": {"type": "string"},
            "i": {"type": "integer", "default": 1},
            "b": {"type": "boolean", "default": False},
            "e": {"type": "string", "enum": ["x"], "default": "x"},
        },
    )
    with pytest.raises(ParameterError) as info:
        resolve_params(spec, {"i": "seven", "b": "maybe", "e": "z", "zz": 1})
    message = str(info.value)
    assert "unknown parameter 'zz'" in message
    assert "missing required parameter 's'" in message
    assert "parameter 'i': 'seven' is not of type integer" in message
    assert "parameter 'b'" in message and "not one of ['x']" in message


def test_a_bool_is_not_an_integer() -> None:
    spec = spec_of([{"id": "a", "uses": "okta.get_user"}], parameters={"i": {"type": "integer"}})
    with pytest.raises(ParameterError):
        resolve_params(spec, {"i": True})


def test_derived_idempotency_keys_are_stable_and_distinct() -> None:
    spec = spec_of([{"id": "a", "uses": "okta.create_user"}])
    key = derive_idempotency_key(spec, "a", {"x": 1, "y": [1, 2]})
    assert key == derive_idempotency_key(spec, "a", {"y": [1, 2], "x": 1})  # order-free
    assert key.startswith("junction-t-a-") and len(key) == len("junction-t-a-") + 24
    assert key != derive_idempotency_key(spec, "b", {"x": 1, "y": [1, 2]})
    assert key != derive_idempotency_key(spec, "a", {"x": 2, "y": [1, 2]})
    assert key != derive_idempotency_key(spec, "a", {"x": 1, "y": [1, 2]}, index=0)


def test_idempotency_field_of_actions() -> None:
    assert idempotency_field(get_action("jira", "create_issue")) == "idempotency_key"
    assert idempotency_field(get_action("pagerduty", "create_incident")) == "incident_key"
    # declared by the action, not guessed from a list of names (the duplicated tickets)
    assert idempotency_field(get_action("servicenow", "create_incident")) == "correlation_id"
    assert idempotency_field(get_action("okta", "create_user")) is None
    assert idempotency_field(get_action("okta", "get_user")) is None


def test_capability_providers_come_from_the_catalog() -> None:
    """One registry: the catalog's ``provides:`` entries are the providers of each verb."""
    catalog = load_catalog()
    assert sorted(CAPABILITIES) == catalog.capability_actions
    for name, cap in CAPABILITIES.items():
        assert [b.integration for b in cap.bindings] == [
            p.integration for p in catalog.providers(name)
        ]
        fields = set(cap.input.model_fields)
        for b in cap.bindings:
            action = get_action(b.integration, b.action)
            assert set(b.inputs) <= set(action.input.model_fields), b
            assert set(b.inputs.values()) <= fields and b.required <= fields, b
            if catalog.get(b.integration).provides[name].transform:
                assert b.transform in TRANSFORMS.values()


def test_dependencies_combine_needs_and_template_references() -> None:
    spec = spec_of(
        [
            {"id": "a", "uses": "okta.get_user"},
            {"id": "b", "uses": "okta.get_user", "with": {"login": "{{ steps.a.output.id }}"}},
            {"id": "c", "uses": "okta.get_user", "needs": ["a"], "when": "steps.b.status == 'ok'"},
            {
                "id": "d",
                "uses": "okta.get_user",
                "for_each": "steps.c.output",
                "fallback": [{"uses": "okta.get_user", "with": {"login": "{{ steps.b.output }}"}}],
            },
            {"id": "e", "uses": "okta.get_user", "idempotency_key": "{{ steps.a.output.id }}"},
        ]
    )
    assert spec.dependencies() == {
        "a": set(),
        "b": {"a"},
        "c": {"a", "b"},
        "d": {"b", "c"},
        "e": {"a"},
    }
    assert spec.topological_order() == [["a"], ["b", "e"], ["c"], ["d"]]
    assert spec.step("c").needs == ["a"]
    with pytest.raises(KeyError):
        spec.step("zz")


def test_topological_order_refuses_cycles() -> None:
    spec = spec_of(
        [
            {"id": "a", "uses": "okta.get_user", "needs": ["b"]},
            {"id": "b", "uses": "okta.get_user", "needs": ["a"]},
        ]
    )
    with pytest.raises(ValueError, match="cycle"):
        spec.topological_order()


def test_the_module_docstring_example_validates() -> None:
    from junction.workflows import spec as module
    from junction.workflows.validate import validate_text

    doc = module.__doc__ or ""
    block = doc[doc.index("    name: employee_onboarding") : doc.index("Semantics the runner")]
    result = validate_text("\n".join(line[4:] for line in block.splitlines()))
    assert result.ok, [str(e) for e in result.errors]


# --- capabilities -----------------------------------------------------------------------------


def test_capability_bindings_name_real_actions() -> None:
    from integrations.registry import get_action

    for cap in CAPABILITIES.values():
        for binding in cap.bindings:
            action = get_action(binding.integration, binding.action)
            for target in binding.inputs:
                assert target in action.input.model_fields, (cap.name, binding.integration, target)
            for source in [*binding.inputs.values(), *binding.required]:
                assert source in cap.input.model_fields, (cap.name, source)


def test_binding_maps_generic_inputs() -> None:
    notify = get_capability("notify.send")
    generic = {"text": "hi", "recipient_email": "a@b.c", "title": "T", "sender": "s@b.c"}
    assert notify.binding("webex").map_inputs(generic) == {
        "to_person_email": "a@b.c",
        "markdown": "hi",
    }
    assert notify.binding("smtp").map_inputs(generic) == {
        "to": ["a@b.c"],
        "subject": "T",
        "text": "hi",
        "sender": "s@b.c",
    }
    llm = get_capability("llm.complete").binding("openai")
    assert llm.map_inputs({"prompt": "p", "system": "s", "max_tokens": 5}) == {
        "max_tokens": 5,
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}],
    }
    with pytest.raises(UnknownCapabilityError, match="does not provide"):
        notify.binding("jira")
    with pytest.raises(UnknownCapabilityError, match="known: "):
        get_capability("notify.shout")


def test_candidates_of_action_and_capability_steps() -> None:
    step = Step.model_validate(
        {
            "id": "a",
            "uses": "jira.create_issue",
            "with": {"summary": "s"},
            "fallback": ["gitlab.create_issue", {"uses": "servicenow.create_incident", "with": {}}],
        }
    )
    found = [(c.uses, c.fallback, dict(c.with_)) for c in candidates(step)]
    assert found == [
        ("jira.create_issue", False, {"summary": "s"}),
        ("gitlab.create_issue", True, {"summary": "s"}),
        ("servicenow.create_incident", True, {}),
    ]
    only_channel = Step.model_validate(
        {"id": "n", "uses": "notify.send", "with": {"text": "t", "channel": "c"}}
    )
    assert [c.uses for c in candidates(only_channel)] == [
        "webex.create_message",
        "slack.post_message",
    ]
    chosen = Step.model_validate(
        {
            "id": "n",
            "uses": "notify.send",
            "with": {"text": "t", "channel": "c"},
            "providers": ["slack"],
            "fallback": ["webex"],
        }
    )
    got = candidates(chosen)
    assert [(c.integration, c.fallback) for c in got] == [("slack", False), ("webex", True)]
    assert got[0].action_input({"text": "t", "channel": "c"}) == {"channel": "c", "text": "t"}


# --- the JSON Schema and the built-in specs ----------------------------------------------------


def test_published_schema_is_current() -> None:
    """Fails when the models changed without `junction workflow schema --write`."""
    assert SCHEMA_PATH.read_text("utf-8") == render_json_schema(), (
        "workflow.schema.json is stale: run `junction workflow schema --write`"
    )


def test_schema_is_valid_and_accepts_the_shorthands() -> None:
    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    doc = {
        "name": "x",
        "steps": [
            {
                "id": "a",
                "uses": "okta.get_user",
                "cache": "5m",
                "needs": "b",
                "fallback": ["okta", {"uses": "okta.get_user"}],
            }
        ],
    }
    assert list(validator.iter_errors(doc)) == []
    bad = {"name": "x", "steps": [{"id": "a", "uses": "okta.get_user", "wth": {}}]}
    assert list(validator.iter_errors(bad)) != []


def test_the_builtin_specs_are_there() -> None:
    assert sorted(builtin_specs()) == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_spec_validates(name: str) -> None:
    path = builtin_specs()[name]
    result = validate_file(path)
    assert result.ok, [str(e) for e in result.errors]
    assert result.spec is not None and result.spec.name == name
    text = path.read_text("utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../workflow.schema.json"
    assert (path.parent / "../workflow.schema.json").resolve() == SCHEMA_PATH
    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    jsonschema.validate(yaml.safe_load(text), schema, cls=jsonschema.Draft202012Validator)


def test_builtins_use_the_issue_s_services() -> None:
    services = {
        name: {c.integration for s in validate_file(p).spec.steps for c in candidates(s)}  # type: ignore[union-attr]
        for name, p in builtin_specs().items()
    }
    assert {"workday", "okta", "gitlab", "webex", "jira"} <= services["employee_onboarding"]
    assert {"workday", "okta", "gitlab", "slack"} <= services["employee_offboarding"]
    assert {"gitlab", "openai", "webex", "slack", "jira", "pagerduty"} <= services[
        "ci_failure_triage"
    ]
    assert {"pagerduty", "webex"} <= services["incident_response"]
    triage = validate_file(builtin_specs()["ci_failure_triage"]).spec
    assert triage is not None and triage.step("page").when is not None


# --- the CLI ----------------------------------------------------------------------------------


runner = CliRunner()


def test_cli_validate_ok_and_summary() -> None:
    result = runner.invoke(app, ["workflow", "validate", "employee_onboarding"])
    assert result.exit_code == 0, result.output
    assert "ok: workflow 'employee_onboarding', 8 steps" in result.output


def test_cli_validate_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nsteps:\n  - id: a\n    uses: okta.get_usr\n"
        "  - id: b\n    uses: okta.get_user\n    with: {login: '{{ params.x }}'}\n"
    )
    result = runner.invoke(app, ["workflow", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:4: step 'a': okta: unknown action 'get_usr'" in result.output
    assert f"{path}:7: step 'b': unknown parameter 'x'" in result.output
    as_json = runner.invoke(app, ["workflow", "validate", str(path), "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert [e["line"] for e in report[0]["errors"]] == [4, 7]


def test_cli_validate_missing_file_exits_2() -> None:
    result = runner.invoke(app, ["workflow", "validate", "nope.yaml"])
    assert result.exit_code == 2


def test_cli_validate_strict_fails_on_warnings() -> None:
    assert runner.invoke(app, ["workflow", "validate", "incident_response"]).exit_code == 0
    strict = runner.invoke(app, ["workflow", "validate", "--strict", "incident_response"])
    assert strict.exit_code == 1


def test_cli_list() -> None:
    result = runner.invoke(app, ["workflow", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert sorted(rows) == BUILTINS
    onboarding = rows["employee_onboarding"]
    assert onboarding["parameters"]["worker_id"]["required"] is True
    assert {"id": "hire", "uses": "workday.get_worker", "needs": []} in onboarding["steps"]
    table = runner.invoke(app, ["workflow", "list"])
    assert table.exit_code == 0 and "employee_offboarding" in table.output


def test_cli_graph_formats() -> None:
    mermaid = runner.invoke(app, ["workflow", "graph"])
    assert mermaid.exit_code == 0 and mermaid.output.startswith("flowchart LR")
    dot = runner.invoke(app, ["workflow", "graph", "incident_response", "--format", "dot"])
    assert dot.exit_code == 0 and dot.output.startswith("digraph junction {")
    assert "ci_failure_triage" not in dot.output
    data = runner.invoke(app, ["workflow", "graph", "-f", "json"])
    assert json.loads(data.output)["service_dependencies"]["workflow:incident_response"] == [
        "pagerduty",
        "webex",
    ]


def test_cli_schema_check() -> None:
    result = runner.invoke(app, ["workflow", "schema", "--check"])
    assert result.exit_code == 0 and "up to date" in result.output
    printed = runner.invoke(app, ["workflow", "schema"])
    assert json.loads(printed.output)["title"] == "Junction workflow spec"
