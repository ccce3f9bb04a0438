"""Audit-log segments on a real cluster: monthly checkpoints, whole segments older than 12 months
pruned by retention (the pruning itself logged), the chain verifying from the anchor, the app
role and the owner unable to prune outside audit_prune(), and tampering after pruning detected.

Old rows are written by the superuser with triggers off, correctly chained and backdated (the
insert trigger stamps clock_timestamp(), which no client may override)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from paitho_tenant import audit
from paitho_tenant.db import owner_conninfo
from paitho_tenant.retention import apply
from psycopg.types.json import Jsonb

from tests.conftest import RunningCluster
from tests.functional.test_tenant_support import (
    app_conn,
    owner_conn,
    superuser_conn,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional

# Months ago -> rows written then: segments 1..3 are older than 12 months, 4 and 5 are not.
HISTORY = ((16, 3), (14, 2), (13, 2), (11, 2), (2, 1))
OLD_ROWS = 7


def months_ago(now: datetime, months: int) -> datetime:
    """Noon on the 15th of the month `months` before `now`'s month (UTC)."""
    index = now.year * 12 + now.month - 1 - months
    return datetime(index // 12, index % 12 + 1, 15, 12, tzinfo=UTC)


def _seed(cluster: RunningCluster, now: datetime) -> None:
    """Backdated, correctly chained rows from HISTORY, then two live rows from the app role."""
    with superuser_conn(cluster) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        head: Any = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        assert head is not None
        seq, prev = int(head[0]), bytes(head[1])
        for months, count in HISTORY:
            for minute in range(count):
                seq += 1
                at = months_ago(now, months) + timedelta(minutes=minute)
                detail = Jsonb({"n": seq})
                row: Any = conn.execute(
                    "SELECT audit_row_hash(%s, %s, 'account:1', 'test.old', %s)",
                    (prev, at, detail),
                ).fetchone()
                assert row is not None
                conn.execute(
                    "INSERT INTO audit_log VALUES (%s, %s, 'account:1', 'test.old', %s, %s, %s)",
                    (seq, at, detail, prev, row[0]),
                )
                prev = bytes(row[0])
        conn.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (seq, prev))
    with app_conn(cluster) as conn:
        audit.record(conn, "account:1", "test.live", {"n": 1})
        audit.record(conn, "account:1", "test.live", {"n": 2})


def _verify(cluster: RunningCluster) -> audit.Verification:
    with owner_conn(cluster) as conn:
        return audit.verify(conn)


def _prune(cluster: RunningCluster, as_of: datetime) -> int:
    with owner_conn(cluster) as conn:
        return audit.prune(conn, as_of)


def _tamper(cluster: RunningCluster, statement: str) -> None:
    with superuser_conn(cluster) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement)


def _actions(cluster: RunningCluster) -> list[tuple[int, str, dict[str, Any]]]:
    with owner_conn(cluster) as conn:
        rows: list[Any] = conn.execute(
            "SELECT seq, action, detail FROM audit_log ORDER BY seq"
        ).fetchall()
    return [(int(r[0]), str(r[1]), dict(r[2])) for r in rows]


def test_retention_prunes_whole_old_segments_and_logs_it(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Retention checkpoints each month, prunes the three segments older than 12 months (7
    rows), keeps the younger ones, logs the pruning (no content) and the chain still verifies;
    a second run prunes nothing and logs nothing; audit-verify reports the anchor."""
    now = datetime.now(UTC)
    _seed(tenant_cluster, now)
    owner = owner_conninfo(tenant_cluster.conninfo())
    result = apply("acme", owner, None, now)
    assert result.outcome == "succeeded" and result.audit_segments_pruned == 3
    assert '"audit_segments_pruned": 3' in result.to_json()
    with owner_conn(tenant_cluster) as conn:
        points = audit.checkpoints(conn)
    assert [(p.segment, p.first_seq, p.last_seq, p.pruned_at is not None) for p in points] == [
        (1, 1, 3, True),
        (2, 4, 5, True),
        (3, 6, 7, True),
        (4, 8, 9, False),
        (5, 10, 10, False),
    ]
    rows = _actions(tenant_cluster)
    assert [r[0] for r in rows] == [8, 9, 10, 11, 12, 13]
    seq, action, detail = rows[-1]
    assert (seq, action) == (13, audit.PRUNED_ACTION)
    assert set(detail) == {
        "segments",
        "rows",
        "from",
        "to",
        "anchor_seq",
        "anchor_hash",
        "older_than_months",
    }
    assert (detail["segments"], detail["rows"], detail["anchor_seq"]) == ([1, 2, 3], 7, 7)
    assert detail["from"] == months_ago(now, 16).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert detail["to"] == (months_ago(now, 13) + timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert detail["anchor_hash"] == points[2].last_hash.hex()
    verification = _verify(tenant_cluster)
    assert verification.ok, verification.problems
    assert (verification.rows, verification.anchor_seq, verification.pruned_segments) == (6, 7, 3)
    again = apply("acme", owner, None, now)
    assert again.audit_segments_pruned == 0 and len(_actions(tenant_cluster)) == 6
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "paitho_tenant.cli",
            "--db",
            tenant_cluster.conninfo(),
            "audit-verify",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0
    assert "intact: 6 rows, from row 8 after 3 pruned segment(s)" in cli.stdout


def test_as_of_moves_the_cutoff_but_never_past_the_database_clock(
    tenant_cluster: RunningCluster,  # noqa: F811
) -> None:
    """As of 3 months ago only the 16-month-old segment goes; a far-future as-of prunes no
    segment younger than 12 months by the database's own clock."""
    now = datetime.now(UTC)
    _seed(tenant_cluster, now)
    assert _prune(tenant_cluster, now - timedelta(days=92)) == 1
    assert _verify(tenant_cluster).ok
    assert _prune(tenant_cluster, now + timedelta(days=5 * 365)) == 2
    verification = _verify(tenant_cluster)
    assert verification.ok and verification.anchor_seq == OLD_ROWS
    remaining = [seq for seq, action, _ in _actions(tenant_cluster) if action != "test.live"]
    assert remaining[:3] == [8, 9, 10]  # segments 4 and 5 (11 and 2 months old) stay
    pruned = [d for _, a, d in _actions(tenant_cluster) if a == audit.PRUNED_ACTION]
    assert [(d["segments"], d["rows"]) for d in pruned] == [([1], 3), ([2, 3], 4)]


def test_app_role_cannot_prune_checkpoint_or_bypass(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """The app role, even with the prune flag set, cannot call the functions, delete rows,
    touch checkpoints or write a pruning entry; the owner with the flag set cannot delete
    outside a pruned old segment,
    nor mark a young segment pruned, nor remove checkpoints."""
    now = datetime.now(UTC)
    _seed(tenant_cluster, now)
    with owner_conn(tenant_cluster) as conn:
        assert audit.checkpoint(conn, now) == 5
    with app_conn(tenant_cluster) as conn:
        conn.execute("SET paitho.audit_prune = 'on'")
        for statement in (
            "SELECT audit_prune()",
            "SELECT audit_checkpoint()",
            "DELETE FROM audit_log WHERE seq = 1",
            "UPDATE audit_checkpoints SET pruned_at = now() WHERE segment = 1",
            "INSERT INTO audit_checkpoints (last_seq) VALUES (11)",
            "DELETE FROM audit_checkpoints",
            "TRUNCATE audit_log",
            # a forged pruning entry to vouch for a different anchor
            "INSERT INTO audit_log (actor, action) VALUES ('x', 'audit.segments_pruned')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert len(conn.execute("SELECT * FROM audit_checkpoints").fetchall()) == 5
    with owner_conn(tenant_cluster) as conn:
        conn.execute("SET paitho.audit_prune = 'on'")
        for statement in (
            "DELETE FROM audit_log WHERE seq = 1",  # old, checkpointed, but not marked pruned
            "DELETE FROM audit_log WHERE seq = 11",  # live row, no checkpoint
            "UPDATE audit_checkpoints SET pruned_at = now() WHERE segment = 4",  # 11 months
            "UPDATE audit_checkpoints SET last_hash = '\\x00' WHERE segment = 1",
            "DELETE FROM audit_checkpoints WHERE segment = 1",
            "TRUNCATE audit_checkpoints",
            "UPDATE audit_log SET detail = '{}' WHERE seq = 1",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    verification = _verify(tenant_cluster)
    assert verification.ok and verification.rows == 12  # 10 backdated, 2 live


def test_hand_rolled_prune_without_its_log_entry_is_detected(
    tenant_cluster: RunningCluster,  # noqa: F811
) -> None:
    """The owner setting the flag itself and deleting an old segment (no pruning entry) is
    caught: the anchor is not the one the log vouches for."""
    now = datetime.now(UTC)
    _seed(tenant_cluster, now)
    with owner_conn(tenant_cluster) as conn, conn.transaction():
        audit.checkpoint(conn, now)
        conn.execute("SET LOCAL paitho.audit_prune = 'on'")
        conn.execute("UPDATE audit_checkpoints SET pruned_at = now() WHERE segment = 1")
        conn.execute("DELETE FROM audit_log WHERE seq <= 3")
    problems = _verify(tenant_cluster).problems
    assert [(p.seq, p.kind) for p in problems] == [(4, "checkpoint")]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("DELETE FROM audit_log WHERE seq = 8", (9, "deleted")),  # right after the anchor
        ("UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 9", (9, "edited")),
        (
            "UPDATE audit_log SET seq = -2 WHERE seq = 9; UPDATE audit_log SET seq = 9"
            " WHERE seq = 10; UPDATE audit_log SET seq = 10 WHERE seq = -2",
            (9, "reordered"),
        ),
        ("DELETE FROM audit_checkpoints", (8, "deleted")),  # hiding that anything was pruned
        (
            "UPDATE audit_checkpoints SET pruned_at = now() WHERE segment = 4;"
            " DELETE FROM audit_log WHERE seq IN (8, 9)",
            (10, "checkpoint"),
        ),
        (
            "UPDATE audit_log SET detail = jsonb_set(detail, '{anchor_seq}', '6')"
            " WHERE action = 'audit.segments_pruned'",
            (13, "edited"),
        ),
    ],
    ids=["delete-after-anchor", "edit", "reorder", "drop-checkpoints", "extend-prune", "anchor"],
)
def test_tampering_after_pruning_is_detected(
    tenant_cluster: RunningCluster,  # noqa: F811
    statement: str,
    expected: tuple[int, str],
) -> None:
    """After pruning, deleting the row right after the anchor, editing, reordering, dropping
    the checkpoints, pruning more by hand or editing the pruning entry are each named."""
    now = datetime.now(UTC)
    _seed(tenant_cluster, now)
    assert _prune(tenant_cluster, now) == 3
    assert _verify(tenant_cluster).ok
    _tamper(tenant_cluster, statement)
    problems = _verify(tenant_cluster).problems
    assert problems and (problems[0].seq, problems[0].kind) == expected, problems
