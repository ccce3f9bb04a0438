"""Tenant lifecycle as plan-then-execute.

`plan(desired, observed)` compares what should be with what is and returns a tuple of small
frozen steps; `Executor.run` carries them out against a launcher, the route table and the
registry. Plans are pure and unit-tested without I/O.

    desired running    no storage      -> provision, start, route, running
                       stopped         -> start, route, running
                       running, old v  -> unroute, stop, start(v), route, running (data kept)
                       running         -> route (if missing), running
    desired suspended                  -> unroute, stop, suspended
    desired deleted                    -> unroute, stop, destroy storage, deleted (tombstone)
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Union

from chalicelib.errors import LaunchError, PaithoError
from chalicelib.launchers.base import Launcher, Observed, Placement, TenantSpec
from chalicelib.registry import Registry, TenantRecord, now_iso
from chalicelib.routes import RouteTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Desired:
    state: str  # running | suspended | deleted
    version: str


@dataclass(frozen=True)
class RecordState:
    state: str


@dataclass(frozen=True)
class Provision:
    pass


@dataclass(frozen=True)
class Start:
    version: str


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Destroy:
    pass


@dataclass(frozen=True)
class SetRoute:
    pass


@dataclass(frozen=True)
class RemoveRoute:
    pass


Step = Union[RecordState, Provision, Start, Stop, Destroy, SetRoute, RemoveRoute]  # noqa: UP007


def plan(desired: Desired, observed: Observed, routed: bool) -> tuple[Step, ...]:
    steps: list[Step] = []
    if desired.state == "running":
        if not observed.storage_exists:
            return (
                RecordState("provisioning"),
                Provision(),
                Start(desired.version),
                SetRoute(),
                RecordState("running"),
            )
        if observed.running and observed.version == desired.version:
            if not routed:
                steps.append(SetRoute())
            steps.append(RecordState("running"))
            return tuple(steps)
        if observed.running:
            return (
                RecordState("upgrading"),
                RemoveRoute(),
                Stop(),
                Start(desired.version),
                SetRoute(),
                RecordState("running"),
            )
        return (RecordState("starting"), Start(desired.version), SetRoute(), RecordState("running"))
    if desired.state == "suspended":
        if routed:
            steps.append(RemoveRoute())
        if observed.running:
            steps.append(Stop())
        steps.append(RecordState("suspended"))
        return tuple(steps)
    if desired.state == "deleted":
        steps.append(RecordState("deleting"))
        if routed:
            steps.append(RemoveRoute())
        if observed.running:
            steps.append(Stop())
        if observed.storage_exists:
            steps.append(Destroy())
        steps.append(RecordState("deleted"))
        return tuple(steps)
    raise ValueError(f"unknown desired state {desired.state!r}")


def spec_of(record: TenantRecord, version: str | None = None) -> TenantSpec:
    return TenantSpec(record.slug, record.plan, record.region, version or record.version)


def placement_of(record: TenantRecord) -> Placement | None:
    if record.origin_port is None or record.data_location is None:
        return None
    return Placement(
        origin_host=record.origin_host or "127.0.0.1",
        origin_port=record.origin_port,
        data_location=record.data_location,
        db_port=record.db_port,
        task_arn=record.task_arn,
    )


class Executor:
    """Runs a plan; records every state change and the first failure on the tenant."""

    def __init__(self, registry: Registry, launcher: Launcher, routes: RouteTable, domain: str):
        self._registry = registry
        self._launcher = launcher
        self._routes = routes
        self._domain = domain

    def host(self, slug: str) -> str:
        return f"{slug}.{self._domain}"

    def observe(self, record: TenantRecord) -> tuple[Observed, bool]:
        observed = self._launcher.observe(spec_of(record), placement_of(record))
        routed = self.host(record.slug) in self._routes.routes()
        return observed, routed

    def converge(self, record: TenantRecord, desired: Desired) -> TenantRecord:
        try:
            observed, routed = self.observe(record)
        except PaithoError as exc:
            # e.g. the local platform is down: say so on the tenant instead of leaving it
            # stuck in its previous state
            return self._registry.update(
                record.slug,
                state="failed",
                last_error=f"observing the tenant failed: {exc.message}",
                last_error_at=now_iso(),
            )
        return self.run(record, desired, plan(desired, observed, routed))

    def run(self, record: TenantRecord, desired: Desired, steps: tuple[Step, ...]) -> TenantRecord:
        spec = spec_of(record, desired.version)
        placement = placement_of(record)
        for step in steps:
            try:
                record, placement = self._apply(step, record, spec, placement)
            except PaithoError as exc:
                log.warning("tenant %s: %s failed: %s", record.slug, type(step).__name__, exc)
                return self._registry.update(
                    record.slug,
                    state="failed",
                    last_error=f"{_verb(step)} failed: {exc.message}",
                    last_error_at=now_iso(),
                )
            except OSError as exc:
                reason = f"{_verb(step)} failed: {exc.strerror or exc} ({exc.filename or ''})"
                return self._registry.update(
                    record.slug, state="failed", last_error=reason, last_error_at=now_iso()
                )
        return record

    def _apply(
        self, step: Step, record: TenantRecord, spec: TenantSpec, placement: Placement | None
    ) -> tuple[TenantRecord, Placement | None]:
        slug = record.slug
        match step:
            case RecordState(state="running"):
                record = self._registry.update(
                    slug, state="running", last_error=None, last_error_at=None
                )
            case RecordState(state="deleted"):
                record = self._registry.update(
                    slug,
                    state="deleted",
                    deleted_at=now_iso(),
                    origin_port=None,
                    db_port=None,
                    task_arn=None,
                )
            case RecordState(state=state):
                record = self._registry.update(slug, state=state)
            case Provision():
                placement = self._launcher.provision(spec)
                record = self._save_placement(record, placement)
            case Start(version=version):
                if placement is None:
                    raise LaunchError("the tenant has no storage yet; provision it first")
                placement = self._launcher.start(
                    dataclasses.replace(spec, version=version), placement
                )
                record = self._save_placement(record, placement, version=version)
            case Stop():
                if placement is not None:
                    self._launcher.stop(spec, placement)
            case Destroy():
                if placement is not None:
                    self._launcher.destroy(spec, placement)
            case SetRoute():
                if placement is None:
                    raise LaunchError("the tenant has no origin to route to")
                self._routes.set_route(self.host(slug), placement.origin_port)
            case RemoveRoute():
                self._routes.remove_route(self.host(slug))
        return record, placement

    def _save_placement(
        self, record: TenantRecord, placement: Placement, version: str | None = None
    ) -> TenantRecord:
        changes: dict[str, object] = {
            "origin_host": placement.origin_host,
            "origin_port": placement.origin_port,
            "data_location": placement.data_location,
            "db_port": placement.db_port,
            "task_arn": placement.task_arn,
            "launcher": self._launcher.kind,
        }
        if version is not None:
            changes["version"] = version
        return self._registry.update(record.slug, **changes)


def _verb(step: Step) -> str:
    return {
        RecordState: "recording the state",
        Provision: "provisioning storage",
        Start: "starting the tenant",
        Stop: "stopping the tenant",
        Destroy: "destroying the tenant's data",
        SetRoute: "adding the route",
        RemoveRoute: "removing the route",
    }[type(step)]
