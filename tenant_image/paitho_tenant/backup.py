"""Encrypted backups made inside the tenant's boundary (DESIGN.md, trust model point 9).

    pg_dumpall --roles-only ─┐
    pg_dump --format=custom ─┴─> AWS Encryption SDK stream (to the customer's RSA public key)
                                 └─> destination writer (S3 multipart / SFTP / directory)

The plaintext only ever exists in pipe buffers and process memory: no temporary file. The
payload inside the encrypted message is a small frame (magic, length, the roles script) followed
by the pg_dump archive, so a restore can recreate the tenant's roles before its objects.

Wrapping: Raw RSA, OAEP with SHA-256, legacy master-key API (no MPL dependency). The wrapping
key's id is the SHA-256 fingerprint of the public key, so the customer's private key finds it.
Suite: AES-256-GCM with HKDF-SHA512 and key commitment, *without* ECDSA signing: anyone holding
the public key can create a valid backup anyway, so a signature would prove nothing, and an
unsigned message can be decrypted in streaming mode with each frame authenticated before release.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import queue
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from paitho_tenant.destinations import (
    BackupError,
    Destination,
    DestinationUnavailable,
    DumpFailed,
    InvalidBackupRequest,
)

log = logging.getLogger(__name__)

PROVIDER_ID = "paitho-backup"
MAGIC = b"PAITHO-BACKUP-1\n"
FRAME_LENGTH = 1 << 20
SUFFIX = ".pgdump.aesdk"
RESULT_FIELDS = (
    "tenant",
    "started_at",
    "finished_at",
    "size",
    "sha256",
    "destination_kind",
    "object_name",
    "outcome",
    "error",
    "reason",
)


def esdk_client() -> Any:
    import aws_encryption_sdk

    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=aws_encryption_sdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


def load_public_key(text_or_path: str) -> bytes:
    """The recipient: a PEM public key, given inline or as a file path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = text_or_path.encode() if "-----BEGIN" in text_or_path else b""
    if not pem:
        try:
            pem = Path(text_or_path).read_bytes()
        except OSError as exc:
            raise InvalidBackupRequest(
                f"cannot read the recipient key file {text_or_path}: {exc.strerror}"
            ) from exc
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise InvalidBackupRequest(
            "the recipient must be a PEM RSA public key (-----BEGIN PUBLIC KEY-----)"
        ) from exc
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise InvalidBackupRequest("the recipient must be an RSA public key of 2048 bits or more")
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public_pem: bytes) -> bytes:
    """The wrapping key's id in the message header: a fingerprint, not the key."""
    from cryptography.hazmat.primitives import serialization

    der = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ("sha256:" + hashlib.sha256(der).hexdigest()[:40]).encode()


def master_key(pem: bytes, *, private: bool, kid: bytes) -> Any:
    """A Raw RSA master key; with only a public key it can encrypt and never decrypt."""
    from aws_encryption_sdk.identifiers import EncryptionKeyType, WrappingAlgorithm
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKey

    return RawMasterKey(
        provider_id=PROVIDER_ID,
        key_id=kid,
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.RSA_OAEP_SHA256_MGF1,
            wrapping_key=pem,
            wrapping_key_type=EncryptionKeyType.PRIVATE if private else EncryptionKeyType.PUBLIC,
        ),
    )


@dataclass(frozen=True)
class BackupResult:
    """What may be reported and recorded: metadata only, never content and never a key."""

    tenant: str
    started_at: str
    destination_kind: str
    outcome: str  # "succeeded" | "failed"
    finished_at: str = ""
    size: int | None = None
    sha256: str | None = None
    object_name: str | None = None
    error: str | None = None
    reason: str | None = None
    attempts: int = field(default=1, compare=False)

    def to_json(self) -> str:
        values = {k: v for k, v in asdict(self).items() if k in RESULT_FIELDS and v is not None}
        return json.dumps(values, sort_keys=True)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def object_name(tenant: str, moment: datetime) -> str:
    return f"{tenant}/{tenant}-{moment.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}{SUFFIX}"


class Payload:
    """A read()-able stream: the roles frame, then pg_dump's stdout.

    A reader thread keeps pg_dump's pipe drained into a small bounded queue (in memory), so
    pg_dump keeps dumping while this process encrypts and ships a frame."""

    CHUNK = 1 << 20
    DEPTH = 16

    def __init__(self, roles_sql: bytes, dump: IO[bytes]) -> None:
        self._head = MAGIC + struct.pack(">Q", len(roles_sql)) + roles_sql
        self._dump = dump
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(self.DEPTH)
        self._stop = threading.Event()
        self._buf = b""
        self._eof = False
        self._thread = threading.Thread(target=self._pump, name="pg_dump-reader", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        item: bytes | BaseException
        while not self._stop.is_set():
            try:
                item = self._dump.read(self.CHUNK) or b""
            except (OSError, ValueError) as exc:
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def _next(self) -> bytes:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise DumpFailed(f"reading pg_dump's output failed: {item}")
        if not item:
            self._eof = True
        return item

    def read(self, size: int = -1) -> bytes:
        if self._head:
            n = len(self._head) if size < 0 else size
            chunk, self._head = self._head[:n], self._head[n:]
            return chunk
        while not self._eof and (size < 0 or len(self._buf) < size):
            self._buf += self._next()
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def close(self) -> None:
        self._stop.set()


def _run(argv: list[str], what: str) -> bytes:
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        raise DumpFailed(f"{what} failed: {last_line(proc.stderr)}")
    return proc.stdout


def last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return (lines[-1] if lines else "(no output)")[:300]


def encrypted_dump(
    conninfo: str,
    public_pem: bytes,
    *,
    tenant: str,
    bindir: Path,
    compress: int | None = None,
    frame_length: int = FRAME_LENGTH,
) -> Iterator[bytes]:
    """Yield the encrypted backup of the database `conninfo` names, chunk by chunk.

    Raises DumpFailed (after the last chunk) when pg_dump does not exit cleanly, so a caller
    that commits only after exhausting this generator never keeps a truncated dump."""
    from aws_encryption_sdk.identifiers import Algorithm

    roles = _run(
        [str(bindir / "pg_dumpall"), "--roles-only", "--no-role-passwords", "-d", conninfo],
        "pg_dumpall --roles-only",
    )
    argv = [
        str(bindir / "pg_dump"),
        "--format=custom",
        "--no-password",
        # Period keys travel as separate objects that retention can delete (retention.py).
        "--exclude-table-data=public.period_keys",
        "--dbname",
        conninfo,
    ]
    if compress is not None:
        argv.append(f"--compress={compress}")
    with tempfile.TemporaryFile() as errors:  # pg_dump's messages only, never data
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, bufsize=0)
        assert proc.stdout is not None
        with contextlib.suppress(OSError):  # a larger pipe: fewer stalls of pg_dump
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        payload = Payload(roles, proc.stdout)
        try:
            with esdk_client().stream(
                mode="e",
                source=payload,
                key_provider=master_key(public_pem, private=False, kid=key_id(public_pem)),
                algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
                frame_length=frame_length,
                encryption_context={"paitho": "tenant-backup", "tenant": tenant},
            ) as encryptor:
                yield from encryptor
            code = proc.wait()
        finally:
            payload.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if code != 0:
            errors.seek(0)
            raise DumpFailed(f"pg_dump exited with {code}: {last_line(errors.read())}")


@dataclass
class BackupJob:
    """One backup of one tenant to one destination. Collaborators are injected."""

    tenant: str
    conninfo: str
    public_pem: bytes
    bindir: Path
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    compress: int | None = None
    frame_length: int = FRAME_LENGTH
    sweep_older_than: timedelta = timedelta(hours=6)

    def run_once(self, destination: Destination) -> BackupResult:
        """Dump, encrypt, store, verify. Raises on failure (nothing is left stored)."""
        started = self.clock()
        name = object_name(self.tenant, started)
        swept = destination.sweep_incomplete(self.sweep_older_than)
        if swept:
            log.info("tenant=%s removed %d interrupted backup leftovers", self.tenant, swept)
        from paitho_tenant.retention import sync_period_keys

        sync_period_keys(self.conninfo, destination, self.tenant, self.public_pem)
        writer = destination.writer(name)
        digest, size = hashlib.sha256(), 0
        try:
            for chunk in encrypted_dump(
                self.conninfo,
                self.public_pem,
                tenant=self.tenant,
                bindir=self.bindir,
                compress=self.compress,
                frame_length=self.frame_length,
            ):
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
            writer.commit(size, digest.hexdigest())
        except BaseException:
            writer.abort()
            raise
        # Keys of periods that began while dumping (the dump may reference them).
        sync_period_keys(self.conninfo, destination, self.tenant, self.public_pem)
        return BackupResult(
            tenant=self.tenant,
            started_at=iso(started),
            finished_at=iso(self.clock()),
            destination_kind=destination.kind,
            outcome="succeeded",
            size=size,
            sha256=digest.hexdigest(),
            object_name=name,
        )

    def run(
        self,
        connect: Callable[[], AbstractContextManager[Destination]],
        kind: str,
        attempts: int = 3,
        backoff_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> BackupResult:
        """Connect and run_once, retrying with exponential backoff while the destination is
        unreachable. Returns a failed result carrying the reason instead of raising."""
        started = self.clock()
        last: BackupError | None = None
        attempt = 0
        for attempt in range(1, attempts + 1):
            try:
                with connect() as destination:
                    result = self.run_once(destination)
                return replace(result, attempts=attempt)
            except DestinationUnavailable as exc:
                log.warning(
                    "tenant=%s backup attempt %d/%d: %s", self.tenant, attempt, attempts, exc
                )
                last = exc
                if attempt < attempts:
                    sleep(backoff_s * 2 ** (attempt - 1))
            except BackupError as exc:
                last = exc
                break
        assert last is not None
        return BackupResult(
            tenant=self.tenant,
            started_at=iso(started),
            finished_at=iso(self.clock()),
            destination_kind=kind,
            outcome="failed",
            error=type(last).__name__,
            reason=last.message,
            attempts=attempt,
        )


RESTORE_INSTRUCTIONS = """\
# Restoring this Paitho tenant

This archive holds everything needed to run your tenant anywhere, without Paitho:

- `backup/{name}`: your database, encrypted to YOUR RSA public key (AWS Encryption SDK
  message; Raw RSA OAEP-SHA256 wrapping, AES-256-GCM frames). Only your private key opens it.
- `backup/period-keys/`: the keys of your LLM stage-run logs younger than 90 days, each
  encrypted the same way (older ones were destroyed on purpose: those logs stay unreadable).
- `IMAGE`: the tenant image reference this backup was made with ({image}).
- `MANIFEST.json`: size and SHA-256 of the encrypted dump, to check the copy is intact.

1. Check the dump: `sha256sum backup/{name}` equals `sha256` in MANIFEST.json.
2. Get the image: `docker pull {image}` (or `docker load < image.tar.gz` if you saved it with
   `docker save {image} | gzip > image.tar.gz`).
3. Restore into a new data directory (runs offline; nothing talks to Paitho):
   `paitho-tenant restore --from file://$PWD/backup/{name} --private-key my-backup-key.pem
   --data-dir ./pgdata` (inside the image: mount this directory and your key, then run the same
   command with `docker run --rm -v $PWD:/work {image} paitho-tenant restore ...`).
4. Start the tenant on that data directory and unlock it with your passphrase.
"""


def export_bundle(
    source: IO[bytes],
    name: str,
    image: str,
    out: Path,
    key_objects: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write one tar archive: the encrypted dump, the escrowed period keys (each encrypted to
    the customer's key), the image reference and restore instructions.

    Only ciphertext is copied; the manifest carries sizes and SHA-256, never content or key."""
    import io
    import tarfile

    base = Path(name).name
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = key_objects or {}
    with tempfile.TemporaryFile(dir=out.parent) as spool:
        digest, size = hashlib.sha256(), 0
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            spool.write(chunk)
        spool.seek(0)
        manifest = {
            "object": base,
            "size": size,
            "sha256": digest.hexdigest(),
            "image": image,
            "period_keys": sorted(keys),
        }
        partial = out.with_name(f".{out.name}.partial")
        stamp = int(time.time())
        with tarfile.open(partial, "w") as tar:

            def add_bytes(arcname: str, data: bytes, mode: int = 0o644) -> None:
                info = tarfile.TarInfo(arcname)
                info.size, info.mode, info.mtime = len(data), mode, stamp
                tar.addfile(info, io.BytesIO(data))

            info = tarfile.TarInfo(f"backup/{base}")
            info.size, info.mode, info.mtime = size, 0o600, stamp
            tar.addfile(info, spool)
            for key_name, blob in sorted(keys.items()):
                add_bytes(f"backup/period-keys/{key_name}", blob, 0o600)
            add_bytes("IMAGE", (image + "\n").encode())
            add_bytes("MANIFEST.json", (json.dumps(manifest, indent=2) + "\n").encode())
            add_bytes("RESTORE.md", RESTORE_INSTRUCTIONS.format(name=base, image=image).encode())
        partial.replace(out)
    return manifest
