"""Encrypted backup and restore round trips to every destination kind (real PostgreSQL, moto's
S3 server, a real OpenSSH server), and what the operator side can and cannot read."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from paitho_tenant.backup import BackupJob, encrypted_dump
from paitho_tenant.destinations import BackupCorrupted, open_destination, parse_url
from paitho_tenant.restore import decrypt, restore_into_new_cluster

from chalicelib.launchers import pgcluster
from tests.conftest import free_port
from tests.functional.test_backup_support import (  # noqa: F401  (fixtures)
    TENANT_DB,
    KeyPair,
    SshServer,
    customer_keys_fixture,
    decrypt_emails,
    export_all,
    make_tenant_db,
    sshd_fixture,
)

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]


def _backup(db: Any, keys: KeyPair, url: str, bindir: Path, **kw: Any) -> Any:
    job = BackupJob("acme", db.conninfo, keys.public_pem, bindir, **kw)
    return job.run(lambda: open_destination(url), parse_url(url).kind, attempts=1)


def _restore_and_export(
    url: str, name: str, keys: KeyPair, work_root: Path, bindir: Path
) -> tuple[dict[str, Any], Any, Any]:
    data_dir = work_root / f"restored-{free_port()}" / "pgdata"
    with open_destination(url) as dest, dest.reader(name) as source:
        result = restore_into_new_cluster(source, keys.private_pem, data_dir, bindir)
    assert result.databases == (TENANT_DB,)
    cluster = pgcluster.Cluster(data_dir, data_dir.parent / "run", free_port())
    proc = pgcluster.start(cluster, bindir, pgcluster.run_as())
    return export_all(cluster.conninfo(TENANT_DB)), cluster, proc


def _round_trip(
    url: str, pg_cluster: Any, keys: KeyPair, work_root: Path, bindir: Path, **kw: Any
) -> None:
    db = make_tenant_db(pg_cluster)
    before = export_all(db.conninfo)
    result = _backup(db, keys, url, bindir, **kw)
    assert result.outcome == "succeeded", result.reason
    with open_destination(url) as dest:
        listed = {o.name: o.size for o in dest.list()}
    assert listed == {result.object_name: result.size}
    after, cluster, proc = _restore_and_export(url, result.object_name, keys, work_root, bindir)
    try:
        assert after == before
        assert sorted(decrypt_emails(cluster.conninfo(TENANT_DB), db.column_key)) == sorted(
            decrypt_emails(db.conninfo, db.column_key)
        )
    finally:
        pgcluster.stop(proc)


def test_round_trip_file(
    pg_cluster: Any, customer_keys: KeyPair, work_root: Path, pg_bindir: Path
) -> None:
    """A file:// backup restores into a new cluster with identical rows, grants and triggers
    (small frames and no compression, so the stream spans many encrypted frames)."""
    url = f"file://{work_root}/nas-{free_port()}"
    _round_trip(url, pg_cluster, customer_keys, work_root, pg_bindir, frame_length=4096, compress=0)


def test_round_trip_s3(
    pg_cluster: Any,
    customer_keys: KeyPair,
    work_root: Path,
    pg_bindir: Path,
    moto_endpoint: str,
    aws_client: Any,
    unique: str,
) -> None:
    """An s3:// backup (multipart, per-part SHA-256) to moto's server restores identically."""
    aws_client("s3").create_bucket(Bucket=f"backups-{unique}")
    url = f"s3://backups-{unique}/customer/acme?endpoint_url={moto_endpoint}&region=us-east-1"
    _round_trip(url, pg_cluster, customer_keys, work_root, pg_bindir)


def test_round_trip_sftp(
    pg_cluster: Any, customer_keys: KeyPair, work_root: Path, pg_bindir: Path, sshd: SshServer
) -> None:
    """An sftp:// backup to a real OpenSSH server restores identically."""
    url = sshd.url(sshd.data / f"nas-{free_port()}")
    _round_trip(url, pg_cluster, customer_keys, work_root, pg_bindir)


def test_public_key_holder_cannot_decrypt(
    pg_cluster: Any, customer_keys: KeyPair, pg_bindir: Path
) -> None:
    """The operator side, holding only the public key, cannot decrypt; the private key can."""
    db = make_tenant_db(pg_cluster, rows=5)
    blob = b"".join(
        encrypted_dump(db.conninfo, customer_keys.public_pem, tenant="acme", bindir=pg_bindir)
    )
    with pytest.raises(BackupCorrupted, match="not encrypted to this private key"):
        b"".join(decrypt(io.BytesIO(blob), customer_keys.public_pem, private=False))
    assert b"".join(decrypt(io.BytesIO(blob), customer_keys.private_pem)).startswith(
        b"PAITHO-BACKUP-1\n"
    )


def test_canary_markers_absent_from_backup_object(
    pg_cluster: Any, customer_keys: KeyPair, pg_bindir: Path, work_root: Path
) -> None:
    """No marker, encrypted column or plain column, appears in the stored object's bytes."""
    db = make_tenant_db(pg_cluster, rows=20)
    url = f"file://{work_root}/canary-{free_port()}"
    result = _backup(db, customer_keys, url, pg_bindir, compress=0)
    stored = Path(parse_url(url).path, result.object_name).read_bytes()
    plaintext = b"".join(decrypt(io.BytesIO(stored), customer_keys.private_pem))
    # The control: uncompressed, the dump carries the plain-column marker literally.
    assert db.plain_marker.encode() in plaintext
    for marker in (*db.secret_markers, db.plain_marker):
        assert marker.encode() not in plaintext or marker == db.plain_marker
        assert marker.encode() not in stored
    assert db.column_key.encode() not in stored


def test_cli_backup_restore_and_export_bundle(
    pg_cluster: Any, customer_keys: KeyPair, work_root: Path
) -> None:
    """The CLI backs up (one JSON metadata line), restores offline, and exports a bundle."""
    db = make_tenant_db(pg_cluster, rows=5)
    nas = work_root / f"cli-{free_port()}"
    cmd = [sys.executable, "-m", "paitho_tenant.backup_cli"]
    out = subprocess.run(
        [
            *cmd,
            "backup",
            "--to",
            f"file://{nas}",
            "--recipient",
            str(customer_keys.public_file),
            "--db",
            db.conninfo,
            "--tenant",
            "acme",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    line = json.loads(out.stdout)
    assert set(line) == {
        "tenant",
        "started_at",
        "finished_at",
        "size",
        "sha256",
        "destination_kind",
        "object_name",
        "outcome",
    }
    assert line["outcome"] == "succeeded" and line["destination_kind"] == "file"
    obj = f"file://{nas}/{line['object_name']}"
    data_dir = work_root / f"cli-restored-{free_port()}"
    subprocess.run(
        [
            *cmd,
            "restore",
            "--from",
            obj,
            "--private-key",
            str(customer_keys.private_file),
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert (data_dir / "PG_VERSION").exists()
    bundle = work_root / f"bundle-{free_port()}.tar"
    subprocess.run(
        [
            *cmd,
            "export-bundle",
            "--from",
            obj,
            "--image",
            "paitho/tenant:0.1.0",
            "--out",
            str(bundle),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())  # type: ignore[union-attr]
        assert tar.extractfile("IMAGE").read() == b"paitho/tenant:0.1.0\n"  # type: ignore[union-attr]
    assert names == {
        f"backup/{Path(line['object_name']).name}",
        "IMAGE",
        "MANIFEST.json",
        "RESTORE.md",
    }
    assert (manifest["size"], manifest["sha256"]) == (line["size"], line["sha256"])
