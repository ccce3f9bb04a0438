"""The platform's licence service: a token for current subscriptions, none for ended ones."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paitho_local.platform import licence_for
from paitho_tenant.licence import settings_from_env, verify_licence

from chalicelib.licences import LicenceIssuer


class MemoryTable:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_new(self, item: dict[str, Any]) -> None:
        self.items.append(item)


@dataclass
class Sub:
    plan: str
    state: str
    deleted_at: float | None = None


class Billing:
    def __init__(self, subs: dict[str, Sub]) -> None:
        self.subs = subs

    def find(self, slug: str) -> Sub | None:
        return self.subs.get(slug)


@dataclass
class Plane:
    licences: LicenceIssuer | None
    billing: Billing


def plane(subs: dict[str, Sub]) -> Plane:
    issuer = LicenceIssuer({"k1": Ed25519PrivateKey.generate()}, "k1", MemoryTable(), time.time, 35)  # type: ignore[arg-type]
    return Plane(issuer, Billing(subs))


def test_current_subscription_gets_a_token_the_tenant_verifies() -> None:
    """An active tenant's token verifies offline with the keys handed to the tenant."""
    cp = plane({"acme": Sub("pro", "active")})
    reply = licence_for(cp, {"slug": "acme", "plan": "starter"})
    env = {"PAITHO_LICENCE_KEYS": ",".join(f"{k}:{v}" for k, v in reply["keys"].items())}
    keys = dict(settings_from_env(env)["licence_keys"])  # type: ignore[call-overload]
    licence = verify_licence(reply["token"], keys)
    assert licence.tenant == "acme" and licence.plan == "pro"


def test_operator_created_tenant_is_licensed_for_its_plan() -> None:
    """A tenant with no subscription (created by the operator) is licensed for its plan."""
    reply = licence_for(plane({}), {"slug": "ops", "plan": "agency"})
    assert reply["token"] and reply["keys"]


def test_ended_subscriptions_get_no_token() -> None:
    """Canceled or suspended subscriptions get keys but no token, so the tenant is read-only."""
    cp = plane({"gone": Sub("pro", "canceled"), "held": Sub("pro", "suspended")})
    for slug in ("gone", "held"):
        reply = licence_for(cp, {"slug": slug, "plan": "pro"})
        assert reply["token"] is None and reply["keys"]


def test_no_issuer_means_no_licence_check() -> None:
    """Without licence keys the platform hands out nothing and the check stays off."""
    assert licence_for(Plane(None, Billing({})), {"slug": "x"}) == {"keys": {}}
