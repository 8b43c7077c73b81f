"""Scenario tests for pathways: YAML files of events, an instant and the expected plan."""
