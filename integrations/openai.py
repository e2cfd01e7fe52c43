"""OpenAI (and any OpenAI-compatible server): chat completions and the model list.

Follows the OpenAI API reference, https://platform.openai.com/docs/api-reference/chat/create
and https://platform.openai.com/docs/api-reference/models/list (spec: openai/openai-openapi).
The base URL includes the API's base path (``https://api.openai.com/v1``, or e.g.
``http://llm.local/openai/v1`` for a compatible gateway), so the client calls
``/chat/completions`` and ``/models`` relative to it and never names a host.

Structured output uses ``response_format: {"type": "json_schema", ...}``; the client then
parses the reply and checks it against the schema's ``type``/``required``/``properties``
(lightly: no full JSON Schema validation), raising :class:`MalformedResponseError` when
the model answered something else.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import MalformedResponseError

# --- inputs -------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    """One message of the conversation sent to the model.

    Attributes:
        role: ``system``, ``developer``, ``user`` or ``assistant``.
        content: The text.
        name: Optional participant name.
    """

    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None


class JsonSchemaFormat(BaseModel):
    """A JSON schema the reply must follow (OpenAI structured outputs).

    Attributes:
        name: Name of the format (``[a-zA-Z0-9_-]``, at most 64 characters).
        json_schema: The JSON schema (sent as ``schema``).
        strict: Ask the server to enforce the schema exactly.
        description: What the format is for (helps the model).
    """

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    json_schema: dict[str, Any] = Field(alias="schema")
    strict: bool = True
    description: str | None = None


class ChatCompletionParams(BaseModel):
    """Input of :meth:`OpenAIClient.chat_completion`.

    Attributes:
        model: Model id (``gpt-4o-mini``; any id the server lists).
        messages: The conversation, at least one message.
        temperature: Sampling temperature, 0 to 2.
        max_tokens: Legacy cap on generated tokens (still used by compatible servers).
        max_completion_tokens: Cap on generated tokens (current OpenAI name).
        response_schema: Ask for structured output following this JSON schema.
        seed: Best-effort deterministic sampling.
        user: End-user id, for the vendor's abuse monitoring.
    """

    model: str = "gpt-4o-mini"
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_schema: JsonSchemaFormat | None = None
    seed: int | None = None
    user: str | None = None

    def body(self) -> dict[str, Any]:
        """The request body of ``POST /chat/completions``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump(exclude_none=True) for m in self.messages],
        }
        for key in ("temperature", "max_tokens", "max_completion_tokens", "seed", "user"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.response_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": self.response_schema.model_dump(by_alias=True, exclude_none=True),
            }
        return body


class ListModelsParams(BaseModel):
    """Input of :meth:`OpenAIClient.list_models` (no parameters)."""


# --- outputs ------------------------------------------------------------------------------


class AssistantMessage(BaseModel):
    """The model's reply message."""

    model_config = ConfigDict(extra="allow")

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None


class ChatChoice(BaseModel):
    """One generated choice."""

    model_config = ConfigDict(extra="allow")

    index: int = 0
    message: AssistantMessage
    finish_reason: str | None = None


class CompletionUsage(BaseModel):
    """Token accounting of one completion."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A chat completion (``object: chat.completion``).

    Attributes:
        parsed: Set by Junction (not a vendor field) when a ``response_schema`` was
            requested: the reply parsed as JSON and checked against the schema.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice] = Field(min_length=1)
    usage: CompletionUsage | None = None
    parsed: Any = None

    @property
    def text(self) -> str | None:
        """The first choice's text."""
        return self.choices[0].message.content


class OpenAIModel(BaseModel):
    """One model the server offers."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: str = "model"
    created: int | None = None
    owned_by: str | None = None


class ModelList(BaseModel):
    """The model list (``object: list``)."""

    model_config = ConfigDict(extra="allow")

    object: str = "list"
    data: list[OpenAIModel]


# --- light JSON-schema check ---------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_problems(
    value: Any, schema: dict[str, Any], path: str = "$", depth: int = 0
) -> list[str]:
    """Check ``value`` against the common parts of a JSON schema.

    Only ``type``, ``required``, ``properties``, ``items`` and ``enum`` are checked (that
    is what a structured-output schema relies on); anything else is accepted.

    Args:
        value: The parsed JSON value.
        schema: The JSON schema.
        path: JSON path of ``value``, for messages.
        depth: Recursion depth (checking stops at 8 levels).

    Returns:
        Human-readable problems; empty when the value fits.
    """
    if depth > 8 or not isinstance(schema, dict):
        return []
    problems: list[str] = []
    wanted = schema.get("type")
    types = [wanted] if isinstance(wanted, str) else list(wanted or [])
    if types:
        ok = False
        for name in types:
            py = _JSON_TYPES.get(name)
            if py is None:
                ok = True
                break
            # bool is an int in Python but not a JSON number
            is_bool_as_number = isinstance(value, bool) and name in ("integer", "number")
            if isinstance(value, py) and not is_bool_as_number:
                ok = True
                break
        if not ok:
            return [f"{path}: expected {'/'.join(types)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in enum")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}: missing required key {key!r}")
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                problems.extend(schema_problems(value[key], sub, f"{path}.{key}", depth + 1))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value[:100]):
            problems.extend(schema_problems(item, schema["items"], f"{path}[{i}]", depth + 1))
    return problems


# --- the client ---------------------------------------------------------------------------


class OpenAIClient(IntegrationClient):
    """Typed client of the OpenAI API or any OpenAI-compatible server."""

    service = "openai"

    @action(read_only=False, idempotent=True)
    async def chat_completion(self, params: ChatCompletionParams) -> ChatCompletion:
        """Generate a chat completion, optionally as structured JSON.

        Not read-only (it spends tokens and is not cacheable as such), but safe to retry:
        a completion changes no state at the vendor, so a retry after a lost response
        costs only tokens, never a duplicate side effect.

        Args:
            params: Model, messages, sampling options and an optional JSON schema.

        Returns:
            The completion; ``parsed`` holds the structured object when requested.

        Raises:
            MalformedResponseError: The reply is not a completion, or the structured
                output is not JSON or misses what the schema requires.
        """
        completion = await self.request(
            "POST",
            "/chat/completions",
            action="chat_completion",
            model=ChatCompletion,
            json=params.body(),
            idempotent=True,
        )
        if params.response_schema is not None:
            completion.parsed = self._parse_structured(completion, params.response_schema)
        return completion

    def _parse_structured(self, completion: ChatCompletion, fmt: JsonSchemaFormat) -> Any:
        message = completion.choices[0].message
        if message.refusal:
            raise MalformedResponseError(
                f"model refused the structured request: {message.refusal[:200]}",
                service=self.name,
                action="chat_completion",
            )
        content = message.content or ""
        try:
            value = json.loads(content)
        except ValueError:
            raise MalformedResponseError(
                f"structured output {fmt.name!r} is not JSON (starts {content[:60]!r})",
                service=self.name,
                action="chat_completion",
            ) from None
        problems = schema_problems(value, fmt.json_schema)
        if problems:
            raise MalformedResponseError(
                f"structured output {fmt.name!r} does not match its schema: "
                + "; ".join(problems[:5]),
                service=self.name,
                action="chat_completion",
            )
        return value

    @action(read_only=True)
    async def list_models(self, params: ListModelsParams) -> ModelList:
        """List the models the server offers.

        Args:
            params: No parameters.

        Returns:
            The model list.
        """
        return await self.request("GET", "/models", action="list_models", model=ModelList)
