"""The job behind `carepath run`: one recorded Prefect flow run of the sweep.

Prefect's own settings decide where the run is recorded: `PREFECT_API_URL` when set,
otherwise Prefect's temporary local server with its database under `PREFECT_HOME`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect.settings import PREFECT_API_URL

from carepath.loading import InvalidInput
from carepath.orchestrator.pinning import VersionReused
from carepath.orchestrator.sequence import AllLinesRejected, MigrationRejectedLines
from carepath.outlock import FolderBusy
from carepath.runtime.flows import DEFAULT_SHARD_SIZE, sweep
from carepath.runtime.parallel import pool_runner, sweep_parallel
from carepath.runtime.server import ServiceUnavailable, check_api, start_temporary_server, startup_budget
from carepath.settings import SettingMissing
from carepath.sinks.email import SmtpUnavailable
from carepath.sinks.ledger import LedgerProblem, LedgerUnavailable, check_ledger, default_url, shown_url
from carepath.sinks.letters import LetterError
from carepath.sinks.storage import LocationRefused


class RunFailed(Exception):
    def __init__(self, flow_run_id: str, message: str, cause: BaseException | None = None) -> None:
        self.flow_run_id = flow_run_id
        self.cause = cause
        super().__init__(message)

    @property
    def user_error(self) -> bool:
        """Caused by the inputs or the machine (fix and re-run), not by a bug."""
        from sqlalchemy.exc import DatabaseError

        # DatabaseError: the ledger file is corrupt, read-only, or its disk is full.
        return isinstance(self.cause, (OSError, InvalidInput, VersionReused, LookupError, LetterError, FolderBusy,
                                       LedgerProblem, DatabaseError, AllLinesRejected, SettingMissing,
                                       LocationRefused, MigrationRejectedLines))


def _check_ledger(ledger_url: str | None, out: Path) -> None:
    """The ledger before Prefect starts (seconds): a database that does not answer is a
    service failure; a corrupt or missing one (LedgerProblem) is the user's to fix."""
    try:
        check_ledger(ledger_url or default_url(out), out)
    except LedgerUnavailable as exc:
        raise ServiceUnavailable(exc.service, exc.detail) from None


def _call(flow, api_url: str | None, **parameters):
    """Run the flow; Prefect losing its server mid-run is a service failure, not a bug."""
    import httpx

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


def service_failure(cause: object, flow_run_id: str) -> Exception | None:
    """A run that failed because a service outside carepath kept failing (the mail server)
    is exit 69 naming it, not a user error: nothing is wrong with the inputs, and the letters
    it did not take stay in the outbox for the next run."""
    if isinstance(cause, SmtpUnavailable) and getattr(cause, "answered", False):
        return ServiceUnavailable("the SMTP server", f"{cause} (flow run {flow_run_id}). Letters it did not take "
                                  "stay in the outbox and go with the next run.", answered=True)
    if isinstance(cause, SmtpUnavailable):
        return ServiceUnavailable("the SMTP server", f"{cause} (flow run {flow_run_id}). Letters it did not take "
                                  "stay in the outbox and go with the next run; check CAREPATH_SMTP_HOST and "
                                  "CAREPATH_SMTP_PORT (or the CAREPATH_SMTP_BLOCK block).")
    return None


@dataclass(frozen=True)
class RunResult:
    flow_run_id: str
    summary: dict
    out: Path
    api_url: str | None  # None: recorded by the temporary local server


def run_job(pathway: str, patients: str, events: str, out: str, as_of: datetime | None = None, *,
            shard_size: int | None = None, ledger_url: str | None = None, pdf: bool = True,
            workers: int = 1, migration: str | None = None, full: bool = False, export: bool = False) -> RunResult:
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )
    from sqlalchemy.exc import DatabaseError

    flow, parallel = sweep, {}
    if workers > 1:
        flow, parallel = sweep_parallel.with_options(task_runner=pool_runner(workers)), {"workers": workers}
    _check_ledger(ledger_url, Path(out))
    api_url = PREFECT_API_URL.value() or None
    # With the temporary server nothing watches for crashed runs: heartbeats would only
    # cost a second per run. Against a real server, Prefect's own settings apply.
    overrides = {} if api_url else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                                    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: startup_budget()}
    with temporary_settings(overrides):
        if api_url:
            check_api(api_url)
        else:
            start_temporary_server(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        state = _call(flow, api_url, pathway=str(Path(pathway).resolve()), patients=str(Path(patients).resolve()),
                     events=str(Path(events).resolve()), out=str(Path(out).resolve()),
                     as_of=as_of.isoformat() if as_of else None,
                     shard_size=shard_size or DEFAULT_SHARD_SIZE, ledger_url=ledger_url, pdf=pdf,
                     migration=str(Path(migration).resolve()) if migration else None, full=full, export=export,
                     return_state=True, **parallel)
    flow_run_id = str(state.state_details.flow_run_id)
    if not state.is_completed():
        cause = state.result(raise_on_failure=False)
        # Prefect recorded only the error's type; this console may show its message.
        cause = getattr(cause, "original", None) or cause
        if (unavailable := service_failure(cause, flow_run_id)) is not None:
            raise unavailable
        if isinstance(cause, DatabaseError):  # word it without the SQL statement and its rows
            raise RunFailed(flow_run_id, f"the ledger {shown_url(ledger_url or default_url(Path(out)))} failed: "
                            f"{cause.orig}", cause)
        raise RunFailed(flow_run_id, str(cause) if isinstance(cause, BaseException) else (state.message or state.name),
                        cause if isinstance(cause, BaseException) else None)
    return RunResult(flow_run_id, state.result(), Path(out), api_url)

