"""The Junction service (``junction serve``): the API over the monitor, the store and the
workflows, one FastAPI app.

Top layer, beside :mod:`junction.cli`: it may import analytics, tasks and flows; only the
CLI imports it. :func:`create_app` (:mod:`.app`) builds the app; :mod:`.errors` holds the
one error shape, :mod:`.deps` the token check and the state, :mod:`.routes` the routers.
"""

from __future__ import annotations

from junction.service.app import create_app
from junction.service.errors import ApiError

__all__ = ["ApiError", "create_app"]
