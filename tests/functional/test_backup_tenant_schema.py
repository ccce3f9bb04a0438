"""Backup, restore and retention over the real tenant schema (migrations, vault, app): the
export before equals the export after restore, and crypto-shredded stage runs stay unreadable
even when an older backup is restored."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from paitho_tenant import audit, backup_cli
from paitho_tenant.backup import BackupJob
from paitho_tenant.db import owner_conninfo
from paitho_tenant.destinations import FileDestination, open_destination
from paitho_tenant.retention import KEY_DIR, apply

from chalicelib.launchers import pgcluster
from tests.conftest import RunningCluster, free_port
from tests.functional.test_backup_support import (  # noqa: F401  (fixtures)
    KeyPair,
    customer_keys_fixture,
)
from tests.functional.test_tenant_support import (  # noqa: F401  (fixtures)
    STRONG,
    client_for,
    make_app,
    set_up,
    tenant_cluster,
    tenant_template,
)

pytestmark = pytest.mark.functional

CSV = (
    b"email,first_name,company\r\n"
    b"ada@example.com,Ada,Analytical\r\ngrace@example.com,Grace,Navy\r\n"
)
# The restored tenant's own unlock and login append audit rows and touch the login time.
CHANGES_ON_UNLOCK = {"audit_log.json", "audit_log.csv", "accounts.json", "accounts.csv"}


def _populate(client: httpx.Client) -> int:
    imported = client.post("/api/leads/import", files={"file": ("l.csv", CSV, "text/csv")})
    assert imported.status_code == 200, imported.text
    lead_id = client.get("/api/leads").json()[0]["id"]
    client.post(
        "/api/keychain", json={"kind": "anthropic", "label": "k", "secret": "sk-ant-0123456789abcd"}
    )
    client.post(
        "/api/messages",
        json={"direction": "received", "headers": {"Subject": "hi"}, "body": "hello",
              "lead_id": lead_id},
    )  # fmt: skip
    run = client.post(
        "/api/stage-runs",
        json={"stage": "qualify", "model": "m", "prompt": "the prompt", "response": "the answer",
              "input_tokens": 11, "output_tokens": 22, "duration_ms": 33, "lead_id": lead_id},
    )  # fmt: skip
    assert run.status_code in (200, 201), run.text
    return int(run.json()["id"])


def _export(client: httpx.Client) -> dict[str, bytes]:
    response = client.get("/api/export")
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}


def _restore(url: str, keys: KeyPair, work_root: Path, bindir: Path) -> RunningCluster:
    data_dir = work_root / f"restored-{free_port()}" / "pgdata"
    code = backup_cli.main(
        ["restore", "--from", url, "--private-key", str(keys.private_file),
         "--data-dir", str(data_dir)]
    )  # fmt: skip
    assert code == 0
    cluster = pgcluster.Cluster(data_dir, data_dir.parent / "run", free_port())
    return RunningCluster(cluster, pgcluster.start(cluster, bindir, pgcluster.run_as()))


def _unlock(client: httpx.Client) -> None:
    assert client.post("/unlock", json={"passphrase": STRONG}).status_code == 204
    login = client.post(
        "/login", json={"email": "owner@acme.test", "password": "owner-password-123"}
    )
    assert login.status_code == 204, login.text


def _backup(cluster: RunningCluster, keys: KeyPair, url: str, bindir: Path) -> Any:
    job = BackupJob("acme", cluster.conninfo("paitho"), keys.public_pem, bindir)
    result = job.run(lambda: open_destination(url), "file", attempts=1)
    assert result.outcome == "succeeded", result.reason
    return result


def test_real_tenant_round_trip_exports_match(
    tenant_cluster: RunningCluster,  # noqa: F811
    customer_keys: KeyPair,
    work_root: Path,
    pg_bindir: Path,
) -> None:
    """Leads, keychain, messages, stage runs and audit rows: backed up, restored into a new
    cluster, unlocked with the passphrase: the tenant's export is the same (the restored
    tenant's own unlock adds audit rows after the original ones and a login time)."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        _populate(client)
        before = _export(client)
    nas = work_root / f"nas-{free_port()}"
    result = _backup(tenant_cluster, customer_keys, f"file://{nas}", pg_bindir)
    assert [o.name for o in FileDestination(nas).list(f"acme/{KEY_DIR}")]  # escrowed key
    stored = [p.read_bytes() for p in nas.rglob("*") if p.is_file()]
    for marker in (b"ada@example.com", b"sk-ant-0123456789abcd", b"the prompt", b"hello",
                   STRONG.encode()):  # fmt: skip
        assert not any(marker in blob for blob in stored)
    restored = _restore(f"file://{nas}/{result.object_name}", customer_keys, work_root, pg_bindir)
    try:
        with client_for(make_app(restored)) as client:
            _unlock(client)
            after = _export(client)
    finally:
        restored.stop()
    assert set(after) == set(before)
    differing = {name for name in before if before[name] != after[name]}
    assert differing <= CHANGES_ON_UNLOCK
    old_audit = json.loads(before["audit_log.json"])
    assert json.loads(after["audit_log.json"])[: len(old_audit)] == old_audit
    assert json.loads(before["stage_runs.json"])[0]["prompt"] == "the prompt"


def test_export_bundle_restores_anywhere_with_its_period_keys(
    tenant_cluster: RunningCluster,  # noqa: F811
    customer_keys: KeyPair,
    work_root: Path,
    pg_bindir: Path,
) -> None:
    """The portable bundle (dump + escrowed period keys + image + instructions), unpacked
    elsewhere, restores a tenant whose stage-run prompts are readable with the passphrase."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        run_id = _populate(client)
    nas = work_root / f"nas-{free_port()}"
    result = _backup(tenant_cluster, customer_keys, f"file://{nas}", pg_bindir)
    bundle = work_root / f"bundle-{free_port()}.tar"
    code = backup_cli.main(
        ["export-bundle", "--from", f"file://{nas}/{result.object_name}",
         "--image", "paitho/tenant:0.1.0", "--out", str(bundle)]
    )  # fmt: skip
    assert code == 0
    elsewhere = work_root / f"unpacked-{free_port()}"
    with tarfile.open(bundle) as tar:
        tar.extractall(elsewhere, filter="data")
    dump = Path(result.object_name).name
    manifest = json.loads((elsewhere / "MANIFEST.json").read_text())
    assert manifest["sha256"] == result.sha256 and len(manifest["period_keys"]) == 1
    restored = _restore(f"file://{elsewhere}/backup/{dump}", customer_keys, work_root, pg_bindir)
    try:
        with client_for(make_app(restored)) as client:
            _unlock(client)
            run = client.get(f"/api/stage-runs/{run_id}").json()
    finally:
        restored.stop()
    assert (run["prompt"], run["response"]) == ("the prompt", "the answer")


def test_retention_shreds_stage_runs_even_in_older_backups(
    tenant_cluster: RunningCluster,  # noqa: F811
    customer_keys: KeyPair,
    work_root: Path,
    pg_bindir: Path,
) -> None:
    """With the clock moved 100 days forward, retention (sealed, no passphrase) destroys the
    period key and clears prompt and response; counts stay, the audit chain still verifies,
    the shredding is audited, and restoring the OLDER backup with the passphrase and the
    private key still leaves that prompt unreadable. Old backups beyond retention go."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        run_id = _populate(client)
    nas = work_root / f"nas-{free_port()}"
    older = _backup(tenant_cluster, customer_keys, f"file://{nas}", pg_bindir)
    newer = _backup(tenant_cluster, customer_keys, f"file://{nas}", pg_bindir)
    later = datetime.now(UTC) + timedelta(days=100)
    owner = owner_conninfo(tenant_cluster.conninfo())
    result = apply("acme", owner, FileDestination(nas), later, keep_backup_days=365)
    assert (result.stage_runs_shredded, result.periods_destroyed) == (1, 1)
    assert result.backups_deleted == 0  # both dumps are within a year of the moved clock
    assert FileDestination(nas).list(f"acme/{KEY_DIR}") == []
    with psycopg.connect(owner) as conn:
        row = conn.execute(
            "SELECT prompt, response, input_tokens, output_tokens, model FROM stage_runs"
            " WHERE id = %s",
            (run_id,),
        ).fetchone()
        assert row == (None, None, 11, 22, "m")
        assert audit.verify(conn).ok
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY seq")]
        assert actions[-1] == "retention.stage_runs_shredded"
    for dump in (older, newer):
        restored = _restore(f"file://{nas}/{dump.object_name}", customer_keys, work_root,
                            pg_bindir)  # fmt: skip
        try:
            with client_for(make_app(restored)) as client:
                _unlock(client)
                run = client.get(f"/api/stage-runs/{run_id}").json()
        finally:
            restored.stop()
        assert run["prompt"] is None and run["response"] is None
        assert (run["input_tokens"], run["output_tokens"]) == (11, 22)
    # Backups beyond the customer's retention are deleted at the destination, newest kept.
    result = apply("acme", owner, FileDestination(nas), later, keep_backup_days=30)
    remaining = [o.name for o in FileDestination(nas).list("acme")]
    assert result.backups_deleted == 1 and remaining == [newer.object_name]
