"""The monthly security review: the integrations' configuration and the installed Python
distributions against known vulnerabilities.

Integrations (:func:`integration_frame` builds the frame from the catalog, the settings
and the metrics store; :func:`review_integrations` judges it):

- ``basic-auth``: an integration configured with the basic scheme (a password on every
  request);
- ``plain-http``: a base URL on ``http://`` (credentials in clear on the wire);
- ``outdated-api``: a configured base URL naming an older API version than the catalog's
  (``/v1`` where the catalog has ``/v2``; ``/api/v3`` where it has ``/api/v4``);
- ``credential-expiring`` / ``credential-expired``: ``JUNCTION_<NAME>_CREDENTIAL_EXPIRES``
  within :data:`EXPIRY_WARNING_DAYS`, or past;
- ``credential-unused``: credentials configured but no call (health probes aside) in
  :data:`UNUSED_DAYS` days (a credential nobody uses is one to revoke).

OAuth access tokens are fetched at run time and live about an hour (refreshed by the
client), so their expiry is not a review finding; the client secret's expiry is, when
configured.

Dependencies: :func:`installed_distributions` (``importlib.metadata``) against an advisory
file in the OSV format (:func:`load_advisories`: one OSV object, a list of them, an
``{"vulns": [...]}`` answer of the OSV API, or a directory of ``*.json`` files), offline;
:func:`vulnerable_packages` matches PyPI ``affected`` entries by ``versions`` and by
``ECOSYSTEM`` ranges (``introduced`` / ``fixed`` / ``last_affected``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from analytics.maintenance import records
from integrations.catalog import Catalog
from junction.settings import Settings

EXPIRY_WARNING_DAYS = 30
"""A credential expiring within this many days is reported."""

UNUSED_DAYS = 30
"""A configured credential with no call in this many days is reported as unused."""

INTEGRATION_COLUMNS = [
    "name",
    "scheme",
    "base_url",
    "catalog_base_url",
    "configured_url",
    "has_credentials",
    "expires",
    "calls",
]
FINDING_COLUMNS = ["kind", "severity", "subject", "detail"]
VULN_COLUMNS = ["package", "version", "advisory", "summary", "fixed"]

_VERSION = re.compile(r"/(?:api/)?v?(\d+)(?:\.\d+)?(?=/|$)", re.IGNORECASE)
_CREDENTIAL_FIELDS = ("token", "password", "client_secret", "routing_key", "secret_block")


def _api_version(url: str) -> int | None:
    """The API major version a base URL names (``/v2``, ``/api/v4``), if any."""
    path = re.sub(r"^[a-z]+://[^/]*", "", url)
    found = _VERSION.findall(path)
    return int(found[-1]) if found else None


def integration_frame(
    catalog: Catalog, settings: Settings, calls: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """One row per enabled integration: its scheme, base URLs, credentials, expiry, usage.

    Args:
        catalog: The integration catalog.
        settings: Where the base URLs, credentials and expiry dates come from.
        calls: Calls per integration in the last :data:`UNUSED_DAYS` days (from the
            metrics store; missing: 0).

    Returns:
        Columns :data:`INTEGRATION_COLUMNS`; ``base_url`` is the effective one (the
        configured URL, else the catalog's); credentials appear only as a flag.
    """
    calls = calls or {}
    rows = []
    for name in settings.enabled_names(catalog.names):
        spec = catalog.get(name)
        config = settings.integration(name)
        has_credentials = any(getattr(config, f) for f in _CREDENTIAL_FIELDS) or bool(
            config.username and config.password
        )
        rows.append(
            {
                "name": name,
                "scheme": spec.auth.scheme,
                "base_url": config.base_url or spec.base_url,
                "catalog_base_url": spec.base_url,
                "configured_url": config.base_url is not None,
                "has_credentials": has_credentials,
                "expires": config.credential_expires,
                "calls": int(calls.get(name, 0)),
            }
        )
    return pd.DataFrame(rows, columns=INTEGRATION_COLUMNS)


def review_integrations(frame: pd.DataFrame, today: date) -> pd.DataFrame:
    """Findings about the integrations of :func:`integration_frame` (kinds in the module
    docstring), most severe first.

    Args:
        frame: :data:`INTEGRATION_COLUMNS` rows.
        today: The review's day (expiry is judged against it).

    Returns:
        Columns :data:`FINDING_COLUMNS`; ``severity`` is ``critical`` or ``warning``.
    """
    out: list[dict[str, str]] = []

    def add(kind: str, severity: str, subject: str, detail: str) -> None:
        out.append({"kind": kind, "severity": severity, "subject": subject, "detail": detail})

    for row in records(frame):
        name = str(row.name)
        if row.scheme == "basic":
            add("basic-auth", "warning", name, "basic auth sends a password with every request")
        if str(row.base_url).lower().startswith("http://"):
            add("plain-http", "critical", name, f"base URL {row.base_url} is not HTTPS")
        if row.configured_url:
            mine, current = _api_version(str(row.base_url)), _api_version(row.catalog_base_url)
            if mine is not None and current is not None and mine < current:
                add(
                    "outdated-api",
                    "warning",
                    name,
                    f"API v{mine} configured; the catalog uses v{current}",
                )
        expires = row.expires
        if isinstance(expires, date) and row.has_credentials:
            left = (expires - today).days
            if left < 0:
                add("credential-expired", "critical", name, f"credential expired on {expires}")
            elif left <= EXPIRY_WARNING_DAYS:
                add(
                    "credential-expiring",
                    "warning",
                    name,
                    f"credential expires on {expires} ({left} days)",
                )
        if row.has_credentials and int(row.calls) == 0:
            add(
                "credential-unused",
                "warning",
                name,
                f"credentials configured but no call in {UNUSED_DAYS} days",
            )
    found = pd.DataFrame(out, columns=FINDING_COLUMNS)
    order = found["severity"].map({"critical": 0, "warning": 1})
    return found.assign(_o=order).sort_values(["_o", "kind", "subject"]).drop(columns="_o")


def calls_since(store_calls: pd.DataFrame) -> dict[str, int]:
    """``{service: calls}`` from a ``service``/``calls`` frame (a store query's answer)."""
    return {
        str(s): int(n) for s, n in zip(store_calls["service"], store_calls["calls"], strict=True)
    }


# --------------------------------------------------------------------- dependencies


def installed_distributions() -> pd.DataFrame:
    """Every installed distribution of this interpreter: ``package`` (canonical name),
    ``version``."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            seen.setdefault(canonicalize_name(name), dist.version)
    return pd.DataFrame(sorted(seen.items()), columns=["package", "version"])


class AdvisoryError(ValueError):
    """The advisory file cannot be read (one line naming the file and the problem)."""


def load_advisories(path: str | Path) -> list[dict[str, Any]]:
    """OSV advisories from a file or a directory of ``*.json`` files (formats in the
    module docstring).

    Raises:
        AdvisoryError: Missing file, invalid JSON, or not OSV-shaped.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
    elif path.is_file():
        files = [path]
    else:
        raise AdvisoryError(f"advisory database {path}: no such file or directory")
    found: list[dict[str, Any]] = []
    for file in files:
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdvisoryError(f"advisory database {file}: {exc}") from None
        if isinstance(doc, dict) and isinstance(doc.get("vulns"), list):
            doc = doc["vulns"]
        items = doc if isinstance(doc, list) else [doc]
        for item in items:
            if not isinstance(item, dict) or "id" not in item:
                raise AdvisoryError(f"advisory database {file}: an entry without an 'id'")
            found.append(item)
    return found


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _in_range(version: Version, events: Sequence[Mapping[str, str]]) -> bool:
    """Whether ``version`` falls in an OSV ``ECOSYSTEM`` range (its events in order)."""
    affected = False
    for event in sorted(events, key=lambda e: _version(next(iter(e.values()))) or Version("0")):
        if "introduced" in event:
            start = _version(event["introduced"]) or Version("0")
            if version >= start:
                affected = True
        elif "fixed" in event:
            fixed = _version(event["fixed"])
            if fixed is not None and version >= fixed:
                affected = False
        elif "last_affected" in event:
            last = _version(event["last_affected"])
            if last is not None and version > last:
                affected = False
    return affected


def _fixed_versions(ranges: Iterable[Mapping[str, Any]]) -> list[str]:
    return [e["fixed"] for r in ranges for e in r.get("events", []) if "fixed" in e]


def vulnerable_packages(
    installed: pd.DataFrame, advisories: Iterable[Mapping[str, Any]]
) -> pd.DataFrame:
    """Installed distributions an advisory affects.

    Args:
        installed: ``package``/``version`` (:func:`installed_distributions`).
        advisories: OSV entries (:func:`load_advisories`).

    Returns:
        Columns :data:`VULN_COLUMNS` (``fixed``: the versions that fix it, comma-joined).
    """
    versions = {
        canonicalize_name(p): str(v)
        for p, v in zip(installed["package"], installed["version"], strict=True)
    }
    rows = []
    for adv in advisories:
        for affected in adv.get("affected", []):
            pkg = affected.get("package", {})
            if str(pkg.get("ecosystem", "")).lower() != "pypi":
                continue
            name = canonicalize_name(str(pkg.get("name", "")))
            have = versions.get(name)
            parsed = _version(have) if have is not None else None
            if have is None:
                continue
            listed = have in set(affected.get("versions", []))
            ranges = [r for r in affected.get("ranges", []) if r.get("type") == "ECOSYSTEM"]
            in_range = parsed is not None and any(
                _in_range(parsed, r.get("events", [])) for r in ranges
            )
            if listed or in_range:
                rows.append(
                    {
                        "package": name,
                        "version": have,
                        "advisory": str(adv["id"]),
                        "summary": str(adv.get("summary") or adv.get("details") or "")[:200],
                        "fixed": ", ".join(_fixed_versions(ranges)),
                    }
                )
                break
    return pd.DataFrame(rows, columns=VULN_COLUMNS).drop_duplicates()


RECENT = timedelta(days=UNUSED_DAYS)
"""How far back :func:`integration_frame`'s ``calls`` look."""
