"""Where encrypted backups go: an S3 bucket (any endpoint), an SFTP path, a local directory.

Every destination stores opaque ciphertext under a name and only makes it visible once the
stored bytes verify (size and SHA-256). A writer that is aborted, or whose process dies, leaves
no object: S3 keeps an incomplete multipart upload that is aborted (and swept later), a local
directory uses an unnamed O_TMPFILE that vanishes with the process, SFTP writes a dot-named
partial file that listings ignore and the next backup sweeps.

The backup exception tree (all subclasses of the tenant's TenantError):

    BackupError (502)
    ├── InvalidBackupRequest (400)   a URL, key or argument that cannot work; says what to fix
    ├── DestinationUnavailable (503) could not reach the destination (retryable)
    ├── VerificationFailed (502)     the stored object does not match what was sent
    ├── DumpFailed (500)             pg_dump or pg_restore failed
    └── BackupCorrupted (422)        the object cannot be decrypted: damaged or not for this key

Messages carry names, sizes and reasons; never content and never a key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from paitho_tenant.errors import TenantError

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
S3_PART_SIZE = 16 << 20  # S3 requires >= 5 MiB for every part but the last
PARTIAL_PREFIX = ".partial-"


class BackupError(TenantError):
    status = 502
    code = "backup_failed"


class InvalidBackupRequest(BackupError):
    status = 400
    code = "invalid_backup_request"


class DestinationUnavailable(BackupError):
    status = 503
    code = "destination_unavailable"


class VerificationFailed(BackupError):
    status = 502
    code = "verification_failed"


class DumpFailed(BackupError):
    status = 500
    code = "dump_failed"


class BackupCorrupted(BackupError):
    status = 422
    code = "backup_corrupted"


@dataclass(frozen=True)
class StoredObject:
    """One stored backup: its name under the destination root, size and modification time."""

    name: str
    size: int
    modified: datetime


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self, size: int, sha256: str) -> StoredObject:
        """Make the object visible once its stored size and SHA-256 (hex) verify."""
        ...

    def abort(self) -> None:
        """Discard everything written so far. Idempotent."""
        ...


class Destination(Protocol):
    kind: str

    def writer(self, name: str) -> Writer: ...

    def reader(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def list(self, prefix: str = "") -> list[StoredObject]: ...

    def delete(self, name: str) -> None: ...

    def sweep_incomplete(self, older_than: timedelta) -> int:
        """Remove leftovers of interrupted backups older than `older_than`; return a count."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


def _check_name(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or any(p in ("..", ".") for p in parts):
        raise InvalidBackupRequest(f"invalid backup object name {name!r}")
    return name


def _hash_stream(read: Callable[[int], bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := read(READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _verify(name: str, got: tuple[int, str], size: int, sha256: str) -> None:
    if got != (size, sha256):
        raise VerificationFailed(
            f"stored object {name} does not verify: {got[0]} bytes stored, {size} sent "
            "(or the SHA-256 differs); it was not kept"
        )


# -- file:// -----------------------------------------------------------------------------------
class _FileWriter:
    def __init__(self, root: Path, name: str) -> None:
        self._final = root / name
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._partial: Path | None = None
        try:  # unnamed until committed: a killed process leaves nothing behind
            self._fd = os.open(self._final.parent, os.O_TMPFILE | os.O_RDWR, 0o600)
        except (OSError, AttributeError):
            self._partial = self._final.parent / f"{PARTIAL_PREFIX}{secrets.token_hex(6)}"
            self._fd = os.open(self._partial, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        self._open = True

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def commit(self, size: int, sha256: str) -> StoredObject:
        try:
            os.fsync(self._fd)
            os.lseek(self._fd, 0, os.SEEK_SET)
            _verify(self._final.name, _hash_stream(lambda n: os.read(self._fd, n)), size, sha256)
            dir_fd = os.open(self._final.parent, os.O_RDONLY)
            try:
                if self._partial is None:
                    # An explicit dir fd makes Python use linkat(AT_SYMLINK_FOLLOW), which is
                    # how an O_TMPFILE gets its name (open(2)).
                    os.link(f"/proc/self/fd/{self._fd}", self._final, src_dir_fd=dir_fd)
                else:
                    os.rename(self._partial, self._final)
                    self._partial = None
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise DestinationUnavailable(f"could not store {self._final}: {exc.strerror}") from exc
        except BackupError:
            self.abort()
            raise
        self._close()
        st = self._final.stat()
        return StoredObject(
            str(self._final.name), st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)
        )

    def _close(self) -> None:
        if self._open:
            os.close(self._fd)
            self._open = False

    def abort(self) -> None:
        self._close()
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)
            self._partial = None


class FileDestination:
    """A directory (a mounted NAS): temp file in the same directory, fsync, link/rename."""

    kind = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    def writer(self, name: str) -> Writer:
        try:
            return _FileWriter(self.root, _check_name(name))
        except OSError as exc:
            raise DestinationUnavailable(f"cannot write under {self.root}: {exc.strerror}") from exc

    @contextlib.contextmanager
    def reader(self, name: str) -> Iterator[BinaryIO]:
        path = self.root / _check_name(name)
        try:
            fh = path.open("rb")
        except FileNotFoundError as exc:
            raise InvalidBackupRequest(f"no backup object at {path}") from exc
        with fh:
            yield fh

    def list(self, prefix: str = "") -> list[StoredObject]:
        found = []
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(PARTIAL_PREFIX):
                st = path.stat()
                name = str(path.relative_to(self.root))
                found.append(
                    StoredObject(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
                )
        return found

    def delete(self, name: str) -> None:
        (self.root / _check_name(name)).unlink(missing_ok=True)

    def sweep_incomplete(self, older_than: timedelta) -> int:
        cutoff = (_now() - older_than).timestamp()
        count = 0
        for path in self.root.rglob(f"{PARTIAL_PREFIX}*") if self.root.exists() else []:
            if path.stat().st_mtime <= cutoff:
                path.unlink(missing_ok=True)
                count += 1
        return count


# -- s3:// -------------------------------------------------------------------------------------
def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class _S3Writer:
    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self._s3, self._bucket, self._key, self._part_size = client, bucket, key, part_size
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._digests: list[bytes] = []
        resp = _s3_call(
            lambda: client.create_multipart_upload(
                Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256"
            ),
            f"s3://{bucket}/{key}",
        )
        self._upload_id: str | None = resp["UploadId"]

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._upload(part)

    def _upload(self, part: bytes) -> None:
        number = len(self._parts) + 1
        digest = hashlib.sha256(part).digest()
        checksum = base64.b64encode(digest).decode()
        resp = self._call(
            lambda: self._s3.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
        )
        self._digests.append(digest)
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": checksum})

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return _s3_call(fn, f"s3://{self._bucket}/{self._key}")
        except BackupError:
            self.abort()
            raise

    def commit(self, size: int, sha256: str) -> StoredObject:
        if self._buffer or not self._parts:
            self._upload(bytes(self._buffer))
            self._buffer.clear()
        self._call(
            lambda: self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        )
        self._upload_id = None
        composite = _b64_sha256(b"".join(self._digests)) + f"-{len(self._parts)}"
        try:
            head = _s3_call(
                lambda: self._s3.head_object(
                    Bucket=self._bucket, Key=self._key, ChecksumMode="ENABLED"
                ),
                self._key,
            )
            stored = head.get("ChecksumSHA256")
            if stored is not None and head["ContentLength"] == size and stored == composite:
                got = (size, sha256)  # every part's SHA-256 was checked by S3 on upload
            else:  # no (or a different kind of) checksum from this endpoint: read it back
                body = self._s3.get_object(Bucket=self._bucket, Key=self._key)["Body"]
                got = _hash_stream(body.read)
            _verify(self._key, got, size, sha256)
        except BackupError:
            self._s3.delete_object(Bucket=self._bucket, Key=self._key)
            raise
        return StoredObject(self._key, size, head["LastModified"])

    def abort(self) -> None:
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            with contextlib.suppress(Exception):  # best effort; sweep_incomplete retries later
                self._s3.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=upload_id
                )


def _s3_call(fn: Callable[[], Any], where: str) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError"):
            raise DestinationUnavailable(f"{where}: the S3 endpoint answered {code}") from exc
        raise BackupError(f"{where}: S3 refused the request ({code})") from exc
    except BotoCoreError as exc:
        raise DestinationUnavailable(f"{where}: cannot reach the S3 endpoint ({exc})") from exc


class S3Destination:
    """A bucket and key prefix on any S3-compatible endpoint (AWS, Backblaze B2, MinIO)."""

    kind = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str, part_size: int = S3_PART_SIZE):
        self._s3, self.bucket, self.prefix, self._part_size = client, bucket, prefix, part_size

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{_check_name(name)}" if self.prefix else _check_name(name)

    def writer(self, name: str) -> Writer:
        return _S3Writer(self._s3, self.bucket, self._key(name), self._part_size)

    @contextlib.contextmanager
    def reader(self, name: str) -> Iterator[BinaryIO]:
        key = self._key(name)
        resp = _s3_call(lambda: self._s3.get_object(Bucket=self.bucket, Key=key), key)
        body = resp["Body"]
        try:
            yield body
        finally:
            body.close()

    def list(self, prefix: str = "") -> list[StoredObject]:
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(f"{self.prefix}/") if self.prefix else 0
        found: list[StoredObject] = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
        for page in _s3_call(lambda: list(pages), full):
            for obj in page.get("Contents", []):
                found.append(StoredObject(obj["Key"][strip:], obj["Size"], obj["LastModified"]))
        return found

    def delete(self, name: str) -> None:
        key = self._key(name)
        _s3_call(lambda: self._s3.delete_object(Bucket=self.bucket, Key=key), key)

    def sweep_incomplete(self, older_than: timedelta) -> int:
        prefix = f"{self.prefix}/" if self.prefix else ""
        resp = _s3_call(
            lambda: self._s3.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix), prefix
        )
        cutoff = _now() - older_than
        count = 0
        for upload in resp.get("Uploads", []):
            if upload["Initiated"] <= cutoff:
                self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                count += 1
        return count


# -- sftp:// -----------------------------------------------------------------------------------
class _SftpWriter:
    def __init__(self, sftp: Any, final: str) -> None:
        self._sftp, self._final = sftp, final
        directory = str(PurePosixPath(final).parent)
        self._partial: str | None = f"{directory}/{PARTIAL_PREFIX}{secrets.token_hex(6)}"
        self._fh = sftp.open(self._partial, "wb")
        self._fh.set_pipelined(True)

    def write(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except (OSError, EOFError) as exc:
            self.abort()
            raise DestinationUnavailable(f"SFTP write to {self._final} failed: {exc}") from exc

    def commit(self, size: int, sha256: str) -> StoredObject:
        assert self._partial is not None
        try:
            self._fh.close()
            with self._sftp.open(self._partial, "rb") as fh:
                fh.prefetch()
                got = _hash_stream(fh.read)
            _verify(self._final, got, size, sha256)
            self._sftp.posix_rename(self._partial, self._final)
            self._partial = None
            st = self._sftp.stat(self._final)
        except (OSError, EOFError) as exc:
            self.abort()
            raise DestinationUnavailable(f"SFTP commit of {self._final} failed: {exc}") from exc
        except BackupError:
            self.abort()
            raise
        return StoredObject(self._final, int(st.st_size), datetime.fromtimestamp(st.st_mtime, UTC))

    def abort(self) -> None:
        if self._partial is not None:
            partial, self._partial = self._partial, None
            with contextlib.suppress(OSError, EOFError):
                self._fh.close()
                self._sftp.remove(partial)


class SftpDestination:
    """A directory on an SSH server (a NAS). Host keys are always verified (known_hosts)."""

    kind = "sftp"

    def __init__(self, sftp: Any, root: str) -> None:
        self._sftp, self.root = sftp, root.rstrip("/") or "/"

    def _path(self, name: str) -> str:
        return f"{self.root}/{_check_name(name)}"

    def _makedirs(self, directory: str) -> None:
        current = ""
        for part in PurePosixPath(directory).parts[1:]:
            current += "/" + part
            try:
                self._sftp.stat(current)
            except FileNotFoundError:
                self._sftp.mkdir(current, 0o700)

    def writer(self, name: str) -> Writer:
        path = self._path(name)
        try:
            self._makedirs(str(PurePosixPath(path).parent))
            return _SftpWriter(self._sftp, path)
        except (OSError, EOFError) as exc:
            raise DestinationUnavailable(f"cannot write {path} over SFTP: {exc}") from exc

    @contextlib.contextmanager
    def reader(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)
        try:
            fh = self._sftp.open(path, "rb")
        except FileNotFoundError as exc:
            raise InvalidBackupRequest(f"no backup object at {path}") from exc
        with fh:
            fh.prefetch()
            yield fh

    def _walk(self, directory: str) -> Iterator[tuple[str, Any]]:
        try:
            entries = self._sftp.listdir_attr(directory)
        except FileNotFoundError:
            return
        for entry in entries:
            path = f"{directory}/{entry.filename}"
            if stat.S_ISDIR(entry.st_mode or 0):
                yield from self._walk(path)
            else:
                yield path, entry

    def list(self, prefix: str = "") -> list[StoredObject]:
        start = self._path(prefix) if prefix else self.root
        return sorted(
            (
                StoredObject(
                    path[len(self.root) + 1 :],
                    int(e.st_size),
                    datetime.fromtimestamp(e.st_mtime, UTC),
                )
                for path, e in self._walk(start)
                if not PurePosixPath(path).name.startswith(PARTIAL_PREFIX)
            ),
            key=lambda o: o.name,
        )

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._sftp.remove(self._path(name))

    def sweep_incomplete(self, older_than: timedelta) -> int:
        cutoff = (_now() - older_than).timestamp()
        count = 0
        for path, entry in list(self._walk(self.root)):
            if PurePosixPath(path).name.startswith(PARTIAL_PREFIX) and entry.st_mtime <= cutoff:
                self._sftp.remove(path)
                count += 1
        return count


# -- URLs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DestinationUrl:
    """A parsed destination URL. Query options: s3 `endpoint_url`, `region`; sftp `key`
    (private key file for the SSH login) and `known_hosts`."""

    kind: str
    host: str
    path: str
    user: str | None = None
    port: int | None = None
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str) -> str | None:
        return dict(self.options).get(key)


def parse_url(url: str) -> DestinationUrl:
    parts = urlsplit(url)
    options = tuple(sorted((k, v[-1]) for k, v in parse_qs(parts.query).items()))
    path = unquote(parts.path)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise InvalidBackupRequest("a file URL needs an absolute path: file:///srv/backups")
        return DestinationUrl("file", "", path.rstrip("/") or "/", options=options)
    if parts.scheme == "s3":
        if not parts.hostname:
            raise InvalidBackupRequest("an S3 URL needs a bucket: s3://bucket/prefix")
        return DestinationUrl("s3", parts.hostname, path.strip("/"), options=options)
    if parts.scheme == "sftp":
        if not parts.hostname or not path.startswith("/"):
            raise InvalidBackupRequest(
                "an SFTP URL needs a host and an absolute path: sftp://user@nas:22/backups"
            )
        return DestinationUrl(
            "sftp", parts.hostname, path.rstrip("/") or "/", parts.username, parts.port, options
        )
    raise InvalidBackupRequest(
        f"unsupported destination scheme {parts.scheme!r}: use s3://, sftp:// or file://"
    )


def split_object_url(url: str) -> tuple[str, str]:
    """`s3://b/prefix/acme/x.pgdump.aesdk` -> (`s3://b/prefix/acme`, `x.pgdump.aesdk`)."""
    parts = urlsplit(url)
    head, _, name = parts.path.rpartition("/")
    if not name:
        raise InvalidBackupRequest(f"{url} names a directory, not a backup object")
    base = parts._replace(path=head or ("/" if parts.scheme != "s3" else "")).geturl()
    return base, name


@contextlib.contextmanager
def open_destination(url: str) -> Iterator[Destination]:
    """Build the destination a URL names (the composition root for backup and restore).

    S3 credentials come from boto3's usual chain (task role, environment, profile); the
    endpoint from `?endpoint_url=` or boto3's own AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL."""
    spec = parse_url(url)
    if spec.kind == "file":
        yield FileDestination(Path(spec.path))
    elif spec.kind == "s3":
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=spec.option("endpoint_url"),
            region_name=spec.option("region"),
            config=Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        yield S3Destination(client, spec.host, spec.path)
    else:
        with _sftp_session(spec) as sftp:
            yield SftpDestination(sftp, spec.path)


@contextlib.contextmanager
def _sftp_session(spec: DestinationUrl) -> Iterator[Any]:
    import paramiko

    client = paramiko.SSHClient()
    known_hosts = spec.option("known_hosts")
    try:
        if known_hosts:
            client.load_host_keys(known_hosts)
        else:
            client.load_system_host_keys()
    except OSError as exc:
        raise InvalidBackupRequest(f"cannot read the known_hosts file: {exc.strerror}") from exc
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = spec.option("key")
    try:
        client.connect(
            spec.host,
            port=spec.port or 22,
            username=spec.user,
            key_filename=key,
            look_for_keys=key is None,
            allow_agent=key is None,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
        )
        sftp = client.open_sftp()
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise InvalidBackupRequest(
            f"the host key of {spec.host} does not match known_hosts; refusing to connect"
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise InvalidBackupRequest(f"SSH login to {spec.host} was refused: {exc}") from exc
    except paramiko.SSHException as exc:
        client.close()
        if "known_hosts" in str(exc):  # RejectPolicy: an unknown host is a setup problem
            raise InvalidBackupRequest(
                f"{spec.host} is not in known_hosts; add its host key (ssh-keyscan) first"
            ) from exc
        raise DestinationUnavailable(f"SSH to {spec.host} failed: {exc}") from exc
    except OSError as exc:
        client.close()
        raise DestinationUnavailable(
            f"cannot reach {spec.host}:{spec.port or 22}: {exc.strerror or exc}"
        ) from exc
    try:
        yield sftp
    finally:
        sftp.close()
        client.close()
