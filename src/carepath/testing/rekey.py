"""Rewrite task and letter ids minted when ids included the pathway version.

Scenario files pin ids (in `expect`, and in events that tick tasks off), and an events
file names the tasks clinicians completed. Ids no longer hash the version (see
carepath.engine.ids), so a file written before holds the version-hashed ids. The planner
still accepts those in events, but a scenario's `expect` compares ids as text: this
rewrites each old id to the id the planner gives the same work now.

    python -m carepath.testing.rekey tests/scenarios/*.scenario.yaml
    python -m carepath.testing.rekey --pathway P --patients F examples/x/events.jsonl

Each file is planned (as of its `as_of`, or after its last event) while the ids the
planner mints are recorded with their inputs; an old id is rebuilt from them with the
pathway version and replaced where it appears in the file. Nothing else changes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

from carepath.engine import ids
from carepath.loading import load_pathway
from carepath.orchestrator.planning import plan_cohort, read_cohort
from carepath.records.readers import read_events
from carepath.testing.scenarios import load_scenario

_ID = re.compile(r"\b[tl]-[0-9a-f]{20}\b")


def _recording_plans(compiled, patients_file: Path, events_file: Path, as_of: datetime | None) -> dict[str, str]:
    """Old id → new id of everything planning these files mints."""
    minted: dict[str, tuple[str, str, str, str, str]] = {}
    def recording(prefix: str, pathway: str, patient: str, name: str, key: str) -> str:
        new = ids.output_id(prefix, pathway, patient, name, key)
        minted[new] = (prefix, pathway, patient, name, key)
        return new

    cohort = read_cohort(compiled, patients_file, events_file)
    if as_of is None:
        events, _ = read_events(events_file, event_types=compiled.event_fields, patients=cohort.patients)
        as_of = max((e.at for e in events), default=datetime(2026, 1, 1).astimezone()) + timedelta(days=400)
    # The engine modules that mint task and letter ids.
    with mock.patch("carepath.engine.work.output_id", recording), \
            mock.patch("carepath.engine.task_refs.output_id", recording), \
            mock.patch("carepath.engine.projection.output_id", recording):
        for _ in plan_cohort(compiled, cohort, as_of):
            pass

    old_of: dict[str, str] = {}
    def old(new: str, depth: int = 0) -> str:
        if new in old_of or new not in minted or depth > 5:
            return old_of.get(new, new)
        prefix, pathway, patient, name, key = minted[new]
        key = _ID.sub(lambda m: old(m.group(0), depth + 1), key)
        old_of[new] = ids.legacy_output_id(prefix, pathway, compiled.version, patient, name, key)
        return old_of[new]

    return {old(new): new for new in minted}


def _rewrite(path: Path, mapping: dict[str, str]) -> int:
    text = path.read_text()
    count = 0

    def swap(m: re.Match) -> str:
        nonlocal count
        new = mapping.get(m.group(0))
        if new is None or new == m.group(0):
            return m.group(0)
        count += 1
        return new

    updated = _ID.sub(swap, text)
    if updated != text:
        path.write_text(updated)
    return count


def rekey_scenario(path: Path) -> int:
    scenario = load_scenario(path)
    compiled = load_pathway((path.parent / scenario.pathway).resolve(), scenario.parameters or None)
    patients = scenario.patients or [{"patient": "p-1", "given_name": "Test", "family_name": "Patient"}]
    only = patients[0]["patient"] if len(patients) == 1 else None
    with tempfile.TemporaryDirectory(prefix="carepath-rekey-") as tmp:
        pf, ef = Path(tmp) / "patients.jsonl", Path(tmp) / "events.jsonl"
        pf.write_text("".join(json.dumps({"given_name": "T", "family_name": "P", **p}) + "\n" for p in patients))
        ef.write_text("".join(json.dumps({"data": {}, **({"patient": only} if only else {}), **e}, default=str)
                              + "\n" for e in scenario.events))
        mapping = _recording_plans(compiled, pf, ef, datetime.fromisoformat(scenario.as_of))
    return _rewrite(path, mapping)


def rekey_events(pathway: Path, patients: Path, events: Path) -> int:
    return _rewrite(events, _recording_plans(load_pathway(pathway), patients, events, None))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m carepath.testing.rekey", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--pathway", type=Path, help="for events files: the pathway they belong to")
    parser.add_argument("--patients", type=Path, help="for events files: the patients file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    for path in args.files:
        if path.name.endswith(".scenario.yaml"):
            n = rekey_scenario(path)
        elif args.pathway and args.patients:
            n = rekey_events(args.pathway, args.patients, path)
        else:
            print(f"{path}: an events file needs --pathway and --patients", file=sys.stderr)
            return 2
        print(f"{path}: {n} id(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
