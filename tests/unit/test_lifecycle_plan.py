"""The lifecycle planner: desired versus observed state gives the right steps, without I/O."""

from __future__ import annotations

import pytest

from chalicelib.launchers.base import Observed
from chalicelib.lifecycle import (
    Desired,
    Destroy,
    Provision,
    RecordState,
    RemoveRoute,
    SetRoute,
    Start,
    Stop,
    plan,
)

NOTHING = Observed(storage_exists=False, running=False)
STOPPED = Observed(storage_exists=True, running=False)
RUNNING_V1 = Observed(storage_exists=True, running=True, version="1")


def test_new_tenant_is_provisioned_started_and_routed() -> None:
    """A tenant with no storage is provisioned, started, routed, then recorded running."""
    assert plan(Desired("running", "1"), NOTHING, routed=False) == (
        RecordState("provisioning"),
        Provision(),
        Start("1"),
        SetRoute(),
        RecordState("running"),
    )


def test_running_tenant_at_desired_version_needs_nothing_but_its_state() -> None:
    """Converging a healthy tenant is a no-op apart from recording the state."""
    assert plan(Desired("running", "1"), RUNNING_V1, routed=True) == (RecordState("running"),)


def test_running_tenant_missing_its_route_gets_it_back() -> None:
    """A lost route is restored without restarting the tenant."""
    assert plan(Desired("running", "1"), RUNNING_V1, routed=False) == (
        SetRoute(),
        RecordState("running"),
    )


def test_stopped_tenant_is_started_not_provisioned() -> None:
    """Existing storage is reused: start and route, never provision again."""
    steps = plan(Desired("running", "1"), STOPPED, routed=False)
    assert Provision() not in steps
    assert steps == (RecordState("starting"), Start("1"), SetRoute(), RecordState("running"))


def test_upgrade_restarts_on_new_version_and_keeps_data() -> None:
    """A version change stops and starts on the new version; storage is never destroyed."""
    steps = plan(Desired("running", "2"), RUNNING_V1, routed=True)
    assert steps == (
        RecordState("upgrading"),
        RemoveRoute(),
        Stop(),
        Start("2"),
        SetRoute(),
        RecordState("running"),
    )
    assert Destroy() not in steps and Provision() not in steps


def test_suspend_unroutes_before_stopping() -> None:
    """Suspension removes the route first so no request reaches a stopping tenant."""
    assert plan(Desired("suspended", "1"), RUNNING_V1, routed=True) == (
        RemoveRoute(),
        Stop(),
        RecordState("suspended"),
    )


def test_suspend_of_stopped_unrouted_tenant_only_records() -> None:
    """Suspending something already down changes nothing but the state."""
    assert plan(Desired("suspended", "1"), STOPPED, routed=False) == (RecordState("suspended"),)


def test_delete_removes_route_stops_destroys_and_leaves_tombstone() -> None:
    """Deletion goes route → processes → data, and ends with a tombstone state."""
    assert plan(Desired("deleted", "1"), RUNNING_V1, routed=True) == (
        RecordState("deleting"),
        RemoveRoute(),
        Stop(),
        Destroy(),
        RecordState("deleted"),
    )


def test_delete_of_half_provisioned_tenant_is_idempotent() -> None:
    """Deleting a tenant whose storage never appeared only records the tombstone."""
    assert plan(Desired("deleted", "1"), NOTHING, routed=False) == (
        RecordState("deleting"),
        RecordState("deleted"),
    )


def test_unknown_desired_state_is_refused() -> None:
    """A typo in a desired state is a programming error, not a silent no-op."""
    with pytest.raises(ValueError, match="unknown desired state"):
        plan(Desired("paused", "1"), RUNNING_V1, routed=True)
