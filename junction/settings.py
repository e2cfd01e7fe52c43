"""All of Junction's settings, in one place.

Precedence is argument > environment > default: ``Settings(store_dir=...)`` wins over
``JUNCTION_STORE_DIR``, which wins over the default here. The product plan's flags and
thresholds keep their plain names (``RESPONSE_TIME_WARNING_MS``) and also answer to the
``JUNCTION_`` prefix. Per-integration settings (base URL, credentials, timeout) are an
:class:`~integrations.config.IntegrationConfig` read from ``JUNCTION_<NAME>_*``
(:meth:`Settings.integration`); with no base URL set an integration talks to the built-in
sandbox. :meth:`Settings.engine_config` gives the clients' engine-wide configuration.

Where state lives does not depend on the current directory: ``JUNCTION_HOME``, else
``$XDG_STATE_HOME/junction``, else ``~/.local/state/junction`` (:func:`default_home`).
Settings may also come from a per-user env file (``KEY=value`` lines, the environment wins
over it): ``JUNCTION_ENV_FILE``, else ``$XDG_CONFIG_HOME/junction/junction.env``, else
``~/.config/junction/junction.env`` (:func:`env_file_path`). ``junction config`` shows each
value in effect and where it came from.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from integrations.adaptive import AdaptiveConfig, AdaptivePolicy
from integrations.budget import parse_budgets
from integrations.config import EngineConfig, IntegrationConfig
from integrations.retry import RetryPolicy

_ADAPTIVE_FIELDS = (
    "timeout_min_seconds",
    "timeout_max_seconds",
    "timeout_percentile",
    "timeout_margin",
    "concurrency_min",
    "concurrency_max",
    "concurrency_initial",
    "low_priority_share",
    "retry_after_min_seconds",
    "retry_after_max_seconds",
    "hedge_max_ratio",
)
"""The AdaptiveConfig fields the settings set (``JUNCTION_ADAPTIVE_<FIELD>``)."""


def _plan(name: str) -> AliasChoices:
    """Accept a product-plan variable both bare and with the JUNCTION_ prefix."""
    return AliasChoices(name, f"JUNCTION_{name}")


def _xdg_dir(variable: str, fallback: str) -> Path:
    """An XDG base directory: ``$variable`` when absolute (the spec ignores relative ones),
    else ``~/<fallback>``."""
    value = os.environ.get(variable, "")
    return Path(value) if value and Path(value).is_absolute() else Path.home() / fallback


def default_home() -> Path:
    """Junction's state directory when ``JUNCTION_HOME`` is unset (per user, not per cwd)."""
    return _xdg_dir("XDG_STATE_HOME", ".local/state") / "junction"


def env_file_path() -> Path:
    """The per-user env file Junction reads settings from (it need not exist)."""
    explicit = os.environ.get("JUNCTION_ENV_FILE", "")
    if explicit:
        return Path(explicit).expanduser()
    return _xdg_dir("XDG_CONFIG_HOME", ".config") / "junction" / "junction.env"


def env_file_values(path: Path | None = None) -> dict[str, str]:
    """``KEY=value`` pairs of the env file (empty when there is none)."""
    from dotenv import dotenv_values  # a pydantic-settings dependency

    target = env_file_path() if path is None else path
    if not target.is_file():
        return {}
    return {k: v for k, v in dotenv_values(target).items() if v is not None}


class Settings(BaseSettings):
    """Process-wide settings. Build one with :func:`get_settings` (cached)."""

    model_config = SettingsConfigDict(
        env_prefix="JUNCTION_",
        populate_by_name=True,
        extra="ignore",
        validate_default=True,
        # "inf"/"nan" parse as floats; a threshold or timeout of nan silently disables
        # whatever it configures, so no setting may be non-finite.
        allow_inf_nan=False,
        # A rejected value may hold a credential (JUNCTION_STATE_URL's password, a token):
        # validation errors name the setting and the problem, never echo the value.
        hide_input_in_errors=True,
    )

    # --- product plan: feature flags ------------------------------------------------------
    ai_workflow_enabled: bool = Field(
        True,
        validation_alias=_plan("AI_WORKFLOW_ENABLED"),
        description="Allow workflows generated from plain English (AI workflow builder).",
    )
    enhanced_monitoring_enabled: bool = Field(
        True,
        validation_alias=_plan("ENHANCED_MONITORING_ENABLED"),
        description="Passive monitoring of live calls, status pages and burn-rate alerts.",
    )
    cross_service_orchestration_enabled: bool = Field(
        True,
        validation_alias=_plan("CROSS_SERVICE_ORCHESTRATION_ENABLED"),
        description="Run cross-service workflows (the workflow runner and built-in flows).",
    )
    workflow_optimization_enabled: bool = Field(
        True,
        validation_alias=_plan("WORKFLOW_OPTIMIZATION_ENABLED"),
        description="Compute optimization recommendations from recorded runs.",
    )

    # --- product plan: thresholds ---------------------------------------------------------
    response_time_warning_ms: float = Field(
        1000,
        gt=0,
        validation_alias=_plan("RESPONSE_TIME_WARNING_MS"),
        description="Response time (ms) above which a service is in warning.",
    )
    response_time_critical_ms: float = Field(
        5000,
        gt=0,
        validation_alias=_plan("RESPONSE_TIME_CRITICAL_MS"),
        description="Response time (ms) above which a service is critical.",
    )
    success_rate_warning: float = Field(
        0.95,
        ge=0,
        le=1,
        validation_alias=_plan("SUCCESS_RATE_WARNING"),
        description="Success rate (0-1) below which a service is in warning.",
    )
    success_rate_critical: float = Field(
        0.90,
        ge=0,
        le=1,
        validation_alias=_plan("SUCCESS_RATE_CRITICAL"),
        description="Success rate (0-1) below which a service is critical.",
    )
    health_score_warning: float = Field(
        80,
        ge=0,
        le=100,
        validation_alias=_plan("HEALTH_SCORE_WARNING"),
        description="Health score (0-100) below which a service is in warning.",
    )
    health_score_critical: float = Field(
        60,
        ge=0,
        le=100,
        validation_alias=_plan("HEALTH_SCORE_CRITICAL"),
        description="Health score (0-100) below which a service is critical.",
    )

    # --- where things live ----------------------------------------------------------------
    home: Path = Field(
        default_factory=default_home,
        description="Directory for Junction's local state (metrics store, alerts, outbox, "
        "journal, reports, Prefect's home unless PREFECT_HOME is set). Default: "
        "$XDG_STATE_HOME/junction, else ~/.local/state/junction, whatever the current "
        "directory; a relative value is made absolute when read.",
        json_schema_extra={"shown_default": "~/.local/state/junction"},
    )
    store_dir: Path | None = Field(
        None,
        description="Metrics store directory (Parquet segments + metrics.duckdb). "
        "Default: <JUNCTION_HOME>/metrics.",
    )
    store_url: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
        description="Metrics store on S3-compatible object storage (s3://bucket/prefix): "
        "segments are uploaded there and read by DuckDB, so hosts share the store without a "
        "shared filesystem; each host's unflushed rows stay in JUNCTION_STORE_DIR. "
        "Credentials: the standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION. "
        "Unset: the store is the local directory.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="Endpoint of the S3-compatible server for JUNCTION_STORE_URL (MinIO, "
        "Ceph, a local test server: http://host:port); unset: AWS S3.",
    )

    # --- integrations ---------------------------------------------------------------------
    integrations: str = Field(
        "all",
        description="Enabled integrations: 'all' or a comma-separated list of catalog names.",
    )
    sandbox_url: str = Field(
        "http://127.0.0.1:8765",
        description="Base URL of the Junction sandbox; integrations without "
        "JUNCTION_<NAME>_BASE_URL talk to <sandbox_url>/<name>.",
    )
    sandbox_smtp_port: int = Field(
        8025,
        gt=0,
        lt=65536,
        description="Port of the sandbox's SMTP server (the default 'smtp' integration).",
    )
    sandbox_admin_token: SecretStr | None = Field(
        None,
        description="Token the sandbox's admin API (/_admin) requires as a bearer; "
        "'junction sandbox serve' enforces it and 'junction sandbox records' sends it.",
    )
    http_timeout_seconds: float = Field(
        10.0, gt=0, description="Default read/write timeout of an integration call (seconds)."
    )
    connect_timeout_seconds: float = Field(
        5.0, gt=0, description="Default TCP/TLS connect timeout (seconds)."
    )
    retry_max_attempts: int = Field(
        3, ge=1, le=20, description="Attempts per call, the first included (1 = no retry)."
    )
    retry_backoff_base_seconds: float = Field(
        0.5,
        ge=0,
        description="Longest first retry delay (seconds); the bound doubles per retry up to "
        "the cap and each wait is drawn uniformly below it (full jitter); a server's "
        "Retry-After wins.",
    )
    retry_backoff_max_seconds: float = Field(
        8.0, ge=0, description="Cap on one retry delay (seconds)."
    )
    retry_after_max_seconds: float = Field(
        30.0,
        ge=0,
        description="Longest Retry-After Junction will wait; a longer hint fails the call "
        "with RateLimitError instead of stalling the run.",
    )
    breaker_failure_threshold: int = Field(
        5, ge=1, description="Consecutive failures that open a service's circuit breaker."
    )
    breaker_reset_seconds: float = Field(
        30.0, gt=0, description="Time an open breaker waits before a half-open trial call."
    )
    sweep_concurrency: int = Field(
        200, ge=1, description="Most health checks in flight at once during a sweep."
    )
    http_backend: Literal["httpcore", "aiohttp"] = Field(
        "aiohttp",
        description="Transport of the shared client used for health sweeps: 'aiohttp' (an "
        "aiohttp session under the httpx API; about half the CPU per check, see "
        "bench/sweep.py) or 'httpcore' (httpx's own stack, sharded pools).",
    )
    prefect_ephemeral_startup_timeout_seconds: int = Field(
        90,
        ge=1,
        description="Exported as PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS when a "
        "command runs flows (Prefect's 20 s default is too short on 2 cores).",
    )

    # --- monitoring and alerting ---
    alerting_file: Path | None = Field(
        None,
        description="YAML alerting configuration (rules, channels, routes, escalation, "
        "dependencies, maintenance, SLA); unset: built-in defaults from the thresholds.",
    )
    alerts_db: Path | None = Field(
        None,
        description="SQLite file holding alert state and the notification outbox. "
        "Default: <JUNCTION_HOME>/alerts.db.",
    )
    state_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:password@host:port/db) holding "
        "Junction's own state (alerts, outbox, silences, incidents, the model registry's "
        "records) so several monitors can share it; empty: the SQLite file JUNCTION_ALERTS_DB. "
        "`junction config` hides the password.",
    )
    alert_send_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest one notification delivery may take before the outbox gives "
        "up on that attempt (the engine never waits on a slow channel).",
    )
    status_page_urls: str = Field(
        "",
        description="Vendor status pages (Statuspage-style, /api/v2/summary.json appended): "
        "comma-separated service=URL pairs overriding the catalog's status_page; 'service=' turns "
        "one off. Sandboxed services use the sandbox's pages.",
    )
    status_page_cache_seconds: float = Field(
        60.0, ge=0, description="How long a fetched vendor status page is reused (seconds)."
    )

    monitor_interval_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds between sweeps of `junction monitor` when --every is not given "
        "(the monitor-integrations deployment's interval is set in prefect.yaml).",
    )
    monitor_min_interval_seconds: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Shortest sweep interval `junction monitor --every` accepts: each sweep "
        "probes every service, so a tiny interval floods the vendors.",
    )
    monitor_window_seconds: float = Field(
        900.0,
        gt=0,
        description="Sliding window (seconds) over which the monitor computes success rate, "
        "p50/p95 latency, uptime and the health score of each service.",
    )
    monitor_probe_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Timeout of one monitoring probe; a probe that hangs longer is cut and "
        "counted as a failure.",
    )
    monitor_confirm_delay_seconds: float = Field(
        0.5,
        ge=0,
        description="Delay before the immediate re-probe that confirms a healthy service's "
        "first failure (fast detection without alerting on a single blip).",
    )
    monitor_down_after: int = Field(
        2,
        ge=1,
        description="Consecutive failed observations after which the monitor calls a "
        "service down (status critical), whatever its window averages say.",
    )
    monitor_tail_seconds: float = Field(
        1.0,
        gt=0,
        description="How often `junction monitor --every` reads other processes' live calls "
        "from the metrics store (passive monitoring).",
    )

    # --- workflows ---
    workflow_integration_concurrency: int = Field(
        8,
        ge=1,
        description="Most concurrent calls to one integration from workflow runs of one "
        "process (a spec's `concurrency:` overrides it per integration).",
    )
    workflow_step_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Timeout of one workflow step attempt when the step sets no `timeout`.",
    )
    workflow_routing_window_seconds: float = Field(
        900.0,
        gt=0,
        description="How far back routing looks at calls and probes to rank the providers "
        "of a capability step (success rate, then p95 latency).",
    )
    workflow_routing_refresh_seconds: float = Field(
        10.0,
        ge=0,
        description="How long a process reuses the routing statistics it read.",
    )
    workflow_retry_max_attempts: int = Field(
        4,
        ge=1,
        le=20,
        description="Attempts per request made by a workflow step, the first included.",
    )
    workflow_retry_backoff_base_seconds: float = Field(
        0.1,
        ge=0,
        description="Longest first retry delay of a workflow step's request (seconds); the "
        "bound doubles per retry up to the cap and each wait is drawn uniformly below it "
        "(full jitter); a server's Retry-After wins. Shorter than "
        "JUNCTION_RETRY_BACKOFF_BASE_SECONDS: a run waits on its slowest chain.",
    )
    workflow_retry_backoff_max_seconds: float = Field(
        2.0, ge=0, description="Cap on one retry delay of a workflow step's request (seconds)."
    )
    workflow_max_items: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Most items one `for_each` step may run over; above it the step fails "
        "before sending any request.",
    )

    # --- analytics and reports ---
    analytics_report_days: int = Field(
        30, ge=1, le=366, description="Report: days of history analysed (window end = newest row)."
    )
    analytics_report_dir: Path | None = Field(
        None, description="Report: output directory. Default: <JUNCTION_HOME>/reports."
    )
    analytics_forecast_horizon_days: int = Field(
        7, ge=1, le=90, description="Forecasts and failure prediction: days ahead."
    )
    analytics_forecast_workers: int | None = Field(
        None,
        ge=1,
        description="Forecasts: worker processes fitting Prophet models (default: CPU count).",
    )
    analytics_uncertainty_samples: int = Field(
        100,
        ge=0,
        description="Forecasts: Prophet's simulated paths per fit (intervals, failure "
        "probabilities); fewer is faster, 0 disables intervals.",
    )
    analytics_slo_target: float = Field(
        0.99,
        gt=0,
        lt=1,
        description="Failure prediction: SLA success objective whose error budget "
        "(1 - target of the window's calls) is projected.",
    )
    analytics_auto_apply_confidence: float = Field(
        0.90,
        ge=0,
        le=1,
        description="Recommendations: `junction analytics apply` writes a change without "
        "an explicit --accept only at or above this confidence.",
    )
    analytics_spec_dir: Path | None = Field(
        None,
        description="Recommendations: the workflow spec directory the report, `junction "
        "analytics recommend`, `apply` and the service's optimization endpoints analyse and "
        "edit. Default: the built-in specs.",
    )
    analytics_max_clock_skew_seconds: float = Field(
        300.0,
        ge=0,
        description="Validation: timestamps later than now + this many seconds are a "
        "critical failure (a writer's clock is wrong).",
    )
    analytics_probe_interval_seconds: float | None = Field(
        None,
        gt=0,
        description="Validation: expected seconds between two probes of a service "
        "(default: the median gap seen in the data).",
    )
    analytics_gap_factor: float = Field(
        3.0,
        ge=1,
        description="Validation: a probe gap longer than this many probe intervals is "
        "reported (warning).",
    )
    analytics_duckdb_memory_limit: str = Field(
        "1GB",
        description="DuckDB memory_limit for trends and rollups (it spills to disk beyond).",
    )
    analytics_duckdb_threads: int = Field(
        2, ge=1, description="DuckDB threads for trends and rollups."
    )
    anomaly_sensitivity: Literal["low", "medium", "high"] = Field(
        "medium",
        description="Anomaly detection: how readily a point is an anomaly (confidence "
        "from 0.98 low, 0.95 medium, 0.92 high; see analytics/anomaly_alarm.py).",
    )
    anomaly_alert_threshold: float = Field(
        0.95,
        ge=0,
        le=1,
        description="Anomaly detection: an anomaly raises an alert (the report's detections) "
        "only at or above this confidence (0-1).",
    )
    anomaly_alerts_enabled: bool = Field(
        True,
        description="The monitor raises `<service>:anomaly` (warning) when a service's "
        "per-minute latency p95 or error rate is anomalous (sensitivity and alert threshold "
        "above), once a series has a day of history (warmed from the metrics store).",
    )

    # --- the service (`junction serve`) ---
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token the service's API requires for every write and internal "
        "read; unset: `junction serve` accepts only loopback addresses.",
    )
    serve_host: str = Field(
        "127.0.0.1",
        description="Interface `junction serve` listens on (beyond loopback, JUNCTION_API_TOKEN "
        "is required).",
    )
    serve_port: int = Field(8766, ge=0, lt=65536, description="Port of `junction serve`.")
    service_url: str | None = Field(
        None,
        description="The dashboard's address as its users reach it, for links from Prefect "
        "artifacts (the analytics report's page). Default: http://<serve_host>:<serve_port>.",
    )
    serve_compact_interval_seconds: float = Field(
        600.0,
        ge=0,
        description="Seconds between compactions of the metrics store run by `junction serve` "
        "(each day's small segment files merged, so reads stay fast; safe while writers "
        "append); 0: never.",
    )
    status_page_file: Path | None = Field(
        None,
        description="The public status page's configuration (its title and the services it "
        "shows, under public names; see status-page.example.yaml). Default: "
        "<JUNCTION_HOME>/status-page.yaml; without the file the page lists nothing.",
    )
    incident_group_window_seconds: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="An alert of a related service joins an incident while the incident is "
        "open or up to this many seconds after its last alert fired or resolved.",
    )
    api_max_body_bytes: int = Field(
        1_048_576,
        ge=1,
        description="Largest request body the service accepts (bytes); larger ones get 413.",
    )
    api_auth_max_failures: int = Field(
        10,
        ge=1,
        le=100_000,
        description="Wrong tokens (dashboard login or API bearer token) one client address "
        "may send per minute; past that it gets 429 with Retry-After, even with the right one.",
    )
    ui_vendor_dir: Path | None = Field(
        None,
        description="Where the dashboard's npm files (uPlot, htmx) are: a node_modules "
        "directory or one holding the files themselves; unset: the repository's node_modules "
        "(`npm ci`). Without them pages work but draw no charts.",
    )
    ai_workflow_max_chars: int = Field(
        4000,
        ge=1,
        le=1_000_000,
        description="Longest description `junction workflow generate` (and the API's "
        "intelligence/generate) accepts, in characters.",
    )
    llm_model: str | None = Field(
        None,
        description="Workflow generation: the model of the OpenAI-compatible server; set, "
        "`junction workflow generate` asks the LLM instead of the offline planner.",
    )
    llm_base_url: str | None = Field(
        None,
        description="Workflow generation: an OpenAI-compatible base URL with its path (a "
        "local vLLM or Ollama server, http://127.0.0.1:11434/v1); unset: the openai "
        "integration's (JUNCTION_OPENAI_BASE_URL, JUNCTION_OPENAI_TOKEN).",
    )
    llm_repair_attempts: int = Field(
        2,
        ge=0,
        le=5,
        description="Workflow generation: times the LLM is sent the validator's messages "
        "to repair a spec it got wrong before the request is refused.",
    )
    llm_max_tokens: int = Field(
        2000,
        ge=100,
        le=32_000,
        description="Workflow generation: most tokens one LLM reply may use.",
    )
    llm_api_key: SecretStr | None = Field(
        None,
        description="Workflow generation: the bearer token of the server at "
        "JUNCTION_LLM_BASE_URL (the openai integration's token is never sent to another "
        "server); unset: none is needed (a local server).",
    )
    model_confidence_threshold: float = Field(
        0.85,
        ge=0.5,
        le=1.0,
        validation_alias=_plan("MODEL_CONFIDENCE_THRESHOLD"),
        description="A workflow success prediction is shown as a number only when the "
        "calibrated model's confidence, max(p, 1 - p), reaches this; below it (and for the "
        "naive estimate) it is reported as not confident.",
    )
    model_min_runs: int = Field(
        200,
        ge=20,
        description="Fewest recorded runs of known workflows (with at least 10 failed and 10 "
        "completed) the success model trains on; with fewer, predictions use the naive "
        "estimate.",
    )
    advisory_db: Path | None = Field(
        None,
        description="Vulnerability advisories in the OSV JSON format (a file, or a folder of "
        "*.json files) the monthly security review checks the installed Python packages "
        "against, offline; unset: the review says no advisory database is configured.",
    )
    task_runner: Literal["pool", "dask"] = Field(
        "pool",
        description="Where the analytics-report flow fits its forecasts: `pool` (a process "
        "pool in the flow's process) or `dask` (one Prefect task per service on a "
        "DaskTaskRunner: JUNCTION_DASK_ADDRESS's cluster, else a LocalCluster). `junction "
        "analytics report` always uses the pool.",
    )
    dask_address: str | None = Field(
        None,
        description="Scheduler address of an existing Dask cluster (tcp://host:8786) for "
        "JUNCTION_TASK_RUNNER=dask; unset: a LocalCluster per report run.",
    )
    dask_workers: int | None = Field(
        None,
        ge=1,
        description="LocalCluster workers for JUNCTION_TASK_RUNNER=dask (default: "
        "JUNCTION_ANALYTICS_FORECAST_WORKERS, else the CPU count).",
    )
    dask_processes: bool = Field(
        False,
        description="LocalCluster workers are processes (true) or threads of the flow's "
        "process (false, measured faster: no worker start-up, and a fit runs in CmdStan's "
        "own process anyway; bench/README.md 'Forecasts on Dask').",
    )
    capacity_queue_threshold: float = Field(
        10,
        ge=0,
        description="Capacity watch: scheduled flow runs past due in one work pool (the "
        "work-queue depth) at which the workers no longer keep up.",
    )
    capacity_late_threshold: float = Field(
        5, ge=0, description="Capacity watch: flow runs in the Late state at which to scale out."
    )
    capacity_cpu_percent: float = Field(
        85,
        gt=0,
        le=100,
        description="Capacity watch: this host's CPU use (percent) at which to scale out.",
    )
    capacity_memory_percent: float = Field(
        90,
        gt=0,
        le=100,
        description="Capacity watch: this host's memory use (percent) at which to scale out.",
    )
    capacity_store_gb: float = Field(
        50,
        gt=0,
        description="Capacity watch: size of the metrics store (GB) at which to add storage.",
    )
    capacity_horizon_hours: float = Field(
        24,
        gt=0,
        description="Capacity watch: a threshold the trend crosses within this many hours "
        "raises the scale-out signal now (with the forecast time).",
    )
    capacity_min_samples: int = Field(
        6,
        ge=2,
        description="Capacity watch: samples of a measure needed before it is judged "
        "(fewer: not enough data, no signal).",
    )
    capacity_window_hours: float = Field(
        24,
        gt=0,
        description="Capacity watch: hours of samples the trend is fitted on (older samples "
        "are kept 30 days).",
    )
    monitor_shards: int = Field(
        1,
        ge=1,
        le=64,
        description="Monitors sharing the integrations: each owns a stable part (rendezvous "
        "hashing of the names); `make serve` deploys one monitor-continuous deployment per "
        "shard when above 1.",
    )
    monitor_shard: int = Field(
        0,
        ge=0,
        description="The shard (0 .. JUNCTION_MONITOR_SHARDS - 1) `junction monitor` owns: "
        "it probes and alerts on only the integrations of that shard.",
    )

    # The env file's JUNCTION_<NAME>_* lines (integration settings are read per client).
    _file_env: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Argument > environment > the per-user env file > default."""
        # The file's path is looked up per instance: JUNCTION_ENV_FILE / XDG_CONFIG_HOME
        # may change between two Settings() (tests, a service reloading).
        dotenv = DotEnvSettingsSource(settings_cls, env_file=env_file_path())
        return init_settings, env_settings, dotenv, file_secret_settings

    def model_post_init(self, context: Any, /) -> None:
        """Keep the env file's integration settings for :meth:`integration`."""
        self._file_env = {
            k: v for k, v in env_file_values().items() if k.upper().startswith("JUNCTION_")
        }

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # A relative home would make state depend on the directory a command runs in.
        return value.expanduser().absolute()

    # --- adaptive execution (integrations.adaptive) ---
    adaptive_enabled: bool = Field(
        True,
        description="Adaptive timeouts, concurrency, rate budget and hedged reads for "
        "workflow runs (probes keep their fixed timeouts: they report the raw signal).",
    )
    adaptive_timeout_min_seconds: float = Field(
        1.0, gt=0, description="Shortest timeout an adaptive action timeout may reach."
    )
    adaptive_timeout_max_seconds: float = Field(
        30.0, gt=0, description="Longest timeout an adaptive action timeout may reach."
    )
    adaptive_timeout_percentile: float = Field(
        0.99,
        description="Latency percentile of an action's recent calls its timeout follows (0.5-1).",
    )
    adaptive_timeout_margin: float = Field(2.0, description="Multiplier on that percentile (>= 1).")
    adaptive_concurrency_min: int = Field(
        1, description="Lowest adaptive concurrency limit per integration."
    )
    adaptive_concurrency_max: int = Field(
        64, description="Highest adaptive concurrency limit per integration."
    )
    adaptive_concurrency_initial: int = Field(
        8, description="Where an integration's adaptive concurrency limit starts."
    )
    adaptive_low_priority_share: float = Field(
        0.75,
        description="Share of an integration's concurrency limit and rate budget that "
        "low-priority (bulk) workflows may use; the rest is kept for normal and high.",
    )
    adaptive_retry_after_min_seconds: float = Field(
        0.05, description="Floor of a vendor's Retry-After (0 or negative is raised to it)."
    )
    adaptive_retry_after_max_seconds: float = Field(
        30.0, description="Cap of a vendor's Retry-After pause (a year is cut to it)."
    )
    adaptive_hedge_max_ratio: float = Field(
        0.1,
        description="Most hedged (second) attempts per read-only call (0-1; 0: never hedge).",
    )
    rate_budgets: str = Field(
        "",
        description="Host-wide rate budgets shared by every process, as name=rate[/burst] "
        "per second (okta=20,gitlab=5/10); unset: none.",
    )
    rate_budget_file: Path | None = Field(
        None,
        description="SQLite file of the shared rate budgets; default "
        "<JUNCTION_HOME>/state/rate-budget.sqlite.",
    )

    @field_validator("sandbox_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("state_url")
    @classmethod
    def _check_state_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        from junction.statedb import state_url  # psycopg is imported only when one is set

        return None if state_url(value.get_secret_value()) is None else value

    @model_validator(mode="after")
    def _check_order(self) -> Settings:
        # A warning threshold looser than its critical one makes no sense; say which.
        problems = []
        if self.response_time_warning_ms > self.response_time_critical_ms:
            problems.append("RESPONSE_TIME_WARNING_MS must be <= RESPONSE_TIME_CRITICAL_MS")
        if self.success_rate_warning < self.success_rate_critical:
            problems.append("SUCCESS_RATE_WARNING must be >= SUCCESS_RATE_CRITICAL")
        if self.health_score_warning < self.health_score_critical:
            problems.append("HEALTH_SCORE_WARNING must be >= HEALTH_SCORE_CRITICAL")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def metrics_dir(self) -> Path:
        """Resolved metrics store directory."""
        return self.store_dir if self.store_dir is not None else self.home / "metrics"

    def enabled_names(self, catalog_names: list[str]) -> list[str]:
        """Return the enabled integration names, in catalog order.

        Args:
            catalog_names: Every name in the catalog.

        Raises:
            ValueError: If the setting names an integration the catalog lacks.
        """
        raw = self.integrations.strip()
        if raw in ("", "all", "*"):
            return list(catalog_names)
        wanted = [n.strip() for n in raw.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in catalog_names]
        if unknown:
            raise ValueError(
                f"JUNCTION_INTEGRATIONS names unknown integrations: {', '.join(unknown)}"
            )
        return [n for n in catalog_names if n in wanted]

    def integration(self, name: str, **overrides: Any) -> IntegrationConfig:
        """Configuration of one integration, from ``JUNCTION_<NAME>_*`` and ``overrides``.

        Args:
            name: Catalog name (``okta``, ``azure_devops``).
            **overrides: Field values that win over the environment.
        """
        # Read the environment directly: a pydantic-settings instance per integration cost
        # ~3 ms each (it rebuilds every source), which dominated a 1,000-client sweep.
        prefix = f"JUNCTION_{name.upper()}_"
        fields = IntegrationConfig.model_fields
        values: dict[str, Any] = {}
        # The environment wins over the env file.
        for key, value in (*self._file_env.items(), *os.environ.items()):
            if key.upper().startswith(prefix):
                field = key[len(prefix) :].lower()
                if field in fields:
                    values[field] = value
        values.update(overrides)
        return IntegrationConfig.model_validate(values)

    def adaptive_policy(self) -> AdaptivePolicy | None:
        """Adaptive execution of workflow runs (``None`` when ``adaptive_enabled`` is off)."""
        if not self.adaptive_enabled:
            return None
        path = self.rate_budget_file or self.home / "state" / "rate-budget.sqlite"
        budgets = parse_budgets(self.rate_budgets)
        return AdaptivePolicy(
            config=self._adaptive_config(),
            budget_path=str(path) if budgets else None,
            budgets=tuple((name, b.rate, b.burst) for name, b in budgets.items()),
        )

    def _adaptive_config(self) -> AdaptiveConfig:
        return AdaptiveConfig(
            **{name: getattr(self, f"adaptive_{name}") for name in _ADAPTIVE_FIELDS}
        )

    @model_validator(mode="after")
    def _check_adaptive(self) -> Settings:
        # Contradicting bounds are one error at load, naming the variables.
        values = {name: getattr(self, f"adaptive_{name}") for name in _ADAPTIVE_FIELDS}
        problems = AdaptiveConfig.check(values, lambda f: f"JUNCTION_ADAPTIVE_{f.upper()}")
        try:
            parse_budgets(self.rate_budgets)
        except ValueError as exc:
            problems.append(f"JUNCTION_RATE_BUDGETS: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def engine_config(self) -> EngineConfig:
        """How every integration client behaves, from the integration settings above."""
        return EngineConfig(
            sandbox_url=self.sandbox_url,
            sandbox_smtp_port=self.sandbox_smtp_port,
            timeout_seconds=self.http_timeout_seconds,
            connect_timeout_seconds=self.connect_timeout_seconds,
            retry=RetryPolicy(
                max_attempts=self.retry_max_attempts,
                backoff_base=self.retry_backoff_base_seconds,
                backoff_max=self.retry_backoff_max_seconds,
                retry_after_max=self.retry_after_max_seconds,
            ),
            breaker_failure_threshold=self.breaker_failure_threshold,
            breaker_reset_seconds=self.breaker_reset_seconds,
            http_backend=self.http_backend,
            sweep_concurrency=self.sweep_concurrency,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process's settings, read from the environment once."""
    return Settings()
