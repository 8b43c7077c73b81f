"""The job behind `carepath run`: one recorded Prefect flow run of the sweep.

Prefect's own settings decide where the run is recorded: `PREFECT_API_URL` when set,
otherwise Prefect's temporary local server with its database under `PREFECT_HOME`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect.settings import PREFECT_API_URL


class RunFailed(Exception):
    def __init__(self, flow_run_id: str, message: str, cause: BaseException | None = None) -> None:
        self.flow_run_id = flow_run_id
        self.cause = cause
        super().__init__(message)

    @property
    def user_error(self) -> bool:
        """Caused by the inputs or the machine (fix and re-run), not by a bug."""
        from carepath.api import InvalidInput
        from carepath.orchestrator.pinning import VersionReused

        return isinstance(self.cause, (OSError, InvalidInput, VersionReused, LookupError))


@dataclass(frozen=True)
class RunResult:
    flow_run_id: str
    summary: dict
    out: Path
    api_url: str | None  # None: recorded by the temporary local server


def run_job(pathway: str, patients: str, events: str, out: str, as_of: datetime | None = None, *,
            shard_size: int | None = None, ledger_url: str | None = None, pdf: bool = True,
            workers: int = 1, migration: str | None = None) -> RunResult:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from carepath.runtime.flows import DEFAULT_SHARD_SIZE, sweep

    flow, parallel = sweep, {}
    if workers > 1:
        from carepath.runtime.parallel import pool_runner, sweep_parallel

        flow, parallel = sweep_parallel.with_options(task_runner=pool_runner(workers)), {"workers": workers}
    api_url = PREFECT_API_URL.value() or None
    # With the temporary server nothing watches for crashed runs: heartbeats would only
    # cost a second per run. Against a real server, Prefect's own settings apply.
    overrides = {} if api_url else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    with temporary_settings(overrides):
        state = flow(pathway=str(Path(pathway).resolve()), patients=str(Path(patients).resolve()),
                     events=str(Path(events).resolve()), out=str(Path(out).resolve()),
                     as_of=as_of.isoformat() if as_of else None,
                     shard_size=shard_size or DEFAULT_SHARD_SIZE, ledger_url=ledger_url, pdf=pdf,
                     migration=str(Path(migration).resolve()) if migration else None, return_state=True,
                     **parallel)
    flow_run_id = str(state.state_details.flow_run_id)
    if not state.is_completed():
        cause = state.result(raise_on_failure=False)
        raise RunFailed(flow_run_id, str(cause) if isinstance(cause, BaseException) else (state.message or state.name),
                        cause if isinstance(cause, BaseException) else None)
    return RunResult(flow_run_id, state.result(), Path(out), api_url)

