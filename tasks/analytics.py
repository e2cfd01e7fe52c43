"""Thin Prefect tasks of the analytics-report flow: one task per stage of the analytics
pipeline (:data:`analytics.report.pipeline.STAGES`, the same functions the CLI runs),
plus writing the report and publishing it as artifacts.

Stages hand a :class:`~analytics.report.pipeline.ReportRun` from one to the next in
memory; ``NO_CACHE`` keeps Prefect from hashing its DataFrames for a cache key (slow for
a month of data, and a report is meant to be recomputed every run), and
``persist_result=False`` from pickling it (it holds the open store) whatever
``PREFECT_RESULTS_PERSIST_BY_DEFAULT`` says.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import Task, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE

from analytics.report.artifacts import artifact_tables
from analytics.report.pipeline import STAGES, ReportRun, Stage, open_window, report_dir
from analytics.report.render import render_markdown, write_report
from junction.health import open_store
from junction.markdown import markdown_rows, md_escape
from junction.settings import Settings, get_settings


@task(name="analytics-window", cache_policy=NO_CACHE, persist_result=False)
def open_report(
    days: int | None,
    spec_dir: str | None,
    workers: int | None,
    validate: bool,
    until: datetime | None = None,
    services: list[str] | None = None,
) -> ReportRun:
    """The window to analyse: ``days`` back from the newest row at or before ``until``
    (empty store: now), ``services`` only when given."""
    settings = get_settings()
    return open_window(
        open_store(settings),
        settings,
        days=days,
        spec_dir=Path(spec_dir) if spec_dir else None,
        workers=workers,
        validate=validate,
        until=until,
        services=services,
    )


def _stage_task(name: str, fn: Stage) -> Task[[ReportRun], None]:
    make = task(
        name=f"analytics-{name.replace(' ', '-')}", cache_policy=NO_CACHE, persist_result=False
    )
    return make(fn)


STAGE_TASKS: list[Task[[ReportRun], None]] = [_stage_task(name, fn) for name, fn in STAGES]
"""One task per pipeline stage, in the pipeline's order."""


@task(name="write-report", cache_policy=NO_CACHE, persist_result=False)
def write_report_files(run: ReportRun, out_dir: str | None) -> str:
    """Write report.html and report.json; returns the HTML file's path."""
    return str(write_report(run.data, report_dir(run.settings, out_dir)))


@task(name="publish-report-artifacts", cache_policy=NO_CACHE, persist_result=False)
def publish_artifacts(run: ReportRun, report_path: str) -> list[str]:
    """The report as Prefect artifacts: markdown ``analytics-report``, the link
    ``analytics-report-page`` to the dashboard's page serving the HTML report, and the
    tables of :func:`analytics.report.artifacts.artifact_tables`.

    Returns:
        The artifact keys written.
    """
    markdown = render_markdown(run.data) + f"\n\nFull HTML report: `{md_escape(report_path)}`\n"
    create_markdown_artifact(
        key="analytics-report", markdown=markdown, description="Junction analytics report"
    )
    create_link_artifact(
        key="analytics-report-page",
        link=report_page_url(run.settings),
        link_text="The HTML report (Junction dashboard)",
        description="The latest analytics report, served by `junction serve`",
    )
    keys = ["analytics-report", "analytics-report-page"]
    for key, (rows, description) in artifact_tables(run.data).items():
        create_table_artifact(key=key, table=markdown_rows(rows), description=description)
        keys.append(key)
    return keys


def report_page_url(settings: Settings) -> str:
    """The dashboard's page of the latest report (``JUNCTION_SERVICE_URL``, else the
    service's host and port)."""
    base = settings.service_url or f"http://{settings.serve_host}:{settings.serve_port}"
    return f"{base.rstrip('/')}/reports/latest"
