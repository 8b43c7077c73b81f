"""Tools for pathway authors and reviewers: diagrams, semantic diffs, FHIR export.

Read-only views over a checked and compiled pathway; nothing here decides clinical
behaviour and nothing here imports Prefect.
"""
