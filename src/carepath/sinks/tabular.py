"""The task list as files other tools read: `tasks.jsonl` and `tasks.csv`.

Both are whole documents: each write replaces the whole file atomically from every
current task. Patients appear only by their pseudonymous ref.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import BinaryIO

import orjson

from carepath.compile.compiled import CompiledPathway
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.documents import (
    TASK_FIELDS,
    TIME_FIELDS,
    Instants,
    PatientOutputs,
    instant,
    iso_text,
    task_record,
)
from carepath.sinks.storage import Location, storage_for

CSV_COLUMNS: tuple[str, ...] = ("patient", *TASK_FIELDS)

# A spreadsheet treats a cell starting with one of these as a formula (OWASP "CSV
# injection"); tab and carriage return are on the list because some programs strip them
# before looking.
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_LEAD_SET = frozenset(_FORMULA_LEADS)
_IS_TIME = tuple(key in TIME_FIELDS for key in CSV_COLUMNS)


class TasksJsonl:
    """`DIR/tasks.jsonl`: one task per line, the plan's task object plus `patient`."""

    name = "tasks.jsonl"
    shows_as_of = False  # its content follows the outputs and sends only
    kinds = frozenset({OutputKind.TASK})

    def __init__(self, out_dir: Location) -> None:
        self.storage = storage_for(out_dir)
        self.path = self.storage.local_path(self.name)
        self.written = 0

    def write(self, outputs: Iterable[Output]) -> int:
        # Streamed line by line: a cohort's task list is far larger than a run's memory.
        with self.feed() as feed:
            for output in outputs:
                if output.kind == OutputKind.TASK:
                    feed.line(task_record(output.patient, output.body))
        return self.written

    @contextmanager
    def feed(self) -> Iterator[_JsonlFeed]:
        """The file open for one pass (`add` one patient's outputs at a time); it replaces
        the old one when the block ends without an error."""
        with self.storage.writer(self.name) as handle:
            feed = _JsonlFeed(handle)
            yield feed
            self.written = feed.count


class _JsonlFeed:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.count = 0

    def add(self, group: PatientOutputs) -> None:
        if group.tasks:
            self.handle.write(b"".join(map(jsonl_line, group.records())))
            self.count += len(group.tasks)

    def line(self, record: dict[str, object]) -> None:
        self.handle.write(jsonl_line(record))
        self.count += 1


_PLAIN = (str, bool, type(None))


def jsonl_line(record: dict[str, object]) -> bytes:
    """One line of tasks.jsonl: compact JSON, non-ASCII as it is. orjson writes exactly
    what `json.dumps(..., ensure_ascii=False, separators=(",", ":"))` writes for strings,
    booleans, null and lists of strings, which is all a task holds; anything else (a
    float, which the two format differently) goes through `json`."""
    for value in record.values():
        if type(value) not in _PLAIN and not (type(value) is list and all(type(v) is str for v in value)):
            return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    return orjson.dumps(record) + b"\n"


class TasksCsv:
    """`DIR/tasks.csv`: the same fields with a header row (RFC 4180, UTF-8, CRLF), times in
    the clinic's zone, text cells defused against spreadsheet formulas."""

    name = "tasks.csv"
    shows_as_of = False  # its content follows the outputs and sends only
    kinds = frozenset({OutputKind.TASK})

    def __init__(self, out_dir: Location, compiled: CompiledPathway) -> None:
        self.storage = storage_for(out_dir)
        self.path = self.storage.local_path(self.name)
        self.zone = compiled.clinic.zone
        self.written = 0

    def write(self, outputs: Iterable[Output]) -> int:
        with self.feed() as feed:
            for output in outputs:
                if output.kind == OutputKind.TASK:
                    feed.row(output.id, task_record(output.patient, output.body))
        return self.written

    @contextmanager
    def feed(self) -> Iterator[_CsvFeed]:
        """The file open for one pass, as `TasksJsonl.feed`."""
        with self.storage.writer(self.name) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=False)
            feed = _CsvFeed(self, text)
            feed.writer.writerow(CSV_COLUMNS)
            yield feed
            text.flush()
            text.detach()  # the atomic writer closes the file itself
            self.written = feed.count

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
        if key == "escalation" and isinstance(value, dict):
            # One cell a spreadsheet can sort: "tier;since;next at" (next at empty at the top).
            return defuse(";".join(str(value.get(k) or "") for k in ("tier", "since", "next_at")))
        raise ValueError(f"task {owner}: {key} has an unexpected {type(value).__name__} value")


class _CsvFeed:
    """Rows of tasks.csv. A cohort repeats few distinct times (clinic slots): each one's
    clinic-zone text is worked out once (bounded, as `Instants`)."""

    def __init__(self, sink: TasksCsv, text: io.TextIOWrapper) -> None:
        self.sink = sink
        self.writer = csv.writer(text, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        self.count = 0
        self._times: dict[str, str] = {}

    def add(self, group: PatientOutputs) -> None:
        if group.tasks:
            self.writer.writerows([self._cells(o.id, r) for o, r in zip(group.tasks, group.records())])
            self.count += len(group.tasks)

    def row(self, owner: str, record: dict[str, object]) -> None:
        self.writer.writerow(self._cells(owner, record))
        self.count += 1

    def _cells(self, owner: str, record: dict[str, object]) -> list[str]:
        if len(record) != len(CSV_COLUMNS):
            extra = [key for key in record if key not in CSV_COLUMNS]
            if extra:
                # A column cannot appear halfway down a file; the contract has to change first.
                raise ValueError(f"task {owner} has fields the CSV does not know: {', '.join(extra)}")
        # `task_record` puts every column in CSV order, and nothing else when the count matches.
        cells: list[str] = []
        append, times = cells.append, self._times
        for key, is_time, value in zip(CSV_COLUMNS, _IS_TIME, record.values()):
            kind = type(value)
            if kind is str:
                if is_time:
                    cell = times.get(value)
                    if cell is None:
                        cell = self._time(key, value, record, owner)
                        if len(times) >= Instants.LIMIT:
                            times.clear()
                        times[value] = cell
                    append(cell)
                else:
                    append("'" + value if value[:1] in _FORMULA_LEAD_SET else value)
            elif value is None:
                append("")
            elif kind is bool:
                append("true" if value else "false")
            else:
                append(self.sink._cell(key, record, owner))  # lists, and the errors
        return cells

    def _time(self, key: str, value: str, record: dict[str, object], owner: str) -> str:
        """The instant in the clinic's zone; the text as it is when it is already that."""
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        offset = moment.utcoffset() if moment is not None else None
        if offset is None:
            return self.sink._cell(key, record, owner)  # refused as `instant` refuses it
        local = moment.astimezone(self.sink.zone)
        return iso_text(value, moment) if local.utcoffset() == offset else local.isoformat()


def defuse(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets a quote."""
    return "'" + text if text.startswith(_FORMULA_LEADS) else text
