"""The API's contract: Schemathesis, from the app's own OpenAPI schema, against the live server.

Every operation of ``/openapi.json`` is fuzzed with inputs Schemathesis derives from the
schema, valid ones and invalid ones, with the bearer token sent, and every response is
checked with all of Schemathesis' checks: no 5xx, the status code is documented, the body
matches the documented schema, the content type is the documented one, a request without
the token is refused, invalid data is rejected. Bounded: a few derandomized examples per
operation and mode (the same cases every run), no per-example deadline. An operation with
path parameters is also fuzzed with them naming things that exist (an alert, an incident,
a silence, a run, a service: seeded in the contained service), so its 2xx answers are
checked too, not only its 404s.

The tests are parametrized by the operations of the app's schema as built at collection
time, and a test checks that the live server documents exactly those.
(``schemathesis.pytest.from_fixture`` would do the parametrizing, but it writes
``Function._nodeid``, which pytest 9 no longer has.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from junction.alerting import state as alert_state
from junction.alerting.alerts import list_alerts
from junction.alerting.engine import AlertEngine
from junction.alerting.rules import default_config
from junction.incidents import list_incidents
from junction.store import MetricsStore
from tests.alerting_helpers import at, failing, healthy
from tests.service_helpers import ApiServer, ServiceServer, service_settings

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

EXAMPLES = 20
"""Hypothesis examples per operation and mode."""

BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# Operations with effects beyond their own answer. They are fuzzed against a service of
# their own (`contained`), never the session's (whose tests count alerts, runs, probes):
# - workflows/run would drive a workflow through the shared sandbox (users created,
#   messages sent): runs are disabled there (JUNCTION_CROSS_SERVICE_ORCHESTRATION_ENABLED
#   =false), so every valid body ends in the documented 403, after validation;
# - optimization/apply edits spec files: its spec directory is an empty temporary one and
#   its store holds no runs, so there is nothing to apply;
# - intelligence/generate with `save` writes a spec file: into that temporary directory;
# - monitoring/start starts a monitor loop probing the sandbox: one enabled integration
#   and an interval of an hour, so at most one sweep of one service;
# - integrations/{name}/check probes the sandbox and records it: one enabled integration,
#   the contained store;
# - silences, acknowledgements, incident notes and post-mortems write the alert database:
#   the contained one's.
SIDE_EFFECTS = frozenset(
    {
        "POST /api/v2/workflows/run",
        "POST /api/v2/workflows/enhanced/optimization/apply",
        "POST /api/v2/workflows/enhanced/intelligence/generate",
        "POST /api/v2/workflows/enhanced/monitoring/start",
        "POST /api/v2/integrations/{name}/check",
        "POST /api/v2/alerts/silences",
        "DELETE /api/v2/alerts/silences/{silence_id}",
        "POST /api/v2/alerts/{ref}/ack",
        "POST /api/v2/incidents/{incident_id}/notes",
        "PUT /api/v2/incidents/{incident_id}/postmortem",
    }
)


def _operations() -> list[tuple[str, bool]]:
    """``METHOD /path`` of every operation of the app's schema (built, not served), and
    whether it takes an input that can be invalid."""
    # Function-level: only this module needs the app at collection time.
    from junction.service.app import create_app
    from junction.settings import Settings

    paths = create_app(Settings()).openapi()["paths"]
    return sorted(
        (f"{m.upper()} {p}", _negatable(op)) for p, ops in paths.items() for m, op in ops.items()
    )


def _negatable(operation: dict[str, Any]) -> bool:
    """Whether an operation has an input that can be invalid: a body, or a parameter that
    is more than a free string (any text is a valid free string: nothing to negate)."""
    free = {"type", "title", "description"}
    return "requestBody" in operation or any(
        p["schema"].get("type") != "string" or set(p["schema"]) - free
        for p in operation.get("parameters", [])
    )


_BUILT = _operations()
OPERATIONS = [label for label, _ in _BUILT]
KNOWN = "known"
"""A third mode: valid inputs with every path parameter naming something that exists."""
CASES = [
    pytest.param(label, mode, id=f"{mode}-{label}")
    for label, has_inputs in _BUILT
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE, KNOWN)
    # Invalid inputs need an input that can be invalid: otherwise no negative cases.
    if (mode is not GenerationMode.NEGATIVE or has_inputs) and (mode != KNOWN or "{" in label)
]


@pytest.fixture(scope="module")
def contained(
    sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """A service of its own for the side-effecting operations (see SIDE_EFFECTS)."""
    home = tmp_path_factory.mktemp("contract-home")
    specs = home / "specs"
    specs.mkdir()
    values = service_settings(
        home,
        sandbox,
        analytics_spec_dir=specs,
        cross_service_orchestration_enabled=False,
        integrations="okta",
        monitor_interval_seconds=3600.0,
    )
    with ServiceServer(values) as server:
        yield server.info()


CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            # Unknown query parameters are ignored, as HTTP APIs conventionally do; invalid
            # values of the documented ones are what the negative cases are for.
            "allow-extra-parameters": False,
            # The token goes with every request (and the `ignored_auth` check sends one
            # without it): a generated Authorization header would be replaced by the
            # test's, so a case "missing" it would reach the server valid.
            "with-security-parameters": False,
        },
        "checks": {
            # A schema-valid request may still be refused with a 422 naming the field: an
            # unknown capability or service, a duration that does not parse, exactly one
            # of `spec`/`text`, an id not recommended: rules over the catalog and across
            # fields that a JSON schema does not carry. The 422 body itself is checked
            # (ErrorBody, and `one_error_shape` below).
            # A body over JUNCTION_API_MAX_BODY_BYTES is refused whole (413) whatever it
            # holds: a long text of multi-byte characters can be within its maxLength and
            # still over the byte limit.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "413", "422"]
            },
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415", "422"]
            },
        },
    }
)


def one_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error is ``{"error": {"code", "message", "details"}}``, with no traceback."""
    assert "Traceback" not in response.text, "a traceback in the body"
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error shape: {body}"
    assert set(body["error"]) == {"code", "message", "details"}, f"not the error shape: {body}"
    assert body["error"]["message"], "an error without a message"
    return True


@pytest.fixture(scope="module")
def known(contained: ApiServer) -> dict[str, str]:
    """Things that exist in the contained service, by path parameter name: an alert still
    firing (gitlab), a resolved incident (okta), a silence, a recorded workflow run."""
    settings = contained.settings
    engine = AlertEngine(alert_state.db_path(settings), default_config(settings))
    engine.evaluate(failing(["okta"], at(0)), now=at(0))
    engine.evaluate([*failing(["gitlab"], at(5)), *healthy(["okta"], at(5))], now=at(5))
    engine.close()
    conn = alert_state.connect(alert_state.db_path(settings))
    try:
        firing = next(a for a in list_alerts(conn) if a.service == "gitlab")
    finally:
        conn.close()
    resolved = next(i for i in list_incidents(settings) if i.state == "resolved")
    with MetricsStore(settings.metrics_dir) as store:
        store.append("workflow_runs", [RUN])
    with contained.client() as client:
        silence = client.post(ALERTS_SILENCES, json={"service": "okta", "duration": "1h"})
        assert silence.status_code == 201, silence.text
    return {
        "ref": str(firing.id),
        "incident_id": resolved.id,
        "silence_id": silence.json()["id"],
        "run_id": RUN["run_id"],
        "name": "okta",
    }


ALERTS_SILENCES = "/api/v2/alerts/silences"
RUN: dict[str, Any] = {
    "run_id": "contract-run-1",
    "workflow": "employee_onboarding",
    "started_at": at(0),
    "ended_at": at(2),
    "status": "completed",
    "duration_ms": 2000.0,
    "steps": 3,
    "retries": 0,
    "fallbacks": 0,
    "params_json": {"worker_id": "w1"},
}


def _schema(server: ApiServer) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=CONFIG, timeout=30)


@pytest.fixture(scope="module")
def schemas(api_server: ApiServer, contained: ApiServer) -> dict[str, tuple[Any, ApiServer]]:
    """Each service's loaded schema, by the label of the operations it serves here."""
    live, own = _schema(api_server), _schema(contained)
    out: dict[str, tuple[Any, ApiServer]] = {}
    for label in OPERATIONS:
        out[label] = (own, contained) if label in SIDE_EFFECTS else (live, api_server)
    out["contained"] = (own, contained)
    return out


def test_the_live_schema_documents_exactly_these_operations(api_server: ApiServer) -> None:
    served = sorted(
        r.ok().label for r in _schema(api_server).get_all_operations() if hasattr(r, "ok")
    )
    assert served == OPERATIONS
    assert set(OPERATIONS) >= SIDE_EFFECTS


def _fuzz(
    operation: Any, server: ApiServer, mode: GenerationMode, path: dict[str, str] | None = None
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path))
    @BOUNDED
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=server.url,
            headers=server.headers,
            additional_checks=[one_error_shape],
            timeout=30,
        )

    run()


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_operation_honours_its_schema(
    label: str,
    mode: GenerationMode | str,
    schemas: dict[str, tuple[Any, ApiServer]],
    request: pytest.FixtureRequest,
) -> None:
    schema, server = schemas[label]
    if mode == KNOWN:  # what exists is in the contained service (seeded by `known`)
        schema, server = schemas["contained"]
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not served"
    if isinstance(mode, GenerationMode):
        _fuzz(operation, server, mode)
        return
    names = re.findall(r"{(\w+)}", label)
    ids = request.getfixturevalue("known")
    _fuzz(operation, server, GenerationMode.POSITIVE, {n: ids[n] for n in names})


def test_the_defects_schemathesis_found_stay_fixed(api_server: ApiServer) -> None:
    # Each request once answered 500 (or a body outside the schema); now the field is named.
    with api_server.client() as client:
        for path in ("health", "metrics"):
            resp = client.get(
                f"/api/v2/workflows/enhanced/monitoring/{path}", params={"window": 1e-308}
            )
            assert resp.status_code == 422, resp.text
            assert resp.json()["error"]["details"][0]["field"] == "query.window"
        # JSON's true is not a number (lax validation took it as 1; a 422 starts nothing).
        for path, body in (
            ("monitoring/start", {"interval_seconds": True}),
            ("optimization/analyze", {"days": True}),
        ):
            resp = client.post(f"/api/v2/workflows/enhanced/{path}", json=body)
            assert resp.status_code == 422, resp.text
            assert resp.json()["error"]["details"][0]["field"] == f"body.{next(iter(body))}"
