"""The composition root for the control plane: clients, stores and services are built here and
passed down. Nothing is built at import time."""

from __future__ import annotations

from typing import Any

import boto3

from chalicelib.errors import InvalidInput
from chalicelib.launchers.base import Launcher
from chalicelib.launchers.ecs import EcsConfig, EcsLauncher
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


def ecs_config(settings: Settings) -> EcsConfig:
    """The ECS launcher's configuration from the PAITHO_ECS_* settings (CloudFormation outputs
    of infra/aws/tenants.yaml). A missing one is a clear failure, not a silent default."""
    env = settings.extra

    def need(name: str) -> str:
        value = env.get(name)
        if not value:
            raise InvalidInput(
                f"{name} is not set; it is an output of the infra/aws/tenants.yaml stack"
            )
        return value

    def many(name: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in need(name).split(",") if v.strip())

    return EcsConfig(
        cluster=need("PAITHO_ECS_CLUSTER"),
        subnets=many("PAITHO_ECS_SUBNETS"),
        security_groups=many("PAITHO_ECS_SECURITY_GROUPS"),
        image_repository=need("PAITHO_ECS_IMAGE_REPOSITORY"),
        execution_role_arn=need("PAITHO_ECS_EXECUTION_ROLE_ARN"),
        task_role_arn=need("PAITHO_ECS_TASK_ROLE_ARN"),
        infrastructure_role_arn=need("PAITHO_ECS_INFRASTRUCTURE_ROLE_ARN"),
        kms_key_id=need("PAITHO_ECS_VOLUME_KEY_ARN"),
        log_group=need("PAITHO_ECS_LOG_GROUP"),
        aws_region=settings.aws_region,
        domain=settings.domain,
    )


def build_ecs_launcher(settings: Settings) -> EcsLauncher:
    return EcsLauncher.from_clients(
        aws_client(settings, "ecs"), aws_client(settings, "ec2"), ecs_config(settings)
    )


def build_aws_tenant_service(settings: Settings) -> TenantService:
    """The tenant service the Lambdas use: ECS launcher, routes read from the registry."""
    from chalicelib.registry_routes import RegistryRoutes

    if settings.launcher != "ecs":
        raise InvalidInput(
            "the Lambda control plane launches tenants on ECS: set PAITHO_LAUNCHER=ecs"
        )
    registry = build_registry(settings)
    return build_tenant_service(
        settings, build_ecs_launcher(settings), RegistryRoutes(registry, settings.domain), registry
    )


def control_plane(settings: Settings | None = None) -> Any:
    """The control plane as deployed (Lambda): DynamoDB tables from CloudFormation, SES for
    mail, keys from SSM. Called lazily by app.py on the first request of a container."""
    from chalicelib.cpwiring import aws_control_plane, aws_keys
    from chalicelib.settings import from_env

    settings = settings or from_env()
    sender = settings.extra.get("PAITHO_MAIL_FROM") or f"no-reply@{settings.domain}"
    return aws_control_plane(
        settings,
        build_aws_tenant_service(settings),
        aws_client(settings, "dynamodb"),
        aws_client(settings, "ses"),
        aws_keys(aws_client(settings, "ssm")),
        sender,
    )
