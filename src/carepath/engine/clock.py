"""The instant a comparison is made at, and the as-of that remembers what it was compared with.

A plan is a function of the history and of the as-of, and the as-of reaches it only
through comparisons with other instants (a due passed, a letter's send time reached,
recurring work opened, an event dated ahead). Every such comparison goes through an
`AsOf`, which notes, of the instants it was compared with, the nearest one at or after
itself at which the comparison's answer turns. That instant is the plan's wake: until
it, every comparison the fold made answers the same, so the same history gives the same
plan. The as-of is not a `datetime` on purpose: it cannot be subtracted, shown or
compared except through these methods, so no comparison escapes the wake.

`Moment` has the same methods and notes nothing: the fold's comparisons with an event's
own instant (recurring work opened before that event) do not depend on the as-of.
"""

from __future__ import annotations

from datetime import datetime, timedelta

_TICK = timedelta(microseconds=1)  # the resolution of a datetime


class Moment:
    """A fixed instant to compare with (an event's): `before(t)` reads "this moment is before t"."""

    __slots__ = ("_at",)

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        self._at = at

    def before(self, t: datetime) -> bool:
        return self._at < t

    def at_or_before(self, t: datetime) -> bool:
        return self._at <= t

    def after(self, t: datetime) -> bool:
        return self._at > t

    def at_or_after(self, t: datetime) -> bool:
        return self._at >= t

    def steps_after(self, start: datetime, every: timedelta) -> int:
        """How many of `start`, `start + every`, `start + 2*every`, ... are before this moment."""
        if self._at <= start:
            return 0
        return (self._at - start - _TICK) // every + 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._at.isoformat()})"


class AsOf(Moment):
    """The as-of of one plan; `wake` is the earliest instant at or after it at which one of
    the comparisons made with it turns (None: none turns with time alone)."""

    __slots__ = ("wake",)

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self.wake: datetime | None = None

    def _turns_at(self, t: datetime) -> None:
        if self.wake is None or t < self.wake:
            self.wake = t

    # `now < t` and `now >= t` turn when now reaches t: noted only if t is still ahead.
    def before(self, t: datetime) -> bool:
        if t > self._at:
            self._turns_at(t)
            return True
        return False

    def at_or_after(self, t: datetime) -> bool:
        return not self.before(t)

    # `now > t` and `now <= t` turn just after t: noted if t is ahead or now (an instant
    # equal to the as-of counts, so a comparison turning just after it is not missed).
    def after(self, t: datetime) -> bool:
        if t >= self._at:
            self._turns_at(t)
            return False
        return True

    def at_or_before(self, t: datetime) -> bool:
        return not self.after(t)

    def steps_after(self, start: datetime, every: timedelta) -> int:
        n = super().steps_after(start, every)
        self._turns_at(start + n * every)  # the count grows once the as-of passes the next step
        return n
