"""English inflections of the lexicon's verbs and nouns, generated instead of listed.

``lexicon.yaml`` lists base forms ("create", "add", "block", "set up"); people write
"creating", "added", "gets blocked", "setting up", "rooms". :func:`verb_forms` gives the
third person, past and gerund of a verb (with the spelling rules: "creating", "adding",
"dropped", "notified", "fetches", and the irregular verbs the lexicon uses: "sent",
"told", "made"); :func:`noun_forms` the plural. The lexicon adds a form only where it
does not already mean something, so a listed word always keeps its listed meaning
("opened" stays an event, "runs" a noun).

:func:`typo_of` tells whether a word can be a typo (or an inflected form) of a lexicon
word, so that fuzzy matching does not turn one real word into another ("active" is not
"desactive", "title" not "teile", "fixed" not "fired").

Public API: :func:`verb_forms`, :func:`noun_forms`, :func:`typo_of`.
"""

from __future__ import annotations

import re

__all__ = ["noun_forms", "typo_of", "verb_forms"]

_IRREGULAR: dict[str, tuple[str, ...]] = {
    "send": ("sent",),
    "tell": ("told",),
    "make": ("made",),
    "get": ("got", "gotten"),
    "find": ("found",),
    "give": ("gave", "given"),
    "take": ("took", "taken"),
    "write": ("wrote", "written"),
    "run": ("ran",),
    "see": ("saw", "seen"),
    "spin": ("spun",),
    "stand": ("stood",),
    "read": (),
    "put": (),
    "set": (),
    "hit": (),
}
"""Past forms of the irregular verbs (an empty tuple: the past is the base form)."""

_OTHER_SENSE = frozenset({"gets", "got", "gotten", "asks", "asked", "asking"})
"""Forms whose usual sense is not the base verb's: "every hire gets an account" receives,
"a comment asking for an update" requests (the lexicon's "ask" is "ask the AI")."""

_VOWELS = "aeiou"
_ENGLISH = re.compile(r"[a-z]{3,}")


def _one_syllable_cvc(word: str) -> bool:
    """A short word ending consonant-vowel-consonant doubles its last letter ("dropped")."""
    groups = re.findall(r"[aeiouy]+", word)
    return (
        len(groups) == 1
        and len(word) >= 3
        and word[-1] not in _VOWELS + "wxy"
        and word[-2] in _VOWELS
        and word[-3] not in _VOWELS
    )


def verb_forms(word: str) -> list[str]:
    """Third person, past and gerund of an English verb (empty for anything else).

    >>> verb_forms("create")
    ['creates', 'created', 'creating']
    >>> verb_forms("drop")
    ['drops', 'dropped', 'dropping']
    """
    if not _ENGLISH.fullmatch(word):
        return []
    if word.endswith(("s", "sh", "ch", "x", "z")):
        third = word + "es"
    elif word.endswith("y") and word[-2] not in _VOWELS:
        third = word[:-1] + "ies"
    else:
        third = word + "s"
    if word.endswith("ee"):
        past, gerund = word + "d", word + "ing"
    elif word.endswith("e"):
        past, gerund = word + "d", word[:-1] + "ing"
    elif word.endswith("y") and word[-2] not in _VOWELS:
        past, gerund = word[:-1] + "ied", word + "ing"
    elif _one_syllable_cvc(word):
        past, gerund = word + word[-1] + "ed", word + word[-1] + "ing"
    else:
        past, gerund = word + "ed", word + "ing"
    pasts = list(_IRREGULAR[word]) if word in _IRREGULAR else [past]
    return [f for f in (third, *pasts, gerund) if f not in _OTHER_SENSE]


def noun_forms(word: str) -> list[str]:
    """The plural of an English noun (empty for anything else).

    >>> noun_forms("room"), noun_forms("policy"), noun_forms("inbox")
    (['rooms'], ['policies'], ['inboxes'])
    """
    if not _ENGLISH.fullmatch(word) or word.endswith("s"):
        return []
    if word.endswith(("sh", "ch", "x", "z")):
        return [word + "es"]
    if word.endswith("y") and word[-2] not in _VOWELS:
        return [word[:-1] + "ies"]
    return [word + "s"]


def _edits(a: str, b: str) -> int:
    """Letters dropped, added, changed or two neighbours swapped to turn ``a`` into ``b``."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb)))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def typo_of(word: str, target: str) -> bool:
    """Whether ``word`` (folded) can be ``target`` typed wrong or inflected.

    A typo is one edit (a letter dropped, added or changed, or two neighbours swapped:
    "sned", "pipline", "usr"), or two that keep the first three letters and the last one
    and add no letter ("trigerr", "trigr", "piplne"; not "invoice"); an inflection adds
    an ending of at most three letters to a word of five or more ("offenen",
    "kritischer", "agrégala", "muéstrame").
    """
    if len(target) >= 5 and word.startswith(target) and len(word) - len(target) <= 3:
        return True
    edits = _edits(word, target)
    kept = word[:3] == target[:3] and word[-1] == target[-1] and len(word) <= len(target)
    return edits <= 1 or (edits == 2 and kept)
