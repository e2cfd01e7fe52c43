"""Validation of workflow specs: every kind of error, with its step and YAML line, all
collected in one pass, and no call made while validating."""

from __future__ import annotations

import textwrap

import pytest

from integrations.metrics import CallMetric, add_sink, remove_sink
from junction.workflows.validate import (
    SpecError,
    SpecInvalid,
    ValidationResult,
    load_workflow,
    validate_text,
)

HEAD = """\
name: t
parameters:
  email: {type: string}
  n: {type: integer, default: 2}
  flag: {type: boolean, default: false}
  ids: {type: array, default: []}
steps:
"""
"""Seven lines: the first step starts on line 8."""


def check(steps: str, *, head: str = HEAD, tail: str = "") -> ValidationResult:
    return validate_text(head + textwrap.dedent(steps) + tail, source="t.yaml")


def only_error(result: ValidationResult) -> SpecError:
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


def assert_error(result: ValidationResult, line: int, step: str | None, fragment: str) -> None:
    """Exactly one error, at ``line``, about ``step``, containing ``fragment``."""
    error = only_error(result)
    assert fragment in error.message, str(error)
    assert (error.line, error.step) == (line, step), str(error)
    assert not result.ok


GOOD = """\
- id: hire
  uses: workday.get_worker
  with: {worker_id: "{{ params.email }}"}
  cache: 5m
- id: user
  uses: okta.create_user
  with:
    first_name: "{{ steps.hire.output.descriptor }}"
    last_name: x
    email: "{{ steps.hire.output.primary_work_email }}"
"""


def test_a_good_spec_validates() -> None:
    result = check(GOOD)
    assert result.ok, [str(e) for e in result.errors]
    assert result.spec is not None and [s.id for s in result.spec.steps] == ["hire", "user"]
    assert result.warnings == []


def test_error_format_is_file_line_step_message() -> None:
    error = SpecError("boom", 12, "hire", "flows/x.yaml")
    assert str(error) == "flows/x.yaml:12: step 'hire': boom"
    assert str(SpecError("boom", None, None, "x.yaml")) == "x.yaml: boom"
    warning = SpecError("hm", 3, "a", "x.yaml", severity="warning")
    assert str(warning) == "x.yaml:3: warning: step 'a': hm"


# --- YAML and schema ------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line() -> None:
    result = validate_text("name: t\nsteps:\n  - id: a\n    uses: [unclosed\n", source="t.yaml")
    error = only_error(result)
    assert error.message.startswith("invalid YAML") and error.line == 5


def test_yaml_must_be_a_mapping() -> None:
    assert "YAML mapping" in only_error(validate_text("- a\n- b\n")).message


def test_python_tags_are_refused_by_safe_loading() -> None:
    result = validate_text("name: !!python/object/apply:os.system ['true']\nsteps: []\n")
    assert "invalid YAML" in only_error(result).message


def test_alias_bomb_is_refused_quickly() -> None:
    """A "billion laughs" document: nine anchors, each used nine times by the next."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    text = "name: t\nsteps: [{id: a, uses: okta.get_user}]\nbomb:\n  " + "\n  ".join(lines)
    error = only_error(validate_text(text + "\n"))
    assert "more than 20000 YAML nodes" in error.message


def test_deep_nesting_and_huge_files_are_refused() -> None:
    deep = "name: t\nsteps: []\nx: " + "[" * 100 + "]" * 100 + "\n"
    assert "nests deeper than 64" in only_error(validate_text(deep)).message
    huge = "name: t\n# " + "x" * 1_000_001 + "\nsteps: []\n"
    assert "larger than 1000000 bytes" in only_error(validate_text(huge)).message


def test_duplicate_yaml_keys() -> None:
    result = check(
        """\
        - id: a
          uses: workday.get_worker
          with: {worker_id: x}
          with: {worker_id: y}
        """
    )
    assert_error(result, 11, "a", "duplicate key 'with'")


def test_unknown_field_with_suggestion() -> None:
    result = check("- id: a\n  uses: workday.get_worker\n  wth: {worker_id: x}\n")
    assert_error(result, 10, "a", "unknown field 'wth' (did you mean 'with'?)")


def test_missing_required_field() -> None:
    assert_error(check("- id: a\n  with: {}\n"), 8, "a", "missing required field 'uses'")


def test_bad_field_value_and_bad_top_level() -> None:
    result = check("- id: a\n  uses: workday.get_worker\n  with: {worker_id: x}\n  retries: -1\n")
    assert_error(result, 11, "a", "retries: Input should be greater than or equal to 0")
    result = validate_text("name: Bad Name\nsteps: [{id: a, uses: okta.get_user}]\n")
    assert any(e.line == 1 and "name" in e.message for e in result.errors)


def test_parameter_default_of_wrong_type() -> None:
    head = "name: t\nparameters:\n  n: {type: integer, default: 'x'}\nsteps:\n"
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n", head=head)
    assert_error(result, 3, None, "default 'x' is not of type integer")


def test_bad_duration() -> None:
    result = check("- id: a\n  uses: workday.get_worker\n  with: {worker_id: x}\n  timeout: soon\n")
    assert_error(result, 11, "a", "not a duration")


def test_duplicate_step_ids() -> None:
    result = check(GOOD + "- id: hire\n  uses: workday.get_worker\n  with: {worker_id: x}\n")
    assert_error(result, 18, "hire", "duplicate step id 'hire'")


# --- targets and inputs -----------------------------------------------------------------------


def test_unknown_integration() -> None:
    result = check("- id: a\n  uses: oktaa.get_user\n  with: {login: x}\n")
    assert_error(result, 9, "a", "unknown integration or capability 'oktaa'")
    assert "did you mean okta" in only_error(result).message


def test_unknown_action_lists_the_known_ones() -> None:
    result = check("- id: a\n  uses: okta.get_usr\n  with: {login: x}\n")
    assert_error(result, 9, "a", "unknown action 'get_usr'")
    assert "get_user" in only_error(result).message


def test_unknown_capability_verb() -> None:
    result = check("- id: a\n  uses: notify.shout\n  with: {text: x}\n")
    assert_error(result, 9, "a", "unknown capability 'notify.shout' (notify.send exist)")


def test_unknown_input_name_with_suggestion() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {logn: x}\n")
    assert "has no input 'logn' (did you mean 'login'?)" in result.errors[0].message
    assert result.errors[0].line == 10


def test_missing_required_input() -> None:
    result = check("- id: a\n  uses: okta.create_user\n  with: {first_name: a, email: b@c.io}\n")
    assert_error(result, 10, "a", "create_user requires input(s) last_name")


def test_constant_input_of_wrong_type() -> None:
    result = check("- id: a\n  uses: workday.get_worker\n  with:\n    worker_id: 5\n")
    assert_error(result, 11, "a", "worker_id: Input should be a valid string")


def test_model_rules_apply_to_constants() -> None:
    result = check(
        "- id: a\n  uses: workday.list_hires\n  with: {start: 2024-05-02, end: 2024-05-01}\n"
    )
    assert_error(result, 10, "a", "end must not be before start")


def test_parameter_type_against_input_type() -> None:
    result = check(
        "- id: a\n  uses: gitlab.add_project_member\n"
        "  with: {project: 1, user_id: '{{ params.email }}'}\n"
    )
    assert_error(result, 10, "a", "'user_id' expects integer, but '{{ params.email }}' is string")


def test_step_output_type_against_input_type() -> None:
    result = check(
        """\
        - id: u
          uses: gitlab.find_user
          with: {username: bob}
        - id: a
          uses: okta.get_user
          with:
            login: "{{ steps.u.output.id }}"
        """
    )
    assert_error(
        result, 14, "a", "'login' expects string, but '{{ steps.u.output.id }}' is integer"
    )


def test_capability_inputs_are_checked_too() -> None:
    result = check("- id: a\n  uses: notify.send\n  with: {txt: hi, channel: ops}\n")
    messages = [e.message for e in result.errors]
    assert any("notify.send has no input 'txt' (did you mean 'text'?)" in m for m in messages)
    assert any("requires input(s) text" in m for m in messages)


def test_provider_that_does_not_offer_the_capability() -> None:
    result = check("- id: a\n  uses: notify.send\n  with: {text: hi}\n  providers: [jira]\n")
    assert_error(result, 11, "a", "'jira' does not provide notify.send")


def test_provider_missing_its_required_input() -> None:
    result = check("- id: a\n  uses: notify.send\n  with: {text: hi}\n  providers: [slack]\n")
    assert_error(result, 11, "a", "provider 'slack' needs input(s) channel")


def test_no_provider_can_serve_the_inputs() -> None:
    result = check(
        "- id: a\n  uses: incident.create\n  with: {title: x}\n  providers: [pagerduty]\n"
    )
    assert_error(result, 11, "a", "provider 'pagerduty' needs input(s) service")
    result = check("- id: a\n  uses: ticket.create\n  with: {title: x}\n")
    # servicenow needs no project: it can serve, so this is valid
    assert result.ok


def test_providers_on_an_action_step() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n  providers: [okta]\n")
    assert_error(result, 11, "a", "providers apply to capability steps only")


# --- effects --------------------------------------------------------------------------------


def test_cache_on_a_side_effecting_action() -> None:
    result = check(
        "- id: a\n  uses: okta.deactivate_user\n  with: {user_id: x}\n  cache: {ttl: 60}\n"
    )
    assert_error(result, 11, "a", "cache is for read-only actions; okta.deactivate_user")


def test_cache_on_a_side_effecting_capability() -> None:
    result = check("- id: a\n  uses: notify.send\n  with: {text: x, channel: c}\n  cache: 1m\n")
    assert any(e.line == 11 and "cache is for read-only" in e.message for e in result.errors)


def test_idempotency_key_on_a_read_only_step() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n  idempotency_key: k\n")
    assert_error(result, 11, "a", "read-only: an idempotency_key means nothing here")


def test_retries_of_a_non_idempotent_action() -> None:
    result = check(
        "- id: a\n  uses: webex.create_message\n  with: {room_id: r, text: t}\n  retries: 2\n"
    )
    assert_error(result, 11, "a", "retries on webex.create_message, which is not idempotent")


def test_non_idempotent_action_is_a_warning_without_retries() -> None:
    result = check("- id: a\n  uses: webex.create_message\n  with: {room_id: r, text: t}\n")
    assert result.ok
    assert [w.line for w in result.warnings] == [9]
    assert "cannot be made idempotent" in result.warnings[0].message


def test_fallback_must_share_a_capability() -> None:
    result = check(
        "- id: a\n  uses: okta.get_user\n  with: {login: x}\n"
        "  fallback: [{uses: jira.get_issue, with: {issue_key: K-1}}]\n"
    )
    assert_error(result, 11, "a", "fallback 'jira' shares no capability with 'okta'")


def test_fallback_unknown_action_and_its_inputs() -> None:
    result = check(
        "- id: a\n  uses: jira.create_issue\n  with: {project_key: P, summary: s}\n"
        "  fallback:\n    - gitlab.create_isue\n"
        "    - uses: gitlab.create_issue\n      with: {title: t}\n"
    )
    messages = {(e.line, e.message.split(";")[0]) for e in result.errors}
    assert (12, "gitlab: unknown action 'create_isue'") in messages
    assert any(line == 14 and "requires input(s) project" in m for line, m in messages)


def test_fallback_that_is_the_step_itself() -> None:
    result = check(
        "- id: a\n  uses: jira.create_issue\n  with: {project_key: P, summary: s}\n"
        "  fallback: [jira.create_issue]\n"
    )
    assert_error(result, 11, "a", "is the step's own action")


def test_concurrency_without_for_each_and_of_unknown_integrations() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n  concurrency: 3\n")
    assert_error(result, 11, "a", "concurrency applies to for_each steps only")
    head = HEAD.replace("steps:\n", "concurrency: {oktaa: 2}\nsteps:\n")
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n", head=head)
    assert_error(result, 7, None, "concurrency names unknown integration 'oktaa'")


# --- templates --------------------------------------------------------------------------------


def test_unknown_parameter_reference() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: '{{ params.emial }}'}\n")
    assert_error(
        result, 10, "a", "unknown parameter 'emial' in params.emial (did you mean 'email'?)"
    )


def test_unknown_step_reference() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: '{{ steps.hier.output.x }}'}\n")
    assert_error(result, 10, "a", "unknown step 'hier'")


def test_unknown_root_name() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: '{{ env.HOME }}'}\n")
    assert_error(result, 10, "a", "unknown name 'env' in template (env.HOME)")


def test_unknown_field_of_a_step() -> None:
    result = check(
        GOOD + "- id: b\n  uses: okta.get_user\n  with: {login: '{{ steps.user.outputs }}'}\n"
    )
    assert_error(result, 20, "b", "unknown field 'outputs' of step 'user'")


def test_step_reading_itself() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: '{{ steps.a.output.id }}'}\n")
    assert_error(result, 10, "a", "step reads its own output.id")


def test_item_outside_for_each() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: '{{ item }}'}\n")
    assert_error(result, 10, "a", "'item' is only defined in for_each steps")


def test_item_inside_for_each_is_fine() -> None:
    result = check(
        "- id: a\n  uses: okta.get_user\n  for_each: params.ids\n  concurrency: 2\n"
        "  with: {login: '{{ item }}'}\n"
    )
    assert result.ok, [str(e) for e in result.errors]


def test_for_each_needs_a_list() -> None:
    result = check(
        "- id: a\n  uses: okta.get_user\n  for_each: params.email\n  with: {login: '{{ item }}'}\n"
    )
    assert_error(result, 10, "a", "for_each needs a list, but 'params.email' is string")
    result = check(
        "- id: u\n  uses: gitlab.find_user\n  with: {username: bob}\n"
        "- id: a\n  uses: okta.get_user\n  for_each: '{{ steps.u.output.username }}'\n"
        "  with: {login: '{{ item }}'}\n"
    )
    assert_error(result, 13, "a", "for_each needs a list")


@pytest.mark.parametrize(
    ("expression", "kind"), [('"5"', "integer"), ("'{}'", "object"), ("none", "null")]
)
def test_for_each_constant_that_is_not_a_list(expression: str, kind: str) -> None:
    """Validated, then refused at run time: now refused by validation."""
    result = check(
        f"- id: a\n  uses: okta.get_user\n  for_each: {expression}\n"
        "  with: {login: '{{ item }}'}\n"
    )
    assert_error(result, 10, "a", f"is {kind}")


def test_for_each_constant_bomb_is_refused_not_built() -> None:
    result = check(
        "- id: a\n  uses: okta.get_user\n  for_each: '[1] * 10**9'\n  with: {login: x}\n"
    )
    assert_error(result, 10, "a", "repetition too large")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("cache", ".inf", "finite"),
        ("cache", "{ttl: .nan}", "finite"),
        ("timeout", ".inf", "finite"),
        ("timeout", ".nan", "finite"),
        ("timeout", "1e-300", "at least 1ms"),
        ("timeout", "1e308", "at most 24h"),
        ("retry_delay", "-.inf", "finite"),
        ("cache", "400d", "at most 30d"),
    ],
)
def test_durations_the_runner_cannot_use_are_refused(field: str, value: str, fragment: str) -> None:
    result = check(f"- id: a\n  uses: okta.get_user\n  with: {{login: x}}\n  {field}: {value}\n")
    assert_error(result, 11, "a", fragment)


def test_non_finite_parameter_default_is_refused() -> None:
    head = "name: t\nparameters:\n  x: {type: number, default: .nan}\nsteps:\n"
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n", head=head)
    assert_error(result, 3, None, "finite")


def test_capability_input_types_are_checked_against_parameters() -> None:
    result = check("- id: a\n  uses: notify.send\n  with: {text: '{{ params.n }}', channel: c}\n")
    assert_error(result, 10, "a", "notify.send input 'text' expects string, but")


def test_template_syntax_error_and_forbidden_constructs() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: '{{ params.email '}\n")
    assert_error(result, 10, "a", "template syntax error")
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: \"{{ ''.__class__() }}\"}\n")
    assert_error(result, 10, "a", "calls not allowed")
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: \"{% include 'x' %}\"}\n")
    assert_error(result, 10, "a", "{% include %} not allowed")


def test_when_is_checked_as_an_expression() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n  when: params.nope > 1\n")
    assert_error(result, 11, "a", "unknown parameter 'nope'")
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n  when: 'params.n >'\n")
    assert_error(result, 11, "a", "template syntax error")


def test_outputs_references_are_checked() -> None:
    result = check(GOOD, tail="outputs:\n  x: '{{ steps.nobody.output.id }}'\n")
    assert_error(result, 19, None, "unknown step 'nobody'")


def test_outputs_of_steps_that_may_be_skipped_need_a_guard() -> None:
    steps = GOOD.replace("  cache: 5m\n", "  cache: 5m\n  when: params.flag\n")
    unguarded = check(steps, tail="outputs:\n  id: '{{ steps.user.output.id }}'\n")
    assert unguarded.ok
    (warning,) = [w for w in unguarded.warnings if "may be skipped" in w.message]
    assert warning.line == 20 and "step 'user' may be skipped" in warning.message
    guarded = check(
        steps,
        tail="outputs:\n  id: \"{{ steps.user.output.id if steps.user.status == 'ok' else 0 }}\"\n",
    )
    assert not [w for w in guarded.warnings if "may be skipped" in w.message]


def test_undeclared_output_field_is_a_warning() -> None:
    result = check(
        GOOD + "- id: b\n  uses: okta.get_user\n"
        "  with: {login: '{{ steps.user.output.profle.login }}'}\n"
    )
    assert result.ok
    (warning,) = [w for w in result.warnings if "declares" in w.message]
    assert warning.line == 20 and "declares no field 'profle'" in warning.message


# --- the graph --------------------------------------------------------------------------------


def test_cycle_is_named() -> None:
    result = check(
        """\
        - id: a
          uses: okta.get_user
          with: {login: "{{ steps.c.output.id }}"}
        - id: b
          uses: okta.get_user
          with: {login: "{{ steps.a.output.id }}"}
        - id: c
          uses: okta.get_user
          needs: [b]
          with: {login: x}
        """
    )
    assert_error(result, 8, "a", "dependency cycle: a -> b -> c -> a")


def test_steps_below_a_cycle_are_unreachable() -> None:
    result = check(
        """\
        - id: a
          uses: okta.get_user
          needs: [b]
          with: {login: x}
        - id: b
          uses: okta.get_user
          needs: a
          with: {login: x}
        - id: c
          uses: okta.get_user
          with: {login: "{{ steps.b.output.id }}"}
        """
    )
    messages = sorted((e.line, e.message) for e in result.errors)
    assert messages[0] == (8, "dependency cycle: a -> b -> a")
    assert messages[1][0] == 16 and "unreachable: depends on b" in messages[1][1]


def test_when_false_makes_dependents_unreachable() -> None:
    result = check(
        """\
        - id: a
          uses: okta.get_user
          when: "false"
          with: {login: x}
        - id: b
          uses: okta.deactivate_user
          with: {user_id: "{{ steps.a.output.id }}"}
        """
    )
    found = sorted((e.line, e.step, e.message.split(":")[0]) for e in result.errors)
    assert found == [(10, "a", "when is always false"), (12, "b", "unreachable")]


def test_dead_needs() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n  needs: [ghost, a]\n")
    messages = sorted((e.line, e.message) for e in result.errors)
    assert messages == [(11, "needs itself"), (11, "needs unknown step 'ghost'")]


def test_dead_read_only_step_is_a_warning() -> None:
    result = check("- id: a\n  uses: okta.get_user\n  with: {login: x}\n", head=HEAD)
    assert result.ok
    assert "dead step" in result.warnings[0].message


# --- all errors at once, and no side effect -------------------------------------------------


BAD = """\
- id: a
  uses: okta.get_usr
  with: {login: x}
- id: b
  uses: okta.create_user
  with: {first_name: "{{ params.nope }}", email: x@y.io}
  cache: 5m
- id: c
  uses: webex.create_message
  with: {room_id: r, text: "{{ steps.zzz.output }}"}
  retries: 1
"""


def test_every_error_is_reported_in_one_pass() -> None:
    result = check(BAD)
    lines = [e.line or 0 for e in result.errors]
    assert lines == sorted(lines)
    assert len(result.errors) == 6, [str(e) for e in result.errors]
    assert {e.step for e in result.errors} == {"a", "b", "c"}


def test_validation_makes_no_call_and_load_raises_every_error(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    seen: list[CallMetric] = []
    add_sink(seen.append)
    try:
        path = tmp_path / "bad.yaml"
        path.write_text(HEAD + BAD)
        with pytest.raises(SpecInvalid) as info:
            load_workflow(path)
    finally:
        remove_sink(seen.append)
    assert seen == []
    assert len(info.value.errors) == 6
    assert str(info.value).count("bad.yaml:") == 6


def test_load_workflow_by_builtin_name_and_missing_file() -> None:
    spec = load_workflow("employee_onboarding")
    assert spec.name == "employee_onboarding"
    with pytest.raises(FileNotFoundError, match="built-in: "):
        load_workflow("no_such_workflow")
