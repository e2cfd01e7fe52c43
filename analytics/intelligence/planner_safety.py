"""What the offline planner refuses before planning, in one line naming the words.

Prompt injection ("ignore the catalog"), URLs (workflows only call the configured base
URLs of catalog integrations), secrets and sensitive data, integrations Junction has no
actions for, shell commands, requests no action serves (download, restart...),
administrator grants, deletions, and bulk deactivations or blocks that name no users.
The words come from ``lexicon.yaml``.

Public API: :func:`safety`, :func:`quote`.
"""

from __future__ import annotations

import re
from itertools import pairwise

from analytics.intelligence.lexicon import Lexicon, fold
from analytics.intelligence.planner_parse import OBJECT_PRONOUNS, Reading, Token
from integrations.catalog import Catalog

__all__ = ["quote", "safety"]


_OWNED = r" (?:belongs?|belonged|gehort|gehoren|pertenece|appartient) "
"""Right after a secret's name in a request that sends nothing: whose it is, not its value."""
_TOPICS = (
    r"(?:reset|resets|rotation|rotations|policy|policies|expiry|expiration|change|changes"
    r"|leak|leaks|incident|incidents|flow|manager|vault|scanner|scan|audit|renewal|rules)"
)
"""Nouns after a secret's name that make it the topic of a message, not a value sent."""
_HEADS = frozenset(
    {"service", "services", "job", "jobs", "system", "team", "window", "queue", "database"}
    | {"db", "pipeline", "pipelines", "flow"}
)


def _head_noun(t: Token) -> bool:
    """A noun that the word before it only describes ("backup job", "order service")."""
    return fold(t.text) in _HEADS or (t.has("noun") and not t.entity)


_BACK_REFERENCES = frozenset({"them", "those", "these", "ellos", "ellas", "sie", "ihnen", "diese"})


def _plain(reading: Reading, *, after_verb: bool = True) -> list[Token]:
    """The request's words (no entities); without the text of a message or a title, and
    without what follows a clause's verb, when ``after_verb`` is false."""
    out: list[Token] = []
    for c in reading.clauses:
        verb = False
        for t in c.tokens:
            if t.entity:
                continue
            if after_verb or not (verb or t.has("topic_word")):
                out.append(t)
            verb = verb or t.has("verb")
    return out


def _acting_verbs(reading: Reading, lex: Lexicon) -> set[int]:
    """Tokens read as a catalog verb on an object its actions take ("restart the pipeline":
    trigger a pipeline), which a refusal word among them ("restart") does not refuse."""
    out: set[int] = set()
    before: set[str] = set()
    for c in reading.clauses:
        nouns = {v for t in c.tokens for v in t.values("noun")}
        pronoun = any(fold(t.text) in OBJECT_PRONOUNS for t in c.tokens)
        nouns, before = nouns | (before if pronoun else set()), nouns  # "restart it"
        for t in c.tokens:
            verbs = set(t.values("verb"))
            if verbs and any(
                verbs & set(op.verbs) and nouns & set(op.nouns) for op in lex.ops.values()
            ):
                out.add(id(t))
    return out


def quote(words: list[str]) -> str:
    """Words for a one-line message: each once, at most six, each at most 40 characters."""
    unique = list(dict.fromkeys(w if len(w) <= 40 else w[:37] + "..." for w in words))
    more = f" and {len(unique) - 6} more" if len(unique) > 6 else ""
    return ", ".join(f"'{w}'" for w in unique[:6]) + more


def safety(text: str, reading: Reading, lex: Lexicon, catalog: Catalog) -> str | None:
    """Why the request must be refused before planning, if it must (one line), else None."""
    if reading.injections:
        return f"refused: the request tries to override the planner ({quote(reading.injections)})"
    if reading.urls:
        return (
            f"refused: the request names a URL ({reading.urls[0][:80]}); workflows only call "
            "the configured base URLs of catalog integrations"
        )
    folded = " " + re.sub(r"[^\w@-]+", " ", fold(text)) + " "
    secrets = reading.secrets + [w for w in lex.words.secret_words if f" {fold(w)} " in folded]
    # "which account our bot token belongs to": whose credential it is, not the credential
    sends = any(c.has("verb", "send") or c.has("verb", "email") for c in reading.clauses)
    secrets = [
        w for w in secrets if sends or not re.search(rf" {re.escape(fold(w))}{_OWNED}", folded)
    ]
    # "the password reset flow", "the leaked api key incident": the secret names a topic
    secrets = [w for w in secrets if not re.search(rf" {re.escape(fold(w))} {_TOPICS} ", folded)]
    if secrets:
        listed = quote(sorted(set(secrets)))
        return f"refused: the request would send secrets or sensitive data ({listed})"
    vendors = list(reading.vendors)
    vendors += [
        n for w, n in lex.words.unknown_vendors.items() if "." in w and fold(w) in fold(text)
    ]
    groups = lex.words.refuse
    planned = {op.integration for op in lex.ops.values()}
    for t in (t for c in reading.clauses for t in c.tokens):
        name = fold(t.text)
        if name in catalog and name not in planned and name != "box":
            vendors.append(catalog.get(name).title)
    if vendors:
        names = ", ".join(sorted(set(vendors)))
        known = ", ".join(sorted(planned))
        return f"refused: Junction has no actions for {names} (integrations with actions: {known})"
    acting = _acting_verbs(reading, lex)
    every = _plain(reading)
    modifiers = {  # "the nightly backup job", "the ssh key rotation": a name, not a request
        id(t)
        for t, nxt in pairwise(every)
        if _head_noun(nxt) or re.fullmatch(_TOPICS, fold(nxt.text).split()[-1])
    }
    words = " " + " ".join(fold(t.text) for t in every if id(t) not in acting) + " "
    named = " ".join(fold(t.text) for t in every if id(t) not in acting | modifiers)
    named = f" {named} "
    # what a clause asks for after its verb describes ("a PagerDuty event for the backup job")
    free = " ".join(
        fold(t.text) for t in _plain(reading, after_verb=False) if id(t) not in acting | modifiers
    )
    free = f" {free} "
    for name, group in groups.items():  # words only: "in PAY" names a Jira project
        seen = {"unsupported": free, "commands": named}.get(name, words)
        found = [w for w in group.words if f" {fold(w)} " in seen]
        if found:
            return f"refused: the request {group.reason} ({quote(found)})"
    earlier_people = False  # "terminations... suspend each of them": people named before
    for c in reading.clauses:
        destroy = [t.text for t in c.tokens if t.has("verb", "destroy")]
        if destroy:
            return (
                f"refused: Junction's workflows do not delete or wipe anything ({quote(destroy)})"
            )
        bulk = [t.text for t in c.tokens if set(fold(t.text).split()) & lex.bulk]
        first_verb = next((t for t in c.tokens if t.has("verb")), None)
        harmful = c.has("verb", "deactivate") or c.has("verb", "block")
        bounded = any(k == "minutes" for k, _ in reading.entities)  # "all alerts for 2 hours"
        silence = first_verb is not None and first_verb.has("verb", "silence")
        harmful = harmful or (silence and not bounded)
        people = any(c.has("noun", n) for n in ("hire", "leaver", "oncall"))
        back = {fold(t.text) for t in c.tokens} & _BACK_REFERENCES
        scoped = people or (earlier_people and bool(back))
        earlier_people = earlier_people or people
        if harmful and bulk and not scoped:
            named = quote([*bulk, c.tokens[0].text])
            return f"refused: a bulk deactivation or block ({named}) is not planned; name the users"
    return None
