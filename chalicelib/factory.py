"""The composition root for the control plane: clients, stores and services are built here and
passed down. Nothing is built at import time."""

from __future__ import annotations

from typing import Any

import boto3

from chalicelib.launchers.base import Launcher
from chalicelib.lifecycle import Executor
from chalicelib.registry import Registry
from chalicelib.routes import RouteTable
from chalicelib.settings import Settings
from chalicelib.tenants import TenantService


def aws_client(settings: Settings, service: str) -> Any:
    """A boto3 client; the endpoint comes from the standard settings (AWS_ENDPOINT_URL)."""
    session = boto3.session.Session(region_name=settings.aws_region)
    return session.client(service, endpoint_url=settings.aws_endpoint_url)  # type: ignore[call-overload]


def build_registry(settings: Settings) -> Registry:
    return Registry(aws_client(settings, "dynamodb"), settings.tenants_table)


def build_tenant_service(
    settings: Settings, launcher: Launcher, routes: RouteTable, registry: Registry | None = None
) -> TenantService:
    registry = registry or build_registry(settings)
    executor = Executor(registry, launcher, routes, settings.domain)
    return TenantService(registry, executor, settings.tenant_version)
