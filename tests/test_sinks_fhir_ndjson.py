"""fhir/<Type>.ndjson + fhir/manifest.json: the bundle's resources as a Bulk Data export,
valid FHIR R4 line by line, written to a local folder or an fsspec URL."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.communicationrequest import CommunicationRequest
from fhir.resources.R4B.task import Task

from carepath.sinks.base import OutputKind, Sink
from carepath.sinks.fhir import FhirBundle
from carepath.sinks.fhir_ndjson import FhirNdjson
from sink_cohort import AS_OF, Planned, contains_name, planned_cohort

MODELS = {"CarePlan": CarePlan, "Task": Task, "CommunicationRequest": CommunicationRequest}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Planned:
    return planned_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def exported(cohort: Planned, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ndjson")
    assert FhirNdjson(out, cohort.compiled, AS_OF).write(iter(cohort.outputs)) == len(cohort.outputs)
    return out


def lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_is_a_snapshot_sink_of_everything(cohort: Planned, tmp_path: Path) -> None:
    sink = FhirNdjson(tmp_path, cohort.compiled, AS_OF)
    assert isinstance(sink, Sink)
    assert sink.kinds == frozenset(OutputKind)
    assert not sink.present()


def test_one_valid_resource_per_line_per_type(exported: Path) -> None:
    for kind, model in MODELS.items():
        rows = lines(exported / "fhir" / f"{kind}.ndjson")
        assert rows, kind
        for row in rows:
            assert row["resourceType"] == kind
            model.model_validate(row)


def test_same_resources_as_the_bundle(cohort: Planned, exported: Path, tmp_path: Path) -> None:
    bundle, _ = FhirBundle(tmp_path, cohort.compiled, AS_OF).bundle(cohort.outputs)
    in_bundle = sorted((e["resource"] for e in bundle["entry"]), key=lambda r: r["id"])
    in_ndjson = sorted((r for kind in MODELS for r in lines(exported / "fhir" / f"{kind}.ndjson")),
                       key=lambda r: r["id"])
    assert in_ndjson == in_bundle


def test_manifest_lists_each_file_with_its_count(exported: Path) -> None:
    manifest = json.loads((exported / "fhir" / "manifest.json").read_text())
    assert manifest["transactionTime"] == AS_OF.isoformat()
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert [o["type"] for o in manifest["output"]] == list(MODELS)
    for item in manifest["output"]:
        path = exported / "fhir" / f"{item['type']}.ndjson"
        assert item["url"] == f"{item['type']}.ndjson"  # beside the manifest: the folder may move
        assert item["count"] == len(lines(path))


def test_no_names_and_byte_identical_when_rewritten(cohort: Planned, exported: Path, tmp_path: Path) -> None:
    FhirNdjson(tmp_path, cohort.compiled, AS_OF).write(iter(cohort.outputs))
    for name in [*(f"{k}.ndjson" for k in MODELS), "manifest.json"]:
        data = (tmp_path / "fhir" / name).read_text()
        assert not contains_name(data, cohort.names), name
        assert data == (exported / "fhir" / name).read_text()  # whatever the folder
    assert not list((tmp_path / "fhir").glob(".*.tmp"))


def test_written_to_an_fsspec_memory_url(cohort: Planned, exported: Path) -> None:
    url = "memory://carepath-ndjson-test/out"
    sink = FhirNdjson(url, cohort.compiled, AS_OF)
    sink.write(iter(cohort.outputs))
    fs = fsspec.filesystem("memory")
    assert sink.present()
    for kind in MODELS:
        assert fs.cat_file(f"/carepath-ndjson-test/out/fhir/{kind}.ndjson") == \
            (exported / "fhir" / f"{kind}.ndjson").read_bytes()
    manifest = json.loads(fs.cat_file("/carepath-ndjson-test/out/fhir/manifest.json"))
    assert manifest["output"][1]["url"] == f"{url}/fhir/Task.ndjson"
    # no temporaries left beside the documents
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("/carepath-ndjson-test/out/fhir", detail=False)) == \
        sorted([*(f"{k}.ndjson" for k in MODELS), "manifest.json"])
    fs.rm("/carepath-ndjson-test", recursive=True)


def test_a_failed_export_leaves_the_previous_one(cohort: Planned, exported: Path, tmp_path: Path) -> None:
    FhirNdjson(tmp_path, cohort.compiled, AS_OF).write(iter(cohort.outputs))
    before = {p.name: p.read_bytes() for p in (tmp_path / "fhir").iterdir()}
    broken = [o for o in cohort.outputs if o.kind is not OutputKind.PATIENT]  # tasks without their CarePlan
    with pytest.raises(ValueError, match="care-plan"):
        FhirNdjson(tmp_path, cohort.compiled, AS_OF).write(iter(broken))
    assert {p.name: p.read_bytes() for p in (tmp_path / "fhir").iterdir()} == before


def test_the_run_writes_bundle_and_export_in_one_pass(cohort: Planned, exported: Path, tmp_path: Path) -> None:
    from carepath.sinks.fhir_ndjson import FhirExport

    alone = tmp_path / "bundle-alone"
    FhirBundle(alone, cohort.compiled, AS_OF).write(iter(cohort.outputs))
    sink = FhirExport(tmp_path / "both", cohort.compiled, AS_OF)
    assert sink.name == "fhir/bundle.json" and not sink.present()
    assert sink.write(iter(cohort.outputs)) == len(cohort.outputs)
    assert sink.present()
    both = tmp_path / "both" / "fhir"
    assert (both / "bundle.json").read_bytes() == (alone / "fhir" / "bundle.json").read_bytes()
    for kind in MODELS:
        assert (both / f"{kind}.ndjson").read_bytes() == (exported / "fhir" / f"{kind}.ndjson").read_bytes()
    assert (both / "manifest.json").read_bytes() == (exported / "fhir" / "manifest.json").read_bytes()
    # A failure midway leaves every file as it was, and no temporaries.
    before = {p.name: p.read_bytes() for p in both.iterdir()}
    broken = [o for o in cohort.outputs if o.kind is not OutputKind.PATIENT]
    with pytest.raises(ValueError, match="care-plan"):
        sink.write(iter(broken))
    assert {p.name: p.read_bytes() for p in both.iterdir()} == before
