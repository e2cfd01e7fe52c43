"""Self-corrections in a request: "in workday? no, in okta", "comment on servicenow... no,
on jira OPS-901", "show me all silences... no wait, list the active alerts".

The words a correction replaces are dropped before clauses are formed: from the last
integration named before the marker when the correction names another one and no verb
(the verb still applies: "comment on"), else from the start of the corrected clause (the
correction says what to do instead).

Public API: :func:`drop_corrected`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analytics.intelligence.lexicon import fold

if TYPE_CHECKING:
    from analytics.intelligence.planner_parse import Token

__all__ = ["drop_corrected"]

_MARKERS = frozenset({"no", "nein", "perdon", "sorry", "actually", "rather", "oops"})
_SPOKEN = frozenset({"i mean", "ich meine", "quiero decir", "mejor dicho", "besser gesagt"})
_PUNCT = frozenset({".", ",", "?", "!", ";", "…"})
_STOPS = frozenset({".", "?", "!", ";"})


def _marker(tokens: list[Token], i: int) -> int:
    """How many tokens the correction marker at ``i`` spans (0: none)."""
    word = fold(tokens[i].text)
    if not i or tokens[i - 1].text not in _PUNCT:
        return 0
    nxt = fold(tokens[i + 1].text) if i + 1 < len(tokens) else ""
    if word in _SPOKEN or (word in _MARKERS and word != "no"):
        return 2 if nxt == "," else 1
    if word == "no" and nxt in {",", "wait", "warte", "espera"}:
        after = fold(tokens[i + 2].text) if i + 2 < len(tokens) else ""
        return 3 if nxt != "," and after == "," else 2
    return 0


def drop_corrected(tokens: list[Token]) -> list[Token]:
    """``tokens`` without the words a self-correction takes back (see the module docstring)."""
    for i in range(1, len(tokens)):
        span = _marker(tokens, i)
        if not span:
            continue
        rest = tokens[i + span :]
        end = next((j for j, t in enumerate(rest) if t.text in _STOPS), len(rest))
        correction = rest[:end]
        names = any(t.has("integration") for t in correction)
        acts = any(t.has("verb") for t in correction)
        if not (names or acts):
            continue
        before = tokens[:i]
        while before and before[-1].text in _PUNCT:
            before.pop()  # "servicenow..." / "workday?"
        start = next(
            (
                j + 1
                for j in range(len(before) - 1, -1, -1)
                if before[j].text in _PUNCT or before[j].has("connective")
            ),
            0,
        )
        named = [j for j in range(start, len(before)) if before[j].has("integration")]
        cut = named[-1] if names and not acts and named else start
        return drop_corrected(before[:cut] + rest)
    return tokens
