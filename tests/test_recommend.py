"""Recommendations on crafted calls/runs (analytics.recommend), and applying them
(analytics.apply): a revision and a diff, never an unvalidated spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analytics.apply import ApplyResult, apply_recommendations, next_revision
from analytics.recommend import Change, Recommendation, load_specs, recommend

SPEC = """\
# Crafted workflow for the recommendation tests.
name: onboard_test
description: Lookups, a group listing, a ticket and a notification
parameters:
  worker_id: {type: string, required: true}
  logins: {type: array, default: []}
steps:
  - id: worker  # the same worker is looked up on every run
    uses: workday.get_worker
    with: {worker_id: "{{ params.worker_id }}"}
  - id: groups
    uses: okta.list_groups
    needs: [worker]  # ordering only: groups never reads worker's output
  - id: lookup
    uses: okta.get_user
    for_each: "params.logins"
    with: {login: "{{ item }}"}
  - id: ticket
    uses: jira.create_issue
    with: {project_key: IT, summary: "Onboard {{ steps.worker.output.worker_id }}"}
    timeout: 2s
  - id: notify
    uses: notify.send
    with: {channel: "#it", text: "Onboarded {{ params.worker_id }}"}
    providers: [webex, slack]
"""

START = datetime(2026, 11, 1, tzinfo=UTC)


def call(ts: datetime, service: str, action: str, method: str, path: str, **kw: Any) -> dict:
    row = {
        "ts": ts,
        "service": service,
        "action": action,
        "method": method,
        "path": path,
        "ok": True,
        "latency_ms": 100.0,
        "error_class": None,
        "attempts": 1,
        "run_id": None,
    }
    row.update(kw)
    return row


def crafted(runs: int = 100, start: datetime = START) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(7)
    calls: list[dict] = []
    run_rows: list[dict] = []
    for i in range(runs):
        t = start + timedelta(minutes=10 * i)
        rid = f"run{i}"
        run_rows.append(
            {
                "run_id": rid,
                "workflow": "onboard_test",
                "started_at": t,
                "status": "completed",
                "duration_ms": 3000.0,
            }
        )
        calls.append(
            call(
                t,
                "workday",
                "get_worker",
                "GET",
                "/workers/W1",
                run_id=rid,
                latency_ms=200 + rng.normal(0, 5),
            )
        )
        calls.append(
            call(
                t,
                "okta",
                "list_groups",
                "GET",
                "/api/v1/groups",
                run_id=rid,
                latency_ms=300 + rng.normal(0, 5),
            )
        )
        for k in range(5):
            calls.append(
                call(
                    t,
                    "okta",
                    "get_user",
                    "GET",
                    f"/api/v1/users/u{i}-{k}",
                    run_id=rid,
                    latency_ms=80.0,
                )
            )
        timed_out = i % 10 == 0
        calls.append(
            call(
                t,
                "jira",
                "create_issue",
                "POST",
                "/rest/api/3/issue",
                run_id=rid,
                ok=not timed_out,
                error_class="APITimeoutError" if timed_out else None,
                latency_ms=2000.0 if timed_out else 1500 + 400 * rng.random(),
            )
        )
        webex_fail = i % 5 == 0
        calls.append(
            call(
                t,
                "webex",
                "create_message",
                "POST",
                "/messages",
                run_id=rid,
                ok=not webex_fail,
                latency_ms=250.0,
                error_class="ServerError" if webex_fail else None,
            )
        )
        calls.append(
            call(
                t,
                "slack",
                "post_message",
                "POST",
                "/chat.postMessage",
                source="cli",
                latency_ms=150.0,
            )
        )
    return pd.DataFrame(calls), pd.DataFrame(run_rows)


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "onboard_test.yaml").write_text(SPEC)
    return tmp_path


def by_kind(recs: list[Recommendation]) -> dict[str, list[Recommendation]]:
    out: dict[str, list[Recommendation]] = {}
    for r in recs:
        out.setdefault(r.kind, []).append(r)
    return out


def test_every_kind_is_found_with_savings_and_confidence(spec_dir: Path) -> None:
    calls, runs = crafted()
    recs = recommend(calls, runs, load_specs(spec_dir))
    kinds = by_kind(recs)
    assert set(kinds) == {"cache", "parallelize", "batch", "provider", "retry", "timeout"}, recs
    assert {r.step for r in kinds["cache"]} == {"worker", "groups"}  # both repeat reads
    cache = next(r for r in kinds["cache"] if r.step == "worker")
    assert cache.confidence >= 0.9
    assert cache.saving_calls_per_day == pytest.approx(99 / (99 * 10 / 1440), rel=0.01)
    assert cache.change is not None and cache.change.new == {"ttl": "15m"}
    par = kinds["parallelize"][0]
    assert par.step == "groups" and par.confidence >= 0.9 and par.change is not None
    assert par.change.new is None  # the only needs entry goes
    assert par.saving_ms_per_day == pytest.approx(200 * 144, rel=0.05)  # 144 runs/day
    batch = kinds["batch"][0]
    assert batch.step == "lookup" and batch.change is not None and batch.change.new == 20
    assert 0 < batch.confidence < 0.9
    provider = kinds["provider"][0]
    assert provider.service == "slack" and provider.change is not None
    assert provider.change.new == ["slack", "webex"]
    assert {r.step for r in kinds["retry"]} == {"ticket", "notify"}
    timeout = kinds["timeout"][0]
    assert timeout.step == "ticket" and timeout.change is not None
    assert timeout.change.new == "3s"
    assert all(0 <= r.confidence <= 1 for r in recs)
    assert [r.confidence for r in recs] == sorted((r.confidence for r in recs), reverse=True)


def test_no_findings_on_healthy_cached_data_or_no_data(spec_dir: Path) -> None:
    assert recommend(pd.DataFrame(), pd.DataFrame(), load_specs(spec_dir)) == []
    calls, runs = crafted(runs=3)  # too few runs for confident advice
    recs = recommend(calls, runs, load_specs(spec_dir))
    assert all(r.confidence < 0.9 for r in recs)


def test_apply_writes_revision_and_diff_and_keeps_comments(spec_dir: Path) -> None:
    calls, runs = crafted()
    recs = recommend(calls, runs, load_specs(spec_dir))
    spec_path = spec_dir / "onboard_test.yaml"

    dry = apply_recommendations(recs, dry_run=True)
    assert dry.diff and spec_path.read_text() == SPEC and not (spec_dir / ".history").exists()

    result = apply_recommendations(recs, threshold=0.9)
    auto = {r.id for r in recs if r.confidence >= 0.9 and r.change is not None}
    assert set(result.applied) == auto and auto
    assert {r.kind for r in recs if r.id in auto} >= {"cache", "parallelize"}
    applied_spec = result.specs[0]
    assert applied_spec.revision_path == spec_dir / ".history" / "onboard_test.rev1.yaml"
    assert applied_spec.revision_path.read_text() == SPEC
    text = spec_path.read_text()
    assert "# the same worker is looked up on every run" in text
    assert "cache: {ttl: 15m}" in text
    assert "needs: [worker]" not in text
    assert "-    needs: [worker]  # ordering only" in result.diff
    assert "+    cache: {ttl: 15m}" in result.diff
    skipped = dict(result.skipped)
    assert any("below threshold" in why for why in skipped.values())

    from junction.workflows.validate import validate_text

    assert validate_text(text).errors == []

    # A person accepts the provider switch; the second edit keeps revision 2.
    provider = next(r for r in recs if r.kind == "provider")
    second = apply_recommendations(recs, accept=[provider.id, "nope-1234"])
    assert second.applied == [provider.id]
    assert ("nope-1234", "unknown recommendation id") in second.skipped
    assert (spec_dir / ".history" / "onboard_test.rev2.yaml").read_text() == text
    assert "providers: [slack, webex]" in spec_path.read_text()
    assert next_revision(spec_path).name == "onboard_test.rev3.yaml"

    # Applying the same recommendations again: the spec moved on, nothing is written.
    again = apply_recommendations(recs, accept=[provider.id])
    assert again.applied == [] and "is now" in dict(again.skipped)[provider.id]


def test_apply_never_writes_a_spec_the_validator_rejects(spec_dir: Path) -> None:
    """An edit that would make the spec invalid is skipped: no write, no revision."""
    spec_path = spec_dir / "onboard_test.yaml"
    bad = Recommendation(
        id="timeout-bad",
        kind="timeout",
        workflow="onboard_test",
        step="ticket",
        service="jira",
        title="A timeout no runner can run",
        rationale="crafted",
        saving_ms_per_day=0.0,
        saving_calls_per_day=0.0,
        confidence=1.0,
        change=Change(str(spec_path), "ticket", "timeout", "2s", "forever"),
    )
    result = apply_recommendations([bad], accept=["timeout-bad"])
    assert result.applied == [] and result.specs == []
    assert "the edited spec would be invalid" in dict(result.skipped)["timeout-bad"]
    assert spec_path.read_text() == SPEC
    assert not (spec_dir / ".history").exists()
    dry = apply_recommendations([bad], accept=["timeout-bad"], dry_run=True)
    assert dry.diff == "" and "would be invalid" in dict(dry.skipped)["timeout-bad"]


def test_apply_skips_a_spec_file_the_bounded_loader_refuses(spec_dir: Path) -> None:
    """The round-trip YAML parser has no limits: a spec changed into an alias bomb after
    the recommendations were made is refused by the bounded loader first."""
    calls, runs = crafted()
    recs = recommend(calls, runs, load_specs(spec_dir))
    spec_path = spec_dir / "onboard_test.yaml"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    spec_path.write_text(bomb)
    result = apply_recommendations(recs, threshold=0.9)
    assert result.applied == []
    assert all("cannot read" in why for _, why in result.skipped if "threshold" not in why)
    assert spec_path.read_text() == bomb


def test_apply_result_as_json() -> None:
    import json

    doc = ApplyResult(skipped=[("cache-1", "why")], dry_run=True).as_dict()
    assert json.loads(json.dumps(doc)) == {
        "dry_run": True,
        "specs": [],
        "skipped": [{"id": "cache-1", "reason": "why"}],
    }
