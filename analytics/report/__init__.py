"""The analytics report: one self-contained HTML file, plus Markdown for Prefect artifacts.

Modules, by job:

* :mod:`~analytics.report.pipeline`: the one pipeline (window, stages, :func:`collect`)
  that the CLI and the ``analytics-report`` flow both run;
* :mod:`~analytics.report.model`: :class:`ReportData`, KPI lines, missing-value helpers;
* :mod:`~analytics.report.queries`: the SQL sections (health, performance, alerts);
* :mod:`~analytics.report.kpis`: the KPI scorecard and its definitions;
* :mod:`~analytics.report.anomalies`: the streaming detector over the hourly series and
  the anomaly tables;
* :mod:`~analytics.report.charts`: matplotlib charts as inline SVG;
* :mod:`~analytics.report.depgraph`: the dependency graph's layout;
* :mod:`~analytics.report.render`: sections, the Jinja2 templates (``templates/``,
  autoescaped), Markdown and the files written.

Sections (each says "not enough data" instead of failing when its input is missing):
KPI scorecard, service health, performance, alerts, trends, forecasts with anomalies,
failure prediction, the dependency graph, recommendations and data validation. Nothing
in the HTML references an external URL: the file opens offline.

Kept light on purpose (no imports here): the worker processes import
:mod:`~analytics.report.anomalies` only.
"""
