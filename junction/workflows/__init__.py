"""Cross-service workflows: the YAML spec, its validation, templating, the runner and the
dependency map.

The spec side:

- :mod:`junction.workflows.spec`: the pydantic models of a spec (``WorkflowSpec``,
  ``Step``, ``Parameter``...), their semantics, parameter resolution and idempotency keys.
- :mod:`junction.workflows.capabilities`: the verbs ``notify.send``, ``ticket.create``,
  ``incident.create``, ``llm.complete`` and their generic inputs; the providers come from
  the catalog's ``provides:`` entries; ``candidates(step)``.
- :mod:`junction.workflows.templating`: sandboxed jinja2 (``{{ params.x }}``,
  ``{{ steps.id.output.field }}``), static reference extraction;
  :mod:`junction.workflows.bounds`: what a render may cost (sizes, loops, integers, time).
- :mod:`junction.workflows.validate`: every check before anything runs, errors as
  ``file:line: step 'x': message``; ``load_workflow(path_or_builtin_name)``. The checks:
  ``check_schema``, ``check_steps``, ``check_templates``, ``check_graph`` (with
  ``problems`` and ``reftypes``).
- :mod:`junction.workflows.builtins`: the built-in specs (``junction/workflows/specs``,
  package data), the one way to find them.

The run side: :mod:`junction.workflows.runner` (the DAG of one run),
:mod:`~junction.workflows.runtime` (what runs share), :mod:`~junction.workflows.outcomes`,
:mod:`~junction.workflows.failures`, :mod:`~junction.workflows.items` (``for_each``),
:mod:`~junction.workflows.journal` (unkeyed side effects), ``routing``, ``cache``,
``batching``; and :mod:`junction.workflows.depmap` (workflows -> steps -> services and
co-failures, ``service_dependencies()`` for alert suppression, Mermaid and DOT).

The JSON Schema editors use is ``junction/workflows/workflow.schema.json``
(``junction workflow schema --write``).
"""
