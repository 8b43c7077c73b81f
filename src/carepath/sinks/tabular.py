"""The task list as files other tools read: `tasks.jsonl` and `tasks.csv`.

Both are SNAPSHOT documents: each delivery rewrites the whole file atomically from every
current task. Patients appear only by their pseudonymous ref.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from carepath.compile.compiled import CompiledPathway
from carepath.sinks._documents import TASK_FIELDS, TIME_FIELDS, instant, task_record
from carepath.sinks.base import Delivery, Output, OutputKind
from carepath.sinks.storage import Location, storage_for

CSV_COLUMNS: tuple[str, ...] = ("patient", *TASK_FIELDS)

# A spreadsheet treats a cell starting with one of these as a formula (OWASP "CSV
# injection"); tab and carriage return are on the list because some programs strip them
# before looking.
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


class TasksJsonl:
    """`DIR/tasks.jsonl`: one task per line, the plan's task object plus `patient`."""

    name = "tasks.jsonl"
    delivery = Delivery.SNAPSHOT
    kinds = frozenset({OutputKind.TASK})

    def __init__(self, out_dir: Location) -> None:
        self.storage = storage_for(out_dir)
        self.path = self.storage.local_path(self.name)

    def write(self, outputs: Iterable[Output]) -> int:
        count = 0
        # Streamed line by line: a cohort's task list is far larger than a run's memory.
        with self.storage.writer(self.name) as handle:
            for output in outputs:
                if output.kind != OutputKind.TASK:
                    continue
                record = task_record(output.patient, output.body)
                handle.write((json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode())
                count += 1
        return count


class TasksCsv:
    """`DIR/tasks.csv`: the same fields with a header row (RFC 4180, UTF-8, CRLF), times in
    the clinic's zone, text cells defused against spreadsheet formulas."""

    name = "tasks.csv"
    delivery = Delivery.SNAPSHOT
    kinds = frozenset({OutputKind.TASK})

    def __init__(self, out_dir: Location, compiled: CompiledPathway) -> None:
        self.storage = storage_for(out_dir)
        self.path = self.storage.local_path(self.name)
        self.zone = compiled.clinic.zone

    def write(self, outputs: Iterable[Output]) -> int:
        count = 0
        with self.storage.writer(self.name) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow(CSV_COLUMNS)
            for output in outputs:
                if output.kind != OutputKind.TASK:
                    continue
                record = task_record(output.patient, output.body)
                extra = [key for key in record if key not in CSV_COLUMNS]
                if extra:
                    # A column cannot appear halfway down a file; the contract has to change first.
                    raise ValueError(f"task {output.id} has fields the CSV does not know: {', '.join(extra)}")
                writer.writerow([self._cell(key, record, output.id) for key in CSV_COLUMNS])
                count += 1
            text.flush()
            text.detach()  # the atomic writer closes the file itself
        return count

    def _cell(self, key: str, record: dict[str, object], owner: str) -> str:
        value = record[key]
        if key in TIME_FIELDS:
            moment = instant(record, key, f"task {owner}")
            return "" if moment is None else moment.astimezone(self.zone).isoformat()
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return defuse(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return defuse(";".join(value))
        raise ValueError(f"task {owner}: {key} has an unexpected {type(value).__name__} value")


def defuse(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets a quote."""
    return "'" + text if text.startswith(_FORMULA_LEADS) else text
