"""What on-call must be told: the facts of urgent and safety work, each recorded once.

A re-plan reads each plan's open urgent or safety tasks (priority `urgent`, or a step the
pathway marks `safety: true`) and names the facts they state:

- `task.raised`: the task exists and is open;
- `hold.breached`: the task is a hold's breach review (its provenance `hold:<name>:breach`);
- `task.escalated`: the task reached an escalation tier (`escalation.tier` since `since`);
- `task.acknowledged`: someone acknowledged it.

A fact is recorded in the ledger (`notified_facts`, keyed by pathway and fact) before it
is announced and marked announced after, so a fact is announced once, and again only if a
run died between announcing and marking (the announcement then carries the same id).

Repeats collapse: a raise or an escalation *pages* (`page` true) only when nothing paged
before for the same patient, tier and episode of open safety work (an escalation of that
tier again only once the pathway's `escalation.repeat` has passed since its last page). An episode is a run of
overlapping urgent or safety tasks, from the first one's opening to the last one's
completion, named after the task that opened it; nine breach reviews raised while one
suicide-risk assessment stays open are one episode, so they page once. The other facts are
still announced (a worklist or an audit may want them), with `page` false.

Refs, ids, step and role names and instants only: never a name, an answer or a note.
No Prefect here: the runtime announces what `pending` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

import orjson
from sqlalchemy import select, update

from carepath.compile.compiled import CompiledPathway
from carepath.engine.result import PatientPlan, PlannedTask
from carepath.sinks.ledger.dialect import chunks, serialize_writers
from carepath.sinks.ledger.schema import facts_table

RAISED, ESCALATED, ACKNOWLEDGED, BREACHED = "task.raised", "task.escalated", "task.acknowledged", "hold.breached"
KINDS = (RAISED, BREACHED, ESCALATED, ACKNOWLEDGED)
_ORDER = {kind: n for n, kind in enumerate(KINDS)}
FIRST_TIER = "raised"  # the tier a raise pages (the task's own role on call), before any escalation
ACTIVE = ("open", "overdue")


@dataclass(frozen=True)
class Fact:
    kind: str
    pathway: str
    version: str
    patient: str
    task: str
    step: str
    role: str
    priority: str
    tier: str | None      # the escalation tier reached (task.escalated); None otherwise
    at: str               # when the fact became true (ISO, clinic zone)
    due: str | None
    episode: str          # the task that opened the patient's episode of open safety work
    page: bool = False    # decided when recorded: the first of its (patient, episode, tier)

    @property
    def key(self) -> str:
        if self.kind == ESCALATED:
            return f"{self.kind}|{self.task}|{self.tier}|{self.at}"
        return f"{self.kind}|{self.task}"

    @property
    def page_key(self) -> str | None:
        """What repeats collapse on: one page per patient, tier and episode."""
        if self.kind == RAISED:
            return f"{self.patient}|{self.episode}|{FIRST_TIER}"
        if self.kind == ESCALATED:
            return f"{self.patient}|{self.episode}|{self.tier}"
        return None

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "pathway": self.pathway, "version": self.version, "patient": self.patient,
                "task": self.task, "step": self.step, "role": self.role, "priority": self.priority,
                "tier": self.tier, "at": self.at, "due": self.due, "episode": self.episode, "page": self.page}

    @classmethod
    def from_json(cls, body: dict) -> Fact:
        return cls(**{k: body[k] for k in cls.__dataclass_fields__})


def _field(value: object, name: str) -> object:
    """A field of the engine's escalation (an object or its JSON form)."""
    if value is None:
        return None
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _iso(value: object) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def watched(compiled: CompiledPathway, task: PlannedTask) -> bool:
    """Urgent work, or a step the pathway marks safety-critical."""
    step = compiled.steps.get(task.step)
    return task.priority == "urgent" or bool(step is not None and step.safety)


def episode_of(compiled: CompiledPathway, plan: PatientPlan) -> str | None:
    """The task that opened the patient's current episode of open safety work (None when
    no watched task is open): watched tasks' spans (opening → completion, open ones without
    end) merged where they overlap; the last span is the current one."""
    spans: list[tuple[datetime, datetime | None, str]] = []
    for t in plan.tasks:
        if t.status == "cancelled" or not watched(compiled, t):
            continue
        end = None if t.status in ACTIVE else (t.completed_at or t.earliest)
        spans.append((t.earliest, end, t.id))
    if not any(end is None for _, end, _ in spans):
        return None
    spans.sort(key=lambda s: (s[0], s[2]))
    opener, reach = spans[0][2], spans[0][1]
    for start, end, task in spans[1:]:
        if reach is not None and start > reach:
            opener = task  # a gap: a new episode starts here
        reach = None if reach is None or end is None else max(reach, end)
    return opener


def facts_of(compiled: CompiledPathway, version: str, plan: PatientPlan) -> list[Fact]:
    """The facts one plan states about its open urgent and safety work, in task order
    (`page` not yet decided: see `decide_pages`)."""
    episode = episode_of(compiled, plan)
    if episode is None:
        return []
    facts: list[Fact] = []
    for t in plan.tasks:
        if t.status not in ACTIVE or not watched(compiled, t):
            continue

        def fact(kind: str, at: str, tier: str | None = None, t: PlannedTask = t) -> Fact:
            return Fact(kind, compiled.id, version, plan.patient, t.id, t.step, t.role, t.priority, tier, at,
                        _iso(t.due), episode)

        raised_at = _iso(t.reason_at) or _iso(t.earliest) or ""
        facts.append(fact(RAISED, raised_at))
        if t.source.startswith("hold:") and t.source.endswith(":breach"):
            facts.append(fact(BREACHED, raised_at))
        escalation = getattr(t, "escalation", None)
        if escalation is not None and _field(escalation, "tier"):
            facts.append(fact(ESCALATED, _iso(_field(escalation, "since")) or raised_at,
                              str(_field(escalation, "tier"))))
        acknowledged_at = getattr(t, "acknowledged_at", None)
        if acknowledged_at is not None:
            facts.append(fact(ACKNOWLEDGED, _iso(acknowledged_at) or ""))
    return facts


def decide_pages(facts: Sequence[Fact], known: set[str], paged: dict[str, str],
                 repeat: timedelta | None = None) -> list[Fact]:
    """The facts not `known` yet, each with `page` set: true for the first raise or
    escalation of its (patient, episode, tier) that nothing `paged` before, and for an
    escalation of a tier last paged at least `repeat` before it (the pathway's
    `escalation.repeat`: open safety work past its due is paged again at that interval,
    once for the patient however many of their tasks repeat). `paged` (page key → instant
    of its last page) and `known` grow."""
    new: list[Fact] = []
    for f in facts:
        if f.key in known:
            continue
        known.add(f.key)
        pk = f.page_key
        page = pk is not None and pk not in paged
        if pk is not None and not page and f.kind == ESCALATED and repeat is not None:
            page = _instant(f.at) - _instant(paged[pk]) >= repeat
        if page:
            paged[pk] = f.at  # type: ignore[index]
        new.append(Fact(**{**f.__dict__, "page": page}))
    return new


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def link_to(base_url: str | None, patient: str) -> str | None:
    """The patient's page in `carepath serve` (`<base>/patients/<ref>`), when it runs somewhere."""
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/patients/{quote(patient, safe='')}"


class Notices:
    """The `notified_facts` table of one pathway: what was recorded and announced."""

    def __init__(self, engine, pathway: str) -> None:  # noqa: ANN001 - the ledger's SQLAlchemy Engine
        self.engine, self.pathway = engine, pathway

    def record(self, compiled: CompiledPathway, version: str, plans: Iterable[PatientPlan], run: str) -> list[Fact]:
        """Record the new facts these plans state (with their page decision); the new ones."""
        facts = [f for p in plans for f in facts_of(compiled, version, p)]
        if not facts:
            return []
        patients = sorted({f.patient for f in facts})
        known: set[str] = set()
        paged: dict[str, str] = {}
        t = facts_table
        escalation = getattr(compiled, "escalation", None)
        repeat = escalation.repeat if escalation is not None else None
        with self.engine.begin() as conn:
            serialize_writers(conn, f"facts:{self.pathway}")  # one fact, one row, whoever records it first
            for chunk in chunks(patients):
                rows = conn.execute(select(t.c.fact, t.c.page_key, t.c.body).where(
                    t.c.pathway == self.pathway, t.c.patient.in_(chunk)))
                for fact, page_key, body in rows:
                    known.add(fact)
                    if page_key is not None:
                        at = orjson.loads(body)["at"]
                        if page_key not in paged or _instant(at) > _instant(paged[page_key]):
                            paged[page_key] = at
            new = decide_pages(facts, known, paged, repeat)
            if new:
                conn.execute(t.insert(), [
                    {"pathway": self.pathway, "fact": f.key, "patient": f.patient, "kind": f.kind,
                     "page_key": f.page_key if f.page else None, "body": orjson.dumps(f.as_json()).decode(),
                     "run": run, "announced": 0} for f in new])
        return new

    def pending(self, limit: int | None = None) -> list[Fact]:
        """Recorded facts not yet announced."""
        t = facts_table
        query = select(t.c.body).where(t.c.pathway == self.pathway, t.c.announced == 0).order_by(t.c.fact)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            facts = [Fact.from_json(orjson.loads(body)) for (body,) in conn.execute(query)]
        # In the order they happened to a patient: raised before escalated before acknowledged.
        return sorted(facts, key=lambda f: (f.patient, _ORDER[f.kind], f.at, f.task))

    def has_pending(self) -> bool:
        t = facts_table
        with self.engine.connect() as conn:
            return conn.execute(select(t.c.fact).where(t.c.pathway == self.pathway, t.c.announced == 0)
                                .limit(1)).first() is not None

    def mark_announced(self, facts: Iterable[Fact]) -> None:
        keys = [f.key for f in facts]
        t = facts_table
        with self.engine.begin() as conn:
            for chunk in chunks(keys):
                conn.execute(update(t).where(t.c.pathway == self.pathway, t.c.fact.in_(chunk)).values(announced=1))
