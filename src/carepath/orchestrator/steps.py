"""Every step of a run, declared once: its name, whether running it again is harmless,
and how often the runtime may retry it.

The sequence (carepath.orchestrator.sequence) hands an executor the `Step` with the
function that does it; an executor that can retry (the Prefect adapter in
carepath.runtime.flows) reads the policy from here, never from the step's name. A step
that is not idempotent is never retried: a declaration that says otherwise is refused
when this module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Step:
    name: str                        # the step's name in logs and Prefect task run names
    idempotent: bool                 # running it again (after a crash, or twice) emits nothing twice
    retries: int = 0                 # further tries when it raised
    retry_delay_seconds: float = 0.0
    why: str = ""                    # why this policy (for the reader of the registry)

    def __post_init__(self) -> None:
        if self.retries and not self.idempotent:
            raise ValueError(f"step {self.name!r} is retried but not idempotent: a retry could emit twice")

    def __str__(self) -> str:
        return self.name

    def about(self, subject: str) -> Step:
        """The same step for one shard, patient or pass: named after it, same policy."""
        return replace(self, name=f"{self.name}-{subject}")


def _writes(name: str) -> Step:
    """A step that writes outputs or documents and records what it did in the ledger: a
    retry after a failure (the ledger's server gone for a moment) redoes only what is missing."""
    return Step(name, idempotent=True, retries=2, retry_delay_seconds=1.0,
                why="idempotent: the ledger records what was done, a retry redoes only what is missing")


ARCHIVE_PATHWAY = Step("archive-pathway-version", idempotent=True,
                       why="a failure here is a reused version or a ledger that cannot be used: retrying cannot help")
CHOOSE_PATIENTS = Step("choose-patients", idempotent=True,
                       why="reads the inputs; a failure is an input to fix, not a moment to wait out")
PLAN_AND_EMIT = _writes("plan-and-emit")
REPLAN_PATIENT = _writes("replan-patient")
ANNOUNCE_FACTS = Step("announce-facts", idempotent=False,
                      why="a fact announced before a failure would be announced again: at least once, not retried")
WRITE_WORKLIST = _writes("write-worklist")
REPORT_COHORT = _writes("report-cohort")
WRITE_CHANGES = _writes("write-changes")
# The mail server already had its tries inside the step (CAREPATH_SMTP_ATTEMPTS), and a
# server that stays down ends the step without an error (the run then reports it): what
# is retried here is the ledger failing under it. Each letter is claimed before it is
# sent, so a retry never sends one twice.
DELIVER_LETTERS = Step("deliver-letters", idempotent=True, retries=3, retry_delay_seconds=5.0,
                       why="letters are claimed in the ledger before they are sent: a retry sends none twice")
EXPORT_DOCUMENTS = _writes("export-documents")
WRITE_PATIENT_RECORD = _writes("write-patient-record")
SCHEDULE_TIMERS = Step("schedule-timers", idempotent=True,
                       why="a timer missed is made again by the next sweep; not worth holding the run for")

STEPS: tuple[Step, ...] = (ARCHIVE_PATHWAY, CHOOSE_PATIENTS, PLAN_AND_EMIT, REPLAN_PATIENT, ANNOUNCE_FACTS,
                           WRITE_WORKLIST, REPORT_COHORT, WRITE_CHANGES, DELIVER_LETTERS, EXPORT_DOCUMENTS,
                           WRITE_PATIENT_RECORD, SCHEDULE_TIMERS)
