"""The platform as an operator drives it: `paitho up`, the CLI, the edge, restarts."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _postmaster_pid(data_dir: str) -> int:
    return int((Path(data_dir) / "pgdata" / "postmaster.pid").read_text().split()[0])


def test_create_then_reach_tenant_through_the_edge(stack: Stack) -> None:
    """`paitho tenants create acme`, then Host: acme.localhost /healthz answers from acme."""
    stack.paitho("tenants", "create", "acme")
    status, _, body = stack.get("acme.localhost", "/healthz")
    assert status == 200
    assert json.loads(body)["state"] in ("uninitialized", "sealed", "unsealed")
    shown = stack.show("acme")
    assert shown["state"] == "running"
    assert Path(shown["data_location"]).is_relative_to(stack.home)


def test_two_tenants_differ_and_survive_each_other(stack: Stack) -> None:
    """Two tenants: different postgres pids, ports, directories; suspending one spares the other."""
    stack.paitho("tenants", "create", "alpha", "--plan", "pro", "--region", "us")
    stack.paitho("tenants", "create", "beta")
    a, b = stack.show("alpha"), stack.show("beta")
    assert a["db_port"] != b["db_port"] and a["origin_port"] != b["origin_port"]
    assert a["data_location"] != b["data_location"]
    assert _postmaster_pid(a["data_location"]) != _postmaster_pid(b["data_location"])
    stack.paitho("tenants", "suspend", "alpha")
    status, headers, body = stack.get("alpha.localhost", "/healthz")
    assert status == 503 and b"suspended" in body
    assert headers.get("X-Paitho-Tenant-State") == "suspended"
    assert stack.get("beta.localhost", "/healthz")[0] == 200
    stack.paitho("tenants", "resume", "alpha")
    assert stack.get("alpha.localhost", "/healthz")[0] == 200


def test_unknown_slug_gets_a_page_not_a_proxy_error(stack: Stack) -> None:
    """An unknown subdomain is answered by the control plane with a clear 404 page."""
    status, headers, body = stack.get("nosuchtenant.localhost:8000", "/anything")
    assert status == 404
    assert headers["Content-Type"].startswith("text/html")
    assert b"no Paitho workspace" in body


def test_sigkill_of_tenant_postgres_recovers_and_is_recorded(stack: Stack) -> None:
    """Killing a tenant's postgres: back within seconds; the registry shows the event."""
    stack.paitho("tenants", "create", "kilo")
    before = stack.show("kilo")
    os.kill(_postmaster_pid(before["data_location"]), signal.SIGKILL)
    deadline = time.monotonic() + 90  # generous: the machine is shared with the other tests
    while time.monotonic() < deadline:
        if stack.get("kilo.localhost", "/healthz")[0] == 200 and stack.show("kilo")["restarts"]:
            break
        time.sleep(0.2)
    after = stack.show("kilo")
    assert after["restarts"] >= 1 and "SIGKILL" in after["last_event"]
    assert stack.get("kilo.localhost", "/healthz")[0] == 200


def test_delete_leaves_tombstone_and_no_route(stack: Stack) -> None:
    """Deleting a tenant removes its data and route; the slug then reads as unknown."""
    stack.paitho("tenants", "create", "gone")
    data = stack.show("gone")["data_location"]
    stack.paitho("tenants", "delete", "gone", "--yes")
    assert not Path(data).exists()
    assert stack.get("gone.localhost", "/healthz")[0] == 404
    assert "deleted" in stack.paitho("tenants", "list", "--all").stdout


def test_restart_of_the_platform_brings_tenants_back_and_stops_cleanly(work_root: Path) -> None:
    """Ctrl-C stops every process; the next `paitho up` finds the tenants again, data intact."""
    home = work_root / "restart"
    port = free_port()
    first = start_stack(home, port)
    try:
        first.paitho("tenants", "create", "phoenix")
        shown = first.show("phoenix")
        pg_pid = _postmaster_pid(shown["data_location"])
    finally:
        assert stop_stack(first) == 0
    assert not _pid_alive(pg_pid), "tenant postgres survived the platform's shutdown"
    assert "stopped." in first.output()
    second = start_stack(home, port)
    try:
        status, _, body = second.get("phoenix.localhost", "/healthz")
        assert status == 200, body
        assert json.loads(body)["state"] in ("uninitialized", "sealed")
        assert second.show("phoenix")["state"] == "running"
    finally:
        assert stop_stack(second, signal.SIGTERM) == 0


def test_a_failed_start_stops_what_it_started(stack: Stack, work_root: Path) -> None:
    """A second platform on a taken edge port fails with a reason and leaves no process."""
    home = work_root / "clash"
    env = {**stack.env, "PAITHO_HOME": str(home)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "paitho"), "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "edge" in (done.stdout + done.stderr).lower()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(home)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == []


def test_too_long_home_is_refused_before_anything_starts(work_root: Path) -> None:
    """A PAITHO_HOME too long for tenants' Unix sockets gets a clear error, not a traceback."""
    home = work_root / ("x" * 100)
    env = {**os.environ, "PAITHO_HOME": str(home), "PAITHO_EDGE_PORT": "1"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "paitho"), "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "PAITHO_HOME" in done.stderr and "Traceback" not in done.stderr


def test_tenants_get_a_licence_from_the_platform(stack: Stack) -> None:
    """Each tenant starts with a licence token from the control plane and its public keys,
    and the tenant reports a full (not read-only) licence."""
    stack.paitho("tenants", "create", "licensed")
    token_file = stack.home / "tenants" / "licensed" / "licence.token"
    assert token_file.exists()
    _header, claims, _signature = token_file.read_text().strip().split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert decoded["tenant"] == "licensed" and decoded["exp"] > time.time()
    status, _, _ = stack.get("licensed.localhost", "/healthz")
    assert status == 200
