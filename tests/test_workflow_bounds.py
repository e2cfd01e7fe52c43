"""The runner's bounds on the real sandbox: templates that would run away fail their step
with a clear error and send nothing (issue 9 #5), and ``for_each`` has an item cap checked
before any request (issue 9 #8)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from integrations.sandbox.app import SandboxServer
from junction.workflows.outcomes import RunResult
from junction.workflows.runner import WorkflowRunner
from junction.workflows.runtime import Runtime
from junction.workflows.spec import ParameterError, WorkflowSpec
from junction.workflows.validate import validate_text
from tests.helpers import FAST, requests_log, sandbox_settings

SERVICES = ("okta", "workday", "jira", "gitlab", "webex")


def make_spec(data: dict[str, Any]) -> WorkflowSpec:
    result = validate_text(yaml.safe_dump(data, sort_keys=False), source="test")
    assert result.ok and result.spec is not None, [str(e) for e in result.errors]
    return result.spec


def run(
    sb: SandboxServer, spec: WorkflowSpec, params: dict[str, Any], **settings: Any
) -> RunResult:
    async def go() -> RunResult:
        config = sandbox_settings(sb).model_copy(update=settings)
        async with Runtime(config, client_options={"retry": FAST}) as rt:
            return await WorkflowRunner(spec, rt).run(params)

    return asyncio.run(go())


def requests(sb: SandboxServer) -> int:
    return sum(int(requests_log(sb, s)["requests"]) for s in SERVICES)


NESTED_LOOPS = "{% for a in params.s %}{% for b in params.s %}{{ b }}{% endfor %}{% endfor %}"


@pytest.mark.parametrize(
    ("field", "template", "message"),
    [
        ("with", NESTED_LOOPS, "loops ran over 100000 iterations"),
        ("with", '{{ ([("x" * 100000)] * 100000) | join }}', "over 1000000 characters"),
        ("with", '{{ "%999999999d" % 1 }}', "too large"),
        ("with", '{{ params.s | replace("x", "x" * 100000) }}', "replace would produce"),
        ("with", '{{ (params.s | replace("x", "x\\n")) | indent(100000) }}', "indent would"),
        ("with", "{{ ((((10 ** 64) ** 64) ** 64) ** 64) }}", "integer over"),
        ("when", "((((10 ** 64) ** 64) ** 64) ** 64) > 1", "integer over"),
        ("for_each", "(params.s | list) * 100000", "repetition"),
    ],
)
def test_a_template_bomb_fails_its_step_and_sends_nothing(
    sb: SandboxServer, field: str, template: str, message: str
) -> None:
    step: dict[str, Any] = {
        "id": "ticket",
        "uses": "jira.create_issue",
        "timeout": "5s",
        "with": {"project_key": "OPS", "summary": "x"},
    }
    if field == "with":
        step["with"]["summary"] = template
    else:
        step[field] = template
    spec = make_spec({"name": "bomb", "parameters": {"s": {"type": "string"}}, "steps": [step]})
    result = run(sb, spec, {"s": "x" * 100_000})
    assert result.status == "failed" and result.failed_step == "ticket"
    assert message in (result.error or ""), result.error
    assert "Traceback" not in (result.error or "")
    assert requests(sb) == 0


def test_for_each_over_the_cap_fails_before_the_run_starts(sb: SandboxServer) -> None:
    """The issue's repro: ``'["Engineering"] * params.n'`` with n=5000 sent 5,000 requests."""
    spec = make_spec(
        {
            "name": "fanout",
            "parameters": {"n": {"type": "integer"}},
            "steps": [
                {"id": "hire", "uses": "workday.get_worker", "with": {"worker_id": "x"}},
                {
                    "id": "groups",
                    "uses": "okta.list_groups",
                    "needs": ["hire"],
                    "for_each": '["Engineering"] * params.n',
                    "with": {"q": "{{ item }}"},
                },
            ],
        }
    )
    with pytest.raises(ParameterError, match="5000 items, more than the limit of 1000"):
        run(sb, spec, {"n": 5000})
    assert requests(sb) == 0
    with pytest.raises(ParameterError, match=r"limit of 3 \(JUNCTION_WORKFLOW_MAX_ITEMS\)"):
        run(sb, spec, {"n": 4}, workflow_max_items=3)
    assert requests(sb) == 0


def test_for_each_over_a_step_output_above_the_cap_sends_nothing_for_that_step(
    sb: SandboxServer,
) -> None:
    spec = make_spec(
        {
            "name": "fanout_output",
            "steps": [
                {"id": "groups", "uses": "okta.list_groups", "with": {"limit": 10}},
                {
                    "id": "members",
                    "uses": "okta.add_user_to_group",
                    "for_each": "steps.groups.output['items']",
                    "with": {"group_id": "{{ item.id }}", "user_id": "00u1"},
                },
            ],
        }
    )
    result = run(sb, spec, {}, workflow_max_items=1)
    assert result.failed_step == "members"
    assert "more than the limit of 1" in (result.error or ""), result.error
    log = requests_log(sb, "okta")["routes"]
    assert [route for route in log if route.startswith("PUT")] == []
