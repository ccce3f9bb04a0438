"""Pruned audit segments survive a backup and restore: the restored chain verifies from the same
anchor, with the pruned checkpoints (and their hashes) intact."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from paitho_tenant import audit
from paitho_tenant.db import owner_conninfo

from tests.conftest import RunningCluster, free_port
from tests.functional.test_audit_prune import _prune, _seed
from tests.functional.test_backup_support import (  # noqa: F401  (fixtures)
    KeyPair,
    customer_keys_fixture,
)
from tests.functional.test_backup_tenant_schema import _backup, _restore
from tests.functional.test_tenant_support import (  # noqa: F401  (fixtures)
    tenant_cluster,
    tenant_template,
)

pytestmark = pytest.mark.functional


def test_pruned_chain_verifies_after_restore(
    tenant_cluster: RunningCluster,  # noqa: F811
    customer_keys: KeyPair,
    work_root: Path,
    pg_bindir: Path,
) -> None:
    """A restored tenant keeps the pruned checkpoints (restore loads data before the triggers
    exist, so nothing is re-chained or re-computed) and its chain verifies from the anchor."""
    now = datetime.now(UTC)
    _seed(tenant_cluster, now)
    assert _prune(tenant_cluster, now) == 3
    with psycopg.connect(owner_conninfo(tenant_cluster.conninfo())) as conn:
        before = audit.checkpoints(conn)
    nas = work_root / f"nas-{free_port()}"
    dump = _backup(tenant_cluster, customer_keys, f"file://{nas}", pg_bindir)
    restored = _restore(f"file://{nas}/{dump.object_name}", customer_keys, work_root, pg_bindir)
    try:
        with psycopg.connect(owner_conninfo(restored.conninfo())) as conn:
            after = audit.checkpoints(conn)
            verification = audit.verify(conn)
    finally:
        restored.stop()
    assert after == before and [p.pruned_at is not None for p in after] == [True] * 3 + [False] * 2
    assert verification.ok, verification.problems
    assert (verification.anchor_seq, verification.rows) == (7, 6)
