"""The allowlist proof: after a full signup → verification → billing → suspension → deletion run
against DynamoDB (moto's server), every item in every control-plane table holds only allowlisted
attributes, and no stored value holds a password, a link token, a session id or a tenant marker."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
import stripe

from chalicelib.cpconfig import TableNames
from chalicelib.errors import StoreError
from chalicelib.mailer import MemoryMailer
from chalicelib.registry import ALLOWED_ATTRIBUTES, Registry, TenantRecord
from chalicelib.stores import SPECS, DynamoTable, dynamo_stores, ensure_tables
from tests.cp_support import (
    FORM_HEADERS,
    STRONG,
    WEBHOOK_SECRET,
    Clock,
    client_for,
    csrf_from,
    link_from,
    plane,
    post_form,
    signup_fields,
)

pytestmark = pytest.mark.functional

HOST = {"Host": "localhost:8000"}
# What a tenant would hold (set on its own setup page, inside its boundary): never sent here.
TENANT_MARKERS = ("canary-passphrase-7f3a9", "lead-canary@prospect.test", "canary message body")


class RegistryTenants:
    """The TenantService contract over the real registry, without launching processes."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def create(self, slug: str, plan: str = "starter", region: str = "eu") -> TenantRecord:
        self.registry.create(TenantRecord(slug=slug, plan=plan, region=region))
        return self.registry.update(slug, state="running", launcher="local")

    def show(self, slug: str) -> TenantRecord:
        return self.registry.get(slug)

    def suspend(self, slug: str) -> TenantRecord:
        return self.registry.update(slug, state="suspended", desired_state="suspended")

    def resume(self, slug: str) -> TenantRecord:
        return self.registry.update(slug, state="running", desired_state="running")

    def delete(self, slug: str) -> TenantRecord:
        return self.registry.update(slug, state="deleted", desired_state="deleted")

    def set_plan(self, slug: str, plan: str) -> TenantRecord:
        return self.registry.update(slug, plan=plan)


def stripe_post(client: Any, event_id: str, etype: str, obj: dict[str, Any]) -> None:
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": etype,
            "created": int(time.time()),
            "data": {"object": {"customer": "cus_1", "metadata": {"slug": "acme"}, **obj}},
        }
    )
    sig = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    headers = {"Content-Type": "application/json", "Stripe-Signature": sig}
    resp = client.http.post("/webhooks/stripe", headers=headers, body=payload.encode())
    assert resp.status_code == 200, resp.body


def test_full_run_leaves_only_allowlisted_attributes(aws_client: Any, unique: str) -> None:
    """After the whole lifecycle every item passes its allowlist and holds no secret."""
    dynamodb = aws_client("dynamodb")
    stores = dynamo_stores(dynamodb, TableNames.with_prefix(f"cp-{unique}"))
    ensure_tables(stores)
    registry = Registry(dynamodb, f"tenants-{unique}")
    registry.ensure_table()
    clock, mailer = Clock(time.time()), MemoryMailer()
    cp = plane(stores=stores, tenants=RegistryTenants(registry), mailer=mailer, clock=clock)
    client = client_for(cp)
    secrets_seen: list[str] = [STRONG, *TENANT_MARKERS]

    # signup, a double submission, verification
    assert post_form(client, "/signup", signup_fields()).status_code == 200
    assert post_form(client, "/signup", signup_fields()).status_code == 200
    verify_token = link_from(mailer.outbox[-1].text, "/verify")
    secrets_seen.append(verify_token)
    resp = client.http.get(f"/verify?token={verify_token}", headers=HOST)
    assert resp.headers["Location"] == "http://acme.localhost:8000/setup"

    # login, a plan change from the portal, a password reset
    resp = post_form(client, "/login", {"email": "ann@example.com", "password": STRONG})
    cookie = str(resp.headers["Set-Cookie"]).split(";")[0]
    secrets_seen.append(cookie.split("=", 1)[1])
    csrf = csrf_from(client.http.get("/billing", headers={**HOST, "Cookie": cookie}).body)
    client.http.post(
        "/billing/plan",
        headers={**FORM_HEADERS, "Cookie": cookie},
        body=f"csrf={csrf}&plan=agency".encode(),
    )
    post_form(client, "/reset/request", {"email": "ann@example.com"}, "/reset")
    reset_token = link_from(mailer.outbox[-1].text, "/reset")
    new_password = "violet-mountain-orchard-7"
    secrets_seen += [reset_token, new_password]
    post_form(client, "/reset", {"token": reset_token, "password": new_password}, "/reset")
    post_form(client, "/login", {"email": "ann@example.com", "password": "wrong-password-x"})
    resp = post_form(client, "/login", {"email": "ann@example.com", "password": new_password})
    secrets_seen.append(str(resp.headers["Set-Cookie"]).split(";")[0].split("=", 1)[1])

    # billing through Stripe, a licence, posture data
    stripe_post(client, "evt_1", "invoice.paid", {"object": "invoice"})
    stripe_post(
        client,
        "evt_2",
        "customer.subscription.updated",
        {"object": "subscription", "id": "sub_1", "status": "active",
         "items": {"data": [{"price": {"lookup_key": "pro"}}]}},
    )  # fmt: skip
    licence = json.loads(client.http.get("/licences/acme").body)["licence"]
    secrets_seen.append(licence)
    cp.status.set_component("Tenant edge", "operational", "99.99")

    # suspension after the grace period, resumption, cancellation and deletion after notice
    stripe_post(client, "evt_3", "invoice.payment_failed", {"object": "invoice"})
    clock.advance(15 * 86400)
    cp.billing.tick()
    assert registry.get("acme").state == "suspended"
    cp.manual.mark_paid("acme")
    assert registry.get("acme").state == "running"
    stripe_post(client, "evt_4", "customer.subscription.deleted", {"object": "subscription"})
    clock.advance(31 * 86400)
    cp.billing.tick()
    assert registry.get("acme").state == "deleted"

    # the proof
    tables: dict[str, list[dict[str, Any]]] = {
        kind: table.scan() for kind, table in stores.all().items()
    }
    tables["registry"] = registry.raw_items()
    assert all(tables[k] for k in ("accounts", "sessions", "tokens", "audit", "subscriptions"))
    assert all(tables[k] for k in ("stripe_events", "licences", "status", "registry", "claims"))
    for kind, items in tables.items():
        allowed = ALLOWED_ATTRIBUTES if kind == "registry" else SPECS[kind].allowed
        for item in items:
            assert set(item) <= allowed, (kind, sorted(set(item) - allowed))
            for value in item.values():
                for secret in secrets_seen:
                    assert secret not in str(value), (kind, "holds a secret")
    assert len(tables["accounts"]) == 1 and len(tables["subscriptions"]) == 1
    assert [r["slug"] for r in tables["registry"]] == ["acme"]


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_table_refuses_a_non_allowlisted_attribute(
    aws_client: Any, unique: str, kind: str
) -> None:
    """put, put_new and update naming an attribute outside the allowlist fail before any write."""
    table = DynamoTable(aws_client("dynamodb"), f"cp-{unique}-{kind}", kind)
    table.ensure()
    key = SPECS[kind].key
    for write in (
        lambda: table.put({key: "k", "passphrase": "hunter2"}),
        lambda: table.put_new({key: "k", "lead_email": "x@y.z"}),
        lambda: table.update("k", {"message_body": "hi"}),
    ):
        with pytest.raises(StoreError, match="non-allowlisted"):
            write()
    assert table.scan() == []


def test_dynamo_and_memory_tables_keep_one_contract(aws_client: Any, unique: str) -> None:
    """Conditional create, conditional update and removal behave alike on both implementations."""
    from chalicelib.errors import Conflict
    from chalicelib.stores import MemoryTable

    dynamo = DynamoTable(aws_client("dynamodb"), f"cp-{unique}-contract", "subscriptions")
    dynamo.ensure()
    for table in (dynamo, MemoryTable("subscriptions")):
        table.put_new({"slug": "a", "email": "e", "plan": "pro", "state": "trialing"})
        with pytest.raises(Conflict):
            table.put_new({"slug": "a", "email": "e", "plan": "pro", "state": "trialing"})
        with pytest.raises(Conflict):
            table.update("a", {"state": "active"}, expect={"state": "past_due"})
        got = table.update("a", {"state": "active", "email": None}, expect={"state": "trialing"})
        assert got == {"slug": "a", "plan": "pro", "state": "active"}
        with pytest.raises(Conflict):
            table.update("missing", {"state": "active"})
        table.delete("a")
        assert table.get("a") is None
    assert dataclasses.is_dataclass(TenantRecord)
