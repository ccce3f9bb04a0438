"""The tenant's licence: the control plane's Ed25519-signed token, verified offline.

A port of `chalicelib.licences.verify_licence` and `mode_for` (the tenant image does not ship
the control plane). The token lives in a file the deployment names; the trusted public keys
(by key id) come with the settings. Without trusted keys the check is off (self-hosted,
tests) and the tenant runs in full mode. An expired, missing or foreign licence means
read-only mode: nothing is deleted, mutations other than unlock, login, export and DSAR are
refused (`LicenceReadOnly`, 402).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from paitho_tenant.errors import TenantError

MAX_TOKEN_CHARS = 4096
# Writes still accepted in read-only mode (path prefixes): getting in, sealing and rotating the
# passphrase, getting data out (and the scheduled backup), and the duties toward the people
# in it.
READ_ONLY_WRITES = (
    "/setup",
    "/unlock",
    "/login",
    "/logout",
    "/seal",
    "/api/vault/rotate",
    "/app/settings",
    "/api/dsar",
    "/app/dsar",
    "/app/workspace/switch",
    "/u/",
    "/internal/jobs/",
)
FULL = "full"
READ_ONLY = "read_only"


class LicenceInvalid(TenantError):
    status = 400
    code = "licence_invalid"


class LicenceReadOnly(TenantError):
    status = 402
    code = "licence_read_only"


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


def verify_licence(token: str, public_keys: Mapping[str, bytes]) -> Licence:
    """Verify offline against the trusted public keys (by key id). Expiry is a mode decision
    (`mode_for`), not an error."""
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
        raise LicenceInvalid("the licence is signed with an unknown key")
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
    """ "full" while a licence for this tenant is current; otherwise "read_only"."""
    if licence is None or licence.tenant != tenant or now >= licence.expires_at:
        return READ_ONLY
    return FULL


@dataclass(frozen=True)
class Status:
    mode: str
    checked: bool  # False when no trusted keys are configured
    licence: Licence | None
    problem: str | None

    @property
    def read_only(self) -> bool:
        return self.mode == READ_ONLY


class LicenceCheck:
    """Reads the token file (re-read when it changes) and answers the current `Status`."""

    def __init__(
        self,
        tenant: str,
        token_file: Path | None,
        public_keys: Mapping[str, bytes],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tenant = tenant
        self._file = token_file
        self._keys = dict(public_keys)
        self._clock = clock
        self._cached: tuple[float, Licence | None, str | None] | None = None

    def _load(self) -> tuple[Licence | None, str | None]:
        if self._file is None:
            return None, "no licence installed"
        try:
            mtime = self._file.stat().st_mtime
        except OSError:
            return None, "no licence installed"
        if self._cached is not None and self._cached[0] == mtime:
            return self._cached[1], self._cached[2]
        try:
            found: Licence | None = verify_licence(
                self._file.read_text(encoding="ascii").strip(), self._keys
            )
            problem = None
        except (OSError, UnicodeDecodeError):
            found, problem = None, "the licence file is unreadable"
        except LicenceInvalid as exc:
            found, problem = None, exc.message
        self._cached = (mtime, found, problem)
        return found, problem

    def status(self) -> Status:
        if not self._keys:
            return Status(FULL, False, None, None)
        licence, problem = self._load()
        mode = mode_for(licence, self._tenant, self._clock())
        if licence is not None and mode == READ_ONLY:
            problem = (
                "the licence is for another tenant"
                if licence.tenant != self._tenant
                else "the licence has expired"
            )
        return Status(mode, True, licence, problem)


def settings_from_env(environ: Mapping[str, str]) -> dict[str, object]:
    """`Settings` keyword arguments from the environment, for the edge (cli.py serve):
    PAITHO_LICENCE_FILE (the token file) and PAITHO_LICENCE_KEYS ("kid:base64url-raw-key,...",
    the control plane's trusted Ed25519 public keys). Empty when unset (the check is off)."""
    out: dict[str, object] = {}
    if environ.get("PAITHO_LICENCE_FILE"):
        out["licence_file"] = Path(environ["PAITHO_LICENCE_FILE"])
    keys = []
    for item in environ.get("PAITHO_LICENCE_KEYS", "").split(","):
        if ":" in item:
            kid, text = item.strip().split(":", 1)
            keys.append((kid, _unb64(text)))
    if keys:
        out["licence_keys"] = tuple(keys)
    return out
