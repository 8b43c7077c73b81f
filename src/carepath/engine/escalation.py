"""Acknowledgement and escalation of urgent or safety work, evaluated at `as_of`.

A task of an urgent or safety step is *unseen* from when it opens (its `earliest`) until
it is acknowledged (`task_acknowledged`) or closed, and *overdue* (a safety step only)
from its due until it is closed, acknowledged or not. Escalation belongs to the patient,
not to each task, so that one patient's repeated work is one escalation (one
notification), not one per task:

- an *unseen period* is a stretch of time in which the patient has at least one unseen
  task. It escalates to the first tier one delay after it began (the in-hours delay when
  the clinic was open at that moment, the out-of-hours delay otherwise), and to each next
  tier after the same delay again. A period ends when every task in it is acknowledged
  or closed: acknowledging stops the ladder;
- an *overdue period* is a stretch in which the patient has at least one open safety task
  past its due. It escalates when it begins and again every `repeat`;
- an *episode* is a stretch in which either kind of period runs. Each escalation moment
  of an episode reaches the next tier (the last tier repeats); a new episode starts
  again at the first tier.

Every open task that takes part at `as_of` (unseen, or a safety task past its due) shows
the same `{"tier", "since", "next_at"}`; the others (acknowledged and not overdue, closed,
or in an episode that has not reached a tier yet) show null. Every moment is a pure
function of the plan's tasks, the acknowledgements and the time: the plan's wake includes
the next one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from carepath.compile import compiled as c
from carepath.engine import calendar as cal
from carepath.engine.clock import AsOf, Moment
from carepath.engine.result import Acknowledgement, EscalationState, PlannedTask


@dataclass(frozen=True, slots=True)
class _Span:
    start: datetime
    end: datetime | None  # None: still running with no new event


def settle(p: c.CompiledPathway, tasks: Sequence[PlannedTask], acks: Mapping[str, Acknowledgement],
           closed: Callable[[str], datetime | None],
           as_of: datetime | AsOf) -> tuple[list[PlannedTask], datetime | None]:
    """The plan's tasks with their acknowledgement and escalation fields, and the next
    instant (at or after `as_of`) at which the patient's escalation moves on its own.

    `closed` says when a task was done or withdrawn (None: still open, or an overdue
    escalation step the plan derived). Given the plan's `AsOf`, the instant returned is
    that of every comparison it has seen (the plan's wake so far)."""
    if not isinstance(as_of, AsOf):
        as_of = AsOf(as_of)
    out = list(tasks)
    if acks:
        out = [t if t.id not in acks else dataclasses.replace(t, acknowledged_by=acks[t.id].by,
                                                              acknowledged_at=acks[t.id].at.astimezone(p.clinic.zone))
               for t in out]
    policy = p.escalation
    if policy is None:
        return out, None
    unseen: list[tuple[int, _Span]] = []
    overdue: list[tuple[int, _Span]] = []
    # Most of a patient's tasks are routine: one set lookup each decides.
    escalating = {name for name, step in p.steps.items() if c.escalates(step)}
    for i, task in enumerate(out):
        if task.step not in escalating:
            continue
        step = p.steps[task.step]
        end = closed(task.id)
        ack = acks.get(task.id)
        seen = ack.at if ack is not None else None
        stop = _earliest(end, seen)
        if stop is None or stop > task.earliest:
            unseen.append((i, _Span(task.earliest, stop)))
        if step.safety and task.due is not None and (end is None or end > task.due):
            overdue.append((i, _Span(task.due, end)))
    if not unseen and not overdue:
        return out, as_of.wake

    moments: list[tuple[datetime, int]] = []  # (instant, episode number)
    episodes = _merge([s for _, s in unseen] + [s for _, s in overdue])
    for period in _merge([s for _, s in unseen]):
        delay = policy.delay_in_hours if _open_at(p.clinic, period.start) else policy.delay_out_of_hours
        for k in range(1, len(policy.tiers) + 1):
            moment = period.start + k * delay
            if period.end is not None and moment >= period.end:
                break  # acknowledged (or closed) in time: the ladder stops here
            moments.append((moment, _episode_of(episodes, moment)))
    for period in _merge([s for _, s in overdue]):
        for moment in _repeats(period, policy.repeat, len(policy.tiers), as_of):
            moments.append((moment, _episode_of(episodes, moment)))
    moments = sorted(set(moments))

    reached: dict[int, tuple[int, datetime]] = {}  # episode → (tiers climbed, when the latest was reached)
    previous = -1
    for moment, number in moments:
        if as_of.at_or_before(moment):
            break
        level = reached[number][0] + 1 if number == previous else 1
        reached[number], previous = (level, moment), number
    ahead = [m for m, _ in moments if as_of.at_or_before(m)]
    now = _episode_now(episodes, as_of)
    running = now if now >= 0 and _inside_now(episodes[now], as_of) else None
    spans: dict[int, list[_Span]] = {}
    for i, span in (*unseen, *overdue):
        spans.setdefault(i, []).append(span)
    zone = p.clinic.zone
    for i, own in spans.items():
        if out[i].status not in ("open", "overdue"):
            continue
        if running is not None and running in reached and any(_inside_now(s, as_of) for s in own):
            # Taking part now: the patient's one escalation, whichever task began it.
            number = running
            following = next((m for m, n in moments if as_of.at_or_before(m) and n == running), None)
        else:
            # Acknowledged after a tier was reached: it shows that tier, and when its
            # own work escalates next (a safety task's due), if ever.
            mine = [n for m, n in moments if as_of.after(m) and any(_inside(s, m) for s in own)]
            if not mine:
                continue
            number = mine[-1]
            following = next((m for m in ahead if any(_inside(s, m) for s in own)), None)
        level, since = reached[number]
        out[i] = dataclasses.replace(out[i], escalation=EscalationState(
            policy.tiers[min(level, len(policy.tiers)) - 1], since.astimezone(zone),
            following.astimezone(zone) if following is not None else None))
    # A task opening later joins the escalation running then: its fields change at that
    # instant, which `_inside_now` above has compared with the as-of.
    return out, as_of.wake


def _repeats(period: _Span, every: timedelta, tiers: int, as_of: Moment) -> list[datetime]:
    """The moments of an overdue period that decide the plan: the first `tiers` (after
    them every moment reaches the last tier), the last one before `as_of` (`since`) and
    the first one at or after it (`next_at`, the wake). A period years long costs the same."""
    start, end = period.start, period.end
    picked = [start + j * every for j in range(tiers)]
    if end is not None and as_of.after(end):  # a period that ended keeps its last moment
        before = Moment(end).steps_after(start, every)
    else:
        before = as_of.steps_after(start, every)  # moments start + k*every before the as-of
    picked += [start + (before - 1) * every, start + before * every] if before else [start]
    return [m for m in picked if end is None or m < end]


def _open_at(clinic: c.ClinicCalendar, moment: datetime) -> bool:
    """Whether the clinic is open at `moment` (its opening instant included, its closing one not)."""
    local = moment.astimezone(clinic.zone)
    return any(opens <= local.time() < closes for opens, closes in cal.open_spans(clinic, local.date()))


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


def _merge(spans: list[_Span]) -> list[_Span]:
    """Overlapping or touching spans joined into maximal ones, in time order."""
    merged: list[_Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and (merged[-1].end is None or span.start <= merged[-1].end):
            last = merged[-1]
            end = None if last.end is None or span.end is None else max(last.end, span.end)
            merged[-1] = _Span(last.start, end)
        else:
            merged.append(span)
    return merged


def _episode_of(episodes: list[_Span], moment: datetime) -> int:
    """The index of the last episode starting at or before `moment` (-1: none has)."""
    found = -1
    for k, span in enumerate(episodes):
        if span.start <= moment:
            found = k
    return found


def _inside(span: _Span, moment: datetime) -> bool:
    return span.start <= moment and (span.end is None or moment < span.end)


def _episode_now(episodes: list[_Span], as_of: Moment) -> int:
    """`_episode_of` at the as-of."""
    found = -1
    for k, span in enumerate(episodes):
        if as_of.at_or_after(span.start):
            found = k
    return found


def _inside_now(span: _Span, as_of: Moment) -> bool:
    """`_inside` at the as-of."""
    return as_of.at_or_after(span.start) and (span.end is None or as_of.before(span.end))

