"""Reaching Prefect before a run starts: the server named by `PREFECT_API_URL`, or
Prefect's temporary local server, started here with a budget that fits a loaded machine
and tied to this process's life.

Prefect gives its temporary server 20 s to answer (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS);
a busy 2-core machine needs 30-60 s, so unless the user chose a value we allow
`STARTUP_BUDGET_S`. Either way a server that does not answer is a service failure the
user can act on (exit 69), not a bug.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

STARTUP_BUDGET_S = 180
_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


class ServiceUnavailable(Exception):
    """A service the run needs did not answer (or, `answered`, answered but refused what
    the run needs of it); the message names it and the setting to change."""

    def __init__(self, service: str, message: str, *, answered: bool = False) -> None:
        self.service = service
        super().__init__(f"{service} refused: {message}" if answered else f"{service} did not answer: {message}")


def startup_budget() -> int:
    """Seconds the temporary server may take to answer: the user's setting when they set
    one (environment or profile), otherwise at least `STARTUP_BUDGET_S`."""
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return ephemeral.startup_timeout_seconds
    return max(STARTUP_BUDGET_S, ephemeral.startup_timeout_seconds)


def _parent_death_signal():
    """A preexec function that makes the child receive SIGTERM when this process dies,
    even by SIGKILL (Linux prctl PR_SET_PDEATHSIG); None where that does not exist."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        prctl = ctypes.CDLL(name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return set_signal


@contextmanager
def _children_die_with_us() -> Iterator[None]:
    """While Prefect launches its server, every Popen it makes gets the death signal: a
    run killed with -9 then leaves no orphaned server holding its database."""
    preexec = _parent_death_signal()
    if preexec is None:
        yield
        return
    original = subprocess.Popen

    def popen(*args, **kwargs):
        kwargs.setdefault("preexec_fn", preexec)
        return original(*args, **kwargs)

    subprocess.Popen = popen  # type: ignore[misc]  # only for the one launch below, in this thread
    try:
        yield
    finally:
        subprocess.Popen = original  # type: ignore[misc]


class _Watched:
    """The server process as Prefect's start-up loop sees it: Prefect polls only for the
    exit code 3 (port taken, retried) and would otherwise wait out the whole budget for a
    process that has already died (e.g. PREFECT_HOME not writable)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._process = process

    def __getattr__(self, name: str):
        return getattr(self._process, name)

    def poll(self) -> int | None:
        code = self._process.poll()
        if code not in (None, 3):
            raise RuntimeError(f"the server process exited with code {code} before it answered (its own "
                               "output, above, says why)")
        return code


def start_temporary_server(budget: int) -> None:
    """Start Prefect's temporary server now (Prefect's own clients then reuse it)."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    launch = server._run_uvicorn_command

    def launch_tied():
        with _children_die_with_us():
            return _Watched(launch())

    server._run_uvicorn_command = launch_tied  # type: ignore[method-assign]
    try:
        server.start(timeout=budget)
    except RuntimeError as exc:
        server.stop()
        detail = str(exc).split(" stdout:")[0]
        raise ServiceUnavailable(
            "Prefect's temporary local server",
            f"{detail} (waited {budget} s). On a busy machine set {_SETTING} to a larger number of seconds, or "
            "keep a server running with 'prefect server start --background' and set PREFECT_API_URL to it "
            "(e.g. http://127.0.0.1:4200/api).") from None


def check_api(api_url: str) -> None:
    """The Prefect server named by PREFECT_API_URL answers its health check."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise ServiceUnavailable(
            f"the Prefect server at {api_url}",
            f"{type(problem).__name__}: {problem}. Start it ('prefect server start --background') or set "
            "PREFECT_API_URL to a server that is running (unset it to use a temporary local server).")
