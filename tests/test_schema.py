"""The committed JSON Schema is the one the models generate, and it accepts our pathways."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from carepath.model.schema import pathway_schema_text
from carepath.source.loader import load_source


def test_committed_schema_is_current(root: Path) -> None:
    committed = (root / "schemas" / "pathway.schema.json").read_text()
    assert committed == pathway_schema_text(), (
        "schemas/pathway.schema.json is stale: run `.venv/bin/carepath schema > schemas/pathway.schema.json`"
    )


def test_schema_accepts_reference_and_rejects_a_typo(root: Path) -> None:
    schema = json.loads((root / "schemas" / "pathway.schema.json").read_text())
    data = load_source(root / "pathways" / "ketamine-iv.yaml").data
    jsonschema.validate(data, schema)
    data = dict(data)
    data["titel"] = "typo"
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    assert any("titel" in e.message for e in errors)
