"""One run's resolved context, settled once at the edge and passed inward.

The pathway is read and compiled once: every shard (in this process or in a worker
process, which receives the spec pickled) plans under exactly the rules whose source was
archived in the ledger, even if the file is edited while the run goes on. The as-of is a
typed, timezone-aware instant from here on; nothing below re-parses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from carepath.compile.compiled import CompiledPathway
from carepath.loading import load_pathway_text
from carepath.orchestrator.pinning import Migration, source_digest
from carepath.sinks.email import SmtpSettings
from carepath.sinks.ledger import default_url
from carepath.sinks.storage import DOCUMENTS_ENV


def parse_as_of(text: str | None, clock: datetime | None = None) -> datetime:
    """The as-of instant from its ISO text (which must carry an offset), or `clock`
    (a scheduled sweep's now, to the second) when none is given."""
    if text is None:
        return (clock or datetime.now(UTC)).replace(microsecond=0)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"as_of {text!r} has no UTC offset")
    return value


@dataclass(frozen=True)
class RunSpec:
    pathway: Path                  # the file read (for messages and relative template paths)
    source: bytes = field(repr=False)
    digest: str                    # of `source`; what the ledger archives under the version
    compiled: CompiledPathway = field(repr=False, compare=False)
    as_of: datetime
    out: Path
    ledger_url: str
    run: str                       # the run's id in the ledger (Prefect's flow run id under Prefect)
    pdf: bool = True
    migration: Migration | None = None
    # Where the cohort-wide documents and patient records go: a folder or an fsspec URL
    # that workers on several hosts share; "" is `out`. Settled here, so every step of a
    # run (in any process) writes to the same place.
    documents_url: str = ""
    # The email channel's SMTP settings when the runtime resolved them (a Prefect block is
    # read there, where Prefect may be imported); None: the sinks read CAREPATH_SMTP_*.
    smtp: SmtpSettings | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("a run's as-of must be timezone-aware")

    @property
    def documents(self) -> str | Path:
        return self.documents_url or self.out

    @classmethod
    def resolve(cls, pathway: str | Path, out: str | Path, as_of: datetime, run: str, *,
                ledger_url: str | None = None, pdf: bool = True, migration: Migration | None = None,
                documents_url: str | None = None) -> RunSpec:
        """Read and compile the pathway once; InvalidInput when it is not valid. The
        documents' location: `documents_url`, else CAREPATH_DOCUMENTS_URL, else `out`."""
        path = Path(pathway).resolve()
        source = path.read_bytes()
        compiled = load_pathway_text(path, source, str(pathway))
        out_dir = Path(out).resolve()
        return cls(path, source, source_digest(source), compiled, as_of, out_dir, ledger_url or default_url(out_dir),
                   run, pdf, migration, documents_url or os.environ.get(DOCUMENTS_ENV, ""))
