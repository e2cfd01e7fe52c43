"""The KPI scorecard's error detection time, measured from the alert history
(analytics/report/kpis.py): a value with the alerts the monitor recorded, and a note
saying which data is missing otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.report.kpis import kpi_scorecard
from junction.store import MetricsStore


def _probe(i: int, ts: datetime, ok: bool) -> dict[str, object]:
    return {
        "id": f"p{i}",
        "ts": ts,
        "service": "okta",
        "ok": ok,
        "status": 200 if ok else 503,
        "latency_ms": 10.0,
        "breaker_state": "closed",
        "sweep_id": f"s{i}",
    }


def _alert(ts: datetime) -> dict[str, object]:
    return {
        "id": "a1",
        "ts": ts,
        "fingerprint": "f1",
        "service": "okta",
        "rule": "down",
        "severity": "critical",
        "state": "firing",
        "message": "okta is down",
        "labels_json": "{}",
    }


def test_detection_time_comes_from_the_alert_history(tmp_path: Path) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    onset = end - timedelta(hours=1)
    store = MetricsStore(tmp_path)
    store.append("probes", [_probe(0, onset - timedelta(minutes=5), True)])
    store.append(
        "probes", [_probe(i, onset + timedelta(seconds=5 * i), False) for i in range(1, 6)]
    )
    kpi = kpi_scorecard(store, end - timedelta(days=1), end)[3]
    assert kpi.value == "n/a" and kpi.met is None
    assert "no alert in the alert history" in kpi.note

    store.append("alerts", [_alert(onset + timedelta(seconds=7))])
    store.flush()
    kpi = kpi_scorecard(store, end - timedelta(days=1), end)[3]
    assert kpi.name == "Error detection time"
    assert kpi.value.startswith("2 s") and kpi.met is True  # first failure at +5 s
    assert "from the alert history" in kpi.note
    store.close()
