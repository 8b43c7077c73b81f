"""Lookup tables derived once per compiled pathway, so that folding an event asks a dict
instead of scanning every rule and step (the fold runs millions of times per sweep).

Cached by object identity: `CompiledPathway` holds dicts, so it is not hashable; the
entry goes away with the pathway.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from carepath.compile import compiled as c


@dataclass(frozen=True)
class Tables:
    rules_by_type: dict[str, tuple[c.Rule, ...]]      # rules listening to an event type, in file order
    resets_by_type: dict[str, tuple[str, ...]]        # rule ids whose streak an event type resets
    closing_types: frozenset[str]                     # event types some step is done or cancelled by
    breaches_by_type: dict[str, tuple[c.Hold, ...]] = None  # type: ignore[assignment]  # holds an event type breaks
    bookings_by_type: dict[str, tuple[c.Hold, ...]] = None  # type: ignore[assignment]  # holds an event type books past
    dose_types: frozenset[str] = frozenset()          # event types completing early-tolerant recurring work


def _build(p: c.CompiledPathway) -> Tables:
    rules: dict[str, list[c.Rule]] = {}
    resets: dict[str, list[str]] = {}
    for rule in p.rules:
        for event_type in rule.on:
            rules.setdefault(event_type, []).append(rule)
        for event_type in rule.reset_by:
            resets.setdefault(event_type, []).append(rule.id)
    closing = frozenset(t for step in p.steps.values() for t in (*step.done_by, *step.cancelled_by))
    breaches: dict[str, list[c.Hold]] = {}
    bookings: dict[str, list[c.Hold]] = {}
    for hold in p.holds.values():
        for event_type in hold.breached_by:
            breaches.setdefault(event_type, []).append(hold)
        for event_type in hold.booked_by:
            bookings.setdefault(event_type, []).append(hold)
    doses = frozenset(t for stage in p.stages.values() for r in stage.recurring if r.early_tolerance is not None
                      for t in p.steps[r.step].done_by if t not in ("task_completed", "decision_recorded"))
    return Tables({k: tuple(v) for k, v in rules.items()}, {k: tuple(v) for k, v in resets.items()}, closing,
                  {k: tuple(v) for k, v in breaches.items()}, {k: tuple(v) for k, v in bookings.items()}, doses)


_CACHE: dict[int, tuple[weakref.ref, Tables]] = {}


def tables(p: c.CompiledPathway) -> Tables:
    key = id(p)
    entry = _CACHE.get(key)
    if entry is not None and entry[0]() is p:
        return entry[1]
    built = _build(p)
    _CACHE[key] = (weakref.ref(p, lambda _ref, key=key: _CACHE.pop(key, None)), built)
    return built
