"""The product plan's flags gate what they name, both ways, on every path.

CROSS_SERVICE_ORCHESTRATION_ENABLED=false refuses a run of a workflow that spans more
than one integration (CLI, API, the workflow flow) and lets a one-integration workflow
run; WORKFLOW_OPTIMIZATION_ENABLED=false refuses recommendations (CLI, API).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from junction.features import (
    FeatureDisabledError,
    check_optimization,
    check_orchestration,
    spec_integrations,
)
from junction.settings import Settings, get_settings
from junction.store import MetricsStore
from junction.workflows.validate import load_workflow
from tests.helpers import run_junction
from tests.test_service_api import WORKER_0

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

ONE_SERVICE = """\
name: worker_lookup
description: Look up one Workday worker.
parameters:
  worker_id: {type: string, required: true, description: Workday worker id.}
steps:
  - id: worker
    uses: workday.get_worker
    with: {worker_id: "{{ params.worker_id }}"}
"""

TWO_SERVICES = (
    ONE_SERVICE.replace("worker_lookup", "worker_and_user")
    + """\
  - id: groups
    uses: okta.list_groups
    with: {q: Eng}
"""
)

OFF = "false"
OPTIMIZATION = "/api/v2/workflows/enhanced/optimization"


@pytest.fixture
def specs(tmp_path: Path) -> dict[str, Path]:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(ONE_SERVICE)
    two.write_text(TWO_SERVICES)
    return {"one": one, "two": two}


def _sandbox_env(sb: SandboxServer, **flags: str) -> dict[str, str]:
    return {
        "JUNCTION_SANDBOX_URL": sb.url,
        "JUNCTION_SANDBOX_SMTP_PORT": str(sb.smtp_port),
        **flags,
    }


def test_what_a_spec_spans(specs: dict[str, Path]) -> None:
    assert spec_integrations(load_workflow(specs["one"])) == ["workday"]
    assert spec_integrations(load_workflow(specs["two"])) == ["okta", "workday"]
    # Fallbacks and capability providers count: the onboarding may reach email and ServiceNow.
    onboarding = spec_integrations(load_workflow("employee_onboarding"))
    assert {"workday", "okta", "gitlab", "smtp", "servicenow"} <= set(onboarding)


def test_checks_both_ways(specs: dict[str, Path]) -> None:
    two = load_workflow(specs["two"])
    check_orchestration(two, Settings(cross_service_orchestration_enabled=True))
    off = Settings(cross_service_orchestration_enabled=False)
    check_orchestration(load_workflow(specs["one"]), off)  # one integration: not gated
    with pytest.raises(FeatureDisabledError) as caught:
        check_orchestration(two, off)
    assert str(caught.value) == (
        "workflow 'worker_and_user' spans 2 integrations (okta, workday) and cross-service "
        "orchestration is disabled (CROSS_SERVICE_ORCHESTRATION_ENABLED=false)"
    )
    check_optimization(Settings(workflow_optimization_enabled=True))
    with pytest.raises(FeatureDisabledError, match=r"WORKFLOW_OPTIMIZATION_ENABLED=false"):
        check_optimization(Settings(workflow_optimization_enabled=False))


def test_cli_workflow_run_both_ways(
    sb: SandboxServer, specs: dict[str, Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    args = ["workflow", "run", "--local", "--json", "-p", f"worker_id={WORKER_0}"]
    off = _sandbox_env(sb, CROSS_SERVICE_ORCHESTRATION_ENABLED=OFF)
    refused = run_junction([*args[:2], str(specs["two"]), *args[2:]], off, home=home)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "CROSS_SERVICE_ORCHESTRATION_ENABLED=false" in lines[0]
    assert "nothing was run" in lines[0] and "Traceback" not in refused.stderr
    with MetricsStore(home / "metrics") as store:
        assert store.count("workflow_runs") == 0

    alone = run_junction([*args[:2], str(specs["one"]), *args[2:]], off, home=home)
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["status"] == "completed"

    on = _sandbox_env(sb, CROSS_SERVICE_ORCHESTRATION_ENABLED="true")
    both = run_junction([*args[:2], str(specs["two"]), *args[2:]], on, home=home)
    assert both.returncode == 0, both.stderr
    assert json.loads(both.stdout)["status"] == "completed"


def test_cli_recommendations_both_ways(tmp_path: Path) -> None:
    home = tmp_path / "home"
    off = run_junction(
        ["analytics", "recommend"], {"WORKFLOW_OPTIMIZATION_ENABLED": OFF}, home=home
    )
    assert off.returncode == 2
    assert off.stderr.strip() == (
        "error: workflow optimization is disabled (WORKFLOW_OPTIMIZATION_ENABLED=false); "
        "nothing was computed or written"
    )
    on = run_junction(["analytics", "recommend", "--json"], home=home)
    assert on.returncode == 0, on.stderr
    assert json.loads(on.stdout) == []  # an empty store: nothing to recommend


@pytest.fixture
def flags_off(sandbox: SandboxServer, tmp_path: Path) -> Iterator[object]:
    from tests.service_helpers import ServiceServer, service_settings

    values = service_settings(
        tmp_path,
        sandbox,
        cross_service_orchestration_enabled=False,
        workflow_optimization_enabled=False,
        monitor_interval_seconds=3600.0,
    )
    with ServiceServer(values) as server:
        yield server.info()


def test_api_both_ways(flags_off: object, specs: dict[str, Path]) -> None:
    from tests.service_helpers import ApiServer
    from tests.test_service_api import error_of

    assert isinstance(flags_off, ApiServer)
    with flags_off.client() as api:
        body = {"spec": "employee_onboarding", "params": {"worker_id": WORKER_0}}
        error = error_of(api.post("/api/v2/workflows/run", json=body), 403, "disabled")
        assert "CROSS_SERVICE_ORCHESTRATION_ENABLED=false" in error["message"]
        assert "nothing was run" in error["message"]
        error = error_of(api.post(f"{OPTIMIZATION}/analyze", json={}), 403, "disabled")
        assert "WORKFLOW_OPTIMIZATION_ENABLED=false" in error["message"]
        error_of(api.post(f"{OPTIMIZATION}/apply", json={}), 403, "disabled")


def test_api_optimization_on(api_server: object) -> None:
    from tests.service_helpers import ApiServer

    assert isinstance(api_server, ApiServer)
    assert api_server.settings.workflow_optimization_enabled
    with api_server.client() as api:
        assert api.post(f"{OPTIMIZATION}/analyze", json={}).status_code == 200


def test_the_workflow_flow_refuses_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.workflow import run_workflow

    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("CROSS_SERVICE_ORCHESTRATION_ENABLED", OFF)
    get_settings.cache_clear()
    try:
        # The flow's body: the refusal comes before Prefect or any client is involved.
        state = asyncio.run(run_workflow.fn("employee_onboarding", {"worker_id": WORKER_0}))
    finally:
        get_settings.cache_clear()
    assert state.is_failed()
    assert "CROSS_SERVICE_ORCHESTRATION_ENABLED=false" in (state.message or "")
    assert not (tmp_path / "metrics").exists()


def test_the_workflow_flow_refuses_bad_input_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The generic deployment's free-form input: refused as a Failed state naming the
    problem, before any call, without a traceback."""
    from flows.workflow import run_workflow

    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        missing = asyncio.run(run_workflow.fn("employee_onboarding", {}))
        unknown = asyncio.run(run_workflow.fn("no_such_spec", {}))
    finally:
        get_settings.cache_clear()
    assert missing.is_failed() and missing.message == (
        "missing required parameter 'worker_id' (string); nothing was run"
    )
    assert unknown.is_failed() and (unknown.message or "").startswith("no spec file 'no_such_spec'")
    with MetricsStore(tmp_path / "metrics") as store:
        assert store.count("calls") == 0 and store.count("workflow_runs") == 0
