"""A served demo cohort for the `carepath serve` tests: examples/demo swept once (no
Prefect), then copied for each test, with accounts for each role and clocks the tests
move (the site's and the sessions')."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from carepath.orchestrator import sequence
from carepath.orchestrator.spec import RunSpec
from carepath.serve.access import AccessStore
from carepath.serve.app import Settings, create_app
from carepath.serve.site import Site

ROOT = Path(__file__).resolve().parents[1]
PATHWAY = ROOT / "pathways" / "ketamine-iv.yaml"
DEMO = ROOT / "examples" / "demo"
AS_OF = datetime.fromisoformat("2026-03-05T17:00:00+00:00")
PASSWORD = "a long enough password"
ACCOUNTS = {"pat": "prescriber", "theo": "psychotherapist", "cora": "care_coordinator", "nina": "nurse",
            "ada": "admin"}


def swept(folder: Path) -> Path:
    """examples/demo swept as of AS_OF into `folder` (cohort/ and out/)."""
    shutil.copytree(DEMO, folder / "cohort")
    spec = RunSpec.resolve(PATHWAY, folder / "out", AS_OF, "sweep", pdf=False)
    sequence.sweep(spec, folder / "cohort" / "patients.jsonl", folder / "cohort" / "events.jsonl")
    return folder


@dataclass
class Clock:
    now: datetime = AS_OF
    seconds: float = 1_800_000_000.0

    def site(self) -> datetime:
        return self.now

    def access(self) -> float:
        return self.seconds

    def advance(self, delta: timedelta) -> None:
        self.now += delta
        self.seconds += delta.total_seconds()


@dataclass
class Served:
    folder: Path
    site: Site
    access: AccessStore
    clock: Clock
    app: object
    hashes: dict[str, str] = field(default_factory=dict)

    @property
    def events(self) -> Path:
        return self.folder / "cohort" / "events.jsonl"

    @property
    def patients(self) -> Path:
        return self.folder / "cohort" / "patients.jsonl"


def serve_copy(template: Path, folder: Path, settings: Settings = Settings(), accounts: Path | None = None) -> Served:
    shutil.copytree(template, folder, dirs_exist_ok=True)
    clock = Clock()
    access = AccessStore(folder / "out" / "access.sqlite", clock=clock.access)
    site = Site([PATHWAY], f"sqlite:///{folder / 'out' / 'ledger.sqlite'}", folder / "cohort" / "patients.jsonl",
                folder / "cohort" / "events.jsonl", folder / "out", clock.site, pdf=False)
    return Served(folder, site, access, clock, create_app(site, access, settings))


def with_accounts(template: Path) -> None:
    """The accounts, added once to the template (argon2 is deliberately slow)."""
    store = AccessStore(template / "out" / "access.sqlite")
    roles = frozenset(ACCOUNTS.values())
    for name, role in ACCOUNTS.items():
        store.add_user(name, role, PASSWORD, roles)
