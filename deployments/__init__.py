"""Deploying Junction to Prefect: ``prefect.yaml`` helpers (see :mod:`deployments.local`)."""
