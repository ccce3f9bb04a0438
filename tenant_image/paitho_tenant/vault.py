"""The vault: the lifecycle of the data key.

    uninitialized --setup--> unsealed --(restart | seal)--> sealed --unlock--> unsealed

The data key is generated once, stored only wrapped (`pgp_sym_encrypt_bytea(key, passphrase,
WRAP_OPTIONS)`, a slow S2K), and unwrapped into this process's memory by `unlock`. Every process
starts sealed. Rotating the passphrase rewraps that one row and touches no data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from paitho_tenant import audit
from paitho_tenant.crypto import WRAP_OPTIONS, DataKey, check_passphrase, generate_passphrase
from paitho_tenant.db import unsafe_settings
from paitho_tenant.errors import (
    AlreadyInitialized,
    Sealed,
    UnsafeDatabase,
    WrongPassphrase,
)

log = logging.getLogger(__name__)

UNINITIALIZED, SEALED, UNSEALED = "uninitialized", "sealed", "unsealed"

# The option string is a literal; key and passphrase are bind parameters.
_WRAP_SQL = "pgp_sym_encrypt_bytea(%(key)s, %(passphrase)s, '" + WRAP_OPTIONS + "')"


class Vault:
    """Holds the unwrapped data key while unsealed. Thread-safe."""

    def __init__(self) -> None:
        self._key: DataKey | None = None
        self._initialized = False
        self._lock = threading.Lock()

    # -- state -------------------------------------------------------------------------
    @property
    def unsealed(self) -> bool:
        return self._key is not None

    def state(self, conn: psycopg.Connection[Any]) -> str:
        if self._key is not None:
            return UNSEALED
        if not self._initialized:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM vault)").fetchone()
            self._initialized = bool(row and row[0])
        return SEALED if self._initialized else UNINITIALIZED

    def key(self) -> DataKey:
        """The data key, or Sealed."""
        key = self._key
        if key is None:
            raise Sealed("the tenant is sealed: unlock it with the passphrase first")
        return key

    def seal(self) -> None:
        with self._lock:
            self._key = None

    # -- transitions ---------------------------------------------------------------------
    def initialise(
        self, conn: psycopg.Connection[Any], passphrase: str | None
    ) -> tuple[DataKey, str | None]:
        """Create and store the wrapped data key inside the caller's transaction.

        Returns the key and the generated passphrase (None when the customer chose one).
        The caller commits, then calls `adopt(key)`.
        """
        generated = None
        if passphrase is None:
            generated = passphrase = generate_passphrase()
        else:
            check_passphrase(passphrase)
        self._refuse_unsafe(conn)
        key = DataKey.generate()
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO vault (id, wrapped_key) VALUES (1, " + _WRAP_SQL + ")",
                    {"key": key.raw, "passphrase": passphrase},
                )
        except pg_errors.UniqueViolation as exc:
            raise AlreadyInitialized("this tenant is already set up") from exc
        return key, generated

    def adopt(self, key: DataKey) -> None:
        with self._lock:
            self._key = key
            self._initialized = True

    def unlock(
        self, conn: psycopg.Connection[Any], passphrase: str, actor: str = "anonymous"
    ) -> None:
        """Unwrap the data key with the passphrase; WrongPassphrase (audited) otherwise."""
        self._refuse_unsafe(conn)
        started = time.monotonic()
        try:
            with conn.transaction():
                row = conn.execute(
                    "SELECT pgp_sym_decrypt_bytea(wrapped_key, %s) FROM vault WHERE id = 1",
                    (passphrase,),
                ).fetchone()
        except psycopg.Error:
            row = None
            wrong = True
        else:
            wrong = row is None or row[0] is None or len(bytes(row[0])) != 32
        if wrong or row is None:
            with conn.transaction():
                initialized = conn.execute("SELECT EXISTS (SELECT 1 FROM vault)").fetchone()
                if not (initialized and initialized[0]):
                    raise Sealed("this tenant is not set up yet: POST /setup first")
                audit.record(conn, actor, "vault.unlock_failed")
            log.warning("unlock refused: wrong passphrase")
            raise WrongPassphrase("wrong passphrase")
        key = DataKey(bytes(row[0]))
        with conn.transaction():
            audit.record(conn, actor, "vault.unlocked")
        self.adopt(key)
        log.info("vault unsealed in %.3f s", time.monotonic() - started)

    def rotate(
        self, conn: psycopg.Connection[Any], current: str, new: str | None, actor: str
    ) -> str | None:
        """Rewrap the data key under a new passphrase. Returns the new one if generated."""
        generated = None
        if new is None:
            generated = new = generate_passphrase()
        else:
            check_passphrase(new)
        self._refuse_unsafe(conn)
        try:
            with conn.transaction():
                cur = conn.execute(
                    "UPDATE vault SET rotated_at = now(), wrapped_key = pgp_sym_encrypt_bytea("
                    "pgp_sym_decrypt_bytea(wrapped_key, %(current)s), %(new)s, '"
                    + WRAP_OPTIONS
                    + "') WHERE id = 1",
                    {"current": current, "new": new},
                )
                if cur.rowcount != 1:
                    raise Sealed("this tenant is not set up yet")
                audit.record(conn, actor, "vault.passphrase_rotated")
        except psycopg.Error as exc:
            with conn.transaction():
                audit.record(conn, actor, "vault.rotation_failed")
            raise WrongPassphrase("the current passphrase is wrong") from exc
        return generated

    @staticmethod
    def _refuse_unsafe(conn: psycopg.Connection[Any]) -> None:
        bad = unsafe_settings(conn)
        if bad:
            raise UnsafeDatabase(
                "refusing to send secrets: PostgreSQL settings would write them to its files ("
                + ", ".join(sorted(bad))
                + "); restore the tenant trust settings"
            )


class UnlockThrottle:
    """Growing delays between failed unlock attempts (0.5 s, 1 s, 2 s, ... capped)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, base: float = 0.5, cap: float = 60.0
    ) -> None:
        self._clock = clock
        self.base = base
        self.cap = cap
        self.failures = 0
        self._next_allowed = 0.0

    def wait_time(self) -> float:
        return max(0.0, self._next_allowed - self._clock())

    def failed(self) -> None:
        self.failures += 1
        self._next_allowed = self._clock() + min(self.base * 2 ** (self.failures - 1), self.cap)

    def succeeded(self) -> None:
        self.failures = 0
        self._next_allowed = 0.0
