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

from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from analytics.report.artifacts import artifact_tables
from analytics.report.pipeline import STAGES, ReportRun, Stage, open_window, report_dir
from analytics.report.render import md_escape, render_markdown, write_report
from junction.health import open_store
from junction.settings import get_settings


@task(name="analytics-window", cache_policy=NO_CACHE, persist_result=False)
def open_report(
    days: int | None, spec_dir: str | None, workers: int | None, validate: bool
) -> ReportRun:
    """The window to analyse: ``days`` back from the newest row (empty store: now)."""
    settings = get_settings()
    return open_window(
        open_store(settings),
        settings,
        days=days,
        spec_dir=Path(spec_dir) if spec_dir else None,
        workers=workers,
        validate=validate,
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
    """The report as Prefect artifacts: markdown ``analytics-report`` and the tables of
    :func:`analytics.report.artifacts.artifact_tables`.

    Returns:
        The artifact keys written.
    """
    markdown = render_markdown(run.data) + f"\n\nFull HTML report: `{report_path}`\n"
    create_markdown_artifact(
        key="analytics-report", markdown=markdown, description="Junction analytics report"
    )
    keys = ["analytics-report"]
    for key, (rows, description) in artifact_tables(run.data).items():
        create_table_artifact(key=key, table=markdown_rows(rows), description=description)
        keys.append(key)
    return keys


def markdown_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with every text cell escaped: Prefect's UI renders table artifact cells as
    Markdown (a KPI target ">= 92%" showed as a blockquote)."""
    return [{k: md_escape(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
