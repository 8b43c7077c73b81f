"""What every semantic check receives, and the walk over all action lists."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from carepath.codes import Code
from carepath.diagnostics import Diagnostic, Severity
from carepath.model.events import CORE_EVENTS
from carepath.model.pathway import DataField, Pathway
from carepath.source.loader import KeyPath, LoadedSource


@dataclass
class CheckContext:
    pathway: Pathway
    source: LoadedSource
    base_dir: Path
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def report(self, path: KeyPath, code: Code, message: str, hint: str = "", *,
               key: bool = False, severity: Severity = Severity.ERROR) -> None:
        pos = self.source.locate(path, key=key)
        self.diagnostics.append(
            Diagnostic(self.source.path, pos.line, pos.col, str(code), message, hint, severity)
        )

    def event_fields(self, event_type: str) -> dict[str, DataField] | None:
        if event_type in CORE_EVENTS:
            return CORE_EVENTS[event_type]
        declared = self.pathway.events.get(event_type)
        return dict(declared.data) if declared is not None else None

    @property
    def event_types(self) -> set[str]:
        return set(CORE_EVENTS) | set(self.pathway.events)


@dataclass(frozen=True)
class ActionSite:
    """One list of actions, where it sits, and which event types can trigger it."""

    path: KeyPath
    actions: list
    triggers: list[str] | None  # None: stage entry or any event; data anchors unavailable


def action_sites(pathway: Pathway) -> Iterator[ActionSite]:
    for i, rule in enumerate(pathway.rules):
        yield ActionSite(("rules", i, "then"), rule.then, rule.on)
        yield ActionSite(("rules", i, "until_confirmed"), rule.until_confirmed, rule.on)
    for name, stage in pathway.stages.items():
        yield ActionSite(("stages", name, "on_enter"), stage.on_enter, None)
        for k, transition in enumerate(stage.transitions):
            yield ActionSite(("stages", name, "transitions", k, "then"), transition.then, transition.on)
    for name, hold in pathway.holds.items():
        yield ActionSite(("holds", name, "on_breach"), hold.on_breach, hold.breached_by)
        yield ActionSite(("holds", name, "on_booking"), hold.on_booking, hold.booked_by)
