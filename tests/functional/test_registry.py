"""The tenant registry stores allowlisted metadata only and creates each slug once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chalicelib.errors import Conflict, NotFound, RegistryError
from chalicelib.registry import ALLOWED_ATTRIBUTES, Registry, TenantRecord

pytestmark = pytest.mark.functional


@pytest.fixture
def registry(aws_client: Any, unique: str) -> Registry:
    reg = Registry(aws_client("dynamodb"), f"tenants-{unique}")
    reg.ensure_table()
    return reg


def test_create_get_update_roundtrip(registry: Registry) -> None:
    """A created tenant reads back with its fields; updates bump the generation."""
    registry.create(TenantRecord(slug="acme", plan="pro", region="eu"))
    got = registry.get("acme")
    assert (got.slug, got.plan, got.region, got.generation) == ("acme", "pro", "eu", 1)
    updated = registry.update("acme", state="running", origin_port=9001)
    assert updated.state == "running" and updated.origin_port == 9001
    assert updated.generation == 2


def test_concurrent_creates_of_one_slug_give_one_tenant(registry: Registry) -> None:
    """Ten threads race to create one slug: exactly one wins, nine get Conflict."""
    results: list[str] = []

    def attempt() -> None:
        try:
            registry.create(TenantRecord(slug="race", plan="starter", region="us"))
            results.append("created")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("created") == 1
    assert len(registry.list()) == 1


def test_non_allowlisted_attribute_is_refused(registry: Registry) -> None:
    """An update naming an attribute outside the allowlist fails before any write."""
    registry.create(TenantRecord(slug="acme", plan="pro", region="eu"))
    with pytest.raises(RegistryError, match="non-allowlisted"):
        registry.update("acme", passphrase="hunter2")
    assert "passphrase" not in registry.raw_items()[0]


def test_stored_items_hold_only_allowlisted_attributes(registry: Registry) -> None:
    """Every attribute of every stored item is on the allowlist."""
    registry.create(TenantRecord(slug="acme", plan="pro", region="eu"))
    registry.update("acme", state="running", last_error="x", origin_port=1)
    registry.record_event("acme", "app exited (SIGKILL); restarted", restarted=True)
    for item in registry.raw_items():
        assert set(item) <= ALLOWED_ATTRIBUTES, set(item) - ALLOWED_ATTRIBUTES


def test_missing_tenant_is_not_found(registry: Registry) -> None:
    """Reading or updating an unknown slug says so."""
    with pytest.raises(NotFound):
        registry.get("nope")
    with pytest.raises(NotFound):
        registry.update("nope", state="running")


def test_tombstone_slug_can_be_reused(registry: Registry) -> None:
    """A deleted tenant's tombstone does not block creating the slug again."""
    registry.create(TenantRecord(slug="acme", plan="pro", region="eu"))
    registry.update("acme", state="deleted")
    assert registry.list() == []
    registry.create(TenantRecord(slug="acme", plan="starter", region="us"))
    assert registry.get("acme").plan == "starter"
