"""The maintenance schedule's flows (deployments at the end of prefect.yaml):

- ``health-digest`` (daily 07:00 UTC): yesterday's incidents, SLA standing and slowest
  actions, sent to the chat channel (the channels warnings are routed to in the alerting
  file, through the alert outbox: once per day and channel) and published as the
  ``health-digest`` artifact; with no chat channel the digest says so and is only the
  artifact;
- ``optimization-review`` (weekly, Monday 06:00 UTC): the optimization recommendations
  over the last week (:func:`analytics.recommend.recommend`), artifact
  ``optimization-review``; the model retraining is its own deployment
  (``retrain-success-model``);
- ``security-review`` (monthly, the 1st 05:00 UTC): the integrations' configuration and
  the installed packages against ``JUNCTION_ADVISORY_DB`` (OSV, offline), artifact
  ``security-review``;
- ``health-assessment`` (quarterly): trends, capacity forecast and SLA history over the
  last 91 days, artifact ``health-assessment``.

Each flow's body is task calls; the functions below them are plain (``*.fn`` in tests).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from analytics.maintenance import md_table, records
from analytics.maintenance.assessment import Assessment, assess
from analytics.maintenance.digest import Digest, build_digest, incident_frame, sla_frame
from analytics.maintenance.security import (
    RECENT,
    AdvisoryError,
    calls_since,
    installed_distributions,
    integration_frame,
    load_advisories,
    review_integrations,
    vulnerable_packages,
)
from analytics.recommend import load_specs, recommend
from analytics.rollups import Rollups
from flows.runlog import run_logger
from integrations.catalog import load_catalog
from junction.alerting import state as alert_state
from junction.alerting.config import load_settings_config
from junction.alerting.model import Notification, NotificationKind, Severity
from junction.alerting.outbox import Outbox, enqueue
from junction.alerting.sla import sla_report
from junction.incidents import list_incidents
from junction.markdown import md_escape
from junction.settings import Settings, get_settings
from junction.store import open_store
from junction.workflows.builtins import builtin_spec_dir

QUARTER = timedelta(days=91)
NO_CHAT = "no chat channel configured (no channel on the warning route of the alerting file)"
NO_ADVISORIES = "no advisory database configured (set JUNCTION_ADVISORY_DB to an OSV JSON file)"


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


# ------------------------------------------------------------------------ daily digest


def digest_for(day: date, settings: Settings) -> Digest:
    """The digest of ``day`` (UTC) from the alert database and the metrics store."""
    start, end = _day_bounds(day)
    incidents = [i for i in list_incidents(settings, since=start) if i.started_at < end]
    store = open_store(settings)
    sla = sla_report(store, end, load_settings_config(settings).sla)
    rollups = Rollups(store, tables=("calls",))
    rollups.refresh()
    daily = rollups.daily("calls", since=start, until=end)
    return build_digest(day, incident_frame(incidents, end), sla_frame(sla), daily)


def chat_channels(settings: Settings) -> list[str]:
    """The chat channels: those the alerting file routes warnings to (none without one)."""
    return list(load_settings_config(settings).route(Severity.WARNING))


def send_digest(digest: Digest, settings: Settings, now: datetime | None = None) -> str:
    """Queue the digest to each chat channel (one key per day and channel, so a rerun
    never sends it twice) and deliver the outbox once; returns what happened."""
    names = chat_channels(settings)
    if not names:
        return NO_CHAT
    now = now or datetime.now(UTC)
    config = load_settings_config(settings)
    conn = alert_state.connect(alert_state.db_path(settings))
    try:
        for name in names:
            note = Notification(
                key=f"digest:{digest.day.isoformat()}:{name}",
                channel=name,
                kind=NotificationKind.FIRING,
                group_key=f"digest:{digest.day.isoformat()}",
                severity=Severity.WARNING,
                title=digest.headline,
                text=digest.text(),
                fingerprints=(),
                labels={"kind": "digest"},
                starts_at=now,
                created_at=now,
            )
            conn.execute("BEGIN IMMEDIATE")
            enqueue(conn, note, now)
            conn.execute("COMMIT")
        report = asyncio.run(Outbox(conn).deliver_due(config.build_channels(settings), now=now))
    finally:
        conn.close()
    keys = {f"digest:{digest.day.isoformat()}:{n}" for n in names}
    failed = sorted(k.rsplit(":", 1)[1] for k in keys if k in report.errors)
    if failed:
        return f"queued for {', '.join(names)}; not delivered yet to {', '.join(failed)}"
    return f"sent to {', '.join(names)}"


@task(name="health-digest")
def digest_task(day: date) -> Digest:
    """Build, send and publish the digest of ``day``."""
    settings = get_settings()
    digest = digest_for(day, settings)
    delivery = send_digest(digest, settings)
    digest = Digest(digest.day, digest.incidents, digest.sla, digest.slowest, delivery)
    logger = run_logger()
    logger.info("%s", digest.headline)
    logger.log(30 if delivery == NO_CHAT else 20, "digest %s", delivery)
    create_markdown_artifact(
        key="health-digest", markdown=digest.markdown(), description="Daily health digest"
    )
    return digest


@flow(name="health-digest", log_prints=False)
def health_digest(day: date | None = None) -> str:
    """Yesterday's (or ``day``'s) health digest to the chat channel and as an artifact.

    Args:
        day: The UTC day (default: yesterday).

    Returns:
        The digest's headline.
    """
    chosen = day or (datetime.now(UTC) - timedelta(days=1)).date()
    return digest_task(chosen).headline


# ------------------------------------------------------------------ weekly review


def review_markdown(recommendations: list[Any], since: datetime) -> str:
    """The optimization review as Markdown (data escaped)."""
    out = [f"# Optimization review since {since:%Y-%m-%d}", ""]
    if not recommendations:
        return "\n".join([*out, "No recommendations: nothing to change this week.", ""])
    rows = [(r.kind, r.workflow, r.step, r.title, f"{r.confidence:.0%}") for r in recommendations]
    out += md_table(["kind", "workflow", "step", "title", "confidence"], rows[:20], "")
    return "\n".join(out) + "\n"


def optimization_review_for(since: datetime, settings: Settings) -> list[Any]:
    """Recommendations from the calls and workflow runs since ``since``."""
    store = open_store(settings)
    calls = store.query("SELECT * FROM calls WHERE ts >= ?", [since])
    runs = store.query("SELECT * FROM workflow_runs WHERE started_at >= ?", [since])
    return recommend(calls, runs, load_specs(builtin_spec_dir()))


@flow(name="optimization-review", log_prints=False)
def optimization_review(days: int = 7) -> int:
    """The week's optimization recommendations as the ``optimization-review`` artifact.

    Returns:
        How many recommendations were found.
    """
    since = datetime.now(UTC) - timedelta(days=days)
    found = task(optimization_review_for)(since, get_settings())
    run_logger().info("optimization review: %d recommendations since %s", len(found), since)
    create_markdown_artifact(key="optimization-review", markdown=review_markdown(found, since))
    return len(found)


# ---------------------------------------------------------------- monthly security


def security_markdown(findings: pd.DataFrame, vulns: pd.DataFrame | None, note: str) -> str:
    """The security review as Markdown (data escaped)."""
    out = ["# Security review", "", "## Integrations", ""]
    out += md_table(
        ["severity", "kind", "integration", "detail"],
        [(f.severity, f.kind, f.subject, f.detail) for f in records(findings)],
        "No findings.",
    )
    out += ["", "## Dependencies", ""]
    if vulns is None or vulns.empty:
        out.append(md_escape(note or "No installed package is affected by a known advisory."))
    else:
        out += md_table(
            ["package", "version", "advisory", "fixed in", "summary"],
            [(v.package, v.version, v.advisory, v.fixed or "-", v.summary) for v in records(vulns)],
            "",
        )
    return "\n".join(out) + "\n"


def security_review_for(
    settings: Settings, now: datetime
) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """Integration findings, vulnerable packages (``None`` without an advisory database)
    and a note on the dependency check."""
    store = open_store(settings)
    used = store.query(
        # Health probes call every configured integration: they are not use.
        "SELECT service, count(*) AS calls FROM calls WHERE ts >= ? AND source <> 'probe' "
        "GROUP BY service",
        [now - RECENT],
    )
    frame = integration_frame(load_catalog(), settings, calls_since(used))
    findings = review_integrations(frame, now.date())
    if settings.advisory_db is None:
        return findings, None, NO_ADVISORIES
    try:
        advisories = load_advisories(settings.advisory_db)
    except AdvisoryError as exc:
        return findings, None, str(exc)
    installed = installed_distributions()
    vulns = vulnerable_packages(installed, advisories)
    note = f"{len(installed)} installed packages checked against {len(advisories)} advisories"
    return findings, vulns, note


@flow(name="security-review", log_prints=False)
def security_review() -> int:
    """The monthly security review as the ``security-review`` artifact.

    Returns:
        Findings plus vulnerable packages.
    """
    findings, vulns, note = task(security_review_for)(get_settings(), datetime.now(UTC))
    logger = run_logger()
    logger.info("security review: %d integration findings", len(findings))
    if vulns is None:
        logger.warning("%s", note)
    else:
        logger.log(30 if len(vulns) else 20, "%d vulnerable packages; %s", len(vulns), note)
    create_markdown_artifact(
        key="security-review", markdown=security_markdown(findings, vulns, note)
    )
    return len(findings) + (0 if vulns is None else len(vulns))


# ------------------------------------------------------------ quarterly assessment


def assessment_for(settings: Settings, until: datetime) -> Assessment:
    """The assessment of the quarter ending at ``until``."""
    rollups = Rollups(open_store(settings))
    rollups.refresh()
    since = until - QUARTER
    calls = rollups.daily("calls", since=since, until=until)
    probes = rollups.daily("probes", since=since, until=until)
    return assess(calls, probes, load_settings_config(settings).sla.target)


@flow(name="health-assessment", log_prints=False)
def health_assessment(until: datetime | None = None) -> str:
    """The quarter's system health assessment as the ``health-assessment`` artifact.

    Returns:
        The covered span.
    """
    result = task(assessment_for)(get_settings(), until or datetime.now(UTC))
    run_logger().info(
        "assessment %s .. %s: %d weeks, %d service-months",
        result.start,
        result.end,
        len(result.trends),
        len(result.sla),
    )
    create_markdown_artifact(key="health-assessment", markdown=result.markdown())
    return f"{result.start} .. {result.end}"
