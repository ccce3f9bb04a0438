"""Signed, expiring, single-use link tokens and CSRF form tokens (HMAC-SHA256).

A link token is `base64url(claims JSON).base64url(HMAC(key, purpose || claims))`. It carries its
own expiry; single use is recorded in the `tokens` table by a conditional write of its id, so a
second use fails even when two requests race. Form tokens (CSRF) are the same construction,
bound either to a session id or, before login, to a short lifetime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.cpconfig import Secret
from chalicelib.errors import Conflict, TokenInvalid
from chalicelib.stores import Table

MAX_TOKEN_CHARS = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Claims:
    token_id: str
    purpose: str
    subject: str
    expires_at: int


class TokenSigner:
    def __init__(self, key: Secret, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock

    def _mac(self, purpose: str, body: bytes) -> bytes:
        return hmac.new(self._key.reveal(), purpose.encode() + b"\x00" + body, "sha256").digest()

    def issue(self, purpose: str, subject: str, ttl_s: int) -> str:
        claims = {
            "i": secrets.token_hex(16),
            "p": purpose,
            "s": subject,
            "e": int(self._clock()) + ttl_s,
        }
        body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(body)}.{_b64(self._mac(purpose, body))}"

    def verify(self, token: str, purpose: str) -> Claims:
        """Check signature, purpose and expiry; TokenInvalid says what to do next."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise TokenInvalid("This link is not valid; request a new one.")
        body_text, dot, mac_text = token.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (binascii.Error, ValueError) as exc:
            raise TokenInvalid("This link is not valid; request a new one.") from exc
        if not dot or not hmac.compare_digest(mac, self._mac(purpose, body)):
            raise TokenInvalid("This link is not valid; request a new one.")
        try:
            raw = json.loads(body)
            claims = Claims(str(raw["i"]), str(raw["p"]), str(raw["s"]), int(raw["e"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenInvalid("This link is not valid; request a new one.") from exc
        if claims.purpose != purpose:
            raise TokenInvalid("This link is not valid; request a new one.")
        if claims.expires_at < self._clock():
            raise TokenInvalid("This link has expired; request a new one.")
        return claims


class LinkTokens:
    """Single-use link tokens: verify, then record the id with a conditional write."""

    def __init__(self, signer: TokenSigner, used: Table, clock: Callable[[], float]) -> None:
        self._signer = signer
        self._used = used
        self._clock = clock

    def issue(self, purpose: str, subject: str, ttl_s: int) -> str:
        return self._signer.issue(purpose, subject, ttl_s)

    def peek(self, token: str, purpose: str) -> Claims:
        """Verify without spending (to show a form before the token is used)."""
        claims = self._signer.verify(token, purpose)
        if self._used.get(claims.token_id) is not None:
            raise TokenInvalid("This link has already been used; request a new one.")
        return claims

    def consume(self, token: str, purpose: str) -> Claims:
        claims = self._signer.verify(token, purpose)
        try:
            self._used.put_new(
                {
                    "token_id": claims.token_id,
                    "purpose": purpose,
                    "used_at": int(self._clock()),
                    "expires_at": claims.expires_at,
                }
            )
        except Conflict as exc:
            raise TokenInvalid("This link has already been used; request a new one.") from exc
        return claims


class FormTokens:
    """CSRF tokens: bound to the session id when there is one, else signed with a short life."""

    def __init__(self, signer: TokenSigner, ttl_s: int) -> None:
        self._signer = signer
        self._ttl = ttl_s

    @staticmethod
    def _binding(session_id: str | None) -> str:
        if session_id is None:
            return "anonymous"
        return hashlib.sha256(session_id.encode()).hexdigest()

    def issue(self, session_id: str | None) -> str:
        return self._signer.issue("form", self._binding(session_id), self._ttl)

    def check(self, token: str, session_id: str | None) -> None:
        try:
            claims = self._signer.verify(token, "form")
        except TokenInvalid as exc:
            raise TokenInvalid("This form has expired; please submit it again.") from exc
        if not hmac.compare_digest(claims.subject, self._binding(session_id)):
            raise TokenInvalid("This form has expired; please submit it again.")
