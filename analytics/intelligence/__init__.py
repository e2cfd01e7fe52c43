"""Workflow intelligence: plain English to a validated workflow spec (an offline planner,
or an LLM when one is configured), the analysis of a spec, and the learned success model.
"""
