"""The composition root of the local platform: settings → launcher, routes, services."""

from __future__ import annotations

import json
import os
from pathlib import Path

from chalicelib import factory
from chalicelib.launchers.local import LocalLauncher, SupervisorClient
from chalicelib.registry import Registry
from chalicelib.routes import HAProxyRoutes
from chalicelib.settings import Settings, from_env
from chalicelib.tenants import TenantService
from paitho_local.edge import edge_files

# Non-secret tenant settings the platform passes from its own environment to tenant apps.
TENANT_SETTINGS = frozenset({"PAITHO_OUTBOUND_INTERVAL"})

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "paitho-local",
    "AWS_SECRET_ACCESS_KEY": "paitho-local",
}


def platform_file(home: Path) -> Path:
    return home / "run" / "platform.json"


def settings_for_cli(home: Path | None = None) -> Settings:
    """Settings for a CLI command, pointed at the running platform's local AWS endpoint."""
    settings = from_env(home=home)
    info_path = platform_file(settings.home)
    if settings.aws_endpoint_url is None and info_path.exists():
        info = json.loads(info_path.read_text())
        for key, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(key, value)
        os.environ["AWS_ENDPOINT_URL"] = info["aws_endpoint_url"]
        # child processes (tenant jobs reporting to Step Functions) need a region too
        os.environ.setdefault("AWS_DEFAULT_REGION", settings.aws_region)
        settings = from_env(home=settings.home)
    return settings


def routes(settings: Settings) -> HAProxyRoutes:
    return edge_files(settings.home).route_table()


def launcher(settings: Settings) -> LocalLauncher:
    def origin(slug: str) -> str:
        return settings.tenant_url(slug, "").rstrip("/")

    passthrough = {k: v for k, v in settings.extra.items() if k in TENANT_SETTINGS}
    return LocalLauncher(
        settings.home,
        SupervisorClient(settings.supervisor_socket),
        public_origin=origin,
        tenant_env=passthrough,
    )


def registry(settings: Settings) -> Registry:
    return factory.build_registry(settings)


def tenant_service(settings: Settings, reg: Registry | None = None) -> TenantService:
    return factory.build_tenant_service(settings, launcher(settings), routes(settings), reg)
