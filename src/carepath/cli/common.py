"""What every command shares: the exit codes, how a command stops with a message, and the
options several commands declare the same way (declared here once)."""

from __future__ import annotations

import argparse

from carepath.cli.arguments import instant

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERNAL = 0, 1, 2, 69, 70
EXIT_DIFFERENT = 3  # `diff --exit-code` only; 1 stays "invalid input", as in every command


class Stop(Exception):
    """A command ends here: `message` on stderr, then exit `code`."""

    def __init__(self, message: str, code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def add_records(p: argparse.ArgumentParser, *, events_help: str = "events, JSON Lines") -> None:
    """--patients and --events, both required."""
    p.add_argument("--patients", required=True, metavar="FILE", help="patients, JSON Lines")
    p.add_argument("--events", required=True, metavar="FILE", help=events_help)


def add_as_of(p: argparse.ArgumentParser, *, required: bool) -> None:
    """--as-of: an aware instant; when not `required`, the command's default is now."""
    if required:
        p.add_argument("--as-of", required=True, type=instant, metavar="ISO", help="an instant with a UTC offset")
    else:
        p.add_argument("--as-of", type=instant, metavar="ISO", help="an instant with a UTC offset (default: now)")
