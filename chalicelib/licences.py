"""Licences: Ed25519-signed tokens the tenant verifies offline with the public keys.

Token: `base64url(header).base64url(claims).base64url(signature)`, header `{"alg": "EdDSA",
"kid": ...}`, claims `{"tenant", "plan", "limits", "iat", "exp", "lid"}`; the signature covers
`header.claims`. Keys rotate by key id: the issuer signs with its current key; verifiers hold
every public key still trusted, by id. An expired licence puts the tenant in read-only mode; it
never deletes anything (`mode_for`).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from chalicelib.billing import limits_for
from chalicelib.errors import LicenceInvalid
from chalicelib.ports import iso
from chalicelib.stores import Table

MAX_TOKEN_CHARS = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Licence:
    licence_id: str
    tenant: str
    plan: str
    limits: dict[str, int | None]
    issued_at: int
    expires_at: int
    key_id: str


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class LicenceIssuer:
    def __init__(
        self,
        keys: Mapping[str, Ed25519PrivateKey],
        current_kid: str,
        table: Table,
        clock: Callable[[], float],
        ttl_days: int,
    ) -> None:
        if current_kid not in keys:
            raise LicenceInvalid(f"no signing key with id {current_kid!r}")
        self._keys = dict(keys)
        self._kid = current_kid
        self._table = table
        self._clock = clock
        self._ttl_s = ttl_days * 86400

    def public_keys(self) -> dict[str, bytes]:
        return {kid: public_key_bytes(k) for kid, k in self._keys.items()}

    def issue(self, tenant: str, plan: str, ttl_s: int | None = None) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "lid": "lic_" + secrets.token_hex(8),
            "tenant": tenant,
            "plan": plan,
            "limits": limits_for(plan),
            "iat": now,
            "exp": now + (self._ttl_s if ttl_s is None else ttl_s),
        }
        header = {"alg": "EdDSA", "kid": self._kid, "typ": "paitho-licence"}
        signing_input = (
            _b64(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
        )
        signature = self._keys[self._kid].sign(signing_input.encode("ascii"))
        self._table.put_new(
            {
                "licence_id": claims["lid"],
                "slug": tenant,
                "plan": plan,
                "key_id": self._kid,
                "issued_at": iso(now),
                "expires_at": iso(claims["exp"]),
            }
        )
        return f"{signing_input}.{_b64(signature)}"


def verify_licence(token: str, public_keys: Mapping[str, bytes]) -> Licence:
    """Verify offline against the trusted public keys (by key id). Expiry is *not* an error
    here: it is a mode decision (`mode_for`), because an expired licence never deletes data."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise LicenceInvalid("the licence is not a Paitho licence token")
    parts = token.split(".")
    if len(parts) != 3:
        raise LicenceInvalid("the licence is not a Paitho licence token")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
        kid = str(header["kid"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise LicenceInvalid("the licence is malformed") from exc
    if header.get("alg") != "EdDSA" or kid not in public_keys:
        raise LicenceInvalid(f"the licence is signed with an unknown key {kid!r}")
    try:
        Ed25519PublicKey.from_public_bytes(public_keys[kid]).verify(
            signature, f"{parts[0]}.{parts[1]}".encode("ascii")
        )
    except (InvalidSignature, ValueError) as exc:
        raise LicenceInvalid("the licence signature does not verify") from exc
    try:
        return Licence(
            licence_id=str(claims["lid"]),
            tenant=str(claims["tenant"]),
            plan=str(claims["plan"]),
            limits=dict(claims["limits"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            key_id=kid,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LicenceInvalid("the licence claims are incomplete") from exc


def mode_for(licence: Licence | None, tenant: str, now: float) -> str:
    """ "full" while a licence for this tenant is current; otherwise "read_only". Never "delete"."""
    if licence is None or licence.tenant != tenant or now >= licence.expires_at:
        return "read_only"
    return "full"
