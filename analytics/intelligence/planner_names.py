"""Names in a request: a capitalised word next to "group", "channel" or "room" is a name
("the Okta group Engineering", "the Infra channel", "the webex room Onboarding"), and which
tokens name where a message goes; a chat service named as the verb ("slack them the link")
(helpers of :mod:`analytics.intelligence.planner_parse`).

Public API: :func:`group_names`, :func:`service_verbs`, :func:`target`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analytics.intelligence.lexicon import fold

if TYPE_CHECKING:
    from analytics.intelligence.planner_parse import Token

__all__ = ["group_names", "service_verbs", "target"]


def group_names(tokens: list[Token]) -> None:
    """A capitalised unknown word next to "group" is the group's name; before "channel" or
    "room" the channel's ("the Infra channel"), never a typo of another word."""
    for i, t in enumerate(tokens):
        if t.entity or not t.text[:1].isupper() or not i:
            continue
        if t.meanings:  # "the Incidents webex room": a noun naming a room is its name
            nouns_only = all(m[0] == "noun" for m in t.meanings)
            nxt = tokens[i + 1 : i + 3]
            named = len(nxt) == 2 and nxt[0].has("integration")
            place = named and (nxt[1].has("noun", "room") or nxt[1].has("noun", "channel"))
            lead = fold(tokens[i - 1].text)  # "the Incident room": its name
            place = place or (lead == "the" and bool(nxt) and target(nxt[0]) and not nxt[0].entity)
            after_place = tokens[i - 1].has("noun", "channel") or tokens[i - 1].has("noun", "room")
            if nouns_only and (place or after_place):  # "the teams channel Builds"
                t.meanings, t.entity = [], ("channel_name", t.text)
            ends = (
                i + 1 == len(tokens)
                or tokens[i + 1].text in ",;.!?"
                or tokens[i + 1].has("connective")
            )
            if not nouns_only and ends and tokens[i - 1].has("noun", "room"):
                t.meanings, t.entity = [], ("room", t.text)  # "the webex room Onboarding"
            continue
        before = i > 0 and _groupish(tokens[i - 1])
        after = i + 1 < len(tokens) and _groupish(tokens[i + 1])
        if before or after:
            t.entity = ("group", t.text)
        elif any(  # "the Infra channel", "the Builds webex room"
            x.has("noun", "channel") or x.has("noun", "room")
            for x in tokens[i + 1 : i + 3]
            if x is tokens[i + 1] or tokens[i + 1].has("integration")
        ):
            t.entity = ("channel_name", t.text)
        elif i > 0 and tokens[i - 1].has("noun", "room"):
            t.entity = ("room", t.text)  # "the Webex space Standup"


def _groupish(t: Token) -> bool:
    return t.has("noun", "group") or fold(t.text) in {"grup", "gruppe", "grupo", "groupe"}


def target(t: Token) -> bool:
    """A token naming where a message goes (a channel, an email, a room)."""
    kinds = {"channel", "email", "room"}
    return (
        bool(t.entity and t.entity[0] in kinds)
        or t.has("noun", "channel")
        or t.has("noun", "room")
        or any(t.has("integration", n) for n in ("slack", "webex", "teams", "webhook"))
    )


def service_verbs(tokens: list[Token]) -> None:
    """ "slack them the link", "webex bob@acme.com": a chat service named as the verb."""
    for i, t in enumerate(tokens):
        rest = tokens[i + 1 : i + 4]
        if rest and fold(rest[0].text) in {"the", "our", "a"}:
            rest = rest[1:]  # "webex the Release room: ..."
        after = next((x for x in rest if not (x.entity and x.entity[0] == "channel_name")), None)
        lead = tokens[i - 1] if i else None
        starts = lead is None or lead.has("connective") or lead.text in {",", ";", ".", ":"}
        if (
            starts
            and any(t.has("integration", n) for n in ("slack", "webex", "teams"))
            and after is not None
            and (fold(after.text) in {"them", "him", "her", "me", "us"} or target(after))
            and not (after.has("noun", "room") and after is tokens[i + 1])  # "webex room"
        ):
            t.meanings = [*t.meanings, ("verb", "send")]
