"""A cohort split into shards on disk, so that a sweep plans in bounded memory and in
parallel processes.

`partition` reads the patients and events files once, rejects bad lines (with their
line numbers, as `carepath plan` does), and writes every accepted record into the
shard file of its patient. Patients go to shards in ref order, `shard_size` at a time,
so a shard's outputs come out in the same order as `carepath plan` prints them.
`plan_shard` reads one shard file back and plans its patients: what a Prefect task (or a
Dask worker) does with nothing but the `Shard` (a path and counts; picklable, free of
patient data).

No Prefect here; the runtime calls these.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson

from carepath.compile.compiled import CompiledPathway
from carepath.engine import plan
from carepath.engine.result import PatientPlan
from carepath.planning import Rejected
from carepath.records import Event, Patient, iter_event_lines, read_patients
from carepath.records.fields import check_data, compile_event_types
from carepath.records.types import new_event


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    path: Path
    patients: int
    events: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:04d}"


@dataclass(frozen=True)
class Partition:
    shards: tuple[Shard, ...]
    rejected: tuple[Rejected, ...]  # lines refused while reading, in file then line order
    patients: int
    events: int


@dataclass(frozen=True)
class ShardPlan:
    shard: Shard
    patients: dict[str, Patient]      # for the letters; names stay in this process
    plans: tuple[PatientPlan, ...]    # in patient-ref order
    rejected: tuple[Rejected, ...]    # events the engine refused (e.g. inside the minimum gap)


def partition(compiled: CompiledPathway, patients_path: str | Path, events_path: str | Path,
              workdir: Path, shard_size: int = 2000) -> Partition:
    """Split the cohort into shard files under `workdir` (emptied first)."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    patients, bad_patients = read_patients(patients_path, default_timezone=compiled.clinic.zone.key)
    rejected = [Rejected("patients", r.line, r.id, r.reason) for r in bad_patients]
    refs = sorted(patients)
    shard_of = {ref: i // shard_size for i, ref in enumerate(refs)}
    count = (len(refs) + shard_size - 1) // shard_size
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    paths = [workdir / f"shard-{i:04d}.jsonl" for i in range(count)]
    handles: list[IO[bytes]] = [p.open("wb") for p in paths]
    events = [0] * count
    try:
        for i, ref in enumerate(refs):
            p = patients[ref]
            handles[i // shard_size].write(
                orjson.dumps(["p", p.ref, p.given_name, p.family_name, p.timezone, p.email]) + b"\n")
        for item in iter_event_lines(events_path, event_types=compiled.event_fields, patients=patients):
            if type(item) is Event:
                s = shard_of[item.patient]
                handles[s].write(orjson.dumps(["e", item.line, item.id, item.patient, item.type,
                                               item.at.isoformat(), dict(item.data)], default=_plain) + b"\n")
                events[s] += 1
            else:
                rejected.append(Rejected("events", item.line, item.id, item.reason))  # type: ignore[union-attr]
    finally:
        for handle in handles:
            handle.close()
    shards = tuple(Shard(i, paths[i], min(shard_size, len(refs) - i * shard_size), events[i]) for i in range(count))
    return Partition(shards, tuple(rejected), len(refs), sum(events))


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a shard file")


def read_shard(compiled: CompiledPathway, shard: Shard) -> tuple[dict[str, Patient], dict[str, list[Event]]]:
    """The shard's patients and their events (already validated by `partition`)."""
    specs = compile_event_types(compiled.event_fields)
    patients: dict[str, Patient] = {}
    events: dict[str, list[Event]] = {}
    with shard.path.open("rb") as handle:
        for raw in handle:
            row = orjson.loads(raw)
            if row[0] == "p":
                patients[row[1]] = Patient(row[1], row[2], row[3], row[4], row[5])
                events[row[1]] = []
            else:
                _, line, event_id, ref, type_name, at, data = row
                problems: list[str] = []
                checked = check_data(specs[type_name], data, problems)
                if problems:  # the file changed under us, or a bug: never plan on bad data
                    raise ValueError(f"{shard.path}: event on line {line} no longer valid: {problems[0]}")
                events[ref].append(new_event(event_id, ref, type_name, datetime.fromisoformat(at), checked, line))
    return patients, events


def plan_shard(compiled: CompiledPathway, shard: Shard, as_of: datetime) -> ShardPlan:
    patients, events = read_shard(compiled, shard)
    plans = []
    rejected: list[Rejected] = []
    for ref in sorted(patients):
        result = plan(compiled, patients[ref], events[ref], as_of)
        rejected.extend(Rejected("events", r.line, r.id, r.reason) for r in result.rejected)
        plans.append(result)
    return ShardPlan(shard, patients, tuple(plans), tuple(rejected))


def iter_plans(compiled: CompiledPathway, part: Partition, as_of: datetime) -> Iterator[ShardPlan]:
    """Every shard planned in order, one at a time (the in-process path)."""
    for shard in part.shards:
        yield plan_shard(compiled, shard, as_of)
