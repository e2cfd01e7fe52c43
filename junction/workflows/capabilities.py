"""Capabilities: provider-neutral step targets (``notify.send``, ``ticket.create``...).

A capability step (``uses: notify.send``) takes the capability's generic inputs (a
pydantic model, e.g. :class:`NotifyInput`) and runs on one of several providers. The
verbs and their generic inputs are defined here (:data:`CAPABILITIES`); the providers are
catalog data: each ``provides:`` entry of ``integrations/catalog.yaml`` names the
integration's action and how generic inputs map to its inputs, and becomes a
:class:`Binding` here (so a new provider is a catalog edit, not a code change).

Candidates of a step (:func:`candidates`), in preference order:

- ``<integration>.<action>`` step: the action itself, then each ``fallback`` entry.
- capability step: the ``providers`` listed on the step, else every provider of the
  capability whose required inputs the step's ``with`` gives; then the ``fallback``
  entries not already listed. The runner may reorder them by recent health.

Public API: :data:`CAPABILITIES`, :class:`Capability`, :class:`Binding`,
:data:`TRANSFORMS`, :class:`Candidate`, :func:`get_capability`, :func:`candidates`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from integrations.actions import ActionSpec
from integrations.catalog import Provider, load_catalog
from integrations.errors import UnknownCapabilityError
from junction.clients import get_action

if TYPE_CHECKING:
    from junction.workflows.spec import Step

__all__ = [
    "CAPABILITIES",
    "TRANSFORMS",
    "Binding",
    "Candidate",
    "Capability",
    "IncidentInput",
    "LlmInput",
    "NotifyInput",
    "TicketInput",
    "candidates",
    "get_capability",
]


# --- generic inputs ---------------------------------------------------------------------------


class NotifyInput(BaseModel):
    """Inputs of ``notify.send``.

    Attributes:
        text: The message (markdown where the provider renders it).
        title: Subject line (email) or heading.
        channel: Room id (Webex), channel id or name (Slack).
        recipient_email: A person (Webex direct message, email).
        sender: Sender address (email).
        idempotency_key: Key of the message (email Message-ID dedupe).
    """

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    title: str | None = None
    channel: str | None = None
    recipient_email: str | None = None
    sender: str | None = None
    idempotency_key: str | None = None


class TicketInput(BaseModel):
    """Inputs of ``ticket.create``.

    Attributes:
        project: Jira project key, GitLab project id or path.
        title: Summary.
        description: Body text.
        labels: Labels.
        issue_type: Jira issue type.
        idempotency_key: Key that makes the create safe to retry.
    """

    model_config = ConfigDict(extra="forbid")

    project: str | None = None
    title: str = Field(min_length=1)
    description: str | None = None
    labels: list[str] = Field(default_factory=list)
    issue_type: str | None = None
    idempotency_key: str | None = None


class IncidentInput(BaseModel):
    """Inputs of ``incident.create``.

    Attributes:
        title: What is wrong.
        service: The provider's service id (PagerDuty service).
        urgency: ``high`` or ``low``.
        details: Body text.
        requester: Email of the user the incident is opened as (PagerDuty ``From``;
            default ``JUNCTION_PAGERDUTY_USERNAME``).
        idempotency_key: Deduplication key (PagerDuty ``incident_key``).
    """

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    service: str | None = None
    urgency: Literal["high", "low"] | None = None
    details: str | None = None
    requester: str | None = None
    idempotency_key: str | None = None


class LlmInput(BaseModel):
    """Inputs of ``llm.complete``.

    Attributes:
        prompt: The user message.
        system: The system message.
        model: Provider model name (provider default when absent).
        max_tokens: Output cap.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    system: str | None = None
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)


# --- bindings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    """How one provider serves a capability (built from its catalog ``provides`` entry).

    Attributes:
        integration: Catalog name.
        action: Action name.
        inputs: Action input field -> generic input name.
        list_inputs: Action fields that take a one-element list of the generic value.
        required: Generic inputs this provider cannot do without.
        transform: Builds extra action inputs from the generic ones (OpenAI messages).
    """

    integration: str
    action: str
    inputs: Mapping[str, str]
    list_inputs: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    transform: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None

    def map_inputs(self, generic: Mapping[str, Any]) -> dict[str, Any]:
        """The action's inputs from rendered generic inputs (``None`` values left out)."""
        out: dict[str, Any] = {}
        for target, source in self.inputs.items():
            value = generic.get(source)
            if value is None:
                continue
            out[target] = [value] if target in self.list_inputs else value
        if self.transform is not None:
            out.update(self.transform(generic))
        return out


def _chat_messages(generic: Mapping[str, Any]) -> dict[str, Any]:
    messages = []
    if generic.get("system"):
        messages.append({"role": "system", "content": generic["system"]})
    messages.append({"role": "user", "content": generic["prompt"]})
    return {"messages": messages}


TRANSFORMS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "chat_messages": _chat_messages,
}
"""Named transforms a catalog ``provides`` entry may ask for (``transform: chat_messages``)."""


def _binding(provider: Provider) -> Binding:
    provision = provider.provision
    transform = None
    if provision.transform is not None:
        if provision.transform not in TRANSFORMS:
            raise UnknownCapabilityError(
                f"catalog: {provider.integration} provides {provider.capability} with unknown "
                f"transform {provision.transform!r} (known: {', '.join(TRANSFORMS)})"
            )
        transform = TRANSFORMS[provision.transform]
    return Binding(
        provider.integration,
        provision.action,
        dict(provision.inputs),
        frozenset(provision.list_inputs),
        frozenset(provision.required),
        transform,
    )


@lru_cache(maxsize=64)
def _bindings(capability: str) -> tuple[Binding, ...]:
    return tuple(_binding(p) for p in load_catalog().providers(capability))


@dataclass(frozen=True)
class Capability:
    """A capability verb; its providers come from the catalog (``provides:`` entries).

    Attributes:
        name: ``<capability>.<verb>``.
        description: What it does.
        input: The generic input model.
        read_only: No side effect.
    """

    name: str
    description: str
    input: type[BaseModel]
    read_only: bool = False

    @property
    def bindings(self) -> tuple[Binding, ...]:
        """The providers, in preference order (the catalog's ``rank``, then catalog order).

        Raises:
            UnknownCapabilityError: No catalog entry provides the capability.
        """
        return _bindings(self.name)

    def provider_actions(self, integrations: list[str] | None = None) -> list[ActionSpec]:
        """The :class:`~integrations.actions.ActionSpec` of each provider (or of those named)."""
        names = integrations if integrations is not None else [b.integration for b in self.bindings]
        return [get_action(b.integration, b.action) for b in map(self.binding, names)]

    def binding(self, integration: str) -> Binding:
        """The binding of ``integration``.

        Raises:
            UnknownCapabilityError: The integration does not provide this capability.
        """
        for b in self.bindings:
            if b.integration == integration:
                return b
        known = ", ".join(b.integration for b in self.bindings)
        raise UnknownCapabilityError(
            f"{integration!r} does not provide {self.name} (providers: {known})"
        )


CAPABILITIES: dict[str, Capability] = {
    c.name: c
    for c in (
        Capability(
            name="notify.send",
            description="Send a message to a room, channel or person.",
            input=NotifyInput,
        ),
        Capability(
            name="ticket.create",
            description="Open a ticket (issue) in a tracker.",
            input=TicketInput,
        ),
        Capability(
            name="incident.create",
            description="Open an incident that pages the on-call responder.",
            input=IncidentInput,
        ),
        Capability(
            name="llm.complete",
            description="Ask a language model (one prompt, one answer).",
            input=LlmInput,
            # not read-only: the runner must not cache a model's (varying) answer blindly
        ),
    )
}
"""Every capability verb a workflow step may use, by name: its generic inputs. Which
integrations provide it, and how, is the catalog's ``provides:`` data (one registry)."""


def get_capability(name: str) -> Capability:
    """The capability ``<capability>.<verb>``.

    Raises:
        UnknownCapabilityError: No such capability (the message lists the known ones).
    """
    try:
        return CAPABILITIES[name]
    except KeyError:
        known = ", ".join(sorted(CAPABILITIES))
        raise UnknownCapabilityError(f"unknown capability {name!r} (known: {known})") from None


@dataclass(frozen=True)
class Candidate:
    """One way to run a step: an integration's action and its (template) inputs.

    Attributes:
        integration: Catalog name.
        action: Action name.
        with_: The step's (or the fallback's) ``with``, unrendered.
        binding: For capability steps: maps rendered generic inputs to the action's.
        fallback: Came from the step's ``fallback`` list.
    """

    integration: str
    action: str
    with_: Mapping[str, Any] = field(default_factory=dict)
    binding: Binding | None = None
    fallback: bool = False

    @property
    def uses(self) -> str:
        """``<integration>.<action>``."""
        return f"{self.integration}.{self.action}"

    def action_input(self, rendered: Mapping[str, Any]) -> dict[str, Any]:
        """The action's input dict from the rendered ``with`` (mapped for capabilities)."""
        return self.binding.map_inputs(rendered) if self.binding else dict(rendered)


def _serves(binding: Binding, given: set[str]) -> bool:
    return binding.required <= given


def candidates(step: Step) -> list[Candidate]:
    """The ways to run ``step``, in preference order (see the module docstring).

    Raises:
        UnknownCapabilityError: A capability or provider the table does not have.
    """
    target = step.target()
    out: list[Candidate] = []
    if target.kind == "action":
        out.append(Candidate(target.left, target.right, step.with_))
        for fb in step.fallback:
            integration, _, act = fb.uses.partition(".")
            out.append(
                Candidate(
                    integration,
                    act or target.right,
                    fb.with_ if fb.with_ is not None else step.with_,
                    fallback=True,
                )
            )
        return out
    cap = get_capability(target.text)
    given = set(step.with_)
    names = list(step.providers) or [b.integration for b in cap.bindings if _serves(b, given)]
    for name in names:
        b = cap.binding(name)
        out.append(Candidate(b.integration, b.action, step.with_, binding=b))
    for fb in step.fallback:
        name = fb.uses.partition(".")[0]
        if name in names and fb.with_ is None:
            continue
        b = cap.binding(name)
        out.append(
            Candidate(
                b.integration,
                b.action,
                fb.with_ if fb.with_ is not None else step.with_,
                binding=b,
                fallback=True,
            )
        )
    return out
