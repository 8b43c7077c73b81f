"""The `deliver-letters` step: drain the letters queue, each letter exactly once.

Planning only queues the letters that are due and never sent (`Ledger.queue_letters`);
this step runs after the worklist is written, so a mail server that is down never keeps
the clinicians' worklist stale. Each batch of letters is claimed in the ledger first (a
lease, one conditional update: `Ledger.claim_letters`), so any number of processes
sharing the ledger — an hourly sweep and an event-triggered re-plan, workers on several
hosts — send a letter once. A letter is rendered from what the ledger holds (its body and
its patient's care-plan summary) and the patient's line in the patients file, so any
process can deliver what another queued.

One patient's bad data is that patient's problem: a letter that cannot be rendered, an
address that is not one mailbox, a recipient the mail server refuses for good — each is
recorded as failed for that letter with a reason free of patient data, and the others
go on. A mail server that keeps failing stops the step: what it did not take is released
for the next delivery, and the step reports it (the run then ends with exit 69).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan, PlannedLetter, PlannedSession
from carepath.orchestrator.patients_index import PatientsIndex
from carepath.orchestrator.spec import RunSpec
from carepath.sinks.base import Output, OutputKind
from carepath.sinks.ledger import Ledger
from carepath.sinks.letters import DUE

LEASE = timedelta(minutes=15)  # a claim a process of another host left is taken over after this
BATCH = 256                    # letters claimed (and rendered, held in memory) at a time


@dataclass(frozen=True)
class Delivered:
    """What one delivery did, in counts (no names, no addresses)."""

    sent: int = 0
    failed: int = 0          # letters that failed this time (each recorded with its reason)
    queued: int = 0          # letters left on the queue, failed ones included
    unavailable: str = ""    # the mail server that kept failing, when it did (PHI-free)


def _parse(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def letter_from(body: dict) -> PlannedLetter:
    send_at = _parse(body["send_at"])
    assert send_at is not None
    return PlannedLetter(str(body["id"]), str(body["letter"]), str(body["template"]), send_at,
                         str(body["trigger"]), str(body["source"]), body.get("session"),  # type: ignore[arg-type]
                         _parse(body.get("expires_at")), str(body["status"]))


def plan_from(ref: str, careplan: dict, letters: list[PlannedLetter]) -> PatientPlan:
    """As much of the patient's plan as a letter's context reads: the sessions it names."""
    sessions = tuple(PlannedSession(str(s["id"]), str(s["status"]), _parse(s.get("start")),
                                    _parse(s.get("completed_at"))) for s in careplan.get("sessions", ()))
    return PatientPlan(ref, str(careplan.get("stage", "")), str(careplan.get("status", "")),
                       tuple(careplan.get("flags", ())), tuple(careplan.get("holds", ())), (), tuple(letters),
                       sessions)


def _host() -> str:
    return socket.gethostname()[:40]


def _token() -> str:
    """A claim's token: this host and process (so a process of this host can tell a claim
    whose process died) and a random part."""
    return f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _release_the_dead(ledger: Ledger, pathway: str) -> None:
    """Claims left by a process of this host that no longer runs (a run killed outright)
    are given back at once rather than when their lease ends; claims of other hosts wait
    for their lease."""
    for token in ledger.claimants(pathway, f"{_host()}:"):
        _, pid, _ = token.rsplit(":", 2)
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            ledger.release(pathway, token)


def deliver_letters(spec: RunSpec, patients_path: str | Path, ledger: Ledger, patient: str | None = None,
                    *, now: datetime | None = None) -> Delivered:
    """Claim, render and send the queued letters (only `patient`'s with one), batch by
    batch, until the queue holds nothing this step may take."""
    from carepath.orchestrator.letter_channels import letter_channel
    from carepath.orchestrator.pinned_plans import archived
    from carepath.sinks.email import SmtpUnavailable

    compiled = spec.compiled
    tokens: list[str] = []
    index = PatientsIndex(ledger.engine, compiled.id)
    sent = failed = 0
    unavailable = ""
    versions: dict[str, CompiledPathway | str] = {compiled.version: compiled}
    _release_the_dead(ledger, compiled.id)
    try:
        while not unavailable:
            clock = (now or datetime.now(UTC)).astimezone(UTC)
            token = _token()
            tokens.append(token)
            claimed = ledger.claim_letters(compiled.id, token, clock.isoformat(), (clock + LEASE).isoformat(), BATCH,
                                           patient)
            if not claimed:
                break
            ids = [letter_id for letter_id, _ in claimed]
            rows = ledger.delivery_rows(compiled.id, ids)
            # Sent meanwhile (by another process), expired, withdrawn or no longer planned: not to be sent.
            pending = {o.id for o in ledger.unsent([Output(i, OutputKind.LETTER, "", {}) for i in rows])}
            gone = [i for i in ids if i not in pending or rows[i][0].get("status") != DUE]
            ledger.unqueue(compiled.id, gone)
            live = [(i, ref) for i, ref in claimed if i not in set(gone)]
            reasons: dict[str, str] = {}
            people = index.some(patients_path, sorted({ref for _, ref in live}), compiled.clinic.zone.key)
            by_version: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for letter_id, ref in live:
                body, careplan = rows[letter_id]
                if ref not in people:
                    reasons[letter_id] = "the patient has no valid line in the patients file"
                elif careplan is None:
                    reasons[letter_id] = "the patient's care plan is not in the ledger"
                else:
                    by_version[str(body.get("pathway_version", compiled.version))].append((letter_id, ref))
            for version, group in sorted(by_version.items()):
                if version not in versions:
                    versions[version] = archived(ledger, spec.pathway, compiled.id, version)
                rules = versions[version]
                if isinstance(rules, str):
                    reasons.update((i, f"its pathway version {version} cannot be loaded: {rules}") for i, _ in group)
                    continue
                letters: dict[str, list[PlannedLetter]] = defaultdict(list)
                for letter_id, ref in group:
                    letters[ref].append(letter_from(rows[letter_id][0]))
                plans = {ref: plan_from(ref, rows[group_letters[0].id][1] or {}, group_letters)
                         for ref, group_letters in letters.items()}
                outputs = [Output(i, OutputKind.LETTER, ref, rows[i][0]) for i, ref in group]
                sink = letter_channel(rules, spec.out, people, plans, spec.pdf, spec.as_of, spec.smtp)
                done: list[int] = [0]

                def on_sent(channel: str, outs, _done=done) -> None:  # noqa: ANN001
                    ledger.settle_sent(compiled.id, channel, [o.id for o in outs], spec.as_of.isoformat(), spec.run)
                    _done[0] += len(outs)

                def on_failed(output: Output, reason: str) -> None:
                    reasons[output.id] = reason

                try:
                    sink.write(outputs, on_sent=on_sent, on_failed=on_failed)
                except SmtpUnavailable as exc:
                    unavailable = str(exc)
                sent += done[0]
                if unavailable:
                    break
            if reasons:
                ledger.settle_failed(compiled.id, token, reasons)
                failed += len(reasons)
            if unavailable:
                break
    finally:
        # What this step still holds goes back to the queue, also when it failed (a
        # retry takes it at once); a process killed outright leaves it to its lease.
        for token in tokens:
            ledger.release(compiled.id, token)
    left = ledger.queued(compiled.id)
    return Delivered(sent, failed, sum(left.values()), unavailable)
