"""The Postgres container's command line, run by a real PostgreSQL server: every trust setting
parses and is in force from the command line."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from chalicelib.launchers import pgcluster
from chalicelib.launchers.ecs import postgres_flags
from chalicelib.launchers.pgcluster import TRUST_SETTINGS
from tests.conftest import free_port

pytestmark = pytest.mark.functional


def test_container_flags_apply_every_trust_setting(
    work_root: Path, pg_template: Path, pg_bindir: Path
) -> None:
    """A server started with the ECS postgres container's `-c` flags runs with all of them."""
    ids = pgcluster.run_as()
    root = work_root / f"ecsflags-{uuid.uuid4().hex[:8]}"
    cluster = pgcluster.Cluster(root / "pgdata", root / "run", free_port())
    pgcluster.clone(pg_template, cluster.data_dir, ids)
    pgcluster.prepare_socket_dir(cluster.socket_dir, ids)
    proc = subprocess.Popen(  # type: ignore[call-overload]
        [*cluster.postgres_argv(pg_bindir), *postgres_flags()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **pgcluster.preexec_for(ids),
    )
    try:
        pgcluster.wait_ready(cluster, proc)
        with psycopg.connect(cluster.conninfo()) as conn:
            rows = conn.execute(
                "SELECT name, source FROM pg_settings WHERE name = ANY(%s)",
                (list(TRUST_SETTINGS),),
            ).fetchall()
            shown = {
                name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
                for name in ("log_statement", "listen_addresses", "shared_preload_libraries")
            }
    finally:
        pgcluster.stop(proc)
        shutil.rmtree(root, ignore_errors=True)
    assert dict(rows) == dict.fromkeys(TRUST_SETTINGS, "command line")
    assert shown == {"log_statement": "none", "listen_addresses": "127.0.0.1",
                     "shared_preload_libraries": ""}  # fmt: skip
