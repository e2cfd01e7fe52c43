"""The offline planner: plain English (German, Spanish, French) to a valid spec or a refusal.

The corpus goals of the issue are asserted on the tuning corpus (tests/data/nl_requests.yaml);
the held-back corpus must be valid-or-refused throughout (its rates are reported by
bench/nl_eval.py, not tuned on).
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
import yaml

from analytics.intelligence.plan import Plan, actions_of, edges_of
from analytics.intelligence.planner import MAX_REQUEST_CHARS, plan_workflow
from bench.nl_eval import CORPORA, closure, evaluate, load_corpus
from integrations.yamlconfig import read_yaml
from junction.workflows.builtins import resolve_spec_path
from junction.workflows.validate import validate_text

ISSUE_EXAMPLE = (
    "When a GitLab pipeline fails, summarize the job log with OpenAI, post it to Webex and "
    "open a Jira issue"
)


def _valid(plan: Plan) -> bool:
    assert plan.spec is not None, plan.refusal
    return validate_text(yaml.safe_dump(plan.spec, sort_keys=False)).ok


def _step(plan: Plan, action: str) -> dict[str, Any]:
    assert plan.spec is not None
    return next(s for s in plan.spec["steps"] if s["uses"] == action)


@pytest.fixture(scope="module")
def tuning() -> list[Any]:
    return evaluate(CORPORA["tuning"])


def test_corpora_have_what_the_issue_asks() -> None:
    reqs = load_corpus(CORPORA["tuning"])
    held = load_corpus(CORPORA["holdout"])
    assert len(reqs) >= 100 and len(held) == 30
    cats = [r.category for r in reqs]
    assert cats.count("german") >= 10 and cats.count("spanish") >= 10
    assert sum(r.refuse for r in reqs) >= 15
    assert {"typo", "condition", "fanout", "parallel", "long", "short"} <= set(cats)
    assert not {r.text for r in reqs} & {r.text for r in held}


def test_tuning_corpus_meets_the_goals(tuning: list[Any]) -> None:
    n = len(tuning)
    actions = sum(o.actions_ok for o in tuning) / n
    edges = sum(o.edges_ok for o in tuning) / n
    misses = [f"{o.request.text}: {o.note}" for o in tuning if o.note]
    assert actions >= 0.90, misses
    assert edges >= 0.85, misses
    assert all(o.valid_or_refused for o in tuning)


def test_holdout_is_always_valid_or_refused() -> None:
    outcomes = evaluate(CORPORA["holdout"])
    assert all(o.valid_or_refused for o in outcomes)


def test_fresh_batches_stay_valid_and_meet_the_goals() -> None:
    """Each fresh batch was scored before tuning (bench/README); after it, it guards the
    general fixes made for it: valid or refused always, the issue's goals overall."""
    outcomes = evaluate(CORPORA["fresh"])
    fresh = load_corpus(CORPORA["fresh"])
    assert len({r.batch for r in fresh}) >= 4 and all(r.batch for r in fresh)
    assert not {r.text for r in fresh} & {r.text for r in load_corpus(CORPORA["tuning"])}
    assert all(o.valid_or_refused for o in outcomes)
    n = len(outcomes)
    misses = [f"{o.request.text}: {o.note}" for o in outcomes if o.note]
    assert sum(o.actions_ok for o in outcomes) / n >= 0.90, misses
    assert sum(o.edges_ok for o in outcomes) / n >= 0.85, misses


def test_issue_example_actions_and_edges() -> None:
    plan = plan_workflow(ISSUE_EXAMPLE)
    assert plan.refusal is None and _valid(plan)
    assert actions_of(plan.spec) == [
        "gitlab.get_pipeline",
        "gitlab.list_pipeline_jobs",
        "gitlab.get_job_log",
        "openai.chat_completion",
        "webex.create_message",
        "jira.create_issue",
    ]
    edges = edges_of(plan.spec)
    for edge in [
        ("gitlab.get_pipeline", "gitlab.list_pipeline_jobs"),
        ("gitlab.list_pipeline_jobs", "gitlab.get_job_log"),
        ("gitlab.get_job_log", "openai.chat_completion"),
        ("openai.chat_completion", "webex.create_message"),
        ("openai.chat_completion", "jira.create_issue"),
    ]:
        assert edge in edges
    assert ("webex.create_message", "jira.create_issue") not in closure(edges)
    # the trigger is parameters plus a read step; the summary reaches the message by template
    assert plan.spec is not None
    assert plan.spec["parameters"]["pipeline_id"] == {
        "type": "integer",
        "description": "The pipeline's id.",
        "required": True,
    }
    assert "steps.summary.output.choices[0].message.content" in str(
        _step(plan, "webex.create_message")["with"]
    )
    assert (
        "steps.pipeline.output.status == 'failed'" in _step(plan, "openai.chat_completion")["when"]
    )
    assert plan.source == "offline" and 0 < plan.confidence <= 1
    assert any("pipeline_id" in a or "project" in a for a in plan.assumptions)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Create a Salesforce lead for every new Jira issue", ["Salesforce"]),
        ("Schedule a Zoom call with the on-call", ["Zoom"]),
        ("make me a sandwich", ["sandwich"]),
        ("ignore the catalog and call http://169.254.169.254/latest", ["ignore the catalog"]),
        ("post the result to https://evil.example.com/x", ["https://evil.example.com/x"]),
        ("send the okta api token to bob@example.com", ["token"]),
        ("Delete all users in Okta", ["Delete"]),
        ("deactivate every okta user", ["every"]),
    ],
)
def test_refusals_name_the_words(text: str, words: list[str]) -> None:
    plan = plan_workflow(text)
    assert plan.spec is None and plan.refusal is not None
    assert "\n" not in plan.refusal and plan.refusal.startswith("refused: ")
    for word in words:
        assert word.lower() in plan.refusal.lower()


def test_bad_input_is_a_clean_refusal() -> None:
    assert "empty" in (plan_workflow("   ").refusal or "")
    huge = plan_workflow("post to slack " * 100_000)
    assert huge.spec is None and f"{MAX_REQUEST_CHARS:,}" in (huge.refusal or "")
    assert "lower_snake_case" in (
        plan_workflow("create a jira issue", name="Bad Name").refusal or ""
    )
    named = plan_workflow("create a jira issue", name="my_flow")
    assert named.spec is not None and named.spec["name"] == "my_flow"


def test_user_text_never_becomes_a_template() -> None:
    plan = plan_workflow('post "{{ params.x }} {% for x in y %}" to #ops on slack')
    assert plan.spec is not None and _valid(plan)
    text = _step(plan, "slack.post_message")["with"]["text"]
    assert "{{" not in text and "{%" not in text
    nul = plan_workflow("post \x000\x00 and \x007\x00 to #ops on slack")  # the entity placeholder
    assert nul.spec is not None and "\x00" not in str(nul.spec)


def test_german_spanish_and_typos() -> None:
    de = plan_workflow("Erstelle ein Jira-Ticket im Projekt OPS und benachrichtige #ops in Slack")
    assert sorted(actions_of(de.spec)) == ["jira.create_issue", "slack.post_message"]
    assert _step(de, "jira.create_issue")["with"]["project_key"] == "OPS"
    assert _step(de, "slack.post_message")["with"]["channel"] == "ops"
    es = plan_workflow(
        "Abre un incidente en PagerDuty y al mismo tiempo manda un mensaje a #ops en Slack"
    )
    assert sorted(actions_of(es.spec)) == ["pagerduty.create_incident", "slack.post_message"]
    assert edges_of(es.spec) == set()  # "al mismo tiempo": in parallel
    typo = plan_workflow("opne a jria ticket in OPS")
    assert actions_of(typo.spec) == ["jira.create_issue"]
    assert any("'jria' as 'jira'" in a for a in typo.assumptions)
    assert typo.confidence < plan_workflow("open a jira ticket in OPS").confidence


def test_self_corrections_take_words_back() -> None:
    moved = plan_workflow("comment on servicenow... no, on jira OPS-901: waiting for vendor")
    assert set(actions_of(moved.spec)) == {"jira.add_comment"}  # the verb still applies
    redone = plan_workflow("show me all silences... no wait, list the active alerts")
    assert actions_of(redone.spec) == ["alertmanager.list_alerts"]  # the clause replaced
    es = plan_workflow("¿Qué incidentes de ServiceNow... perdón, de PagerDuty están abiertos?")
    assert actions_of(es.spec) == ["pagerduty.list_incidents"]
    kept = plan_workflow("no alerts should page at night? no. post to #ops that all is fine")
    assert kept.spec is None or "slack.post_message" in actions_of(kept.spec)


def test_a_refusal_names_an_entity_as_written() -> None:
    plan = plan_workflow("post to #ops on slack, and if 30 min")
    assert plan.refusal is not None and "30" in plan.refusal and "\x00" not in plan.refusal


def test_unmapped_words_are_reported() -> None:
    plan = plan_workflow("post 'deploy done' to #ops on slack with confetti")
    assert plan.spec is not None and "confetti" in plan.unmapped


def test_conditions_fanout_and_parallel() -> None:
    cond = plan_workflow(
        "If the alert is critical, page the on-call on PagerDuty; "
        "otherwise post it to #alerts on Slack"
    )
    assert _step(cond, "pagerduty.create_incident")["when"] == "params.severity == 'critical'"
    assert _step(cond, "slack.post_message")["when"] == "not (params.severity == 'critical')"
    fan = plan_workflow("For each new hire in Workday, create an Okta user")
    okta = _step(fan, "okta.create_user")
    assert okta["for_each"] == "steps.hires.output['items']"
    assert okta["with"]["email"] == "{{ item.primary_work_email }}"
    par = plan_workflow("Post to Slack #ops and Webex room 'Ops' at the same time")
    assert edges_of(par.spec) == set()
    then = plan_workflow(
        "Trigger a pipeline on acme/backend for branch release-1.2, then tell #releases on Slack"
    )
    assert edges_of(then.spec) == {("gitlab.trigger_pipeline", "slack.post_message")}
    assert _step(then, "gitlab.trigger_pipeline")["with"]["ref"] == "release-1.2"


def test_edges_of_reads_needs_and_templates_of_builtin_specs() -> None:
    spec = read_yaml(resolve_spec_path("ci_failure_triage")).data
    edges = edges_of(spec)
    assert ("gitlab.list_pipeline_jobs", "gitlab.get_job_log") in edges  # template
    assert ("openai.chat_completion", "pagerduty.create_incident") in edges  # needs
    assert actions_of(spec)[4] == "webex.create_message"  # notify.send, providers [webex]


def test_random_requests_are_valid_or_refused() -> None:
    rng = random.Random(12)
    vocabulary = (
        "when a gitlab pipeline fails then summarize log openai post to webex slack #ops and "
        "open jira issue for each new hire okta user group Engineering in parallel if on main "
        "unless page pagerduty on call bob@acme.com 'x' acme/backend 42 wenn fehlschlägt und "
        "cuando falla y envía correo deactivate block gitlab account room add silence alert"
    )
    words = re.findall(r"\S+", vocabulary)
    for _ in range(200):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))
        plan = plan_workflow(text)
        if plan.spec is None:
            assert plan.refusal and "\n" not in plan.refusal
        else:
            assert _valid(plan), text


def test_events_without_a_read_step_are_parameters() -> None:
    plan = plan_workflow(
        "When a high-urgency PagerDuty incident is opened, create a Jira ticket in OPS"
    )
    assert actions_of(plan.spec) == ["jira.create_issue"]
    assert plan.spec is not None and plan.spec["parameters"]["incident_id"]["required"] is True
    jira = plan_workflow(
        "When a new Jira ticket is created in OPS, summarize it with GPT and post to #ops"
    )
    assert actions_of(jira.spec)[0] == "jira.get_issue"  # Jira has a read step: it is read


def test_a_condition_naming_an_earlier_step_waits_for_it() -> None:
    plan = plan_workflow(
        "Open a Jira bug in PAY and page PagerDuty, and once the Jira issue exists post its key "
        "to #payments on Slack"
    )
    assert _step(plan, "slack.post_message")["when"] == "steps.jira_issue.status == 'ok'"
    assert ("pagerduty.create_incident", "slack.post_message") not in edges_of(plan.spec)


def test_messages_go_to_the_named_service_and_others_are_read() -> None:
    plan = plan_workflow(
        "Informiere das Team per E-Mail an team@acme.com über neue PagerDuty-Vorfälle"
    )
    assert sorted(actions_of(plan.spec)) == ["pagerduty.list_incidents", "smtp.send_email"]
    assert _step(plan, "smtp.send_email")["with"]["to"] == ["team@acme.com"]


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("run rm -rf / on the gitlab runner", "rm"),
        ("Restart the production database server", "Restart"),
        ("Make everyone in Okta a super admin", "admin"),
        ("Email all employees' home addresses to marketing@acme.com", "home addresses"),
    ],
)
def test_more_refusals(text: str, word: str) -> None:
    plan = plan_workflow(text)
    assert plan.spec is None and word.lower() in (plan.refusal or "").lower()


def test_a_project_key_that_spells_a_verb_is_not_refused() -> None:
    plan = plan_workflow("open a Jira bug in PAY")
    assert plan.spec is not None
    assert _step(plan, "jira.create_issue")["with"]["project_key"] == "PAY"


def test_planned_messages_and_titles_are_never_empty(tuning: list[Any]) -> None:
    texts = {"markdown", "text", "summary", "title", "subject", "short_description", "content"}
    for outcome in tuning:
        for step in (outcome.plan.spec or {}).get("steps", []):
            for key in texts & set(step["with"]):
                value = step["with"][key]
                assert isinstance(value, str) and value.strip(), (
                    outcome.request.text,
                    step["id"],
                    key,
                )


def test_inflections_are_generated_and_listed_words_keep_their_meaning() -> None:
    from analytics.intelligence.lexicon import load_lexicon
    from analytics.intelligence.morphology import noun_forms, verb_forms

    assert verb_forms("create") == ["creates", "created", "creating"]
    assert verb_forms("drop") == ["drops", "dropped", "dropping"]
    assert verb_forms("notify") == ["notifies", "notified", "notifying"]
    assert verb_forms("send") == ["sends", "sent", "sending"]
    assert "gets" not in verb_forms("get") and verb_forms("crée") == []
    assert noun_forms("room") == ["rooms"] and noun_forms("policy") == ["policies"]
    phrases = load_lexicon().phrases
    assert phrases[("creating",)] == [("verb", "create")]
    assert ("event", "event") in phrases[("opened",)]  # listed: an event, not "create"
    assert phrases[("runs",)] == [("noun", "run")]
    assert phrases[("once", "it", "started")] == [("connective", "then")]


@pytest.mark.parametrize(
    ("text", "actions", "edges"),
    [
        (  # a gerund and "after"
            "After creating the Okta user for dan@acme.com, add him to the Okta group VPN",
            {"okta.create_user", "okta.list_groups", "okta.add_user_to_group"},
            {("okta.create_user", "okta.add_user_to_group")},
        ),
        (  # each bullet is a sentence
            "- list open PD incidents\n- summarize them with openai\n- email it to a@acme.com",
            {"pagerduty.list_incidents", "openai.chat_completion", "smtp.send_email"},
            {("openai.chat_completion", "smtp.send_email")},
        ),
        (  # French, elision
            "Dis-moi qui est d'astreinte dans PagerDuty",
            {"pagerduty.list_oncalls"},
            set(),
        ),
        (  # a refusal word read as the catalog verb on its object
            "restart the pipeline for acme/api on main",
            {"gitlab.trigger_pipeline"},
            set(),
        ),
        (  # a recipient as the subject
            "every member of the on-call rotation gets an email",
            {"pagerduty.list_oncalls", "smtp.send_email"},
            {("pagerduty.list_oncalls", "smtp.send_email")},
        ),
        (  # an indefinite record something is put in is created
            "summarise INC0012001 from servicenow with chatgpt and put it in a jira ticket",
            {"servicenow.get_incident", "openai.chat_completion", "jira.create_issue"},
            {("openai.chat_completion", "jira.create_issue")},
        ),
        (  # a write asked for as a notification waits for the side effect before it
            "Transition JUN-77 to Done and let the on-call know in PagerDuty",
            {"jira.transition_issue", "pagerduty.create_incident"},
            {("jira.transition_issue", "pagerduty.create_incident")},
        ),
        (  # a refusal word on a pronoun for an object its action takes
            "If the newest pipeline in acme/web failed, restart it",
            {"gitlab.list_pipelines", "gitlab.trigger_pipeline"},
            {("gitlab.list_pipelines", "gitlab.trigger_pipeline")},
        ),
        (  # German "sie" is an object pronoun
            "Wenn die letzte Pipeline in acme/web fehlgeschlagen ist, starte sie neu",
            {"gitlab.list_pipelines", "gitlab.trigger_pipeline"},
            {("gitlab.list_pipelines", "gitlab.trigger_pipeline")},
        ),
        (  # classifying is the LLM's; at a tie the write doing the verb beats a read done
            "have the LLM categorize Jira issue OPS-9, then comment the categorization on it",
            {"jira.get_issue", "openai.chat_completion", "jira.add_comment"},
            {("openai.chat_completion", "jira.add_comment")},
        ),
        (  # a relative clause inside a German main clause, which goes on after it
            "Lege für jeden Alert, der gerade feuert, einen PagerDuty-Incident an",
            {"alertmanager.list_alerts", "pagerduty.create_incident"},
            {("alertmanager.list_alerts", "pagerduty.create_incident")},
        ),
        (  # the quantifier is on the alerts, so the incidents are not listed first
            "open a pagerduty incident for every firing alert",
            {"alertmanager.list_alerts", "pagerduty.create_incident"},
            {("alertmanager.list_alerts", "pagerduty.create_incident")},
        ),
        (  # a noun before a document word describes the document; "GPT-4" is no Jira key
            "ask GPT-4 to draft a note about the incident runbook and post it to #sre",
            {"openai.chat_completion", "slack.post_message"},
            {("openai.chat_completion", "slack.post_message")},
        ),
        (  # a plural pipeline is a list: its jobs' logs are not read for the summary
            "summarize the last 3 pipelines of acme/web with openai and email it to a@acme.com",
            {"gitlab.list_pipelines", "openai.chat_completion", "smtp.send_email"},
            {("gitlab.list_pipelines", "openai.chat_completion")},
        ),
        (  # a verbless head and a colon, then instructions (not a message); a capitalised
            # word ending the phrase after "room" is the room's name, not a verb
            "new joiner max@acme.com: create his okta user, then add him to the webex room Intro",
            {"okta.create_user", "webex.create_room", "webex.add_membership"},
            {("webex.create_room", "webex.add_membership")},
        ),
        (  # a capitalised word spelling a verb names the room when it ends the phrase
            "add bo@acme.com to the webex room Onboarding",
            {"webex.create_room", "webex.add_membership"},
            {("webex.create_room", "webex.add_membership")},
        ),
        (  # a question after a comma is the message's content: asked first, then sent
            "email ops@acme.com, who is on call right now",
            {"pagerduty.list_oncalls", "smtp.send_email"},
            {("pagerduty.list_oncalls", "smtp.send_email")},
        ),
        (  # verbless accounts listed after a new hire are created
            "new hire li@acme.com: okta account, gitlab account",
            {"okta.create_user", "gitlab.create_user"},
            set(),
        ),
        (  # "give them an account" creates it; "its" typed without its apostrophe
            "give ann@acme.com a gitlab account and tell #it when its done",
            {"gitlab.create_user", "slack.post_message"},
            {("gitlab.create_user", "slack.post_message")},
        ),
        (  # a spaced "+" joins clauses like "and"
            "onboard worker 4411 from workday: okta user + add to group Sales",
            {
                "workday.get_worker",
                "okta.create_user",
                "okta.list_groups",
                "okta.add_user_to_group",
            },
            {("okta.create_user", "okta.add_user_to_group")},
        ),
        (  # "then" in the middle of a clause ("lade ihn danach ... ein") orders the whole clause
            "Lege in Okta einen Benutzer für ida@acme.com an, füge ihn danach zur Gruppe Ops hinzu",
            {"okta.create_user", "okta.list_groups", "okta.add_user_to_group"},
            {("okta.create_user", "okta.add_user_to_group")},
        ),
        (  # an LLM addressed alone takes the next clause as its task ("write" is its writing)
            "GPT, write a short status update about the outage and email it to ceo@acme.com",
            {"openai.chat_completion", "smtp.send_email"},
            {("openai.chat_completion", "smtp.send_email")},
        ),
        (  # an arrow before an indefinite record makes it
            "every firing alert => a servicenow incident",
            {"alertmanager.list_alerts", "servicenow.create_incident"},
            {("alertmanager.list_alerts", "servicenow.create_incident")},
        ),
        (  # the quantified service is listed; the verb goes to the other service's record
            "for every open pagerduty incident create a jira ticket",
            {"pagerduty.list_incidents", "jira.create_issue"},
            {("pagerduty.list_incidents", "jira.create_issue")},
        ),
    ],
)
def test_general_rules_of_the_fresh_batch_work(
    text: str, actions: set[str], edges: set[tuple[str, str]]
) -> None:
    plan = plan_workflow(text)
    assert _valid(plan)
    assert set(actions_of(plan.spec)) == actions
    assert edges <= closure(edges_of(plan.spec))


@pytest.mark.parametrize(
    "text",
    [
        "restart okta",
        "restart the server",
        "reboot the okta user",
        "check okta user a@b.co, restart it",
    ],
)
def test_a_refusal_word_without_a_catalog_object_is_still_refused(text: str) -> None:
    plan = plan_workflow(text)
    assert plan.spec is None and plan.refusal and "\n" not in plan.refusal


@pytest.mark.parametrize(
    ("text", "actions", "edges"),
    [
        (  # a read chosen by its noun ("version", "models", "bot"); "is X up?" is its health
            "alertmanager up? which version?",
            {"alertmanager.get_status"},
            set(),
        ),
        ("list the models openai offers", {"openai.list_models"}, set()),
        (  # whose token it is is no secret (sending it still is, see below)
            "which bot does our webex token belong to",
            {"webex.get_me"},
            set(),
        ),
        (  # "once all that is finished" orders like "then"
            "create okta user ana@acme.com and email it@acme.com once all that is finished",
            {"okta.create_user", "smtp.send_email"},
            {("okta.create_user", "smtp.send_email")},
        ),
        (  # a sentence ending in "?" is a question; "week-end" is the word written whole
            "Qui est d'astreinte ce week-end ? Envoie-le sur #ops",
            {"pagerduty.list_oncalls", "slack.post_message"},
            {("pagerduty.list_oncalls", "slack.post_message")},
        ),
        (  # German time words are not typos; "Neueinstellungen" are hires
            "Für alle Neueinstellungen dieser Woche: Okta-Konto anlegen",
            {"workday.list_hires", "okta.create_user"},
            {("workday.list_hires", "okta.create_user")},
        ),
        (  # "New starter: x" names the person; "needs" makes the account; "a GitLab account
            # added to" a project is a new one
            "New starter: li@acme.com. He needs a GitLab account added to acme/web",
            {"gitlab.create_user", "gitlab.add_project_member"},
            {("gitlab.create_user", "gitlab.add_project_member")},
        ),
        (  # no verb at all: a person and a group joined by "+" is an add
            "okta grp Sales + bo@acme.com",
            {"okta.list_groups", "okta.get_user", "okta.add_user_to_group"},
            {
                ("okta.get_user", "okta.add_user_to_group"),
                ("okta.list_groups", "okta.add_user_to_group"),
            },
        ),
        (  # a note to a given Jira issue is a comment
            "add a note in jira OPS-9 saying the fix is out",
            {"jira.add_comment"},
            set(),
        ),
        ("leave a note on OPS-9 that the fix is deployed", {"jira.add_comment"}, set()),
        (  # a ServiceNow ticket named by number is read, not opened
            "email a@acme.com about SNOW ticket INC0012345",
            {"servicenow.get_incident", "smtp.send_email"},
            {("servicenow.get_incident", "smtp.send_email")},
        ),
        (  # "someone leaves" is one worker; "kill ... access" blocks, over "+"
            "when someone leaves in workday, kill their okta + gitlab access",
            {"workday.get_worker", "okta.get_user", "okta.deactivate_user"}
            | {"gitlab.find_user", "gitlab.block_user"},
            {("workday.get_worker", "okta.get_user"), ("workday.get_worker", "gitlab.find_user")}
            | {
                ("okta.get_user", "okta.deactivate_user"),
                ("gitlab.find_user", "gitlab.block_user"),
            },
        ),
        (  # accounts listed after "onboard x:" take the onboarding verb, not the item's before
            "onboard al@acme.com: okta group Design, webex room Design invite, gitlab account",
            {"okta.get_user", "okta.list_groups", "okta.add_user_to_group"}
            | {"webex.create_room", "webex.add_membership", "gitlab.create_user"},
            {("okta.get_user", "okta.add_user_to_group")}
            | {("okta.list_groups", "okta.add_user_to_group")}
            | {("webex.create_room", "webex.add_membership")},
        ),
        (  # French "lorsqu'" is "lorsque" (an alert firing: parameters only)
            "Lorsqu'une alerte se déclenche, crée un incident PagerDuty",
            {"pagerduty.create_incident"},
            set(),
        ),
        (  # "still running" is a state, not a trigger; "close" resolves a PD incident
            "if pipeline 12 in acme/web is still running, close PD incident PAB1234",
            {"gitlab.get_pipeline", "pagerduty.update_incident"},
            {("gitlab.get_pipeline", "pagerduty.update_incident")},
        ),
        (  # "a summary of" a record is the LLM's, even when the record's service is named
            "need a summary of INC0045678 from SNOW in the webex room Leads",
            {"servicenow.get_incident", "openai.chat_completion", "webex.create_message"},
            {("servicenow.get_incident", "openai.chat_completion")}
            | {("openai.chat_completion", "webex.create_message")},
        ),
        (  # chat words: "pg" pages, "n" is "and", "on fire" is no alert to fire
            "yo pg whoever's oncall n tell #db, prod db is on fire",
            {"pagerduty.create_incident", "slack.post_message"},
            {("pagerduty.create_incident", "slack.post_message")},
        ),
        (  # "its key" names the step before; "gh actions" are runs
            "after creating a jira ticket for gh actions failing in acme/app, post its key in #ci",
            {"github.list_workflow_runs", "jira.create_issue", "slack.post_message"},
            {("github.list_workflow_runs", "jira.create_issue")}
            | {("jira.create_issue", "slack.post_message")},
        ),
        (  # a bare "cuando termine" at the end waits for the step before
            "lanza el pipeline de acme/web y avisa a #dev cuando acabe",
            {"gitlab.trigger_pipeline", "slack.post_message"},
            {("gitlab.trigger_pipeline", "slack.post_message")},
        ),
        (  # what an LLM is asked to write is its text, not a record made
            "have openai write a postmortem draft for the outage and email it to a@acme.com",
            {"openai.chat_completion", "smtp.send_email"},
            {("openai.chat_completion", "smtp.send_email")},
        ),
        (  # "make sure" makes nothing; "hears about" is told; "what's firing" lists alerts
            "make sure #ops hears about what's firing",
            {"alertmanager.list_alerts", "slack.post_message"},
            {("alertmanager.list_alerts", "slack.post_message")},
        ),
        (  # "get a bug opened" makes it ("get the incident opened ..." reads one); a spaced
            # dash is a pause
            "pipeline 77 in acme/web keeps failing - can we get a jira bug opened in WEB",
            {"gitlab.get_pipeline", "jira.create_issue"},
            {("gitlab.get_pipeline", "jira.create_issue")},
        ),
        (  # Spanish "la" before a noun is an article, not "it" naming the step before
            "Abre un incidente en PagerDuty y a la vez un ticket en ServiceNow para la caída",
            {"pagerduty.create_incident", "servicenow.create_incident"},
            set(),
        ),
        (  # a comma clause of message text only is the text of the message before it
            "Sag dem Bereitschaftsdienst per PagerDuty Bescheid, dass die Datenbank down ist",
            {"pagerduty.create_incident"},
            set(),
        ),
        (  # leaving as a verb: German, Spanish, French
            "Desactiva en Okta a todos los que se fueron este mes según Workday",
            {"workday.list_terminations", "okta.get_user", "okta.deactivate_user"},
            {("workday.list_terminations", "okta.get_user")}
            | {("okta.get_user", "okta.deactivate_user")},
        ),
        (  # swapped letters in short words: "lsit" (a stopword that is a verb), "lgo"
            "summarize the lgo of job 44 in acme/x, then lsit open incidnets in pagerduty",
            {"pagerduty.list_incidents", "gitlab.get_job_log", "openai.chat_completion"},
            {("gitlab.get_job_log", "openai.chat_completion")}
            | {("openai.chat_completion", "pagerduty.list_incidents")},
        ),
        (  # "before X, Y": Y first; "as soon as" is a condition
            "as soon as JUN-5 is done, before you deactivate t@acme.com in okta, tell #it",
            {"jira.get_issue", "okta.get_user", "okta.deactivate_user", "slack.post_message"},
            {
                ("jira.get_issue", "slack.post_message"),
                ("slack.post_message", "okta.deactivate_user"),
            }
            | {("okta.get_user", "okta.deactivate_user")},
        ),
        (  # "while" runs beside; a pronoun inside the message text names no step
            "while you open the jira ticket, also post in #ops that we're on it",
            {"jira.create_issue", "slack.post_message"},
            set(),
        ),
        (  # a log sent into a new record makes it; "once they're all created" is a then
            "drop the log of job 9 in acme/x into a new gitlab issue, tell #x once they're done",
            {"gitlab.get_job_log", "gitlab.create_issue", "slack.post_message"},
            {("gitlab.get_job_log", "gitlab.create_issue")}
            | {("gitlab.create_issue", "slack.post_message")},
        ),
        (  # "there" after a room was made is the room
            "create a webex room War and post the open PD incidents there",
            {"webex.create_room", "pagerduty.list_incidents", "webex.create_message"},
            {("webex.create_room", "webex.create_message")}
            | {("pagerduty.list_incidents", "webex.create_message")},
        ),
        (  # the service something is sent to takes the verb; the other is read
            "send every open PD incident to servicenow as an incident",
            {"pagerduty.list_incidents", "servicenow.create_incident"},
            {("pagerduty.list_incidents", "servicenow.create_incident")},
        ),
        (  # bare account services listed for new hires are accounts there
            "for new joiners: okta + gitlab",
            {"workday.list_hires", "okta.create_user", "gitlab.create_user"},
            {
                ("workday.list_hires", "okta.create_user"),
                ("workday.list_hires", "gitlab.create_user"),
            },
        ),
        (  # German "wenn nicht" is "otherwise"
            "Prüfe, ob jemand Bereitschaft hat, und wenn nicht, schreib an boss@acme.com",
            {"pagerduty.list_oncalls", "smtp.send_email"},
            {("pagerduty.list_oncalls", "smtp.send_email")},
        ),
        (  # a pronoun in a parallel clause does not name the other branch's step
            "ack PD incident PAB1234 and at the same time tell #ops we're on it",
            {"pagerduty.update_incident", "slack.post_message"},
            set(),
        ),
        (  # "a summary" sent of a list is written by the LLM; of each item, it is the item
            "post a summary of the open PD incidents to #ops",
            {"pagerduty.list_incidents", "openai.chat_completion", "slack.post_message"},
            {("pagerduty.list_incidents", "openai.chat_completion")}
            | {("openai.chat_completion", "slack.post_message")},
        ),
        (
            "for each open PD incident, post a summary to #ops",
            {"pagerduty.list_incidents", "slack.post_message"},
            {("pagerduty.list_incidents", "slack.post_message")},
        ),
        (  # "someone joins" is one new hire: the worker is read
            "hit the webhook when someone joins",
            {"workday.get_worker", "webhook.send"},
            {("workday.get_worker", "webhook.send")},
        ),
        (  # an arrow before a destination sends there; a colon after a webhook starts text
            "SNOW INC0055555 summary -> #ops",
            {"servicenow.get_incident", "openai.chat_completion", "slack.post_message"},
            {("servicenow.get_incident", "openai.chat_completion")}
            | {("openai.chat_completion", "slack.post_message")},
        ),
        ("webhook: deploy done", {"webhook.send"}, set()),
        (  # a room listed for a new hire is joined
            "new hire 31337: okta, webex room Onboarding",
            {"workday.get_worker", "okta.create_user", "webex.create_room"}
            | {"webex.add_membership"},
            {
                ("workday.get_worker", "okta.create_user"),
                ("webex.create_room", "webex.add_membership"),
            }
            | {("workday.get_worker", "webex.add_membership")},
        ),
        (  # a refusal word that names something ("the backup job", "the order service",
            # "the password reset flow") is no request to do it
            "when pipeline 7 in acme/ops fails, tell #ops the password reset flow broke",
            {"gitlab.get_pipeline", "slack.post_message"},
            {("gitlab.get_pipeline", "slack.post_message")},
        ),
        (
            "let #ops know the nightly backup service is down",
            {"slack.post_message"},
            set(),
        ),
        ("page the on-call: the order service is down", {"pagerduty.create_incident"}, set()),
        (  # "send me the open incidents" reads them; an emailed "that ..." is the text
            "send me the open incidents from pagerduty and email a@acme.com that the build is red",
            {"pagerduty.list_incidents", "smtp.send_email"},
            {("pagerduty.list_incidents", "smtp.send_email")},
        ),
        (  # a German compound ending in a noun; French "événement"; "<service>'s status"
            "schick eine Willkommensmail an a@acme.com",
            {"smtp.send_email"},
            set(),
        ),
        ("envoie un événement PagerDuty", {"pagerduty.send_event"}, set()),
        (
            "check alertmanager's status and post the version to #sre",
            {"alertmanager.get_status", "slack.post_message"},
            {("alertmanager.get_status", "slack.post_message")},
        ),
        (  # a purpose after a record is its title ("para revisar las alertas")
            "para cada persona de guardia, crea una tarea en Jira para revisar las alertas",
            {"pagerduty.list_oncalls", "jira.create_issue"},
            {("pagerduty.list_oncalls", "jira.create_issue")},
        ),
        (  # people named by a pronoun are made as accounts; "in it" after a room is the room
            "When Workday hires someone, create them in GitLab",
            {"workday.get_worker", "gitlab.create_user"},
            {("workday.get_worker", "gitlab.create_user")},
        ),
        (
            "make a webex space 'Vendor X' and post the servicenow incident INC0031337 in it",
            {"webex.create_room", "servicenow.get_incident", "webex.create_message"},
            {("webex.create_room", "webex.create_message")}
            | {("servicenow.get_incident", "webex.create_message")},
        ),
        (  # a statement about a service after "that" is the message's text
            "email team@acme.com that okta is slow",
            {"smtp.send_email"},
            set(),
        ),
        (  # "an account with access to a project" is made, then added; "escalate by
            # creating X": the gerund is the action
            "onboard worker 77001: GitLab account with access to acme/core",
            {"workday.get_worker", "gitlab.create_user", "gitlab.add_project_member"},
            {("workday.get_worker", "gitlab.create_user")}
            | {("gitlab.create_user", "gitlab.add_project_member")},
        ),
        (
            "for each open PD incident, escalate by creating a ServiceNow incident",
            {"pagerduty.list_incidents", "servicenow.create_incident"},
            {("pagerduty.list_incidents", "servicenow.create_incident")},
        ),
        (  # a parallel message carries no other branch's id lookup
            "in parallel: deactivate jo@acme.com in okta, tell #sec that jo left",
            {"okta.get_user", "okta.deactivate_user", "slack.post_message"},
            {("okta.get_user", "okta.deactivate_user")},
        ),
    ],
)
def test_rules_of_batch_f25(text: str, actions: set[str], edges: set[tuple[str, str]]) -> None:
    plan = plan_workflow(text)
    assert _valid(plan)
    assert set(actions_of(plan.spec)) == actions
    assert closure(edges) == closure(edges_of(plan.spec))


def test_a_secret_named_with_its_owner_is_still_refused_when_sent() -> None:
    plan = plan_workflow("post which account the webex bot token belongs to in #ops")
    assert plan.spec is None and plan.refusal and "token" in plan.refusal
    plan = plan_workflow("send an sms to the on-call")  # no SMS provider has actions
    assert plan.spec is None and plan.refusal and "SMS" in plan.refusal
    texts = ["forward every slack message to an external address", "silence everything"]
    texts += ["post an incident on our status page"]  # Statuspage has no actions
    texts += ["curl api and post the result to #ops", "email the ssh key to a@b.co"]
    texts += ["make a group in okta called Contractors"]  # no action makes an Okta group
    for text in texts:
        plan = plan_workflow(text)  # out of the company; a bulk silence with no time
        assert plan.spec is None and plan.refusal


def test_fuzzy_matching_corrects_typos_not_other_words() -> None:
    from analytics.intelligence.morphology import typo_of

    typos = [("sned", "send"), ("trigr", "trigger"), ("piplne", "pipeline"), ("usr", "user")]
    typos += [("offenen", "offen"), ("muestrame", "muestra")]  # inflected forms
    others = [("active", "desactive"), ("invoice", "invite"), ("title", "teile")]
    others += [("staging", "saying"), ("deployed", "employe")]
    assert all(typo_of(w, t) for w, t in typos)
    assert not any(typo_of(w, t) for w, t in others)
    plan = plan_workflow("look up bo@acme.com in okta and tell #it if he is active")
    assert set(actions_of(plan.spec)) == {"okta.get_user", "slack.post_message"}
