"""Every workflow spec a typed deployment, on a REAL `prefect server start` and process worker.

`python -m deployments.specs` (run from another directory) deploys each built-in spec and
each spec of the user's folder; the deployment's parameter schema has the spec's types,
defaults, descriptions and enums; the server refuses a run with a missing or mistyped
parameter at submission; a valid run completes on a worker and is recorded.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.local import ROOT, WORK_POOL, PrefectServer, Worker, ensure_work_pool
from tests import test_deployments
from tests.test_deployments import TERMINAL, _run_logs
from tests.test_service_api import WORKER_0

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(900)]

# The same module-scoped fixtures: a real server for this module, a client retrying 503s.
prefect_server = test_deployments.postgres_prefect_server
api = test_deployments.api

USER_SPEC = """\
name: worker_lookup
description: Look up one Workday worker.
parameters:
  worker_id: {type: string, required: true, description: Workday worker id.}
  ratio: {type: number, default: 0.5, description: A number.}
  strict: {type: boolean, default: false, description: A flag.}
  mode: {type: string, default: fast, enum: [fast, slow], description: How.}
  note: {type: string, required: false, description: "Optional, no default."}
steps:
  - id: worker
    uses: workday.get_worker
    with: {worker_id: "{{ params.worker_id }}"}
"""


@pytest.fixture(scope="module")
def deployed(
    prefect_server: PrefectServer, api: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("junction-home")
    (home / "specs").mkdir()
    (home / "specs" / "worker_lookup.yaml").write_text(USER_SPEC)
    (home / "specs" / "broken.yaml").write_text("name: broken\nsteps: []\n")
    env = {k: v for k, v in prefect_server.env.items() if not k.startswith("JUNCTION_")}
    env["JUNCTION_HOME"] = str(home)
    ensure_work_pool(env=env)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    done = subprocess.run(
        [sys.executable, "-m", "deployments.specs"],
        cwd=elsewhere,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = {d["name"]: d for d in api.post("/deployments/filter", json={}).json()}
    return {"home": home, "env": env, "deployments": found, "output": done.stdout + done.stderr}


def test_every_spec_is_a_deployment(deployed: dict[str, Any]) -> None:
    from junction.workflows.builtins import builtin_specs

    names = set(deployed["deployments"])
    assert {*builtin_specs(), "worker_lookup"} == names, deployed["output"]
    assert "broken.yaml skipped" in deployed["output"]
    for name, deployment in deployed["deployments"].items():
        assert deployment["entrypoint"] == f"flows/spec_flows.py:{name}"
        assert deployment["work_pool_name"] == WORK_POOL
        assert deployment["enforce_parameter_schema"] is True
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ]
        assert {"junction", "kind:workflow"} <= set(deployment["tags"])


def test_the_schema_is_the_specs_parameters(deployed: dict[str, Any]) -> None:
    onboarding = deployed["deployments"]["employee_onboarding"]
    assert {"source:builtin", "integration:okta", "integration:workday"} <= set(onboarding["tags"])
    schema = onboarding["parameter_openapi_schema"]
    assert schema["required"] == ["worker_id"]
    props = schema["properties"]
    assert props["worker_id"]["type"] == "string"
    assert "Workday ID" in props["worker_id"]["description"]
    assert props["gitlab_access_level"] | {"description": "", "position": 0} == {
        "default": 30,
        "description": "",
        "enum": [10, 20, 30, 40],
        "position": 0,
        "title": "gitlab_access_level",
        "type": "integer",
    }
    assert props["okta_groups"]["type"] == "array"
    assert props["okta_groups"]["items"] == {"type": "string"}
    assert props["okta_groups"]["default"] == ["Engineering"]

    user = deployed["deployments"]["worker_lookup"]
    assert set(user["tags"]) == {
        "junction",
        "kind:workflow",
        "source:user",
        "integration:workday",
    }
    props = user["parameter_openapi_schema"]["properties"]
    assert props["ratio"]["type"] == "number" and props["ratio"]["default"] == 0.5
    assert props["strict"]["type"] == "boolean"
    assert props["mode"]["enum"] == ["fast", "slow"]
    assert {"type": "string"} in props["note"]["anyOf"]  # optional: string or null
    assert user["parameter_openapi_schema"]["required"] == ["worker_id"]


def _flow_runs(api: httpx.Client, deployment_id: str) -> list[dict[str, Any]]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
    response = api.post("/flow_runs/filter", json=body)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()
    return runs


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "'worker_id' is a required property"),
        ({"worker_id": WORKER_0, "gitlab_access_level": 31}, "31 is not one of [10, 20, 30, 40]"),
        ({"worker_id": WORKER_0, "okta_groups": "Engineering"}, "is not of type 'array'"),
    ],
)
def test_bad_parameters_are_refused_at_submission(
    deployed: dict[str, Any], api: httpx.Client, parameters: dict[str, Any], message: str
) -> None:
    deployment_id = deployed["deployments"]["employee_onboarding"]["id"]
    response = api.post(
        f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters}
    )
    # Prefect's server answers 409 (not 422) when the deployment's schema refuses them.
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail.startswith("Error creating flow run: Validation failed")
    assert message in detail
    assert _flow_runs(api, deployment_id) == []  # nothing was scheduled


def test_a_valid_run_completes_on_a_worker(
    deployed: dict[str, Any], api: httpx.Client, tmp_path: Path
) -> None:
    from integrations.sandbox.app import SandboxServer
    from junction.store import MetricsStore

    home: Path = deployed["home"]
    env = dict(deployed["env"])
    deployment_id = deployed["deployments"]["employee_onboarding"]["id"]
    with SandboxServer(port=0, smtp_port=0) as sandbox:
        env.update(
            JUNCTION_SANDBOX_URL=sandbox.url,
            JUNCTION_SANDBOX_SMTP_PORT=str(sandbox.smtp_port),
            PREFECT_WORKER_QUERY_SECONDS="2",
        )
        with Worker(env=env, log_path=tmp_path / "worker.log") as worker:
            created = api.post(
                f"/deployments/{deployment_id}/create_flow_run",
                json={"parameters": {"worker_id": WORKER_0, "okta_groups": ["Engineering"]}},
            )
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]
            state: dict[str, Any] = {}
            deadline = time.monotonic() + 300  # a new Python process per flow run
            while time.monotonic() < deadline and worker.running:
                state = api.get(f"/flow_runs/{run_id}").json().get("state") or {}
                if state.get("type") in TERMINAL:
                    break
                time.sleep(1)
            diagnostics = (
                f"state: {state}\n--- worker log ---\n{worker.log_tail()}\n"
                f"--- flow run logs ---\n{_run_logs(api, run_id)}"
            )
            assert state.get("type") == "COMPLETED", diagnostics
            # The run's log says what it did (flows/runlog.py), not only its final state.
            # Read while the worker runs: the flow's process sends its last log batch after
            # the state, and stopping the worker first would end that process.
            logs = _run_logs(
                api,
                run_id,
                expect=("20 workflow employee_onboarding completed in ", "20 slowest steps: "),
            )

    run = api.get(f"/flow_runs/{run_id}").json()
    assert run["parameters"]["worker_id"] == WORKER_0
    assert "20 workflow employee_onboarding completed in " in logs, logs  # 20: INFO
    assert "20 slowest steps: " in logs, logs
    with MetricsStore(home / "metrics") as store:
        rows = store.query(
            "SELECT workflow, status FROM workflow_runs WHERE run_id = ?", [run_id]
        ).to_dict("records")
    assert rows == [{"workflow": "employee_onboarding", "status": "completed"}], diagnostics
