"""Settings, resolved once at the edge: explicit argument, then environment, then default.

Nothing below the composition root (chalicelib/factory.py) reads os.environ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chalicelib.errors import InvalidInput


@dataclass(frozen=True)
class Settings:
    home: Path
    domain: str = "localhost"
    public_scheme: str = "http"
    edge_host: str = "127.0.0.1"
    edge_port: int = 8000
    control_port: int = 0  # 0: pick a free loopback port at start
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    tenants_table: str = "paitho-tenants"
    launcher: str = "local"
    tenant_version: str = "0.1.0"
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def public_port_suffix(self) -> str:
        default = 443 if self.public_scheme == "https" else 80
        return "" if self.edge_port == default else f":{self.edge_port}"

    def tenant_url(self, slug: str, path: str = "/") -> str:
        return f"{self.public_scheme}://{slug}.{self.domain}{self.public_port_suffix}{path}"

    def tenant_host(self, slug: str) -> str:
        return f"{slug}.{self.domain}"

    @property
    def data_dir(self) -> Path:
        return self.home / "tenants"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def mail_sink_dir(self) -> Path:
        return self.home / "mail"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidInput(f"{name} must be a whole number, got {raw!r}") from exc


def from_env(env: Mapping[str, str] | None = None, home: Path | None = None) -> Settings:
    env = os.environ if env is None else env
    resolved_home = home or Path(env.get("PAITHO_HOME") or "./.paitho")
    launcher = env.get("PAITHO_LAUNCHER", "local")
    if launcher not in ("local", "ecs"):
        raise InvalidInput(f"PAITHO_LAUNCHER must be 'local' or 'ecs', got {launcher!r}")
    return Settings(
        home=resolved_home.resolve(),
        domain=env.get("PAITHO_DOMAIN", "localhost"),
        public_scheme=env.get("PAITHO_PUBLIC_SCHEME", "http"),
        edge_host=env.get("PAITHO_EDGE_HOST", "127.0.0.1"),
        edge_port=_int(env, "PAITHO_EDGE_PORT", 8000),
        control_port=_int(env, "PAITHO_CONTROL_PORT", 0),
        aws_region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        tenants_table=env.get("PAITHO_TENANTS_TABLE", "paitho-tenants"),
        launcher=launcher,
        tenant_version=env.get("PAITHO_TENANT_VERSION", "0.1.0"),
        extra={k: v for k, v in env.items() if k.startswith("PAITHO_")},
    )
