"""The encrypted data model on a real cluster: rotation, workspace isolation under the app role,
the data inventory, export, DSAR and crypto-shredding of stage runs."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import date

import httpx
import psycopg
import pytest
from paitho_tenant import inventory, stage_runs

from tests.conftest import RunningCluster
from tests.functional.test_tenant_support import (
    STRONG,
    app_conn,
    client_for,
    make_app,
    owner_conn,
    set_up,
    superuser_conn,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional

CSV = (
    b"email,first_name,company\r\n"
    b"ada@example.com,Ada,Analytical\r\n"
    b"grace@example.com,Grace,Navy\r\n"
    b"=cmd@example.com,=HYPERLINK(1),@SUM(1)\r\n"
)


def _populate(client: httpx.Client) -> dict[str, int]:
    assert (
        client.post("/api/leads/import", files={"file": ("l.csv", CSV, "text/csv")}).status_code
        == 200
    )
    lead_id = client.get("/api/leads").json()[0]["id"]
    client.post(
        "/api/keychain", json={"kind": "anthropic", "label": "k", "secret": "sk-ant-0123456789abcd"}
    )
    message = client.post(
        "/api/messages",
        json={
            "direction": "received",
            "headers": {"Subject": "hi"},
            "body": "hello",
            "lead_id": lead_id,
        },
    ).json()["id"]
    run = client.post(
        "/api/stage-runs",
        json={
            "stage": "qualify",
            "model": "m",
            "prompt": "p",
            "response": "r",
            "input_tokens": 1,
            "output_tokens": 2,
            "duration_ms": 3,
            "lead_id": lead_id,
        },
    ).json()["id"]
    return {"lead": lead_id, "message": message, "run": run}


def _ciphertexts(cluster: RunningCluster) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    with superuser_conn(cluster) as conn:
        for table in inventory.TABLES:
            for column in table.of_class(inventory.ENCRYPTED, inventory.PERIOD_ENCRYPTED):
                rows = conn.execute(
                    psycopg.sql.SQL("SELECT {c} FROM {t} ORDER BY 1").format(
                        c=psycopg.sql.Identifier(column), t=psycopg.sql.Identifier(table.name)
                    )
                ).fetchall()
                out[f"{table.name}.{column}"] = [bytes(r[0]) for r in rows if r[0] is not None]
    return out


def test_rotation_rewraps_only(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Rotating the passphrase changes the wrapped key only; every row ciphertext is identical."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        _populate(client)
        before = _ciphertexts(tenant_cluster)
        with superuser_conn(tenant_cluster) as conn:
            wrapped_before = conn.execute("SELECT wrapped_key FROM vault").fetchone()
        new = "granite-orbit-saffron-pylon-42"
        wrong = client.post(
            "/api/vault/rotate", json={"current_passphrase": "not-it", "new_passphrase": new}
        )
        assert wrong.status_code == 401
        response = client.post(
            "/api/vault/rotate", json={"current_passphrase": STRONG, "new_passphrase": new}
        )
        assert response.status_code == 200, response.text
    assert sum(len(v) for v in before.values()) >= 8
    assert _ciphertexts(tenant_cluster) == before
    with superuser_conn(tenant_cluster) as conn:
        assert conn.execute("SELECT wrapped_key FROM vault").fetchone() != wrapped_before
    with client_for(make_app(tenant_cluster)) as client:
        assert client.post("/unlock", json={"passphrase": STRONG}).status_code == 401
        assert client.post("/unlock", json={"passphrase": new}).status_code == 204


def test_workspace_isolation_under_app_role(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Hand-written SQL as the app role sees and writes only the current workspace's rows."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        client.post("/api/workspaces", json={"name": "client_b", "region": "us"})
        client.post("/api/leads/import", files={"file": ("l.csv", CSV, "text/csv")})
        client.post(
            "/api/leads/import",
            data={"workspace": "client_b"},
            files={"file": ("l.csv", b"email\r\nonly-b@example.com\r\n", "text/csv")},
        )
    with app_conn(tenant_cluster) as conn:
        ids = dict(conn.execute("SELECT name, id FROM workspaces").fetchall())
        a, b = ids["default"], ids["client_b"]
        assert conn.execute("SELECT count(*) FROM leads").fetchone() == (0,)  # no scope: nothing
        with conn.transaction():
            conn.execute("SELECT set_config('paitho.workspace_id', %s, true)", (str(a),))
            assert conn.execute("SELECT count(*) FROM leads").fetchone() == (3,)
            assert conn.execute(
                "SELECT count(*) FROM leads WHERE workspace_id = %s", (b,)
            ).fetchone() == (0,)
            assert (
                conn.execute(
                    "UPDATE leads SET profile = NULL WHERE workspace_id = %s", (b,)
                ).rowcount
                == 0
            )
            assert conn.execute("DELETE FROM leads WHERE workspace_id = %s", (b,)).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SELECT set_config('paitho.workspace_id', %s, true)", (str(a),))
            conn.execute(
                "INSERT INTO leads (workspace_id, email_bidx, email) VALUES (%s, '\\x00', '\\x00')",
                (b,),
            )
        with conn.transaction():
            conn.execute("SELECT set_config('paitho.workspace_id', %s, true)", (str(b),))
            assert conn.execute("SELECT count(*) FROM leads").fetchone() == (1,)
        role = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert role == (False, False)


def test_inventory_matches_schema_and_ciphertext(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Every schema column is inventoried, every encrypted column holds AES-256 PGP, and the
    checks fail on an undeclared column or a plaintext value."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        _populate(client)
        assert "Every byte, accounted for" in client.get("/trust").text
    with superuser_conn(tenant_cluster) as conn:
        assert inventory.schema_drift(conn) == []
        assert inventory.ciphertext_violations(conn) == []
        conn.execute("ALTER TABLE leads ADD COLUMN phone text")
        drift = inventory.schema_drift(conn)
        assert len(drift) == 1 and drift[0].startswith("leads.phone is in the schema but not in")
        conn.execute("UPDATE messages SET body = convert_to('plain text body', 'UTF8')")
        assert inventory.ciphertext_violations(conn) == [
            "messages.body: 1 row(s) are not AES-256 PGP ciphertext"
        ]
        catalog = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexdef ILIKE '%%decrypt%%'"
        ).fetchone()
        assert catalog == (0,)


def test_export_zip_has_tables_and_verified_manifest(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """GET /api/export streams a zip with JSON and CSV per table, decrypted, SHA-256 manifest,
    formula cells neutralised in CSV."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        _populate(client)
        response = client.get("/api/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        for entry in manifest["files"]:
            assert hashlib.sha256(zf.read(entry["name"])).hexdigest() == entry["sha256"]
        names = {e["name"] for e in manifest["files"]}
        assert {"leads.json", "leads.csv", "messages.csv", "audit_log.json"} <= names
        leads = json.loads(zf.read("leads.json"))
        assert {lead["email"] for lead in leads} >= {"ada@example.com", "=cmd@example.com"}
        csv_text = zf.read("leads.csv").decode()
        assert "'=cmd@example.com" in csv_text
        assert "sk-ant-0123456789abcd" in zf.read("keychain.json").decode()
        assert "wrapped_key" not in zf.read("vault.json").decode()
        assert len(json.loads(zf.read("audit_log.json"))) >= 3


def test_dsar_access_erasure_and_suppression(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Access returns the person's rows decrypted; erasure deletes them, keeps only the blind
    index on the suppression list (re-imports are suppressed) and records the 30-day due date."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        _populate(client)
        access = client.post(
            "/api/dsar", json={"kind": "access", "email": "ADA@example.com"}
        ).json()
        found = access["data"][0]
        assert found["leads"][0]["email"] == "ada@example.com"
        assert found["messages"][0]["body"] == "hello" and found["stage_runs"][0]["prompt"] == "p"
        erased = client.post(
            "/api/dsar", json={"kind": "erasure", "email": "ada@example.com"}
        ).json()
        assert erased["rows_affected"] == 1
        again = client.post("/api/leads/import", files={"file": ("l.csv", CSV, "text/csv")}).json()
        assert (again["imported"], again["suppressed"], again["duplicates"]) == (0, 1, 2)
    with superuser_conn(tenant_cluster) as conn:
        rows = conn.execute(
            "SELECT kind, due_at - received_at, completed_at IS NOT NULL"
            " FROM dsar_requests ORDER BY id"
        ).fetchall()
        assert [(r[0], r[1].days, r[2]) for r in rows] == [
            ("access", 30, True),
            ("erasure", 30, True),
        ]
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM suppression").fetchone() == (1,)


def test_destroying_period_key_shreds_stage_runs(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Deleting a period key leaves that period's prompts unreadable; counts and model stay."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
        ids = _populate(client)
        run = client.get(f"/api/stage-runs/{ids['run']}").json()
        assert run["prompt"] == "p"
        with owner_conn(tenant_cluster) as conn:
            assert stage_runs.shred_period(conn, date.fromisoformat(run["period_start"]))
        shredded = client.get(f"/api/stage-runs/{ids['run']}").json()
    assert shredded["prompt"] is None and shredded["response"] is None
    assert (shredded["input_tokens"], shredded["output_tokens"], shredded["model"]) == (1, 2, "m")


def test_import_is_all_or_nothing(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """A failure part-way through an import (after several batches) leaves no lead behind."""
    from paitho_tenant.crypto import DataKey
    from paitho_tenant.csvimport import LeadRow
    from paitho_tenant.leads import import_rows

    def rows() -> Iterator[LeadRow]:
        for n in range(2500):
            yield LeadRow(n + 2, f"lead{n}@example.com", {"email": f"lead{n}@example.com"})
        raise RuntimeError("the upload broke off")

    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
    with app_conn(tenant_cluster) as conn:
        workspace_id = int(conn.execute("SELECT id FROM workspaces").fetchone()[0])  # type: ignore[index]
        with pytest.raises(RuntimeError):
            import_rows(conn, DataKey.generate(), workspace_id, rows(), batch_rows=1000)
    with superuser_conn(tenant_cluster) as conn:
        assert conn.execute("SELECT count(*) FROM leads").fetchone() == (0,)


def test_unlock_refused_when_postgres_would_log_secrets(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """With statement logging switched on by an operator, the app refuses to send the
    passphrase at all (500 unsafe_database), so it never reaches the server log."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
    with superuser_conn(tenant_cluster) as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        conn.execute("ALTER SYSTEM SET log_parameter_max_length = -1")
        conn.execute("SELECT pg_reload_conf()")
    with client_for(make_app(tenant_cluster)) as client:
        response = client.post("/unlock", json={"passphrase": STRONG})
        assert response.status_code == 500 and response.json()["error"] == "unsafe_database"
        assert client.get("/healthz").json() == {"state": "sealed"}
    tenant_cluster.stop()
    logs = b"".join(p.read_bytes() for p in (tenant_cluster.data_dir / "log").iterdir())
    assert STRONG.encode() not in logs
