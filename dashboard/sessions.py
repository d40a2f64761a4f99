"""Dashboard login sessions kept on the server, so that logging out ends them.

A successful login opens a session here. The page hands a one-time ticket to the server's
``/session/open`` route, which answers with the session's cookie: HttpOnly (no page script
ever sees its value) and SameSite=Strict. A reload or a new tab presents the cookie and is
let in while the session lives. Logging out revokes the session here, so a copy of the
cookie taken before no longer logs anyone in, and ``/session/close`` clears the cookie. A
session ends after ``DETECTOR_IDLE_MINUTES`` without a page run; the cookie lives no longer.

The sessions are a small SQLite file beside the users file (``sessions.sqlite``, mode
0600), never the DuckDB database: a writer holding that one must not lock people out.
Cookie values and tickets are kept only as their SHA-256.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from contextlib import closing
from pathlib import Path

COOKIE = "detector_session"
TICKET_SECONDS = 60  # a ticket is exchanged for the cookie at once, or never
KEEP_SECONDS = 86_400  # ended sessions stay a day for the record


def store_path(users: Path) -> Path:
    return users.with_name("sessions.sqlite")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _connect(users: Path) -> sqlite3.Connection:
    path = store_path(users)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    # key: the session as the dashboard's own run knows it (never sent to the browser);
    # cookie: the digest of the cookie's value, set when the ticket is exchanged
    con.execute(
        """CREATE TABLE IF NOT EXISTS sessions (
               key TEXT PRIMARY KEY, cookie TEXT UNIQUE, ticket TEXT UNIQUE,
               username TEXT NOT NULL, created REAL NOT NULL, last_seen REAL NOT NULL,
               revoked REAL)"""
    )
    return con


def open_session(users: Path, username: str) -> tuple[str, str]:
    """A session for a user who has just given their password: (its key, for this run of
    the dashboard to end it; the one-time ticket the page exchanges for the cookie)."""
    key, ticket, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time()
    with closing(_connect(users)) as con:
        con.execute(
            "INSERT INTO sessions (key, ticket, username, created, last_seen) "
            "VALUES (?, ?, ?, ?, ?)",
            [key, _digest(ticket), username, now, now],
        )
        con.execute(
            "DELETE FROM sessions WHERE coalesce(revoked, last_seen) < ?", [now - KEEP_SECONDS]
        )
    return key, ticket


def claim(users: Path, ticket: str) -> str | None:
    """The cookie value for a ticket issued within the last minute to a live session (the
    ticket is spent: a second exchange gets nothing)."""
    cookie = secrets.token_urlsafe(32)
    with closing(_connect(users)) as con:
        done = con.execute(
            "UPDATE sessions SET cookie = ?, ticket = NULL "
            "WHERE ticket = ? AND revoked IS NULL AND created > ?",
            [_digest(cookie), _digest(ticket), time.time() - TICKET_SECONDS],
        )
        return cookie if done.rowcount == 1 else None


def from_cookie(users: Path, cookie: str | None, idle_seconds: float) -> tuple[str, str] | None:
    """(user, key) of the live session a cookie belongs to (not revoked, used within
    ``idle_seconds``), marked used now; None for any other cookie."""
    if not cookie:
        return None
    now = time.time()
    with closing(_connect(users)) as con:
        row = con.execute(
            "SELECT username, key FROM sessions "
            "WHERE cookie = ? AND revoked IS NULL AND last_seen > ?",
            [_digest(cookie), now - idle_seconds],
        ).fetchone()
        if row is not None:
            con.execute("UPDATE sessions SET last_seen = ? WHERE key = ?", [now, row[1]])
        return None if row is None else (row[0], row[1])


def alive(users: Path, key: str | None, idle_seconds: float) -> bool:
    """Whether a session is still open (not revoked, used within ``idle_seconds``); it is
    marked used now."""
    if not key:
        return False
    now = time.time()
    with closing(_connect(users)) as con:
        used = con.execute(
            "UPDATE sessions SET last_seen = ? WHERE key = ? AND revoked IS NULL AND last_seen > ?",
            [now, key, now - idle_seconds],
        )
        return used.rowcount == 1


def revoke(users: Path, key: str | None) -> None:
    """End a session: its cookie, wherever a copy of it is, no longer logs anyone in."""
    if key:
        with closing(_connect(users)) as con:
            con.execute(
                "UPDATE sessions SET revoked = ?, ticket = NULL WHERE key = ? AND revoked IS NULL",
                [time.time(), key],
            )


def revoke_cookie(users: Path, cookie: str | None) -> None:
    """End the session a cookie belongs to (the server's ``/session/close``)."""
    if cookie:
        with closing(_connect(users)) as con:
            con.execute(
                "UPDATE sessions SET revoked = ?, ticket = NULL "
                "WHERE cookie = ? AND revoked IS NULL",
                [time.time(), _digest(cookie)],
            )


def cookie_header(value: str, max_age: float, secure: bool) -> str:
    """The Set-Cookie header of a session: HttpOnly, SameSite=Strict, for the whole
    dashboard, living no longer than an idle session (``max_age`` seconds)."""
    return f"{COOKIE}={value}; Max-Age={int(max_age)}; Path=/; HttpOnly; SameSite=Strict" + (
        "; Secure" if secure else ""
    )


def clear_cookie_header(secure: bool) -> str:
    return cookie_header("", 0, secure)
