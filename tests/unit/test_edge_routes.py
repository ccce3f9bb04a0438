"""Route table validation, the map file format and the edge's command line, without I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from paitho_local import edge

from chalicelib.errors import InvalidInput
from chalicelib.routes import (
    HAProxyRoutes,
    MemoryRoutes,
    RouteTable,
    check_port,
    normalize_host,
    parse_map,
    render_map,
)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("acme.localhost", "acme.localhost"),
        ("ACME.LocalHost", "acme.localhost"),
        (" acme.localhost ", "acme.localhost"),
        ("a-1.paitho.ai", "a-1.paitho.ai"),
    ],
)
def test_edge_normalize_host_accepts_host_names(given: str, canonical: str) -> None:
    """Valid host names come back lower-case and trimmed."""
    assert normalize_host(given) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "acme",
        "acme.localhost:8000",
        "http://acme.localhost",
        "acme.localhost;clear map x",
        "acme.localhost\nshutdown",
        "a b.localhost",
        "-acme.localhost",
        "acme-.localhost",
        "acme..localhost",
        "acme_x.localhost",
        "x" * 64 + ".localhost",
    ],
)
def test_edge_normalize_host_rejects_what_is_not_a_host_name(bad: str) -> None:
    """Ports, schemes, separators, spaces and over-long labels are InvalidInput."""
    with pytest.raises(InvalidInput, match="not a valid host name"):
        normalize_host(bad)


@pytest.mark.parametrize(
    "reserved", ["localhost", "marketplace.localhost", "Marketplace.Localhost"]
)
def test_edge_normalize_host_refuses_control_plane_hosts(reserved: str) -> None:
    """The control plane's own hosts can never become tenant routes."""
    with pytest.raises(InvalidInput):
        normalize_host(reserved)


@pytest.mark.parametrize("bad", [0, -1, 65536, True, "8000", 80.0])
def test_edge_check_port_rejects_non_ports(bad: object) -> None:
    """A route's port is an int from 1 to 65535."""
    with pytest.raises(InvalidInput, match="1 to 65535"):
        check_port(bad)  # type: ignore[arg-type]


def test_edge_map_file_round_trips_and_skips_noise() -> None:
    """render_map output parses back to the same table; comments and junk lines are ignored."""
    table = {"beta.localhost": 4002, "acme.localhost": 4001}
    text = render_map(table)
    assert text.splitlines()[1:] == ["acme.localhost 4001", "beta.localhost 4002"]
    assert parse_map(text) == table
    noisy = text + "\n# comment\nbroken line here\nacme.localhost 9999\ngamma.localhost x\n"
    assert parse_map(noisy) == table  # first entry wins, as in HAProxy


def test_edge_memory_routes_is_an_idempotent_route_table() -> None:
    """MemoryRoutes validates like the real table and tolerates repeated set and remove."""
    routes: RouteTable = MemoryRoutes()
    routes.set_route("Acme.localhost", 4001)
    routes.set_route("acme.localhost", 4001)
    routes.set_route("beta.localhost", 4002)
    routes.remove_route("beta.localhost")
    routes.remove_route("beta.localhost")
    assert routes.routes() == {"acme.localhost": 4001}
    with pytest.raises(InvalidInput):
        routes.set_route("localhost", 4003)
    with pytest.raises(InvalidInput):
        routes.set_route("gamma.localhost", 0)


def test_edge_runtime_commands_cannot_be_chained() -> None:
    """A runtime API command with ';' or a newline is refused before anything is sent."""
    routes = HAProxyRoutes(Path("/nonexistent/admin.sock"), Path("/nonexistent/routes.map"))
    for line in ("show map x; shutdown", "show info\nshutdown"):
        with pytest.raises(InvalidInput):
            routes.command(line)


def test_edge_files_live_under_home_edge() -> None:
    """All of the edge's files sit in one directory under the platform home."""
    files = edge.edge_files(Path("/srv/paitho-home"))
    assert {
        p.parent for p in (files.cfg_path, files.map_path, files.admin_socket, files.pid_path)
    } == {Path("/srv/paitho-home/edge")}


def test_edge_argv_runs_haproxy_in_the_foreground_as_master_worker() -> None:
    """The supervisor gets one foreground master process reading the rendered configuration."""
    files = edge.edge_files(Path("/srv/paitho-home"))
    assert edge.haproxy_argv(files, binary="/usr/sbin/haproxy") == [
        "/usr/sbin/haproxy", "-W", "-db", "-f", "/srv/paitho-home/edge/haproxy.cfg",
    ]  # fmt: skip
