"""The Junction service (``junction serve``): the API over the monitor, the store and the
workflows, one FastAPI app.

Top layer, beside :mod:`junction.cli`: it may import analytics, tasks and flows; only the
CLI imports it. :func:`create_app` (:mod:`.app`) builds the app; :mod:`.errors` holds the
one error shape, :mod:`.deps` the token check and the state, :mod:`.routes` the routers.

The package itself imports nothing: a command that needs one light module of it (the
status-page file's check) must not load the whole app and its analytics.
"""
