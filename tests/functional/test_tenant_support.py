"""Fixtures and helpers for the tenant's functional tests (no tests of its own).

`tenant_cluster`: a running cluster cloned from a session template on which `migrate` already
ran (as the local launcher does). `LiveTenant`: the real app served by a real uvicorn
server in a thread of the test process (so its logs reach caplog), driven with httpx.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from paitho_tenant import migrate
from paitho_tenant.app import Settings, create_app
from paitho_tenant.db import app_conninfo, owner_conninfo
from starlette.applications import Starlette

from chalicelib.launchers import pgcluster
from tests.conftest import RunningCluster, free_port

ORIGIN = "http://acme.localhost:8000"
API_HEADERS = {"Origin": ORIGIN, "X-Requested-With": "XMLHttpRequest"}
STRONG = "plover-quintet-basalt-mirage-7"
_TEMPLATES: dict[Path, Path] = {}


@pytest.fixture(scope="session")
def tenant_template(work_root: Path, pg_template: Path, pg_bindir: Path) -> Path:
    """A stopped cluster on which `paitho-tenant migrate` ran once per session (the fixture is
    imported into several modules, each of which gets its own copy: they share this one)."""
    if work_root in _TEMPLATES:
        return _TEMPLATES[work_root]
    ids = pgcluster.run_as()
    data_dir = work_root / "tenant-template" / "pgdata"
    pgcluster.clone(pg_template, data_dir, ids)
    cluster = pgcluster.Cluster(data_dir, work_root / "tenant-template" / "run", free_port())
    proc = pgcluster.start(cluster, pg_bindir, ids)
    try:
        migrate.migrate(cluster.conninfo())
    finally:
        pgcluster.stop(proc)
    _TEMPLATES[work_root] = data_dir
    return data_dir


@pytest.fixture
def tenant_cluster(
    work_root: Path, tenant_template: Path, pg_bindir: Path
) -> Iterator[RunningCluster]:
    name = "t-" + uuid.uuid4().hex[:10]
    ids = pgcluster.run_as()
    data_dir = work_root / name / "pgdata"
    pgcluster.clone(tenant_template, data_dir, ids)
    cluster = pgcluster.Cluster(data_dir, work_root / name / "run", free_port())
    running = RunningCluster(cluster, pgcluster.start(cluster, pg_bindir, ids))
    yield running
    running.stop()
    shutil.rmtree(work_root / name, ignore_errors=True)


def make_app(cluster: RunningCluster, origin: str | None = ORIGIN) -> Starlette:
    return create_app(Settings(admin_conninfo=cluster.conninfo(), slug="acme", origin=origin))


@contextmanager
def client_for(app: Starlette) -> Iterator[httpx.Client]:
    """Serve `app` with uvicorn on a free loopback port; yield an httpx client for it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="debug", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=API_HEADERS, timeout=60
        ) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def tenant_client(tenant_cluster: RunningCluster) -> Iterator[httpx.Client]:
    with client_for(make_app(tenant_cluster)) as client:
        yield client


def set_up(
    client: httpx.Client,
    passphrase: str | None = STRONG,
    email: str = "owner@acme.test",
    password: str = "owner-password-123",  # noqa: S107
) -> str:
    """Drive POST /setup and POST /login; returns the passphrase in force."""
    body = {"owner_email": email, "owner_password": password}
    if passphrase is not None:
        body["passphrase"] = passphrase
    response = client.post("/setup", json=body)
    assert response.status_code == 201, response.text
    chosen = passphrase or response.json()["passphrase"]
    login = client.post("/login", json={"email": email, "password": password})
    assert login.status_code == 204, login.text
    return chosen


def app_conn(cluster: RunningCluster) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(app_conninfo(cluster.conninfo()), autocommit=True)


def owner_conn(cluster: RunningCluster) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(owner_conninfo(cluster.conninfo()), autocommit=True)


def superuser_conn(cluster: RunningCluster) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(cluster.conninfo("paitho"), autocommit=True)
