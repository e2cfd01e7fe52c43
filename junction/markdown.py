"""Text inside Markdown that Markdown must not interpret: Prefect's UI renders markdown
artifacts and the cells of table artifacts as Markdown (a KPI target ">= 92%" showed as a
blockquote, an error text with ``[x](javascript:...)`` would be a link)."""

from __future__ import annotations

import re
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text: str) -> str:
    """``text`` safe inside Markdown: HTML special characters as entities (Markdown
    passes raw HTML through), Markdown punctuation backslash-escaped (no links, images
    or emphasis from data), line breaks as spaces (a table row is one line)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return " ".join(text.splitlines())


def markdown_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with every text cell escaped (:func:`md_escape`), for a table artifact."""
    return [{k: md_escape(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]


__all__ = ["markdown_rows", "md_escape"]
