"""carepath: clinical care pathways as code."""

__version__ = "0.1.0"
