"""One PostgreSQL cluster per tenant, configured so nothing readable reaches its files.

Plain standard-library code shared by the local launcher and the test fixtures. The settings
follow DESIGN.md, trust model point 2: no statement, parameter or duration logging, no
auto_explain, no pg_stat_statements, errors logged without their statement.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from chalicelib.errors import LaunchError

SUPERUSER = "postgres"
RUN_AS_USER = "paitho"

# Every setting a tenant cluster runs with. Verified at runtime by the tenant (`SHOW`).
TRUST_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_permissions": "0700",
    "logging_collector": "on",
    "log_destination": "'stderr'",
    "log_directory": "'log'",
    "log_statement": "'none'",
    "log_duration": "off",
    "log_min_duration_statement": "-1",
    "log_min_duration_sample": "-1",
    "log_transaction_sample_rate": "0",
    "log_parameter_max_length": "0",
    "log_parameter_max_length_on_error": "0",
    "log_min_error_statement": "panic",
    "log_connections": "off",
    "log_disconnections": "off",
    "log_autovacuum_min_duration": "-1",
    "log_temp_files": "-1",
    "log_lock_waits": "off",
    "shared_preload_libraries": "''",
    "session_preload_libraries": "''",
    "local_preload_libraries": "''",
    "track_activity_query_size": "1024",
    "shared_buffers": "16MB",
    "max_connections": "40",
    "max_wal_size": "256MB",
    "password_encryption": "'scram-sha-256'",
}

HBA = """\
# Paitho tenant cluster: the Unix socket (directory mode 0700, owned by the cluster's user) is
# the only way in without a password. TCP on loopback requires SCRAM.
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
"""


def find_bindir() -> Path:
    """The distribution's PostgreSQL binaries (newest major first)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "postgres").exists():
            return cand
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        cand = Path(out.stdout.strip())
        if (cand / "initdb").exists():
            return cand
    raise LaunchError(
        "PostgreSQL server binaries not found: install the distribution's postgresql and "
        "postgresql-contrib packages (make up does this)"
    )


def run_as() -> tuple[int, int] | None:
    """(uid, gid) to run clusters as when we are root; None when already unprivileged."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(RUN_AS_USER)
    except KeyError as exc:
        raise LaunchError(
            f"running as root but the unprivileged user {RUN_AS_USER!r} does not exist; "
            "run `make up` once (its bootstrap creates it)"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def check_reachable(path: Path, ids: tuple[int, int] | None) -> None:
    """Fail clearly when the cluster user cannot reach `path` (e.g. a checkout under /root)."""
    if ids is None:
        return
    uid, gid = ids
    for parent in [*reversed(path.resolve().parents)]:
        try:
            st = parent.stat()
        except FileNotFoundError:
            return
        if st.st_uid == uid or st.st_mode & 0o001 or (st.st_gid == gid and st.st_mode & 0o010):
            continue
        raise LaunchError(
            f"PostgreSQL runs as the unprivileged user {RUN_AS_USER!r}, which cannot enter "
            f"{parent}; set PAITHO_HOME to a directory it can reach (for example under /srv "
            "or /var/lib), or run `make up` as a normal user"
        )


def chown_tree(path: Path, ids: tuple[int, int] | None) -> None:
    if ids is None:
        return
    uid, gid = ids
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def preexec_for(ids: tuple[int, int] | None) -> dict[str, object]:
    """Popen keyword arguments that drop privileges to the cluster user."""
    if ids is None:
        return {}
    return {"user": ids[0], "group": ids[1], "extra_groups": []}


@dataclass(frozen=True)
class Cluster:
    """Where a cluster lives and how to reach it."""

    data_dir: Path
    socket_dir: Path
    port: int

    def conninfo(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host={self.socket_dir} port={self.port} user={user} dbname={dbname}"

    def postgres_argv(self, bindir: Path) -> list[str]:
        return [
            str(bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
        ]

    def server_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            return int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None


def initdb(data_dir: Path, bindir: Path, ids: tuple[int, int] | None) -> None:
    """Create a fresh cluster with the trust settings applied."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(mode=0o700)
    chown_tree(data_dir, ids)
    argv = [
        str(bindir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--no-instructions",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **preexec_for(ids))  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise LaunchError(f"initdb failed for {data_dir}: {tail[0]}")
    configure(data_dir, ids)


def configure(data_dir: Path, ids: tuple[int, int] | None) -> None:
    lines = ["# Written by Paitho: the tenant trust settings (DESIGN.md point 2).\n"]
    lines += [f"{key} = {value}\n" for key, value in TRUST_SETTINGS.items()]
    (data_dir / "paitho.conf").write_text("".join(lines))
    conf = data_dir / "postgresql.conf"
    text = conf.read_text()
    if "include 'paitho.conf'" not in text:
        conf.write_text(text + "\ninclude 'paitho.conf'\n")
    (data_dir / "pg_hba.conf").write_text(HBA)
    chown_tree(data_dir, ids)


def clone(template: Path, data_dir: Path, ids: tuple[int, int] | None) -> None:
    """Copy a stopped template cluster; much faster than initdb."""
    if data_dir.exists():
        raise LaunchError(f"data directory {data_dir} already exists; delete the tenant first")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", str(template), str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LaunchError(f"could not copy the template cluster: {proc.stderr.strip()}")
    for stale in ("postmaster.pid", "postmaster.opts"):
        (data_dir / stale).unlink(missing_ok=True)
    chown_tree(data_dir, ids)


def prepare_socket_dir(socket_dir: Path, ids: tuple[int, int] | None) -> None:
    socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(socket_dir, 0o700)
    chown_tree(socket_dir, ids)


def start(cluster: Cluster, bindir: Path, ids: tuple[int, int] | None) -> subprocess.Popen[bytes]:
    """Start the postmaster in the foreground of a child process and wait until it accepts."""
    prepare_socket_dir(cluster.socket_dir, ids)
    proc = subprocess.Popen(  # type: ignore[call-overload]
        cluster.postgres_argv(bindir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **preexec_for(ids),
    )
    wait_ready(cluster, proc)
    return proc  # type: ignore[no-any-return]


def wait_ready(cluster: Cluster, proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    """Poll the postmaster.pid status line until the server says it is ready."""
    deadline = time.monotonic() + timeout
    pidfile = cluster.data_dir / "postmaster.pid"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LaunchError(
                f"PostgreSQL for {cluster.data_dir.name} exited with code {proc.returncode} "
                f"at start; its log is in {cluster.data_dir / 'log'}"
            )
        try:
            lines = pidfile.read_text().splitlines()
        except OSError:
            lines = []
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return
        time.sleep(0.02)
    raise LaunchError(f"PostgreSQL for {cluster.data_dir.name} did not become ready in {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Fast shutdown (SIGINT): roll back open transactions, checkpoint, exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
