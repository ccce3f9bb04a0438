"""Restore, run by the customer with the private key: a NEW cluster from an encrypted backup.

Works with no control plane at all: it needs the object (any destination URL), the private key
file and the PostgreSQL binaries. The decrypted stream goes from memory straight into psql (the
roles) and pg_restore (the database); no plaintext file is written. Any failure removes the new
cluster, so a half-restored tenant is never left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from chalicelib.launchers import pgcluster
from paitho_tenant.backup import MAGIC, esdk_client, key_id, last_line, master_key
from paitho_tenant.destinations import (
    BackupCorrupted,
    BackupError,
    DumpFailed,
    InvalidBackupRequest,
)

log = logging.getLogger(__name__)


def load_private_key(path: Path, passphrase: bytes | None = None) -> bytes:
    """The customer's RSA private key (PEM, PKCS#8 or traditional; optionally encrypted)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidBackupRequest(
            f"cannot read the private key file {path}: {exc.strerror}"
        ) from exc
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise InvalidBackupRequest(
            f"{path} is not a usable PEM RSA private key (or its passphrase is wrong)"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidBackupRequest(f"{path} is not an RSA private key")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_of(private_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key: Any = serialization.load_pem_private_key(private_pem, password=None)
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def decrypt(source: BinaryIO, key_pem: bytes, *, private: bool = True) -> Iterator[bytes]:
    """Yield the decrypted payload; every frame is authenticated before it is released.

    Raises BackupCorrupted for a damaged or truncated object, or one for another key."""
    from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError
    from cryptography.exceptions import InvalidTag

    public = public_of(key_pem) if private else key_pem
    provider = master_key(key_pem, private=private, kid=key_id(public))
    try:
        with esdk_client().stream(
            mode="decrypt-unsigned", source=source, key_provider=provider
        ) as decryptor:
            if decryptor.header.encryption_context.get("paitho") != "tenant-backup":
                raise BackupCorrupted("this object is not a Paitho tenant backup")
            yield from decryptor
    except (AWSEncryptionSDKClientError, InvalidTag, struct.error) as exc:
        raise BackupCorrupted(
            "the backup object cannot be decrypted: it is damaged or truncated, or it was "
            f"not encrypted to this private key ({type(exc).__name__})"
        ) from exc


class _Reader:
    """Turn the chunk iterator back into exact-size reads."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                raise BackupCorrupted("the backup payload ends early")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def rest(self) -> Iterator[bytes]:
        if self._buf:
            yield self._buf
            self._buf = b""
        yield from self._chunks


@dataclass(frozen=True)
class RestoreResult:
    data_dir: Path
    databases: tuple[str, ...]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _feed(proc: subprocess.Popen[bytes], chunks: Iterator[bytes]) -> None:
    assert proc.stdin is not None
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass  # pg_restore stopped early; its exit status says why
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


def _wait(proc: subprocess.Popen[bytes], errors: IO[bytes], what: str) -> None:
    code = proc.wait()
    if code != 0:
        errors.seek(0)
        raise DumpFailed(f"{what} failed with exit code {code}: {last_line(errors.read())}")


def restore_into_new_cluster(
    source: BinaryIO,
    private_pem: bytes,
    data_dir: Path,
    bindir: Path,
    after: Callable[[Callable[[str], str], tuple[str, ...]], None] | None = None,
) -> RestoreResult:
    """initdb `data_dir`, start it on a private socket, restore roles and database, run
    `after(conninfo_for, databases)` (e.g. to put back period keys) and stop it."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise InvalidBackupRequest(f"{data_dir} is not empty; restore builds a NEW cluster")
    with contextlib.suppress(FileNotFoundError):
        data_dir.rmdir()
    ids = pgcluster.run_as()
    run_dir = Path(tempfile.mkdtemp(prefix="paitho-restore-"))
    os.chmod(run_dir, 0o755)  # noqa: S103 (the cluster user must traverse it; socket dir is 0700)
    cluster = pgcluster.Cluster(data_dir, run_dir / "socket", _free_port())
    proc: subprocess.Popen[bytes] | None = None
    try:
        # Open the envelope first: a wrong key or a foreign object fails before any initdb.
        payload = _Reader(decrypt(source, private_pem))
        if payload.read_exact(len(MAGIC)) != MAGIC:
            raise BackupCorrupted("the decrypted payload is not a Paitho backup")
        (roles_len,) = struct.unpack(">Q", payload.read_exact(8))
        roles_sql = payload.read_exact(roles_len)
        pgcluster.initdb(data_dir, bindir, ids)
        proc = pgcluster.start(cluster, bindir, ids)
        conninfo = cluster.conninfo("postgres")
        # Roles first (the cluster's own superuser already exists: that error is expected).
        subprocess.run(
            [str(bindir / "psql"), "-X", "-q", "-d", conninfo, "-f", "-"],
            input=roles_sql,
            capture_output=True,
            check=False,
        )
        with tempfile.TemporaryFile() as errors:
            restore = subprocess.Popen(
                [
                    str(bindir / "pg_restore"),
                    "--create",
                    "--exit-on-error",
                    "--no-password",
                    "--dbname",
                    conninfo,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            try:
                _feed(restore, payload.rest())
            except BaseException:
                restore.kill()
                restore.wait()
                raise
            _wait(restore, errors, "pg_restore")
        listing = subprocess.run(
            [
                str(bindir / "psql"),
                "-X",
                "-At",
                "-d",
                conninfo,
                "-c",
                "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'",
            ],
            capture_output=True,
            check=True,
        )
        databases = tuple(listing.stdout.decode().split())
        if after is not None:
            after(cluster.conninfo, databases)
    except BaseException as exc:
        if proc is not None:
            pgcluster.stop(proc)
            proc = None
        shutil.rmtree(data_dir, ignore_errors=True)
        if isinstance(exc, BackupError | KeyboardInterrupt | SystemExit):
            raise
        if isinstance(exc, subprocess.CalledProcessError | OSError):
            raise DumpFailed(f"restore failed: {exc}") from exc
        raise
    finally:
        if proc is not None:
            pgcluster.stop(proc)
        shutil.rmtree(run_dir, ignore_errors=True)
    log.info("restored %d database(s) into %s", len(databases), data_dir)
    return RestoreResult(data_dir, databases)
