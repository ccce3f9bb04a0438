"""Payment providers: Stripe webhooks (verified with the official library) and the manual
provider for self-hosted and local use.

Stripe events are verified by `stripe.Webhook.construct_event` (signature and timestamp
tolerance), processed at most once per event id (a conditional write claims the id first; a
failure releases it so Stripe's retry is processed), and tolerant of reordering: an event older
than the last one applied to the same subscription is recorded but changes nothing. Every event
maps to one subscription item keyed by the tenant slug, linked to one customer: a plan change
updates that record; a second customer for the same tenant is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import stripe

from chalicelib.billing import PLANS, BillingService
from chalicelib.cpconfig import Secret
from chalicelib.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PaymentProviderError,
    SignatureInvalid,
)
from chalicelib.ports import iso
from chalicelib.stores import Table

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 256 * 1024


class PaymentProvider(Protocol):
    name: str

    def mark_paid(self, slug: str) -> None: ...
    def change_plan(self, slug: str, plan: str) -> None: ...


class ManualProvider:
    """Payments recorded by the operator (`paitho billing mark-paid SLUG`)."""

    name = "manual"

    def __init__(self, billing: BillingService) -> None:
        self._billing = billing

    def mark_paid(self, slug: str) -> None:
        self._billing.mark_paid(slug)

    def change_plan(self, slug: str, plan: str) -> None:
        self._billing.apply(slug, "plan_changed", actor="operator", plan=plan)


class StripeProvider:
    """Outbound calls to Stripe through an injected `stripe.StripeClient`. One customer and one
    subscription per tenant: creation uses idempotency keys derived from the slug and is skipped
    once the ids are on record; a plan change modifies the existing subscription item. The local
    record follows when Stripe's `customer.subscription.updated` webhook arrives."""

    name = "stripe"

    def __init__(
        self, client: stripe.StripeClient, billing: BillingService, prices: Mapping[str, str]
    ) -> None:
        self._client = client
        self._billing = billing
        self._prices = dict(prices)

    def _price(self, plan: str) -> str:
        if plan not in self._prices:
            raise InvalidInput(f"no Stripe price is configured for the plan {plan!r}")
        return self._prices[plan]

    def ensure_customer(self, slug: str) -> str:
        sub = self._billing.get(slug)
        if sub.customer_id:
            return sub.customer_id
        try:
            customer = self._client.v1.customers.create(
                params={"email": sub.email, "metadata": {"slug": slug}},
                options={"idempotency_key": f"paitho-customer-{slug}"},
            )
        except stripe.StripeError as exc:
            raise PaymentProviderError(
                f"Stripe refused to create the customer: {exc.code}"
            ) from exc
        self._billing.link_customer(slug, "stripe", customer.id, None)
        return str(customer.id)

    def subscribe(self, slug: str) -> str:
        customer_id = self.ensure_customer(slug)
        sub = self._billing.get(slug)
        if sub.subscription_id:
            return sub.subscription_id
        try:
            created = self._client.v1.subscriptions.create(
                params={
                    "customer": customer_id,
                    "items": [{"price": self._price(sub.plan)}],
                    "metadata": {"slug": slug, "plan": sub.plan},
                },
                options={"idempotency_key": f"paitho-subscription-{slug}"},
            )
        except stripe.StripeError as exc:
            raise PaymentProviderError(f"Stripe refused the subscription: {exc.code}") from exc
        self._billing.link_customer(slug, "stripe", customer_id, created.id)
        return str(created.id)

    def change_plan(self, slug: str, plan: str) -> None:
        price = self._price(plan)
        sub = self._billing.get(slug)
        if not sub.subscription_id:
            raise Conflict(f"{slug!r} has no Stripe subscription yet; subscribe first")
        try:
            current = self._client.v1.subscriptions.retrieve(sub.subscription_id)
            item_id = current["items"]["data"][0]["id"]
            self._client.v1.subscriptions.update(
                sub.subscription_id,
                params={
                    "items": [{"id": item_id, "price": price}],
                    "metadata": {"slug": slug, "plan": plan},
                    "proration_behavior": "create_prorations",
                },
            )
        except stripe.StripeError as exc:
            raise PaymentProviderError(f"Stripe refused the plan change: {exc.code}") from exc

    def mark_paid(self, slug: str) -> None:
        raise InvalidInput(f"{slug!r} pays through Stripe; payments arrive by webhook")


_SUBSCRIPTION_STATUS = {
    "active": "paid",
    "past_due": "payment_failed",
    "unpaid": "payment_failed",
    "canceled": "canceled",
    "incomplete_expired": "canceled",
}
_INVOICE_EVENTS = {
    "invoice.paid": "paid",
    "invoice.payment_succeeded": "paid",
    "invoice.payment_failed": "payment_failed",
}


class StripeWebhooks:
    def __init__(
        self,
        secret: Secret,
        tolerance_s: int,
        events: Table,
        billing: BillingService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._tolerance = tolerance_s
        self._events = events
        self._billing = billing
        self._clock = clock

    def handle(self, payload: bytes, signature: str | None) -> str:
        """Verify and apply one webhook delivery; returns a short outcome word."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise SignatureInvalid("webhook payload too large")
        try:
            event = stripe.Webhook.construct_event(
                payload.decode("utf-8"),
                signature,
                self._secret.reveal().decode(),
                tolerance=self._tolerance,
            )
        except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError) as exc:
            raise SignatureInvalid("webhook signature or timestamp did not verify") from exc
        data = event.to_dict()
        event_id, etype = str(data.get("id", "")), str(data.get("type", ""))
        created = int(data.get("created", 0))
        if not event_id:
            raise SignatureInvalid("webhook event has no id")
        try:
            self._events.put_new(
                {
                    "event_id": event_id,
                    "type": etype[:100],
                    "created": created,
                    "received_at": iso(self._clock()),
                    "outcome": "processing",
                }
            )
        except Conflict:
            return "duplicate"
        try:
            outcome = self._dispatch(etype, created, data.get("data", {}).get("object", {}))
        except Exception:
            self._events.delete(event_id)  # let Stripe's retry try again
            raise
        self._events.update(event_id, {"outcome": outcome})
        log.info("stripe event %s type=%s outcome=%s", event_id, etype, outcome)
        return outcome

    def _slug_for(self, obj: Mapping[str, Any]) -> str | None:
        metadata = obj.get("metadata") or {}
        slug = metadata.get("slug") or obj.get("client_reference_id")
        if slug:
            return str(slug)
        customer = obj.get("customer")
        for sub in self._billing.all():
            if customer and sub.customer_id == customer:
                return sub.slug
        return None

    def _dispatch(self, etype: str, created: int, obj: Mapping[str, Any]) -> str:
        slug = self._slug_for(obj)
        if slug is None:
            return "ignored: no tenant"
        try:
            sub = self._billing.get(slug)
        except NotFound:
            return "ignored: no subscription"
        customer = obj.get("customer")
        sub_id = obj.get("subscription")
        if obj.get("object") == "subscription":
            sub_id = obj.get("id")
        if customer:
            try:
                self._billing.link_customer(slug, "stripe", str(customer), sub_id and str(sub_id))
            except Conflict:
                return "refused: a second customer for one tenant"
        if etype == "checkout.session.completed":
            return "linked"
        if created < sub.last_event_created:
            return "stale"
        if etype in _INVOICE_EVENTS:
            self._billing.apply(slug, _INVOICE_EVENTS[etype], "stripe", event_created=created)
            return _INVOICE_EVENTS[etype]
        if etype == "customer.subscription.deleted":
            self._billing.apply(slug, "canceled", "stripe", event_created=created)
            return "canceled"
        if etype in ("customer.subscription.created", "customer.subscription.updated"):
            plan = _plan_of(obj)
            if plan is not None and plan != sub.plan:
                self._billing.apply(slug, "plan_changed", "stripe", plan=plan)
            event = _SUBSCRIPTION_STATUS.get(str(obj.get("status", "")))
            if event is None:
                return "noted"
            self._billing.apply(slug, event, "stripe", event_created=created)
            return event
        return "ignored: type"


def _plan_of(obj: Mapping[str, Any]) -> str | None:
    plan = (obj.get("metadata") or {}).get("plan")
    if not plan:
        items = (obj.get("items") or {}).get("data") or []
        if items:
            price = items[0].get("price") or {}
            plan = price.get("lookup_key") or (price.get("metadata") or {}).get("plan")
    return str(plan) if plan in PLANS else None
