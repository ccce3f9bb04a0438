"""The audit log on a real cluster: INSERT-only for the app role, triggers against the owner,
and the hash chain naming an edited, deleted or reordered row (also via the CLI)."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from paitho_tenant import audit

from tests.conftest import RunningCluster
from tests.functional.test_tenant_support import (
    app_conn,
    owner_conn,
    superuser_conn,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional


def _five_events(cluster: RunningCluster) -> None:
    with app_conn(cluster) as conn:
        for n in range(1, 6):
            audit.record(conn, "account:1", f"test.event{n}", {"n": n})


def _verify(cluster: RunningCluster) -> audit.Verification:
    with owner_conn(cluster) as conn:
        return audit.verify(conn)


def _tamper(cluster: RunningCluster, statement: str) -> None:
    """Superuser tampering with triggers switched off (what the chain exists to catch)."""
    with superuser_conn(cluster) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement)  # type: ignore[arg-type]


def test_app_role_may_only_insert_and_owner_is_refused(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """The app role cannot read, change or empty the log; the owner's changes hit the triggers."""
    _five_events(tenant_cluster)
    with app_conn(tenant_cluster) as conn:
        for statement in (
            "SELECT * FROM audit_log",
            "UPDATE audit_log SET action = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "UPDATE audit_head SET seq = 0",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]
    with owner_conn(tenant_cluster) as conn:
        for statement in (
            "UPDATE audit_log SET action = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)  # type: ignore[arg-type]
    result = _verify(tenant_cluster)
    assert result.ok and result.rows == 5


def test_edit_is_detected_and_named(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """An edited row is named as edited."""
    _five_events(tenant_cluster)
    _tamper(tenant_cluster, "UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 3")
    problems = _verify(tenant_cluster).problems
    assert [(p.seq, p.kind) for p in problems] == [(3, "edited")]


def test_delete_is_detected_and_named(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """A deleted row is named as deleted, in the middle and at the end of the log."""
    _five_events(tenant_cluster)
    _tamper(tenant_cluster, "DELETE FROM audit_log WHERE seq = 3")
    assert [(p.seq, p.kind) for p in _verify(tenant_cluster).problems] == [(4, "deleted")]
    assert "row 3 deleted" in _verify(tenant_cluster).problems[0].message
    _tamper(tenant_cluster, "DELETE FROM audit_log WHERE seq = 5")
    assert (5, "deleted") in [(p.seq, p.kind) for p in _verify(tenant_cluster).problems]


def test_reorder_is_detected_and_named(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Two rows swapped in sequence are named as reordered."""
    _five_events(tenant_cluster)
    _tamper(
        tenant_cluster,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3;"
        " UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    problems = _verify(tenant_cluster).problems
    assert problems and problems[0].seq == 2 and problems[0].kind == "reordered"
    assert {p.kind for p in problems} == {"reordered"}


def test_audit_verify_cli_exit_codes(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """`paitho-tenant audit-verify` exits 0 on an intact chain and 1 naming the edited row."""
    _five_events(tenant_cluster)
    argv = [
        sys.executable,
        "-m",
        "paitho_tenant.cli",
        "--db",
        tenant_cluster.conninfo(),
        "audit-verify",
    ]
    ok = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "intact: 5 rows" in ok.stdout
    _tamper(tenant_cluster, "UPDATE audit_log SET actor = 'someone else' WHERE seq = 4")
    bad = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "edited: row 4 was edited" in bad.stdout
