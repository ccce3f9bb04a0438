"""The billing state machine (pure) and the service that turns its actions into tenant
lifecycle calls: suspend after grace, resume on payment, delete only after notice + reminder."""

from __future__ import annotations

import pytest

from chalicelib.billing import (
    PLANS,
    Delete,
    Notify,
    Resume,
    SetPlan,
    Subscription,
    Suspend,
    decide,
    limits_for,
)
from chalicelib.errors import InvalidInput
from chalicelib.mailer import MemoryMailer
from tests.cp_support import Clock, FakeTenants, plane

DAY = 86400.0
GRACE, NOTICE = 14 * DAY, 30 * DAY


def sub(state: str, **kw: object) -> Subscription:
    return Subscription(slug="acme", email="ann@example.com", plan="pro", state=state, **kw)  # type: ignore[arg-type]


def test_payment_activates_a_trial_without_touching_the_tenant() -> None:
    """trialing + paid → active, no lifecycle action."""
    assert decide(sub("trialing"), "paid", 0, GRACE, NOTICE) == (
        {
            "state": "active",
            "past_due_since": None,
            "canceled_at": None,
            "delete_after": None,
            "export_reminder_at": None,
        },
        [],
    )


def test_a_failed_payment_starts_the_grace_period() -> None:
    """active + payment_failed → past_due with its start time and a notice."""
    changes, actions = decide(sub("active"), "payment_failed", 100, GRACE, NOTICE)
    assert changes == {"state": "past_due", "past_due_since": 100}
    assert actions == [Notify("payment_failed")]


def test_suspension_waits_for_the_grace_period() -> None:
    """past_due is suspended by the clock only once the grace period is over."""
    s = sub("past_due", past_due_since=0.0)
    assert decide(s, "tick", GRACE - 1, GRACE, NOTICE) == ({}, [])
    changes, actions = decide(s, "tick", GRACE, GRACE, NOTICE)
    assert changes["state"] == "suspended" and actions == [Suspend(), Notify("suspended")]


def test_payment_resumes_a_suspended_tenant() -> None:
    """suspended + paid → active and the tenant is resumed."""
    changes, actions = decide(sub("suspended", suspended_at=5.0), "paid", 10, GRACE, NOTICE)
    assert changes["state"] == "active" and changes["suspended_at"] is None
    assert actions == [Resume(), Notify("resumed")]


def test_cancellation_sends_the_export_reminder_and_deletes_only_after_notice() -> None:
    """canceled → reminder now, delete_after = now + notice; tick deletes only after that."""
    changes, actions = decide(sub("active"), "canceled", 1000, GRACE, NOTICE)
    assert actions == [Notify("final_export")]
    assert changes["delete_after"] == 1000 + NOTICE and changes["export_reminder_at"] == 1000
    canceled = sub("canceled", export_reminder_at=1000.0, delete_after=1000 + NOTICE)
    assert decide(canceled, "tick", 1000 + NOTICE - 1, GRACE, NOTICE) == ({}, [])
    assert decide(canceled, "tick", 1000 + NOTICE, GRACE, NOTICE)[1] == [Delete()]


def test_no_deletion_without_a_reminder() -> None:
    """A canceled subscription with no export reminder on record is never deleted."""
    canceled = sub("canceled", delete_after=0.0)
    assert decide(canceled, "tick", 10 * NOTICE, GRACE, NOTICE) == ({}, [])


def test_a_deleted_subscription_ignores_everything() -> None:
    """Once deleted, no event changes anything."""
    gone = sub("canceled", deleted_at=1.0)
    for event in ("paid", "payment_failed", "canceled", "tick"):
        assert decide(gone, event, 2, GRACE, NOTICE) == ({}, [])


def test_plan_change_updates_the_plan_once() -> None:
    """plan_changed sets the plan and tells the tenant; the same plan is a no-op; unknown fails."""
    assert decide(sub("active"), "plan_changed", 0, GRACE, NOTICE, plan="agency") == (
        {"plan": "agency"},
        [SetPlan("agency")],
    )
    assert decide(sub("active"), "plan_changed", 0, GRACE, NOTICE, plan="pro") == ({}, [])
    with pytest.raises(InvalidInput):
        decide(sub("active"), "plan_changed", 0, GRACE, NOTICE, plan="free")


def test_plan_limits() -> None:
    """Agency has several workspaces; Enterprise is unlimited and self-hostable."""
    assert limits_for("starter") == {"workspaces": 1, "seats": 2, "mailboxes": 2}
    assert limits_for("agency")["workspaces"] == 10
    assert limits_for("enterprise") == {"workspaces": None, "seats": None, "mailboxes": None}
    assert PLANS["enterprise"].self_host and not PLANS["agency"].self_host


def test_the_service_drives_the_tenant_lifecycle_end_to_end() -> None:
    """failure → grace → suspend → mark_paid resumes → cancel → reminder → delete after notice."""
    clock, tenants, mailer = Clock(), FakeTenants(), MemoryMailer()
    cp = plane(tenants=tenants, mailer=mailer, clock=clock)
    tenants.create("acme", "pro", "eu")
    cp.billing.start_trial("acme", "ann@example.com", "pro")
    cp.billing.apply("acme", "payment_failed", "stripe")
    cp.billing.tick()
    assert tenants.records["acme"].state == "running"
    clock.advance(GRACE)
    cp.billing.tick()
    assert tenants.records["acme"].state == "suspended"
    cp.manual.mark_paid("acme")
    assert tenants.records["acme"].state == "running"
    assert cp.billing.get("acme").state == "active"
    cp.billing.cancel("acme", "acct_x")
    assert "Export your Paitho data" in mailer.outbox[-1].subject
    clock.advance(NOTICE - 1)
    cp.billing.tick()
    assert tenants.records["acme"].state == "running"
    clock.advance(1)
    cp.billing.tick()
    assert tenants.records["acme"].state == "deleted"
    ops = [op for op, _ in tenants.calls]
    assert ops == ["create", "suspend", "resume", "delete"]


def test_mark_paid_is_idempotent() -> None:
    """Marking an active subscription paid again changes nothing and calls no lifecycle."""
    tenants = FakeTenants()
    cp = plane(tenants=tenants)
    tenants.create("acme")
    cp.billing.start_trial("acme", "ann@example.com", "pro")
    cp.manual.mark_paid("acme")
    cp.manual.mark_paid("acme")
    assert cp.billing.get("acme").state == "active"
    assert [op for op, _ in tenants.calls] == ["create"]


def test_the_hourly_schedule_runs_the_billing_clock() -> None:
    """Invoking the billing_tick Lambda suspends a subscription whose grace is over."""
    from tests.cp_support import client_for

    tenants = FakeTenants()
    cp = plane(tenants=tenants)
    tenants.create("acme")
    cp.billing.start_trial("acme", "ann@example.com", "pro")
    cp.billing.apply("acme", "payment_failed", "test")
    cp.clock.advance(GRACE)
    client = client_for(cp)
    client.lambda_.invoke(
        "billing_tick", client.events.generate_cw_event("Scheduled Event", "aws.events", {}, [])
    )
    assert tenants.records["acme"].state == "suspended"


def test_an_unpaid_trial_becomes_past_due_then_suspended() -> None:
    """After the 14-day trial without payment: past_due and a notice; after grace: suspended."""
    clock, tenants, mailer = Clock(), FakeTenants(), MemoryMailer()
    cp = plane(tenants=tenants, mailer=mailer, clock=clock)
    tenants.create("acme")
    cp.billing.start_trial("acme", "ann@example.com", "pro")
    clock.advance(14 * DAY - 1)
    cp.billing.tick()
    assert cp.billing.get("acme").state == "trialing"
    clock.advance(1)
    cp.billing.tick()
    assert cp.billing.get("acme").state == "past_due"
    assert mailer.outbox[-1].subject == "Your Paitho trial has ended"
    clock.advance(GRACE)
    cp.billing.tick()
    assert tenants.records["acme"].state == "suspended"


def test_a_paid_trial_never_lapses() -> None:
    """A trial paid before its end is active and the trial clock no longer applies."""
    clock, tenants = Clock(), FakeTenants()
    cp = plane(tenants=tenants, clock=clock)
    tenants.create("acme")
    cp.billing.start_trial("acme", "ann@example.com", "pro")
    cp.manual.mark_paid("acme")
    clock.advance(60 * DAY)
    cp.billing.tick()
    assert cp.billing.get("acme").state == "active"
