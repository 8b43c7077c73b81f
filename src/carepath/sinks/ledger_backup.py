"""`carepath backup`: a consistent copy of a SQLite ledger, taken while sweeps run.

Copying `ledger.sqlite` with `cp` while a sweep writes can catch half a transaction (and
misses what still sits in `ledger.sqlite-wal`). SQLite's online backup API copies the
database as one read transaction sees it: every committed transaction, none half. In WAL
mode readers never block writers, so a running sweep is not held up. The copy is written
under a temporary name (0600: it holds every event's clinical data), checked with
`PRAGMA quick_check`, then moved into place.

Restore is a file copy back (see docs/operations.md): stop the runs that use the ledger,
copy the backup over `ledger.sqlite`, remove `ledger.sqlite-wal` and `ledger.sqlite-shm`
beside it, start again. A PostgreSQL ledger is backed up with `pg_dump`, which takes the
same kind of consistent snapshot; this command refuses it and says so.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from carepath.sinks.ledger import LedgerProblem, shown_url


@dataclass(frozen=True)
class BackedUp:
    source: str
    target: Path
    size: int


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite ledger URL (or of a plain path), or None for another database."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if "://" not in url:
        return Path(url)
    return None


def backup_ledger(url: str, target: str | Path) -> BackedUp:
    """Copy the ledger at `url` to `target` consistently; LedgerProblem (exit 1) otherwise."""
    path = sqlite_path(url)
    if path is None:
        raise LedgerProblem(
            f"{shown_url(url)} is not a SQLite ledger: back up a PostgreSQL ledger with pg_dump, which takes a "
            "consistent snapshot while sweeps run, e.g. pg_dump --format=custom --file=ledger.dump "
            "'postgresql://carepath@db.example/carepath' (restore: pg_restore --clean --dbname=...); see "
            "docs/operations.md")
    if not path.is_file():
        raise LedgerProblem(f"there is no ledger at {path}")
    target = Path(target)
    if target.exists() and not target.is_file():
        raise LedgerProblem(f"--to {target} is not a file")
    if target.resolve() == path.resolve():
        raise LedgerProblem("--to names the ledger itself: give another file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o600)
    try:
        # Read-only: a backup never creates, upgrades or writes the ledger it copies.
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            copy = sqlite3.connect(tmp)
            try:
                source.backup(copy)  # one step: the snapshot one read transaction sees
                (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
            finally:
                copy.close()
        finally:
            source.close()
        if verdict != "ok":
            raise LedgerProblem(f"the copy of {path} failed its integrity check ({verdict}): the ledger may be "
                                "damaged; keep the earlier backups")
        os.replace(tmp, target)
    except sqlite3.DatabaseError as exc:
        raise LedgerProblem(f"the ledger {path} cannot be copied ({exc}): is it a carepath ledger?") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return BackedUp(str(path), target, target.stat().st_size)
