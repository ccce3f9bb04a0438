"""The local launcher: per-tenant clusters and app processes, supervised, on real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from paitho_local.supervisor import Supervisor

from chalicelib.launchers import pgcluster
from chalicelib.launchers.local import LocalLauncher, SupervisorClient
from chalicelib.lifecycle import Executor
from chalicelib.registry import Registry
from chalicelib.routes import MemoryRoutes
from chalicelib.tenants import TenantService

pytestmark = pytest.mark.functional


def healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        assert resp.status == 200
        return dict(json.loads(resp.read()))


def wait_for(predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s: {last!r}")


@pytest.fixture(scope="module")
def home(work_root: Path) -> Path:
    path = work_root / "plat"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def supervisor(home: Path) -> Iterator[Supervisor]:
    events: list[tuple[str, str, bool]] = []
    sup = Supervisor(lambda *e: events.append(e))
    sup.events = events  # type: ignore[attr-defined]
    sup.serve(home / "run" / "supervisor.sock")
    yield sup
    sup.shutdown()


@pytest.fixture(scope="module")
def launcher(home: Path, supervisor: Supervisor) -> LocalLauncher:
    launcher = LocalLauncher(home, SupervisorClient(home / "run" / "supervisor.sock"))
    launcher.prepare_template()
    return launcher


@pytest.fixture
def service(aws_client: Any, unique: str, launcher: LocalLauncher, supervisor: Supervisor) -> Any:
    registry = Registry(aws_client("dynamodb"), f"tenants-{unique}")
    registry.ensure_table()

    def on_event(unit: str, what: str, restarted: bool) -> None:
        slug, _, part = unit.partition("/")
        registry.record_event(slug, f"{part}: {what}", restarted=restarted)

    supervisor._on_event = on_event  # route this test's events to its registry
    routes = MemoryRoutes()
    svc = TenantService(registry, Executor(registry, launcher, routes, "localhost"), "1")
    svc.routes = routes  # type: ignore[attr-defined]
    yield svc
    for record in registry.list():
        svc.delete(record.slug)


def test_two_tenants_are_isolated_processes_clusters_and_directories(service: Any) -> None:
    """Each tenant has its own postgres pid, port and data dir; stopping one spares the other."""
    a = service.create(f"a{os.getpid()}x")
    b = service.create(f"b{os.getpid()}x")
    assert a.state == b.state == "running", (a.last_error, b.last_error)
    assert healthz(a.origin_port)["state"] and healthz(b.origin_port)["state"]
    assert a.db_port != b.db_port and a.origin_port != b.origin_port
    assert a.data_location != b.data_location
    pid_a = pgcluster.Cluster(Path(a.data_location) / "pgdata", Path(), 0).server_pid()
    pid_b = pgcluster.Cluster(Path(b.data_location) / "pgdata", Path(), 0).server_pid()
    assert pid_a and pid_b and pid_a != pid_b
    assert service.routes.routes() == {
        f"{a.slug}.localhost": a.origin_port,
        f"{b.slug}.localhost": b.origin_port,
    }
    suspended = service.suspend(a.slug)
    assert suspended.state == "suspended"
    assert f"{a.slug}.localhost" not in service.routes.routes()
    assert healthz(b.origin_port)["state"]
    resumed = service.resume(a.slug)
    assert resumed.state == "running"
    assert healthz(resumed.origin_port)["state"]


def _cluster_conninfo(record: Any) -> str:
    root = Path(record.data_location)
    return f"host={root / 'run'} port={record.db_port} user=postgres dbname=postgres"


def test_killed_postgres_comes_back_with_committed_data(service: Any) -> None:
    """SIGKILL of a tenant's postmaster: restarted within seconds, committed rows intact."""
    rec = service.create(f"k{os.getpid()}x")
    with psycopg.connect(_cluster_conninfo(rec), autocommit=True) as conn:
        conn.execute("CREATE TABLE survivor (v text)")
        conn.execute("INSERT INTO survivor VALUES ('committed')")
    pidfile = Path(rec.data_location) / "pgdata" / "postmaster.pid"
    old_pid = int(pidfile.read_text().split()[0])
    os.kill(old_pid, signal.SIGKILL)

    def back() -> bool:
        with psycopg.connect(_cluster_conninfo(rec), connect_timeout=2) as conn:
            row = conn.execute("SELECT v FROM survivor").fetchone()
        return row == ("committed",)

    wait_for(back, timeout=30)
    assert int(pidfile.read_text().split()[0]) != old_pid
    wait_for(lambda: healthz(rec.origin_port)["state"], timeout=30)
    shown = service.show(rec.slug)
    assert shown.restarts >= 1
    assert "postgres" in (shown.last_event or "") and "SIGKILL" in (shown.last_event or "")


def test_killed_app_comes_back(service: Any, supervisor: Supervisor) -> None:
    """SIGKILL of a tenant's app process: restarted, answering again, the event recorded."""
    rec = service.create(f"p{os.getpid()}x")
    pid = supervisor.status(f"{rec.slug}/app")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: supervisor.status(f"{rec.slug}/app")["pid"] not in (None, pid))
    wait_for(lambda: healthz(rec.origin_port)["state"], timeout=30)
    shown = service.show(rec.slug)
    assert shown.restarts >= 1 and "app" in (shown.last_event or "")


def test_delete_destroys_data_and_keeps_tombstone(service: Any) -> None:
    """Deleting stops processes, removes the data directory and the route, keeps a tombstone."""
    rec = service.create(f"d{os.getpid()}x")
    root = Path(rec.data_location)
    assert root.exists()
    gone = service.delete(rec.slug)
    assert gone.state == "deleted" and gone.deleted_at
    assert not root.exists()
    assert f"{rec.slug}.localhost" not in service.routes.routes()
    assert service.list() == [r for r in service.list() if r.slug != rec.slug]
    assert service.registry.list(include_deleted=True)


def test_upgrade_keeps_data(service: Any) -> None:
    """Upgrading to a new version restarts the app on it; the cluster's data stays."""
    rec = service.create(f"u{os.getpid()}x")
    with psycopg.connect(_cluster_conninfo(rec), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    upgraded = service.upgrade(rec.slug, "2")
    assert upgraded.state == "running" and upgraded.version == "2"
    with psycopg.connect(_cluster_conninfo(upgraded)) as conn:
        assert conn.execute("SELECT v FROM kept").fetchone() == (42,)


def test_failed_start_is_recorded_with_an_actionable_reason(
    aws_client: Any, unique: str, home: Path, launcher: LocalLauncher
) -> None:
    """When the app cannot start, the tenant is 'failed' and last_error says what to look at."""
    registry = Registry(aws_client("dynamodb"), f"tenants-{unique}")
    registry.ensure_table()
    broken = LocalLauncher(
        home,
        SupervisorClient(home / "run" / "supervisor.sock"),
        tenant_cmd=["/bin/false"],
        ready_timeout=2,
    )
    svc = TenantService(registry, Executor(registry, broken, MemoryRoutes(), "localhost"), "1")
    rec = svc.create(f"f{os.getpid()}x")
    assert rec.state == "failed"
    assert rec.last_error and "did not answer /healthz" in rec.last_error
    assert "logs" in rec.last_error
    svc.delete(rec.slug)


def test_tenant_socket_path_too_long_is_refused(
    aws_client: Any, unique: str, work_root: Path, home: Path, supervisor: Supervisor
) -> None:
    """A tenant whose socket path would pass the Unix limit fails with that reason, no traceback."""
    long_home = work_root / ("h" * 50)
    long_home.mkdir()
    registry = Registry(aws_client("dynamodb"), f"tenants-{unique}")
    registry.ensure_table()
    launcher = LocalLauncher(long_home, SupervisorClient(home / "run" / "supervisor.sock"))
    svc = TenantService(registry, Executor(registry, launcher, MemoryRoutes(), "localhost"), "1")
    rec = svc.create("a" * 40)
    assert rec.state == "failed" and rec.last_error and "socket" in rec.last_error


def test_platform_down_is_recorded_on_the_tenant(
    aws_client: Any, unique: str, work_root: Path
) -> None:
    """With no supervisor to talk to, the tenant is 'failed' with that reason, not stuck."""
    registry = Registry(aws_client("dynamodb"), f"tenants-{unique}")
    registry.ensure_table()
    launcher = LocalLauncher(work_root, SupervisorClient(work_root / "run" / "absent.sock"))
    svc = TenantService(registry, Executor(registry, launcher, MemoryRoutes(), "localhost"), "1")
    rec = svc.create("orphan")
    assert rec.state == "failed" and rec.last_error and "make up" in rec.last_error
