"""The vocabulary of a semantic diff (`diff.py`): its sections, the kinds of change, a
`Change` with its sentence, and a `Fact` — an aspect's compiled value (`key`, compared)
with the text the author wrote (shown) — and how two sets of facts compare."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from carepath.compile import compiled as c
from carepath.review.load import Reviewed
from carepath.review.words import actions_text, events_text


class Section(StrEnum):
    """Headings of a diff, in the order a reviewer reads them."""

    PATHWAY = "Pathway"
    CLINIC = "Clinic"
    PARAMETERS = "Parameters"
    STAGES = "Stages and transitions"
    STEPS = "Steps (clinician tasks)"
    LETTERS = "Letters"
    RULES = "Rules"
    VOCABULARY = "Flags, roles and event types"


class Kind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class Subject:
    """What a change is about: a template with `{}` for each name, e.g. 'Parameter {} [CLINIC]'."""

    template: str
    names: tuple[str, ...] = ()

    def render(self, name: Callable[[str], str] = str) -> str:
        return self.template.format(*(name(n) for n in self.names))


@dataclass(frozen=True)
class Change:
    section: Section
    kind: Kind
    subject: Subject
    aspect: str = ""     # what changed, e.g. "window due"; empty for added/removed
    old: str = ""
    new: str = ""
    suffix: str = ""     # context both values share, e.g. "after the session_completed event"
    code: bool = False   # old/new are expressions or literal values (shown as code in Markdown)
    note: str = ""       # e.g. "used by rule relapse"

    def sentence(self) -> str:
        subject = self.subject.render()
        if self.kind is Kind.ADDED:
            return f"{subject}: added" + (f" ({self.new})" if self.new else "")
        if self.kind is Kind.REMOVED:
            return f"{subject}: removed" + (f" (was {self.old})" if self.old else "")
        tail = (f" {self.suffix}" if self.suffix else "") + (f" ({self.note})" if self.note else "")
        return f"{subject}: {self.aspect} changed from {self.old} to {self.new}{tail}"


@dataclass(frozen=True)
class PathwayDiff:
    old: Reviewed
    new: Reviewed
    changes: tuple[Change, ...]

    @property
    def differs(self) -> bool:
        return bool(self.changes)

    @property
    def version_not_bumped(self) -> bool:
        """Behaviour changed under the same version: ids and provenance would not tell them apart."""
        o, n = self.old.compiled, self.new.compiled
        return self.differs and o.id == n.id and o.version == n.version

    def by_section(self) -> dict[Section, list[Change]]:
        grouped: dict[Section, list[Change]] = {}
        for section in Section:
            found = [ch for ch in self.changes if ch.section is section]
            if found:
                grouped[section] = found
        return grouped


@dataclass(frozen=True)
class Fact:
    key: Hashable
    text: str
    suffix: str = ""
    code: bool = False
    note: str = ""

    @property
    def full(self) -> str:
        return f"{self.text} {self.suffix}".strip()

    @property
    def phrase(self) -> str:
        """`full` for prose: 'at the triggering event' rather than '0 h after the triggering event'."""
        if self.text.startswith("0 ") and self.suffix.startswith("after "):
            return f"at {self.suffix.removeprefix('after ')}"
        return self.full


NONE = Fact(None, "none")
Facts = dict[str, Fact]


def compare(section: Section, subject: Subject, old: Facts, new: Facts) -> list[Change]:
    changes = []
    for aspect in dict.fromkeys([*old, *new]):
        o, n = old.get(aspect, NONE), new.get(aspect, NONE)
        if o.key == n.key:
            continue
        code, note = o.code or n.code, n.note or o.note
        if o.suffix == n.suffix:
            changes.append(Change(section, Kind.CHANGED, subject, aspect, o.text, n.text, o.suffix, code, note))
        else:
            changes.append(Change(section, Kind.CHANGED, subject, aspect, o.full, n.full, code=code, note=note))
    return changes


def keyed(section: Section, old: Mapping[str, object], new: Mapping[str, object],
           subject: Callable[[str, object], Subject], facts: Callable[[str, object, Reviewed], Facts],
           summary: Callable[[str, object, Reviewed], str], old_r: Reviewed, new_r: Reviewed) -> list[Change]:
    """Added, changed and removed items of a named collection (new order first, then removals)."""
    changes = []
    for name, item in new.items():
        if name not in old:
            changes.append(Change(section, Kind.ADDED, subject(name, item), new=summary(name, item, new_r)))
        else:
            changes += compare(section, subject(name, item), facts(name, old[name], old_r),
                                facts(name, item, new_r))
    for name, item in old.items():
        if name not in new:
            changes.append(Change(section, Kind.REMOVED, subject(name, item), old=summary(name, item, old_r)))
    return changes


def order_change(section: Section, subject: Subject, aspect: str, old: list[str], new: list[str]) -> list[Change]:
    """A change of evaluation order among the items both versions have."""
    common = set(old) & set(new)
    o, n = [x for x in old if x in common], [x for x in new if x in common]
    if o == n:
        return []
    return [Change(section, Kind.CHANGED, subject, aspect, ", ".join(o), ", ".join(n))]


def plain(value: Hashable, text: str | None = None, *, code: bool = False) -> Fact:
    return Fact(value, str(value) if text is None else text, code=code)


def actions_fact(actions: tuple[c.Action, ...]) -> Fact:
    return Fact(actions, actions_text(actions))


def condition_fact(condition: c.Condition | None) -> Fact:
    if condition is None:
        return Fact(None, "always")
    text = " ".join(condition.source.split())
    return Fact(text, text, code=True)


def events_fact(events: frozenset[str] | None) -> Fact:
    return Fact(events, events_text(events))


def names_fact(names: frozenset[str] | tuple[str, ...]) -> Fact:
    return Fact(frozenset(names), ", ".join(sorted(names)) or "none")
