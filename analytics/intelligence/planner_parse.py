"""Reading a plain-English (German, Spanish) request: entities, words, clauses.

The request is read in three passes, with no model and no network:

1. Entities, found by pattern in the original text (emails, ``#channels``, quoted text,
   ``group/project`` paths, Jira keys, numbers, durations, URLs...) and replaced by
   placeholders so they are never mistaken for words.
2. Words: each phrase of up to four words is looked up in the lexicon
   (:mod:`analytics.intelligence.lexicon`), accents folded; a word that is not known is
   corrected by fuzzy matching (:func:`difflib.get_close_matches`, cutoff
   :data:`FUZZY_CUTOFF`, words of four letters or more) or reported as unmapped.
3. Clauses: connectives ("then", "and", "in parallel", "if", "unless", "otherwise") and
   punctuation split the words; each clause keeps how it relates to the one before.

Public API: :class:`Token`, :class:`Clause`, :class:`Reading`, :func:`read_request`,
:data:`FUZZY_CUTOFF`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import get_args

from analytics.intelligence.lexicon import Category, Lexicon, fold
from analytics.intelligence.morphology import typo_of
from analytics.intelligence.planner_correct import (
    access,
    causatives,
    documents,
    drop_corrected,
    let_know,
    llm_writes,
    mend_clauses,
    receives,
    state_updates,
)
from analytics.intelligence.planner_names import group_names, service_verbs, target

__all__ = [
    "FUZZY_CUTOFF",
    "OBJECT_PRONOUNS",
    "SHORT_CUTOFF",
    "Clause",
    "Reading",
    "Token",
    "read_request",
]

FUZZY_CUTOFF = 0.75
"""Similarity (difflib ratio) a misspelt word needs to count as a lexicon word."""

SHORT_CUTOFF = 0.85
"""The same for three-letter words ("whn" -> "when"), which are easier to confuse."""

_ENTITY_PATTERNS: list[tuple[str, str]] = [
    ("url", r"\b(?:https?|ftp)://[^\s\"'<>]+|\bwww\.[^\s\"'<>]+"),
    ("quoted", r"\"([^\"]{1,300})\"|“([^”]{1,300})”|„([^“”]{1,300})[“”]|«([^»]{1,300})»"),
    ("quoted", r"(?<![\w])'([^']{1,300})'(?![\w])"),
    ("email", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    ("channel", r"(?<![\w&])#([\w][\w.-]*)"),
    ("jira_key", r"\b[A-Z][A-Z0-9]{1,9}-\d+\b"),
    ("sn_number", r"\bINC\d{4,}\b"),
    ("project", r"\b[A-Za-z][\w.-]*/[\w.-]*\w\b"),
    (
        "minutes",
        r"\b(\d+(?:\.\d+)?)\s*(?i:minutes?|mins?|minuten|minutos|hours?|hrs?|stunden?|horas?)\b",
    ),
    ("pd_id", r"\b(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z][A-Z0-9]{4,7}\b"),
    ("alert_name", r"\b[A-Z][a-z]+(?:[A-Z][a-z0-9]+)+\b"),
    ("upper", r"\b[A-Z]{2,10}\b"),
    # "on branch feature-x": a name, not words (main and master stay words: a condition)
    ("branch_name", r"(?<=\bbranch )(?!main\b|master\b)[A-Za-z0-9][\w./-]*"),
    ("version", r"\bv?\d+(?:\.\d+)+\b"),  # "v2.3", "release-1.2": not a sentence's end
    ("number", r"\b\d+\b"),
]
_ENTITY_RE = re.compile("|".join(f"(?P<{k}{i}>{p})" for i, (k, p) in enumerate(_ENTITY_PATTERNS)))
_WORD_RE = re.compile(r"\x00\d+\x00|[\w][\w'’-]*|[,;:.!?()]")
_LIST_ITEM = re.compile(r"\s*\n\s*(?:[-*•·]|\d{1,2}[.)])\s+(?=\S)")
_ELISION = re.compile(r"(?i)(?:l|d|qu|j|n|s|c|lorsqu|puisqu|jusqu)['’](\w.*)")
_ARROW_SENDS = re.compile(r"\s(?:->|→|=>)\s+(?=#\w|[\w.+-]+@)")
_ARROW_MAKES = re.compile(r"\s(?:->|→|=>)\s+(?=(?:a|an|ein|eine|einen|un|una|une)\s)", re.I)
_UNAPOSTROPHED = {"its": "it", "thats": "that", "whats": "what", "hes": "he", "shes": "she"}
OBJECT_PRONOUNS = frozenset(
    {"it", "them", "es", "ihn", "sie", "lo", "la", "ello", "there", "dort", "allí"}
)
"""Words that stand for an object named before ("restart it", "starte sie neu")."""
KNOWN_KINDS = frozenset({*get_args(Category), "topic_word"})
"""Meanings that map a word to something (a word with none of them is reported unmapped)."""
_NOT_PROJECTS = frozenset({"API", "VPN", "TLS", "DB", "UTC", "SRE", "PR", "AI", "LLM"})
_PROJECT_LEAD = frozenset({"project", "projekt", "proyecto", "in", "en", "im", "into"})
_DETERMINERS = frozenset(
    {"a", "an", "the", "its", "their", "this", "that", "his", "her", "our", "my", "each", "every"}
    | {"all", "any", "some", "no", "for each", "for every", "ein", "eine", "einen", "den", "die"}
    | {"das", "der", "jeden", "fur jeden", "fur jede", "el", "la", "un", "una", "su", "del", "al"}
    | {"cada", "five-line", "para cada", "pour chaque", "chaque"}
    | {"same", "short", "new", "first", "latest", "gleiche", "mismo", "misma"}
)


_ADVERBS = frozenset(
    {"again", "too", "still", "ever", "even", "nochmal", "wieder", "erneut", "vez", "überhaupt"}
)
_UP_WORDS = frozenset(  # "is alertmanager up?": the service's health, asked about
    {"up", "down", "alive", "reachable", "healthy", "online", "erreichbar", "caido", "disponible"}
)
_STATUS_WORDS = frozenset({"status", "estado", "zustand", "statut", "health", "salud"})
_COPULAS = frozenset({"is", "are", "ist", "sind", "esta", "estan", "est"})
_PASSIVE_LEAD = frozenset(
    {"are", "is", "was", "were", "been", "sind", "ist", "wurde", "están", "está"}
)
_NOUN_LEAD = frozenset(
    {"with", "by", "via", "per", "mit", "con", "por", "work", "your", "as", "als", "como"}
)
_PARTICIPLES = frozenset(  # "each firing alert": a state before a noun, not a verb's object
    {"firing", "active", "pending", "triggered", "acknowledged", "silenced", "ongoing"}
    | {"existing", "current", "feuernden", "aktiven", "activas", "activos", "pendientes"}
)
_NAME_MARKERS = frozenset({"called", "named", "namens", "llamado", "llamada"})
_ADJECTIVE_LEAD = frozenset(
    {"the", "all", "any", "each", "every", "of", "are", "many", "no", "some", "still", "die"}
    | {"my", "our", "your", "their", "meine", "unsere", "mis", "nuestros"}
    | {"alle", "los", "las", "hay", "there", "for each", "for every", "para cada", "für jeden"}
)


@dataclass
class Token:
    """One word, phrase or entity of the request."""

    text: str
    meanings: list[tuple[str, str]] = field(default_factory=list)
    entity: tuple[str, str] | None = None
    fuzzy: str | None = None

    def has(self, category: str, value: str | None = None) -> bool:
        """Whether one of the token's meanings is ``category`` (with ``value``)."""
        return any(c == category and (value is None or v == value) for c, v in self.meanings)

    def values(self, category: str) -> list[str]:
        """The token's values of ``category``."""
        return [v for c, v in self.meanings if c == category]


@dataclass
class Clause:
    """Words between two connectives, and how the clause relates to the one before."""

    tokens: list[Token]
    links: set[str] = field(default_factory=set)  # then, and, parallel, condition, unless...
    topic: str = ""  # free text after "about", "titled"...
    asked: bool = False  # the clause ends its sentence with "?"

    def words(self, category: str) -> list[str]:
        """Values of ``category`` in order, once each."""
        out: list[str] = []
        for t in self.tokens:
            for v in t.values(category):
                if v not in out:
                    out.append(v)
        return out

    def entities(self, kind: str) -> list[str]:
        """Entity values of ``kind`` in the clause, in order."""
        return [t.entity[1] for t in self.tokens if t.entity and t.entity[0] == kind]

    def has(self, category: str, value: str | None = None) -> bool:
        """Whether a token of the clause has the meaning."""
        return any(t.has(category, value) for t in self.tokens)

    @property
    def text(self) -> str:
        """The clause's words (entities as written, for messages)."""
        return " ".join(t.entity[1] if t.entity else t.text for t in self.tokens)


@dataclass
class Reading:
    """The request, read."""

    clauses: list[Clause]
    entities: list[tuple[str, str]]
    unmapped: list[str]
    corrected: list[tuple[str, str]]
    vendors: list[str]
    secrets: list[str]
    injections: list[str]
    urls: list[str]


def _entities(text: str, lex: Lexicon) -> tuple[str, list[tuple[str, str]]]:
    found: list[tuple[str, str]] = []

    def replace(m: re.Match[str]) -> str:
        kind = (m.lastgroup or "x").rstrip("0123456789")
        if (
            kind in {"upper", "alert_name", "pd_id", "jira_key"}
            and (fold(m.group(0)),) in lex.phrases
        ):
            return m.group(0)  # a word the lexicon knows ("GitLab", "GPT-4"), not a name
        value = next((g for g in m.groups()[m.lastindex or 0 :] if g), m.group(0))
        if kind == "channel":
            value = m.group(0)[1:]
        if kind == "minutes":
            number = float(re.match(r"[\d.]+", m.group(0)).group(0))  # type: ignore[union-attr]
            value = str(number * 60 if re.search(r"h|std|hora", m.group(0)[1:]) else number)
        found.append((kind, value))
        return f" \x00{len(found) - 1}\x00 "

    return _ENTITY_RE.sub(replace, text), found


def _tokens(text: str, lex: Lexicon, entities: list[tuple[str, str]]) -> list[Token]:
    raw: list[str] = []
    for w in _WORD_RE.findall(text):
        elided = _ELISION.match(w)  # French "d'astreinte", "l'utilisateur": the noun
        if elided and (fold(w),) not in lex.phrases:
            lead = fold(w[: elided.start(1) - 1]) + "e"
            if lex.phrases.get((lead,), [("", "")])[0][0] == "connective":
                raw.append(lead)  # "lorsqu'une alerte": "lorsque", then the words
            w = elided.group(1)
        joined = w.replace("-", "")  # "week-end", "on-boarding": the word written whole
        if "-" in w and (fold(w),) not in lex.phrases and (fold(joined),) in lex.phrases:
            raw.append(joined)
        elif "-" in w and tuple([fold(w)]) not in lex.phrases and not w.startswith("\x00"):
            raw.extend(p for p in w.split("-") if p)
        else:
            raw.append(w)
    out: list[Token] = []
    i = 0
    while i < len(raw):
        w = raw[i]
        if w.startswith("\x00"):
            out.append(Token(w, entity=entities[int(w.strip("\x00"))]))
            i += 1
            continue
        for n in range(min(lex.max_phrase, len(raw) - i), 0, -1):
            words = raw[i : i + n]
            if any(x.startswith("\x00") for x in words):
                continue
            key = tuple(re.sub(r"['’]s$", "", fold(x)).strip("'’") for x in words)
            if n > 1:  # "when its done": "it's" typed without its apostrophe
                key = tuple(_UNAPOSTROPHED.get(k, k) for k in key)
            if key in lex.phrases:
                out.append(Token(" ".join(words), list(lex.phrases[key])))
                i += n
                break
        else:
            out.append(Token(w))
            i += 1
    return out


@lru_cache(maxsize=8192)
def _close(key: str, targets: tuple[str, ...], swaps_only: tuple[str, ...] = ()) -> list[str]:
    """Lexicon words within the typo cutoff of ``key`` (similar lengths only), best first;
    ``swaps_only``: words ``key`` may be only with two letters swapped."""
    cutoff = FUZZY_CUTOFF if len(key) > 4 else SHORT_CUTOFF
    near = [w for w in targets if abs(len(w) - len(key)) <= 3]
    close = [w for w in difflib.get_close_matches(key, near, n=5, cutoff=cutoff) if typo_of(key, w)]
    close += [w for w in swaps_only if sorted(w) == sorted(key) and w != key and typo_of(key, w)]
    if len(key) == 4:  # a letter swapped ("jria"), not replaced ("fill" is not "file")
        swaps = [w for w in near if sorted(w) == sorted(key) and w != key and typo_of(key, w)]
        close += [w for w in difflib.get_close_matches(key, swaps, n=3, cutoff=FUZZY_CUTOFF)]
    return close


def _correct(tokens: list[Token], lex: Lexicon) -> list[tuple[str, str]]:
    corrected: list[tuple[str, str]] = []
    for t in tokens:
        key = fold(t.text)
        if t.meanings or t.entity or not key.isalpha() or len(key) < 3:
            continue
        if key in lex.stopwords or key in lex.access:  # known words, not typos ("Zugang")
            continue
        close = _close(key, tuple(lex.fuzzy_targets), lex.swap_targets)
        if not close and len(key) >= 10:  # a German compound: "Bereitschaftshabenden"
            heads = [w for w in lex.fuzzy_targets if len(w) >= 6 and key.startswith(w)]
            close = sorted(heads, key=len, reverse=True)[:1]
        if not close and len(key) >= 9:  # one that ends with a noun: "Willkommensmail"
            tails = [w for w in lex.fuzzy_targets if len(w) >= 4 and key.endswith(w)]
            nouns = [w for w in tails if "noun" in dict(lex.phrases[(w,)])]
            close = sorted(nouns, key=len, reverse=True)[:1]
        if close:
            # a swap of two letters ("fials") beats another word as close ("falls")
            best = max(close, key=lambda w: (sorted(w) == sorted(key), -close.index(w)))
            t.meanings = list(lex.phrases[(best,)])
            t.fuzzy = best
            corrected.append((t.text, best))
    return corrected


def _disambiguate(tokens: list[Token]) -> None:
    """A word that is a verb and a noun is a noun after a determiner ("a summary"), a
    verb or an integration ("send summary", "GitHub Actions run") or before a failure
    ("run fails"); "open" after "the", "of", "each"... is an adjective ("open incidents").
    """
    for i, t in enumerate(tokens):
        before = tokens[i - 1] if i else None
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        lead = fold(before.text) if before else ""
        if fold(t.text) in {"open", "offene", "offenen", "abiertos", "abiertas"} and (
            lead in _ADJECTIVE_LEAD
            or not t.has("verb")
            or (before is not None and before.has("noun"))  # "any incidents open?"
            or (before is not None and before.has("verb", "get"))  # "what's open in PD?"
        ):
            t.meanings = [m for m in t.meanings if m[0] != "verb"]
            continue
        pronoun = after is not None and fold(after.text) in {"them", "it", "these", "those"}
        if pronoun and t.meanings and all(m[0] == "noun" for m in t.meanings):
            t.meanings = []  # "group them by cause": a verb the catalog has no action for
            continue
        if fold(t.text) in {"list", "liste", "lista"} and before is not None and before.has("noun"):
            t.meanings = []  # "workday's terminations list": the list, not a request to list
            continue
        if t.has("event") and lead in {"any", "all", "no", "some"} and after and after.has("noun"):
            t.meanings = [m for m in t.meanings if m[0] != "event"]  # "any triggered incidents"
        if t.has("verb") and (lead in _PASSIVE_LEAD or lead == "still"):
            t.meanings = [m for m in t.meanings if m[0] != "verb"]  # "alerts that are silenced"
            continue  # "if it's still running": a state
        if not (t.has("verb") and t.has("noun")):
            continue
        noun = (
            lead in _DETERMINERS
            or lead in _NOUN_LEAD
            or lead in _PARTICIPLES
            or (
                before is not None
                and any(before.has(k) for k in ("verb", "integration", "severity", "recent"))
            )
        )
        noun = noun or (after is not None and after.has("fail"))
        drop = "verb" if noun else "noun"
        t.meanings = [m for m in t.meanings if m[0] != drop]


def _typed_entities(tokens: list[Token]) -> None:
    """Give numbers, capitals and quoted text a kind from the words around them."""
    for i, t in enumerate(tokens):
        if not t.entity:
            continue
        kind, value = t.entity
        prev = tokens[i - 1] if i else None
        prev2 = tokens[i - 2] if i > 1 else None
        near = [x for x in (prev, prev2) if x is not None]
        wide = tokens[max(0, i - 3) : i]  # "la sala de Webex 'Crisis'"
        if kind == "number":
            if any(x.has("noun", n) for x in near for n in ("worker", "hire", "leaver")):
                t.entity = ("worker_id", value)
            elif any(x.has("noun", "job") for x in near):
                t.entity = ("job_id", value)
            elif any(x.has("noun", "pipeline") for x in near):
                t.entity = ("pipeline_id", value)
        elif kind == "upper":
            lead = fold(prev.text) if prev else ""
            if value not in _NOT_PROJECTS and (
                lead in _PROJECT_LEAD or (prev and prev.has("noun", "project"))
            ):
                t.entity = ("jira_project", value)
        elif kind == "pd_id":
            lead = fold(prev.text) if prev else ""
            if lead in {"service", "servicio", "dienst"}:
                t.entity = ("pd_service", value)
        elif kind == "quoted":
            if any(x.has("noun", "room") for x in wide):
                t.entity = ("room", value)
            elif any(x.has("noun", "group") for x in wide):
                t.entity = ("group", value)
        named = kind in {"upper", "alert_name"} or (kind == "number" and t.entity[0] == "number")
        if named and prev is not None and prev.has("noun", "group"):  # "die Gruppe Engineering"
            t.entity = ("group", value)


def _rephrase(tokens: list[Token], lex: Lexicon) -> list[Token]:
    """Phrases whose words needed correcting ("pipline log" is "pipeline log")."""
    if not any(t.fuzzy for t in tokens):
        return tokens
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        for n in (3, 2):
            window = tokens[i : i + n]
            if len(window) < n or not any(t.fuzzy for t in window) or any(t.entity for t in window):
                continue
            key = tuple(t.fuzzy or fold(t.text) for t in window)
            if key in lex.phrases:
                out.append(
                    Token(
                        " ".join(t.text for t in window),
                        list(lex.phrases[key]),
                        fuzzy=" ".join(key),
                    )
                )
                i += n
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def _labels(tokens: list[Token]) -> None:
    """ "E-Mail ist paul@acme.com", "email: x@y": a word naming the next value, no action;
    "is JUN-1402 done?": a state asked about, not a verb; "is alertmanager up?": its health."""
    for i, t in enumerate(tokens):
        nxt = tokens[i + 1 : i + 3]
        copula = bool(nxt) and fold(nxt[0].text) in {"is", "ist", "es", ":", "="}
        if t.has("noun", "email") and copula and len(nxt) == 2 and nxt[1].entity:
            t.meanings = [("topic_word", t.text)]
    for i, t in enumerate(tokens):
        if fold(t.text) in _STATUS_WORDS and i and tokens[i - 1].has("integration"):
            t.meanings = [("noun", "health")]  # "alertmanager's status"
        if fold(t.text) not in _UP_WORDS:
            continue
        lead = [x for x in tokens[max(0, i - 4) : i] if fold(x.text) not in _ADVERBS][-2:]
        after = tokens[i + 1].text if i + 1 < len(tokens) else "?"
        if (
            lead
            and lead[-1].has("integration")
            and (after in {"?", ".", ","} or (len(lead) > 1 and fold(lead[0].text) in _COPULAS))
        ):
            t.meanings = [("noun", "health")]
    if tokens and fold(tokens[0].text) in _COPULAS - {"est"}:
        for t in tokens:
            if t.has("state") and t.has("verb"):
                t.meanings = [m for m in t.meanings if m[0] != "verb"]


def _clauses(tokens: list[Token]) -> list[Clause]:
    clauses: list[Clause] = []
    current: list[Token] = []
    links: set[str] = set()
    in_topic = False
    named = -1  # words since "called" / "named" (-1: the topic is not a name)
    said = False  # the clause before asked to send something
    for i, t in enumerate(tokens):
        verb_free = not any(x.has("verb") and not x.has("verb", "send") for x in current)
        titled = any(x.has("noun", n) for x in current for n in ("ticket", "incident", "message"))
        makes = any(x.has("verb", "create") or x.has("verb", "send") for x in current) or not any(
            x.has("verb") for x in current
        )
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        # "new hire x: create her okta user ...": a verbless head, then instructions
        instructs = nxt is not None and nxt.has("verb") and not nxt.has("verb", "send")
        instructs = instructs or (  # "new hire x: okta account, ...": what to do for the hire
            any(x.has("noun", "hire") for x in current)
            and not any(x.has("verb", "send") for x in current)
        )
        if (
            t.text == ":"
            and current
            and not in_topic
            and not (instructs and not any(x.has("verb") for x in current))
            and (
                (target(current[-1]) and verb_free) or (titled and makes)  # "a ticket: the title"
            )
        ):
            in_topic = True  # "slack #ops: db migration starting"
            continue
        person = current and set(current[-1].values("noun")) & {"hire", "worker", "leaver"}
        named_by = nxt.entity[0] if nxt is not None and nxt.entity else ""
        if t.text in {":", ","} and person and named_by == "email":
            continue  # "New starter: ana@acme.com": the person, named
        if t.has("connective", "after") and nxt and nxt.entity and nxt.entity[0] == "minutes":
            t.meanings = []  # "still running after 30 min": a time, not an order
        quiet = in_topic and any(t.has("connective", k) for k in ("condition", "unless", "after"))
        if t.has("connective", "then") and current and (nxt is None or nxt.text in ",;.!?"):
            links.add("then")  # "... and comment it afterwards": this clause comes after
            continue
        if t.text in {",", ";", ":", ".", "!", "?", "(", ")"} or (
            t.has("connective")
            and not quiet  # "a room named after the incident"
            and not (t.has("connective", "parallel") and current and not in_topic)
        ):
            if current:
                said = any(x.has("verb", "send") for x in current)
                clauses.append(Clause(current, links, asked=t.text == "?"))
                current, links, in_topic = [], set(), False
            if t.text in {";", ".", "!", "?"}:
                links.add("sentence")
            elif t.text in {",", ":", "(", ")"}:
                links.add("comma")
            for v in t.values("connective"):
                links.add(v)
            continue
        if t.has("connective", "parallel"):
            if current and links & {"condition", "unless", "after"}:  # "if it failed, also page"
                clauses.append(Clause(current, links))
                current, links = [], set()
            links.add("parallel")
            continue
        last = next((x for x in reversed(current) if fold(x.text) not in _ADVERBS), None)
        stated = last is not None and any(last.has(k) for k in ("fail", "event", "state", "branch"))
        if stated and t.has("verb") and not in_topic and not t.has("verb", "fire"):
            clauses.append(Clause(current, links))  # "when it fails summarise the log"
            current, links = [], {"comma"}
        says = any(x.has("verb", v) for x in current for v in ("send", "email", "comment")) or (
            not current and said  # "Sende eine Nachricht an #ops, dass ..."
        )
        if (
            t.has("topic")
            and not t.has("verb")
            and not t.has("noun")
            and (
                says or fold(t.text) not in {"that", "dass"}  # "tell #ops that ...": the message
            )
        ):
            rest = tokens[i + 1 :]
            stop = next(
                (j for j, x in enumerate(rest) if x.has("connective") or x.text in ",;."), len(rest)
            )
            about = [  # "email the team that okta is slow": a statement about the service
                x
                for j, x in enumerate(rest[:stop])
                if x.has("integration")
                and not (j + 1 < stop and fold(rest[j + 1].text) in _COPULAS | {"was", "war"})
            ]
            if not about:
                in_topic = True
                named = 0 if fold(t.text) in _NAME_MARKERS else -1
        elif in_topic and named >= 0:  # "an alert called NodeDown fires": a name, then words
            named += 1
            if named > 1 and any(t.has(k) for k in ("event", "fail", "verb")):
                in_topic = False
        if in_topic:
            t.meanings = [m for m in t.meanings if m[0] in {"vendor", "secret", "injection"}]
            t.meanings.append(("topic_word", t.text))
        current.append(t)
    if current:
        clauses.append(Clause(current, links))
    for i, c in enumerate(clauses):  # "In parallel, do A and B": the whole sentence
        leading = i == 1 or (i > 1 and "parallel" in clauses[i - 2].links)
        if (
            i
            and leading
            and "parallel" in clauses[i - 1].links
            and not c.links & {"then", "sentence"}
        ):
            c.links.add("parallel")
    clauses = mend_clauses(clauses)
    for c in clauses:
        c.topic = " ".join(t.text for t in c.tokens if t.has("topic_word") and not t.has("topic"))
    return clauses


def read_request(text: str, lex: Lexicon) -> Reading:
    """Entities, words and clauses of ``text`` (see the module docstring)."""
    text = text.replace("\x00", " ")  # the placeholder character of entities
    text = _LIST_ITEM.sub(". ", text)  # each line of a bullet or numbered list is a sentence
    text = re.sub(r"(?<=\s)\+(?=\s)", "and", text)  # "okta user + add to group X"
    text = re.sub(r"\s[-–—]\s", " , ", text)  # "it keeps failing - can we ...": a pause
    text = _ARROW_MAKES.sub(" create ", text)  # "every firing alert -> a pagerduty incident"
    text = _ARROW_SENDS.sub(" and send to ", text)  # "INC0055555 summary -> #ops"
    replaced, entities = _entities(text, lex)
    tokens = _tokens(replaced, lex, entities)
    group_names(tokens)
    corrected = _correct(tokens, lex)
    tokens = drop_corrected(_rephrase(tokens, lex))
    access(tokens, lex.access)
    state_updates(tokens)
    receives(tokens)
    llm_writes(tokens)
    causatives(tokens)
    let_know(tokens)
    _labels(tokens)
    service_verbs(tokens)
    _disambiguate(tokens)
    documents(tokens, lex.words.document_words)
    _typed_entities(tokens)
    clauses = _clauses(tokens)
    unmapped = [
        t.text
        for c in clauses
        for t in c.tokens
        if not t.entity
        and not any(m[0] in KNOWN_KINDS for m in t.meanings)
        and re.sub(r"['’]s$", "", fold(t.text)) not in lex.stopwords  # "she's"
        and any(ch.isalpha() for ch in t.text)
    ]
    every = [t for c in clauses for t in c.tokens] + [t for t in tokens if t.has("connective")]
    return Reading(
        clauses=clauses,
        entities=[t.entity for c in clauses for t in c.tokens if t.entity],
        unmapped=unmapped,
        corrected=corrected,
        vendors=sorted({v for t in every for v in t.values("vendor")}),
        secrets=sorted({t.text for t in every if t.has("secret")}),
        injections=sorted({t.text for t in every if t.has("injection")}),
        urls=[v for k, v in entities if k == "url"],
    )
