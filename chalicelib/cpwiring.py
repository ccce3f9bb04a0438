"""Helpers for the composition root: key material, a CpConfig from the platform's Settings, and
a ControlPlane wired for the local platform (SMTP sink) or AWS (SES).

Keys come from the caller. `ephemeral_keys()` makes fresh ones in memory for one local process:
links mailed before a restart stop working, and nothing is ever written to disk.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.billing import Subscription
from chalicelib.cpconfig import CpConfig, RateRule, Secret, TableNames
from chalicelib.errors import InvalidInput, PlatformUnavailable
from chalicelib.mailer import Mailer, SesMailer, SmtpMailer
from chalicelib.mailsink import MailSink, start_mail_sink
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


def aws_keys(ssm: Any, prefix: str = "/paitho/control-plane") -> CpKeys:
    """Read the keys from SSM Parameter Store (SecureString, decrypted in memory only):
    `{prefix}/token-key` (hex, 32+ bytes), `{prefix}/licence-keys` (JSON {kid: base64 raw
    Ed25519 private key}), `{prefix}/licence-kid` (the signing key id) and, optionally,
    `{prefix}/stripe-webhook-secret`."""

    def param(name: str, required: bool = True) -> str | None:
        try:
            resp = ssm.get_parameter(Name=f"{prefix}/{name}", WithDecryption=True)
        except ClientError as exc:
            if not required and exc.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise PlatformUnavailable(
                f"control-plane parameter {prefix}/{name} unreadable: "
                f"{exc.response['Error']['Code']}"
            ) from exc
        return str(resp["Parameter"]["Value"])

    try:
        token_key = bytes.fromhex(param("token-key") or "")
        raw_keys = json.loads(param("licence-keys") or "{}")
        licence_keys = {
            str(kid): Ed25519PrivateKey.from_private_bytes(base64.b64decode(value))
            for kid, value in raw_keys.items()
        }
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"control-plane keys under {prefix} are malformed") from exc
    if len(token_key) < 32:
        raise InvalidInput(f"{prefix}/token-key must hold at least 32 bytes (64 hex digits)")
    kid = param("licence-kid") or ""
    if kid not in licence_keys:
        raise InvalidInput(f"{prefix}/licence-kid names no key in {prefix}/licence-keys")
    webhook = param("stripe-webhook-secret", required=False)
    return CpKeys(
        token_key=Secret(token_key),
        licence_keys=licence_keys,
        licence_kid=kid,
        stripe_webhook_secret=Secret(webhook.encode()) if webhook else None,
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


LOCAL_SIGNUP_RULE = RateRule(limit=1000, window_s=3600, base_delay_s=2.0, max_delay_s=60.0)


def local_control_plane(
    settings: Settings,
    tenants: TenantPort,
    dynamodb: Any,
    smtp_port: int,
    keys: CpKeys | None = None,
    **overrides: Any,
) -> ControlPlane:
    """`make up`: DynamoDB on the local AWS endpoint, mail to the sink on `smtp_port`.
    Every local request arrives from 127.0.0.1 through the edge, so the per-address signup
    limit is raised (LOCAL_SIGNUP_RULE); per-email login and reset limits stay as they are."""
    keys = keys or ephemeral_keys()
    overrides.setdefault("signup_rule", LOCAL_SIGNUP_RULE)
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


# -- the local platform (`paitho up`, `paitho billing mark-paid`) ----------------------------
def sink_port_file(home: Path) -> Path:
    return home / "run" / "mailsink.port"


@dataclass
class LocalControlPlane:
    """What `paitho up` keeps: the mail sink and the (lazily built) control plane."""

    sink: MailSink
    control_plane: Callable[[], ControlPlane]

    def tick(self) -> int:
        """The billing clock (AWS runs it hourly by schedule; locally the platform calls this)."""
        return len(self.control_plane().billing.tick())

    def stop(self) -> None:
        self.sink.stop()
        with contextlib.suppress(OSError):
            sink_port_file(self.sink.directory.parent).unlink()


def start_local_control_plane(
    settings: Settings,
    tenants: TenantPort,
    dynamodb: Any,
    use: Callable[[Callable[[], ControlPlane]], None],
    **overrides: Any,
) -> LocalControlPlane:
    """Start the mail sink under home/mail, record its port, and inject the control plane
    into app.py (`use` is `app.use`). Call before the first request reaches the app."""
    sink = start_mail_sink(settings.home)
    port_file = sink_port_file(settings.home)
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(f"{sink.port}\n")
    built: list[ControlPlane] = []

    def provider() -> ControlPlane:
        if not built:
            built.append(local_control_plane(settings, tenants, dynamodb, sink.port, **overrides))
        return built[0]

    use(provider)
    return LocalControlPlane(sink, provider)


def running_sink_port(home: Path) -> int:
    try:
        return int(sink_port_file(home).read_text().strip())
    except (OSError, ValueError) as exc:
        raise PlatformUnavailable(
            "the local mail sink is not running; start the platform with `make up`"
        ) from exc


def mark_paid(
    settings: Settings,
    tenants: TenantPort,
    dynamodb: Any,
    slug: str,
    table_prefix: str = "paitho",
) -> Subscription:
    """`paitho billing mark-paid SLUG`: the manual provider records a payment; a suspended
    tenant resumes and its owner gets a notice through the running platform's mail sink."""
    cp = local_control_plane(
        settings, tenants, dynamodb, running_sink_port(settings.home), table_prefix=table_prefix
    )
    return cp.billing.mark_paid(slug)
