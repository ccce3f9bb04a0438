"""The leads page of the web app over 100,000 leads: p95 server time of the first page, a
filtered page and a deep page, against the offset-paginated JSON API in the same run.

One fresh tenant cluster (initdb, `migrate`), the app served by uvicorn on loopback, set up and
logged in over HTTP; 100,000 leads imported with `leads.import_rows` (encrypted, blind index);
one campaign with every tenth lead enrolled as `replied`. Then, after a warm-up, REQUESTS
requests each (loopback round trip, which bounds the server time from above):

    first     GET /app/leads                       the first 50 leads, decrypted, and the count
    filtered  GET /app/leads?status=replied        keyset pages of the leads in that status
    deep      GET /app/leads?after=99000           the 1,981st page: keyset, as fast as the first
    baseline  GET /api/leads?limit=50&offset=99000 the JSON API's offset page at the same depth

Figures (bench/results.json):
    leads_page_p95_ms     the worst p95 of first, filtered and deep   target < 150 ms
                          (ratio: baseline p95 / deep p95)
    leads_page_first_p95_ms, leads_page_filtered_p95_ms, leads_page_deep_p95_ms
    leads_api_offset_deep_p95_ms

Run: .venv/bin/python -m bench bench_web   (or call main() to keep other figures)
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import uvicorn
from paitho_tenant import leads, migrate, workspaces
from paitho_tenant.app import Settings, create_app
from paitho_tenant.csvimport import LeadRow
from paitho_tenant.db import app_conninfo, workspace_tx
from paitho_tenant.outbound import store

from bench.common import percentile, record
from chalicelib.launchers import pgcluster

LEADS = 100_000
REQUESTS = 60
WARMUP = 5
PASSWORD = "bench-owner-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(n: int) -> Iterator[LeadRow]:
    for i in range(n):
        yield LeadRow(
            i + 2,
            f"person{i}@company{i % 997}.com",
            {"first_name": f"First{i}", "last_name": "Last", "company": f"Company {i % 997}"},
        )


def _timed(client: httpx.Client, path: str) -> list[float]:
    for _ in range(WARMUP):
        assert client.get(path).status_code == 200, path
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, path
    return times


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="paitho-bench-web-"))
    os.chmod(root, 0o755)  # noqa: S103  (the unprivileged cluster user must traverse it)
    bindir, ids = pgcluster.find_bindir(), pgcluster.run_as()
    cluster = pgcluster.Cluster(root / "pgdata", root / "run", _free_port())
    pgcluster.initdb(cluster.data_dir, bindir, ids)
    proc = pgcluster.start(cluster, bindir, ids)
    server: uvicorn.Server | None = None
    try:
        admin = cluster.conninfo()
        migrate.migrate(admin)
        port = _free_port()
        origin = f"http://127.0.0.1:{port}"
        app = create_app(Settings(admin_conninfo=admin, slug="bench", origin=origin))
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        headers = {"Origin": origin, "X-Requested-With": "XMLHttpRequest"}
        with httpx.Client(base_url=origin, headers=headers, timeout=60) as client:
            made = client.post(
                "/setup", json={"owner_email": "bench@paitho.io", "owner_password": PASSWORD}
            )
            assert made.status_code == 201, made.text
            key = app.state.components.vault.key()
            with psycopg.connect(app_conninfo(admin), autocommit=True) as conn:
                ws = workspaces.resolve(conn, None)
                started = time.perf_counter()
                result = leads.import_rows(conn, key, ws, _rows(LEADS))
                assert result.imported == LEADS
                print(f"imported {LEADS} leads in {time.perf_counter() - started:.1f} s")
                brand = workspaces.create_brand(conn, key, ws, "Bench")
                campaign = store.create_campaign(conn, ws, brand, "Bench campaign")
                with workspace_tx(conn, ws):
                    conn.execute(
                        "INSERT INTO enrollments (campaign_id, lead_id, status, due_at)"
                        " SELECT %s, id, 'replied', %s FROM leads WHERE id %% 10 = 0",
                        (campaign, dt.datetime.now(dt.UTC)),
                    )
            # Statistics as autovacuum would keep them (ANALYZE needs the tables' owner).
            with psycopg.connect(cluster.conninfo("paitho"), autocommit=True) as su:
                su.execute("ANALYZE")
            login = client.post("/login", json={"email": "bench@paitho.io", "password": PASSWORD})
            assert login.status_code == 204
            first = _timed(client, "/app/leads")
            filtered = _timed(client, "/app/leads?status=replied")
            deep = _timed(client, "/app/leads?after=99000")
            offset = _timed(client, "/api/leads?limit=50&offset=99000")
            page = client.get("/app/leads?after=99000").text
            assert "person99000@" in page and "person99049@" in page
        p_first, p_filtered = percentile(first, 95), percentile(filtered, 95)
        p_deep, p_offset = percentile(deep, 95), percentile(offset, 95)
        worst = max(p_first, p_filtered, p_deep)
        record("leads_page_p95_ms", worst, "ms", p_offset / p_deep)
        record("leads_page_first_p95_ms", p_first, "ms")
        record("leads_page_filtered_p95_ms", p_filtered, "ms")
        record("leads_page_deep_p95_ms", p_deep, "ms", p_offset / p_deep)
        record("leads_api_offset_deep_p95_ms", p_offset, "ms")
    finally:
        if server is not None:
            server.should_exit = True
            time.sleep(0.5)
        pgcluster.stop(proc)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
