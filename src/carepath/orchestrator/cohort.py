"""Shard files of a sweep: the patients to re-plan split into groups on disk, so that
planning runs in bounded memory and in parallel processes.

`write_patient_shards` writes, for each group of patients (in ref order, `shard_size` at
a time), their patients file lines plus the refs and event ids their verdicts depend on;
`read_patient_shard` reads one back: what a Prefect task or a pool worker does with
nothing but the `Shard` (a path and counts; picklable, free of patient data). Their
events come from the event store (`orchestrator.event_store`). No Prefect here.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from carepath.records import Patient

_MAX_OPEN_SHARDS = 256  # shard files in a sweep; larger cohorts get larger shards


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    path: Path
    patients: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:04d}"


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
        shards.append(Shard(index, path, len(group)))
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
