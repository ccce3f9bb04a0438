"""Shared fixtures: real PostgreSQL clusters (cloned from one template per session) and a
hermetic moto server as the local AWS endpoint."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.launchers import pgcluster

# Hermetic AWS: fake credentials, no local AWS config, before any client exists.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def work_root() -> Iterator[Path]:
    """A scratch directory the unprivileged cluster user can traverse (pytest's tmp is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="paitho-tests-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster user must traverse it
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_bindir() -> Path:
    return pgcluster.find_bindir()


@pytest.fixture(scope="session")
def pg_template(work_root: Path, pg_bindir: Path) -> Path:
    """One initdb per test session; every cluster fixture clones it."""
    template = work_root / "template"
    pgcluster.initdb(template, pg_bindir, pgcluster.run_as())
    return template


class RunningCluster:
    def __init__(self, cluster: pgcluster.Cluster, proc: subprocess.Popen[bytes]) -> None:
        self.cluster = cluster
        self.proc = proc

    @property
    def data_dir(self) -> Path:
        return self.cluster.data_dir

    def conninfo(self, dbname: str = "postgres", user: str = pgcluster.SUPERUSER) -> str:
        return self.cluster.conninfo(dbname, user)

    def stop(self) -> None:
        pgcluster.stop(self.proc)

    def start(self, bindir: Path) -> None:
        self.proc = pgcluster.start(self.cluster, bindir, pgcluster.run_as())


@pytest.fixture
def pg_cluster(work_root: Path, pg_template: Path, pg_bindir: Path) -> Iterator[RunningCluster]:
    """A fresh, running, trust-configured cluster of its own for one test."""
    name = uuid.uuid4().hex[:10]
    ids = pgcluster.run_as()
    data_dir = work_root / name / "pgdata"
    pgcluster.clone(pg_template, data_dir, ids)
    cluster = pgcluster.Cluster(data_dir, work_root / name / "run", free_port())
    running = RunningCluster(cluster, pgcluster.start(cluster, pg_bindir, ids))
    yield running
    running.stop()
    shutil.rmtree(work_root / name, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback (one per session), Step Functions execution switched on.

    Tests use unique resource names (see `unique`) so they never see each other's state."""
    import urllib.request

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://localhost:{port}"
    req = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=b'{"stepfunctions": {"execute_state_machine": true}}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).close()
    yield endpoint
    server.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for AWS resource names."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def aws_client(moto_endpoint: str):  # type: ignore[no-untyped-def]
    """Factory: aws_client("dynamodb") -> a boto3 client pointed at the local endpoint."""
    import boto3

    def make(service: str):  # type: ignore[no-untyped-def]
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    return make
