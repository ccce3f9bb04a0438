"""The per-tenant cluster is configured per the trust model and reachable only as intended."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from chalicelib.errors import LaunchError
from chalicelib.launchers import pgcluster
from tests.conftest import RunningCluster

pytestmark = pytest.mark.functional


def test_trust_settings_are_in_force(pg_cluster: RunningCluster) -> None:
    """Every logging setting that could leak a parameter is off in the running server."""
    with psycopg.connect(pg_cluster.conninfo()) as conn:

        def show(name: str) -> str:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            assert row is not None
            return str(row[0])

        assert show("log_statement") == "none"
        assert show("log_parameter_max_length") == "0"
        assert show("log_parameter_max_length_on_error") == "0"
        assert show("log_min_error_statement") == "panic"
        assert show("log_min_duration_statement") == "-1"
        assert show("shared_preload_libraries") == ""
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        row = conn.execute("SELECT pgp_sym_decrypt(pgp_sym_encrypt('x', 'k'), 'k')").fetchone()
        assert row == ("x",)


def test_tcp_requires_a_password(pg_cluster: RunningCluster) -> None:
    """Loopback TCP is not trusted: only the 0700 socket directory is."""
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            f"host=127.0.0.1 port={pg_cluster.cluster.port} user=postgres dbname=postgres",
            connect_timeout=5,
        )


def test_unreachable_home_is_refused_with_a_reason(tmp_path: Path) -> None:
    """A home the cluster user cannot enter (pytest's 0700 tmp) gives an actionable error."""
    ids = pgcluster.run_as()
    if ids is None:
        ids = (os.getuid() + 1, os.getgid() + 1)  # a user who is not us
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(LaunchError, match="PAITHO_HOME"):
        pgcluster.check_reachable(locked / "home", ids)
