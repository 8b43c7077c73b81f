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
