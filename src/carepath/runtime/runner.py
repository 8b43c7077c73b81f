"""The job behind `carepath run`: one recorded Prefect flow run of the sweep.

Prefect's own settings decide where the run is recorded: `PREFECT_API_URL` when set,
otherwise Prefect's temporary local server with its database under `PREFECT_HOME`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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
        from carepath.pinning import VersionReused
        from carepath.sinks.letters import LetterError

        return isinstance(self.cause, (OSError, InvalidInput, VersionReused, LookupError, LetterError))


@contextmanager
def _scratch_removed(out: Path) -> Iterator[None]:
    """The run's scratch folder (shard files, which hold names) goes with the run, also
    when it is interrupted (Ctrl-C, or SIGTERM which the CLI turns into the same)."""
    try:
        yield
    finally:
        shutil.rmtree(out / ".carepath-work", ignore_errors=True)


def _call(flow, api_url: str | None, **parameters):
    """Run the flow; Prefect losing its server mid-run is a service failure, not a bug."""
    import httpx

    from carepath.runtime.server import ServiceUnavailable

    try:
        return flow(**parameters)
    except (httpx.TransportError, ConnectionError) as exc:
        raise ServiceUnavailable(f"the Prefect server at {api_url or 'the temporary local server'}",
                                 f"{type(exc).__name__}: {exc}") from None
    except RuntimeError as exc:
        if "Failed to reach API" not in str(exc):
            raise
        raise ServiceUnavailable(f"the Prefect server at {api_url or 'the temporary local server'}",
                                 f"{exc} Check PREFECT_API_URL.") from None


@dataclass(frozen=True)
class RunResult:
    flow_run_id: str
    summary: dict
    out: Path
    api_url: str | None  # None: recorded by the temporary local server


def run_job(pathway: str, patients: str, events: str, out: str, as_of: datetime | None = None, *,
            shard_size: int | None = None, ledger_url: str | None = None, pdf: bool = True,
            workers: int = 1, migration: str | None = None) -> RunResult:
    from prefect.settings import (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
                                  temporary_settings)

    from carepath.runtime.flows import DEFAULT_SHARD_SIZE, sweep
    from carepath.runtime.server import check_api, start_temporary_server, startup_budget

    flow = sweep
    if workers > 1:
        from carepath.runtime.parallel import dask_runner, sweep_parallel

        flow = sweep_parallel.with_options(task_runner=dask_runner(workers))
    api_url = PREFECT_API_URL.value() or None
    # With the temporary server nothing watches for crashed runs: heartbeats would only
    # cost a second per run. Against a real server, Prefect's own settings apply.
    overrides = {} if api_url else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                                    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: startup_budget()}
    with temporary_settings(overrides), _scratch_removed(Path(out)):
        if api_url:
            check_api(api_url)
        else:
            start_temporary_server(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        state = _call(flow, api_url, pathway=str(Path(pathway).resolve()), patients=str(Path(patients).resolve()),
                     events=str(Path(events).resolve()), out=str(Path(out).resolve()),
                     as_of=as_of.isoformat() if as_of else None,
                     shard_size=shard_size or DEFAULT_SHARD_SIZE, ledger_url=ledger_url, pdf=pdf,
                     migration=str(Path(migration).resolve()) if migration else None, return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    if not state.is_completed():
        cause = state.result(raise_on_failure=False)
        # Prefect recorded only the error's type; this console may show its message.
        cause = getattr(cause, "original", None) or cause
        raise RunFailed(flow_run_id, str(cause) if isinstance(cause, BaseException) else (state.message or state.name),
                        cause if isinstance(cause, BaseException) else None)
    return RunResult(flow_run_id, state.result(), Path(out), api_url)

