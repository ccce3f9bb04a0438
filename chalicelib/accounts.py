"""Accounts of the people who sign up: argon2id password hashes, verification state, login.

The account item holds the email (the key), an argon2id hash, the company name, the chosen
subdomain, region and plan, and timestamps. Nothing a tenant stores ever comes here.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from chalicelib.errors import Conflict, NotFound, Unauthorized
from chalicelib.stores import Item, Table

log = logging.getLogger(__name__)

# Verified against when the email is unknown, so a miss costs as long as a wrong password.
_DUMMY_PASSWORD = "not-a-real-password-" + "x" * 8


@dataclass(frozen=True)
class Account:
    email: str
    account_id: str
    company: str
    subdomain: str
    region: str
    plan: str
    state: str  # "pending" until the email is verified, then "active"
    created_at: str
    verified_at: str | None = None


def _account(item: Item) -> Account:
    return Account(
        email=item["email"],
        account_id=item["account_id"],
        company=item["company"],
        subdomain=item["subdomain"],
        region=item["region"],
        plan=item["plan"],
        state=item["state"],
        created_at=item["created_at"],
        verified_at=item.get("verified_at"),
    )


def default_hasher() -> PasswordHasher:
    """argon2id with OWASP's recommended minimum (Password Storage Cheat Sheet): 19 MiB, two
    passes, one lane. Measured here: ~67 ms a hash, against ~420 ms for the library default
    (64 MiB, t=3, p=4), which would also crowd a small Lambda's memory. Hashes record their
    parameters, so raising them later rehashes on the next login (`check_needs_rehash`)."""
    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)


class AccountService:
    def __init__(self, table: Table, hasher: PasswordHasher, clock: Callable[[], str]) -> None:
        self._table = table
        self._hasher = hasher
        self._clock = clock
        self._dummy_hash = hasher.hash(_DUMMY_PASSWORD)

    def find(self, email: str) -> Account | None:
        item = self._table.get(email)
        return _account(item) if item is not None else None

    def get(self, email: str) -> Account:
        account = self.find(email)
        if account is None:
            raise NotFound("no such account")
        return account

    def create_pending(
        self, email: str, password: str, company: str, subdomain: str, region: str, plan: str
    ) -> Account:
        """Create the account unless the email already has one (raises Conflict)."""
        now = self._clock()
        item: Item = {
            "email": email,
            "account_id": "acct_" + secrets.token_hex(8),
            "password_hash": self._hasher.hash(password),
            "company": company,
            "subdomain": subdomain,
            "region": region,
            "plan": plan,
            "state": "pending",
            "created_at": now,
            "password_changed_at": now,
        }
        self._table.put_new(item)
        return _account(item)

    def mark_verified(self, email: str) -> Account:
        """pending → active; a second call is a no-op (Conflict is swallowed)."""
        try:
            return _account(
                self._table.update(
                    email,
                    {"state": "active", "verified_at": self._clock()},
                    expect={"state": "pending"},
                )
            )
        except Conflict:
            return self.get(email)

    def discard_pending(self, email: str) -> None:
        """Remove an account that never verified (its link expired); an active one stays."""
        item = self._table.get(email)
        if item is not None and item["state"] == "pending":
            self._table.delete(email)

    def set_plan(self, email: str, plan: str) -> None:
        self._table.update(email, {"plan": plan})

    def authenticate(self, email: str, password: str) -> Account:
        """Check the password; raises Unauthorized with one message for every failure."""
        item = self._table.get(email)
        stored = item["password_hash"] if item is not None else self._dummy_hash
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
            raise Unauthorized("The email or password is not right.") from exc
        if item is None:
            raise Unauthorized("The email or password is not right.")
        if self._hasher.check_needs_rehash(stored):
            self._table.update(email, {"password_hash": self._hasher.hash(password)})
        return _account(item)

    def set_password(self, email: str, password: str) -> None:
        self._table.update(
            email,
            {"password_hash": self._hasher.hash(password), "password_changed_at": self._clock()},
        )
