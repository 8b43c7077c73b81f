"""What one run did, in counts: the summary the console, the Prefect artifacts and the
run's JSON show (no patient data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from carepath.compile.compiled import CompiledPathway
from carepath.orchestrator.cohort_report import CohortReport
from carepath.orchestrator.delivery import Delivered
from carepath.orchestrator.letter_channels import channel_of
from carepath.orchestrator.workload import Workload
from carepath.records import Rejection
from carepath.sinks.ledger import Recorded

LETTER_STATUSES = ("scheduled", "due", "expired", "withdrawn")  # a plan letter's status at the run's as-of


@dataclass(frozen=True)
class ShardReport:
    """What the `plan-and-emit` step did for one shard (or one patient)."""

    shard: str
    patients: int
    events: int
    recorded: Recorded
    letters_queued: int   # due letters put on the delivery queue
    workload: Workload
    rejected: tuple[Rejection, ...]
    facts: int = 0  # new facts of urgent or safety work recorded for on-call (carepath.orchestrator.notices)
    # (patient, wake) of each plan that next changes with no new event: when a timer may re-plan it
    wakes: tuple[tuple[str, datetime], ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """What one run did, in counts (safe for Prefect, logs and the console)."""

    pathway: str
    version: str
    as_of: str
    shards: int
    events: int
    recorded: Recorded
    letters_written: int
    workload: Workload
    rejected: int
    documents: dict[str, int | None]
    replanned: int = 0  # patients planned by this run (the others' plans could not have changed)
    versions: dict[str, int] = field(default_factory=dict)  # pathway version → patients pinned to it
    letters_failed: int = 0   # letters whose rendering or sending failed this run (each recorded with its reason)
    letters_queued: int = 0   # letters still waiting on the delivery queue after this run, failed ones included
    undelivered_because: str = ""  # the mail server that kept failing (PHI-free), when one did
    facts: int = 0      # new facts of urgent or safety work recorded for on-call
    # (patient, wake) of the re-planned patients whose plan next changes with no new event
    wakes: tuple[tuple[str, datetime], ...] = ()
    letter_channel: str = "file"  # the channel this run delivered through (file, email, print)

    @property
    def older(self) -> int:
        """Patients who stay on an older version than the pathway file's (until migrated)."""
        return sum(n for v, n in self.versions.items() if v != self.version)

    @classmethod
    def of(cls, compiled: CompiledPathway, as_of: datetime, reports: Sequence[ShardReport], rejected: int,
           documents: dict[str, int | None], cohort: CohortReport | None = None,
           versions: dict[str, int] | None = None,
           delivered: Delivered | None = None) -> RunSummary:
        """`cohort`: the whole cohort's report (a sweep re-plans few patients): its workload,
        and every current output not new or changed counts as unchanged; else the reports'."""
        recorded, work = Recorded(), Workload()
        for r in reports:
            recorded, work = recorded + r.recorded, work + r.workload
        if cohort is not None:
            work = cohort.workload
            unchanged = max(0, cohort.outputs - recorded.new - recorded.changed)
            recorded = Recorded(recorded.new, recorded.changed, unchanged, recorded.retired)
        delivered = delivered or Delivered()
        return cls(compiled.id, compiled.version, as_of.isoformat(), len(reports), sum(r.events for r in reports),
                   recorded, delivered.sent, work, rejected, documents, sum(r.patients for r in reports),
                   dict(versions or {}), delivered.failed, delivered.queued, delivered.unavailable,
                   sum(r.facts for r in reports), tuple(w for r in reports for w in r.wakes), channel_of(compiled))

    def as_json(self) -> dict[str, object]:
        return {
            "pathway": self.pathway, "version": self.version, "as_of": self.as_of, "shards": self.shards,
            "patients": self.workload.patients, "replanned": self.replanned, "events": self.events,
            "outputs": {"new": self.recorded.new, "changed": self.recorded.changed,
                        "unchanged": self.recorded.unchanged, "retired": self.recorded.retired},
            "letters_written": self.letters_written, "letter_channel": self.letter_channel,
            "letters_failed": self.letters_failed,
            "letters_queued": self.letters_queued, "letters_planned": self.workload.letters,
            "letters_by_status": {status: self.workload.letter_statuses.get(status, 0) for status in LETTER_STATUSES},
            "open_tasks": [{"role": role, "priority": prio, "count": n}
                           for (role, prio), n in sorted(self.workload.open_tasks.items())],
            "overdue": self.workload.overdue,
            "patients_by_status": dict(sorted(self.workload.statuses.items())),
            "patients_needing_attention": self.workload.attention,
            "rejected_lines": self.rejected,
            "documents_rewritten": sorted(k for k, v in self.documents.items() if v is not None),
            "versions_in_force": dict(sorted(self.versions.items())),
            "patients_on_older_versions": self.older,
        }
