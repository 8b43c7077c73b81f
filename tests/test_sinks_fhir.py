"""fhir/bundle.json: a valid FHIR R4 collection a downstream system can load."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from carepath.sinks.base import OutputKind, Sink
from carepath.sinks.fhir import NAMESPACE, FhirBundle
from sink_cohort import AS_OF, Planned, contains_name, planned_cohort, with_body


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Planned:
    return planned_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def written(cohort: Planned, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fhir")
    FhirBundle(out, cohort.compiled, AS_OF).write(iter(cohort.outputs))
    path = out / "fhir" / "bundle.json"
    return path, json.loads(path.read_text(encoding="utf-8"))


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def by_output_id(bundle: dict) -> dict[str, dict]:
    found = {}
    for entry in bundle["entry"]:
        (identifier,) = entry["resource"]["identifier"]
        assert identifier["system"] == "urn:carepath:output"
        found[identifier["value"]] = entry["resource"]
    return found


def test_is_a_snapshot_sink_of_everything(tmp_path: Path, cohort: Planned) -> None:
    sink = FhirBundle(tmp_path, cohort.compiled, AS_OF)
    assert isinstance(sink, Sink)
    assert sink.kinds == frozenset(OutputKind)
    assert sink.write(iter(cohort.outputs)) == len(cohort.outputs)
    assert (tmp_path / "fhir" / "bundle.json").is_file()


def test_bundle_validates_as_fhir_r4(written: tuple[Path, dict]) -> None:
    path, data = written
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection"
    assert {e.resource.get_resource_type() for e in bundle.entry} == {"CarePlan", "Task", "CommunicationRequest"}


# Required bindings fhir.resources does not enforce (it checks shape, not codes); from the
# R4 specification's value sets.
REQUIRED_CODES = {
    ("Task", "status"): {"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
                         "in-progress", "on-hold", "failed", "completed", "entered-in-error"},
    ("Task", "intent"): {"unknown", "proposal", "plan", "order", "original-order", "reflex-order",
                         "filler-order", "instance-order", "option"},
    ("Task", "priority"): {"routine", "urgent", "asap", "stat"},
    ("CarePlan", "status"): {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"},
    ("CarePlan", "intent"): {"proposal", "plan", "order", "option"},
    ("CommunicationRequest", "status"): {"draft", "active", "on-hold", "revoked", "completed",
                                         "entered-in-error", "unknown"},
}


def test_codes_are_from_the_required_value_sets(written: tuple[Path, dict]) -> None:
    _, bundle = written
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for (kind, field), allowed in REQUIRED_CODES.items():
            if resource["resourceType"] == kind:
                assert resource[field] in allowed, (kind, field, resource[field])


def test_one_resource_per_output(written: tuple[Path, dict], cohort: Planned) -> None:
    _, bundle = written
    counts = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    assert counts == {"CarePlan": len(cohort.of_kind(OutputKind.PATIENT)),
                      "Task": len(cohort.of_kind(OutputKind.TASK)),
                      "CommunicationRequest": len(cohort.of_kind(OutputKind.LETTER))}
    assert counts["CarePlan"] == 7 and counts["Task"] == 20  # see test_sinks_tabular: 11 before DOMAIN 11
    assert set(by_output_id(bundle)) == {o.id for o in cohort.outputs}


def test_ids_are_deterministic_uuids_and_every_reference_resolves(written: tuple[Path, dict]) -> None:
    _, bundle = written
    urls = set()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        assert uuid.UUID(resource["id"]).version == 5
        (identifier,) = resource["identifier"]
        assert resource["id"] == str(uuid.uuid5(NAMESPACE, f"ketamine-iv/{identifier['value']}"))
        urls.add(entry["fullUrl"])
    assert len(urls) == len(bundle["entry"])
    assert uuid.UUID(bundle["id"]).version == 5 and bundle["timestamp"] == AS_OF.isoformat()
    internal = [r["reference"] for res in resources(bundle, "Task") + resources(bundle, "CommunicationRequest")
                for r in res["basedOn"]]
    internal += [a["reference"]["reference"] for plan in resources(bundle, "CarePlan") for a in plan.get("activity", [])]
    assert internal and all(ref in urls for ref in internal)


def test_care_plans_follow_the_patients(written: tuple[Path, dict], cohort: Planned) -> None:
    _, bundle = written
    resources_by_id = by_output_id(bundle)
    expected_status = {"active": "active", "pending_eligibility": "on-hold", "blocked": "on-hold",
                       "discharged": "completed"}
    for plan in cohort.plans:
        care_plan = resources_by_id[f"careplan-{plan.patient}"]
        assert care_plan["status"] == expected_status[plan.status]
        assert care_plan["intent"] == "plan"
        assert care_plan["category"] == [{"text": plan.stage}]
        assert care_plan["subject"]["reference"] == f"Patient/{plan.patient}"
        assert care_plan["instantiatesCanonical"] == ["urn:carepath:pathway:ketamine-iv|1.0.0"]
        assert "ketamine-iv 1.0.0" in care_plan["title"]
        activity = [a["reference"]["reference"] for a in care_plan.get("activity", [])]
        own = [f"urn:uuid:{resources_by_id[x.id]['id']}" for x in (*plan.tasks, *plan.letters)]
        assert sorted(activity) == sorted(own) and len(activity) == len(set(activity))
        if plan.holds:
            assert any("holds: " + ", ".join(plan.holds) in n["text"] for n in care_plan["note"])


def test_tasks_map_status_priority_window_and_provenance(written: tuple[Path, dict], cohort: Planned) -> None:
    _, bundle = written
    resources_by_id = by_output_id(bundle)
    seen = set()
    for plan in cohort.plans:
        care_plan_url = f"urn:uuid:{resources_by_id[f'careplan-{plan.patient}']['id']}"
        for task in plan.tasks:
            resource = resources_by_id[task.id]
            expected = {"overdue": "ready", "done": "completed", "cancelled": "cancelled",
                        "open": "ready" if task.earliest <= AS_OF else "requested"}[task.status]
            assert resource["status"] == expected
            seen.add((task.status, resource["status"]))
            assert ("businessStatus" in resource) == (task.status == "overdue")
            if task.status == "overdue":
                assert resource["businessStatus"] == {"text": "overdue"}
            assert resource["intent"] == "order"
            assert resource["priority"] == {"routine": "routine", "high": "urgent", "urgent": "urgent"}[task.priority]
            assert resource["meta"]["tag"] == [{"system": "urn:carepath:priority", "code": task.priority}]
            assert resource["for"]["reference"] == f"Patient/{plan.patient}"
            assert resource["code"] == {"text": task.step} and resource["description"] == task.title
            assert resource["performerType"] == [{"text": task.role}]
            assert resource["basedOn"] == [{"reference": care_plan_url}]
            period = resource["executionPeriod"]
            assert datetime.fromisoformat(period["start"]) == task.earliest
            assert datetime.fromisoformat(period["end"]) == task.due
            assert resource["reasonCode"]["text"] == f"{task.source} (event {task.trigger})"
    assert {("open", "requested"), ("open", "ready"), ("overdue", "ready"), ("done", "completed"),
            ("cancelled", "cancelled")} <= seen


def test_letters_name_the_template_never_the_text(written: tuple[Path, dict], cohort: Planned) -> None:
    path, bundle = written
    resources_by_id = by_output_id(bundle)
    assert {o.body["status"] for o in cohort.of_kind(OutputKind.LETTER)} >= {"due", "expired"}
    for output in cohort.of_kind(OutputKind.LETTER):
        request = resources_by_id[output.id]
        assert request["status"] == ("revoked" if output.body.get("status") in ("expired", "withdrawn") else "active")
        assert datetime.fromisoformat(request["occurrenceDateTime"]) == datetime.fromisoformat(output.body["send_at"])
        assert request["subject"]["reference"] == f"Patient/{output.patient}"
        (payload,) = request["payload"]
        assert payload == {"contentString": f"Letter {output.body['letter']} (template {output.body['template']})"}
    text = path.read_text(encoding="utf-8")
    assert contains_name(text, cohort.names) == []
    assert "Dear" not in text and "@example.org" not in text


def test_deterministic_and_independent_of_input_order(tmp_path: Path, cohort: Planned) -> None:
    a, b, c = (FhirBundle(tmp_path / n, cohort.compiled, AS_OF) for n in "abc")
    a.write(iter(cohort.outputs))
    b.write(iter(cohort.outputs))
    # Within a patient, any order (the ledger sorts kinds its own way); patients ascend.
    by_patient = sorted(cohort.outputs, key=lambda o: (o.patient, o.kind != OutputKind.LETTER, o.id[::-1]))
    c.write(iter(by_patient))
    assert a.path.read_bytes() == b.path.read_bytes() == c.path.read_bytes()
    assert json.loads(a.path.read_bytes()) == a.bundle(cohort.outputs)[0]  # streamed == built


def test_patients_out_of_order_are_refused_not_written_half(tmp_path: Path, cohort: Planned) -> None:
    sink = FhirBundle(tmp_path, cohort.compiled, AS_OF)
    with pytest.raises(ValueError, match="grouped by patient in ref order"):
        sink.write(iter(reversed(cohort.outputs)))
    assert not sink.path.exists() and not list((tmp_path / "fhir").glob(".*.tmp"))


def test_a_task_without_its_care_plan_is_refused(tmp_path: Path, cohort: Planned) -> None:
    tasks = cohort.of_kind(OutputKind.TASK)
    with pytest.raises(ValueError, match="expected one care-plan output"):
        FhirBundle(tmp_path, cohort.compiled, AS_OF).write(iter(tasks))
    assert not (tmp_path / "fhir" / "bundle.json").exists()


def test_unknown_status_is_an_error_not_a_guess(tmp_path: Path, cohort: Planned) -> None:
    patient = cohort.of_kind(OutputKind.PATIENT)[0]
    task = next(o for o in cohort.of_kind(OutputKind.TASK) if o.patient == patient.patient)
    sink = FhirBundle(tmp_path, cohort.compiled, AS_OF)
    with pytest.raises(ValueError, match="no FHIR status"):
        sink.write(iter([patient, with_body(task, status="paused")]))
    with pytest.raises(ValueError, match="no CarePlan status"):
        sink.write(iter([with_body(patient, status="limbo")]))


def test_a_failed_write_leaves_the_previous_bundle_whole(tmp_path: Path, cohort: Planned,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sink = FhirBundle(tmp_path, cohort.compiled, AS_OF)
    sink.write(iter(cohort.outputs))
    before = sink.path.read_bytes()

    def broken():
        yield from cohort.outputs[:5]
        raise RuntimeError("ledger went away")

    with pytest.raises(RuntimeError):
        sink.write(broken())

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        sink.write(iter(cohort.outputs[:4]))
    assert sink.path.read_bytes() == before
    assert [p.name for p in sink.path.parent.iterdir()] == ["bundle.json"]
