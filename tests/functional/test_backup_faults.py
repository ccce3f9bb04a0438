"""Backup fault tests: killed mid-stream, destination unreachable, pg_dump failing, corrupted
or truncated objects and the wrong key at restore."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from paitho_tenant.backup import BackupJob
from paitho_tenant.destinations import (
    BackupCorrupted,
    FileDestination,
    InvalidBackupRequest,
    open_destination,
    parse_url,
)
from paitho_tenant.restore import restore_into_new_cluster

from tests.conftest import free_port
from tests.functional.test_backup_support import (  # noqa: F401  (fixtures)
    KeyPair,
    SshServer,
    customer_keys_fixture,
    make_tenant_db,
    sshd_fixture,
)

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]


def _big_db(pg_cluster: Any) -> str:
    """A tenant database with ~70 MB of rows, so a backup takes long enough to interrupt."""
    db = make_tenant_db(pg_cluster, rows=5)
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE bulk (id int PRIMARY KEY, filler text)")
        conn.execute(
            "INSERT INTO bulk SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 500000) g"
        )
    return db.conninfo


def _start_backup(url: str, conninfo: str, keys: KeyPair) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "paitho_tenant.backup_cli", "backup", "--to", url,
         "--recipient", str(keys.public_file), "--db", conninfo, "--tenant", "acme",
         "--compress", "0", "--attempts", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, start_new_session=True,
    )  # fmt: skip


def _kill_group(proc: subprocess.Popen[bytes]) -> bytes:
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return out


def _wait_for(predicate: Any, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the backup finished before it could be interrupted"
        assert time.monotonic() < deadline, "the backup never started writing"
        time.sleep(0.005)


def _tmpfile_bytes(pid: int, directory: Path) -> int:
    """Bytes written so far to the backup's unnamed O_TMPFILE in `directory`."""
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else []:
        try:
            if os.readlink(fd).startswith(f"{directory}/#"):
                return os.stat(fd).st_size
        except OSError:
            continue
    return 0


def test_killed_mid_stream_leaves_no_file_object(
    pg_cluster: Any, customer_keys: KeyPair, work_root: Path
) -> None:
    """SIGKILL during a file:// backup: no result line, nothing at all in the directory."""
    conninfo = _big_db(pg_cluster)
    nas = work_root / f"kill-{free_port()}"
    proc = _start_backup(f"file://{nas}", conninfo, customer_keys)
    _wait_for(lambda: _tmpfile_bytes(proc.pid, nas / "acme") > 2 << 20, proc)
    out = _kill_group(proc)
    assert out == b""  # no success (or any) record was emitted
    assert [p for p in nas.rglob("*") if p.is_file()] == []
    assert FileDestination(nas).list() == []


def test_killed_mid_stream_leaves_no_s3_object_and_is_swept(
    pg_cluster: Any,
    customer_keys: KeyPair,
    pg_bindir: Path,
    moto_endpoint: str,
    aws_client: Any,
    unique: str,
) -> None:
    """SIGKILL during an S3 upload: no object; the next backup aborts the stale upload."""
    conninfo = _big_db(pg_cluster)
    s3 = aws_client("s3")
    bucket = f"kill-{unique}"
    s3.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/nightly?endpoint_url={moto_endpoint}&region=us-east-1"
    proc = _start_backup(url, conninfo, customer_keys)

    def a_part_uploaded() -> bool:
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            if parts.get("Parts"):
                return True
        return False

    _wait_for(a_part_uploaded, proc)
    assert _kill_group(proc) == b""
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    job = BackupJob("acme", conninfo, customer_keys.public_pem, pg_bindir, compress=9,
                    sweep_older_than=timedelta(0))  # fmt: skip
    result = job.run(lambda: open_destination(url), "s3", attempts=1)
    assert result.outcome == "succeeded", result.reason
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"nightly/{result.object_name}"]


def test_unreachable_destination_is_retried_then_failed_with_reason(
    pg_cluster: Any, customer_keys: KeyPair, pg_bindir: Path, sshd: SshServer
) -> None:
    """S3 and SFTP endpoints that refuse connections: retried with backoff, then a failed
    result with the reason; nothing is stored anywhere."""
    db = make_tenant_db(pg_cluster, rows=2)
    closed = free_port()
    for url in (
        f"s3://b/p?endpoint_url=http://localhost:{closed}&region=us-east-1",
        sshd.url(sshd.data / "unreachable", port=closed),
    ):
        sleeps: list[float] = []
        job = BackupJob("acme", db.conninfo, customer_keys.public_pem, pg_bindir)
        kind = parse_url(url).kind
        result = job.run(lambda u=url: open_destination(u), kind, 3, 0.5, sleeps.append)
        assert (result.outcome, result.error, result.attempts) == (
            "failed",
            "DestinationUnavailable",
            3,
        )
        assert sleeps == [0.5, 1.0]
        assert result.reason and str(closed) in result.reason
        assert result.size is None and result.sha256 is None


def test_failing_pg_dump_stores_nothing(
    pg_cluster: Any, customer_keys: KeyPair, pg_bindir: Path, work_root: Path
) -> None:
    """pg_dump that cannot dump (no such database): failed result, no object."""
    nas = work_root / f"dumpfail-{free_port()}"
    job = BackupJob("acme", pg_cluster.conninfo("nope"), customer_keys.public_pem, pg_bindir)
    result = job.run(lambda: open_destination(f"file://{nas}"), "file", attempts=3)
    assert (result.outcome, result.error, result.attempts) == ("failed", "DumpFailed", 1)
    assert FileDestination(nas).list() == []


def test_corrupted_truncated_or_foreign_object_is_refused_at_restore(
    pg_cluster: Any, customer_keys: KeyPair, pg_bindir: Path, work_root: Path
) -> None:
    """A flipped byte, a truncated object, another customer's key: a clear error and no
    half-restored cluster left behind."""
    db = make_tenant_db(pg_cluster, rows=20)
    nas = work_root / f"corrupt-{free_port()}"
    # Small frames, so damage near the end is found only after the new cluster exists.
    job = BackupJob("acme", db.conninfo, customer_keys.public_pem, pg_bindir, frame_length=4096)
    result = job.run(lambda: open_destination(f"file://{nas}"), "file", attempts=1)
    assert result.outcome == "succeeded" and result.object_name
    good = (nas / result.object_name).read_bytes()
    assert len(good) > 3 * 4096
    flipped = bytearray(good)
    flipped[-200] ^= 0x01
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cases = [
        (bytes(flipped), customer_keys.private_pem),
        (good[: len(good) * 2 // 3], customer_keys.private_pem),
        (good, other),
    ]
    for blob, key in cases:
        path = nas / "case.bin"
        path.write_bytes(blob)
        data_dir = work_root / f"corrupt-restore-{free_port()}"
        with path.open("rb") as source, pytest.raises(BackupCorrupted, match="cannot be decrypted"):
            restore_into_new_cluster(source, key, data_dir, pg_bindir)
        assert not data_dir.exists()


def test_a_crashing_job_still_answers_its_token(
    monkeypatch: pytest.MonkeyPatch, work_root: Path
) -> None:
    """Even an unexpected error (here: no database at all) answers the workflow's token with a
    failed, metadata-only result, so the state machine records it instead of timing out."""
    import argparse

    from paitho_tenant import backup_cli

    monkeypatch.setenv(backup_cli.TOKEN_ENV, "token-1")
    reports: list[tuple[str, str]] = []
    args = argparse.Namespace(
        command="retention",
        db=f"host={work_root}/no-such-socket-dir port=1 user=x dbname=y",
        tenant="acme",
        to=None,
        keep_backups_days=None,
        as_of=None,
    )
    assert backup_cli.run(args, report=lambda token, line: reports.append((token, line))) == 1
    ((token, line),) = reports
    result = json.loads(line)
    assert token == "token-1" and result["outcome"] == "failed" and result["started_at"]
    assert result["error"] == "OperationalError" and "the tenant's log" in result["reason"]


def test_sftp_leftovers_are_invisible_then_swept_and_unknown_hosts_refused(
    pg_cluster: Any, customer_keys: KeyPair, pg_bindir: Path, sshd: SshServer
) -> None:
    """A partial file left by a killed SFTP backup is not listed as a backup and the next
    backup removes it; a server missing from known_hosts is refused, never trusted."""
    db = make_tenant_db(pg_cluster, rows=2)
    root = sshd.data / f"sweep-{free_port()}"
    (root / "acme").mkdir(parents=True)
    leftover = root / "acme" / ".partial-deadbeef"
    leftover.write_bytes(b"half an upload")
    url = sshd.url(root)
    with open_destination(url) as dest:
        assert dest.list() == []
    job = BackupJob("acme", db.conninfo, customer_keys.public_pem, pg_bindir,
                    sweep_older_than=timedelta(0))  # fmt: skip
    result = job.run(lambda: open_destination(url), "sftp", attempts=1)
    assert result.outcome == "succeeded", result.reason
    assert not leftover.exists()
    stranger = url.replace(str(sshd.keys / "known_hosts"), "/dev/null")
    with pytest.raises(InvalidBackupRequest, match="known_hosts"), open_destination(stranger):
        pass
