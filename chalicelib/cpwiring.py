"""Helpers for the composition root: key material, a CpConfig from the platform's Settings, and
a ControlPlane wired for the local platform (SMTP sink) or AWS (SES).

Keys come from the caller. `ephemeral_keys()` makes fresh ones in memory for one local process:
links mailed before a restart stop working, and nothing is ever written to disk.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.cpconfig import CpConfig, Secret, TableNames
from chalicelib.mailer import Mailer, SesMailer, SmtpMailer
from chalicelib.ports import TenantPort
from chalicelib.settings import Settings
from chalicelib.stores import dynamo_stores, ensure_tables
from chalicelib.webapp import ControlPlane, build_control_plane


@dataclass(frozen=True)
class CpKeys:
    token_key: Secret
    licence_keys: dict[str, Ed25519PrivateKey] = field(repr=False)
    licence_kid: str
    stripe_webhook_secret: Secret | None = None


def ephemeral_keys(stripe_webhook_secret: str | None = None) -> CpKeys:
    return CpKeys(
        token_key=Secret(secrets.token_bytes(32)),
        licence_keys={"local-1": Ed25519PrivateKey.generate()},
        licence_kid="local-1",
        stripe_webhook_secret=(
            Secret(stripe_webhook_secret.encode()) if stripe_webhook_secret else None
        ),
    )


def cp_config(
    settings: Settings, keys: CpKeys, table_prefix: str = "paitho", **overrides: Any
) -> CpConfig:
    return CpConfig(
        token_key=keys.token_key,
        domain=settings.domain,
        public_scheme=settings.public_scheme,
        edge_port=settings.edge_port,
        region=settings.aws_region,
        tables=TableNames.with_prefix(table_prefix),
        stripe_webhook_secret=keys.stripe_webhook_secret,
        **overrides,
    )


def _wire(
    config: CpConfig, keys: CpKeys, dynamodb: Any, tenants: TenantPort, mailer: Mailer
) -> ControlPlane:
    stores = dynamo_stores(dynamodb, config.tables)
    ensure_tables(stores)
    return build_control_plane(
        config,
        stores,
        tenants,
        mailer,
        licence_keys=keys.licence_keys,
        licence_kid=keys.licence_kid,
    )


def local_control_plane(
    settings: Settings,
    tenants: TenantPort,
    dynamodb: Any,
    smtp_port: int,
    keys: CpKeys | None = None,
    **overrides: Any,
) -> ControlPlane:
    """`make up`: DynamoDB on the local AWS endpoint, mail to the sink on `smtp_port`."""
    keys = keys or ephemeral_keys()
    config = cp_config(settings, keys, **overrides)
    return _wire(
        config, keys, dynamodb, tenants, SmtpMailer("127.0.0.1", smtp_port, config.mail_from)
    )


def aws_control_plane(
    settings: Settings,
    tenants: TenantPort,
    dynamodb: Any,
    ses: Any,
    keys: CpKeys,
    sender: str,
    **overrides: Any,
) -> ControlPlane:
    """AWS: DynamoDB tables made by CloudFormation (ensure is a no-op), mail through SES."""
    config = cp_config(settings, keys, mail_from=sender, **overrides)
    return _wire(config, keys, dynamodb, tenants, SesMailer(ses, sender))
