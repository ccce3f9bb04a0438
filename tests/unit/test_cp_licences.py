"""Licences: Ed25519-signed, verified offline by key id, rotated by key id; expiry means
read-only, never deletion."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.errors import LicenceInvalid
from chalicelib.licences import LicenceIssuer, mode_for, public_key_bytes, verify_licence
from chalicelib.stores import MemoryTable
from tests.cp_support import Clock, FakeTenants, client_for, plane


@pytest.fixture
def clock() -> Clock:
    return Clock()


def issuer(keys: dict[str, Ed25519PrivateKey], kid: str, clock: Clock) -> LicenceIssuer:
    return LicenceIssuer(keys, kid, MemoryTable("licences"), clock, ttl_days=35)


def test_a_licence_verifies_offline_with_the_public_key(clock: Clock) -> None:
    """The tenant needs only the public key to read tenant, plan, limits, expiry and key id."""
    key = Ed25519PrivateKey.generate()
    token = issuer({"k1": key}, "k1", clock).issue("acme", "agency")
    lic = verify_licence(token, {"k1": public_key_bytes(key)})
    assert (lic.tenant, lic.plan, lic.key_id) == ("acme", "agency", "k1")
    assert lic.limits["workspaces"] == 10
    assert lic.expires_at == int(clock.now) + 35 * 86400


def test_a_tampered_licence_is_refused(clock: Clock) -> None:
    """Changing the plan in the claims breaks the signature."""
    key = Ed25519PrivateKey.generate()
    token = issuer({"k1": key}, "k1", clock).issue("acme", "starter")
    head, claims, sig = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(claims + "=="))
    raw["plan"] = "enterprise"
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    with pytest.raises(LicenceInvalid, match="signature"):
        verify_licence(f"{head}.{forged}.{sig}", {"k1": public_key_bytes(key)})


@pytest.mark.parametrize("junk", ["", "a.b", "a.b.c", "x" * 5000, "é.é.é", "..."])
def test_garbage_is_refused(junk: str) -> None:
    """Malformed tokens raise LicenceInvalid, never another error."""
    with pytest.raises(LicenceInvalid):
        verify_licence(junk, {"k1": public_key_bytes(Ed25519PrivateKey.generate())})


def test_keys_rotate_by_key_id(clock: Clock) -> None:
    """After rotation new licences carry k2; old k1 licences verify while k1 is trusted."""
    k1, k2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    old = issuer({"k1": k1}, "k1", clock).issue("acme", "pro")
    new = issuer({"k1": k1, "k2": k2}, "k2", clock).issue("acme", "pro")
    trusted = {"k1": public_key_bytes(k1), "k2": public_key_bytes(k2)}
    assert verify_licence(old, trusted).key_id == "k1"
    assert verify_licence(new, trusted).key_id == "k2"
    with pytest.raises(LicenceInvalid, match="unknown key"):
        verify_licence(old, {"k2": public_key_bytes(k2)})
    with pytest.raises(LicenceInvalid):
        verify_licence(new, {"k2": public_key_bytes(k1)})  # wrong key under the right id


def test_expiry_means_read_only_never_deletion(clock: Clock) -> None:
    """A current licence gives 'full'; expired, missing or another tenant's gives 'read_only'."""
    key = Ed25519PrivateKey.generate()
    token = issuer({"k1": key}, "k1", clock).issue("acme", "pro", ttl_s=100)
    lic = verify_licence(token, {"k1": public_key_bytes(key)})
    assert mode_for(lic, "acme", clock.now) == "full"
    assert mode_for(lic, "acme", clock.now + 100) == "read_only"
    assert mode_for(lic, "globex", clock.now) == "read_only"
    assert mode_for(None, "acme", clock.now) == "read_only"


def test_the_licences_endpoint_issues_for_live_subscriptions_only() -> None:
    """GET /licences/{slug} returns a verifiable licence; a suspended subscription gets 403."""
    tenants = FakeTenants()
    cp = plane(tenants=tenants)
    tenants.create("acme")
    cp.billing.start_trial("acme", "ann@example.com", "pro")
    client = client_for(cp)
    keys = json.loads(client.http.get("/licence-keys").body)
    token = json.loads(client.http.get("/licences/acme").body)["licence"]
    lic = verify_licence(token, {k: base64.b64decode(v) for k, v in keys.items()})
    assert lic.tenant == "acme" and lic.plan == "pro"
    assert client.http.get("/licences/nobody").status_code == 404
    cp.billing.apply("acme", "payment_failed", "test")
    cp.clock.advance(15 * 86400)
    cp.billing.tick()
    assert client.http.get("/licences/acme").status_code == 403
    stored = cp.stores.licences.scan()
    assert len(stored) == 1 and token not in str(stored)
