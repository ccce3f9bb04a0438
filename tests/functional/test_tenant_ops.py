"""The tenant_lifecycle Lambda handler drives the same TenantService as the CLI."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import tenant_ops
from chalicelib.launchers.base import Observed, Placement, TenantSpec
from chalicelib.lifecycle import Executor
from chalicelib.registry import Registry
from chalicelib.registry_routes import RegistryRoutes
from chalicelib.tenants import TenantService

pytestmark = pytest.mark.functional


class RecordingLauncher:
    """A launcher that keeps tenants in a dict: the ECS launcher has its own moto tests."""

    kind = "test"

    def __init__(self) -> None:
        self.running: dict[str, str] = {}
        self.storage: set[str] = set()
        self.calls: list[str] = []

    def observe(self, spec: TenantSpec, placement: Placement | None) -> Observed:
        return Observed(
            spec.slug in self.storage, spec.slug in self.running, self.running.get(spec.slug)
        )

    def provision(self, spec: TenantSpec) -> Placement:
        self.calls.append(f"provision {spec.slug}")
        self.storage.add(spec.slug)
        return Placement("10.0.0.9", 8443, f"vol-{spec.slug}")

    def start(self, spec: TenantSpec, placement: Placement) -> Placement:
        self.calls.append(f"start {spec.slug} {spec.version}")
        self.running[spec.slug] = spec.version
        return placement

    def stop(self, spec: TenantSpec, placement: Placement) -> None:
        self.calls.append(f"stop {spec.slug}")
        self.running.pop(spec.slug, None)

    def destroy(self, spec: TenantSpec, placement: Placement) -> None:
        self.calls.append(f"destroy {spec.slug}")
        self.storage.discard(spec.slug)


@pytest.fixture
def service(aws_client: Any, unique: str) -> TenantService:
    registry = Registry(aws_client("dynamodb"), f"tenants-{unique}")
    registry.ensure_table()
    launcher = RecordingLauncher()
    svc = TenantService(
        registry,
        Executor(registry, launcher, RegistryRoutes(registry, "paitho.ai"), "paitho.ai"),
        "7",
    )
    svc.launcher = launcher  # type: ignore[attr-defined]
    return svc


def test_lifecycle_through_events(service: TenantService) -> None:
    """create → suspend → resume → upgrade → delete: each an event, each in the registry."""
    created = tenant_ops.handle(service, {"action": "create", "slug": "acme", "plan": "pro"})
    assert created["ok"] and created["tenant"]["state"] == "running"
    assert created["tenant"]["origin_host"] == "10.0.0.9"
    assert (
        tenant_ops.handle(service, {"action": "suspend", "slug": "acme"})["tenant"]["state"]
        == "suspended"
    )
    assert (
        tenant_ops.handle(service, {"action": "resume", "slug": "acme"})["tenant"]["state"]
        == "running"
    )
    up = tenant_ops.handle(service, {"action": "upgrade", "slug": "acme", "version": "8"})
    assert up["tenant"]["version"] == "8"
    gone = tenant_ops.handle(service, {"action": "delete", "slug": "acme"})
    assert gone["tenant"]["state"] == "deleted"
    assert service.launcher.calls == [  # type: ignore[attr-defined]
        "provision acme",
        "start acme 7",
        "stop acme",
        "start acme 7",
        "stop acme",
        "start acme 8",
        "stop acme",
        "destroy acme",
    ]


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("not a dict", 422),
        ({"action": "explode", "slug": "acme"}, 422),
        ({"action": "suspend"}, 422),
        ({"action": "create", "slug": "Bad Slug!"}, 422),
        ({"action": "create", "slug": "admin"}, 422),
        ({"action": "show", "slug": "nobody"}, 404),
    ],
)
def test_bad_events_get_clear_errors(service: TenantService, event: Any, status: int) -> None:
    """Malformed events and unknown tenants come back as errors with a status, never a crash."""
    result = tenant_ops.handle(service, event)
    assert result["ok"] is False and result["status"] == status and result["error"]


def test_second_create_of_a_slug_conflicts(service: TenantService) -> None:
    """Creating a taken slug answers 409 and leaves the first tenant untouched."""
    tenant_ops.handle(service, {"action": "create", "slug": "acme"})
    again = tenant_ops.handle(service, {"action": "create", "slug": "acme", "plan": "agency"})
    assert again["status"] == 409
    assert (
        tenant_ops.handle(service, {"action": "show", "slug": "acme"})["tenant"]["plan"]
        == "starter"
    )
