"""One grammar for ``?window=``: seconds or a duration (``15m``, ``1h``, ``1d``), read alike by
the monitoring endpoints and ``/api/v2/services/{name}``; a bad one is a 422 naming
``query.window`` on each."""

from __future__ import annotations

from tests.service_helpers import ApiServer

MONITORING = "/api/v2/workflows/enhanced/monitoring"


def test_seconds_and_durations_in_every_window(api_server: ApiServer) -> None:
    with api_server.client() as c:
        for forms, seconds in ((("900", "15m", "900s"), 900), (("3600", "1h", "60m"), 3600),
                               (("86400", "1d", "24h"), 86400)):  # fmt: skip
            for form in forms:
                for path in ("metrics", "health"):
                    resp = c.get(f"{MONITORING}/{path}", params={"window": form})
                    assert resp.status_code == 200, (path, form, resp.text)
                    assert resp.json()["window_seconds"] == seconds, (path, form)
                resp = c.get("/api/v2/services/okta", params={"window": form})
                assert resp.status_code == 200, (form, resp.text)
                assert resp.json()["window_seconds"] == seconds, form
        for bad in ("15 minutes", "1y", "-1h", "nan", "x" * 33):
            for path in (f"{MONITORING}/metrics", f"{MONITORING}/health", "/api/v2/services/okta"):
                resp = c.get(path, params={"window": bad})
                assert resp.status_code == 422, (path, bad, resp.text)
                error = resp.json()["error"]
                assert error["details"][0]["field"] == "query.window", (path, bad, error)
