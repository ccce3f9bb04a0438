"""The control plane's Chalice app: routes only. Services are built on the first request, never
at import time: by the provider the local platform injects with `use(...)` (`paitho up` serves
this app in-process), or else by the composition root, `chalicelib.factory.control_plane()`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from chalice.app import Chalice

from chalicelib import webapp

app = Chalice(app_name="paitho-control-plane")

_injected = webapp.Injected()


def use(provider: Callable[[], webapp.ControlPlane]) -> None:
    """Inject how to build the ControlPlane (call before the first request is served)."""
    _injected.provider = provider


def _services() -> webapp.ControlPlane:
    if _injected.provider is not None:
        return _injected.provider()
    factory = importlib.import_module("chalicelib.factory")
    control_plane: webapp.ControlPlane = factory.control_plane()
    return control_plane


handlers = webapp.build(app, _services)
billing_tick = handlers.billing_tick  # the hourly schedule's Lambda handler: app.billing_tick


@app.lambda_function(name="tenant_lifecycle")
def tenant_lifecycle(event: dict[str, object], context: object) -> dict[str, object]:
    """Provision, suspend, resume, upgrade or delete a tenant (operator tooling, workflows)."""
    from chalicelib import factory, tenant_ops
    from chalicelib.settings import from_env

    return tenant_ops.handle(factory.build_aws_tenant_service(from_env()), event)


@app.lambda_function(name="dispatch_tenant_jobs")
def dispatch_tenant_jobs(event: dict[str, object], context: object) -> dict[str, object]:
    """The jobs queue's consumer: start each tenant's backup/retention job (SQS batch)."""
    import os

    from chalicelib import backups, factory
    from chalicelib.settings import from_env

    settings = from_env()
    runner = backups.http_runner_from_env(factory.build_registry(settings), os.environ)
    records = event.get("Records")
    failed = backups.dispatch_jobs(
        records if isinstance(records, list) else [],
        runner,
        factory.aws_client(settings, "stepfunctions"),
    )
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
