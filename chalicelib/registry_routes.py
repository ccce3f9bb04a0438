"""The route table as the registry itself, for the serverless control plane.

A Lambda cannot reach an edge's admin socket. In AWS the edge fleet routes by SNI from a map it
refreshes from the registry (`origin_host`/`origin_port` of running tenants, see
infra/aws/haproxy-sni.cfg); so "setting a route" here means the origin recorded by the executor,
and this table only reads it back.
"""

from __future__ import annotations

from chalicelib.registry import Registry


class RegistryRoutes:
    def __init__(self, registry: Registry, domain: str) -> None:
        self._registry = registry
        self._domain = domain

    def set_route(self, host: str, port: int) -> None:
        """The executor has already recorded the origin on the tenant; nothing more to do."""

    def remove_route(self, host: str) -> None:
        """Routes follow the tenant's state: a tenant that is not running is not routed."""

    def routes(self) -> dict[str, int]:
        return {
            f"{r.slug}.{self._domain}": r.origin_port
            for r in self._registry.list()
            if r.state == "running" and r.origin_port is not None
        }
