"""Outbound Stripe calls through the official client against a loopback HTTP server that
answers the few endpoints used: one customer and one subscription per tenant, ever; a plan
change modifies the existing subscription item and creates nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import stripe

from chalicelib.errors import Conflict, PaymentProviderError
from chalicelib.mailer import MemoryMailer
from chalicelib.payments import StripeProvider
from tests.cp_support import (
    FORM_HEADERS,
    STRONG,
    FakeTenants,
    client_for,
    csrf_from,
    link_from,
    plane,
    post_form,
    signup_fields,
)

pytestmark = pytest.mark.functional

PRICES = {"starter": "price_starter", "pro": "price_pro", "agency": "price_agency"}


class StripeStandIn:
    """Records every request; answers like Stripe for customers and subscriptions."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, list[str]], str | None]] = []
        self.fail_next = False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode()) if length else {}
                key = self.headers.get("Idempotency-Key")
                stand_in.requests.append((self.command, self.path, form, key))
                if stand_in.fail_next:
                    stand_in.fail_next = False
                    return self._json(
                        402,
                        {
                            "error": {
                                "type": "card_error",
                                "code": "card_declined",
                                "message": "declined",
                            }
                        },
                    )
                if self.command == "POST" and self.path == "/v1/customers":
                    return self._json(200, {"id": "cus_1", "object": "customer"})
                if self.command == "POST" and self.path == "/v1/subscriptions":
                    return self._json(200, {"id": "sub_1", "object": "subscription"})
                if self.path.startswith("/v1/subscriptions/sub_1"):
                    item = {"id": "si_1", "object": "subscription_item"}
                    items = {"object": "list", "data": [item]}
                    return self._json(
                        200, {"id": "sub_1", "object": "subscription", "items": items}
                    )
                return self._json(
                    404, {"error": {"type": "invalid_request_error", "message": "no"}}
                )

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def creations(self) -> list[str]:
        return [
            p
            for m, p, _, _ in self.requests
            if m == "POST" and p in ("/v1/customers", "/v1/subscriptions")
        ]


@pytest.fixture
def stand_in() -> Iterator[StripeStandIn]:
    s = StripeStandIn()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def setup(stand_in: StripeStandIn):  # type: ignore[no-untyped-def]
    client = stripe.StripeClient(
        "sk_test_local", base_addresses={"api": stand_in.base}, max_network_retries=0
    )
    tenants = FakeTenants()
    tenants.create("acme", "pro", "eu")
    cp = plane(tenants=tenants, stripe_client=client, stripe_prices=PRICES)
    cp.billing.start_trial("acme", "ann@example.com", "pro")
    return cp


def test_customer_and_subscription_are_created_once(setup, stand_in: StripeStandIn) -> None:  # type: ignore[no-untyped-def]
    """subscribe twice → one customer POST and one subscription POST, with idempotency keys."""
    provider = setup.provider
    assert isinstance(provider, StripeProvider)
    assert provider.subscribe("acme") == "sub_1"
    assert provider.subscribe("acme") == "sub_1"
    assert stand_in.creations() == ["/v1/customers", "/v1/subscriptions"]
    keys = [k for m, p, _, k in stand_in.requests if m == "POST"]
    assert keys == ["paitho-customer-acme", "paitho-subscription-acme"]
    got = setup.billing.get("acme")
    assert (got.customer_id, got.subscription_id, got.provider) == ("cus_1", "sub_1", "stripe")


def test_a_plan_change_modifies_the_existing_subscription(setup, stand_in: StripeStandIn) -> None:  # type: ignore[no-untyped-def]
    """The portal's plan change updates item si_1 of sub_1 to the new price; nothing is created."""
    setup.provider.subscribe("acme")
    stand_in.requests.clear()
    setup.provider.change_plan("acme", "agency")
    assert stand_in.creations() == []
    method, path, form, _ = stand_in.requests[-1]
    assert (method, path) == ("POST", "/v1/subscriptions/sub_1")
    assert form["items[0][id]"] == ["si_1"] and form["items[0][price]"] == ["price_agency"]
    assert form["metadata[plan]"] == ["agency"]
    assert len(setup.stores.subscriptions.scan()) == 1


def test_plan_change_without_a_subscription_is_refused(setup) -> None:  # type: ignore[no-untyped-def]
    """Changing the plan before subscribing is a Conflict, not a new subscription."""
    with pytest.raises(Conflict):
        setup.provider.change_plan("acme", "agency")


def test_stripe_errors_are_translated(setup, stand_in: StripeStandIn) -> None:  # type: ignore[no-untyped-def]
    """A Stripe API error becomes PaymentProviderError (502) naming the code."""
    stand_in.fail_next = True
    with pytest.raises(PaymentProviderError, match="card_declined"):
        setup.provider.ensure_customer("acme")
    assert setup.billing.get("acme").customer_id is None


def test_portal_plan_change_goes_through_stripe(stand_in: StripeStandIn) -> None:
    """With Stripe configured the billing portal's plan form calls Stripe, not the manual path."""
    client_api = stripe.StripeClient(
        "sk_test_local", base_addresses={"api": stand_in.base}, max_network_retries=0
    )
    mailer = MemoryMailer()
    cp = plane(mailer=mailer, stripe_client=client_api, stripe_prices=PRICES)
    client = client_for(cp)
    post_form(client, "/signup", signup_fields())
    token = link_from(mailer.outbox[-1].text, "/verify")
    client.http.get(f"/verify?token={token}")
    cp.provider.subscribe("acme")
    resp = post_form(client, "/login", {"email": "ann@example.com", "password": STRONG})
    cookie = str(resp.headers["Set-Cookie"]).split(";")[0]
    csrf = csrf_from(client.http.get("/billing", headers={"Cookie": cookie}).body)
    client.http.post(
        "/billing/plan",
        headers={**FORM_HEADERS, "Cookie": cookie},
        body=f"csrf={csrf}&plan=agency".encode(),
    )
    assert stand_in.requests[-1][1] == "/v1/subscriptions/sub_1"
    assert stand_in.creations() == ["/v1/customers", "/v1/subscriptions"]
    assert cp.billing.get("acme").plan == "pro"  # until Stripe's webhook confirms the change
