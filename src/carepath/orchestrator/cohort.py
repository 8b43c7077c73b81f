"""A cohort split into shards on disk, so that planning runs in bounded memory and, in
the sweep, in parallel processes.

`partition` reads the patients file, then streams the events file once
(`records.stream.route_events`): lines that cannot belong to any shard (not JSON, an
unknown patient) and id conflicts are rejected there, every other line is appended,
raw, to its patient's shard file. Patients go to shards in ref order, `shard_size` at a
time, so shard outputs come out in the order `carepath plan` prints them.
`plan_shard` reads one shard file back, validates its event lines (the rejections a
line earns on its own are reported here, worded as `read_events` words them), and
plans its patients: what a Prefect task or a pool worker does with nothing but the
`Shard` (a path and counts; picklable, free of patient data).

Memory: the patients, a Bloom filter and three arrays of 8 bytes per event line (for
duplicate ids), and one shard at a time. No Prefect here; the runtime calls these.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson

from carepath.compile.compiled import CompiledPathway
from carepath.engine import plan
from carepath.engine.result import PatientPlan
from carepath.records import Event, Patient, read_patients
from carepath.records.fields import compile_event_types
from carepath.records.readers import gc_paused
from carepath.records.stream import read_routed, route_events
from carepath.records.types import Rejection

_MAX_OPEN_SHARDS = 256  # shard files written at once; larger cohorts get larger shards


@dataclass(frozen=True)
class Rejected:
    file: str  # "patients" | "events"
    line: int
    id: str | None
    reason: str

    def as_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "id": self.id, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    path: Path
    patients: int
    events: int       # event lines routed here (a line may still be rejected when the shard is planned)

    @property
    def name(self) -> str:
        return f"shard-{self.index:04d}"


@dataclass(frozen=True)
class Partition:
    shards: tuple[Shard, ...]
    rejected: tuple[Rejected, ...]  # lines refused while partitioning: patients, then events, by line
    patients: int
    events: int                     # event lines routed to shards


@dataclass(frozen=True)
class ShardPlan:
    shard: Shard
    patients: dict[str, Patient]      # for the letters; names stay in this process
    plans: tuple[PatientPlan, ...]    # in patient-ref order
    rejected: tuple[Rejected, ...]    # the shard's invalid event lines, then events the engine refused


def partition(compiled: CompiledPathway, patients_path: str | Path, events_path: str | Path,
              workdir: Path, shard_size: int = 2000) -> Partition:
    """Split the cohort into shard files under `workdir` (emptied first)."""
    patients, bad_patients = read_patients(patients_path, default_timezone=compiled.clinic.zone.key)
    return partition_patients(compiled, patients, bad_patients, events_path, workdir, shard_size)


def partition_patients(compiled: CompiledPathway, patients: Mapping[str, Patient], bad_patients: list[Rejection],
                       events_path: str | Path, workdir: Path, shard_size: int = 2000) -> Partition:
    """`partition` for patients already read (the plan command keeps them for letters)."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    refs = sorted(patients)
    shard_size = max(shard_size, -(-len(refs) // _MAX_OPEN_SHARDS))
    shard_of = {ref: i // shard_size for i, ref in enumerate(refs)}
    count = (len(refs) + shard_size - 1) // shard_size
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    paths = [workdir / f"shard-{i:04d}.jsonl" for i in range(count)]
    handles: list[IO[bytes]] = [p.open("wb", buffering=256 * 1024) for p in paths]
    events = [0] * count
    try:
        for i, ref in enumerate(refs):
            p = patients[ref]
            handles[i // shard_size].write(
                b"P" + orjson.dumps([p.ref, p.given_name, p.family_name, p.timezone, p.email]) + b"\n")
        writers = [h.write for h in handles]

        def write(shard: int, record: bytes) -> None:
            writers[shard](record)
            events[shard] += 1

        bad_events = route_events(events_path, event_types=compiled.event_fields, shard_of=shard_of, write=write)
    finally:
        for handle in handles:
            handle.close()
    rejected = [Rejected("patients", r.line, r.id, r.reason) for r in bad_patients]
    rejected += [Rejected("events", r.line, r.id, r.reason) for r in bad_events]
    shards = tuple(Shard(i, paths[i], min(shard_size, len(refs) - i * shard_size), events[i]) for i in range(count))
    return Partition(shards, tuple(rejected), len(refs), sum(events))


def read_shard(compiled: CompiledPathway, shard: Shard) -> tuple[dict[str, Patient], dict[str, list[Event]],
                                                                  list[Rejected]]:
    """The shard's patients, their valid events, and its event lines rejected on their own."""
    patients: dict[str, Patient] = {}
    records: list[bytes] = []
    with shard.path.open("rb") as handle:
        for raw in handle:
            if raw[:1] == b"P":
                ref, given, family, zone, email = orjson.loads(raw[1:])
                patients[ref] = Patient(ref, given, family, zone, email)
            else:
                records.append(raw)
    events: dict[str, list[Event]] = {ref: [] for ref in patients}
    rejected: list[Rejected] = []
    specs = compile_event_types(compiled.event_fields)
    for item in read_routed(records, specs=specs, patients=patients):
        if type(item) is Event:
            events[item.patient].append(item)
        else:
            rejected.append(Rejected("events", item.line, item.id, item.reason))  # type: ignore[union-attr]
    return patients, events, rejected


def plan_shard(compiled: CompiledPathway, shard: Shard, as_of: datetime) -> ShardPlan:
    # The collector is paused for the shard: records and plans hold no reference cycles,
    # and its passes over a shard's young objects cost a third of the time here.
    with gc_paused():
        patients, events, rejected = read_shard(compiled, shard)
        plans = []
        for ref in sorted(patients):
            result = plan(compiled, patients[ref], events.pop(ref), as_of)
            rejected.extend(Rejected("events", r.line, r.id, r.reason) for r in result.rejected)
            plans.append(result)
    return ShardPlan(shard, patients, tuple(plans), tuple(rejected))


def iter_plans(compiled: CompiledPathway, part: Partition, as_of: datetime) -> Iterator[ShardPlan]:
    """Every shard planned in order, one at a time (the in-process path)."""
    for shard in part.shards:
        yield plan_shard(compiled, shard, as_of)


# -- shards of an incremental sweep: patients only, their events come from the event store --


def write_patient_shards(workdir: Path, patients: Mapping[str, Patient], refs: Sequence[str], shard_size: int,
                         others: Sequence[str] = (), ids: Sequence[str] = ()) -> tuple[Shard, ...]:
    """Shard files of the patients to re-plan (`refs`, in order). Each also lists `others`,
    the refs of this run's other patients whose lines share an event id with them, and
    those ids: the planning step judges the shard's lines with them as the whole file would."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    shard_size = max(shard_size, -(-len(refs) // _MAX_OPEN_SHARDS))
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    tail = b"".join(b"K" + orjson.dumps(ref) + b"\n" for ref in others)
    tail += b"".join(b"I" + orjson.dumps(event_id) + b"\n" for event_id in ids)
    shards = []
    for index, start in enumerate(range(0, len(refs), shard_size)):
        path = workdir / f"shard-{index:04d}.jsonl"
        group = refs[start:start + shard_size]
        with path.open("wb") as handle:
            for ref in group:
                p = patients[ref]
                handle.write(b"P" + orjson.dumps([p.ref, p.given_name, p.family_name, p.timezone, p.email]) + b"\n")
            handle.write(tail)
        shards.append(Shard(index, path, len(group), 0))
    return tuple(shards)


def read_patient_shard(path: Path) -> tuple[dict[str, Patient], set[str], list[str]]:
    """A shard's patients, the other refs it names, and the shared event ids."""
    patients: dict[str, Patient] = {}
    others: set[str] = set()
    ids: list[str] = []
    with path.open("rb") as handle:
        for raw in handle:
            kind, body = raw[:1], orjson.loads(raw[1:])
            if kind == b"P":
                ref, given, family, zone, email = body
                patients[ref] = Patient(ref, given, family, zone, email)
            elif kind == b"K":
                others.add(body)
            else:
                ids.append(body)
    return patients, others, ids
