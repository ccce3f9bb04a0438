"""Plans, subscriptions and the billing state machine that drives the tenant lifecycle.

    trialing ─paid─> active ─payment_failed─> past_due ─(grace over)─> suspended
        │(trial over, unpaid) ──────────────────────^
        ^               ^                        │paid                     │paid
        │               └────────────────────────┴─────────────────────────┘ (resume)
    any ─canceled─> canceled ─(notice over, export reminder sent)─> tenant deleted

`decide` is pure: from a subscription, an event and the time it returns the changes to store and
a list of small action values; `BillingService` stores the changes, then executes the actions
(suspend, resume, delete the tenant, set its plan, send a notice). Deletion happens only after
the notice period, and only once a final-export reminder has been sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.audit import AuditLog
from chalicelib.errors import Conflict, InvalidInput, NotFound
from chalicelib.mailer import Mailer
from chalicelib.ports import TenantPort, iso
from chalicelib.stores import Item, Table

log = logging.getLogger(__name__)

STATES = ("trialing", "active", "past_due", "suspended", "canceled")
EVENTS = ("paid", "payment_failed", "canceled", "plan_changed", "tick")


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    monthly_eur: int | None
    workspaces: int | None  # None: unlimited
    seats: int | None
    mailboxes: int | None
    self_host: bool
    blurb: str


PLANS: dict[str, Plan] = {
    p.id: p
    for p in (
        Plan("starter", "Starter", 49, 1, 2, 2, False, "One brand, one workspace, two mailboxes."),
        Plan("pro", "Pro", 149, 1, 5, 10, False, "A growing team in one workspace."),
        Plan("agency", "Agency", 399, 10, 20, 50, False, "Multiple workspaces, one per client."),
        Plan("enterprise", "Enterprise", None, None, None, None, True, "Self-host the same image."),
    )
}


def limits_for(plan: str) -> dict[str, int | None]:
    p = PLANS[plan]
    return {"workspaces": p.workspaces, "seats": p.seats, "mailboxes": p.mailboxes}


@dataclass(frozen=True)
class Subscription:
    slug: str
    email: str
    plan: str
    state: str
    provider: str = "manual"
    customer_id: str | None = None
    subscription_id: str | None = None
    last_event_created: int = 0
    trial_ends_at: float | None = None
    past_due_since: float | None = None
    suspended_at: float | None = None
    canceled_at: float | None = None
    export_reminder_at: float | None = None
    delete_after: float | None = None
    deleted_at: float | None = None


def _sub(item: Item) -> Subscription:
    def num(name: str) -> float | None:
        return float(item[name]) if item.get(name) is not None else None

    return Subscription(
        slug=item["slug"],
        email=item["email"],
        plan=item["plan"],
        state=item["state"],
        provider=item.get("provider", "manual"),
        customer_id=item.get("customer_id"),
        subscription_id=item.get("subscription_id"),
        last_event_created=int(item.get("last_event_created", 0)),
        trial_ends_at=num("trial_ends_at"),
        past_due_since=num("past_due_since"),
        suspended_at=num("suspended_at"),
        canceled_at=num("canceled_at"),
        export_reminder_at=num("export_reminder_at"),
        delete_after=num("delete_after"),
        deleted_at=num("deleted_at"),
    )


# -- actions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Suspend:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Delete:
    pass


@dataclass(frozen=True)
class SetPlan:
    plan: str


@dataclass(frozen=True)
class Notify:
    kind: str  # trial_ended | payment_failed | suspended | final_export | resumed


Action = Suspend | Resume | Delete | SetPlan | Notify


def decide(
    sub: Subscription,
    event: str,
    now: float,
    grace_s: float,
    notice_s: float,
    plan: str | None = None,
) -> tuple[dict[str, Any], list[Action]]:
    """The state machine: (subscription, event, time) → (changes to store, actions to run)."""
    if sub.deleted_at is not None:
        return {}, []
    if event == "paid":
        if sub.state == "active":
            return {}, []
        changes: dict[str, Any] = {"state": "active", "past_due_since": None}
        changes |= {"canceled_at": None, "delete_after": None, "export_reminder_at": None}
        if sub.state == "suspended":
            return changes | {"suspended_at": None}, [Resume(), Notify("resumed")]
        return changes, []
    if event == "payment_failed":
        if sub.state in ("trialing", "active"):
            return {"state": "past_due", "past_due_since": now}, [Notify("payment_failed")]
        return {}, []
    if event == "canceled":
        if sub.state == "canceled":
            return {}, []
        return {
            "state": "canceled",
            "canceled_at": now,
            "export_reminder_at": now,
            "delete_after": now + notice_s,
        }, [Notify("final_export")]
    if event == "plan_changed":
        if plan is None or plan not in PLANS:
            raise InvalidInput(f"unknown plan {plan!r}; choose one of {', '.join(PLANS)}")
        return ({"plan": plan}, [SetPlan(plan)]) if plan != sub.plan else ({}, [])
    if event == "tick":
        if sub.state == "trialing" and sub.trial_ends_at is not None and now >= sub.trial_ends_at:
            return {"state": "past_due", "past_due_since": now}, [Notify("trial_ended")]
        if (
            sub.state == "past_due"
            and sub.past_due_since is not None
            and now - sub.past_due_since >= grace_s
        ):
            return {"state": "suspended", "suspended_at": now}, [Suspend(), Notify("suspended")]
        if (
            sub.state == "canceled"
            and sub.export_reminder_at is not None
            and sub.delete_after is not None
            and now >= sub.delete_after
        ):
            return {"deleted_at": now}, [Delete()]
        return {}, []
    raise InvalidInput(f"unknown billing event {event!r}; one of {', '.join(EVENTS)}")


NOTICES = {
    "trial_ended": (
        "Your Paitho trial has ended",
        "Your trial is over. Your workspace keeps running for {grace} more days; add a payment "
        "method to keep it that way. Nothing is deleted.",
    ),
    "payment_failed": (
        "Your Paitho payment did not go through",
        "We could not take your last payment. Your workspace keeps running for {grace} days; "
        "update your payment details to keep it that way.",
    ),
    "suspended": (
        "Your Paitho workspace is suspended",
        "Your workspace is suspended because a payment is overdue. Nothing is deleted; it "
        "resumes as soon as the payment arrives.",
    ),
    "resumed": ("Your Paitho workspace is running again", "Thank you: your workspace is back."),
    "final_export": (
        "Export your Paitho data before it is deleted",
        "Your subscription is canceled. Your workspace will be deleted in {notice} days. "
        "Export everything before then (Settings → Export, or docker save); after that date "
        "nothing can be recovered.",
    ),
}


class BillingService:
    def __init__(
        self,
        table: Table,
        tenants: TenantPort,
        mailer: Mailer,
        audit: AuditLog,
        clock: Callable[[], float],
        grace_days: int,
        notice_days: int,
        trial_days: int = 14,
    ) -> None:
        self._table = table
        self._tenants = tenants
        self._mailer = mailer
        self._audit = audit
        self._clock = clock
        self._grace_s = grace_days * 86400
        self._notice_s = notice_days * 86400
        self._trial_s = trial_days * 86400
        self._grace_days = grace_days
        self._notice_days = notice_days

    def get(self, slug: str) -> Subscription:
        item = self._table.get(slug)
        if item is None:
            raise NotFound(f"no subscription for {slug!r}")
        return _sub(item)

    def find(self, slug: str) -> Subscription | None:
        item = self._table.get(slug)
        return _sub(item) if item is not None else None

    def all(self) -> list[Subscription]:
        return sorted((_sub(i) for i in self._table.scan()), key=lambda s: s.slug)

    def start_trial(self, slug: str, email: str, plan: str) -> None:
        # A verification replayed after a crash finds the trial already there.
        with contextlib.suppress(Conflict):
            self._table.put_new(
                {
                    "slug": slug,
                    "email": email,
                    "plan": plan,
                    "state": "trialing",
                    "trial_ends_at": self._clock() + self._trial_s,
                    "provider": "manual",
                    "updated_at": iso(self._clock()),
                }
            )

    def link_customer(self, slug: str, provider: str, customer_id: str, sub_id: str | None) -> None:
        """Record the provider's customer once; a second, different customer is refused."""
        current = self.get(slug)
        if current.customer_id not in (None, customer_id):
            raise Conflict(f"{slug!r} already has a billing customer; refusing a second one")
        changes: dict[str, Any] = {"provider": provider, "customer_id": customer_id}
        if sub_id:
            changes["subscription_id"] = sub_id
        self._table.update(slug, changes | {"updated_at": iso(self._clock())})

    def apply(
        self,
        slug: str,
        event: str,
        actor: str,
        plan: str | None = None,
        event_created: int | None = None,
    ) -> Subscription:
        sub = self.get(slug)
        changes, actions = decide(
            sub, event, self._clock(), self._grace_s, self._notice_s, plan=plan
        )
        if event_created is not None:
            changes["last_event_created"] = max(event_created, sub.last_event_created)
        if changes:
            changes["updated_at"] = iso(self._clock())
            sub = _sub(self._table.update(slug, changes))
        for action in actions:
            self._execute(sub, action)
        if changes or actions:
            self._audit.record(f"billing:{event}", actor, slug, detail=sub.state)
        return sub

    def _execute(self, sub: Subscription, action: Action) -> None:
        if isinstance(action, Suspend):
            self._tenants.suspend(sub.slug)
        elif isinstance(action, Resume):
            self._tenants.resume(sub.slug)
        elif isinstance(action, Delete):
            self._tenants.delete(sub.slug)
        elif isinstance(action, SetPlan):
            self._tenants.set_plan(sub.slug, action.plan)
        else:
            subject, text = NOTICES[action.kind]
            body = text.format(grace=self._grace_days, notice=self._notice_days)
            self._mailer.send(sub.email, subject, body + f"\n\nWorkspace: {sub.slug}\n")

    def mark_paid(self, slug: str) -> Subscription:
        """The manual provider (`paitho billing mark-paid SLUG`)."""
        return self.apply(slug, "paid", actor="operator")

    def cancel(self, slug: str, actor: str) -> Subscription:
        return self.apply(slug, "canceled", actor=actor)

    def tick(self) -> list[Subscription]:
        """Run the clock-driven transitions (grace expiry, deletion after notice) for everyone."""
        return [self.apply(s.slug, "tick", actor="scheduler") for s in self.all()]
