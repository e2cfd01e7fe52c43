"""The maintenance schedule's analyses: the daily health digest (:mod:`.digest`), the
monthly security review (:mod:`.security`) and the quarterly system health assessment
(:mod:`.assessment`). Frames in, typed results out; the flows in ``flows/maintenance.py``
read the stores, call these and publish."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import pandas as pd

from junction.markdown import md_escape


def records(frame: pd.DataFrame) -> list[Any]:
    """The frame's rows as objects with one attribute per column (untyped cells)."""
    return [SimpleNamespace(**{str(k): v for k, v in r.items()}) for r in frame.to_dict("records")]


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> list[str]:
    """A Markdown table's lines, every cell escaped (:func:`junction.markdown.md_escape`);
    ``[empty]`` when there are no rows."""
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_escape(str(c)) for c in row) + " |" for row in rows]
    return lines if len(lines) > 2 else [empty]
