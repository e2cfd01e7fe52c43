"""The one YAML loader: limits, located errors, did-you-mean, non-finite numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from integrations.yamlconfig import (
    ConfigError,
    ConfigModel,
    YamlLimits,
    load_model,
    parse_yaml,
    read_yaml,
)


class Rule(ConfigModel):
    name: str
    threshold: float = Field(0.5, ge=0, le=1)
    labels: dict[str, str] = Field(default_factory=dict)


class Channel(ConfigModel):
    type: str
    url: str | None = None


class Config(ConfigModel):
    rules: list[Rule] = Field(default_factory=list)
    channels: dict[str, Channel] = Field(default_factory=dict)
    owner: str | int | None = None


def problems(text: str, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_model(Config, "alerting.yaml", text=text, **kw)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def test_valid_file_loads() -> None:
    cfg = load_model(Config, "a.yaml", text="rules:\n  - name: r1\n    threshold: 0.9\n")
    assert cfg.rules[0].threshold == 0.9


def test_errors_carry_file_line_and_field() -> None:
    text = "rules:\n  - name: r1\n  - name: r2\n    threshold: 7\n"
    assert problems(text) == [
        "alerting.yaml:4: rules.1.threshold: Input should be less than or equal to 1"
    ]


def test_unknown_key_suggests_the_close_one() -> None:
    text = "rules:\n  - name: r1\n    treshold: 0.2\n"
    (only,) = problems(text)
    assert only.startswith("alerting.yaml:3: rules.0: unknown field 'treshold'")
    assert "did you mean 'threshold'" in only


def test_unknown_key_inside_a_dict_of_models() -> None:
    (only,) = problems("channels:\n  ops:\n    type: webhook\n    uri: http://x\n")
    assert only == "alerting.yaml:4: channels.ops: unknown field 'uri' (did you mean 'url'?)"


def test_keys_that_look_like_pydantic_tags_are_located() -> None:
    # `x-owner` and `a[b]` once crashed a location filter that dropped such parts.
    out = problems("x-owner: me\nowner: [1]\n'a[b]': 2\n")
    assert any(p.startswith("alerting.yaml:1: unknown field 'x-owner'") for p in out)
    assert any(p.startswith("alerting.yaml:3: unknown field 'a[b]'") for p in out)
    assert any(p.startswith("alerting.yaml:2: owner:") for p in out)


def test_missing_field_is_named() -> None:
    assert problems("rules:\n  - threshold: 0.2\n") == [
        "alerting.yaml:2: rules.0: missing required field 'name'"
    ]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN"])
def test_non_finite_numbers_are_refused(value: str) -> None:
    (only,) = problems(f"rules:\n  - name: r\n    threshold: {value}\n")
    assert "alerting.yaml:3: rules.0.threshold: must be a finite number" in only


def test_alias_bomb_is_refused_before_it_expands() -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    (only,) = problems("\n".join(lines) + "\n")
    assert "YAML nodes" in only


def test_deep_nesting_is_refused() -> None:
    (only,) = problems("a: " + "[" * 200 + "]" * 200 + "\n")
    assert "nests deeper than 64 levels" in only


def test_invalid_utf8_names_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(b"rules: []\nowner: \xff\xfe\n", source="x.yaml")
    assert str(info.value) == "x.yaml:2: not valid UTF-8 (byte 17)"


def test_oversize_file_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * 2_000_000 + b"\n")
    with pytest.raises(ConfigError, match="larger than 1000000 bytes"):
        read_yaml(big)
    with pytest.raises(ConfigError, match="larger than 10 bytes"):
        parse_yaml("rules: []\n" * 3, limits=YamlLimits(max_bytes=10))


def test_huge_integer_is_a_clear_error() -> None:
    (only,) = problems("owner: " + "9" * 100_000 + "\n")
    assert only.startswith("alerting.yaml: a value cannot be read")


def test_duplicate_keys_and_syntax_errors() -> None:
    assert problems("owner: a\nowner: b\n") == ["alerting.yaml:2: owner: duplicate key 'owner'"]
    (only,) = problems("rules: [\n")
    assert only.startswith("alerting.yaml:2: invalid YAML")


def test_top_level_must_be_a_mapping_and_empty_is_explicit() -> None:
    assert problems("- 1\n") == ["alerting.yaml:1: expected a mapping at the top, got list"]
    assert problems("") == ["alerting.yaml:1: the file is empty"]
    assert load_model(Config, "e.yaml", text="", empty={}).rules == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file"):
        load_model(Config, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not a file"):
        load_model(Config, tmp_path)


def test_python_tags_are_not_constructed() -> None:
    (only,) = problems("owner: !!python/object/apply:os.system ['true']\n")
    assert "invalid YAML" in only
