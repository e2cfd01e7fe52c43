"""Alerting: rules, alert lifecycle, escalation, silences, SLA burn rates, delivery.

Plain Python, testable without Prefect. :mod:`junction.alerting.model` holds the types
the parts share.
"""
