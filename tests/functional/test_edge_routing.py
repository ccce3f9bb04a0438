"""The local edge: real HAProxy routing by Host to real HTTP servers on loopback, with routes
changed live through the runtime API (chalicelib.routes.HAProxyRoutes)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from paitho_local import edge

from chalicelib.errors import InvalidInput, PlatformUnavailable
from chalicelib.routes import HAProxyRoutes, parse_map
from tests.conftest import free_port

pytestmark = pytest.mark.functional


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Resets from the proxy closing idle connections are expected; stay quiet."""


def start_backend(name: str) -> tuple[ThreadingHTTPServer, int]:
    """An HTTP/1.1 server answering JSON: its name and the headers it received."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = json.dumps(
                {"name": name, "headers": {k.lower(): v for k, v in self.headers.items()}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, server.server_address[1]


@dataclass
class Edge:
    files: edge.EdgeFiles
    proc: subprocess.Popen[bytes]
    port: int
    control_port: int
    routes: HAProxyRoutes
    backends: dict[str, int]

    def get(self, host: str | None, path: str = "/") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            headers = {} if host is None else {"Host": host}
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def name_for(self, host: str) -> str:
        status, body = self.get(host)
        assert status == 200, body
        return str(json.loads(body)["name"])


@pytest.fixture
def edge_home() -> Iterator[Path]:
    """A short home directory (the admin socket path must fit a sockaddr_un)."""
    home = Path(tempfile.mkdtemp(prefix="pe-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def running_edge(edge_home: Path) -> Iterator[Edge]:
    servers = {name: start_backend(name) for name in ("control", "acme", "beta", "gamma")}
    port = free_port()
    files = edge.render_config(edge_home, ("127.0.0.1", port), ("127.0.0.1", servers["control"][1]))
    running = Edge(
        files, edge.spawn(files), port, servers["control"][1], files.route_table(),
        {name: p for name, (_, p) in servers.items()},
    )  # fmt: skip
    try:
        yield running
    finally:
        edge.stop(running.proc)  # a test may have restarted it
        for server, _ in servers.values():
            server.shutdown()
            server.server_close()


def wait_for(predicate: object, timeout: float = 1.0) -> float:
    """Poll `predicate()` until true; the seconds it took. Fails the test after `timeout`."""
    assert callable(predicate)
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "not live within the time allowed"
        time.sleep(0.005)
    return time.monotonic() - start


def test_edge_routes_by_host_ignoring_port_and_case(running_edge: Edge) -> None:
    """{slug}.localhost with any port suffix and any case reaches that tenant's backend."""
    running_edge.routes.set_route("acme.localhost", running_edge.backends["acme"])
    running_edge.routes.set_route("beta.localhost", running_edge.backends["beta"])
    for host in ("acme.localhost", "acme.localhost:8000", "ACME.LocalHost:8000", "Acme.localhost"):
        assert running_edge.name_for(host) == "acme", host
    assert running_edge.name_for("beta.localhost:8000") == "beta"


def test_edge_keeps_host_and_sets_forwarding_headers(running_edge: Edge) -> None:
    """The backend sees the client's Host unchanged and forwarding headers set by the edge only."""
    running_edge.routes.set_route("acme.localhost", running_edge.backends["acme"])
    conn = http.client.HTTPConnection("127.0.0.1", running_edge.port, timeout=5)
    conn.request(
        "GET", "/", headers={"Host": "Acme.localhost:8000", "X-Forwarded-For": "203.0.113.9",
                             "X-Forwarded-Host": "evil.example"},
    )  # fmt: skip
    seen = json.loads(conn.getresponse().read())["headers"]
    conn.close()
    assert seen["host"] == "Acme.localhost:8000"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-host"] == "Acme.localhost:8000"
    assert seen["x-forwarded-proto"] == "http"


def test_edge_sends_control_hosts_and_unknown_hosts_to_the_control_plane(
    running_edge: Edge,
) -> None:
    """localhost, marketplace.localhost, unrouted hosts and no Host reach the control plane."""
    running_edge.routes.set_route("acme.localhost", running_edge.backends["acme"])
    hosts = ["localhost", "localhost:8000", "MARKETPLACE.localhost:8000", "nope.localhost"]
    hosts += ["nope.localhost:8000", "acme.localhost.evil.example", "127.0.0.1:8000"]
    for host in hosts:
        assert running_edge.name_for(host) == "control", host
    conn = http.client.HTTPConnection("127.0.0.1", running_edge.port, timeout=5)
    conn.putrequest("GET", "/", skip_host=True)
    conn.endheaders()
    assert json.loads(conn.getresponse().read())["name"] == "control"
    conn.close()


def test_edge_routes_each_request_of_a_kept_alive_connection_by_its_own_host(
    running_edge: Edge,
) -> None:
    """One client connection alternating hosts never gets another tenant's server connection."""
    running_edge.routes.set_route("acme.localhost", running_edge.backends["acme"])
    running_edge.routes.set_route("beta.localhost", running_edge.backends["beta"])
    conn = http.client.HTTPConnection("127.0.0.1", running_edge.port, timeout=5)
    seen = []
    for i in range(60):
        host = ("acme.localhost", "beta.localhost", "nope.localhost")[i % 3]
        conn.request("GET", "/", headers={"Host": host})
        seen.append(json.loads(conn.getresponse().read())["name"])
    conn.close()
    assert seen == ["acme", "beta", "control"] * 20


def test_edge_rejects_a_request_with_two_host_headers(running_edge: Edge) -> None:
    """Two Host headers get a 400 instead of being routed by one and served by the other."""
    running_edge.routes.set_route("acme.localhost", running_edge.backends["acme"])
    conn = http.client.HTTPConnection("127.0.0.1", running_edge.port, timeout=5)
    conn.putrequest("GET", "/", skip_host=True)
    conn.putheader("Host", "acme.localhost")
    conn.putheader("Host", "beta.localhost")
    conn.endheaders()
    assert conn.getresponse().status == 400
    conn.close()


def test_edge_route_changes_are_live_within_a_second_without_restart(running_edge: Edge) -> None:
    """A route added or removed through the runtime API serves within 1 s; same HAProxy pids."""
    worker = edge.running_pid(running_edge.files)
    assert running_edge.name_for("gamma.localhost") == "control"
    start = time.monotonic()
    running_edge.routes.set_route("gamma.localhost", running_edge.backends["gamma"])
    wait_for(
        lambda: running_edge.name_for("gamma.localhost") == "gamma",
        1.0 - (time.monotonic() - start),
    )
    start = time.monotonic()
    running_edge.routes.set_route("gamma.localhost", running_edge.backends["beta"])  # moved
    wait_for(
        lambda: running_edge.name_for("gamma.localhost") == "beta", 1.0 - (time.monotonic() - start)
    )
    start = time.monotonic()
    running_edge.routes.remove_route("gamma.localhost")
    wait_for(
        lambda: running_edge.name_for("gamma.localhost") == "control",
        1.0 - (time.monotonic() - start),
    )
    assert running_edge.proc.poll() is None
    assert edge.running_pid(running_edge.files) == worker
    assert edge.master_pid(running_edge.files) == running_edge.proc.pid


def test_edge_set_and_remove_are_idempotent_and_persisted(running_edge: Edge) -> None:
    """Setting a route twice keeps one entry; removing twice is fine; the file mirrors HAProxy."""
    routes = running_edge.routes
    routes.set_route("acme.localhost", 4001)
    routes.set_route("ACME.localhost", 4001)
    routes.set_route("acme.localhost", 4002)
    routes.set_route("beta.localhost", 4003)
    routes.remove_route("beta.localhost")
    routes.remove_route("beta.localhost")
    routes.remove_route("never.localhost")
    assert routes.routes() == {"acme.localhost": 4002}
    assert routes.command(f"show map {running_edge.files.map_path}").count("acme.localhost") == 1
    assert parse_map(running_edge.files.map_path.read_text()) == {"acme.localhost": 4002}


def test_edge_rejects_bad_hosts_before_touching_haproxy(running_edge: Edge) -> None:
    """A host that could smuggle a runtime API command is refused with InvalidInput."""
    for bad in (
        "acme.localhost;clear map x",
        "acme.localhost\nshutdown",
        "a b.localhost",
        "localhost",
    ):
        with pytest.raises(InvalidInput):
            running_edge.routes.set_route(bad, 4000)
    assert running_edge.routes.routes() == {}
    assert running_edge.proc.poll() is None


def test_edge_answers_clear_pages_when_an_origin_is_down(running_edge: Edge) -> None:
    """A routed tenant that is not listening gets the edge's own 'not answering' page."""
    running_edge.routes.set_route("acme.localhost", free_port())
    status, body = running_edge.get("acme.localhost")
    assert status == 503
    assert b"This workspace is not answering" in body


def test_edge_admin_socket_is_private(running_edge: Edge) -> None:
    """The runtime API socket is a unix socket readable and writable by its owner only."""
    mode = os.stat(running_edge.files.admin_socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(running_edge.files.cfg_path.parent).st_mode) == 0o700


def test_edge_serves_every_request_while_other_routes_churn(running_edge: Edge) -> None:
    """Under concurrent keep-alive load no request fails or is misrouted while routes change."""
    routes = running_edge.routes
    routes.set_route("acme.localhost", running_edge.backends["acme"])
    routes.set_route("beta.localhost", running_edge.backends["beta"])
    stop = threading.Event()
    failures: list[str] = []
    counts = [0] * 4
    churn_hits: list[str] = []

    def client(idx: int) -> None:
        host, expected = [("acme.localhost", "acme"), ("beta.localhost:8000", "beta")][idx % 2]
        conn = http.client.HTTPConnection("127.0.0.1", running_edge.port, timeout=5)
        try:
            while not stop.is_set():
                conn.request("GET", "/", headers={"Host": host})
                resp = conn.getresponse()
                body = resp.read()
                name = json.loads(body)["name"] if resp.status == 200 else None
                if name != expected:
                    failures.append(f"{host}: {resp.status} {name}")
                counts[idx] += 1
                # A churned host answers from the control plane or gamma, never with an error.
                conn.request("GET", "/", headers={"Host": f"churn{counts[idx] % 5}.localhost"})
                resp = conn.getresponse()
                body = resp.read()
                name = json.loads(body)["name"] if resp.status == 200 else None
                if name not in ("control", "gamma"):
                    failures.append(f"churn: {resp.status}")
                elif name == "gamma":
                    churn_hits.append(name)
        except Exception as exc:  # any exception is a dropped request
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    changes = 0
    try:
        for i in range(200):  # bounded: about two seconds of changes
            host = f"churn{i % 5}.localhost"
            if i % 2:
                routes.remove_route(host)
            else:
                routes.set_route(host, running_edge.backends["gamma"])
            changes += 1
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert failures == []
    assert changes == 200
    assert sum(counts) > 50, counts
    assert churn_hits, "the churned routes were never live during the run"
    assert set(routes.routes()) >= {"acme.localhost", "beta.localhost"}


def test_edge_restart_reloads_the_persisted_routes(running_edge: Edge) -> None:
    """After HAProxy dies and is started again on the same files, every route is back."""
    running_edge.routes.set_route("acme.localhost", running_edge.backends["acme"])
    running_edge.routes.set_route("beta.localhost", running_edge.backends["beta"])
    running_edge.routes.remove_route("beta.localhost")
    worker = edge.running_pid(running_edge.files)
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    running_edge.proc.wait(10)  # the master exits with its worker, for the supervisor to see
    running_edge.proc = edge.spawn(running_edge.files)
    assert edge.running_pid(running_edge.files) != worker
    assert running_edge.routes.routes() == {"acme.localhost": running_edge.backends["acme"]}
    assert running_edge.name_for("acme.localhost") == "acme"
    assert running_edge.name_for("beta.localhost") == "control"


def test_edge_rerender_keeps_existing_routes(running_edge: Edge, edge_home: Path) -> None:
    """Rendering the configuration again (a new `make up`) never empties the routes map."""
    running_edge.routes.set_route("acme.localhost", 4100)
    edge.render_config(edge_home, ("127.0.0.1", running_edge.port), ("127.0.0.1", 1))
    assert parse_map(running_edge.files.map_path.read_text()) == {"acme.localhost": 4100}


def test_edge_routes_report_platform_unavailable_when_haproxy_is_down(edge_home: Path) -> None:
    """With no HAProxy running, changes raise an actionable PlatformUnavailable but are kept."""
    files = edge.render_config(edge_home, ("127.0.0.1", free_port()), ("127.0.0.1", free_port()))
    routes = files.route_table()
    with pytest.raises(PlatformUnavailable, match="make up"):
        routes.set_route("acme.localhost", 4200)
    with pytest.raises(PlatformUnavailable, match="not running"):
        routes.routes()
    assert parse_map(files.map_path.read_text()) == {"acme.localhost": 4200}
    proc = edge.spawn(files)
    try:
        assert routes.routes() == {"acme.localhost": 4200}
    finally:
        edge.stop(proc)


def test_edge_config_is_valid_and_start_failures_are_explained(edge_home: Path) -> None:
    """The rendered config passes `haproxy -c`; a port already taken gives a readable error."""
    busy = start_backend("busy")
    try:
        files = edge.render_config(edge_home, ("127.0.0.1", busy[1]), ("127.0.0.1", free_port()))
        edge.check_config(files)
        with pytest.raises(edge.LaunchError, match="Address already in use"):
            edge.spawn(files, timeout=5)
    finally:
        busy[0].shutdown()
        busy[0].server_close()


def test_edge_serves_another_platform_domain(edge_home: Path) -> None:
    """With domain paitho.test the control hosts are paitho.test and marketplace.paitho.test."""
    control, control_port = start_backend("control")
    acme, acme_port = start_backend("acme")
    port = free_port()
    files = edge.render_config(
        edge_home, ("127.0.0.1", port), ("127.0.0.1", control_port), domain="paitho.test"
    )
    proc = edge.spawn(files)
    try:
        routes = files.route_table(domain="paitho.test")
        with pytest.raises(InvalidInput):
            routes.set_route("marketplace.paitho.test", acme_port)
        routes.set_route("acme.paitho.test", acme_port)
        probe = Edge(files, proc, port, control_port, routes, {})
        assert probe.name_for("ACME.paitho.test:8000") == "acme"
        assert probe.name_for("paitho.test:8000") == "control"
        assert probe.name_for("acme.localhost") == "control"
    finally:
        edge.stop(proc)
        for server in (control, acme):
            server.shutdown()
            server.server_close()
