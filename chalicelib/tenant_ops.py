"""The tenant lifecycle as a Lambda event handler: {"action", "slug", ...} -> a plain result.

The operator's tooling (and Step Functions) invoke `tenant_lifecycle` with one action; the same
TenantService functions back the local `paitho tenants` CLI.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chalicelib.errors import InvalidInput, PaithoError
from chalicelib.registry import TenantRecord
from chalicelib.tenants import TenantService

ACTIONS = ("create", "show", "list", "suspend", "resume", "upgrade", "delete")


def _plain(record: TenantRecord) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(record).items() if k != "extra"}


def handle(service: TenantService, event: Any) -> dict[str, Any]:
    """Run one lifecycle action; errors come back as {"ok": false, "status", "error"}."""
    try:
        if not isinstance(event, dict):
            raise InvalidInput("the event must be a JSON object with an 'action'")
        action = event.get("action")
        if action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        if action == "list":
            return {"ok": True, "tenants": [_plain(r) for r in service.list()]}
        slug = event.get("slug")
        if not isinstance(slug, str) or not slug:
            raise InvalidInput(f"'{action}' needs a 'slug'")
        if action == "create":
            record = service.create(
                slug, plan=str(event.get("plan", "starter")), region=str(event.get("region", "eu"))
            )
        elif action == "upgrade":
            version = event.get("version")
            record = service.upgrade(slug, str(version) if version else None)
        else:
            record = getattr(service, action)(slug)
    except PaithoError as exc:
        return {"ok": False, "status": exc.status, "error": exc.message}
    return {"ok": record.state != "failed", "tenant": _plain(record)}
