"""Where each patient's line is in the patients file, so one patient can be read alone.

An event-triggered re-plan needs one patient's record; reading the whole patients file
for it cost time in proportion to the cohort. Every sweep reads the whole file anyway and
records here, per valid patient, the line `read_patients` accepted (number, offset,
length) with the file's stamp (size, modification and change times, inode). While the
stamp is unchanged the file is the one indexed, and a patient is read from their line;
otherwise the whole file is read (and indexed) again. Refs and offsets only: no names.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from sqlalchemy import select

from carepath.records import Patient, read_patients
from carepath.records.readers import read_patient_at
from carepath.records.types import Rejection
from carepath.sinks.ledger.dialect import chunks, serialize_writers
from carepath.sinks.ledger.schema import file_table, where_table


def _stamp(path: str | Path) -> tuple[str, str]:
    resolved = Path(path).resolve()
    st = os.stat(resolved)
    return str(resolved), f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


class PatientsIndex:
    def __init__(self, engine, pathway: str) -> None:  # noqa: ANN001 - the ledger's SQLAlchemy Engine
        self.engine, self.pathway = engine, pathway

    def read_all(self, path: str | Path, default_timezone: str) -> tuple[dict[str, Patient], list[Rejection]]:
        """`read_patients`, indexing the file when it is not the one indexed."""
        where: dict[str, tuple[int, int, int]] = {}
        patients, rejected = read_patients(path, default_timezone=default_timezone, where=where)
        try:
            resolved, stamp = _stamp(path)
        except OSError:
            return patients, rejected  # read, then gone: nothing to index
        with self.engine.begin() as conn:
            # Under the writers' lock: runs sharing the ledger that index one file at once
            # would each delete nothing and insert the same rows.
            serialize_writers(conn, f"patients-index:{self.pathway}")
            known = conn.execute(select(file_table.c.path, file_table.c.stamp).where(
                file_table.c.pathway == self.pathway)).first()
            if known is not None and tuple(known) == (resolved, stamp):
                return patients, rejected
            conn.execute(where_table.delete().where(where_table.c.pathway == self.pathway))
            rows = [{"pathway": self.pathway, "patient": ref, "line": n, "offset": o, "length": size}
                    for ref, (n, o, size) in where.items()]
            for chunk in chunks(rows):
                conn.execute(where_table.insert(), chunk)
            conn.execute(file_table.delete().where(file_table.c.pathway == self.pathway))
            conn.execute(file_table.insert().values(
                pathway=self.pathway, path=resolved, stamp=stamp,
                rejected=orjson.dumps([[r.line, r.id, r.reason] for r in rejected]).decode()))
        return patients, rejected

    def refs(self, path: str | Path, default_timezone: str) -> tuple[set[str], list[Rejection]]:
        """The refs of the file's valid patients and its rejected lines: from the index while
        the file is the one indexed (a sweep's report needs no names), else read again."""
        resolved, stamp = _stamp(path)
        with self.engine.connect() as conn:
            known = conn.execute(select(file_table.c.path, file_table.c.stamp, file_table.c.rejected).where(
                file_table.c.pathway == self.pathway)).first()
            if known is not None and (known.path, known.stamp) == (resolved, stamp):
                refs = {r for (r,) in conn.execute(select(where_table.c.patient).where(
                    where_table.c.pathway == self.pathway))}
                return refs, [Rejection(line, ref, reason, "patients")
                              for line, ref, reason in orjson.loads(known.rejected)]
        patients, rejected = self.read_all(path, default_timezone)
        return set(patients), rejected

    def one(self, path: str | Path, ref: str, default_timezone: str) -> Patient | None:
        """One patient's record (None: no valid line of theirs), read from their line while
        the file is the one indexed."""
        resolved, stamp = _stamp(path)
        with self.engine.connect() as conn:
            known = conn.execute(select(file_table.c.path, file_table.c.stamp).where(
                file_table.c.pathway == self.pathway)).first()
            line = conn.execute(select(where_table.c.line, where_table.c.offset, where_table.c.length).where(
                where_table.c.pathway == self.pathway, where_table.c.patient == ref)).first()
        if known is not None and tuple(known) == (resolved, stamp):
            if line is None:
                return None
            found = read_patient_at(path, ref, tuple(line), default_timezone=default_timezone)  # type: ignore[arg-type]
            if found is not None:
                return found
        return self.read_all(path, default_timezone)[0].get(ref)

    def some(self, path: str | Path, refs: list[str], default_timezone: str) -> dict[str, Patient]:
        """The records of these patients (those with a valid line), each read from its line
        while the file is the one indexed; else the whole file is read once."""
        if not refs:
            return {}
        resolved, stamp = _stamp(path)
        lines: dict[str, tuple[int, int, int]] = {}
        with self.engine.connect() as conn:
            known = conn.execute(select(file_table.c.path, file_table.c.stamp).where(
                file_table.c.pathway == self.pathway)).first()
            if known is not None and tuple(known) == (resolved, stamp):
                for chunk in chunks(refs):
                    rows = conn.execute(select(where_table.c.patient, where_table.c.line, where_table.c.offset,
                                               where_table.c.length).where(
                        where_table.c.pathway == self.pathway, where_table.c.patient.in_(chunk)))
                    lines.update((r.patient, (r.line, r.offset, r.length)) for r in rows)
        if known is not None and tuple(known) == (resolved, stamp):
            found = {ref: read_patient_at(path, ref, line, default_timezone=default_timezone)
                     for ref, line in lines.items()}
            if all(p is not None for p in found.values()):
                return {ref: p for ref, p in found.items() if p is not None}
        everyone = self.read_all(path, default_timezone)[0]
        return {ref: everyone[ref] for ref in refs if ref in everyone}
