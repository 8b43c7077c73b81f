"""`DIR/fhir/bundle.json`: the current plan as a FHIR R4 `collection` Bundle.

Per patient, a `CarePlan` (stage and status), a `Task` per task and a
`CommunicationRequest` per letter. Patients are referenced by their pseudonymous ref only;
a letter is named by its template, never by its rendered text (which holds names).

Resource ids are UUIDv5 of the pathway id and the output id, so the same output keeps the
same `urn:uuid:` across runs and the bundle is byte-identical for identical input.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import BinaryIO

import orjson

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.documents import Instants, PatientOutputs, iso_text, patient_groups, require_aware
from carepath.sinks.storage import Location, storage_for

# Fixed forever: changing it changes every resource id consumers may have stored.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:carepath:output")
NAMESPACE_BYTES = NAMESPACE.bytes
OUTPUT_SYSTEM = "urn:carepath:output"
PATIENT_SYSTEM = "urn:carepath:patient"
PRIORITY_SYSTEM = "urn:carepath:priority"

# FHIR request-priority has no "high"; it sits between routine and urgent, so it is sent as
# urgent and the exact carepath priority travels in meta.tag.
TASK_PRIORITY = {"routine": "routine", "high": "urgent", "urgent": "urgent"}

CAREPLAN_STATUS = {
    "active": "active",
    # Treatment waits for something outside the plan (records, a contraindication review).
    "pending_eligibility": "on-hold",
    "blocked": "on-hold",
    "discharged": "completed",
}

def uuid5_text(namespace: bytes, name: str) -> str:
    """`str(uuid.uuid5(namespace, name))` without the UUID object (a bundle makes one per
    output): the SHA-1 of namespace and name in hex, version 5, RFC 4122 variant."""
    h = hashlib.sha1(namespace + name.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_LETTER_CATEGORY = [{"text": "patient letter"}]
_OUT_OF_WINDOW = [{"text": "Moved to the next clinic opening, outside its clinical window"}]

# The variant's two high bits set to 10: the first hex digit of the fourth group.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


class _BundleFeed:
    """Entries of the bundle, one patient at a time, indented as orjson indents them two
    levels down (and handed to `tee` too)."""

    def __init__(self, bundle: FhirBundle, handle: BinaryIO,
                 tee: Callable[[list[dict[str, object]]], None] | None) -> None:
        self.bundle, self.handle, self.tee = bundle, handle, tee
        self.first, self.count = True, 0
        self.instants = Instants()
        self.last: str | None = None

    def add(self, group: PatientOutputs) -> None:
        if self.last is not None and group.patient <= self.last:
            raise ValueError(f"outputs must come grouped by patient in ref order: {group.patient} after {self.last}")
        self.last = group.patient
        entries = self.bundle.group_entries(group, self.instants)
        self.count += len(entries)
        if self.tee is not None:
            self.tee(entries)
        # The patient's entries as one list, one level less indented than the bundle's
        # "entry" list: indent each line once more and drop the list's own brackets.
        text = orjson.dumps(entries, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  ")
        self.handle.write((b"[" if self.first else b",") + text[1:-4])
        self.first = False


class FhirBundle:
    """`DIR/fhir/bundle.json` for one pathway as of one instant."""

    name = "fhir/bundle.json"
    kinds = frozenset({OutputKind.PATIENT, OutputKind.TASK, OutputKind.LETTER})

    def __init__(self, out_dir: Location, compiled: CompiledPathway, as_of: datetime) -> None:
        self.storage = storage_for(out_dir)
        self.path = self.storage.local_path(self.name)
        self.compiled = compiled
        self.as_of = require_aware(as_of)
        self.written = 0
        self._parts: dict[tuple[str, str], object] = {}

    def write(self, outputs: Iterable[Output], *,
              tee: Callable[[list[dict[str, object]]], None] | None = None) -> int:
        """Stream the bundle to disk one patient at a time: a cohort's bundle is far larger
        than the memory a run may use. Outputs must come grouped by patient in ref order
        (the ledger's order); within a patient any order gives the same bytes. `tee` gets
        each patient's entries too (the NDJSON export, written in the same pass)."""
        with self.feed(tee=tee) as feed:
            for group in patient_groups(outputs):
                feed.add(group)
        return self.written

    @contextmanager
    def feed(self, *, tee: Callable[[list[dict[str, object]]], None] | None = None) -> Iterator[_BundleFeed]:
        """The bundle open for one pass (`add` one patient's outputs at a time, patients
        ascending); it replaces the old one when the block ends without an error."""
        as_of = self.as_of.isoformat()
        head = orjson.dumps({
            "resourceType": "Bundle",
            "id": str(uuid.uuid5(NAMESPACE, f"bundle/{self.compiled.id}/{self.compiled.version}/{as_of}")),
            "meta": {"source": self._canonical()},
            "type": "collection",
            "timestamp": as_of,
            "entry": [],
        }, option=orjson.OPT_INDENT_2)
        head = head[:head.rindex(b"[]")]
        with self.storage.writer(self.name) as handle:
            handle.write(head)
            feed = _BundleFeed(self, handle, tee)
            yield feed
            handle.write(b"[]\n}\n" if feed.first else b"\n  ]\n}\n")
            self.written = feed.count

    def bundle(self, outputs: Iterable[Output]) -> tuple[dict[str, object], int]:
        """The Bundle as JSON data, and how many outputs it holds (tests and small cohorts;
        `write` streams the same content)."""
        entries: list[dict[str, object]] = []
        count = 0
        instants = Instants()
        for group in patient_groups(sorted(outputs, key=lambda o: o.patient)):
            count += len(group.plans) + len(group.tasks) + len(group.letters)
            entries += self.group_entries(group, instants)
        as_of = self.as_of.isoformat()
        bundle = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid5(NAMESPACE, f"bundle/{self.compiled.id}/{self.compiled.version}/{as_of}")),
            "meta": {"source": self._canonical()},
            "type": "collection",
            "timestamp": as_of,
            "entry": entries,
        }
        return bundle, count

    def _canonical(self) -> str:
        return f"urn:carepath:pathway:{self.compiled.id}|{self.compiled.version}"

    def _uuid(self, output_id: str) -> str:
        return uuid5_text(NAMESPACE_BYTES, f"{self.compiled.id}/{output_id}")

    def group_entries(self, group: PatientOutputs, instants: Instants) -> list[dict[str, object]]:
        """One patient's entries: the CarePlan, then a Task per task and a
        CommunicationRequest per letter, each in id order."""
        patient, plans = group.patient, group.plans
        if len(plans) != 1:
            # Tasks must be based on a CarePlan in the same bundle; a snapshot without it
            # is not the whole current state, and writing it would publish dangling links.
            raise ValueError(f"patient {patient}: expected one care-plan output, got {len(plans)}")
        plan = plans[0]
        # Parts every resource of the patient shows alike are built once and shared:
        # the serialiser writes a shared object as it writes a copy.
        based_on = [{"reference": f"urn:uuid:{self._uuid(plan.id)}"}]
        subject = {"reference": f"Patient/{patient}",
                   "identifier": {"system": PATIENT_SYSTEM, "value": patient}}
        resources = [self._task(o, task, subject, based_on, instants)
                     for o, task in zip(group.tasks, group.records())]
        resources += [self._letter(o, subject, based_on, instants) for o in group.letters]
        entries = [self._entry(self._care_plan(plan, subject, [r["id"] for r in resources]))]
        return entries + [self._entry(r) for r in resources]

    @staticmethod
    def _entry(resource: dict[str, object]) -> dict[str, object]:
        return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}

    def _identifier(self, output: Output) -> list[dict[str, str]]:
        return [{"system": OUTPUT_SYSTEM, "value": output.id}]

    def _care_plan(self, output: Output, subject: dict[str, object], activity_ids: list[object]) -> dict[str, object]:
        body = output.body
        status = str(body.get("status"))
        if status not in CAREPLAN_STATUS:
            raise ValueError(f"{output.id}: no CarePlan status for patient status {status!r}")
        notes = [f"{key}: {', '.join(map(str, body[key]))}"
                 for key in ("flags", "holds") if isinstance(body.get(key), list) and body[key]]
        resource: dict[str, object] = {
            "resourceType": "CarePlan",
            "id": self._uuid(output.id),
            "identifier": self._identifier(output),
            "instantiatesCanonical": [self._canonical()],
            "status": CAREPLAN_STATUS[status],
            "intent": "plan",
            "category": [{"text": str(body.get("stage"))}],
            "title": f"{self.compiled.title} ({self.compiled.id} {self.compiled.version})",
            "description": f"Stage {body.get('stage')}, status {status}",
            "subject": subject,
        }
        if activity_ids:
            resource["activity"] = [{"reference": {"reference": f"urn:uuid:{rid}"}} for rid in activity_ids]
        if notes:
            resource["note"] = [{"text": "; ".join(notes)}]
        return resource

    def _task(self, output: Output, task: Mapping[str, object], subject: dict[str, object],
              based_on: list[dict[str, str]], instant: Instants) -> dict[str, object]:
        owner = f"task {output.id}"
        earliest = instant(task, "earliest", owner)
        due = instant(task, "due", owner)
        completed = instant(task, "completed_at", owner)
        priority = str(task["priority"])
        fhir_priority = TASK_PRIORITY.get(priority)
        if fhir_priority is None:
            raise ValueError(f"{owner}: no FHIR priority for {priority!r}")
        status = task["status"]
        if status == "open":
            # Not yet actionable before its window opens.
            resource: dict[str, object] = {
                "resourceType": "Task", "id": self._uuid(output.id), "meta": self._shared("meta", priority),
                "identifier": [{"system": OUTPUT_SYSTEM, "value": output.id}], "basedOn": based_on,
                "status": "requested" if earliest is not None and earliest > self.as_of else "ready",
            }
        else:
            resource = {
                "resourceType": "Task", "id": self._uuid(output.id), "meta": self._shared("meta", priority),
                "identifier": [{"system": OUTPUT_SYSTEM, "value": output.id}], "basedOn": based_on,
                **self._task_status(task, earliest, owner),
            }
        resource["intent"] = "order"
        resource["priority"] = fhir_priority
        resource["code"] = self._shared("text", str(task["step"]))
        resource["description"] = str(task["title"])
        resource["for"] = subject
        if earliest is not None:
            period = {"start": iso_text(task["earliest"], earliest)}
            if due is not None:
                period["end"] = iso_text(task["due"], due)
            resource["executionPeriod"] = period
        elif due is not None:
            resource["executionPeriod"] = {"end": iso_text(task["due"], due)}
        if completed is not None:
            resource["lastModified"] = iso_text(task["completed_at"], completed)
        resource["performerType"] = self._shared("texts", str(task["role"]))
        resource["reasonCode"] = {"text": f"{task['source']} (event {task['trigger']})"}
        if task["out_of_window"]:
            resource["note"] = _OUT_OF_WINDOW
        # Seen and owned: the staff member who acknowledged it (a staff ref, never a patient's).
        if task.get("acknowledged_by") is not None:
            resource["owner"] = {"identifier": {"value": str(task["acknowledged_by"])}}
        escalation = task.get("escalation")
        if isinstance(escalation, Mapping) and status in ("open", "overdue"):
            following = escalation.get("next_at")
            text = (f"Escalated to {escalation.get('tier')} since {escalation.get('since')}"
                    + (f"; next escalation {following}" if following else ""))
            resource["note"] = [*resource.get("note", []), {"text": text}]  # type: ignore[misc]
        return resource

    def _shared(self, shape: str, value: str) -> object:
        """{"text": value}, [{"text": value}], a letter's payload or a priority's meta tag,
        one object per value (steps, roles, priorities, letters: a pathway has few)."""
        key = (shape, value)
        found = self._parts.get(key)
        if found is None:
            if shape == "meta":
                found = {"tag": [{"system": PRIORITY_SYSTEM, "code": value}]}
            elif shape == "text":
                found = {"text": value}
            elif shape == "payload":
                found = [{"contentString": value}]
            else:
                found = [{"text": value}]
            if len(self._parts) >= 4096:  # bounded, whatever the bodies hold
                self._parts.clear()
            self._parts[key] = found
        return found

    def _task_status(self, task: Mapping[str, object], earliest: datetime | None, owner: str) -> dict[str, object]:
        status = task["status"]
        if status == "open":
            # Not yet actionable before its window opens.
            return {"status": "requested" if earliest is not None and earliest > self.as_of else "ready"}
        if status == "overdue":
            return {"status": "ready", "businessStatus": {"text": "overdue"}}
        if status == "done":
            return {"status": "completed"}
        if status == "cancelled":
            return {"status": "cancelled"}
        raise ValueError(f"{owner}: no FHIR status for task status {status!r}")

    def _letter(self, output: Output, subject: dict[str, object], based_on: list[dict[str, str]],
                instant: Instants) -> dict[str, object]:
        body = output.body
        send_at = instant(body, "send_at", f"letter {output.id}")
        if send_at is None:
            raise ValueError(f"letter {output.id} has no send_at")
        resource: dict[str, object] = {
            "resourceType": "CommunicationRequest",
            "id": self._uuid(output.id),
            "identifier": self._identifier(output),
            "basedOn": based_on,
            # A letter that will never be sent (expired unsent, or withdrawn) is a request revoked.
            "status": "revoked" if body.get("status") in ("expired", "withdrawn") else "active",
            "category": _LETTER_CATEGORY,
            "subject": subject,
            "payload": self._shared("payload", f"Letter {body.get('letter')} (template {body.get('template')})"),
            "occurrenceDateTime": iso_text(body["send_at"], send_at),
            "reasonCode": [{"text": f"{body.get('source')} (event {body.get('trigger')})"}],
        }
        return resource
