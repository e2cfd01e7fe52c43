"""The configuration a client is built with: explicit objects, never the environment.

The clients take their configuration the way openai-python's client takes
``timeout=``/``max_retries=``: as arguments. Two objects:

- :class:`IntegrationConfig`: one integration's base URL, credentials and overrides
  (the core reads them from ``JUNCTION_<NAME>_*``).
- :class:`EngineConfig`: how every client behaves (the sandbox's address, timeouts, the
  retry policy, the breaker thresholds, the HTTP backend of sweeps).

A client built with neither talks to the sandbox at its default address with the
defaults below; nothing in ``integrations`` reads environment variables or global
settings (``junction.settings`` builds these objects, ``junction.clients`` passes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.adaptive import AdaptivePolicy
from integrations.retry import RetryPolicy
from integrations.transport import HttpBackend

DEFAULT_SANDBOX_URL = "http://127.0.0.1:8765"
"""Where the Junction sandbox listens unless told otherwise."""


class IntegrationConfig(BaseModel):
    """One integration's configuration (from ``JUNCTION_<NAME>_<FIELD>`` in the core).

    Which credential fields apply depends on the integration's auth scheme: ``token``
    for bearer and API-key schemes, ``username``/``password`` for basic, ``client_id``/
    ``client_secret`` for OAuth2 client credentials.
    """

    model_config = ConfigDict(extra="ignore")

    base_url: str | None = Field(
        None, description="The service's base URL; unset means the Junction sandbox."
    )
    token: SecretStr | None = Field(
        None, description="Bearer token or API key (bearer / api_key schemes)."
    )
    username: str | None = Field(None, description="User name or email (basic scheme).")
    password: SecretStr | None = Field(None, description="Password or API token (basic scheme).")
    client_id: str | None = Field(None, description="OAuth2 client id (oauth2 scheme).")
    client_secret: SecretStr | None = Field(
        None, description="OAuth2 client secret (oauth2 scheme)."
    )
    token_url: str | None = Field(
        None, description="OAuth2 token endpoint; default from the catalog."
    )
    scope: str | None = Field(None, description="OAuth2 scope to request.")
    secret_block: str | None = Field(
        None,
        description="Name of a Prefect Secret block holding the credential (a string, or a "
        "JSON object with the credential fields), or '<type slug>/<name>' of a typed "
        "credentials block (junction-api-key/okta-prod); used when no env credential is set.",
    )
    timeout_seconds: float | None = Field(
        None, gt=0, description="Read timeout for this integration (default: global)."
    )
    events_url: str | None = Field(
        None,
        description="PagerDuty only: Events API v2 URL (default: derived from the base URL).",
    )
    routing_key: SecretStr | None = Field(
        None, description="PagerDuty only: Events API v2 routing key (integration key)."
    )
    credential_expires: date | None = Field(
        None,
        description="When the credential expires (YYYY-MM-DD); the monthly security "
        "review warns 30 days before.",
    )


@dataclass(frozen=True)
class EngineConfig:
    """How every client behaves; the defaults are Junction's.

    Attributes:
        sandbox_url: The sandbox's base URL; an integration without a base URL talks to
            ``<sandbox_url>/<name>``.
        sandbox_smtp_port: The sandbox's SMTP port (the ``smtp`` integration's default).
        timeout_seconds: Read/write timeout of one call.
        connect_timeout_seconds: TCP/TLS connect timeout.
        retry: The retry policy.
        breaker_failure_threshold: Consecutive failures that open a service's breaker.
        breaker_reset_seconds: Time an open breaker waits before a trial call.
        http_backend: Transport of the shared client of a sweep.
        sweep_concurrency: Health checks in flight at once during a sweep.
        adaptive: Adaptive timeouts, concurrency and rate budget (``None``: off).
    """

    sandbox_url: str = DEFAULT_SANDBOX_URL
    sandbox_smtp_port: int = 8025
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 30.0
    http_backend: HttpBackend = "aiohttp"
    sweep_concurrency: int = 200
    adaptive: AdaptivePolicy | None = None

    def __post_init__(self) -> None:
        # One normal form, so "is this the sandbox?" is a prefix test.
        object.__setattr__(self, "sandbox_url", self.sandbox_url.rstrip("/"))
