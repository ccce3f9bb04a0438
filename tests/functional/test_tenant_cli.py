"""The tenant CLI and migrations on real clusters: idempotent migrate (also onto a database a
container image pre-created), init, import-leads with a passphrase file, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest
from paitho_tenant import migrate
from paitho_tenant.db import app_conninfo

from tests.conftest import RunningCluster
from tests.functional.test_tenant_support import STRONG

pytestmark = pytest.mark.functional


def _cli(cluster: RunningCluster, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paitho_tenant.cli", "--db", cluster.conninfo(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def test_migrate_is_idempotent_and_adopts_a_precreated_database(pg_cluster: RunningCluster) -> None:
    """A database pre-created by the superuser is handed to the owner role; a second migrate
    applies nothing; the app role is neither superuser nor able to bypass RLS."""
    with psycopg.connect(pg_cluster.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE paitho")
    assert migrate.pending(pg_cluster.conninfo())
    assert migrate.migrate(pg_cluster.conninfo())
    assert not migrate.pending(pg_cluster.conninfo())
    assert migrate.migrate(pg_cluster.conninfo()) == []
    with psycopg.connect(app_conninfo(pg_cluster.conninfo())) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE sneaky (x int)")


def test_cli_init_import_export(pg_cluster: RunningCluster, work_root: Path) -> None:
    """init with a passphrase file, import-leads reports rows and errors, export writes a zip."""
    secret_dir = work_root / f"cli-{os.getpid()}-{id(pg_cluster)}"
    secret_dir.mkdir()
    passfile = secret_dir / "passphrase"
    passfile.write_text(STRONG + "\n")
    os.chmod(passfile, 0o600)
    assert _cli(pg_cluster, "migrate").returncode == 0
    init = subprocess.run(
        [
            sys.executable,
            "-c",
            "import getpass, sys; getpass.getpass = lambda prompt='': 'owner-password-123'; "
            "from paitho_tenant.cli import main; sys.exit(main(sys.argv[1:]))",
            "--db",
            pg_cluster.conninfo(),
            "init",
            "--owner-email",
            "o@acme.test",
            "--passphrase-file",
            str(passfile),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    csv_path = secret_dir / "leads.csv"
    csv_path.write_bytes(
        "E-mail;Vorname\r\nanna@example.de;Anna\r\nnot-an-email;X\r\n".encode("cp1252")
    )
    imported = _cli(pg_cluster, "import-leads", str(csv_path), "--passphrase-file", str(passfile))
    assert imported.returncode == 3, imported.stderr
    assert "imported 1, duplicates 0, suppressed 0, errors 1" in imported.stdout
    assert "not-an-email" not in imported.stdout + imported.stderr
    out = secret_dir / "export.zip"
    exported = _cli(pg_cluster, "export", "--out", str(out), "--passphrase-file", str(passfile))
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(out) as zf:
        leads = json.loads(zf.read("leads.json"))
    assert [lead["email"] for lead in leads] == ["anna@example.de"]
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    wrong = secret_dir / "wrong"
    wrong.write_text("definitely-not-the-passphrase-123")
    refused = _cli(
        pg_cluster, "export", "--out", str(secret_dir / "x.zip"), "--passphrase-file", str(wrong)
    )
    assert refused.returncode == 1 and "wrong passphrase" in refused.stderr
