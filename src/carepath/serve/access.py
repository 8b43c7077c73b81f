"""Who may sign in, who is signed in, and what they did: a small SQLite database beside
the ledger (`access.sqlite`), owner-only (0600), kept apart from the ledger's migrated
schema so the ledger stays the record of outputs.

- `users`: name, role (one of the pathway's roles, or `admin`), argon2id hash, disabled.
- `sessions`: a random token's SHA-256 (the cookie holds the token, so a copy of this
  database signs no one in), its CSRF token and when it was last used: a session idle
  longer than the limit is ended on its next request.
- `audit`: append-only. Every sign-in (and refused one), every patient page viewed and
  every action, with who, what, when and the patient's pseudonymous ref. There is no code
  path that updates or deletes a row, and triggers make SQLite refuse both.
- `login_failures`: recent failed sign-ins per user name and per client address, for the
  rate limit (shared by every process serving the same database).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from carepath.serve.passwords import dummy_verify, hash_password, verify_password

ADMIN = "admin"
FILE_NAME = "access.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL,
    created_at REAL NOT NULL, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL,
    action TEXT NOT NULL, patient TEXT, detail TEXT NOT NULL DEFAULT '{}');
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS ix_login_failures ON login_failures (key, at);
"""

USER_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


class AccessProblem(ValueError):
    """A refused account change or sign-in; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    user: str
    action: str
    patient: str | None
    detail: dict[str, object]


def path_for(ledger_url: str, access_db: str | None) -> Path:
    """`access_db` when given (a path or a sqlite:/// URL); else `access.sqlite` beside a
    SQLite ledger. Any other ledger needs it named."""
    if access_db:
        return Path(access_db.removeprefix("sqlite:///"))
    if ledger_url.startswith("sqlite:///"):
        return Path(ledger_url.removeprefix("sqlite:///")).parent / FILE_NAME
    raise AccessProblem("the ledger is not a SQLite file: name the accounts database with --access-db PATH")


class AccessStore:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created owner-only before SQLite opens it: it holds hashes and the audit trail.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self.path.chmod(0o600)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.executescript(_SCHEMA)  # one script, committed by it
        finally:
            conn.close()

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")

    # -- accounts -----------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str, roles: frozenset[str], *, by: str = "cli") -> User:
        if not name or len(name) > 64 or not set(name) <= USER_NAME_CHARS:
            raise AccessProblem("a user name is 1-64 letters, digits, '.', '_', '-' or '@'")
        if role not in roles:
            raise AccessProblem(f"unknown role {role!r}: one of {', '.join(sorted(roles))}")
        encoded = hash_password(password)
        with self._conn() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AccessProblem(f"user {name!r} exists already")
            conn.execute("INSERT INTO users (name, role, hash, disabled, created_at) VALUES (?, ?, ?, 0, ?)",
                         (name, role, encoded, self._now_iso()))
            self._audit(conn, by, "user_added", None, {"user": name, "role": role})
        return User(name, role, False)

    def disable_user(self, name: str, *, by: str = "cli") -> None:
        with self._conn() as conn:
            if conn.execute("UPDATE users SET disabled = 1 WHERE name = ?", (name,)).rowcount == 0:
                raise AccessProblem(f"no user {name!r}")
            conn.execute("DELETE FROM sessions WHERE user = ?", (name,))  # signed out everywhere, now
            self._audit(conn, by, "user_disabled", None, {"user": name})

    def users(self) -> list[User]:
        with self._conn() as conn:
            return [User(n, r, bool(d)) for n, r, d in
                    conn.execute("SELECT name, role, disabled FROM users ORDER BY name")]

    # -- signing in ---------------------------------------------------------------------

    def sign_in(self, name: str, password: str, client: str, *, limit: int, window: float) -> tuple[str, Session]:
        """A new session's token and the session, or AccessProblem. More than `limit`
        failures for the name or from the client within `window` seconds refuse further
        attempts (without checking the password) until the window has passed."""
        now = self.clock()
        keys = (f"user:{name.lower()}", f"client:{client}")
        with self._conn() as conn:
            conn.execute("DELETE FROM login_failures WHERE at < ?", (now - window,))
            recent = max(conn.execute("SELECT COUNT(*) FROM login_failures WHERE key = ?", (k,)).fetchone()[0]
                         for k in keys)
            row = conn.execute("SELECT role, hash, disabled FROM users WHERE name = ?", (name,)).fetchone()
        if recent >= limit:
            self.audit(name or "-", "sign_in_limited", None, {"client": client})
            raise AccessProblem("too many failed sign-ins: wait a few minutes and try again")
        if row is None:
            dummy_verify(password)
            ok = False
        else:
            ok = verify_password(password, row[1]) and not row[2]
        if not ok:
            with self._conn() as conn:
                conn.executemany("INSERT INTO login_failures (key, at) VALUES (?, ?)", [(k, now) for k in keys])
                self._audit(conn, name or "-", "sign_in_refused", None, {"client": client})
            raise AccessProblem("the user name or password is wrong, or the account is disabled")
        return self.open_session(User(name, row[0], False), client, "sign_in")

    def open_session(self, user: User, client: str, how: str) -> tuple[str, Session]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        with self._conn() as conn:
            conn.execute("INSERT INTO sessions (token_hash, user, csrf, created_at, seen_at) VALUES (?, ?, ?, ?, ?)",
                         (_digest(token), user.name, csrf, now, now))
            self._audit(conn, user.name, how, None, {"client": client})
        return token, Session(user, csrf)

    def user(self, name: str) -> User | None:
        with self._conn() as conn:
            row = conn.execute("SELECT role, disabled FROM users WHERE name = ?", (name,)).fetchone()
        return User(name, row[0], bool(row[1])) if row else None

    def session(self, token: str, idle: float) -> Session | None:
        """The live session of this token (its idle clock restarted), or None: unknown,
        idle past `idle` seconds (then ended, and audited), or its user disabled."""
        if not token or len(token) > 200:
            return None
        now = self.clock()
        with self._conn() as conn:
            row = conn.execute(
                "SELECT s.user, s.csrf, s.seen_at, u.role, u.disabled FROM sessions s JOIN users u ON u.name = s.user "
                "WHERE s.token_hash = ?", (_digest(token),)).fetchone()
            if row is None:
                return None
            user, csrf, seen, role, disabled = row
            if disabled or now - seen > idle:
                conn.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))
                self._audit(conn, user, "session_expired" if not disabled else "session_ended", None, {})
                return None
            conn.execute("UPDATE sessions SET seen_at = ? WHERE token_hash = ?", (now, _digest(token)))
        return Session(User(user, role, False), csrf)

    def sign_out(self, token: str, user: str) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))
            self._audit(conn, user, "sign_out", None, {})

    # -- the audit trail ----------------------------------------------------------------

    def audit(self, user: str, action: str, patient: str | None, detail: dict[str, object]) -> None:
        with self._conn() as conn:
            self._audit(conn, user, action, patient, detail)

    def _audit(self, conn: sqlite3.Connection, user: str, action: str, patient: str | None,
               detail: dict[str, object]) -> None:
        conn.execute("INSERT INTO audit (at, user, action, patient, detail) VALUES (?, ?, ?, ?, ?)",
                     (self._now_iso(), user, action, patient, orjson.dumps(detail, option=orjson.OPT_SORT_KEYS)
                      .decode()))

    def actors(self, patient: str) -> dict[str, str]:
        """Event id → the user whose action recorded it, for one patient (the events
        file's lines name no staff for a completion or a decision; the audit does)."""
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            rows = conn.execute("SELECT user, detail FROM audit WHERE patient = ? AND action IN "
                                "('acknowledge', 'complete', 'decide')", (patient,)).fetchall()
        finally:
            conn.close()
        found = {}
        for user, detail in rows:
            event = orjson.loads(detail).get("event")
            if event:
                found[str(event)] = user
        return found

    def audit_rows(self, *, since: int = 0) -> Iterator[AuditRow]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            for seq, at, user, action, patient, detail in conn.execute(
                    "SELECT seq, at, user, action, patient, detail FROM audit WHERE seq > ? ORDER BY seq", (since,)):
                yield AuditRow(seq, at, user, action, patient, orjson.loads(detail))
        finally:
            conn.close()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
