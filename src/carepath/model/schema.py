"""The JSON Schema editors use, generated from the models (never written by hand)."""

from __future__ import annotations

import json

from carepath.model.pathway import Pathway

SCHEMA_ID = "https://carepath.invalid/schemas/pathway.schema.json"


def pathway_schema() -> dict:
    schema = Pathway.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "carepath pathway"
    return schema


def pathway_schema_text() -> str:
    return json.dumps(pathway_schema(), indent=2, sort_keys=True) + "\n"
