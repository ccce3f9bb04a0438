"""Lead import with encryption and blind index, against a plain COPY in the same run; unlock.

One fresh tenant cluster (initdb, the trust settings, `migrate`, a vault set up). The bench
generates a 100,000-row lead CSV in memory, then in the same run, per round:

    import (end to end)  csvimport.LeadCsvReader -> leads.import_rows from the CSV bytes:
                         detection, validation, blind-index dedup, pgp_sym_encrypt of email and
                         profile (s2k-mode=1, aes256), one transaction
    store                leads.import_rows over the same rows already parsed: blind index,
                         dedup, encryption, insert
    COPY twin            the same parsed rows written with COPY ... FROM STDIN (write_row) into
                         `plain_twin`: the leads table unencrypted (workspace, email, profile
                         JSON in clear; the same per-workspace unique key, on the email itself,
                         and the same foreign key)
    COPY bare            the same parsed rows COPY'd into a bare heap, one column per field,
                         no index, no key
    COPY csv             the CSV bytes themselves COPY'd (FORMAT csv) into that bare heap

Figures (bench/results.json):
    import_leads_per_s         leads/s of the end-to-end import           (median of ROUNDS)
    import_ratio_vs_copy       store / COPY twin: what encryption and the blind index cost
                               against the same table unencrypted           target >= 0.25
    import_ratio_vs_bare_copy  store / COPY bare
    import_e2e_ratio_vs_copy   end-to-end import / COPY csv: adds CSV parsing and validation
    unlock_s                  Vault.unlock: settings check + the slow-S2K unwrap (median)
    serve_ready_s             `paitho-tenant serve` process start to the first /healthz 200 on
                              a migrated cluster (median of SERVE_STARTS)

Run: .venv/bin/python -m bench bench_tenant
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import psycopg
from paitho_tenant import migrate, workspaces
from paitho_tenant.crypto import DataKey, generate_passphrase
from paitho_tenant.csvimport import LeadCsvReader, LeadRow, RowError
from paitho_tenant.db import app_conninfo, workspace_tx
from paitho_tenant.leads import import_rows
from paitho_tenant.vault import Vault

from bench.common import median, record
from chalicelib.launchers import pgcluster

ROWS = 100_000
ROUNDS = 3
UNLOCKS = 5
SERVE_STARTS = 5
HEADER = ["Email Address", "First Name", "Last Name", "Company", "Job Title", "City", "Country"]
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
_CITY = ["Berlin", "Lyon", "Austin", "Leeds", "Porto", "Boston", "Gdansk", "Turin"]


def make_csv(rows: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = io.StringIO()
    out.write(",".join(HEADER) + "\r\n")
    for n in range(rows):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        out.write(
            f"{first.lower()}.{last.lower()}.{seed}.{n}@example{n % 97}.com,{first},{last},"
            f"Company {n % 5000} Ltd,Head of Things,{rng.choice(_CITY)},DE\r\n"
        )
    return out.getvalue().encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="paitho-bench-tenant-"))
    os.chmod(root, 0o755)  # noqa: S103  (the unprivileged cluster user must traverse it)
    bindir, ids = pgcluster.find_bindir(), pgcluster.run_as()
    cluster = pgcluster.Cluster(root / "pgdata", root / "run", _free_port())
    pgcluster.initdb(cluster.data_dir, bindir, ids)
    proc = pgcluster.start(cluster, bindir, ids)
    try:
        admin = cluster.conninfo()
        migrate.migrate(admin)
        passphrase = generate_passphrase()
        with psycopg.connect(app_conninfo(admin), autocommit=True) as conn:
            key, _ = Vault().initialise(conn, passphrase)
        with psycopg.connect(cluster.conninfo("paitho"), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE plain_leads (email text, first_name text, last_name text,"
                " company text, title text, city text, country text)"
            )
            conn.execute(
                "CREATE TABLE plain_twin (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " workspace_id bigint NOT NULL REFERENCES workspaces, email text NOT NULL,"
                " profile text, created_at timestamptz NOT NULL DEFAULT now(),"
                " UNIQUE (workspace_id, email))"
            )
            conn.execute("INSERT INTO workspaces (name, region) VALUES ('twin', 'eu')")
        e2e, store, copy_rows, copy_csv, copy_twin = [], [], [], [], []
        for round_no in range(ROUNDS):
            data = make_csv(ROWS, seed=round_no)
            copy_csv.append(_copy_csv(cluster, data))
            parsed = list(LeadCsvReader(io.BytesIO(data)).rows())
            copy_rows.append(_copy_rows(cluster, parsed))
            copy_twin.append(_copy_twin(cluster, parsed))
            store.append(_import(admin, key, parsed, f"store{round_no}"))
            e2e.append(_import(admin, key, data, f"e2e{round_no}"))
        unlock_times = []
        for _ in range(UNLOCKS):
            with psycopg.connect(app_conninfo(admin), autocommit=True) as conn:
                started = time.perf_counter()
                Vault().unlock(conn, passphrase, actor="bench")
                unlock_times.append(time.perf_counter() - started)
        t_e2e, t_store = median(e2e), median(store)
        t_rows, t_csv, t_twin = median(copy_rows), median(copy_csv), median(copy_twin)
        record("import_leads_per_s", ROWS / t_e2e, "leads/s", t_csv / t_e2e)
        record("import_ratio_vs_copy", t_twin / t_store, "ratio", t_twin / t_store)
        record("import_ratio_vs_bare_copy", t_rows / t_store, "ratio", t_rows / t_store)
        record("import_store_leads_per_s", ROWS / t_store, "leads/s", t_twin / t_store)
        record("import_e2e_ratio_vs_copy", t_csv / t_e2e, "ratio", t_csv / t_e2e)
        record("import_copy_twin_rows_per_s", ROWS / t_twin, "rows/s")
        record("import_copy_bare_rows_per_s", ROWS / t_rows, "rows/s")
        record("unlock_s", median(unlock_times), "s")
        record("serve_ready_s", median([_serve_ready(admin) for _ in range(SERVE_STARTS)]), "s")
    finally:
        pgcluster.stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _serve_ready(admin: str) -> float:
    port = _free_port()
    env = {**os.environ, "PAITHO_TENANT_DB": admin, "PAITHO_TENANT_SLUG": "bench"}
    argv = [sys.executable, "-m", "paitho_tenant.cli", "serve", "--port", str(port)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < 30:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.005)
        raise RuntimeError("paitho-tenant serve did not answer /healthz in 30 s")
    finally:
        proc.terminate()
        proc.wait(10)


def _copy_rows(cluster: pgcluster.Cluster, parsed: list[LeadRow | RowError]) -> float:
    fields = ("email", "first_name", "last_name", "company", "title", "city", "country")
    with psycopg.connect(cluster.conninfo("paitho")) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY plain_leads (email, first_name, last_name, company, title, city, country)"
                " FROM STDIN"
            ) as copy,
        ):
            for row in parsed:
                if isinstance(row, LeadRow):
                    copy.write_row([row.fields.get(f) for f in fields])
        conn.commit()
        return time.perf_counter() - started


def _copy_twin(cluster: pgcluster.Cluster, parsed: list[LeadRow | RowError]) -> float:
    with psycopg.connect(cluster.conninfo("paitho")) as conn:
        conn.execute("TRUNCATE plain_twin")
        row = conn.execute("SELECT id FROM workspaces WHERE name = 'twin'").fetchone()
        assert row is not None
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY plain_twin (workspace_id, email, profile) FROM STDIN") as copy,
        ):
            for lead in parsed:
                if isinstance(lead, LeadRow):
                    profile = {k: v for k, v in lead.fields.items() if k != "email" and v}
                    copy.write_row(
                        (
                            row[0],
                            lead.email,
                            json.dumps(profile, ensure_ascii=False, separators=(",", ":")),
                        )
                    )
        conn.commit()
        return time.perf_counter() - started


def _copy_csv(cluster: pgcluster.Cluster, data: bytes) -> float:
    with psycopg.connect(cluster.conninfo("paitho")) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY plain_leads FROM STDIN (FORMAT csv, HEADER true)") as copy,
        ):
            view = memoryview(data)
            for offset in range(0, len(data), 1 << 16):
                copy.write(view[offset : offset + (1 << 16)])
        conn.commit()
        return time.perf_counter() - started


def _import(
    admin: str, key: DataKey, source: bytes | list[LeadRow | RowError], workspace: str
) -> float:
    with psycopg.connect(app_conninfo(admin), autocommit=True) as conn:
        workspace_id = int(workspaces.create(conn, workspace, "eu")["id"])
        started = time.perf_counter()
        if isinstance(source, bytes):
            rows: Iterable[LeadRow | RowError] = LeadCsvReader(io.BytesIO(source)).rows()
        else:
            rows = source
        result = import_rows(conn, key, workspace_id, rows)
        elapsed = time.perf_counter() - started
        if result.imported != ROWS:
            raise RuntimeError(f"imported {result.imported} of {ROWS} rows")
        with workspace_tx(conn, workspace_id):
            row = conn.execute("SELECT count(*) FROM leads").fetchone()
        if row is None or row[0] != ROWS:
            raise RuntimeError("lead count after import is wrong")
        return elapsed


if __name__ == "__main__":
    main()
