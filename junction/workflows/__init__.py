"""Cross-service workflows: the YAML spec, its validation, templating and dependency map.

Modules (the spec side; the runner's modules are ``runner``, ``routing``, ``cache``,
and ``batching``):

- :mod:`junction.workflows.spec`: the pydantic models of a spec (``WorkflowSpec``,
  ``Step``, ``Parameter``...), their semantics, parameter resolution and idempotency keys.
- :mod:`junction.workflows.capabilities`: ``notify.send``, ``ticket.create``,
  ``incident.create``, ``llm.complete`` and their providers; ``candidates(step)``.
- :mod:`junction.workflows.templating`: sandboxed jinja2 (``{{ params.x }}``,
  ``{{ steps.id.output.field }}``), static reference extraction.
- :mod:`junction.workflows.validate`: every check before anything runs, errors as
  ``file:line: step 'x': message``; ``load_workflow(path_or_builtin_name)``. The checks
  live in ``check_schema``, ``check_steps``, ``check_templates`` and ``check_graph``.
- :mod:`junction.workflows.bounds`: what a template render may cost (sizes, loops, time).
- :mod:`junction.workflows.depmap`: workflows -> steps -> services and co-failures;
  ``service_dependencies()`` for alert suppression; Mermaid and DOT export.

Built-in specs live in ``junction/workflows/specs/*.yaml`` (package data), found through
:mod:`junction.workflows.builtins`; the JSON Schema editors use is
``junction/workflows/workflow.schema.json`` (``junction workflow schema --write``).
"""
