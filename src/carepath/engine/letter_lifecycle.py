"""Letters follow what they announce: each planned letter's expiry and status as of an instant.

A letter is `scheduled` until its send time, then `due` until it expires; a letter that
reaches its expiry unsent is `expired` and never goes out. A letter tied to a session is
`withdrawn` when the session is cancelled, and a letter that announced one booking of a
session is `withdrawn` when the session is booked again (moved): the new booking's letter
is the one live letter. Discharge withdraws every letter not yet due when it came.
Withdrawal wins over expiry, because it says why the letter no
longer applies.

Expiry: a letter called for by a session's booking expires at the start it announced
(instructions for a session that has begun are no use); any other letter after the
pathway's `letter_expiry` past its send time. A letter's own `expires` applies in both
cases, the earlier of the two for a booking's letter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from carepath.compile import compiled as c
from carepath.engine.clock import Moment
from carepath.engine.result import PlannedLetter

SCHEDULED, DUE, EXPIRED, WITHDRAWN = "scheduled", "due", "expired", "withdrawn"


class SessionFacts(Protocol):
    @property
    def status(self) -> str: ...                       # scheduled | completed | missed | cancelled
    @property
    def scheduled_by(self) -> str | None: ...          # the booking in force
    @property
    def bookings(self) -> Mapping[str, datetime]: ...  # every accepted booking event id → the start it booked


def settle_letters(compiled: c.CompiledPathway, letters: Iterable[PlannedLetter],
                   sessions: Mapping[str, SessionFacts], as_of: Moment,
                   discharged_at: datetime | None = None,
                   withdrawn: frozenset[str] = frozenset()) -> tuple[PlannedLetter, ...]:
    """The letters with `expires_at` and `status` as of `as_of`, in send order. A letter
    whose send time comes after the patient's discharge is withdrawn: discharge ends
    routine work, and a letter is routine work. `withdrawn` are letters an earlier
    episode's discharge withdrew (the patient has since returned)."""
    out = []
    for letter in letters:
        session = sessions.get(letter.session) if letter.session is not None else None
        booked = session.bookings.get(letter.trigger) if session is not None else None
        own = compiled.letters[letter.letter].expires
        # Elapsed time, as the send offsets are: a week is 168 hours across a clock change.
        expires_at = (letter.send_at.astimezone(UTC) + (own if own is not None else compiled.letter_expiry)
                      ).astimezone(letter.send_at.tzinfo)
        if booked is not None:
            announced = booked.astimezone(letter.send_at.tzinfo)
            expires_at = min(expires_at, announced) if own is not None else announced
        if letter.id in withdrawn or (discharged_at is not None and letter.send_at > discharged_at) or (
                session is not None and (session.status == "cancelled"
                                         or (booked is not None and session.scheduled_by != letter.trigger))):
            status = WITHDRAWN
        elif as_of.at_or_after(expires_at):
            status = EXPIRED
        elif as_of.at_or_after(letter.send_at):
            status = DUE
        else:
            status = SCHEDULED
        out.append(_with(letter, expires_at, status))
    out.sort(key=lambda l: (l.send_at, l.id))
    return tuple(out)


def _with(letter: PlannedLetter, expires_at: datetime, status: str) -> PlannedLetter:
    return PlannedLetter(letter.id, letter.letter, letter.template, letter.send_at, letter.trigger, letter.source,
                         letter.session, expires_at, status)
