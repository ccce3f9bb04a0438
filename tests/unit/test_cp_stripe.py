"""Stripe webhooks: signature and timestamp verified by the official library, idempotent by
event id, tolerant of out-of-order delivery, one customer per tenant."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe

from chalicelib.errors import SignatureInvalid
from tests.cp_support import WEBHOOK_SECRET, FakeTenants, client_for, plane

NOW = int(time.time())


def event(
    event_id: str, etype: str, created: int, obj: dict[str, Any], slug: str = "acme"
) -> bytes:
    obj = {"customer": "cus_1", "metadata": {"slug": slug}, **obj}
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": etype,
            "created": created,
            "data": {"object": obj},
        }
    ).encode()


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    return str(stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, at))


@pytest.fixture
def tenants() -> FakeTenants:
    t = FakeTenants()
    t.create("acme", "pro", "eu")
    return t


@pytest.fixture
def cp(tenants: FakeTenants):  # type: ignore[no-untyped-def]
    cp = plane(tenants=tenants)
    cp.billing.start_trial("acme", "ann@example.com", "pro")
    return cp


def deliver(cp, payload: bytes, signature: str | None = None) -> str:  # type: ignore[no-untyped-def]
    return str(cp.stripe.handle(payload, sign(payload) if signature is None else signature))


def test_a_signed_event_applies(cp) -> None:  # type: ignore[no-untyped-def]
    """invoice.paid with a valid signature activates the subscription and links the customer."""
    assert deliver(cp, event("evt_1", "invoice.paid", NOW, {"object": "invoice"})) == "paid"
    got = cp.billing.get("acme")
    assert got.state == "active" and got.customer_id == "cus_1" and got.provider == "stripe"


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "garbage",
        "t=abc,v1=def",
        "t=1,v1=" + "0" * 64,
        None,  # placeholder: signed with the wrong secret
    ],
)
def test_bad_signatures_are_refused(cp, signature: str | None) -> None:  # type: ignore[no-untyped-def]
    """Missing, malformed or wrong-secret signatures raise SignatureInvalid and change nothing."""
    payload = event("evt_1", "invoice.paid", NOW, {})
    if signature is None:
        signature = sign(payload, "whsec_other")
    with pytest.raises(SignatureInvalid):
        cp.stripe.handle(payload, signature)
    assert cp.billing.get("acme").state == "trialing"
    assert cp.stores.stripe_events.scan() == []


def test_a_tampered_body_is_refused(cp) -> None:  # type: ignore[no-untyped-def]
    """A body changed after signing fails verification."""
    payload = event("evt_1", "invoice.paid", NOW, {})
    signature = sign(payload)
    with pytest.raises(SignatureInvalid):
        cp.stripe.handle(payload.replace(b"acme", b"acmf"), signature)


def test_an_old_timestamp_is_outside_the_tolerance(cp) -> None:  # type: ignore[no-untyped-def]
    """A correctly signed delivery older than the 300 s tolerance is refused (replay guard)."""
    payload = event("evt_1", "invoice.paid", NOW, {})
    with pytest.raises(SignatureInvalid):
        cp.stripe.handle(payload, sign(payload, at=int(time.time()) - 301))
    assert deliver(cp, payload, sign(payload, at=int(time.time()) - 200)) == "paid"


def test_a_replayed_event_is_processed_once(cp, tenants: FakeTenants) -> None:  # type: ignore[no-untyped-def]
    """Delivering one event id twice applies it once; the second answer is 'duplicate'."""
    cp.billing.apply("acme", "payment_failed", "test")
    cp.clock.advance(15 * 86400)
    cp.billing.tick()
    payload = event("evt_9", "invoice.paid", NOW, {})
    assert deliver(cp, payload) == "paid"
    assert deliver(cp, payload) == "duplicate"
    assert [op for op, _ in tenants.calls].count("resume") == 1


def test_events_out_of_order_do_not_undo_newer_state(cp) -> None:  # type: ignore[no-untyped-def]
    """A payment failure created before an already applied payment is recorded as stale."""
    assert deliver(cp, event("evt_2", "invoice.paid", NOW, {})) == "paid"
    assert deliver(cp, event("evt_1", "invoice.payment_failed", NOW - 60, {})) == "stale"
    assert cp.billing.get("acme").state == "active"
    outcomes = {e["event_id"]: e["outcome"] for e in cp.stores.stripe_events.scan()}
    assert outcomes == {"evt_2": "paid", "evt_1": "stale"}


def test_a_stale_subscription_snapshot_does_not_revive_a_canceled_one(cp) -> None:  # type: ignore[no-untyped-def]
    """subscription.deleted then an older subscription.updated(active): stays canceled."""
    sub = {"object": "subscription", "id": "sub_1"}
    deleted = event("evt_5", "customer.subscription.deleted", NOW, {**sub, "status": "canceled"})
    older = event("evt_4", "customer.subscription.updated", NOW - 5, {**sub, "status": "active"})
    assert deliver(cp, deleted) == "canceled"
    assert deliver(cp, older) == "stale"
    assert cp.billing.get("acme").state == "canceled"


def test_a_plan_change_updates_the_one_customer(cp, tenants: FakeTenants) -> None:  # type: ignore[no-untyped-def]
    """subscription.updated with a new price changes the plan on the same record and tenant."""
    sub = {"object": "subscription", "id": "sub_1", "status": "active"}
    items = {"items": {"data": [{"price": {"lookup_key": "agency"}}]}}
    assert deliver(cp, event("evt_1", "customer.subscription.created", NOW, sub)) == "paid"
    assert (
        deliver(cp, event("evt_2", "customer.subscription.updated", NOW + 1, sub | items)) == "paid"
    )
    records = cp.stores.subscriptions.scan()
    assert len(records) == 1
    assert records[0]["plan"] == "agency" and records[0]["customer_id"] == "cus_1"
    assert records[0]["subscription_id"] == "sub_1"
    assert tenants.records["acme"].plan == "agency"


def test_a_second_customer_for_one_tenant_is_refused(cp) -> None:  # type: ignore[no-untyped-def]
    """An event naming a different customer for a linked tenant changes nothing."""
    deliver(cp, event("evt_1", "invoice.paid", NOW, {}))
    other = event("evt_2", "invoice.payment_failed", NOW + 1, {"customer": "cus_2"})
    assert deliver(cp, other).startswith("refused")
    got = cp.billing.get("acme")
    assert got.customer_id == "cus_1" and got.state == "active"


def test_the_webhook_route_answers_400_on_a_bad_signature(cp) -> None:  # type: ignore[no-untyped-def]
    """POST /webhooks/stripe maps a bad signature to 400 and a good one to 200."""
    client = client_for(cp)
    payload = event("evt_1", "invoice.paid", NOW, {})
    headers = {"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=bad"}
    assert client.http.post("/webhooks/stripe", headers=headers, body=payload).status_code == 400
    headers["Stripe-Signature"] = sign(payload)
    resp = client.http.post("/webhooks/stripe", headers=headers, body=payload)
    assert resp.status_code == 200 and json.loads(resp.body) == {"outcome": "paid"}
