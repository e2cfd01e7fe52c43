"""Command groups of the ``junction`` CLI, one module per area.

Each module exposes ``register(app)``; :mod:`junction.cli` calls them. Imports of heavy
libraries stay inside the command functions.
"""
