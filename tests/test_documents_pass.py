"""The export's whole-cohort documents are written in one pass over the ledger
(`export.export_documents`; the sweep's worklist by `emission.write_documents`, from the
stored worklist rows): the same bytes as each document written on its own from the
ledger's outputs, only the stale ones rewritten, none changed by a pass that fails."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import fsspec
import pytest

from carepath.orchestrator import emission, export, sequence
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.fhir import NAMESPACE, uuid5_text
from carepath.sinks.ledger import Ledger
from carepath.sinks.outbox import LettersJsonl
from carepath.sinks.tabular import jsonl_line

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = str(ROOT / "pathways" / "ketamine-iv.yaml")
DEMO = ROOT / "examples" / "demo"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")
DOCUMENTS = ("tasks.jsonl", "tasks.csv", "worklist.html", "fhir/bundle.json", "fhir/Task.0001.ndjson",
             "fhir/CommunicationRequest.0001.ndjson", "fhir/CarePlan.0001.ndjson", "fhir/manifest.json",
             "letters.jsonl")


def write_all(spec: RunSpec, ledger: Ledger) -> dict[str, int | None]:
    """What `carepath run --export --bundle` writes of the documents: the worklist, then the export."""
    from carepath.sinks.storage import storage_for

    written = emission.write_documents(spec, ledger)
    written.update(export.export_documents(spec.compiled, ledger, storage_for(spec.documents), spec.as_of,
                                           bundle=True, run=spec.run))
    return written


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> RunSpec:
    """The demo cohort (40 patients) swept once; its letters partly sent."""
    out = tmp_path_factory.mktemp("swept")
    spec = RunSpec.resolve(PATHWAY, out, AS_OF, "sweep-1", pdf=False)
    sequence.sweep(spec, DEMO / "patients.jsonl", DEMO / "events.jsonl", export=True, bundle=True)
    return spec


def files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in DOCUMENTS}


def test_one_pass_writes_what_each_document_writes_alone(swept: RunSpec, tmp_path: Path) -> None:
    from carepath.sinks.fhir import FhirBundle
    from carepath.sinks.fhir_ndjson import FhirNdjson
    from carepath.sinks.tabular import TasksCsv, TasksJsonl

    ledger = Ledger(swept.ledger_url)
    try:
        alone = [*emission.document_sinks(swept.compiled, tmp_path, swept.as_of), TasksJsonl(tmp_path),
                 TasksCsv(tmp_path, swept.compiled), FhirBundle(tmp_path, swept.compiled, swept.as_of)]
        for sink in alone:
            sink.write(ledger.current(swept.compiled.id, sink.kinds))
        LettersJsonl(tmp_path).write(ledger.letters_with_sends(swept.compiled.id))
        FhirNdjson(tmp_path / "whole", swept.compiled, swept.as_of).write(ledger.current(swept.compiled.id))
    finally:
        ledger.close()
    together = files(swept.out)
    assert {n: (tmp_path / n).read_bytes() for n in DOCUMENTS if ".ndjson" not in n and "manifest" not in n} == \
        {n: data for n, data in together.items() if ".ndjson" not in n and "manifest" not in n}
    for kind in ("CarePlan", "Task", "CommunicationRequest"):  # one part each at this size: the whole file
        assert together[f"fhir/{kind}.0001.ndjson"] == (tmp_path / "whole" / "fhir" / f"{kind}.ndjson").read_bytes()
    sent = [json.loads(line) for line in together["letters.jsonl"].splitlines()]
    assert any(letter["status"] == "sent" for letter in sent)  # the pass joins the sends too
    assert together["tasks.jsonl"].count(b"\n") > 100


def test_every_document_of_a_sweep_can_be_fed_in_one_pass(swept: RunSpec, tmp_path: Path) -> None:
    from carepath.sinks.documents import DocumentSink
    from carepath.sinks.fhir_ndjson import FhirParts

    sinks = [*emission.document_sinks(swept.compiled, tmp_path, swept.as_of), LettersJsonl(tmp_path),
             FhirParts(tmp_path, swept.compiled, swept.as_of)]
    assert all(isinstance(sink, DocumentSink) for sink in sinks)


def test_a_removed_document_is_rewritten_alone_and_the_same(swept: RunSpec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ledger = Ledger(swept.ledger_url)
    try:
        spec = replace(swept, out=out)
        write_all(spec, ledger)
        before = {name: (out / name).stat().st_mtime_ns for name in DOCUMENTS}
        content = files(out)
        (out / "tasks.csv").unlink()
        written = write_all(spec, ledger)
    finally:
        ledger.close()
    assert [name for name, count in written.items() if count is not None] == ["tasks.csv"]
    assert files(out) == content
    assert {n: (out / n).stat().st_mtime_ns for n in DOCUMENTS if n != "tasks.csv"} == \
        {n: t for n, t in before.items() if n != "tasks.csv"}


def test_a_pass_that_fails_midway_changes_no_document(swept: RunSpec, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    ledger = Ledger(swept.ledger_url)
    try:
        write_all(replace(swept, out=out), ledger)
        content = files(out)
        later = replace(swept, out=out, as_of=swept.as_of + timedelta(hours=1), run="sweep-2")
        rows = Ledger.document_rows

        def broken(self: Ledger, *args: object):
            for n, row in enumerate(rows(self, *args)):
                if n == 300:
                    raise OSError("the database went away")
                yield row

        monkeypatch.setattr(Ledger, "document_rows", broken)
        with pytest.raises(OSError, match="went away"):
            write_all(later, ledger)
        # The worklist is not part of the pass (it comes from the stored worklist rows): it
        # was written for the later as-of before the export's pass failed.
        after = files(out)
        assert after["worklist.html"] != content["worklist.html"]
        assert {n: b for n, b in after.items() if n != "worklist.html"} == \
            {n: b for n, b in content.items() if n != "worklist.html"}
        assert not [p for p in out.rglob("*.tmp")]
        monkeypatch.undo()
        # Nothing was marked as written: the next export rewrites every document that shows
        # the later as-of; the task lists and letters.jsonl, which do not, were current.
        written = write_all(later, ledger)
        assert {name for name, count in written.items() if count is None} == {
            "tasks.jsonl", "tasks.csv", "letters.jsonl", "worklist.html"}
        assert files(out)["tasks.jsonl"] == content["tasks.jsonl"]
        assert files(out)["worklist.html"] == after["worklist.html"]
    finally:
        ledger.close()


def test_documents_on_a_shared_store_are_the_same_bytes(swept: RunSpec, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url = "memory://carepath-documents-pass"
    fs = fsspec.filesystem("memory")
    ledger = Ledger(swept.ledger_url)
    try:  # the run's documents location (CAREPATH_DOCUMENTS_URL when it was resolved)
        write_all(replace(swept, out=tmp_path, documents_url=url), ledger)
        shared = {name: fs.cat_file(f"/carepath-documents-pass/{name}") for name in DOCUMENTS}
    finally:
        ledger.close()
        if fs.exists("/carepath-documents-pass"):
            fs.rm("/carepath-documents-pass", recursive=True)
    local = files(swept.out)
    manifest = json.loads(shared.pop("fhir/manifest.json"))
    assert shared == {name: data for name, data in local.items() if name != "fhir/manifest.json"}
    assert [o["url"] for o in manifest["output"]] == [f"{url}/fhir/{t}.0001.ndjson"
                                                      for t in ("CarePlan", "Task", "CommunicationRequest")]


@pytest.mark.parametrize("text", ["plain", "é ñ 漢字 🙂", "line\nbreak\ttab", "quote \" back \\ slash",
                                  "\u2028\u2029 separators", "\x00\x01\x1f\x7f controls", "</script>"])
def test_a_task_line_is_what_json_writes(text: str) -> None:
    record = {"patient": "p-1", "id": "t-1", "title": text, "out_of_window": False, "due": None, "held": [text]}
    expected = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    assert jsonl_line(record) == expected


def test_a_task_line_with_a_number_is_what_json_writes() -> None:
    record = {"patient": "p-1", "id": "t-1", "score": 1e16, "ratio": 0.1, "count": 3}
    assert jsonl_line(record) == (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def test_fhir_ids_are_uuid5() -> None:
    for name in ("ketamine-iv/careplan-p-001", "ketamine-iv/t-" + "a" * 60, "x/é 漢字"):
        assert uuid5_text(NAMESPACE.bytes, name) == str(uuid.uuid5(NAMESPACE, name))
