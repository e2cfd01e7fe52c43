"""Junction's sandbox: a local server that plays every catalog integration, with state
and scriptable faults. Start with :mod:`integrations.sandbox.app` (build and run it);
vendor modules (``vendors/``) build on :mod:`integrations.sandbox.api`.
"""
