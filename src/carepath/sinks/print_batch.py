"""The print channel of the letters outbox: one PDF of the day's letters for the mail room.

Each due letter is filed like the file channel's (text and HTML under
`letters/YYYY/MM/DD/`), and the day's batch `print/YYYY-MM-DD.pdf` (the run's as-of date
in the clinic's zone) is rebuilt with it: every letter sent to print that day, one after
the other, each starting on a new page. The day's letters are listed in
`print/YYYY-MM-DD.list` (letter ids and their HTML files, no names), so each sweep of the
day adds to the same batch; a letter listed twice (a run killed after the batch was
written, before the ledger recorded it) is printed once. Files are mode 0600.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.letters import LetterError, dated_folder, render_letter, write_letter, write_private
from carepath.sinks.pdf import laid_out


class PrintBatch:
    name = "print"
    kinds = frozenset({OutputKind.LETTER})
    marks_each = True  # calls `on_sent` itself, once the day's batch is written

    def __init__(self, out_dir: Path, compiled: CompiledPathway, patients: Mapping,
                 plans: Mapping[str, PatientPlan], day: str) -> None:
        self.out_dir, self.compiled, self.patients, self.plans, self.day = out_dir, compiled, patients, plans, day
        self.folder = out_dir / "print"

    @property
    def batch(self) -> Path:
        return self.folder / f"{self.day}.pdf"

    def write(self, outputs: Iterable[Output], on_sent: Callable[[str, Sequence[Output]], None] | None = None,
              on_failed: Callable[[Output, str], None] | None = None) -> int:
        outputs = list(outputs)
        if not outputs:
            return 0
        added, done = [], []
        for o in outputs:
            plan = self.plans[o.patient]
            letter = next(l for l in plan.letters if l.id == o.id)
            try:
                rendered = render_letter(self.compiled, self.patients[o.patient], plan, letter)
            except LetterError as exc:
                if on_failed is None:
                    raise
                on_failed(o, exc.reason)
                continue
            done.append(o)
            folder = dated_folder(self.out_dir / "letters", letter.send_at.isoformat())
            write_letter(folder, rendered, pdf=False)
            added.append((o.id, (folder / f"{o.id}.html").relative_to(self.out_dir)))
        if not added:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        listing = self.folder / f"{self.day}.list"
        with open(listing, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # parallel shards add to the same day's batch
            handle.seek(0)
            known = dict(line.rstrip("\n").split("\t", 1) for line in handle if "\t" in line)
            for letter_id, path in added:
                if letter_id not in known:
                    handle.write(f"{letter_id}\t{path}\n")
                    known[letter_id] = str(path)
            handle.flush()
            self._rebuild([self.out_dir / p for p in known.values()])
        if on_sent:
            on_sent(self.name, done)
        return len(done)

    def _rebuild(self, pages: Sequence[Path]) -> None:
        documents = [laid_out(p.read_text(encoding="utf-8"), self.compiled.clinic.paper) for p in pages]
        every_page = [page for d in documents for page in d.pages]
        write_private(self.batch, documents[0].copy(every_page).write_pdf())
