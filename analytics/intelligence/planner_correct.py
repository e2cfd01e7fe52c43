"""Self-corrections and clause repairs in a request.

Self-corrections (:func:`drop_corrected`): "in workday? no, in okta", "comment on
servicenow... no, on jira OPS-901", "show me all silences... no wait, list the alerts".
The words a correction replaces are dropped before clauses are formed: from the last
integration named before the marker when the correction names another one and no verb
(the verb still applies: "comment on"), else from the start of the corrected clause (the
correction says what to do instead).

Clause repairs (:func:`mend_clauses`): a relative clause after a quantified object
describes the list ("alle Nutzer, die in Workday ..."); an empty condition ("si hay,", "if
so,") makes the next clause a "then".

A state set by a generic verb ("update PD incident X to resolved", "mark JUN-5 as done")
resolves it (:func:`state_updates`). A recipient as the subject ("every member gets an
email") takes the verb that makes what it receives (:func:`receives`). A noun before a
document word ("the incident doc") describes the document (:func:`documents`).

What an LLM is asked to write is its own text (:func:`llm_writes`); "get a bug opened"
makes it (:func:`causatives`).

"let #ops know" sends, "make sure" makes nothing (:func:`let_know`); "remove/kill ... access"
blocks (:func:`access`).

Public API: :func:`access`, :func:`causatives`, :func:`documents`, :func:`drop_corrected`,
:func:`let_know`, :func:`llm_writes`, :func:`mend_clauses`, :func:`receives`,
:func:`state_updates`.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import TYPE_CHECKING

from analytics.intelligence.lexicon import fold

if TYPE_CHECKING:
    from analytics.intelligence.planner_parse import Clause, Token

__all__ = [
    "access",
    "causatives",
    "documents",
    "drop_corrected",
    "let_know",
    "llm_writes",
    "mend_clauses",
    "receives",
    "state_updates",
]

_MARKERS = frozenset({"no", "nein", "perdon", "sorry", "actually", "rather", "oops"})
_SPOKEN = frozenset({"i mean", "ich meine", "quiero decir", "mejor dicho", "besser gesagt"})
_PUNCT = frozenset({".", ",", "?", "!", ";", "…"})
_STOPS = frozenset({".", "?", "!", ";"})
_IF_SO = frozenset({"hay", "any", "so", "yes", "ja", "es", "welche", "gibt", "there", "are"})
_ASKED = frozenset({"wer", "who", "quien", "qui", "welche", "which", "whoever"})
_RELATIVES = frozenset({"who", "which", "die", "der", "das", "welche", "quienes", "que", "qui"})


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


def mend_clauses(clauses: list[Clause]) -> list[Clause]:
    """``clauses`` with relative clauses joined and empty conditions turned into "then"."""
    for i, c in enumerate(clauses):  # "alle Nutzer, die in Workday ...": one list, described
        relative = bool(c.tokens) and fold(c.tokens[0].text) in _RELATIVES
        if i and relative and c.links == {"comma"} and clauses[i - 1].has("quantifier"):
            clauses[i - 1].tokens += c.tokens
            c.tokens = []
            rest = clauses[i + 1] if i + 1 < len(clauses) else None
            if rest is not None and rest.links == {"comma"} and not rest.has("verb"):
                clauses[i - 1].tokens += rest.tokens  # "Erstelle für jeden Alert, der feuert,
                rest.tokens = []  # ein Incident": the main clause goes on after the comma
    clauses = [c for c in clauses if c.tokens]
    for i, c in enumerate(clauses):  # "schick eine Mail, wer gerade Bereitschaft hat"
        asks = bool(c.tokens) and fold(c.tokens[0].text).split()[0] in _ASKED  # "who is"
        said = clauses[i - 1] if i else None
        tells = said is not None and (said.has("verb", "send") or said.has("verb", "email"))
        if said is not None and tells and asks and c.links == {"comma"}:
            # the message is about what is asked: ask first, then send
            c.links, said.links = said.links, {"comma", "then"}
            clauses[i - 1], clauses[i] = c, said
    for c, nxt in pairwise(clauses):  # "lade ihn danach in den Raum ein": "then" mid-clause
        bare = c.has("verb") and not (c.has("noun") or c.has("integration"))
        bare = bare and not any(t.entity for t in c.tokens)
        own = set(nxt.words("verb")) <= set(c.words("verb"))  # "füge ihn danach ... hinzu"
        joins = "then" in nxt.links and "sentence" not in nxt.links
        if bare and c.tokens and nxt.tokens and joins and own:
            c.tokens += nxt.tokens
            c.links |= nxt.links - {"and", "comma"}
            nxt.tokens = []
    for c, nxt in pairwise(clauses):  # "Sag ... Bescheid, dass die DB down ist": the text
        sends = c.has("verb", "send") or c.has("verb", "email")
        if sends and nxt.links == {"comma"} and all(t.has("topic_word") for t in nxt.tokens):
            c.tokens += nxt.tokens
            nxt.tokens = []
    clauses = [c for c in clauses if c.tokens]
    for i, c in enumerate(clauses):  # "before you deactivate x, post a heads-up": post first
        if "before" not in c.links:
            continue
        c.links = (c.links - {"before", "condition"}) | {"then"}
        after = clauses[i + 1] if i + 1 < len(clauses) else None
        if after is not None and "sentence" not in after.links and not after.links & {"then"}:
            after.links, c.links = c.links - {"then"}, {"comma", "then"}
            clauses[i], clauses[i + 1] = after, c
    for i, c in enumerate(clauses):  # "tell #infra once they're all created": then
        if i and c.links & {"after", "condition"} and _done_only(c):
            c.tokens = []
            (clauses[i + 1] if i + 1 < len(clauses) else clauses[i - 1]).links.add("then")
    clauses = [c for c in clauses if c.tokens]
    _addressed_llm(clauses)
    _account_items(clauses)
    for i, c in enumerate(clauses[:-1]):  # "¿hay alertas? si hay, avisa": "if so", a then
        if i and "condition" in c.links and {fold(t.text) for t in c.tokens} <= _IF_SO:
            clauses[i + 1].links |= {"then"} | (c.links & {"sentence"})
            c.tokens = []
    return [c for c in clauses if c.tokens]


_DONE_SUBJECTS = frozenset({"it", "they", "they're", "theyre", "that", "this", "these", "those"})
_DONE_FILLERS = frozenset({"is", "are", "has", "have", "been", "all", "both", "everything"})


def _done_only(c: Clause) -> bool:
    """ "they're all created", "both have been set up": the steps before are done."""
    words = [fold(t.text) for t in c.tokens]
    done = [t for t in c.tokens if fold(t.text) not in _DONE_SUBJECTS | _DONE_FILLERS]
    past = len(done) == 1 and (
        done[0].has("event") or done[0].has("state") or fold(done[0].text).endswith("ed")
    )
    return bool(set(words) & (_DONE_SUBJECTS | {"all", "both", "everything"})) and past


def _addressed_llm(clauses: list[Clause]) -> None:
    """ "ChatGPT: write a haiku about ...": an LLM addressed alone takes the next clause as
    its task; a "write"/"send" there with no destination is the LLM writing."""
    for c, nxt in pairwise(clauses):
        alone = {v for t in c.tokens for v in t.values("integration")} == {"openai"}
        alone = alone and all(t.has("integration") for t in c.tokens)
        told = any(t.entity for t in nxt.tokens) or nxt.has("integration")
        if alone and "sentence" not in nxt.links and nxt.has("verb", "send") and not told:
            for t in nxt.tokens:
                if t.has("verb", "send"):
                    t.meanings = [("verb", "summarize")]
            nxt.tokens = c.tokens + nxt.tokens
            nxt.links = c.links
            c.tokens = []
    clauses[:] = [c for c in clauses if c.tokens]


_ACCESS_WORDS = frozenset({"access", "zugriff", "zugang", "acceso", "acces"})
_ACCOUNT_SERVICES = frozenset({"okta", "gitlab"})
"""Services whose name alone, listed for a new hire, means an account there."""


def _account_items(clauses: list[Clause]) -> None:
    """ "new hire x: okta account, gitlab account": verbless accounts listed after a hire
    in the same sentence are created (after "onboard x:" they take the onboarding verb)."""
    made: list[tuple[str, str]] = []  # the verbs a listed account takes (none: not listed)
    for c in clauses:
        if "sentence" in c.links:
            made = []
        if c.has("noun", "hire") or c.has("verb", "onboard"):
            # "onboard x: okta user, webex room Y invite, gitlab account": the head's verbs
            onboard = [m for t in c.tokens if t.has("verb", "onboard") for m in t.meanings]
            made = [m for m in onboard if m[0] == "verb"] or [("verb", "create")]
            continue
        acts = [t for t in c.tokens if t.has("verb") and fold(t.text) not in _ACCESS_WORDS]
        if made and not acts and c.has("integration"):  # "gitlab account with access to x"
            bare = not c.has("noun") and not any(t.entity for t in c.tokens)  # "okta + gitlab"
            for t in c.tokens:
                if bare and set(t.values("integration")) & _ACCOUNT_SERVICES:
                    t.meanings.append(("noun", "user"))
                if set(t.values("noun")) & {"room", "group", "project"}:
                    t.meanings.append(("verb", "add"))  # "new hire x: ..., webex room Y"
                if t.has("noun", "user"):
                    t.meanings.extend(m for m in made if m not in t.meanings)


_WRITES = frozenset({"draft", "drafts", "compose", "suggest", "propose", "redacta", "schreibe"})


def llm_writes(tokens: list[Token]) -> None:
    """ "have openai write a postmortem", "GPT to draft ...": what an LLM is asked to write
    is its own text (the LLM's verb), not a message sent or a record made."""
    for i, t in enumerate(tokens[:-1]):
        if not t.has("integration", "openai"):
            continue
        nxt = tokens[i + 2] if fold(tokens[i + 1].text) == "to" and i + 2 < len(tokens) else None
        verb = nxt or tokens[i + 1]
        writes = verb.has("verb", "send") or verb.has("verb", "create")
        if writes or fold(verb.text) in _WRITES:
            verb.meanings = [("verb", "summarize")]


_CAUSES = frozenset({"get", "have", "want", "need", "like"})
_MADE = frozenset({"opened", "created", "filed", "raised", "made", "set up", "started"})


def causatives(tokens: list[Token]) -> None:
    """ "can we get a jira bug opened", "I want an incident created": the record is made."""
    for i, t in enumerate(tokens):
        if fold(t.text) not in _CAUSES:
            continue
        rest = tokens[i + 1 : i + 7]
        new = bool(rest) and fold(rest[0].text) in {"a", "an"}  # a new record, not "the"
        noun = next((j for j, x in enumerate(rest) if x.has("noun")), None)
        made = next((x for x in rest[noun or 0 :] if fold(x.text) in _MADE), None)
        if new and noun is not None and made and not any(x.has("verb") for x in rest):
            t.meanings = [("verb", "create")]
            made.meanings = []


def let_know(tokens: list[Token]) -> None:
    """ "let #security know": a message, though an entity splits the phrase; "make sure"
    asks for what follows, it makes nothing."""
    for i, t in enumerate(tokens):
        after = [fold(x.text) for x in tokens[i + 1 : i + 4]]
        if fold(t.text) in {"let", "lass", "lasst"} and ({"know", "wissen"} & set(after)):
            t.meanings = [("verb", "send")]
        if fold(t.text) in {"make", "makes"} and after[:1] == ["sure"]:
            t.meanings = []


_WITH = frozenset({"with", "mit", "con", "avec"})
_TO = frozenset({"to", "auf", "zu", "a", "al", "à"})
_BY = frozenset({"by", "indem", "mediante", "en"})
_CUTS = frozenset({"kill", "cut", "pull", "yank", "nuke", "entzieh", "entziehe", "quita"})
"""Verbs that, with an access word after them, take access away ("kill their access")."""


def access(tokens: list[Token], words: frozenset[str]) -> None:
    """ "Remove GitLab access", "kill their okta + gitlab access": a block, not a deletion;
    "a GitLab account with access to acme/core": a membership; "escalate by creating an
    incident": the gerund says how, the verb before it is no action of its own."""
    for i, t in enumerate(tokens):
        after = fold(tokens[i + 1].text) if i + 1 < len(tokens) else ""
        if fold(t.text) in words and i and fold(tokens[i - 1].text) in _WITH and after in _TO:
            t.meanings = [("verb", "add")]
        by = fold(tokens[i + 1].text) in _BY if i + 1 < len(tokens) else False
        if by and t.has("verb") and i + 2 < len(tokens) and tokens[i + 2].has("verb"):
            t.meanings = []
        cuts = t.has("verb", "destroy") or re.sub(r"(le|les)$", "", fold(t.text)) in _CUTS
        if cuts and any(fold(x.text) in words for x in tokens[i + 1 : i + 7]):
            t.meanings = [("verb", "block")]


_SETTERS = frozenset({"update", "set", "mark", "markiere", "setze", "marca", "actualiza"})


def state_updates(tokens: list[Token]) -> None:
    """ "update incident X to resolved": the generic verb is "resolve" when a state follows."""
    for i, t in enumerate(tokens):
        stated = any(x.has("state", "closed") for x in tokens[i + 1 : i + 6])
        if fold(t.text) in _SETTERS and not t.meanings and stated:
            t.meanings = [("verb", "resolve")]


_RECEIVES = frozenset(
    {"gets", "receives", "bekommt", "bekommen", "erhalt", "erhalten", "recibe", "reciben"}
    | {"recoit", "recoivent", "needs", "braucht", "benotigt", "necesita", "necesitan"}
)
_RECEIVED = {"email": "send", "message": "send", "user": "create", "ticket": "create"}


_GIVES = frozenset({"give", "gib", "gebe", "dale", "donne"})
_PLACES = frozenset({"group", "project", "room", "channel"})


def receives(tokens: list[Token]) -> None:
    """ "every on-call member gets an email", "she needs an okta account": a recipient as the
    subject; the verb is the one that makes what is received (a message sent, an account
    created). "give them an okta account" (no group or project to give them) creates it."""
    for i, t in enumerate(tokens):
        if fold(t.text) in _GIVES:
            rest = tokens[i + 1 : i + 6]
            stop = next((j for j, x in enumerate(rest) if x.text in ",;.!?"), len(rest))
            nouns = {n for x in rest[:stop] for n in x.values("noun")}
            if "user" in nouns and not nouns & _PLACES:
                t.meanings = [("verb", "create")]
            continue
        if fold(t.text) not in _RECEIVES or t.has("verb"):
            continue
        for x in tokens[i + 1 : i + 5]:
            made = next((_RECEIVED[n] for n in x.values("noun") if n in _RECEIVED), None)
            if made:
                t.meanings = [("verb", made)]
                break


def documents(tokens: list[Token], words: list[str]) -> None:
    """ "the incident doc": a noun before a document word (``words``) describes the document,
    which is content (a topic), not a record to read."""
    docs = set(words)
    for t, nxt in pairwise(tokens):
        if fold(nxt.text) in docs and not nxt.entity:
            nxt.meanings = [("topic_word", nxt.text)]
            if t.has("noun") and not t.entity:
                t.meanings = [m for m in t.meanings if m[0] != "noun"] + [("topic_word", t.text)]
