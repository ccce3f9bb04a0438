"""Enrichment is off by default: no request leaves while the workspace has not opted in; with
an opt-in and the workspace's own key, only allow-listed fields are kept, each with its source
and time; opt-ins and calls are in the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from paitho_tenant import audit, keychain
from paitho_tenant.ai import enrichment
from paitho_tenant.ai.errors import EnrichmentDisabled, KeyRejected
from paitho_tenant.errors import BadRequest

from tests.fakes.fake_apollo import FakeApollo
from tests.functional import test_ai_support as support
from tests.functional import test_tenant_support as tenant_support
from tests.functional.test_ai_support import AIWorld, scoped

tenant_template = tenant_support.tenant_template
tenant_cluster = tenant_support.tenant_cluster
fake_llm = support.fake_llm
ai_world = support.ai_world

pytestmark = pytest.mark.functional


@pytest.fixture
def apollo() -> Iterator[FakeApollo]:
    with FakeApollo() as server:
        yield server


def _enrichment_key(world: AIWorld, secret: str) -> int:
    with world.conn() as conn:
        return int(
            keychain.add(conn, world.key, world.workspace_id, "enrichment", "apollo", secret)["id"]
        )


def _enrich(world: AIWorld, apollo: FakeApollo, lead: int = 0) -> dict[str, object]:
    with world.conn() as conn:
        return enrichment.enrich_lead(
            conn,
            world.key,
            world.workspace_id,
            world.lead_ids[lead],
            "account:1",
            enrichment.default_factory(apollo.url),
        )


def _actions(world: AIWorld) -> list[str]:
    with tenant_support.owner_conn(world.cluster) as conn:
        return [str(e["action"]) for e in audit.entries(conn)]


def test_no_request_is_made_while_the_opt_in_is_off(ai_world: AIWorld, apollo: FakeApollo) -> None:
    """Without an opt-in (and after an opt-out) enrichment is refused and Apollo sees nothing,
    even with an enrichment key in the keychain."""
    w = ai_world
    key_id = _enrichment_key(w, "apollo-own-key-1234567890")
    with pytest.raises(EnrichmentDisabled, match="nothing was sent"):
        _enrich(w, apollo)
    assert apollo.requests == []
    with w.conn() as conn:
        enrichment.opt_in(conn, w.workspace_id, "account:1", "apollo", key_id)
        enrichment.opt_out(conn, w.workspace_id, "account:1")
    with pytest.raises(EnrichmentDisabled):
        _enrich(w, apollo)
    assert apollo.requests == []
    assert scoped(w, "SELECT count(*) FROM lead_enrichment") == [(0,)]


def test_opted_in_apollo_uses_the_workspace_key_and_keeps_allow_listed_fields(
    ai_world: AIWorld, apollo: FakeApollo
) -> None:
    """With the opt-in: the keychain's enrichment key is sent, allow-listed fields are stored
    encrypted with source and time, raw-only fields are dropped, and all of it is audited."""
    w = ai_world
    key_id = _enrichment_key(w, "apollo-own-key-1234567890")
    with w.conn() as conn:
        enrichment.opt_in(conn, w.workspace_id, "account:1", "apollo", key_id)
    out = _enrich(w, apollo)
    [request] = apollo.requests
    assert request.api_key == "apollo-own-key-1234567890"
    assert request.body["email"] == "lead0@example.test"
    assert request.body["organization_name"] == "Globex 0"
    assert out["source"] == "apollo" and "title" in out["fields"]  # type: ignore[operator]
    with w.conn() as conn:
        fields = enrichment.enriched_fields(conn, w.key, w.workspace_id, w.lead_ids[0])
    stored = {f["field"]: f for f in fields}
    assert stored["title"]["value"] == "Head of Operations"
    assert stored["company"]["value"] == "Example SAS"
    assert all(f["source"] == "apollo" and f["fetched_at"] is not None for f in fields)
    assert not any(apollo.canary in str(f["value"]) for f in fields)
    [(raw,)] = scoped(w, "SELECT value FROM lead_enrichment WHERE field = 'city'")
    assert b"Lyon" not in bytes(raw)
    actions = _actions(w)
    assert "enrichment.opted_in" in actions and "enrichment.call" in actions


def test_rejected_enrichment_key_is_audited_and_stores_nothing(
    ai_world: AIWorld, apollo: FakeApollo
) -> None:
    """A key Apollo refuses: KeyRejected, a call_failed audit row, no enriched field."""
    w = ai_world
    key_id = _enrichment_key(w, "revoked-apollo-key-123456")
    with w.conn() as conn:
        enrichment.opt_in(conn, w.workspace_id, "account:1", "apollo", key_id)
    with pytest.raises(KeyRejected):
        _enrich(w, apollo)
    assert scoped(w, "SELECT count(*) FROM lead_enrichment") == [(0,)]
    assert "enrichment.call_failed" in _actions(w)


def test_apollo_opt_in_needs_an_enrichment_key(ai_world: AIWorld) -> None:
    """Opting in to Apollo without the workspace's own enrichment key is refused."""
    w = ai_world
    with w.conn() as conn, pytest.raises(BadRequest, match="own key"):
        enrichment.opt_in(conn, w.workspace_id, "account:1", "apollo", w.key_ids["openai"])
    assert scoped(w, "SELECT count(*) FROM ai_enrichment_settings") == [(0,)]


def test_local_directory_csv_enriches_without_any_request(
    ai_world: AIWorld, apollo: FakeApollo, work_root: Path
) -> None:
    """The local CSV adapter fills fields from the customer's file; nothing goes to Apollo."""
    w = ai_world
    directory = work_root / f"directory-{w.workspace_id}-{id(w)}.csv"
    directory.write_text("Email,Phone,Department\nLEAD1@example.test,+33 1 23,Ops\n")
    with w.conn() as conn:
        enrichment.opt_in(
            conn, w.workspace_id, "account:1", "local_csv", directory_path=str(directory)
        )
    out = _enrich(w, apollo, lead=1)
    assert out["fields"] == ["department", "phone"] and out["source"] == "local_csv"
    assert apollo.requests == []
