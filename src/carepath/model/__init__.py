"""Model layer: the pathway language as frozen, strict pydantic models."""

from carepath.model.pathway import Pathway

__all__ = ["Pathway"]
