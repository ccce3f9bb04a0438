"""Encrypted backup throughput against `pg_dump -Fc | gzip > /dev/null`, in the same run;
and retention over 1,000,000 stage runs of the real tenant schema.

Builds a tenant-sized database (>= 200 MB: text columns plus incompressible bytea standing in
for pgcrypto ciphertext) in its own cluster, then times, alternately, the baseline pipeline and
the real backup (pg_dump custom format -> AWS Encryption SDK to an RSA public key -> file://
destination, fsync, read-back SHA-256 verification, link into place). MB are the database's
size (pg_database_size) per second of wall time; the best of the runs counts for each side.

Retention: a migrated tenant with 1,000,000 stage runs spread over 26 weekly periods (half of
them older than 90 days); `retention_1m_s` is the wall time of `retention.apply` (destroy the
expired period keys, clear their prompts and responses, audit it). No baseline.

    .venv/bin/python -m bench bench_backup
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from paitho_tenant.backup import BackupJob
from paitho_tenant.destinations import FileDestination
from paitho_tenant.retention import apply as apply_retention

from bench.common import record
from chalicelib.launchers import pgcluster

ROWS = 1_100_000
STAGE_RUNS = 1_000_000
PERIODS = 26
RUNS = 2
FRAME_LENGTH = 4 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        conn.execute(
            "CREATE TABLE leads (id bigint PRIMARY KEY, company text, email_hash text, "
            "email bytea, note bytea, created_at timestamptz)"
        )
        conn.execute(
            "INSERT INTO leads SELECT g, 'Company ' || (g %% 5000) || ' GmbH', md5(g::text), "
            "gen_random_bytes(48), gen_random_bytes(64), now() - (g || ' seconds')::interval "
            "FROM generate_series(1, %s) g",
            (ROWS,),
        )
        conn.execute("VACUUM ANALYZE leads")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        return int(row[0])


def _baseline(bindir: Path, conninfo: str) -> float:
    """`pg_dump --format=custom | gzip > /dev/null`, as two piped processes."""
    start = time.perf_counter()
    dump = subprocess.Popen(
        [str(bindir / "pg_dump"), "--format=custom", "--dbname", conninfo],
        stdout=subprocess.PIPE,
    )
    gzip = subprocess.Popen(["gzip"], stdin=dump.stdout, stdout=subprocess.DEVNULL)
    assert dump.stdout is not None
    dump.stdout.close()
    assert gzip.wait() == 0 and dump.wait() == 0
    return time.perf_counter() - start


def _backup(job: BackupJob, out: Path) -> tuple[float, int]:
    target = out / f"run-{time.monotonic_ns()}"
    start = time.perf_counter()
    result = job.run_once(FileDestination(target))
    elapsed = time.perf_counter() - start
    shutil.rmtree(target)
    assert result.outcome == "succeeded" and result.size
    return elapsed, result.size


def _retention(bindir: Path, root: Path) -> None:
    from datetime import UTC, datetime

    from paitho_tenant.db import DATABASE, owner_conninfo
    from paitho_tenant.migrate import migrate

    ids = pgcluster.run_as()
    cluster = pgcluster.Cluster(root / "pgdata-ret", root / "run-ret", _free_port())
    pgcluster.initdb(cluster.data_dir, bindir, ids)
    proc = pgcluster.start(cluster, bindir, ids)
    try:
        admin = cluster.conninfo("postgres")
        migrate(admin)
        with psycopg.connect(cluster.conninfo(DATABASE), autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO workspaces (name, region) VALUES ('bench', 'eu') RETURNING id"
            ).fetchone()
            assert row is not None
            conn.execute(
                "INSERT INTO period_keys (period_start, wrapped_key)"
                " SELECT date_trunc('week', now())::date - 7 * g, gen_random_bytes(64)"
                " FROM generate_series(0, %s) g",
                (PERIODS - 1,),
            )
            conn.execute(
                "INSERT INTO stage_runs (workspace_id, stage, model, input_tokens,"
                " output_tokens, started_at, duration_ms, period_start, prompt, response)"
                " SELECT %s, 'qualify', 'model-x', 900, 300, p + interval '1 day', 1200, p,"
                " gen_random_bytes(64), gen_random_bytes(128)"
                " FROM (SELECT date_trunc('week', now())::date - 7 * (g %% %s) AS p"
                "       FROM generate_series(1, %s) g) s",
                (row[0], PERIODS, STAGE_RUNS),
            )
            conn.execute("VACUUM ANALYZE stage_runs")
        start = time.perf_counter()
        result = apply_retention("bench", owner_conninfo(admin), None, datetime.now(UTC))
        elapsed = time.perf_counter() - start
        print(
            f"retention: {result.stage_runs_shredded} of {STAGE_RUNS} stage runs cleared, "
            f"{result.periods_destroyed} period keys destroyed in {elapsed:.2f}s",
            flush=True,
        )
        assert result.stage_runs_shredded > STAGE_RUNS // 3
        record("retention_1m_s", elapsed, "s")
    finally:
        pgcluster.stop(proc)


def main() -> None:
    bindir = pgcluster.find_bindir()
    ids = pgcluster.run_as()
    root = Path(tempfile.mkdtemp(prefix="paitho-bench-backup-"))
    os.chmod(root, 0o755)  # noqa: S103 (the cluster user must traverse it)
    cluster = pgcluster.Cluster(root / "pgdata", root / "run", _free_port())
    pgcluster.initdb(cluster.data_dir, bindir, ids)
    proc = pgcluster.start(cluster, bindir, ids)
    try:
        conninfo = cluster.conninfo("postgres")
        db_bytes = _build(conninfo)
        db_mb = db_bytes / 1e6
        print(f"database: {db_mb:.0f} MB ({ROWS} rows)", flush=True)
        public_pem = (
            rsa.generate_private_key(public_exponent=65537, key_size=3072)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        job = BackupJob("bench", conninfo, public_pem, bindir, frame_length=FRAME_LENGTH)
        base_times, backup_times, sizes = [], [], []
        for _ in range(RUNS):
            base_times.append(_baseline(bindir, conninfo))
            elapsed, size = _backup(job, root / "out")
            backup_times.append(elapsed)
            sizes.append(size)
        base, backup = min(base_times), min(backup_times)
        print(
            f"pg_dump|gzip best {base:.2f}s {base_times}; encrypted backup best {backup:.2f}s "
            f"{backup_times}; object {sizes[0] / 1e6:.0f} MB",
            flush=True,
        )
        record("backup_mb_per_s", db_mb / backup, "MB/s", ratio=base / backup)
        record("backup_ratio_vs_pgdump_gzip", base / backup, "ratio")
    finally:
        pgcluster.stop(proc)
    try:
        _retention(bindir, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
