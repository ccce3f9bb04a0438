"""Drafting 1,000 leads at concurrency 16 against the fake provider (a separate process on
loopback, speaking OpenAI's Chat Completions to the real `openai` SDK) with a fixed 100 ms
latency, every 10th call answered 429 (`retry-after-ms: 50`, honoured by the provider's retry).

Each draft is the real drafting stage: campaign, lead facts, brand and template read and
decrypted from a real tenant cluster, the prompt rendered, the provider called with retries,
the answer validated, and one stage run (period-key encrypted) + its ai_run_meta row written.

    draft_ideal_ratio  = (calls x latency / concurrency) / measured wall time   (target >= 0.8)
    draft_calls_per_s  = drafts completed per second

Checks before recording: every lead drafted, exactly one stage run per lead (no duplicate), and
HTTP attempts = calls + the 429s the fake server answered.

    .venv/bin/python -m bench bench_ai
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from paitho_tenant import keychain, leads, migrate, workspaces
from paitho_tenant.ai import review
from paitho_tenant.ai.providers import ProviderRegistry
from paitho_tenant.ai.service import AIService
from paitho_tenant.crypto import DataKey
from paitho_tenant.db import app_conninfo
from psycopg_pool import ConnectionPool

from bench.common import record
from chalicelib.launchers import pgcluster

LEADS = 1000
CONCURRENCY = 16
LATENCY = 0.100
EVERY_NTH_429 = 10
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class _Row:
    row_number: int
    email: str
    fields: dict[str, str]


def _seed(conn: psycopg.Connection[Any], key: DataKey) -> tuple[int, int, list[int], int]:
    """One workspace, a brand, LEADS leads and an OpenAI key in the keychain."""
    ws = int(workspaces.create(conn, "default", "eu")["id"])
    brand = workspaces.create_brand(
        conn, key, ws, "Initech", "Peter at Initech", "plain, warm, brief", "Ops leaders"
    )
    rows = [
        _Row(i + 2, f"lead{i}@example.test", {"first_name": f"Ada{i}", "company": f"Globex {i}"})
        for i in range(LEADS)
    ]
    leads.import_rows(conn, key, ws, rows)
    with conn.transaction():
        conn.execute("SELECT set_config('paitho.workspace_id', %s, true)", (str(ws),))
        lead_ids = [int(r[0]) for r in conn.execute("SELECT id FROM leads ORDER BY id")]
    key_id = int(keychain.add(conn, key, ws, "openai", "bench", "sk-bench-0123456789")["id"])
    return ws, brand, lead_ids, key_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_fake(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.fake_llm",
            "--port",
            str(port),
            "--latency",
            str(LATENCY),
            "--every-nth-429",
            str(EVERY_NTH_429),
            "--retry-after",
            "0",
            "--retry-after-ms",
            "50",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _stats(port)
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the fake provider did not start")


def _children(pid: int) -> list[int]:
    """PIDs of the processes whose parent is `pid` (the cluster's backends)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes (0 for any that are gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _stats(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/stats", timeout=5) as r:
        data: dict[str, object] = json.loads(r.read())
    return data


def main() -> None:
    bindir, ids = pgcluster.find_bindir(), pgcluster.run_as()
    root = Path(tempfile.mkdtemp(prefix="paitho-bench-ai-"))
    os.chmod(root, 0o755)  # noqa: S103 (the cluster user must traverse it)
    cluster = pgcluster.Cluster(root / "pgdata", root / "run", _free_port())
    pgcluster.initdb(cluster.data_dir, bindir, ids)
    proc = pgcluster.start(cluster, bindir, ids)
    port = _free_port()
    fake = _start_fake(port)
    pool = ConnectionPool(
        app_conninfo(cluster.conninfo()),
        min_size=CONCURRENCY,
        max_size=CONCURRENCY,
        kwargs={"autocommit": True},
        open=False,
    )
    try:
        migrate.migrate(cluster.conninfo())
        pool.open(wait=True)
        key = DataKey.generate()
        with pool.connection() as conn:
            ws, brand, lead_ids, key_id = _seed(conn, key)
        registry = ProviderRegistry(
            {"openai": f"http://127.0.0.1:{port}/v1"},
            timeout=10.0,
            max_attempts=4,
            concurrency=CONCURRENCY,
        )
        service = AIService(lambda: pool.connection(timeout=30), lambda: key, registry)
        with pool.connection() as conn:
            review.set_campaign(
                conn,
                key,
                ws,
                "bench",
                campaign_id=1,
                brand_id=brand,
                mode="review",
                key_id=key_id,
                model="gpt-bench",
                opt_out_line="Reply STOP to opt out.",
            )
        review.draft_stage(service, ws, 1, lead_ids[0])  # warm the client and the caches
        before = _stats(port)
        fake0, pg0 = _cpu_seconds([fake.pid]), _cpu_seconds(_children(proc.pid))
        cpu0 = time.process_time()
        started = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool_exec:
            results = list(
                pool_exec.map(lambda lead: review.draft_stage(service, ws, 1, lead), lead_ids)
            )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        fake_cpu = _cpu_seconds([fake.pid]) - fake0
        pg_cpu = _cpu_seconds(_children(proc.pid)) - pg0
        after = _stats(port)
        with pool.connection() as conn, conn.transaction():
            conn.execute("SELECT set_config('paitho.workspace_id', %s, true)", (str(ws),))
            row = conn.execute(
                "SELECT count(*), count(DISTINCT sr.lead_id), sum(m.http_attempts),"
                " count(*) FILTER (WHERE m.status = 'ok')"
                " FROM stage_runs sr JOIN ai_run_meta m ON m.run_id = sr.id"
                " WHERE sr.stage = 'draft'"
            ).fetchone()
        assert row is not None
        runs, distinct, attempts, ok = (int(v) for v in row)
        counts_before = before["counts"]
        counts_after = after["counts"]
        assert isinstance(counts_before, dict) and isinstance(counts_after, dict)
        rate_limited = int(counts_after.get("429", 0)) - int(counts_before.get("429", 0))
        assert len(results) == LEADS and all(r[3].value.subject for r in results)
        assert runs == LEADS + 1 and distinct == LEADS and ok == runs, (runs, distinct, ok)
        assert attempts == runs + rate_limited + int(counts_before.get("429", 0)), attempts
        ideal = LEADS * LATENCY / CONCURRENCY
        print(
            f"{LEADS} drafts in {elapsed:.2f} s (ideal {ideal:.2f} s); {rate_limited} answered "
            f"429 and retried; {runs} stage runs for {distinct} leads, none duplicated; "
            f"CPU s: client {cpu:.2f} ({cpu / LEADS * 1000:.2f} ms a draft), PostgreSQL "
            f"{pg_cpu:.2f}, fake provider {fake_cpu:.2f}; "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        record("draft_calls_per_s", LEADS / elapsed, "calls/s", ratio=ideal / elapsed)
        record("draft_ideal_ratio", ideal / elapsed, "ratio")
    finally:
        registry_clear = locals().get("registry")
        if isinstance(registry_clear, ProviderRegistry):
            registry_clear.clear()
        pool.close()
        fake.terminate()
        fake.wait(10)
        pgcluster.stop(proc)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
