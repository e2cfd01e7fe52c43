"""Reading a request's clauses as catalog actions, conditions and parameters.

The integrations a clause names (or that its verbs, nouns and entities imply:
"summarize" -> OpenAI, "#ops" -> Slack, "JUN-7" -> Jira) each get their best-scoring action
for the clause's verbs and nouns (scores: a verb of the action 2, a noun 2, the object noun
1, a list for "for each" 1); one named service takes the verb and the others are read;
nouns no chosen action covers are read ("the job's log" -> ``gitlab.get_job_log``) unless
they name an earlier step ("a room for the incident"). A clause starting with "if",
"when", "unless" is a condition: its reads run first and its test becomes the ``when:``
of the steps it governs; an event of a service without a read step (a PagerDuty incident,
an alert) becomes parameters. "then" starts a new stage; "for each" fans out.

Public API: :class:`Interpreter`.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from analytics.intelligence.lexicon import Lexicon, Op, fold
from analytics.intelligence.planner_build import Planned, role_rank
from analytics.intelligence.planner_conditions import condition_tests
from analytics.intelligence.planner_context import (
    QUESTION_WORDS,
    back_reference,
    clause_nouns,
    clause_verbs,
    depth,
    destination,
    entities_of,
    into_new_record,
    latest_pipeline,
    list_first,
    llm_needs_log,
    makes_other,
    plural,
)
from analytics.intelligence.planner_parse import OBJECT_PRONOUNS, Clause, Reading
from analytics.intelligence.planner_safety import quote as _quote

__all__ = ["Interpreter"]

_NOTIFIERS = ("webex", "slack", "teams", "smtp", "webhook")
_AFTER_STEP = "steps.{sid}.status == 'ok'"
"""The condition of a step that waits for an earlier one ("once the Jira issue exists")."""
_PRONOUNS = OBJECT_PRONOUNS
_THERE = frozenset({"there", "dort", "dorthin", "alli", "ahi"})
_SUBJECT_PRONOUNS = frozenset({"she", "he", "they", "er", "ella", "el", "elle", "il"})


class Interpreter:
    """Clauses -> planned actions, conditions and parameters (:meth:`run`)."""

    def __init__(self, lex: Lexicon, reading: Reading, text: str) -> None:
        self.lex = lex
        self.reading = reading
        self.text = text
        self.planned: list[Planned] = []
        self.mentioned: set[str] = set()  # services a clause names only as a reference
        self.gitlab_verbs = {
            v for o in lex.ops.values() if o.integration == "gitlab" for v in o.verbs
        }
        self.evented: set[str] = set()  # nouns of the event that starts the workflow
        self.params: dict[str, dict[str, Any]] = {}
        self.assumptions: list[str] = []
        self.unplanned: list[str] = []
        self.fails = any(c.has("fail") for c in reading.clauses)
        opening = fold(text.strip(" ¿¡").split(" ", 1)[0]) if text.strip(" ¿¡") else ""
        self.question = text.rstrip().endswith("?") or opening in QUESTION_WORDS
        self.recent = any(c.has("recent") for c in reading.clauses)
        self.verbless = not any(c.has("verb") for c in reading.clauses)
        self.per_item = False  # the clause is in a sentence that fans out ("for each ...")
        self.globals = entities_of(reading.clauses, text)

    # --- entities -------------------------------------------------------------------------
    # --- choosing actions -----------------------------------------------------------------
    def _score(self, op: Op, verbs: list[str], nouns: list[str], quantified: bool) -> int:
        score = 2 if set(verbs) & set(op.verbs) else 0
        score += 2 if set(nouns) & set(op.nouns) else (1 if not op.nouns else 0)
        score += max(0, len(set(nouns) & set(op.nouns)) - 1)
        verb_fits = not verbs or bool(set(verbs) & set(op.verbs))
        if nouns and nouns[0] in op.nouns and len(nouns) > 1 and verb_fits:
            score += 1  # the first noun is the object: "the failed jobs of the pipeline"
        if quantified and op.list_expr:
            score += 1
        # "the latest failed pipeline", unless another GitLab action takes the verb
        served = bool(set(verbs) & self.gitlab_verbs)
        recent = self.recent and "pipeline" in nouns and (verb_fits or not served)
        if op.action == "gitlab.list_pipelines" and recent:
            score += 3
        return score

    def _best(
        self, integration: str, verbs: list[str], nouns: list[str], *, reads: bool, quantified: bool
    ) -> tuple[int, Op] | None:
        ops = [op for op in self.lex.ops.values() if op.integration == integration]
        if reads:
            ops = [op for op in ops if op.role == "read"]
        planned = {p.op.action for p in self.planned}
        scored = [(self._score(op, verbs, nouns, quantified), -i, op) for i, op in enumerate(ops)]
        if not scored:
            return None
        top = max(x[0] for x in scored)

        # at a tie an earlier step's action is preferred, but not a read over a write that
        # does the clause's verb ("comment the summary on the issue" after reading it)
        def does(op: Op) -> bool:
            return op.role != "read" and bool(set(verbs) & set(op.verbs))

        doer = any(s == top and does(op) and op.action not in planned for s, _, op in scored)
        # then the action the clause's noun names beats one its verb alone names ("what
        # version is alertmanager on": the status, not the alerts a "get" would list)
        pick = [
            (s, doer and does(op), op.action in planned, bool(set(nouns) & set(op.nouns)), i, op)
            for s, i, op in scored
        ]
        score, *_, op = max(pick, key=lambda x: x[:5])
        return score, op

    def _notifier(self, c: Clause, explicit: list[str], nouns: list[str]) -> str | None:
        """Where a message goes: a named chat service, else email or a #channel."""
        named = next((i for i in explicit if i in _NOTIFIERS), None)
        if named:
            return named
        if "email" in nouns or (c.entities("email") and not c.entities("channel")):
            return "smtp"
        words = [fold(t.text) for t in c.tokens]
        there = bool(set(words) & _THERE) or any(  # "post the incident in it"
            a in {"in", "into"} and b == "it" for a, b in pairwise(words)
        )
        if "room" in nouns or (there and self._latest("room_id") is not None):
            return "webex"  # "in the room", "post the list there" after making a room
        return "slack" if c.entities("channel") else None

    def _implied(self, c: Clause, verbs: list[str], nouns: list[str]) -> list[str]:
        d = self.lex.defaults
        found = [d.verbs[v] for v in verbs if v in d.verbs]
        sn = bool(c.entities("sn_number"))  # "el incidente INC0054321": ServiceNow's incident
        told = "send" in verbs  # "post the incident" that started the workflow: its content
        found += [
            d.nouns[n]
            for n in nouns
            if n in d.nouns
            and not (sn and n in {"incident", "ticket"})
            and not (told and n in self.evented)
            and not (n == "hire" and c.entities("email"))  # "new hire x@acme.com": a person
        ]
        if c.entities("jira_key"):
            found.append("jira")
        if c.entities("sn_number"):
            found.append("servicenow")
        if c.entities("channel"):
            found.append("slack")
        if "send" in verbs and c.entities("email") and not c.entities("channel"):
            found.append("smtp")  # "send it to ops@acme.com"
        return list(dict.fromkeys(found))

    def clause_ops(
        self,
        c: Clause,
        verbs: list[str],
        condition: bool,
        prior: list[str],
        hint: list[str] | None = None,
    ) -> tuple[list[Op], bool]:
        """The clause's new actions, and whether the clause mapped to anything at all
        (``hint``: the nouns of the clause before, for a clause that names none)."""
        nouns = clause_nouns(c) or [n for n in hint or [] if ":" not in n]
        free_nouns = [n for n in nouns if ":" not in n]
        if not condition:
            joins = self.verbless and bool(self.globals.get("email"))
            each = self.per_item or c.has("quantifier")  # "for each incident, post a summary"
            verbs = clause_verbs(c, verbs, free_nouns, asked=self.question, joins=joins, each=each)
        # a given thing ("job 4242's log") is the object only when nothing else is named
        given = [n.removeprefix("given:") for n in nouns if n.startswith("given:")]
        real_nouns = free_nouns or given
        quantified = c.has("quantifier") or plural(c)
        explicit = c.words("integration")
        people = {"them", "him", "her", "ihn", "ihm", "les", "los", "las"}
        named = bool({fold(t.text) for t in c.tokens} & people) and "create" in verbs
        if not real_nouns and named and self._latest("person_email") is not None:
            real_nouns = ["user"]  # "when Workday hires someone, create them in GitLab"
        if not real_nouns and c.has("state", "open"):  # "what's open in PagerDuty?"
            held = {
                n for op in self.lex.ops.values() if op.integration in explicit for n in op.nouns
            }
            real_nouns = sorted(held & {"incident", "ticket"})[:1]
        implied = [i for i in self._implied(c, verbs, real_nouns) if i not in explicit]
        if "slack" in implied and any(i in _NOTIFIERS for i in explicit):
            implied.remove("slack")
        planned_ops = [p.op for p in self.planned]
        chosen: list[Op] = []
        if explicit:
            # "send every PD incident to servicenow": the destination takes the verb
            explicit = sorted(explicit, key=lambda name: not destination(c, name))
            for name in explicit:
                best = self._best(name, verbs, real_nouns, reads=condition, quantified=quantified)
                if best is not None and makes_other(self.lex, best[1], real_nouns, c):
                    return [], False  # "make a group in okta": no action makes that record
                if best is not None:
                    chosen.append(best[1])
            at = next((i for i, t in enumerate(c.tokens) if t.has("quantifier")), None)
            listed = next(  # "for every open pagerduty incident create a jira ticket"
                (t.values("noun") for t in c.tokens[at or 0 :] if t.has("noun")), []
            )
            for i, op in enumerate(chosen):  # the listed service is read; the verb is another's
                other = [n for n in real_nouns if n not in listed and n not in op.nouns]
                if at is not None and op.role == "write" and set(listed) & set(op.nouns) and other:
                    read = self._best(op.integration, [], listed, reads=True, quantified=True)
                    if read is not None and read[1].list_expr:
                        chosen[i] = read[1]
            claimed: set[str] = set()
            for i, op in enumerate(chosen):  # one service takes the verb, others are read
                served = set(verbs) & set(op.verbs)
                if (op.role in {"write", "notify"} and served & claimed) or (
                    op.role == "write" and verbs and not served
                ):
                    read = self._best(  # "... from ServiceNow incident X": the given one
                        op.integration, [], real_nouns + given, reads=True, quantified=quantified
                    )
                    chosen[i] = read[1] if read is not None and read[0] >= 2 else op
                elif op.role in {"write", "notify"}:
                    claimed |= served
            for i, op in enumerate(chosen):  # "send me the open incidents": they exist
                sent = op.role == "write" and set(verbs) & set(op.verbs) == {"send"}
                if sent and c.has("state"):
                    read = self._best(op.integration, [], real_nouns, reads=True, quantified=True)
                    chosen[i] = read[1] if read is not None and read[0] >= 2 else op
            notifier = self._notifier(c, explicit, real_nouns) if "send" in verbs else None
            dropped: set[int] = set()
            for i, op in enumerate(chosen):  # "inform the team by email about PagerDuty ..."
                if (
                    notifier
                    and op.integration != notifier
                    and set(verbs) & set(op.verbs) == {"send"}
                ):
                    read = self._best(
                        op.integration, [], real_nouns, reads=True, quantified=quantified
                    )
                    if read is not None and read[0] >= 2:
                        chosen[i] = read[1]
                    elif any(q.integration == op.integration for q in planned_ops):
                        self.mentioned.add(op.integration)  # "post the PagerDuty link"
                        dropped.add(i)
            chosen = [op for i, op in enumerate(chosen) if i not in dropped]
            for verb in verbs:  # "email each new hire from Workday": the verb's own service
                target = self.lex.defaults.verbs.get(verb) or (notifier if verb == "send" else None)
                by_write = any(verb in op.verbs and op.role != "read" for op in chosen)
                if condition or not target or by_write:  # a read summarized is no summary
                    continue
                best = self._best(target, [verb], real_nouns, reads=False, quantified=quantified)
                if best is not None:
                    chosen.append(best[1])
        elif implied or (prior and verbs):
            cands = []
            notifier = self._notifier(c, [], real_nouns) if "send" in verbs else None
            pool = implied + [i for i in prior if i not in implied and verbs]
            for name in pool:
                best = self._best(name, verbs, real_nouns, reads=condition, quantified=quantified)
                if best is None:
                    continue
                verb_ok = bool(set(verbs) & set(best[1].verbs)) or not verbs or condition
                by_noun = not best[1].verbs and bool(set(real_nouns) & set(best[1].nouns))
                verb_ok = verb_ok or by_noun  # an action chosen by its noun takes any verb
                if name not in implied and not verb_ok:
                    continue
                # a message with no destination named goes where the messages went before
                to = name == notifier or (not notifier and "send" in verbs and name in _NOTIFIERS)
                cands.append((verb_ok, to, best[0], -pool.index(name), best[1]))
            if cands:  # a message goes to email or a #channel before another service
                chosen.append(max(cands, key=lambda x: x[:4])[4])
        places = [n for n in real_nouns + given if n in {"project", "group", "room"}]
        both = {"create", "add"} <= set(verbs) and "user" in real_nouns and bool(places)
        if both or ("add" in verbs and into_new_record(c, frozenset({"user"}))):
            for name in dict.fromkeys(op.integration for op in chosen):  # "a GitLab account
                for verb, wanted in (("create", ["user"]), ("add", places)):  # added to x"
                    made = self._best(name, [verb], wanted, reads=False, quantified=False)
                    if made and set(wanted) & set(made[1].nouns) and made[1] not in chosen:
                        chosen.append(made[1])  # a new account, then its membership
        covered = {n for op in chosen for n in op.nouns}
        d = self.lex.defaults.nouns
        kinds = self.lex.defaults.noun_kinds
        alternatives = {  # one word, several nouns ("incidencia"): one is enough
            n: set(t.values("noun")) - {n} for t in c.tokens for n in t.values("noun")
        }
        done = {op.integration for op in chosen}
        for service in dict.fromkeys(d[n] for n in free_nouns if n in d):
            while True:  # each noun no chosen action covers is read ("the job's log")
                wanted = [
                    n
                    for n in free_nouns
                    if d.get(n) == service
                    and (condition or n not in self.evented)  # "post the alert" that started it
                    and not (n == "hire" and c.entities("email"))  # "new joiner eva@acme.com"
                    and n not in covered
                    and not alternatives.get(n, set()) & covered
                    and not (
                        kinds.get(n)
                        and any(
                            kinds[n] in op.produces or kinds[n] in op.item for op in planned_ops
                        )
                    )  # the noun names an earlier step ("create a room for the incident")
                ]
                best = self._best(service, [], wanted, reads=True, quantified=quantified)
                if (
                    not wanted
                    or best is None
                    or best[0] < 2
                    or not set(wanted) & set(best[1].nouns)
                ):
                    break
                chosen.append(best[1])
                covered |= set(best[1].nouns)
                done.add(service)
        for name in implied:  # "JUN-7" names Jira
            if name in done or name in set(d.values()) & {d[n] for n in free_nouns if n in d}:
                continue
            uncovered = [n for n in free_nouns if n not in covered]
            unserved = [  # a read does not summarize itself ("summarize the log of job 4")
                v
                for v in verbs
                if not any(v in op.verbs and (op.role != "read" or v == "get") for op in chosen)
            ]
            write = self._best(name, unserved, uncovered, reads=False, quantified=quantified)
            if not condition and write is not None and set(unserved) & set(write[1].verbs):
                chosen.append(write[1])  # "comment on OPS-42 with the GitLab pipeline"
                covered |= set(write[1].nouns)
                continue
            best = self._best(name, [], uncovered, reads=True, quantified=quantified)
            named = name in {"jira", "servicenow"} and name not in explicit  # an id names it
            if best is not None and (best[0] >= 2 or named):
                chosen.append(best[1])
                covered |= set(best[1].nouns)
        at = next(
            (i for i, t in enumerate(c.tokens) if set(fold(t.text).split()) & self.lex.bulk), None
        )
        if at is not None and not condition:  # "ack all triggered incidents": list them first
            # the noun the quantifier is on, not "an incident for every alert"
            on = next((t.values("noun") for t in c.tokens[at:] if t.has("noun")), [])
            list_first(self.lex, chosen, planned_ops, [n for n in free_nouns if n in on])
        if "send" in verbs and not condition:  # "send ana the status of pipeline 8812"
            for n in ("pipeline", "job"):
                service = d[n]
                known = chosen + planned_ops  # "for each failed job in pipeline 99120, post"
                if f"given:{n}" in nouns and not any(op.integration == service for op in known):
                    best = self._best(service, ["get"], [n], reads=True, quantified=False)
                    if best is not None and n in best[1].nouns:
                        chosen.append(best[1])
        out: list[Op] = []
        for op in chosen:
            if op.role == "read" and any(q.action == op.action for q in planned_ops):
                continue  # read once ("the pipeline" after the trigger read it)
            if op not in out:
                out.append(op)
        return sorted(out, key=lambda op: (role_rank(op), depth(op, out))), bool(chosen)

    # --- conditions -----------------------------------------------------------------------
    def _param(self, name: str, spec: dict[str, Any]) -> None:
        self.params.setdefault(name, spec)

    def condition(
        self, c: Clause, ops: list[Planned], negate: bool
    ) -> list[tuple[str, Planned | None]]:
        """The tests a condition clause makes (see :func:`condition_tests`)."""
        pipe = self._latest("pipeline")
        parts, notes = condition_tests(c, ops, negate, pipe, self.fails, self.params)
        self.assumptions += notes
        return parts

    def _event(self, c: Clause) -> bool:
        """An event of a service without a read step starts the workflow: parameters only."""
        if not (c.has("event") or c.has("verb", "fire")):
            return False
        d = self.lex.defaults
        services = set(c.words("integration")) | {
            d.nouns[n] for n in clause_nouns(c) if n in d.nouns
        }
        if not services or not services <= set(d.event_params):
            return False
        self.evented |= {n for n in clause_nouns(c) if d.nouns.get(n) in services}
        for service in sorted(services):
            for name, description in d.event_params[service].items():
                self._param(name, {"type": "string", "required": True, "description": description})
            names = ", ".join(d.event_params[service])
            self.assumptions.append(f"the {service} event is given as parameters ({names})")
        return True

    def _subject(self, c: Clause, made: list[Planned], prior: list[Planned]) -> list[Planned]:
        """The earlier steps a clause is about ("a room for the incident", "for it")."""
        kinds = self.lex.defaults.noun_kinds
        found: list[Planned] = []
        own = {n for p in made for n in p.op.nouns}
        for noun in clause_nouns(c):
            if noun in own:
                continue  # the clause's own object ("a GitHub issue"), not an earlier one
            kind = kinds.get(noun.split(":")[-1])
            producer = self._latest(kind) if kind else None
            if producer is not None and producer not in made and producer not in found:
                found.append(producer)
        for name in sorted(self.mentioned):  # a service named as a reference
            producer = next((p for p in reversed(self.planned) if p.op.integration == name), None)
            if producer is not None and producer not in made and producer not in found:
                found.append(producer)
        self.mentioned.clear()
        if not found and back_reference(c):
            made = [p for p in prior if p.op.role == "write"]  # "its key": the record made
            found = (made or [p for p in prior if p.op.role != "notify"])[:1]
        return found

    def _pronoun_only(self, c: Clause) -> bool:
        """A condition about "it" alone ("if it fails", "cuando termine"): the step before."""
        words = {re.sub(r"['’]s$", "", fold(t.text)) for t in c.tokens}  # "it's still firing"
        subject = words & (_PRONOUNS | _SUBJECT_PRONOUNS)  # "... if she's active"
        bare = all(t.has("event") or t.has("fail") for t in c.tokens)  # "cuando termine"
        return (bool(subject) or bare) and not clause_nouns(c) and not c.words("integration")

    def _refers(self, c: Clause) -> list[Planned]:
        """Earlier steps that every noun of a condition names ("once the Jira issue exists")."""
        kinds = self.lex.defaults.noun_kinds
        nouns = [n.split(":")[-1] for n in clause_nouns(c)]
        found = [self._latest(kinds[n]) if n in kinds else None for n in nouns]
        steps = [p for p in found if p is not None]
        given = any(n.startswith("given:") for n in clause_nouns(c))  # "incident INC0099887"
        ok = nouns and len(steps) == len(nouns) and not c.has("fail") and not given
        return steps if ok else []

    def _latest(self, kind: str) -> Planned | None:
        return next(
            (p for p in reversed(self.planned) if kind in p.op.produces or kind in p.op.item), None
        )

    # --- the whole request ----------------------------------------------------------------
    def run(self) -> None:
        stage = 0
        verbs: list[str] = []
        prior: list[str] = []
        governing: list[tuple[str, Planned | None]] = []
        last_condition: list[tuple[str, Planned | None]] = []
        pending_end: list[tuple[str, Planned | None]] = []
        quantified_sentence = False
        prior_made: list[Planned] = []
        for index, c in enumerate(self.reading.clauses):
            links = c.links
            own_verbs = c.words("verb")
            if own_verbs:
                verbs = own_verbs
            elif not links & {"and", "comma", "parallel", "then"}:
                verbs = []
            if "sentence" in links:
                quantified_sentence = False
                governing = []
            self.per_item = quantified_sentence
            if "then" in links:
                stage += 1
            condition = bool(links & {"condition", "unless"})
            first = False  # "... after ChatGPT summarizes it": an action done before the rest
            actions = [v for v in own_verbs if v not in {"fire"}]
            stated = c.has("fail") or c.has("event") or c.has("state")
            doing = bool(actions) and c.tokens[0].has("verb")  # "after creating X for failing Y"
            if "after" in links and actions and (not stated or doing):
                condition, first = False, True
            elif "after" in links:
                condition = True
            if "otherwise" in links:
                governing = [(f"not ({w})", p) for w, p in last_condition]
                links = links | {"parallel"}
                prior_made = []
            stated = c.has("event") or c.has("verb", "fire") or not c.words("integration")
            if condition and c.has("severity") and stated:
                self.evented |= set(clause_nouns(c))  # "a critical alert fires"
                last_condition = self.condition(c, [], negate="unless" in links)
                governing = last_condition
                continue
            if condition and self._event(c):
                continue
            if (
                not own_verbs
                and not condition
                and not c.words("integration")
                and any(fold(t.text) in _PRONOUNS for t in c.tokens)
            ):
                covered = {n for p in prior_made for n in p.op.nouns}
                if set(clause_nouns(c)) <= covered:
                    continue  # "... and label it as bug": more about the same step
            more = not condition and index + 1 < len(self.reading.clauses)
            unnamed = not clause_nouns(c) and not c.words("integration")
            pronoun = any(fold(t.text) in _PRONOUNS for t in c.tokens)  # "deactivate it"
            if (
                more
                and own_verbs
                and unnamed
                and not pronoun
                and not self._implied(c, own_verbs, [])
            ):
                continue  # "schreibe | danach eine E-Mail", "Onboard jo@acme.com:": verb goes on
            label = not clause_nouns(c) and not any(t.entity for t in c.tokens)
            if more and label and c.words("integration") and not own_verbs and not verbs:
                prior = c.words("integration")  # "gitlab: retry the pipeline"
                continue
            refers = self._refers(c) if condition else []
            if condition and not refers and prior_made and self._pronoun_only(c):
                done = [p for p in prior_made if p.op.role != "notify"] or [  # not a message
                    p for p in reversed(self.planned) if p.op.role != "notify"
                ]
                refers = done[:1]  # "rerun the pipeline and if it fails, page"
            ops: list[Op]
            if refers:  # "once the Jira issue exists": a step planned before, not a new read
                ops, mapped = [], True
            else:
                # "onboard worker 30512 into okta and gitlab": the object goes on too
                same = not own_verbs and bool(links & {"and", "comma"}) and index > 0
                same = same and bool(c.words("integration")) and not clause_nouns(c)
                objects = [p.op.nouns[0] for p in prior_made if p.op.nouns]
                hint = clause_nouns(self.reading.clauses[index - 1]) + objects if same else []
                later = self.reading.clauses[index + 1 : index + 2]  # "create gitlab and okta
                if own_verbs and c.words("integration") and not clause_nouns(c) and later:
                    ahead = "and" in later[0].links and not later[0].words("verb")
                    hint = clause_nouns(later[0]) if ahead else hint  # accounts": one object
                ops, mapped = self.clause_ops(
                    c, verbs if (own_verbs or not condition) else [], condition, prior, hint
                )
            first_of_sentence = index == 0 or bool(links & {"sentence", "condition", "after"})
            if c.has("quantifier") and (first_of_sentence or c.tokens[0].has("quantifier")):
                quantified_sentence = True  # "For each new hire, ...": the rest of the sentence
            entities = entities_of([c])
            made: list[Planned] = []
            for op in ops:
                p = Planned(
                    op,
                    index,
                    -1 if first else stage,
                    entities,
                    quoted=c.entities("quoted"),
                    topic=c.topic,
                    parallel="parallel" in links,
                    quantified=c.has("quantifier"),
                    # conditions run first, and so does the list a sentence fans out over
                    condition=condition,
                    notifies=op.role == "write" and set(verbs) & set(op.verbs) == {"send"},
                    front=condition
                    or first
                    or (c.has("quantifier") and op.role == "read" and bool(op.list_expr)),
                )
                made.append(p)
            waited = [q for w, q in governing if w == _AFTER_STEP and q is not None]
            beside = "parallel" in links  # "... and at the same time tell X we're on it"
            subject = self._subject(c, made, waited or ([] if beside else prior_made))
            notify = next((q for q in prior_made if q.op.role == "notify"), None)
            later_llm = made and all(p.op.role == "llm" for p in made) and "sentence" in links
            for p in made:
                p.subject = subject
                if later_llm and notify is not None and pronoun:  # "... email it. Use GPT."
                    p.stage, p.clause = notify.stage, notify.clause
                    self.planned.insert(self.planned.index(notify), p)
                else:
                    self.planned.append(p)
            if made:
                prior_made = made
            if condition:
                if made:
                    prior = [p.op.integration for p in made]
                cond = self.condition(c, made, negate="unless" in links)
                if not cond and refers:
                    failed = c.has("fail") and "pipeline" in refers[0].op.produces
                    test = "steps.{sid}.output.status == 'failed'" if failed else _AFTER_STEP
                    cond = [(test, refers[0])]
                if not made and not cond and not mapped:
                    self.unplanned.append(c.text)
                last_condition = cond
                if any(
                    self.reading.clauses[j].tokens
                    and not (self.reading.clauses[j].links & {"condition", "unless", "after"})
                    for j in range(index + 1, len(self.reading.clauses))
                ):
                    governing = cond
                else:
                    pending_end = cond
                continue
            if not ops:
                intro = set(own_verbs) <= {"onboard"}
                if own_verbs and not mapped and not intro and not c.has("schedule"):
                    self.unplanned.append(c.text)
                continue
            prior = [op.integration for op in ops]
            for p in made:
                p.when = list(governing)
                named = [q for w, q in governing if w == _AFTER_STEP and q is not None]
                if any(not q.condition for q in named):
                    p.parallel = True  # it waits for the step it names, not for others
                if quantified_sentence and not p.quantified and p.op.role != "read":
                    p.quantified = True
        if pending_end:
            for p in self.planned:
                if not p.front:  # never a step's condition on itself
                    p.when = p.when + [(w, q) for w, q in pending_end if q is not p]
        if any(c.has("schedule") for c in self.reading.clauses):
            words = [t.text for c in self.reading.clauses for t in c.tokens if t.has("schedule")]
            self.assumptions.append(
                f"{_quote(words)} is a schedule: set it on the deployment; the spec runs once"
            )
        if self.recent and self.fails:
            latest_pipeline(self.planned, self.lex)
        llm_needs_log(self.planned, self.lex, self.reading.clauses)
