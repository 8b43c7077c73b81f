"""One run at a time per output folder.

Two runs writing one folder (an hourly sweep still going when the next starts, an
event-triggered re-plan during a sweep) would interleave letters, documents and the
scratch files. A run holds an exclusive lock on `DIR/.carepath.lock` for its whole
length; another run waits for it, saying so, and gives up after `wait` seconds with a
message naming the folder and the process holding it. The lock is the kernel's (flock):
it goes away with its process, even one killed with -9, so it never goes stale.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".carepath.lock"
DEFAULT_WAIT_S = 600.0


class FolderBusy(Exception):
    """Another run kept the output folder for longer than we were willing to wait."""


@contextmanager
def output_lock(out: Path, *, wait: float = DEFAULT_WAIT_S,
                note: Callable[[str], None] | None = None) -> Iterator[None]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if time.monotonic() >= deadline:
                    raise FolderBusy(f"another carepath run{holder} is still using {out} after {wait:g} s of "
                                     f"waiting; let it finish, or give this run another --out folder") from None
                if not told and note is not None:
                    note(f"another carepath run{holder} is using {out}; waiting for it to finish")
                    told = True
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""
