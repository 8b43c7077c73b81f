"""Seeded synthetic cohorts for the reference pathway (`pathways/ketamine-iv.yaml`).

For benchmarks, demos and tests: no real people. Names come from small built-in lists,
refs are pseudonymous (`p-000123`), and every value is drawn from a `random.Random`
seeded per patient from (seed, patient number), so a patient's history does not depend
on how many others are generated and the same arguments give byte-identical files.

What a cohort holds (rates are per patient or per event, tuned so a typical history has
about 30 events): enrolment spread over the period, screening with documented trials
(some too few → records requested, some later re-screened), contraindications
(blocked) and cautions; an initial series of six sessions booked one at a time,
respecting the 44 h minimum gap except for a few deliberate violations (the engine
rejects those bookings; each is re-booked right after); completions, misses (some
consecutive), cancellations; PHQ-9 answers with item 9 > 0 sometimes; integration and
safety tasks and each dose's pre-dose check closed by `task_completed` events carrying
the engine's real task ids;
maintenance boosters and periodic PHQ-9, relapses after remission, rescue sessions, and
a few discharges. Patients live in several IANA zones; patient-reported events carry
the patient's offset, clinic events the clinic's. A feed re-sends a few events (exact
duplicate lines, which readers skip silently).

Output is streamed: patients are generated in chunks of `CHUNK` and each chunk's events
are written in time order, so the events file is not grouped by patient (as a real feed
is not) and 100k patients never sit in memory at once. `--bad-lines K` inserts K lines
that a reader must reject, spread through the file; `synth.json` beside the two files
records the seed, the counts, the mix and every line a plan is expected to reject.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from carepath.engine.ids import output_id

PATHWAY_ID = "ketamine-iv"  # the reference pathway; task ids depend on its id (not its version)
CLINIC_ZONE = ZoneInfo("America/New_York")
MIN_GAP = timedelta(hours=44)
SERIES = 6
CHUNK = 1000

DEFAULT_START = "2025-10-20T00:00:00-04:00"
DEFAULT_AS_OF = "2026-03-05T17:00:00+00:00"

GIVEN = ("Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ines", "Jamal", "Kofi", "Lena",
         "Mateo", "Nia", "Oskar", "Priya", "Quinn", "Rosa", "Sami", "Tariq", "Uma", "Vera", "Wes", "Yuki")
FAMILY = ("Abara", "Byrne", "Castillo", "Dubois", "Eriksen", "Fontaine", "Garcia", "Haddad", "Ivanova",
          "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quispe", "Rossi",
          "Santos", "Tanaka", "Umarov", "Varga", "Whitfield", "Zhou")
# Weighted toward the clinic's own zone; the others exercise letters in the patient's zone.
ZONES = ("America/New_York",) * 6 + ("America/Chicago",) * 2 + (
    "America/Denver", "America/Phoenix", "America/Los_Angeles", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "Europe/London", "America/Puerto_Rico")
CONTRAINDICATIONS = ("aneurysmal_vascular_disease", "intracerebral_haemorrhage", "active_psychosis",
                     "ketamine_hypersensitivity")
CAUTIONS = ("blood_pressure_above_140_90", "psychosis_history", "substance_use_disorder", "pregnancy",
            "cardiovascular_disease")
BAD_KINDS = ("not_json", "naive_time", "unknown_type", "unknown_patient", "phq9_items", "id_conflict")
RESEND_RATE = 0.002


def task_id(ref: str, step: str, key: str) -> str:
    """The id the engine gives this task (see `engine.ids` and the planner's keys)."""
    return output_id("t", PATHWAY_ID, ref, step, key)


@dataclass
class Stats:
    patients: int = 0
    events: int = 0                      # event lines written, bad and duplicate lines included
    by_type: Counter = field(default_factory=Counter)
    mix: Counter = field(default_factory=Counter)
    bad_lines: list[dict[str, object]] = field(default_factory=list)
    gap_violations: list[str] = field(default_factory=list)   # booking ids the engine must reject
    duplicates: int = 0

    def as_json(self) -> dict[str, object]:
        return {"patients": self.patients, "event_lines": self.events, "duplicate_lines": self.duplicates,
                "events_by_type": dict(sorted(self.by_type.items())), "mix": dict(sorted(self.mix.items())),
                "bad_lines": self.bad_lines, "gap_violations": self.gap_violations}


class _Patient:
    """One patient's history, generated forward in time until `as_of`."""

    def __init__(self, seed: int, number: int, start: datetime, as_of: datetime) -> None:
        self.rng = random.Random(f"carepath-synth:{seed}:{number}")
        self.ref = f"p-{number:06d}"
        self.number = number
        self.as_of = as_of
        self.zone = ZoneInfo(self.rng.choice(ZONES))
        self.events: list[tuple[datetime, dict[str, object]]] = []
        self.counter = 0
        self.sessions = 0
        self.mix: Counter = Counter()
        self.gap_violations: list[str] = []
        # The reference pathway detects relapse only after a PHQ-9 below 5 (remission) that
        # no relapse has followed yet; completing a relapse review the engine never
        # created would be a completion naming no real task, which a plan rejects.
        self.remitted = False
        span = (as_of - start).total_seconds() - 2 * 86400
        self.enrolled = self.clinic_time(start + timedelta(seconds=self.rng.uniform(0, span)), 0)

    # --- times ---------------------------------------------------------------------------

    def clinic_time(self, after: datetime, days: int) -> datetime:
        """A weekday clinic-hours instant (09:00-15:30, on the half hour) `days` or more after `after`."""
        day = after.astimezone(CLINIC_ZONE).date() + timedelta(days=days)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        minutes = self.rng.randrange(0, 14) * 30
        return datetime(day.year, day.month, day.day, 9, 0, tzinfo=CLINIC_ZONE) + timedelta(minutes=minutes)

    def home_time(self, after: datetime, days: int) -> datetime:
        """A waking-hours instant in the patient's own zone, `days` after `after`."""
        day = after.astimezone(self.zone).date() + timedelta(days=days)
        local = datetime(day.year, day.month, day.day, 8, 0, tzinfo=self.zone)
        return local + timedelta(minutes=self.rng.randrange(0, 13 * 60))

    # --- events --------------------------------------------------------------------------

    def emit(self, at: datetime, kind: str, data: dict[str, object]) -> str | None:
        """Records an event unless it falls after `as_of` (then the history stops there)."""
        if at > self.as_of:
            return None
        self.counter += 1
        event_id = f"e-{self.number:06d}-{self.counter:03d}"
        self.events.append((at, {"id": event_id, "patient": self.ref, "type": kind, "at": at.isoformat(),
                                 "data": data}))
        return event_id

    def phq9(self, at: datetime, total: int, *, suicidal: bool | None = None) -> str | None:
        rng = self.rng
        if suicidal is None:
            suicidal = rng.random() < 0.05
        item9 = rng.choice((1, 1, 2, 3)) if suicidal else 0
        rest = max(0, min(total - item9, 24))
        items = [0] * 8
        for _ in range(rest):
            open_items = [i for i in range(8) if items[i] < 3]
            items[rng.choice(open_items)] += 1
        items.append(item9)
        data: dict[str, object] = {"instrument": "phq9", "items": items}
        if rng.random() < 0.5:
            data["total"] = sum(items)
        event_id = self.emit(at, "assessment_recorded", data)
        if event_id is not None and sum(items) < 5:
            self.remitted = True
        if event_id is not None and item9 > 0:
            self.mix["item9_positive"] += 1
            if rng.random() < 0.8:  # the same-day structured assessment, done
                self.emit(at + timedelta(hours=rng.uniform(1, 6)), "task_completed",
                          {"task": task_id(self.ref, "suicide_risk_assessment", f"event:{event_id}")})
        return event_id

    def session(self, after: datetime, last_done: datetime | None, *, days: int, violate: bool = False,
                miss_rate: float = 0.08) -> tuple[str, datetime | None, datetime]:
        """Book, then hold, miss or cancel one session. Returns (outcome, completed_at, booked start)."""
        rng = self.rng
        start = self.clinic_time(after, days)
        while last_done is not None and start - last_done < MIN_GAP + timedelta(hours=1):
            start = self.clinic_time(start, 1)
        self.sessions += 1
        sid = f"s-{self.sessions}"
        booked_at = after + timedelta(minutes=rng.randrange(15, 60))
        if violate and last_done is not None:
            # Booked too soon after the last session: the engine must reject it; re-booked at once.
            too_soon = last_done + timedelta(hours=rng.choice((20, 24, 30, 40)))
            bad = self.emit(booked_at, "session_scheduled", {"session": sid, "start": too_soon.isoformat()})
            if bad is not None:
                self.gap_violations.append(bad)
                self.mix["gap_violation"] += 1
            booked_at += timedelta(minutes=20)
        if self.emit(booked_at, "session_scheduled", {"session": sid, "start": start.isoformat()}) is None:
            return "future", None, start
        roll = rng.random()
        if roll < miss_rate:
            self.emit(start + timedelta(minutes=45), "session_missed", {"session": sid})
            self.mix["missed"] += 1
            return "missed", None, start
        if roll < miss_rate + 0.04:
            self.emit(booked_at + (start - booked_at) / 2, "session_cancelled", {"session": sid})
            self.mix["cancelled"] += 1
            return "cancelled", None, start
        # The nurse clears the dose before it (no draw from rng: the cohort's other bytes stay
        # as they were); a dose with the check still open would be a breach.
        self.emit(start - timedelta(minutes=15), "task_completed",
                  {"task": task_id(self.ref, "pre_dose_check", f"session:{sid}")})
        if rng.random() < 0.2:
            self.emit(start + timedelta(minutes=2), "vitals_recorded",
                      {"systolic": rng.randrange(105, 150), "diastolic": rng.randrange(65, 95), "phase": "pre_dose"})
        done = start + timedelta(minutes=rng.randrange(40, 61))
        if self.emit(done, "session_completed", {"session": sid}) is None:
            return "future", None, start
        self.mix["completed"] += 1
        if rng.random() < 0.9:
            self.emit(done + timedelta(hours=rng.uniform(25, 44)), "task_completed",
                      {"task": task_id(self.ref, "integration_psychotherapy", f"session:{sid}")})
        return "completed", done, start

    # --- the history -----------------------------------------------------------------------

    def history(self) -> None:
        rng = self.rng
        t = self.enrolled
        self.emit(t, "enrolled", {})
        t = self.clinic_time(t, rng.randrange(1, 6))
        trials = rng.choices((0, 1, 2, 3, 4), weights=(5, 10, 40, 30, 15))[0]
        contraindicated = rng.random() < 0.04
        screening = self.emit(t, "screening_recorded", {
            "trd_trials": trials,
            "contraindications": [rng.choice(CONTRAINDICATIONS)] if contraindicated else [],
            "cautions": rng.sample(CAUTIONS, rng.choice((1, 1, 2))) if rng.random() < 0.2 else [],
        })
        baseline = rng.randrange(14, 25)
        self.phq9(t + timedelta(minutes=30), baseline, suicidal=rng.random() < 0.12)
        if screening is None:
            return
        if contraindicated:
            self.mix["contraindicated"] += 1
            if rng.random() < 0.5:
                self.emit(t + timedelta(days=rng.randrange(3, 20)), "discharged", {})
            return
        if trials < 2:
            self.mix["records_pending"] += 1
            if rng.random() < 0.4:
                return  # still waiting for records
            t = self.clinic_time(t, rng.randrange(7, 21))
            self.emit(t - timedelta(hours=2), "task_completed",
                      {"task": task_id(self.ref, "records_request", f"event:{screening}")})
            if self.emit(t, "screening_recorded", {"trd_trials": rng.choice((2, 3)), "contraindications": [],
                                                   "cautions": []}) is None:
                return
        self.series(t, baseline)

    def series(self, t: datetime, baseline: int) -> None:
        rng = self.rng
        miss_rate = 0.3 if rng.random() < 0.1 else 0.05  # a few patients miss often (consecutive misses)
        violate_at = rng.randrange(2, SERIES + 1) if rng.random() < 0.03 else None
        completed, last_done, days = 0, None, 3
        while completed < SERIES:
            outcome, done, start = self.session(t, last_done, days=days, violate=violate_at == completed + 1,
                                                miss_rate=miss_rate)
            if outcome == "future":
                return
            if outcome == "completed":
                completed += 1
                last_done, t = done, done
                if completed in (3, SERIES):
                    score = baseline * (0.6 if completed == 3 else rng.choice((0.1, 0.2, 0.25, 0.5, 0.8)))
                    self.phq9(self.home_time(done, 1), int(score))
            else:
                t = start + timedelta(hours=2)
            days = 2
            if rng.random() < 0.005:
                self.emit(self.clinic_time(t, 1), "discharged", {})
                self.mix["discharged"] += 1
                return
        self.mix["entered_maintenance"] += 1
        self.maintenance(t, last_done)

    def maintenance(self, entered: datetime, last_done: datetime | None) -> None:
        rng = self.rng
        relapse_week = rng.choice((2, 4, 6, 8, 10, 12)) if rng.random() < 0.2 else None
        remission = True
        for week in range(2, 60, 2):
            due = entered + timedelta(weeks=week)
            if due > self.as_of:
                return
            if week % 4 == 0 and rng.random() < 0.9:
                outcome, done, _ = self.session(due - timedelta(days=5), last_done, days=5)
                if outcome == "future":
                    return
                if done is not None:
                    last_done = done
            if rng.random() < 0.85:
                relapse = week == relapse_week and remission and self.remitted
                score = rng.randrange(10, 20) if relapse else rng.randrange(0, 8)
                assessed = self.home_time(due, rng.randrange(0, 3))
                event_id = self.phq9(assessed, score)
                if event_id is None:
                    return
                if relapse:
                    self.mix["relapse"] += 1
                    self.remitted = False
                    last_done = self.relapse(assessed, event_id, last_done)
                    if last_done is None:
                        return
            if rng.random() < 0.002:
                self.emit(self.clinic_time(due, 1), "discharged", {})
                self.mix["discharged"] += 1
                return

    def relapse(self, at: datetime, trigger: str, last_done: datetime | None) -> datetime | None:
        """Urgent review, a rescue session and a repeat PHQ-9; None if `as_of` came first."""
        rng = self.rng
        self.emit(at + timedelta(hours=rng.uniform(2, 20)), "task_completed",
                  {"task": task_id(self.ref, "relapse_review", f"event:{trigger}")})
        outcome, done, _ = self.session(at, last_done, days=2, miss_rate=0.02)
        if outcome == "future":
            return None
        if done is not None:
            last_done = done
        if rng.random() < 0.7 and self.phq9(self.home_time(at, 9), rng.randrange(0, 5)) is None:
            return None
        return last_done


def _bad_line(kind: str, k: int, earlier: dict[str, object] | None, as_of: datetime) -> tuple[str, str | None]:
    """One line a reader must reject, and its id (when it has one)."""
    ref = earlier["patient"] if earlier else "p-000001"
    at = (as_of - timedelta(days=1)).isoformat()
    bad_id = f"e-bad-{k:04d}"
    if kind == "not_json":
        return '{"id": "' + bad_id + '", "patient": "' + str(ref) + '", "type": "enrolled", "at": ', None
    if kind == "naive_time":
        row = {"id": bad_id, "patient": ref, "type": "enrolled", "at": at[:19], "data": {}}
    elif kind == "unknown_type":
        row = {"id": bad_id, "patient": ref, "type": "session_complete", "at": at, "data": {"session": "s-1"}}
    elif kind == "unknown_patient":
        row = {"id": bad_id, "patient": "p-unknown", "type": "enrolled", "at": at, "data": {}}
    elif kind == "phq9_items":
        row = {"id": bad_id, "patient": ref, "type": "assessment_recorded", "at": at,
               "data": {"instrument": "phq9", "items": [1, 2, 3, 4, 0, 1, 2, 1, 0]}}
    else:  # id_conflict: an id already used, with different content
        assert earlier is not None
        row = dict(earlier, at=at)
        return json.dumps(row), str(row["id"])
    return json.dumps(row), bad_id


def generate(out: Path, *, patients: int, seed: int, start: datetime | None = None,
             as_of: datetime | None = None, bad_lines: int = 0) -> Stats:
    """Writes `out/patients.jsonl`, `out/events.jsonl` and `out/synth.json`; returns the stats."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    start = start or datetime.fromisoformat(DEFAULT_START)
    as_of = as_of or datetime.fromisoformat(DEFAULT_AS_OF)
    if start.tzinfo is None or as_of.tzinfo is None:
        raise ValueError("start and as_of must carry a UTC offset")
    if as_of - start < timedelta(days=7):
        raise ValueError("as_of must be at least a week after start")
    out.mkdir(parents=True, exist_ok=True)
    stats = Stats()
    chunks = (patients + CHUNK - 1) // CHUNK
    bad_after = [(j * chunks) // bad_lines for j in range(bad_lines)] if bad_lines else []
    resend = random.Random(f"carepath-synth:{seed}:resend")
    with (out / "patients.jsonl").open("w", encoding="utf-8") as pf, \
         (out / "events.jsonl").open("w", encoding="utf-8") as ef:
        for chunk in range(chunks):
            rows: list[tuple[datetime, dict[str, object]]] = []
            for number in range(chunk * CHUNK + 1, min(patients, (chunk + 1) * CHUNK) + 1):
                person = _Patient(seed, number, start, as_of)
                pf.write(json.dumps(_patient_row(person)) + "\n")
                person.history()
                rows.extend(person.events)
                stats.mix.update(person.mix)
                stats.gap_violations.extend(person.gap_violations)
                stats.patients += 1
            rows.sort(key=lambda r: (r[0].astimezone(UTC), r[1]["id"]))
            for _, row in rows:
                line = json.dumps(row)
                ef.write(line + "\n")
                stats.events += 1
                stats.by_type[row["type"]] += 1
                if resend.random() < RESEND_RATE:  # an at-least-once feed sends it again
                    ef.write(line + "\n")
                    stats.events += 1
                    stats.duplicates += 1
            for k in [k for k, after in enumerate(bad_after) if after == chunk]:
                kind = BAD_KINDS[k % len(BAD_KINDS)]
                earlier = rows[resend.randrange(len(rows))][1] if rows else None
                if kind == "id_conflict" and earlier is None:
                    kind = "not_json"
                text, bad_id = _bad_line(kind, k, earlier, as_of)
                ef.write(text + "\n")
                stats.events += 1
                stats.bad_lines.append({"line": stats.events, "id": bad_id, "kind": kind})
    manifest = {"seed": seed, "start": start.isoformat(), "as_of": as_of.isoformat(), **stats.as_json()}
    (out / "synth.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return stats


def _patient_row(person: _Patient) -> dict[str, object]:
    rng = person.rng
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    row: dict[str, object] = {"patient": person.ref, "given_name": given, "family_name": family}
    if rng.random() < 0.9:  # the rest get the clinic's zone by default
        row["timezone"] = person.zone.key
    else:
        person.zone = CLINIC_ZONE
    if rng.random() < 0.85:
        row["email"] = f"{given.lower()}.{family.lower()}.{person.number}@example.org"
    return row
