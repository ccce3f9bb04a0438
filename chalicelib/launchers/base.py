"""The launcher interface every implementation follows.

A launcher knows how to give one tenant storage (a data directory or an encrypted volume), run
it (app + its own Postgres), stop it and destroy it. It never decides *what* should happen: the
lifecycle planner does (chalicelib/lifecycle.py). Every method raises LaunchError with a reason
a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TenantSpec:
    """What the control plane asks for: billing metadata only, never a secret."""

    slug: str
    plan: str
    region: str
    version: str


@dataclass(frozen=True)
class Placement:
    """Where a tenant lives. Stored in the registry (every field is allowlisted there)."""

    origin_host: str
    origin_port: int
    data_location: str  # a data directory (local) or a volume/task reference (ECS)
    db_port: int | None = None
    task_arn: str | None = None


@dataclass(frozen=True)
class Observed:
    """What the launcher sees right now."""

    storage_exists: bool
    running: bool
    version: str | None = None
    detail: str = ""


class Launcher(Protocol):
    kind: str

    def observe(self, spec: TenantSpec, placement: Placement | None) -> Observed:
        """Report storage and process state without changing anything."""
        ...

    def provision(self, spec: TenantSpec) -> Placement:
        """Create the tenant's storage and reserve its ports/resources. Idempotent per slug."""
        ...

    def start(self, spec: TenantSpec, placement: Placement) -> Placement:
        """Run the tenant at spec.version; return once it answers /healthz. May move the origin."""
        ...

    def stop(self, spec: TenantSpec, placement: Placement) -> None:
        """Stop the tenant's processes; data stays. Idempotent."""
        ...

    def destroy(self, spec: TenantSpec, placement: Placement) -> None:
        """Destroy the tenant's storage (data directory or volume). Idempotent."""
        ...
