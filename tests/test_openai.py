"""OpenAIClient against the running sandbox, and against an OpenAI-compatible server at an
arbitrary base path (``http://llm.local/openai/v1``) on MockTransport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.errors import (
    AuthenticationError,
    MalformedResponseError,
    NotFoundError,
    ServerError,
)
from integrations.openai import (
    ChatCompletionParams,
    ChatMessage,
    JsonSchemaFormat,
    ListModelsParams,
    OpenAIClient,
    schema_problems,
)
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from tests.helpers import FAST, ClientFactory, collection, mock_client, set_faults

TRIAGE = JsonSchemaFormat(
    name="incident_triage",
    json_schema={
        "type": "object",
        "properties": {
            "severity": {"type": "string", "enum": ["sev1", "sev2", "sev3"]},
            "services": {"type": "array", "items": {"type": "string"}},
            "customer_impact": {"type": "boolean"},
            "affected_users": {"type": "integer"},
            "owner": {
                "type": "object",
                "properties": {"team": {"type": "string"}, "email": {"type": "string"}},
                "required": ["team", "email"],
                "additionalProperties": False,
            },
        },
        "required": ["severity", "services", "customer_impact", "affected_users", "owner"],
        "additionalProperties": False,
    },
)


def ask(text: str, **kwargs: Any) -> ChatCompletionParams:
    return ChatCompletionParams(messages=[ChatMessage(role="user", content=text)], **kwargs)


# --- sandbox ------------------------------------------------------------------------------------


async def test_list_models(make_client: ClientFactory) -> None:
    async with (oa := make_client(OpenAIClient)):
        models = await oa.list_models(ListModelsParams())
    assert "gpt-4o-mini" in {m.id for m in models.data}
    assert all(m.object == "model" for m in models.data)


async def test_chat_completion_text(sb: SandboxServer, make_client: ClientFactory) -> None:
    params = ChatCompletionParams(
        model="gpt-4o",
        messages=[
            ChatMessage(role="system", content="Summarise incidents."),
            ChatMessage(role="user", content="okta login failures since 09:00 UTC"),
        ],
        temperature=0.0,
    )
    async with (oa := make_client(OpenAIClient)):
        done = await oa.chat_completion(params)
    assert done.text == "Sandbox reply (6 words): okta login failures since 09:00 UTC"
    assert done.parsed is None and done.model == "gpt-4o"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    [stored] = collection(sb, "openai", "completions").values()
    assert stored["id"] == done.id and stored["usage"] == done.usage.model_dump()


async def test_chat_completion_token_cap(make_client: ClientFactory) -> None:
    async with (oa := make_client(OpenAIClient)):
        done = await oa.chat_completion(ask("one two three four five six", max_completion_tokens=3))
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 3


async def test_chat_completion_structured(make_client: ClientFactory) -> None:
    async with (oa := make_client(OpenAIClient)):
        done = await oa.chat_completion(ask("Disk full on db-1", response_schema=TRIAGE))
    parsed = done.parsed
    assert isinstance(parsed, dict)
    assert parsed["severity"] == "sev1"  # first enum value
    assert isinstance(parsed["services"], list) and isinstance(parsed["services"][0], str)
    assert parsed["customer_impact"] is True and isinstance(parsed["affected_users"], int)
    assert set(parsed["owner"]) == {"team", "email"}
    assert json.loads(done.text or "") == parsed


async def test_unknown_model_is_not_found(make_client: ClientFactory) -> None:
    async with (oa := make_client(OpenAIClient)):
        with pytest.raises(NotFoundError, match="does not exist"):
            await oa.chat_completion(ask("hi", model="gpt-nope"))


async def test_bad_token_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (oa := make_client(OpenAIClient, wrong_secret="sk-wrong")):
        with pytest.raises(AuthenticationError, match="Incorrect API key"):
            await oa.list_models(ListModelsParams())
        with pytest.raises(AuthenticationError):
            await oa.chat_completion(ask("hi"))
    assert collection(sb, "openai", "completions") == {}


async def test_lost_response_is_retried_as_idempotent(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """chat_completion is marked idempotent: a lost answer is retried (each retry costs a
    completion's tokens, nothing else), here until the attempts run out."""
    set_faults(sb, "openai", lost_after_commit=1.0)
    async with (oa := make_client(OpenAIClient)):
        with pytest.raises(ServerError):
            await oa.chat_completion(ask("hi"))
    assert len(collection(sb, "openai", "completions")) == FAST.max_attempts


async def test_garbled_answer_is_malformed_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    set_faults(sb, "openai", malformed_rate=1.0)
    async with (oa := make_client(OpenAIClient)):
        with pytest.raises(MalformedResponseError, match="invalid JSON"):
            await oa.list_models(ListModelsParams())


# --- any OpenAI-compatible base URL (MockTransport) --------------------------------------------


def compatible(handler: Any) -> OpenAIClient:
    return mock_client(
        OpenAIClient,
        handler,
        base_url="http://llm.local/openai/v1",
        credentials=Credentials(token=SecretStr("sk-local")),
    )


def reply(content: str | None, refusal: str | None = None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "llama-3-8b",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": "stop",
                }
            ],
        },
    )


async def test_compatible_server_at_any_base_path() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": "llama-3-8b"}]})
        return reply('{"answer": "yes"}')

    schema = JsonSchemaFormat(name="yn", json_schema={"type": "object", "required": ["answer"]})
    async with (oa := compatible(handler)):
        models = await oa.list_models(ListModelsParams())
        done = await oa.chat_completion(
            ask(
                "ok?",
                model="llama-3-8b",
                max_tokens=5,
                max_completion_tokens=5,
                response_schema=schema,
            )
        )
    assert [m.id for m in models.data] == ["llama-3-8b"]
    assert done.parsed == {"answer": "yes"} and done.usage is None
    assert [str(r.url) for r in seen] == [
        "http://llm.local/openai/v1/models",
        "http://llm.local/openai/v1/chat/completions",
    ]
    assert seen[1].headers["Authorization"] == "Bearer sk-local"
    body = json.loads(seen[1].content)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "yn", "schema": schema.json_schema, "strict": True},
    }
    assert body["max_tokens"] == 5 and body["max_completion_tokens"] == 5
    assert body["messages"] == [{"role": "user", "content": "ok?"}]
    assert "temperature" not in body


@pytest.mark.parametrize(
    ("content", "refusal", "match"),
    [
        ("Sure! Here is the JSON: {", None, "not JSON"),
        ('{"severity": "sev1"}', None, "missing required key 'services'"),
        (
            '{"severity": "sev9", "services": [], "customer_impact": true, "affected_users": 1,'
            ' "owner": {"team": "db", "email": "x"}}',
            None,
            "not in enum",
        ),
        (
            '{"severity": "sev1", "services": [1], "customer_impact": "yes", '
            '"affected_users": true, "owner": {"team": "db"}}',
            None,
            "expected string",
        ),
        ('["not", "an", "object"]', None, "expected object"),
        (None, "I can't help with that.", "refused"),
    ],
)
async def test_structured_output_must_match(
    content: str | None, refusal: str | None, match: str
) -> None:
    async with (oa := compatible(lambda r: reply(content, refusal))):
        with pytest.raises(MalformedResponseError, match=match):
            await oa.chat_completion(ask("triage", response_schema=TRIAGE))


async def test_html_or_shapeless_answer_is_malformed() -> None:
    html = httpx.Response(
        200, text="<html>502 Bad Gateway</html>", headers={"content-type": "text/html"}
    )
    async with (oa := compatible(lambda r: html)):
        with pytest.raises(MalformedResponseError, match="HTML"):
            await oa.chat_completion(ask("hi"))
    no_choices = httpx.Response(200, json={"id": "x", "created": 1, "model": "m", "choices": []})
    async with (oa := compatible(lambda r: no_choices)):
        with pytest.raises(MalformedResponseError, match="choices"):
            await oa.chat_completion(ask("hi"))


def test_schema_problems() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "x": {"type": ["number", "null"]}},
    }
    assert schema_problems({"n": 1, "x": None}, schema) == []
    assert schema_problems({"n": 1, "x": 2.5}, schema) == []
    assert schema_problems({"n": True}, schema) == ["$.n: expected integer, got bool"]
    assert schema_problems({"n": 1.5}, schema) == ["$.n: expected integer, got float"]


def test_params_validate() -> None:
    with pytest.raises(ValidationError):
        ChatCompletionParams(messages=[])
    with pytest.raises(ValidationError):
        ask("hi", temperature=3)
    with pytest.raises(ValidationError):
        JsonSchemaFormat(name="has spaces", json_schema={})


def test_action_flags() -> None:
    chat = get_action("openai", "chat_completion")
    assert chat.idempotent and not chat.read_only
    assert get_action("openai", "list_models").read_only
