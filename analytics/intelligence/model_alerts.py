"""The success model's alert: a broken live model raises ``junction:success_model``.

A live version whose file is missing, corrupt, tampered with or pickled by another
scikit-learn is refused (:mod:`analytics.intelligence.models`) and predictions fall back
to the naive estimate. That must reach an operator, not only a log line: the alert engine
judges a ``success_model`` condition of service ``junction`` (a warning, through
:meth:`junction.alerting.engine.AlertEngine.evaluate`, so it is grouped, silenced and
delivered like any other alert); a version that loads again resolves it.

Raising or resolving never fails the caller (a prediction inside a workflow run): a
broken alerting file or alert database is logged and the prediction goes on.

Public API: :data:`SERVICE`, :data:`RULE`, :func:`alert_broken_model`,
:func:`resolve_model_alert`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from junction.alerting.engine import AlertEngine, ServiceSnapshot
from junction.alerting.judge import Condition
from junction.alerting.model import Severity
from junction.alerting.state import db_path
from junction.scoring import WindowStats, health_score
from junction.settings import Settings

__all__ = ["RULE", "SERVICE", "alert_broken_model", "resolve_model_alert"]

log = logging.getLogger("junction.models")

SERVICE = "junction"
"""The alert's service: Junction itself."""

RULE = "success_model"
"""The alert's rule (fingerprint ``junction:success_model``)."""


def _judge(settings: Settings, severity: Severity | None, message: str, only_active: bool) -> bool:
    now = datetime.now(UTC)
    if only_active and not db_path(settings).exists():
        return False  # no alert database, so no alert to resolve (and none created for it)
    try:
        engine = AlertEngine.from_settings(settings)
    except Exception as exc:  # an alerting problem must not fail a prediction
        log.warning("success model alert not recorded: alert engine unavailable (%s)", exc)
        return False
    try:
        fingerprint = f"{SERVICE}:{RULE}"
        if only_active and all(a.fingerprint != fingerprint for a in engine.active_alerts()):
            return False
        stats = WindowStats(as_of=now)  # no observations: the threshold rules stay unjudged
        snapshot = ServiceSnapshot(
            SERVICE,
            stats,
            health_score(stats, settings, now=now),
            source="success_model",
            conditions={RULE: Condition(RULE, severity, None, message)},
        )
        engine.evaluate([snapshot], now=now)
        return True
    except Exception as exc:  # same: logged, the caller goes on with the naive estimate
        log.warning("success model alert not recorded (%s)", exc)
        return False
    finally:
        engine.close()


def alert_broken_model(settings: Settings, version: str | None, problem: str) -> bool:
    """Raise (or update) the ``junction:success_model`` warning for a refused live model.

    Args:
        settings: Settings (alert database and alerting file under them).
        version: The live version that was refused.
        problem: Why (one line, from the registry's check).

    Returns:
        Whether the alert engine recorded it (False: logged instead).
    """
    message = f"success model {version or '?'} unusable ({problem}): naive estimate in use"
    return _judge(settings, Severity.WARNING, message, only_active=False)


def resolve_model_alert(settings: Settings, version: str) -> bool:
    """Resolve the ``junction:success_model`` alert, if one is active: ``version`` loads.

    Returns:
        Whether an active alert was judged fine again.
    """
    return _judge(settings, None, f"success model {version} loads again", only_active=True)
