"""The dependency map: from specs (workflows -> steps -> services, fallbacks included), from
run history (co-failures in the metrics store), and its Mermaid / DOT export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from junction.store import MetricsStore
from junction.workflows.depmap import (
    CoFailure,
    build_map,
    cofailures,
    cofailures_from_windows,
    dependents_of,
    service_dependencies,
)
from junction.workflows.spec import WorkflowSpec


@pytest.fixture
def spec() -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "flow",
            "steps": [
                {"id": "hire", "uses": "workday.get_worker", "with": {"worker_id": "w"}},
                {
                    "id": "user",
                    "uses": "okta.create_user",
                    "with": {
                        "first_name": "{{ steps.hire.output.descriptor }}",
                        "last_name": "x",
                        "email": "a@b.c",
                    },
                },
                {
                    "id": "ticket",
                    "uses": "jira.create_issue",
                    "needs": ["user"],
                    "with": {"project_key": "P", "summary": "s"},
                    "fallback": [
                        {"uses": "gitlab.create_issue", "with": {"project": 1, "title": "t"}}
                    ],
                },
                {
                    "id": "tell",
                    "uses": "notify.send",
                    "with": {"text": "t", "channel": "c"},
                    "providers": ["slack"],
                    "fallback": ["webex"],
                },
            ],
        }
    )


def test_steps_and_their_services(spec: WorkflowSpec) -> None:
    nodes = {n.step: n for n in build_map([spec]).steps}
    assert nodes["hire"].services == ("workday",) and nodes["hire"].needs == ()
    assert nodes["user"].needs == ("hire",)
    assert nodes["ticket"].services == ("jira", "gitlab")
    assert nodes["ticket"].fallbacks == ("gitlab",) and nodes["ticket"].primary == ("jira",)
    assert nodes["ticket"].needs == ("user",)
    assert nodes["tell"].services == ("slack", "webex") and nodes["tell"].fallbacks == ("webex",)


def test_service_dependencies(spec: WorkflowSpec) -> None:
    deps = service_dependencies([spec])
    assert deps["workflow:flow"] == {"workday", "okta", "jira", "gitlab", "slack", "webex"}
    assert deps["okta"] == {"workday"}
    assert deps["jira"] == {"okta", "workday"}  # transitively upstream
    assert "gitlab" not in deps  # a fallback gates nothing
    assert "slack" not in deps  # "tell" has no upstream step
    assert "workday" not in deps
    assert dependents_of("workday", [spec]) == {"workflow:flow", "okta", "jira"}
    assert dependents_of("slack", [spec]) == {"workflow:flow"}


def test_builtin_map_covers_every_builtin() -> None:
    deps = service_dependencies()
    assert {k for k in deps if k.startswith("workflow:")} == {
        "workflow:ci_failure_triage",
        "workflow:employee_offboarding",
        "workflow:employee_onboarding",
        "workflow:incident_response",
    }
    assert deps["workflow:incident_response"] == {"pagerduty", "webex"}
    assert "workday" in deps["okta"]


def test_mermaid_export(spec: WorkflowSpec) -> None:
    text = build_map([spec]).to_mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  subgraph wf_flow["flow"]' in lines
    assert '    flow_hire["hire<br/>workday.get_worker"]' in lines
    assert '  svc_workday[("workday")]' in lines
    assert "  flow_hire --> flow_user" in lines
    assert "  flow_user --> svc_okta" in lines
    assert "  flow_ticket -.->|fallback| svc_gitlab" in lines
    assert "  flow_ticket --> svc_jira" in lines


def test_dot_export(spec: WorkflowSpec) -> None:
    dep_map = build_map([spec])
    dep_map.cofailures = [CoFailure("jira", "okta", both=3, a_failed=4, b_failed=3, windows=10)]
    text = dep_map.to_dot()
    assert text.startswith("digraph junction {") and text.rstrip().endswith("}")
    assert '"flow/hire" -> "flow/user";' in text
    assert '"flow/ticket" -> "svc/gitlab" [style=dashed, label="fallback"];' in text
    assert '"svc/okta" [shape=cylinder, label="okta"];' in text
    assert (
        '"svc/jira" -> "svc/okta" [dir=none, style=dotted, color=red, label="J=0.75 n=3"];' in text
    )
    assert 'svc_jira -.-|"co-fail J=0.75 n=3"| svc_okta' in dep_map.to_mermaid()
    assert "co-fail" not in dep_map.to_mermaid(min_jaccard=0.9)


def test_cofailure_measures() -> None:
    windows = {
        0: {"a": (10, 9), "b": (5, 5), "c": (4, 0)},
        1: {"a": (10, 8), "b": (5, 0), "c": (4, 4)},
        2: {"a": (10, 1), "b": (5, 5)},  # a below the failure rate here
        3: {"a": (10, 10), "b": (5, 4), "c": (4, 4)},
    }
    found = {(c.a, c.b): c for c in cofailures_from_windows(windows, min_failure_rate=0.5)}
    ab = found[("a", "b")]
    assert (ab.both, ab.a_failed, ab.b_failed, ab.windows) == (2, 3, 3, 4)
    assert ab.jaccard == pytest.approx(2 / 4)
    assert ab.p_b_given_a == pytest.approx(2 / 3) and ab.p_a_given_b == pytest.approx(2 / 3)
    ac = found[("a", "c")]
    assert (ac.both, ac.a_failed, ac.b_failed, ac.windows) == (2, 3, 2, 3)
    assert ac.p_a_given_b == 1.0 and ac.jaccard == pytest.approx(2 / 3)
    assert list(found) == [("a", "c"), ("a", "b"), ("b", "c")]  # strongest first
    assert found[("b", "c")].to_dict()["jaccard"] == 0.25  # b: 0, 2, 3; c: 1, 3


def test_cofailure_groups() -> None:
    dep_map = build_map([])
    dep_map.cofailures = [
        CoFailure("a", "b", both=5, a_failed=5, b_failed=6, windows=20),
        CoFailure("b", "c", both=4, a_failed=6, b_failed=4, windows=20),
        CoFailure("d", "e", both=1, a_failed=1, b_failed=1, windows=20),  # too few windows
        CoFailure("f", "g", both=3, a_failed=10, b_failed=10, windows=20),  # too weak
    ]
    assert dep_map.cofailure_groups(min_jaccard=0.5, min_both=3) == [{"a", "b", "c"}]


def test_cofailures_from_the_metrics_store(tmp_path: Path) -> None:
    """okta and gitlab fail together in two one-minute windows; slack fails alone."""
    base = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    rows = []

    def call(service: str, minute: int, ok: bool) -> None:
        rows.append(
            {
                "ts": base + timedelta(minutes=minute, seconds=10),
                "service": service,
                "action": "x",
                "method": "GET",
                "path": "/",
                "status": 200 if ok else 503,
                "ok": ok,
                "latency_ms": 5.0,
                "attempts": 1,
                "breaker_state": "closed",
                "source": "workflow",
            }
        )

    for minute in range(5):
        broken = minute in (1, 3)
        call("okta", minute, not broken)
        call("gitlab", minute, not broken)
        call("slack", minute, minute != 4)
    with MetricsStore(tmp_path / "m") as store:
        store.append("calls", rows)
        store.flush()
        found = cofailures(store, window_seconds=60, include_probes=False)
        later = cofailures(store, since=base + timedelta(minutes=2), include_probes=False)
        dep_map = build_map([], store=store)
    assert [(c.a, c.b, c.both, c.jaccard) for c in found] == [("gitlab", "okta", 2, 1.0)]
    assert [(c.a, c.b, c.both) for c in later] == [("gitlab", "okta", 1)]
    assert dep_map.cofailure_groups(min_both=2) == [{"gitlab", "okta"}]


def test_cofailures_of_an_empty_store(tmp_path: Path) -> None:
    with MetricsStore(tmp_path / "empty") as store:
        assert cofailures(store) == []


def test_cli_graph_with_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from junction.cli import app
    from junction.settings import get_settings

    now = datetime.now(UTC).replace(second=5, microsecond=0)
    rows = [
        {
            "ts": now - timedelta(minutes=m),
            "service": service,
            "action": "x",
            "method": "GET",
            "path": "/",
            "status": 503,
            "ok": False,
            "latency_ms": 1.0,
            "attempts": 1,
            "breaker_state": "closed",
            "source": "workflow",
        }
        for m in (1, 2, 3)
        for service in ("okta", "workday")
    ]
    with MetricsStore(tmp_path / "metrics") as store:
        store.append("calls", rows)
    monkeypatch.setenv("JUNCTION_STORE_DIR", str(tmp_path / "metrics"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["workflow", "graph", "employee_onboarding", "-f", "json", "--history"]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    (pair,) = json.loads(result.output)["cofailures"]
    assert (pair["a"], pair["b"], pair["both"], pair["jaccard"]) == ("okta", "workday", 3, 1.0)
