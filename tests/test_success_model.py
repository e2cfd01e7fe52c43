"""The workflow success model on synthetic history: spec runs that follow the services'
health, a calibrated model that beats the naive estimate on later held-out runs, the
confidence threshold, and the registry's lifecycle (promote only if better, rollback,
refusing a corrupt or tampered file and falling back to the naive estimate)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from analytics.intelligence.models import live_summary, registry_for, train_and_maybe_promote
from analytics.intelligence.success import predict_success
from analytics.intelligence.training import Dataset, known_plans, load_dataset
from analytics.synthetic import GroundTruth, generate_history
from analytics.synthetic_runs import generate_spec_history, generate_spec_runs
from junction.alerting.alerts import list_alerts
from junction.alerting.engine import AlertEngine
from junction.settings import Settings
from junction.store import MetricsStore
from junction.workflows.builtins import builtin_specs
from junction.workflows.validate import load_workflow
from tests.service_helpers import ApiServer
from tests.test_service_web import logged_in

START = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, GroundTruth]]:
    root = tmp_path_factory.mktemp("spec-history")
    truth, _rows = generate_spec_history(
        root, days=14, seed=3, incidents_per_30_days=12, start=START
    )
    yield root, truth


@pytest.fixture(scope="module")
def data(history: tuple[Path, GroundTruth]) -> Dataset:
    return load_dataset(MetricsStore(history[0]), known_plans())


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, history: tuple[Path, GroundTruth], data: Dataset
) -> Settings:
    """A home with v1 trained and promoted on the history."""
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, store_dir=history[0])
    result = train_and_maybe_promote(settings, data=data)
    assert result.promoted, result.message
    return settings


def _copy_home(settings: Settings, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    return Settings(home=home, store_dir=settings.store_dir)


def test_spec_runs_have_run_ids_and_fail_with_their_services(
    history: tuple[Path, GroundTruth],
) -> None:
    root, truth = history
    store = MetricsStore(root)
    runs = store.query("SELECT run_id, workflow, started_at, status FROM workflow_runs")
    assert set(runs["workflow"]) == set(builtin_specs())
    assert runs["run_id"].notna().all() and runs["run_id"].is_unique
    linked = store.query(
        "SELECT count(DISTINCT c.run_id) AS n FROM calls c JOIN workflow_runs r USING (run_id)"
    )
    assert int(linked["n"].iloc[0]) == len(runs)
    # A run that starts inside an outage of a service its first step calls fails far more
    # often than one that starts when every service is up.
    first = {
        name: load_workflow(p).steps[0].uses.split(".")[0] for name, p in builtin_specs().items()
    }
    started = runs["started_at"].dt.tz_convert(UTC)
    in_outage = np.array(
        [
            bool(truth.in_incident(first[w], [t.to_pydatetime()])[0])
            for w, t in zip(runs["workflow"], started, strict=True)
        ]
    )
    failed = (runs["status"] == "failed").to_numpy()
    assert in_outage.sum() >= 20
    assert failed[in_outage].mean() > 5 * max(failed[~in_outage].mean(), 0.005)


def test_model_beats_naive_on_later_held_out_runs(trained: Settings, data: Dataset) -> None:
    registry = registry_for(trained)
    record = registry.versions()[0]
    assert registry.live() == "v1"
    model, naive = record["metrics"]["model"], record["metrics"]["naive"]
    assert model["n"] == naive["n"] == record["n_test"] >= 1000
    assert model["failures"] >= 10
    # Same held-out runs, later than every training run.
    assert record["training_window"][1] < record["evaluation_window"][0]
    assert model["brier"] < 0.9 * naive["brier"]
    assert model["auc"] > naive["auc"] + 0.05
    for curve in (model["reliability"], naive["reliability"]):
        assert curve and sum(b["n"] for b in curve) == model["n"]
        assert all(0 <= b["observed"] <= 1 and b["lo"] <= b["predicted"] <= b["hi"] for b in curve)
    assert record["features"] and record["sklearn_version"] and len(record["sha256"]) == 64


def test_prediction_uses_live_model_and_reports_not_confident_below_threshold(
    trained: Settings, history: tuple[Path, GroundTruth]
) -> None:
    _root, truth = history
    spec = load_workflow("ci_failure_triage")
    outage = next(i for i in truth.incidents if i.service == "gitlab" and i.failure_rate > 0.8)
    during = predict_success(spec, trained, at=outage.start + timedelta(minutes=8))
    quiet = predict_success(spec, trained, at=START + timedelta(days=12, hours=3))
    assert during.method == quiet.method == "model v1"
    assert during.probability < quiet.probability
    assert any("gitlab" in r for r in during.reasons)
    for p in (during, quiet):
        assert p.confident == (max(p.probability, 1 - p.probability) >= 0.85)
        assert ("not confident" in p.text()) == (not p.confident)
    strict = Settings(
        home=trained.home, store_dir=trained.store_dir, model_confidence_threshold=1.0
    )
    shown = predict_success(spec, strict, at=START + timedelta(days=12, hours=3))
    assert not shown.confident and shown.text().startswith("not confident")


def test_too_little_history_falls_back_to_naive_with_a_note(tmp_path: Path) -> None:
    root = tmp_path / "store"
    generate_spec_history(root, days=0.5, seed=1, start=START, runs_per_hour=1)
    settings = Settings(home=tmp_path / "home", store_dir=root)
    result = train_and_maybe_promote(settings)
    assert not result.trained and "too little history" in result.message
    assert registry_for(settings).versions() == []
    p = predict_success(
        load_workflow("incident_response"), settings, at=START + timedelta(hours=11)
    )
    assert p.method == "naive" and not p.confident and p.model_version is None
    assert p.note and "no success model is live (last training: too little history" in p.note
    assert 0.0 <= p.probability == p.baseline <= 1.0


@pytest.mark.parametrize("damage", ["corrupt", "missing", "hash", "sklearn"])
def test_broken_live_model_falls_back_to_naive_and_warns(
    trained: Settings, tmp_path: Path, damage: str
) -> None:
    settings = _copy_home(trained, tmp_path)
    registry = registry_for(settings)
    model_file = registry.root / "v1.pickle"
    if damage == "corrupt":
        model_file.write_bytes(b"not a pickle")
    elif damage == "missing":
        model_file.unlink()
    else:
        doc = json.loads(registry.file.read_text())
        key = "sha256" if damage == "hash" else "sklearn_version"
        doc["versions"]["v1"][key] = "0" * 64 if damage == "hash" else "0.24.2"
        registry.file.write_text(json.dumps(doc))
    p = predict_success(
        load_workflow("employee_onboarding"), settings, at=START + timedelta(days=13)
    )
    assert p.method == "naive" and not p.confident
    expected = {"corrupt": "sha256", "missing": "missing", "hash": "sha256", "sklearn": "0.24.2"}
    assert p.note and expected[damage] in p.note
    warnings = registry.read()["warnings"]
    assert any(expected[damage] in w["message"] and w["version"] == "v1" for w in warnings)
    assert "; warning: " in live_summary(settings) and expected[damage] in live_summary(settings)


def test_broken_live_model_raises_an_alert_resolved_once_it_loads(
    trained: Settings, tmp_path: Path
) -> None:
    """A refused live model is an alert (service junction, rule success_model) in the alert
    engine, resolved when the version loads again; a broken alerting file never fails it."""
    settings = _copy_home(trained, tmp_path)
    registry = registry_for(settings)
    model_file = registry.root / "v1.pickle"
    good = model_file.read_bytes()
    model_file.write_bytes(b"not a pickle")
    spec = load_workflow("employee_onboarding")
    at = START + timedelta(days=13)
    assert predict_success(spec, settings, at=at).method == "naive"
    engine = AlertEngine.from_settings(settings)
    try:
        (alert,) = [a for a in engine.active_alerts() if a.fingerprint == "junction:success_model"]
        assert alert.service == "junction" and alert.rule == "success_model"
        assert alert.severity.value == "warning" and "v1" in alert.message
        assert "sha256" in alert.message and "naive estimate" in alert.message
    finally:
        engine.close()

    model_file.write_bytes(good)
    assert predict_success(spec, settings, at=at).method == "model v1"
    engine = AlertEngine.from_settings(settings)
    try:
        assert not [a for a in engine.active_alerts() if a.service == "junction"]
        every = list_alerts(engine.conn, include_resolved=True)
        resolved = [a for a in every if a.rule == "success_model"]
        assert resolved and resolved[0].state.value == "resolved"
    finally:
        engine.close()

    broken = tmp_path / "alerting.yaml"
    broken.write_text("rules: [\n")
    other = Settings(home=tmp_path / "other", store_dir=settings.store_dir, alerting_file=broken)
    shutil.copytree(settings.home / "models", other.home / "models")
    (other.home / "models" / "success" / "v1.pickle").write_bytes(b"junk")
    assert predict_success(spec, other, at=at).method == "naive"


def test_candidate_promoted_only_if_better_and_rollback(
    trained: Settings, data: Dataset, tmp_path: Path
) -> None:
    settings = _copy_home(trained, tmp_path)
    registry = registry_for(settings)
    # The same runs and seed give the same model: not better than the live one, kept.
    again = train_and_maybe_promote(settings, data=data)
    assert again.trained and not again.promoted and again.version == "v2"
    assert again.live is not None and again.candidate is not None
    assert again.candidate.brier >= again.live.brier
    assert registry.live() == "v1" and "kept" in again.message
    registry.promote("v2")
    assert registry.live() == "v2"
    assert registry.rollback() == "v1"
    assert registry.rollback() is None and registry.live() is None
    with pytest.raises(ValueError, match="no live model"):
        registry.rollback()
    with pytest.raises(ValueError, match="unknown model version 'v9'"):
        registry.promote("v9")
    (registry.root / "v2.pickle").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        registry.promote("v2")


def test_report_and_dashboard_show_the_live_version(
    trained: Settings, api_server: ApiServer
) -> None:
    assert live_summary(trained).startswith("workflow success model: v1 live (held-out Brier ")
    models = api_server.settings.home / "models"
    with logged_in(api_server) as page:
        text = page.get("/workflows").text
        assert "workflow success model: none live, predictions use the naive estimate" in text
        shutil.copytree(trained.home / "models", models)
        try:
            text = page.get("/workflows").text
        finally:
            shutil.rmtree(models)
    assert 'id="success-model">workflow success model: v1 live (held-out Brier' in text


def test_spec_runs_over_a_history_without_every_service(tmp_path: Path) -> None:
    """The demo's history has 8 catalog services: a spec's other services (pagerduty,
    servicenow, smtp) get a healthy default and their calls are still recorded."""
    truth = generate_history(tmp_path, services=["gitlab", "okta"], days=1, seed=2, start=START)
    rows = generate_spec_runs(tmp_path, truth, seed=2)
    store = MetricsStore(tmp_path)
    runs = store.query("SELECT workflow, run_id FROM workflow_runs")
    ours = runs[runs["workflow"].isin(list(builtin_specs()))]
    assert set(ours["workflow"]) == set(builtin_specs()) and len(ours) == rows["workflow_runs"]
    calls = store.query(
        "SELECT DISTINCT service FROM calls WHERE source = 'workflow' AND run_id IS NOT NULL"
    )
    assert {"pagerduty", "workday", "webex", "gitlab"} <= set(calls["service"])
