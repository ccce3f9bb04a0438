"""Tenant operations: the functions the CLI and the Lambda handlers call.

Each operation records the desired state in the registry, then converges the tenant to it
through the lifecycle planner and executor. Failures are recorded on the tenant with a reason
(`paitho tenants show`), never only in a log.
"""

from __future__ import annotations

import builtins
import re

from chalicelib.errors import Conflict, InvalidInput
from chalicelib.lifecycle import Desired, Executor
from chalicelib.registry import Registry, TenantRecord

PLANS = ("starter", "pro", "agency", "enterprise")
REGIONS = ("eu", "us")
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])$")
RESERVED_SLUGS = frozenset(
    [
        "www",
        "api",
        "app",
        "admin",
        "marketplace",
        "licenses",
        "licences",
        "status",
        "mail",
        "smtp",
        "imap",
        "pop",
        "pop3",
        "security",
        "billing",
        "support",
        "docs",
        "help",
        "blog",
        "static",
        "assets",
        "cdn",
        "auth",
        "login",
        "signup",
        "account",
        "accounts",
        "dashboard",
        "console",
        "root",
        "ftp",
        "ns",
        "ns1",
        "ns2",
        "mx",
        "webmail",
        "autodiscover",
        "autoconfig",
        "localhost",
        "paitho",
        "trust",
        "changelog",
        "edge",
        "internal",
        "test",
        "staging",
        "dev",
    ]
)


def validate_slug(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug) or "--" in slug:
        raise InvalidInput(
            "a tenant name must be 3-40 characters of lower-case letters, digits and inner "
            "hyphens (a DNS label), e.g. 'acme' or 'acme-eu'"
        )
    if slug in RESERVED_SLUGS:
        raise InvalidInput(f"the name {slug!r} is reserved; choose another")
    return slug


class TenantService:
    def __init__(self, registry: Registry, executor: Executor, default_version: str) -> None:
        self._registry = registry
        self._executor = executor
        self._version = default_version

    @property
    def registry(self) -> Registry:
        return self._registry

    def create(self, slug: str, plan: str = "starter", region: str = "eu") -> TenantRecord:
        validate_slug(slug)
        if plan not in PLANS:
            raise InvalidInput(f"unknown plan {plan!r}; choose one of {', '.join(PLANS)}")
        if region not in REGIONS:
            raise InvalidInput(f"unknown region {region!r}; choose 'eu' or 'us'")
        record = self._registry.create(
            TenantRecord(slug=slug, plan=plan, region=region, version=self._version)
        )
        return self._executor.converge(record, Desired("running", self._version))

    def list(self, include_deleted: bool = False) -> list[TenantRecord]:
        return self._registry.list(include_deleted=include_deleted)

    def show(self, slug: str) -> TenantRecord:
        return self._registry.get(slug)

    def suspend(self, slug: str) -> TenantRecord:
        record = self._live(slug)
        record = self._registry.update(slug, desired_state="suspended", state="suspending")
        return self._executor.converge(record, Desired("suspended", record.version))

    def resume(self, slug: str) -> TenantRecord:
        record = self._live(slug)
        record = self._registry.update(slug, desired_state="running")
        return self._executor.converge(record, Desired("running", record.version))

    def upgrade(self, slug: str, version: str | None = None) -> TenantRecord:
        record = self._live(slug)
        target = version or self._version
        if record.desired_state != "running":
            raise Conflict(f"{slug} is {record.desired_state}; resume it before upgrading")
        return self._executor.converge(record, Desired("running", target))

    def delete(self, slug: str) -> TenantRecord:
        record = self._live(slug)
        record = self._registry.update(slug, desired_state="deleted")
        return self._executor.converge(record, Desired("deleted", record.version))

    def set_plan(self, slug: str, plan: str) -> TenantRecord:
        if plan not in PLANS:
            raise InvalidInput(f"unknown plan {plan!r}; choose one of {', '.join(PLANS)}")
        self._live(slug)
        return self._registry.update(slug, plan=plan)

    def reconcile_all(self) -> builtins.list[TenantRecord]:
        """Bring every tenant to its desired state (used when the platform starts)."""
        results = []
        for record in self._registry.list():
            desired = Desired(record.desired_state, record.version or self._version)
            results.append(self._executor.converge(record, desired))
        return results

    def _live(self, slug: str) -> TenantRecord:
        record = self._registry.get(slug)
        if record.state == "deleted":
            raise Conflict(f"{slug} was deleted; create it again to reuse the name")
        return record
