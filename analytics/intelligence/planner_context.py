"""What the offline planner reads around its clauses: entities of the whole request, plural
nouns, and the log an LLM step needs (helpers of :mod:`analytics.intelligence.planner_interpret`).

Public API: :data:`QUESTION_WORDS`, :func:`back_reference`, :func:`destination`,
:func:`clause_verbs`, :func:`clause_nouns`, :func:`entities_of`, :func:`plural`,
:func:`llm_needs_log`, :func:`into_new_record`, :func:`makes_other`, :func:`depth`.
"""

from __future__ import annotations

import re

from analytics.intelligence.lexicon import Lexicon, Op, fold
from analytics.intelligence.planner_build import Planned
from analytics.intelligence.planner_parse import OBJECT_PRONOUNS, Clause

__all__ = [
    "QUESTION_WORDS",
    "back_reference",
    "clause_nouns",
    "clause_verbs",
    "depth",
    "destination",
    "entities_of",
    "into_new_record",
    "latest_pipeline",
    "list_first",
    "llm_needs_log",
    "makes_other",
    "plural",
]


_GIVEN = frozenset(  # a noun followed by its id names a given thing ("pipeline 4711")
    {("pipeline", "pipeline_id"), ("job", "job_id"), ("incident", "pd_id")}
    | {("incident", "sn_number"), ("ticket", "sn_number")}
    | {("ticket", "jira_key"), ("worker", "email"), ("hire", "email"), ("leaver", "email")}
)
_REFERENCE_WORDS = frozenset(
    {"details", "detail", "link", "url", "number", "id", "key", "details."}
)


def clause_nouns(c: Clause) -> list[str]:
    """The clause's nouns in order; "given:pipeline" for one named by its id ("pipeline
    4711"), "ref:incident" for a reference to an earlier step ("the incident link")."""
    nouns: list[str] = []
    tokens = c.tokens
    for i, t in enumerate(tokens):
        for n in t.values("noun"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            given = nxt.entity[0] if nxt is not None and nxt.entity else ""
            if (n, given) == ("room", "room"):
                if not c.has("verb", "create"):
                    continue  # "post to the Webex room 'SRE'": a room to post in
                n = "given:room"  # "create the Webex room 'Release 2.0'"
            if (n, given) in _GIVEN:
                n = f"given:{n}"  # "pipeline 4711": a given pipeline, not one to find
            if nxt is not None and fold(nxt.text) in _REFERENCE_WORDS:
                n = f"ref:{n}"  # "the incident link": a reference to an earlier step
            if n not in nouns:
                nouns.append(n)
    if c.entities("project") and "project" not in nouns:
        nouns.append("given:project")  # "acme/backend" names a project, one to use
    return nouns


def entities_of(clauses: list[Clause], text: str | None = None) -> dict[str, list[str]]:
    """Entities of ``clauses`` by kind; with the whole request's ``text``, also what only
    patterns over the intact text find (a branch, a target state, an acknowledgement)."""
    out: dict[str, list[str]] = {}
    for c in clauses:
        for t in c.tokens:
            if t.entity:
                out.setdefault(t.entity[0], []).append(t.entity[1])
    for key in out.get("jira_key", []):
        out.setdefault("jira_project", []).append(key.split("-")[0])
    for path in out.get("project", []):
        owner, _, repo = path.partition("/")
        out.setdefault("gh_owner", []).append(owner)
        out.setdefault("gh_repo", []).append(repo)
    if text is None:  # patterns over words: only the whole request's text keeps them intact
        return out
    branch = re.search(r"\b(?:branch|zweig|rama|ref)\s+([\w./-]*\d[\w./-]*|[a-z][\w./-]+)", text)
    if branch and branch.group(1).lower() not in {"fails", "failed", "is", "ran", "on"}:
        out.setdefault("branch", []).append(branch.group(1))
    elif any(c.has("branch") for c in clauses):
        out.setdefault("branch", []).append("main")
    state = re.search(r"\b(?:to|nach|a)\s+(Done|In Progress|Closed|Resolved|To Do)\b", text)
    if state:
        out.setdefault("state", []).append(state.group(1))
    if re.search(r"\back(?:nowledge)?\b|\breconoce\b|\bbestätige\b", text, re.I):
        out.setdefault("pd_status", []).append("acknowledged")
    if re.search(r"\bbug\b", text, re.I):
        out.setdefault("issue_type", []).append("Bug")
    return out


def plural(c: Clause) -> bool:
    """The clause's first noun is plural ("this week's terminations"): a list, not one item."""
    one = {"someone", "somebody", "anyone", "anybody", "jemand", "alguien", "quelqu"}
    nouns = [  # "terminated employees"; "someone leaves" is one person
        t
        for i, t in enumerate(c.tokens)
        if t.has("noun")
        and not t.entity
        and not (i and fold(c.tokens[i - 1].text) in one)
        and fold(t.text).split()[0] not in one  # "someone joins"
    ][:2]
    return any(
        fold(t.text).split()[-1].endswith("s")  # "new hires"
        and not fold(t.text).endswith("ss")
        and fold(t.text) not in t.values("noun")
        for t in nouns
    )


def plural_of(c: Clause, noun: str) -> bool:
    """``noun`` is written in the plural in the clause ("the last 5 pipelines")."""
    return any(
        t.has("noun", noun) and fold(t.text).endswith("s") and fold(t.text) != noun
        for t in c.tokens
        if not t.entity
    )


def latest_pipeline(planned: list[Planned], lex: Lexicon) -> None:
    """ "The latest failed pipeline's log": the log's job comes from the newest failed
    pipeline (``gitlab.list_pipelines``) when no step gives a pipeline."""
    for i, p in enumerate(planned):
        if p.op.action not in {"gitlab.get_job_log", "gitlab.list_pipeline_jobs"}:
            continue
        if any("pipeline_id" in q.op.produces for q in planned[:i]) or p.entities.get("job_id"):
            return
        if p.entities.get("pipeline_id"):
            return
        pipelines = Planned(
            lex.op("gitlab.list_pipelines"),
            p.clause,
            p.stage,
            p.entities,
            primary=False,
            front=p.front,
        )
        planned.insert(i, pipelines)
        return


def list_first(lex: Lexicon, chosen: list[Op], planned: list[Op], nouns: list[str]) -> None:
    """A write on "all" of something ("ack all triggered incidents") lists them first: the
    service's list read of the same noun is put before the writes in ``chosen``."""
    for op in [o for o in chosen if o.role == "write"]:
        lists = [
            o
            for o in lex.ops.values()
            if o.integration == op.integration
            and o.role == "read"
            and o.list_expr
            and set(o.nouns) & set(op.nouns) & set(nouns)
        ]
        if lists and not any(o in chosen or o in planned for o in lists):
            chosen.insert(0, lists[0])


def llm_needs_log(planned: list[Planned], lex: Lexicon, clauses: list[Clause]) -> None:
    """Summarising a pipeline means summarising its failed job's log (inserted in ``planned``;
    ``clauses``: the request's, which the steps' ``clause`` index)."""
    for i, p in enumerate(planned):
        if p.op.role != "llm":
            continue
        before = planned[:i]
        # one pipeline ("the last failed pipeline"), not a list of them ("all failed pipelines")
        has_pipe = any(
            "pipeline_id" in q.op.produces
            and not q.quantified
            and not plural_of(clauses[q.clause], "pipeline")  # "the last 5 pipelines"
            for q in before
        )
        has_text = any(
            q.op.action
            in {
                "gitlab.get_job_log",
                "jira.get_issue",
                "servicenow.get_incident",
                "github.list_workflow_runs",
            }
            for q in before
        )
        if has_pipe and not has_text:
            log = Planned(
                lex.op("gitlab.get_job_log"),
                p.clause,
                p.stage,
                p.entities,
                primary=False,
                front=p.front,
            )
            planned.insert(i, log)
            return


_INDEFINITE = frozenset({"a", "an", "ein", "eine", "einen", "einem", "un", "una", "une"})
_NEW = frozenset({"new", "fresh", "separate", "neues", "neuen", "neue", "nuevo", "nueva"})
_INTO = frozenset({"in", "into", "as", "en", "dans", "als"})
_RECORDS = frozenset({"ticket", "incident"})  # what a "put it in a ..." makes


QUESTION_WORDS = frozenset(
    {"is", "are", "any", "does", "do", "who", "what", "which", "hay", "gibt", "ist", "wer"}
    | {"welche", "welcher", "cuáles", "cuales", "qué", "que", "qui", "quel", "quels", "quelle"}
    | {"quelles", "combien"}
)
"""A request or sentence opening with one of these asks: its verbless clauses read."""
_LOOKUP_WORDS = frozenset({"details", "status", "info", "information", "estado", "detalles"})


def clause_verbs(
    c: Clause, verbs: list[str], nouns: list[str], *, asked: bool, joins: bool, each: bool = False
) -> list[str]:
    """The verbs a clause (not a condition) acts with: its own, or what its words imply.

    Args:
        c: The clause.
        verbs: Its verbs (or the verbs carried over from the clause before).
        nouns: Its nouns, without references and given ones.
        asked: The request is a question.
        joins: The request has no verb, only a person's email and places.
        each: The clause is in a sentence that fans out: "a summary" is each item's text.
    """
    opening = fold(c.tokens[0].text) if c.tokens else ""
    asked = asked or c.asked or opening in QUESTION_WORDS  # "Qui est ... ? Envoie ..."
    if not verbs and "summary" in nouns:
        verbs = ["summarize"]  # "need a summary of INC0045678"
    elif "send" in verbs and "summary" in nouns and _indefinite_before(c, "summary") and not each:
        verbs = [*verbs, "summarize"]  # "mándame un resumen por slack": someone writes it
    elif not verbs and (asked or any(fold(t.text) in _LOOKUP_WORDS for t in c.tokens)):
        verbs = ["get"]  # "is anyone on call for payments?", "the details of ..."
    elif not verbs and joins and ({"group", "room", "project"} & set(nouns) or c.entities("room")):
        verbs = ["add"]  # "okta grp Contractors + dana@acme.com": she joins it
    if "add" in verbs and into_new_record(c):
        verbs = [*(v for v in verbs if v != "add"), "create"]  # "put it in a Jira ticket"
    if "send" in verbs and into_new_record(c, into=True):
        verbs = [*(v for v in verbs if v != "send"), "create"]  # "drop it into a new issue"
    if "add" in verbs and "message" in nouns:
        verbs = [*(v for v in verbs if v != "add"), "send"]  # "add a note to the room"
    if "send" in verbs and "comment" in nouns:
        verbs = [*verbs, "comment"]  # "write the summary as a comment"
    elsewhere = c.entities("channel") or c.entities("email") or c.entities("room")
    if "send" in verbs and "message" in nouns and c.entities("jira_key") and not elsewhere:
        verbs = [*(v for v in verbs if v != "send"), "comment"]  # "a note in jira OPS-9"
    return verbs


def _indefinite_before(c: Clause, noun: str) -> bool:
    """Whether ``noun`` is written with an indefinite article ("a summary", "un resumen")."""
    return any(
        t.has("noun", noun) and i and fold(c.tokens[i - 1].text) in _INDEFINITE
        for i, t in enumerate(c.tokens)
    )


def into_new_record(c: Clause, records: frozenset[str] = _RECORDS, *, into: bool = False) -> bool:
    """'put the summary in a Jira ticket': an indefinite record the text goes into (with
    ``records={"user"}``: 'add a GitLab account to acme/x', a new account; with ``into``,
    only after "in"/"into"/"as": 'drop the log into a new gitlab issue')."""
    indefinite = False
    for i, t in enumerate(c.tokens):
        lead = fold(c.tokens[i - 1].text) if i else ""
        if fold(t.text) in _INDEFINITE and (not into or lead in _INTO):
            indefinite = True
        elif indefinite and set(t.values("noun")) & records:
            return True
        elif not t.has("integration") and fold(t.text) not in _NEW:
            indefinite = False
    return False


_TO = frozenset({"to", "into", "an", "nach", "in", "a", "al", "à", "vers"})
_ARTICLES = frozenset({"la", "lo", "es", "sie"})  # pronouns that are also articles or verbs


def destination(c: Clause, name: str) -> bool:
    """Whether the clause names ``name`` as where something goes ("... to servicenow")."""
    return any(
        t.has("integration", name) and i and fold(c.tokens[i - 1].text) in _TO
        for i, t in enumerate(c.tokens)
    )


def back_reference(c: Clause) -> bool:
    """Whether the clause refers to an earlier step by a pronoun ("post it", "its key");
    "la"/"lo"/"es"/"sie" before a word that is no verb are articles ("la caída")."""
    for i, t in enumerate(c.tokens):
        word = fold(t.text)
        if word not in OBJECT_PRONOUNS | {"its"} or t.has("topic_word"):  # "... that we're on it"
            continue
        nxt = c.tokens[i + 1] if i + 1 < len(c.tokens) else None
        if word in _ARTICLES and nxt is not None and not nxt.has("verb") and nxt.text.isalpha():
            continue
        return True
    return False


def makes_other(lex: Lexicon, op: Op, nouns: list[str], c: Clause) -> bool:
    """A create chosen by its verb alone for a record another action of its service
    reads ("make a group in okta": groups are only listed): no action makes it."""
    if op.role != "write" or "create" not in c.words("verb") or not nouns or not op.nouns:
        return False
    first = nouns[0]
    others = [o for o in lex.ops.values() if o.integration == op.integration]
    return first not in op.nouns and any(first in o.nouns for o in others)


def depth(op: Op, ops: list[Op]) -> int:
    """How many of ``ops`` give what ``op`` reads (a job's log after the jobs)."""
    wants = {s.from_ for sources in op.with_.values() for s in sources if s.from_}
    return sum(1 for other in ops if other is not op and wants & set(other.produces))
