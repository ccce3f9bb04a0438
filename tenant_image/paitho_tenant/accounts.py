"""Accounts of the people who use this tenant, and their sessions.

Passwords are hashed with argon2id. The email is stored encrypted with a blind index for login
lookup, so logging in needs an unsealed tenant. Sessions live only in process memory (a restart
seals the tenant and ends every session); the store keeps SHA-256 of the token, not the token.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.errors import BadRequest, Unauthorized

_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile


@functools.cache
def _dummy_hash() -> str:
    """Verified against when no account matches, so timing does not reveal which emails exist
    (computed on first use: hashing at import would slow every process start)."""
    return _HASHER.hash("paitho-timing-equaliser")


MIN_PASSWORD_LENGTH = 12


def create_owner(conn: psycopg.Connection[Any], key: DataKey, email: str, password: str) -> int:
    if "@" not in email or len(email) > 320:
        raise BadRequest("owner_email must be an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"owner_password must be at least {MIN_PASSWORD_LENGTH} characters")
    row = conn.execute(
        "INSERT INTO accounts (email_bidx, email, password_hash, role)"
        " VALUES (%s, pgp_sym_encrypt(%s, %s, '" + COLUMN_OPTIONS + "'), %s, 'owner')"
        " RETURNING id",
        (key.email_index(email), email.strip(), key.column_key, _HASHER.hash(password)),
    ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Account:
    id: int
    role: str


def authenticate(conn: psycopg.Connection[Any], key: DataKey, email: str, password: str) -> Account:
    row = conn.execute(
        "SELECT id, role, password_hash FROM accounts WHERE email_bidx = %s",
        (key.email_index(email),),
    ).fetchone()
    stored = str(row[2]) if row else _dummy_hash()
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        row = None
    if row is None:
        raise Unauthorized("wrong email or password")
    return Account(int(row[0]), str(row[1]))


@dataclass
class Session:
    account: Account
    csrf: str
    created: float
    last_seen: float
    workspace_id: int | None = None  # the web app's current workspace (agency switcher)


class SessionStore:
    """In-memory sessions: 30 min idle timeout, 12 h absolute lifetime."""

    IDLE = 30 * 60.0
    ABSOLUTE = 12 * 3600.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def create(self, account: Account) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._sessions[self._digest(token)] = Session(
                account, secrets.token_urlsafe(32), now, now
            )
        return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = self._clock()
        digest = self._digest(token)
        with self._lock:
            session = self._sessions.get(digest)
            if session is None:
                return None
            if now - session.last_seen > self.IDLE or now - session.created > self.ABSOLUTE:
                del self._sessions[digest]
                return None
            session.last_seen = now
            return session

    def drop(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(self._digest(token), None)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
