"""Shared helpers for the control-plane web tests (tests/*/test_cp_*.py): a fake tenant service
that honours the TenantService contract, a settable clock, and a ControlPlane wired to them."""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any
from urllib.parse import urlencode

from argon2 import PasswordHasher
from chalice.app import Chalice
from chalice.test import Client
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib import webapp
from chalicelib.cpconfig import CpConfig, Secret
from chalicelib.errors import Conflict, LaunchError, NotFound
from chalicelib.mailer import Mailer, MemoryMailer
from chalicelib.registry import TenantRecord
from chalicelib.stores import Stores, memory_stores

WEBHOOK_SECRET = "whsec_test_secret"
STRONG = "quiet-harbour-lantern-92"


class Clock:
    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTenants:
    """The TenantService contract in memory: create once per slug, lifecycle by state."""

    def __init__(self) -> None:
        self.records: dict[str, TenantRecord] = {}
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def create(self, slug: str, plan: str = "starter", region: str = "eu") -> TenantRecord:
        with self._lock:
            self.calls.append(("create", slug))
            if slug in self.records:
                raise Conflict(f"the name {slug!r} is already taken")
            self.records[slug] = TenantRecord(slug=slug, plan=plan, region=region, state="running")
            return self.records[slug]

    def show(self, slug: str) -> TenantRecord:
        if slug not in self.records:
            raise NotFound(f"no tenant named {slug!r}")
        return self.records[slug]

    def _set(self, op: str, slug: str, **changes: Any) -> TenantRecord:
        with self._lock:
            self.calls.append((op, slug))
            self.records[slug] = dataclasses.replace(self.show(slug), **changes)
            return self.records[slug]

    def suspend(self, slug: str) -> TenantRecord:
        return self._set("suspend", slug, state="suspended")

    def resume(self, slug: str) -> TenantRecord:
        return self._set("resume", slug, state="running")

    def delete(self, slug: str) -> TenantRecord:
        return self._set("delete", slug, state="deleted")

    def set_plan(self, slug: str, plan: str) -> TenantRecord:
        return self._set("set_plan", slug, plan=plan)


def fast_hasher() -> PasswordHasher:
    """argon2id with tiny costs so tests stay fast (production uses the library default)."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def config(**overrides: Any) -> CpConfig:
    return CpConfig(
        token_key=Secret(b"k" * 32),
        stripe_webhook_secret=Secret(WEBHOOK_SECRET.encode()),
        **overrides,
    )


def plane(
    stores: Stores | None = None,
    tenants: FakeTenants | None = None,
    mailer: Mailer | None = None,
    clock: Clock | None = None,
    stripe_client: Any = None,
    stripe_prices: dict[str, str] | None = None,
    **overrides: Any,
) -> webapp.ControlPlane:
    return webapp.build_control_plane(
        config(**overrides),
        stores or memory_stores(),
        tenants or FakeTenants(),
        mailer or MemoryMailer(),
        clock=clock or Clock(),
        hasher=fast_hasher(),
        licence_keys={"k1": Ed25519PrivateKey.generate()},
        licence_kid="k1",
        stripe_client=stripe_client,
        stripe_prices=stripe_prices,
    )


def client_for(cp: webapp.ControlPlane) -> Client:
    app = Chalice(app_name="paitho-test")
    webapp.build(app, cp)
    return Client(app)


FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Host": "localhost:8000"}


def csrf_from(body: bytes) -> str:
    match = re.search(rb'name="csrf" value="([^"]+)"', body)
    assert match, "no csrf field on the page"
    return match.group(1).decode()


def post_form(client: Client, path: str, fields: dict[str, str], csrf_page: str = "") -> Any:
    page = client.http.get(csrf_page or path, headers={"Host": "localhost:8000"})
    data = {"csrf": csrf_from(page.body), **fields}
    return client.http.post(path, headers=FORM_HEADERS, body=urlencode(data).encode())


def signup_fields(**overrides: str) -> dict[str, str]:
    fields = {
        "email": "ann@example.com",
        "password": STRONG,
        "company": "Acme Ltd",
        "subdomain": "acme",
        "region": "eu",
        "plan": "pro",
    }
    return fields | overrides


def link_from(text: str, path: str) -> str:
    match = re.search(rf"https?://\S+{re.escape(path)}\?token=(\S+)", text)
    assert match, f"no {path} link in the message"
    return match.group(1)


class FlakyTenants(FakeTenants):
    """Fails the first `failures` creates the way a launcher does: record left as failed."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def create(self, slug: str, plan: str = "starter", region: str = "eu") -> TenantRecord:
        if self.failures > 0:
            self.failures -= 1
            self.records[slug] = TenantRecord(slug=slug, plan=plan, region=region, state="failed")
            raise LaunchError("the tenant's postgres did not start (port in use)")
        return super().create(slug, plan, region)

    def resume(self, slug: str) -> TenantRecord:
        if self.failures > 0:
            self.failures -= 1
            raise LaunchError("still failing")
        return super().resume(slug)
