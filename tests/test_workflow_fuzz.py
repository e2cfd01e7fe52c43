"""The validator never raises: seeded mutations of the built-in specs (text and data) give a
result with errors or a valid spec, never an exception (issue: 45 crashes in 12,300
mutated specs, at unhashable ids, keys like ``x-owner``, 100,000-digit integers)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import yaml

from junction.workflows.builtins import builtin_specs
from junction.workflows.validate import ValidationResult, validate_text

MUTATIONS = 300
"""Per run; a few seconds in all (the validator takes ~15 ms on a built-in spec)."""

NASTY_TEXT = [
    "[g]",
    "{",
    "}",
    "x-owner: me",
    "a[b]: 1",
    ".inf",
    "-.inf",
    ".nan",
    "1e-300",
    "1e400",
    "9" * 5000,
    "!!python/object/apply:os.system ['true']",
    "&a",
    "*a",
    "*nope",
    "{{",
    "}}",
    "{{ steps.x.output }}",
    "{% for a in params %}{{ a }}{% endfor %}",
    "- ",
    ": ",
    "\t",
    "'",
    '"',
    "? ",
    "---",
    "%YAML 1.1",
    "<<: *a",
    "\ufeff",
]

NASTY_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    10**30,
    float("inf"),
    float("nan"),
    1e-300,
    "",
    "x" * 300,
    ["g"],
    [["g"]],
    {"g": 1},
    {},
    [],
    "{{ params.nope }}",
    "{{ steps.hire.output.nope[0] }}",
    "{{ 'x' * 100000 }}",
    "{{ ((10**64)**64)**64 }}",
    "{% for a in 'xxxxxxxx' %}{% for b in 'xxxx' %}{{ b }}{% endfor %}{% endfor %}",
    "{{ x.__class__ }}",
    "none",
    "5",
    "'{}'",
    "steps.hire.output",
    "30s",
    "5m",
    "-1s",
    "1e309",
]


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.extend(_paths(value, (*prefix, i)))
    return out


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return data


def mutate_data(rng: random.Random, text: str) -> str:
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):  # an earlier text mutation broke the YAML
        return mutate_text(rng, text)
    path = rng.choice(_paths(data))
    roll = rng.random()
    if roll < 0.6 or not path:
        data = _set(data, path, rng.choice(NASTY_VALUES))
    elif roll < 0.8 and isinstance(path[-1], str):  # rename a key
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        parent[rng.choice(["x-owner", "a[b]", "wth", "id", "uses", "with", "steps"])] = parent.pop(
            path[-1]
        )
    else:  # duplicate a subtree elsewhere
        other = rng.choice(_paths(data))
        node = data
        for key in path:
            node = node[key]
        data = _set(data, other, node) if other and other[: len(path)] != path else data
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def mutate_text(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    i = rng.randrange(len(lines))
    roll = rng.random()
    if roll < 0.25:
        del lines[i]
    elif roll < 0.45:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif roll < 0.6:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        pos = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + rng.choice(NASTY_TEXT) + lines[i][pos:]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", [11, 2026])
def test_mutated_builtin_specs_never_crash_the_validator(seed: int) -> None:
    rng = random.Random(seed)
    texts = [p.read_text("utf-8") for p in builtin_specs().values()]
    crashes: list[str] = []
    for n in range(MUTATIONS // 2):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            text = mutate_data(rng, text) if rng.random() < 0.5 else mutate_text(rng, text)
        try:
            result = validate_text(text, source=f"mutant-{seed}-{n}.yaml")
        except Exception as exc:  # the point of the test: nothing escapes
            crashes.append(f"mutant {n}: {type(exc).__name__}: {exc}"[:300])
            continue
        assert isinstance(result, ValidationResult)
        assert result.ok or result.errors, "an invalid result must say why"
    assert crashes == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: t\nsteps:\n  - id: [g]\n    uses: okta.get_user\n", "id: Input should be"),
        ("name: t\nx-owner: me\nsteps: [{id: a, uses: okta.get_user}]\n", "'x-owner'"),
        ("name: t\na[b]: 1\nsteps: [{id: a, uses: okta.get_user}]\n", "'a[b]'"),
        ("name: t\nsteps: [{id: a, uses: okta.get_user, retries: " + "9" * 100_000 + "}]\n", ""),
        (
            "name: t\nsteps: [{id: a, uses: okta.get_user, with: {login: '{{ "
            + "9" * 5000
            + " }}'}}]\n",
            "",
        ),
    ],
)
def test_the_crashes_the_issue_found_are_errors(text: str, fragment: str) -> None:
    result = validate_text(text, source="t.yaml")
    assert not result.ok and result.errors
    assert any(fragment in e.message for e in result.errors), [str(e) for e in result.errors]
