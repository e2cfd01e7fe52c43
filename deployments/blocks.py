"""Register Junction's credential block types (:mod:`integrations.credential_blocks`) with
the Prefect server in use, so the UI offers them under Blocks; ``make serve`` runs it.

    python -m deployments.blocks          # against PREFECT_API_URL
"""

from __future__ import annotations


def register_blocks(api_url: str | None = None) -> list[str]:
    """Register every credential block type (idempotent: a registered type is updated).

    Args:
        api_url: The Prefect API (default: ``PREFECT_API_URL`` of this process).

    Returns:
        The block type slugs registered.
    """
    # Function-level: Prefect's import costs seconds, and `make stop` (deployments.serve)
    # imports this module without registering anything.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from integrations.credential_blocks import BLOCK_TYPES

    updates = {PREFECT_API_URL: api_url} if api_url else {}
    with temporary_settings(updates=updates):
        for block_type in BLOCK_TYPES.values():
            block_type.register_type_and_schema(_sync=True)  # type: ignore[call-arg]
    return [t.get_block_type_slug() for t in BLOCK_TYPES.values()]


if __name__ == "__main__":
    print("registered block types:", ", ".join(register_blocks()))
