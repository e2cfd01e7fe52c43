"""Contract: every OpenAI action, sent to Prism serving OpenAI's own OpenAPI spec, is
accepted; a request that breaks the spec is rejected.

Prism (OAS 3.1) drops the ``/v1`` server path, so the client's base URL is the Prism root.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import MalformedResponseError, UnprocessableEntityError
from integrations.openai import (
    ChatCompletionParams,
    ChatMessage,
    JsonSchemaFormat,
    ListModelsParams,
    OpenAIClient,
)
from junction.clients import get_client

pytestmark = pytest.mark.prism

ONCE = RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


def client(prism_servers: dict[str, str]) -> OpenAIClient:
    c = get_client(
        "openai",
        base_url=prism_servers["openai"],
        credentials=Credentials(token=SecretStr("sk-test")),
        retry=ONCE,
        breaker=CircuitBreaker("openai", failure_threshold=1000),
    )
    assert isinstance(c, OpenAIClient)
    return c


async def test_list_models_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        models = await c.list_models(ListModelsParams())
    assert models.object == "list"
    assert models.data and models.data[0].id


async def test_chat_completion_accepted(prism_servers: dict[str, str]) -> None:
    params = ChatCompletionParams(
        model="gpt-4o-mini",
        messages=[
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="user", content="Summarise the outage."),
        ],
        temperature=0.2,
        max_tokens=100,
        max_completion_tokens=100,
        seed=7,
        user="junction-test",
    )
    async with (c := client(prism_servers)):
        completion = await c.chat_completion(params)
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None


async def test_structured_chat_completion_request_accepted(prism_servers: dict[str, str]) -> None:
    """The json_schema request is valid per the spec (Prism answers 200); its example
    reply is the placeholder ``"string"`` with a refusal, so parsing it must fail."""
    params = ChatCompletionParams(
        messages=[ChatMessage(role="user", content="Classify: disk full")],
        response_schema=JsonSchemaFormat(
            name="triage",
            json_schema={
                "type": "object",
                "properties": {"severity": {"type": "string", "enum": ["low", "high"]}},
                "required": ["severity"],
                "additionalProperties": False,
            },
        ),
    )
    async with (c := client(prism_servers)):
        with pytest.raises(MalformedResponseError, match="structured"):
            await c.chat_completion(params)
        assert c.last_status == 200


async def test_malformed_request_rejected(prism_servers: dict[str, str]) -> None:
    """``messages`` is required: Prism answers 422, proving these tests can fail."""
    async with (c := client(prism_servers)):
        with pytest.raises(UnprocessableEntityError):
            await c.request("POST", "/chat/completions", action="raw", json={"model": "gpt-4o"})


async def test_health_check_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        result = await c.health_check()
    assert result.ok, result.error
