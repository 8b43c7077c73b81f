"""Compile layer: parameters resolved, windows made concrete, conditions compiled once."""
