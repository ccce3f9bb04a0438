"""A small stand-in for `make up` used by the control-plane browser test: the Chalice app served
over HTTP by chalice's own local server, transactional mail through the real SMTP sink, and a
stand-in tenant answering `http://{slug}.localhost:{port}/setup` once its tenant exists.

It is not the platform (the e2e test in tests/e2e/test_cp_e2e.py drives that); it lets a real
browser exercise every control-plane page and the mail link on any machine."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer

from chalicelib import webapp
from chalicelib.mailer import SmtpMailer
from chalicelib.mailsink import start_mail_sink
from tests.cp_support import FakeTenants, plane


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MiniStack:
    base: str
    port: int
    home: Path
    tenants: FakeTenants
    cp: webapp.ControlPlane


def _handler(tenants: FakeTenants) -> type[ChaliceRequestHandler]:
    class Handler(ChaliceRequestHandler):
        def _generic_handle(self) -> None:
            host = self.headers.get("Host", "").split(":")[0]
            if not host.endswith(".localhost"):
                super()._generic_handle()
                return
            slug = host.removesuffix(".localhost")
            known = slug in tenants.records and self.path.startswith("/setup")
            body = (
                f"<!doctype html><title>Set up {slug}</title><h1>Set up {slug}</h1>"
                if known
                else "<!doctype html><title>Not found</title>"
            ).encode()
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _generic_handle

        def log_message(self, format: str, *args: Any) -> None:
            """No access log: paths carry tokens."""

    return Handler


@contextmanager
def mini_stack() -> Iterator[MiniStack]:
    with tempfile.TemporaryDirectory(prefix="paitho-ministack-") as d:
        home = Path(d)
        sink = start_mail_sink(home)
        port = free_port()
        tenants = FakeTenants()
        mailer = SmtpMailer("127.0.0.1", sink.port, "Paitho <no-reply@paitho.localhost>")
        cp = plane(tenants=tenants, mailer=mailer, edge_port=port)
        app = Chalice(app_name="paitho-ministack")
        webapp.build(app, cp)
        server = LocalDevServer(
            app, Config(chalice_stage="local"), "127.0.0.1", port, handler_cls=_handler(tenants)
        )
        thread = threading.Thread(
            target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        try:
            yield MiniStack(f"http://localhost:{port}", port, home, tenants, cp)
        finally:
            server.server.shutdown()
            server.server.server_close()
            thread.join(timeout=5)
            sink.stop()
