"""Identifiers the engine puts into mail (pure).

- Message-IDs are `<pto.{token}@{sender domain}>`: the token is 26 random base32 characters,
  stored in clear (it is not personal); replies, bounces and the Sent folder are matched on it.
- Unsubscribe tokens are `base64url(workspace id ‖ enrolment id ‖ HMAC-SHA256/128)` under a key
  derived from the data key: they carry no address and verify only while the tenant is unsealed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from paitho_tenant.crypto import DataKey
from paitho_tenant.outbound.errors import TokenInvalid

_TOKEN_RE = re.compile(r"pto\.([a-z2-7]{26})@", re.I)
_UNSUB_INFO = b"paitho/unsubscribe/v1"
_PAYLOAD = struct.Struct(">QQ")
_MAC_BYTES = 16


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")[:26]


def message_id(token: str, domain: str) -> str:
    return f"<pto.{token}@{domain}>"


def tokens_in(text: str) -> tuple[str, ...]:
    """Our tokens mentioned in a header or text, first occurrence first, no repeats."""
    seen: dict[str, None] = {}
    for match in _TOKEN_RE.finditer(text):
        seen.setdefault(match.group(1).lower(), None)
    return tuple(seen)


def _unsubscribe_key(key: DataKey) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_UNSUB_INFO).derive(key.raw)


class UnsubscribeSigner:
    """Signs and verifies unsubscribe tokens for one data key."""

    def __init__(self, key: DataKey) -> None:
        self._mac_key = _unsubscribe_key(key)

    def __repr__(self) -> str:
        return "UnsubscribeSigner(<redacted>)"

    def sign(self, workspace_id: int, enrollment_id: int) -> str:
        payload = _PAYLOAD.pack(workspace_id, enrollment_id)
        mac = hmac.new(self._mac_key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def verify(self, token: str) -> tuple[int, int]:
        """(workspace id, enrolment id) of a genuine token; TokenInvalid otherwise."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError) as exc:
            raise TokenInvalid("this unsubscribe link is not valid") from exc
        if len(raw) != _PAYLOAD.size + _MAC_BYTES:
            raise TokenInvalid("this unsubscribe link is not valid")
        payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        want = hmac.new(self._mac_key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, want):
            raise TokenInvalid("this unsubscribe link is not valid")
        workspace_id, enrollment_id = _PAYLOAD.unpack(payload)
        return int(workspace_id), int(enrollment_id)


def well_formed(token: str) -> bool:
    """Cheap shape check for tokens stored while sealed (verified at unlock)."""
    return bool(re.fullmatch(r"[A-Za-z0-9_-]{43}", token))
