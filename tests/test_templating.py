"""The sandboxed templating of workflow specs: rendering, native types, static references,
and every escape attempt failing with a clear error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from junction.workflows import bounds
from junction.workflows.templating import (
    TemplateError,
    check_syntax,
    evaluate,
    references,
    render,
    step_references,
    time_budget,
)

CTX: dict[str, Any] = {
    "params": {
        "email": "ada@example.com",
        "count": 3,
        "ratio": 0.5,
        "on": True,
        "tags": ["a", "b"],
    },
    "steps": {
        "hire": {
            "status": "ok",
            "output": {
                "worker": {"id": "W1", "name": "Ada Lovelace"},
                "jobs": [{"id": 7}, {"id": 8}],
            },
        }
    },
    "workflow": {"name": "demo"},
}


# --- rendering ------------------------------------------------------------------------------


def test_single_expression_keeps_native_type() -> None:
    assert render("{{ params.count }}", CTX) == 3
    assert render("  {{ params.ratio }} ", CTX) == 0.5
    assert render("{{ params.on }}", CTX) is True
    assert render("{{ params.tags }}", CTX) == ["a", "b"]
    assert render("{{ steps.hire.output.worker }}", CTX) == {"id": "W1", "name": "Ada Lovelace"}


def test_mixed_text_renders_a_string() -> None:
    assert render("n={{ params.count }}", CTX) == "n=3"
    assert render("{{ params.count }}{{ params.count }}", CTX) == "33"


def test_render_recurses_and_passes_non_strings() -> None:
    value = {"a": ["{{ steps.hire.output.worker.id }}", 5], "b": {"c": "x {{ params.email }}"}}
    assert render(value, CTX) == {"a": ["W1", 5], "b": {"c": "x ada@example.com"}}
    assert render(None, CTX) is None
    assert render("no template", CTX) == "no template"


def test_item_access_and_filters() -> None:
    assert render("{{ steps.hire.output.jobs[1].id }}", CTX) == 8
    assert render("{{ steps.hire.output['jobs'][0]['id'] }}", CTX) == 7
    assert render("{{ params.tags | join(',') | upper }}", CTX) == "A,B"
    assert render("{{ params.email | split('@') | first }}", CTX) == "ada"
    assert render("{{ steps.hire.output.jobs | map(attribute='id') | list }}", CTX) == [7, 8]
    assert render("{{ params.missing | default('x') }}", CTX) == "x"
    assert render("{% for t in params.tags %}[{{ t }}]{% endfor %}", CTX) == "[a][b]"
    assert render("{{ 'line1\nline2\nline3' | tail_lines(2) }}", CTX) == "line2\nline3"


def test_evaluate_conditions() -> None:
    assert evaluate("params.count > 2", CTX) is True
    assert evaluate("{{ params.count > 5 }}", CTX) is False
    assert evaluate("steps.hire.status == 'ok' and params.on", CTX) is True
    assert evaluate("steps.hire.output.jobs | length", CTX) == 2


def test_missing_data_is_an_error_not_empty() -> None:
    with pytest.raises(TemplateError, match="has no attribute 'nope'"):
        render("{{ params.nope }}", CTX)
    with pytest.raises(TemplateError, match="has no attribute 'nope'"):
        render("x {{ params.nope }} y", CTX)
    with pytest.raises(TemplateError):
        render("{{ steps.hire.output.jobs[5].id }}", CTX)
    with pytest.raises(TemplateError, match="undefined"):
        evaluate("nothing_here", CTX)


def test_syntax_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="syntax"):
        render("{{ params.email ", CTX)
    with pytest.raises(TemplateError, match="syntax"):
        check_syntax("params.count >", expression=True)


# --- the sandbox ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ ''.__class__ }}", "has no attribute '__class__'"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "calls not allowed"),
        ("{{ params.__class__ }}", "has no attribute '__class__'"),
        ("{{ params['__class__'] }}", "__class__"),
        ("{{ cycler.__init__.__globals__ }}", "has no attribute '__globals__'"),
        ("{{ joiner }}", "'joiner' is undefined"),
        ("{{ namespace }}", "'namespace' is undefined"),
        ("{{ lipsum }}", "'lipsum' is undefined"),
        ("{{ range(10) }}", "calls not allowed"),
        ("{{ params.email.upper() }}", "calls not allowed"),
        ("{{ params.items }}", "has no attribute 'items'"),
        ("{{ config }}", "'config' is undefined"),
        ("{{ self }}", "'self' is not available"),
        ("{{ self._TemplateReference__context }}", "'self' is not available"),
        ("{% include '/etc/passwd' %}", "include"),
        ("{% import 'x' as y %}", "import"),
        ("{% from 'x' import y %}", "fromimport"),
        ("{% extends 'base' %}", "extends"),
        ("{% macro m() %}x{% endmacro %}", "macro"),
        ("{% set x = 1 %}{{ x }}", "assign"),
        ("{% with a = 1 %}{{ a }}{% endwith %}", "with"),
        ("{{ params | attr('__class__') }}", "filter 'attr' not allowed"),
        ("{{ params.email | format('%s') }}", "filter 'format' not allowed"),
        ("{{ 'a' * 1000000 }}", "repetition too large"),
        ("{{ params.tags * 100000 }}", "repetition too large"),
        ("{{ 9 ** 9999 }}", "exponent too large"),
    ],
)
def test_escapes_fail_clearly(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render(template, CTX)


# --- resource bombs: refused before the work is done, within the step's time budget -------

BIG = {"params": {"s": "x" * 100_000, "lines": "x\n" * 50_000, "n": 5000, "tags": ["a"]}}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        # nested loops over a 100,000-character string: 10^10 iterations
        (
            "{% for a in params.s %}{% for b in params.s %}{{ b }}{% endfor %}{% endfor %}",
            "loops ran over 100000 iterations",
        ),
        ('{{ ([("x" * 100000)] * 100000) | join }}', "over 1000000 characters"),
        ('{{ "%999999999d" % 1 }}', "width '999999999' too large"),
        ('{{ "%.999999999f" % 1.5 }}', "too large"),
        ('{{ "%*d" % (999999999, 1) }}', "width '*' too large"),
        ('{{ params.s | replace("x", "x" * 100000) }}', "replace would produce"),
        ("{{ params.lines | indent(100000) }}", "indent would produce"),
        ("{{ params.s | indent(100000000) }}", "indent would produce"),
        ("{{ ((((10 ** 64) ** 64) ** 64) ** 64) }}", "integer over 10000 bits"),
        ("{{ ((10 ** 60) ** 45) * ((10 ** 60) ** 45) }}", "* would produce an integer over"),
        (
            "{{ params.s ~ params.s ~ params.s ~ params.s ~ params.s ~ params.s ~ params.s ~ "
            "params.s ~ params.s ~ params.s ~ params.s }}",
            "~ would produce",
        ),
        (
            "{{ params.s + params.s + params.s + params.s + params.s + params.s + params.s + "
            "params.s + params.s + params.s + params.s }}",
            "+ would produce",
        ),
        ('{{ params.tags | batch(100000000, "x") }}', "batch size"),
        ("{{ params.tags | tojson(indent=100000) }}", "tojson indent"),
        (
            "{{ [[params.s], [params.s], [params.s], [params.s], [params.s], [params.s], "
            "[params.s], [params.s], [params.s], [params.s], [params.s]] | sum(start=[]) }}",
            "sum would produce",
        ),
        ("{{ params.s | center(100000000) }}", "filter 'center' not allowed"),
        ("{{ params.s | format(1) }}", "filter 'format' not allowed"),
        ("{{ params.s * 20 }}", "repetition too large"),
    ],
)
def test_resource_bombs_fail_with_a_clear_error(template: str, message: str) -> None:
    with time_budget(5.0), pytest.raises(TemplateError, match=re.escape(message)):
        render(template, BIG)


def test_bombs_in_when_and_for_each_expressions_are_refused_too() -> None:
    with pytest.raises(TemplateError, match="repetition too large"):
        evaluate('["Engineering"] * 10 ** 9', BIG)
    with pytest.raises(TemplateError, match="integer over"):
        evaluate("((10 ** 64) ** 64) ** 64 > 1", BIG)


def test_a_render_stops_at_its_time_budget() -> None:
    """Each loop iteration checks the deadline: a budget already spent stops the loop."""
    with time_budget(0.0), pytest.raises(TemplateError, match="time budget"):
        render("{% for a in params.tags %}{{ a }}{% endfor %}", BIG)


def test_ordinary_templates_are_not_affected_by_the_bounds() -> None:
    ctx = {"params": {"tags": ["a", "b"], "n": 3, "s": "x" * 1000}}
    assert render("{{ params.tags | join(', ') }}", ctx) == "a, b"
    assert render("{% for t in params.tags %}[{{ t }}]{% endfor %}", ctx) == "[a][b]"
    assert render("{{ 'a' ~ params.n ~ 'b' }}", ctx) == "a3b"
    assert render("{{ '%05d' % params.n }}", ctx) == "00003"
    assert render("{{ params.tags * 2 }}", ctx) == ["a", "b", "a", "b"]
    assert render("{{ 2 ** 10 }}", ctx) == 1024
    assert len(render("{{ params.s | indent(4) }}", ctx)) == 1000
    assert len(render("{{ params.s * 100 }}", ctx)) == 100_000
    assert render("{{ [[1], [2]] | sum(start=[]) }}", ctx) == [1, 2]
    assert bounds.MAX_ITERATIONS >= 10_000


def test_escapes_fail_in_conditions_too() -> None:
    with pytest.raises(TemplateError, match="calls not allowed"):
        evaluate("''.__class__.__mro__[1].__subclasses__()", CTX)
    with pytest.raises(TemplateError, match="has no attribute '__globals__'"):
        evaluate("steps.__globals__", CTX)


def test_objects_in_the_data_expose_nothing() -> None:
    """Even a real object passed in by mistake shows no attributes to a template."""

    class Secretive:
        token = "s3cret"

    ctx = {"params": {"obj": Secretive()}}
    with pytest.raises(TemplateError, match="has no attribute 'token'"):
        render("{{ params.obj.token }}", ctx)


# --- static references ----------------------------------------------------------------------


def test_references_walk_getattr_and_getitem_chains() -> None:
    refs = references(
        "{{ steps.hire.output.worker.id }} {{ params.email | default(params.fallback) }} "
        "{{ steps.jobs.output['items'][0].name }}"
    )
    assert refs == {
        ("steps", "hire", "output", "worker", "id"),
        ("params", "email"),
        ("params", "fallback"),
        ("steps", "jobs", "output", "items", "0", "name"),
    }


def test_references_skip_loop_variables_and_cut_at_computed_keys() -> None:
    refs = references(
        "{% for j in steps.a.output %}{{ j.id }}{{ loop.index }}{% endfor %}"
        "{{ steps.b.output[params.key].x }}"
    )
    assert ("j", "id") not in refs
    assert ("steps", "a", "output") in refs
    assert ("params", "key") in refs
    # the known prefix before a computed key is kept, what follows it is not
    assert ("steps", "b", "output") in refs
    assert not any(len(r) > 3 and r[:2] == ("steps", "b") for r in refs)


def test_references_of_expressions_and_nested_values() -> None:
    assert references("steps.x.status == 'ok' or params.force", expression=True) == {
        ("steps", "x", "status"),
        ("params", "force"),
    }
    assert step_references(
        {"a": ["{{ steps.one.output }}", {"b": "{{ steps.two.output.c }}"}]}
    ) == {
        "one",
        "two",
    }
    assert step_references("{{ broken") == set()


@pytest.mark.parametrize(
    "source",
    ["{{ ''.__class__ }}", "{{ params.x.__class__ }}", "{{ (1).real }}", "{{ 'a'.upper }}"],
)
def test_attribute_escapes_are_rejected_statically(source: str) -> None:
    with pytest.raises(TemplateError):
        references(source)


def test_validate_rejects_an_escape_before_running(tmp_path: Path) -> None:
    from junction.workflows.validate import validate_text

    text = (
        "name: esc\nsteps:\n  - id: b\n    uses: jira.create_issue\n"
        "    with: {project_key: OPS, summary: \"{{ ''.__class__ }}\"}\n"
    )
    result = validate_text(text, source=str(tmp_path / "esc.yaml"))
    assert result.errors and "__class__" in result.errors[0].message
