"""What the web side needs from collaborators it does not own, as structural types.

`chalicelib.tenants.TenantService` satisfies TenantPort; tests pass a small fake.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from chalicelib.registry import TenantRecord


class TenantPort(Protocol):
    def create(self, slug: str, plan: str = "starter", region: str = "eu") -> TenantRecord: ...
    def show(self, slug: str) -> TenantRecord: ...
    def suspend(self, slug: str) -> TenantRecord: ...
    def resume(self, slug: str) -> TenantRecord: ...
    def delete(self, slug: str) -> TenantRecord: ...
    def set_plan(self, slug: str, plan: str) -> TenantRecord: ...


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
