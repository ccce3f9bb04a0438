"""Login sessions (DESIGN.md point 10): one cookie, HttpOnly, SameSite=Strict; `__Host-` and
Secure over HTTPS, dropped only on plain-HTTP loopback.

The cookie holds a random id; the table keys sessions by the id's SHA-256, so a read of the
table cannot be replayed as a cookie.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from chalicelib.stores import Table


@dataclass(frozen=True)
class Session:
    session_id: str
    email: str
    expires_at: int


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionService:
    def __init__(
        self,
        table: Table,
        ttl_s: int,
        secure: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._ttl = ttl_s
        self._secure = secure
        self._clock = clock
        self.cookie_name = "__Host-paitho_session" if secure else "paitho_session"

    def start(self, email: str) -> Session:
        session = Session(secrets.token_urlsafe(32), email, int(self._clock()) + self._ttl)
        self._table.put_new(
            {
                "sid_hash": _hash(session.session_id),
                "email": email,
                "created_at": int(self._clock()),
                "expires_at": session.expires_at,
            }
        )
        return session

    def lookup(self, headers: Mapping[str, str]) -> Session | None:
        session_id = self.cookie_value(headers)
        if session_id is None or len(session_id) > 128:
            return None
        item = self._table.get(_hash(session_id))
        if item is None or int(item["expires_at"]) < self._clock():
            return None
        return Session(session_id, item["email"], int(item["expires_at"]))

    def end(self, session: Session) -> None:
        self._table.delete(_hash(session.session_id))

    def end_all(self, email: str) -> int:
        """End every session of an account (after a password reset). Returns how many."""
        mine = [item["sid_hash"] for item in self._table.scan() if item["email"] == email]
        for sid_hash in mine:
            self._table.delete(sid_hash)
        return len(mine)

    def cookie_value(self, headers: Mapping[str, str]) -> str | None:
        raw = headers.get("cookie", "")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(self.cookie_name)
        return morsel.value if morsel is not None else None

    def set_cookie(self, session: Session) -> str:
        attrs = [f"{self.cookie_name}={session.session_id}", "Path=/", "HttpOnly"]
        attrs += ["SameSite=Strict", f"Max-Age={self._ttl}"]
        if self._secure:
            attrs.append("Secure")
        return "; ".join(attrs)

    def clear_cookie(self) -> str:
        attrs = [f"{self.cookie_name}=", "Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=0"]
        if self._secure:
            attrs.append("Secure")
        return "; ".join(attrs)
