"""Argument types shared by the CLI's commands: a wrong value is a usage error (exit 2)."""

from __future__ import annotations

import argparse
from datetime import datetime


def instant(text: str) -> datetime:
    """An aware instant; naive or malformed values are a usage error."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time, e.g. 2026-03-05T17:00:00+00:00") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add one, e.g. {text}+00:00 or {text}-05:00")
    from carepath.records.fields import time_range_problem

    if (problem := time_range_problem(value)) is not None:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (a count of patients, workers...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def out_folder(text: str) -> str:
    """A folder to write into: it may not exist yet, but must not be a file."""
    import os

    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is an existing file, not a folder: name a folder to write into")
    return text


STDIN_LIMIT = 1024 * 1024  # one event; the events reader's line limit
STDIN_WAIT_S = 60.0


class StdinProblem(Exception):
    pass


def read_stdin(limit: int = STDIN_LIMIT, wait: float = STDIN_WAIT_S) -> str:
    """One event from standard input, bounded in size and time: a closed, endless or
    silent stdin is a clear error, never a hang or a memory blow-up."""
    import os
    import select
    import sys
    import time

    stream = sys.stdin
    if stream is None or stream.closed:
        raise StdinProblem("standard input is closed: pipe the event in, or give it as the EVENT argument")
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        raise StdinProblem("standard input cannot be read: give the event as the EVENT argument") from None
    if os.isatty(fd):
        raise StdinProblem("standard input is a terminal: pipe the event in, or give it as the EVENT argument")
    chunks, size, deadline = [], 0, time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            raise StdinProblem(f"no complete event on standard input after {wait:g} s: close it after the event")
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            raise StdinProblem(f"standard input cannot be read ({exc.strerror or exc})") from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise StdinProblem(f"standard input holds more than {limit:,} bytes: give exactly one event")
    try:
        return b"".join(chunks).decode()
    except UnicodeDecodeError:
        raise StdinProblem("standard input is not UTF-8 text") from None
