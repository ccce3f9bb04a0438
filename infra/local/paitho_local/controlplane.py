"""Serve the Chalice control plane in-process on a loopback port, behind the edge.

Requests whose Host names a tenant (`{slug}.localhost`) reach this server only when the edge
has no route for them (unknown, provisioning, suspended); they get the control plane's routing
decision page. Everything else is the Chalice app, as `chalice local` would serve it.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer

from chalicelib.registry import Registry
from chalicelib.routing import decide, render, tenant_slug

REPO_ROOT = Path(__file__).resolve().parents[3]


def load_app_module() -> Any:
    """The repository's app.py (the Chalice app and its `use` injection hook)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("app")


def make_handler(domain: str, registry: Callable[[], Registry]) -> type[ChaliceRequestHandler]:
    class Handler(ChaliceRequestHandler):
        def _generic_handle(self) -> None:
            slug = tenant_slug(self.headers.get("Host", ""), domain)
            if slug is None:
                super()._generic_handle()
                return
            decision = decide(slug, registry())
            body = render(decision).encode()
            self.send_response(decision.status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Paitho-Tenant-State", decision.state or "unknown")
            if decision.retry_after:
                self.send_header("Retry-After", str(decision.retry_after))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _generic_handle

        def log_message(self, format: str, *args: Any) -> None:
            """No access log: paths can carry tokens."""

    return Handler


class ControlPlaneServer:
    def __init__(self, app: Any, host: str, port: int, domain: str, registry: Registry) -> None:
        handler = make_handler(domain, lambda: registry)
        self._server = LocalDevServer(
            app, Config(chalice_stage="local"), host, port, handler_cls=handler
        )
        # the HTTP server itself: LocalDevServer.serve_forever would print its internal port
        self._thread = threading.Thread(target=self._server.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.server.shutdown()
        self._server.server.server_close()
