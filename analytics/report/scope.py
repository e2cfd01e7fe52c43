"""A report about some services only: the metrics store seen through views that keep
those services' rows.

Every stage of the pipeline reads the store by table name (``calls``, ``probes``,
``alerts``); :class:`ServiceScopedStore` redefines those views on its own DuckDB
connection, so each section, KPI and forecast covers the chosen services without a filter
in every query. ``workflow_runs`` has no service column and stays whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from integrations.catalog import load_catalog
from junction.store import MetricsStore

if TYPE_CHECKING:
    import duckdb

SERVICE_TABLES = ("calls", "probes", "alerts")
"""The store's tables with a ``service`` column."""


def check_services(services: Sequence[str]) -> list[str]:
    """The services named, in order without repeats, each one a catalog integration.

    Raises:
        ValueError: One line naming every unknown service and the known ones.
    """
    known = load_catalog().names
    unknown = [s for s in services if s not in known]
    if unknown:
        raise ValueError(
            f"services: unknown {', '.join(repr(s) for s in unknown)}; known: {', '.join(known)}"
        )
    return list(dict.fromkeys(services))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ServiceScopedStore(MetricsStore):
    """A reader of the store at ``root`` whose ``calls``, ``probes`` and ``alerts`` hold
    only the rows of ``services``."""

    def __init__(self, root: str | Path, services: Sequence[str]) -> None:
        super().__init__(root)
        self.services = tuple(services)

    def __repr__(self) -> str:
        return f"ServiceScopedStore({str(self.root)!r}, {list(self.services)!r})"

    def _new_connection(self) -> duckdb.DuckDBPyConnection:
        con = super()._new_connection()
        listed = ", ".join(_quote(s) for s in self.services) or "NULL"
        for table in SERVICE_TABLES:
            # The full view stays under another name; the table's name becomes the subset.
            con.execute(f'ALTER VIEW "{table}" RENAME TO "_all_{table}"')
            con.execute(
                f'CREATE VIEW "{table}" AS SELECT * FROM "_all_{table}" WHERE service IN ({listed})'
            )
        return con


def scoped(store: MetricsStore, services: Sequence[str] | None) -> MetricsStore:
    """``store`` itself without ``services`` (or an empty list), else the scoped reader."""
    if not services:
        return store
    return ServiceScopedStore(store.root, services)


__all__ = ["SERVICE_TABLES", "ServiceScopedStore", "check_services", "scoped"]
