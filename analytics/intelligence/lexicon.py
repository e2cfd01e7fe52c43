"""The offline planner's vocabulary and action recipes, loaded from YAML data.

``lexicon.yaml`` holds the words (English, German, Spanish, French) that name integrations,
verbs, nouns, connectives, quantifiers, conditions and what must be refused;
``lexicon_actions.yaml`` holds, per catalog action the planner can plan, the words that
select it and how each input is filled. Both go through the one YAML loader
(:func:`integrations.yamlconfig.load_model`), so a bad edit is reported as
``lexicon.yaml:LINE: field: problem``.

Public API: :class:`Lexicon`, :class:`Op`, :class:`Source`, :func:`load_lexicon`,
:func:`fold`.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from analytics.intelligence.morphology import noun_forms, verb_forms
from integrations.yamlconfig import ConfigModel, load_model

__all__ = ["Lexicon", "Op", "Source", "fold", "load_lexicon"]

_HERE = Path(__file__).resolve().parent

Category = Literal[
    "integration",
    "vendor",
    "verb",
    "noun",
    "connective",
    "quantifier",
    "fail",
    "recent",
    "branch",
    "feature_branch",
    "severity",
    "schedule",
    "event",
    "state",
    "topic",
    "secret",
    "injection",
]


@lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """Lower case without accents (``"Schließe"`` -> ``"schließe"``, ``"Envía"`` -> ``"envia"``)."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_DONE_LEADS = [(w, "it", *be) for w in ("once", "when", "after") for be in ((), ("is",), ("has",))]
"""What precedes a past participle that means "when the step before is done"."""

_DONE_SUBJECTS = [("it",), ("that",), ("this",), ("all",), ("all", "that"), ("all", "this")]
_DONE_SUBJECTS += [("everything",), ("both",), ("these",), ("those",), ("all", "of", "that")]
_DONE_WORDS = ("done", "finished", "complete", "completed", "over", "through")
_DONE_PHRASES = [
    (lead, *who, *be, word)
    for lead in ("once", "when", "after")
    for who in _DONE_SUBJECTS
    for be in ((), ("is",), ("are",), ("has", "been"), ("have", "been"))
    for word in _DONE_WORDS
]
"""'when all that's done', 'once both are finished': the steps before are done ("then")."""


class RefuseGroup(ConfigModel):
    """Words of a kind of request that is refused, and why."""

    reason: str
    words: list[str]


class WordsFile(ConfigModel):
    """``lexicon.yaml``."""

    integrations: dict[str, list[str]]
    unknown_vendors: dict[str, str]
    verbs: dict[str, list[str]]
    nouns: dict[str, list[str]]
    connectives: dict[str, list[str]]
    quantifiers: list[str]
    bulk_words: list[str]
    access_words: list[str]
    event_words: list[str]
    state_words: dict[str, list[str]]
    fail_words: list[str]
    recent_words: list[str]
    branch_words: list[str]
    feature_branch_words: list[str]
    severity_words: list[str]
    schedule_words: list[str]
    topic_markers: list[str]
    secret_words: list[str]
    injection_phrases: list[str]
    refuse: dict[str, RefuseGroup]
    stopwords: list[str]
    repeatable_verbs: list[str] = Field(default_factory=list)
    document_words: list[str] = Field(default_factory=list)


class Source(ConfigModel):
    """One way to fill an input (see ``lexicon_actions.yaml``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    entity: str | None = None
    from_: str | None = Field(None, alias="from")
    helper: str | None = None
    param: str | None = None
    type: str = "string"
    default: Any = None
    description: str = ""
    text: str | None = None
    const: Any = None
    as_list: bool = Field(False, alias="list")
    matcher: str | None = None
    alert: str | None = None
    payload: str | None = None


class Op(ConfigModel):
    """A catalog action the planner can plan."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    action: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    id: str
    verbs: list[str] = Field(default_factory=list)
    nouns: list[str] = Field(default_factory=list)
    role: Literal["read", "write", "notify", "llm"]
    with_: dict[str, list[Source]] = Field(default_factory=dict, alias="with")
    produces: dict[str, str] = Field(default_factory=dict)
    list_expr: str | None = Field(None, alias="list")
    item: dict[str, str] = Field(default_factory=dict)
    content: str = ""
    fallback_target: Source | None = None
    item_content: str = ""

    @property
    def integration(self) -> str:
        """The catalog integration of the action."""
        return self.action.partition(".")[0]


class Defaults(ConfigModel):
    """Integrations used when a clause names none."""

    nouns: dict[str, str]
    verbs: dict[str, str]
    noun_kinds: dict[str, str]
    event_params: dict[str, dict[str, str]]


class ActionsFile(ConfigModel):
    """``lexicon_actions.yaml``."""

    defaults: Defaults
    ops: list[Op]


class Lexicon:
    """Both files, indexed for matching phrases of up to four words."""

    def __init__(self, words: WordsFile, actions: ActionsFile) -> None:
        self.words = words
        self.defaults = actions.defaults
        self.ops = {op.action: op for op in actions.ops}
        self.phrases: dict[tuple[str, ...], list[tuple[Category, str]]] = {}
        self._add("quantifier", {q: q for q in words.quantifiers})
        self._add("topic", {t: t for t in words.topic_markers})
        for name, items in words.nouns.items():
            self._add("noun", dict.fromkeys(items, name))
        for name, items in words.verbs.items():
            self._add("verb", dict.fromkeys(items, name))
        for name, items in words.connectives.items():
            self._add("connective", dict.fromkeys(items, name))
        self._add("fail", {w: "fail" for w in words.fail_words})
        self._add("recent", {w: "recent" for w in words.recent_words})
        self._add("branch", {w: "main" for w in words.branch_words})
        self._add("feature_branch", {w: "feature" for w in words.feature_branch_words})
        self._add("severity", {w: "critical" for w in words.severity_words})
        self._add("schedule", {w: w for w in words.schedule_words})
        self._add("event", {w: "event" for w in words.event_words})
        for state, items in words.state_words.items():
            self._add("state", dict.fromkeys(items, state))
        self._add("secret", {w: w for w in words.secret_words})
        self._add("injection", {w: w for w in words.injection_phrases})
        self._add("vendor", words.unknown_vendors)
        for name, items in words.integrations.items():
            self._add("integration", dict.fromkeys(items, name))
        self.stopwords = frozenset(fold(w) for w in words.stopwords)
        self.bulk = frozenset(fold(w) for w in words.bulk_words)
        self.access = frozenset(fold(w) for w in words.access_words)
        for key in _DONE_PHRASES:  # where a listed phrase does not say otherwise
            self.phrases.setdefault(key, [("connective", "then")])
        self.max_phrase = max(len(k) for k in self.phrases)
        # single words fuzzy matching may correct typos towards (short words are too risky)
        self.fuzzy_targets = sorted(
            {
                k[0]
                for k, meanings in self.phrases.items()
                if len(k) == 1
                and len(k[0]) >= 4
                and not any(c in {"secret", "injection", "vendor"} for c, _ in meanings)
            }
            - set(self.stopwords)
        )
        # a stopword that is also a verb ("list") and a three-letter noun ("log") are the
        # targets of a swap only ("lsit", "lgo")
        self.swap_targets = tuple(
            w
            for w in sorted({k[0] for k in self.phrases if len(k) == 1})
            if (w in self.stopwords and "verb" in dict(self.phrases[(w,)]))
            or (len(w) == 3 and w not in self.stopwords and "noun" in dict(self.phrases[(w,)]))
        )
        self._inflect(words)  # after the typo targets: a typo is corrected to a listed word

    def _inflect(self, words: WordsFile) -> None:
        """Add the English inflections of verbs and nouns (the last word of a noun phrase,
        the first of a verb phrase: "setting up") where a form means nothing yet."""
        generated: set[tuple[str, ...]] = set()
        nouns = {k for k, meanings in self.phrases.items() if any(c == "noun" for c, _ in meanings)}

        def put(form: str, key: tuple[str, ...], meaning: tuple[Category, str]) -> None:
            if form in self.stopwords:
                return
            if key not in self.phrases:
                generated.add(key)
            if key in generated and meaning not in self.phrases.setdefault(key, []):
                self.phrases[key].append(meaning)

        for name, items in words.verbs.items():
            for phrase in items:
                first, *rest = fold(phrase).split() or [""]
                if first in self.stopwords:
                    continue
                plural = noun_forms(first) if (first,) in nouns else []
                again = [f"re{first}"] if name in words.repeatable_verbs and first.isalpha() else []
                for base in [first, *again]:  # "restart", "resend": the same action again
                    if base != first:
                        put(base, (base, *rest), ("verb", name))
                    for form in verb_forms(base):
                        if form not in plural:  # "pages", "emails": the plural stays the noun's
                            put(form, (form, *rest), ("verb", name))
                for past in verb_forms(first)[1:-1] if not rest else []:
                    for lead in _DONE_LEADS:  # "once it's started": when the step before is done
                        put(past, (*lead, past), ("connective", "then"))
        for name, items in words.nouns.items():
            for phrase in items:
                *head, last = fold(phrase).split() or [""]
                for form in noun_forms(last):
                    put(form, (*head, form), ("noun", name))

    def _add(self, category: Category, mapping: dict[str, str]) -> None:
        for phrase, value in mapping.items():
            # "it's" as the reader keys it ("it"): tokens drop a trailing 's
            words = re.split(r"[\s]+", phrase.strip())
            key = tuple(re.sub(r"['’]s$", "", fold(w)) or fold(w) for w in words if w)
            meanings = self.phrases.setdefault(key, [])
            if (category, value) not in meanings:
                meanings.append((category, value))

    def op(self, action: str) -> Op:
        """The recipe of ``integration.action``."""
        return self.ops[action]


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """Load both YAML files (cached).

    Raises:
        ConfigError: A file is invalid (every problem, located).
    """
    words = load_model(WordsFile, _HERE / "lexicon.yaml")
    actions = load_model(ActionsFile, _HERE / "lexicon_actions.yaml")
    return Lexicon(words, actions)
