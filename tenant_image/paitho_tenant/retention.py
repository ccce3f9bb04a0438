"""Retention inside the tenant, sealed or not (no passphrase needed), and the period-key escrow
that keeps crypto-shredding true for backups too.

Stage runs (prompt, response) are encrypted under a key per ISO-week period (stage_runs.py).
After 90 days the period's key is destroyed and its prompts and responses are cleared; token
counts, model and timing stay. For that to hold in *backups* as well, the database dump never
contains `period_keys` rows (pg_dump --exclude-table-data). Each period key travels as its own
small object next to the dumps, `{tenant}/period-keys/{period}.aesdk`, encrypted to the same
customer public key; restore puts back the keys whose objects still exist, and retention
deletes a period's object when it destroys the key. An older backup therefore restores with
shredded periods unreadable, even with the passphrase and the private key.

Also here: backups older than the customer's chosen retention are deleted at the destination
(the newest one is always kept). Audit-log segments whose newest row is more than 12 months old
are pruned whole (audit.prune: checkpointed monthly, pruned by the owner's SECURITY DEFINER
function, the pruning itself an audit entry; the chain still verifies from the anchor).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from paitho_tenant.backup import SUFFIX, esdk_client, iso, key_id, master_key
from paitho_tenant.destinations import BackupCorrupted, Destination, DumpFailed

log = logging.getLogger(__name__)

STAGE_RUN_DAYS = 90
PERIOD_DAYS = 7
KEY_DIR = "period-keys"
KEY_SUFFIX = ".aesdk"
RESULT_FIELDS = (
    "tenant",
    "started_at",
    "finished_at",
    "outcome",
    "stage_runs_shredded",
    "audit_segments_pruned",
    "backups_deleted",
    "error",
    "reason",
)


def _has_period_keys(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('public.period_keys') IS NOT NULL").fetchone()
    return bool(row and row[0])


def key_object_name(tenant: str, period: date) -> str:
    return f"{tenant}/{KEY_DIR}/{period.isoformat()}{KEY_SUFFIX}"


def _stored_periods(destination: Destination, tenant: str) -> dict[date, str]:
    found = {}
    for obj in destination.list(f"{tenant}/{KEY_DIR}"):
        stem = obj.name.rsplit("/", 1)[-1].removesuffix(KEY_SUFFIX)
        try:
            found[date.fromisoformat(stem)] = obj.name
        except ValueError:
            continue
    return found


def sync_period_keys(
    conninfo: str, destination: Destination, tenant: str, public_pem: bytes
) -> int:
    """Store every period key not yet at the destination (wrapped, then encrypted to the
    customer's public key). Returns how many were written."""
    import hashlib

    from aws_encryption_sdk.identifiers import Algorithm

    try:
        with psycopg.connect(conninfo) as conn:
            if not _has_period_keys(conn):
                return 0
            rows = conn.execute(
                "SELECT period_start, wrapped_key, created_at FROM period_keys"
            ).fetchall()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
        raise DumpFailed(f"cannot read the tenant database: {first}") from exc
    stored = _stored_periods(destination, tenant)
    written = 0
    provider = master_key(public_pem, private=False, kid=key_id(public_pem))
    for period, wrapped, created_at in rows:
        if period in stored:
            continue
        body = json.dumps(
            {
                "period_start": period.isoformat(),
                "wrapped_key": bytes(wrapped).hex(),
                "created_at": created_at.isoformat(),
            }
        )
        blob, _ = esdk_client().encrypt(
            source=body.encode(),
            key_provider=provider,
            algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
            encryption_context={"paitho": "tenant-period-key", "tenant": tenant},
        )
        writer = destination.writer(key_object_name(tenant, period))
        try:
            writer.write(blob)
            writer.commit(len(blob), hashlib.sha256(blob).hexdigest())
        except BaseException:
            writer.abort()
            raise
        written += 1
    return written


def restore_period_keys(
    destination: Destination, tenant: str, private_pem: bytes, public_pem: bytes, conninfo: str
) -> int:
    """Put back the period keys whose objects still exist; returns how many."""
    from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError

    provider = master_key(private_pem, private=True, kid=key_id(public_pem))
    restored = 0
    with psycopg.connect(conninfo) as conn:
        if not _has_period_keys(conn):
            return 0
        for _period, name in sorted(_stored_periods(destination, tenant).items()):
            with destination.reader(name) as fh:
                blob = fh.read()
            try:
                body, header = esdk_client().decrypt(source=blob, key_provider=provider)
            except AWSEncryptionSDKClientError as exc:
                raise BackupCorrupted(f"period key object {name} cannot be decrypted") from exc
            if header.encryption_context.get("paitho") != "tenant-period-key":
                raise BackupCorrupted(f"{name} is not a Paitho period key")
            fields = json.loads(body)
            period = date.fromisoformat(fields["period_start"])
            wrapped = bytes.fromhex(fields["wrapped_key"])
            created = datetime.fromisoformat(fields["created_at"])
            with conn.transaction():
                conn.execute(
                    "INSERT INTO period_keys (period_start, wrapped_key, created_at)"
                    " VALUES (%s, %s, %s) ON CONFLICT (period_start) DO NOTHING",
                    (period, wrapped, created),
                )
            restored += 1
    return restored


@dataclass(frozen=True)
class RetentionResult:
    tenant: str
    started_at: str
    finished_at: str
    outcome: str
    stage_runs_shredded: int = 0
    periods_destroyed: int = 0
    audit_segments_pruned: int = 0
    backups_deleted: int = 0
    error: str | None = None
    reason: str | None = None

    def to_json(self) -> str:
        values = {k: v for k, v in asdict(self).items() if k in RESULT_FIELDS and v is not None}
        return json.dumps(values, sort_keys=True)


def shred_stage_runs(
    owner_conninfo: str, now: datetime, days: int = STAGE_RUN_DAYS
) -> tuple[int, list[date]]:
    """Destroy the keys of periods that ended more than `days` ago and clear those stage runs'
    prompt and response; audit it (counts only). Runs as the schema owner: no data key."""
    from paitho_tenant import audit

    cutoff = (now - timedelta(days=days)).date()
    last_start = cutoff - timedelta(days=PERIOD_DAYS)  # the whole week lies before the cutoff
    with psycopg.connect(owner_conninfo) as conn, conn.transaction():
        if not _has_period_keys(conn):
            return 0, []
        periods = [
            r[0]
            for r in conn.execute(
                "DELETE FROM period_keys WHERE period_start <= %s RETURNING period_start",
                (last_start,),
            ).fetchall()
        ]
        cleared = conn.execute(
            "UPDATE stage_runs SET prompt = NULL, response = NULL WHERE period_start <= %s"
            " AND (prompt IS NOT NULL OR response IS NOT NULL)",
            (last_start,),
        ).rowcount
        if periods or cleared:
            audit.record(
                conn,
                "retention",
                "retention.stage_runs_shredded",
                {"periods": len(periods), "stage_runs": cleared, "older_than_days": days},
            )
    return cleared, sorted(periods)


def prune_audit_segments(owner_conninfo: str, now: datetime) -> int:
    """Checkpoint finished months and prune audit segments older than 12 months as of `now`
    (the database never prunes by a clock later than its own). Returns the segments pruned."""
    from paitho_tenant import audit

    with psycopg.connect(owner_conninfo) as conn, conn.transaction():
        return audit.prune(conn, now, actor="retention")


def delete_old_backups(destination: Destination, tenant: str, now: datetime, keep_days: int) -> int:
    """Delete this tenant's dumps older than `keep_days` (never the newest one)."""
    dumps = sorted(
        (o for o in destination.list(tenant) if o.name.endswith(SUFFIX)),
        key=lambda o: o.modified,
    )
    cutoff = now - timedelta(days=keep_days)
    deleted = 0
    for obj in dumps[:-1]:
        if obj.modified < cutoff:
            destination.delete(obj.name)
            deleted += 1
    return deleted


def apply(
    tenant: str,
    owner_conninfo: str,
    destination: Destination | None,
    now: datetime,
    keep_backup_days: int | None = None,
) -> RetentionResult:
    """The nightly retention: shred expired stage-run periods (and their escrowed keys at the
    destination), prune audit segments older than 12 months, then delete backups beyond the
    customer's retention."""
    started = datetime.now(UTC)
    cleared, periods = shred_stage_runs(owner_conninfo, now)
    segments = prune_audit_segments(owner_conninfo, now)
    if destination is not None:
        for period in periods:
            destination.delete(key_object_name(tenant, period))
    deleted = 0
    if destination is not None and keep_backup_days is not None:
        deleted = delete_old_backups(destination, tenant, now, keep_backup_days)
    log.info(
        "tenant=%s retention: %d stage runs cleared, %d periods destroyed,"
        " %d audit segments pruned, %d backups deleted",
        tenant,
        cleared,
        len(periods),
        segments,
        deleted,
    )
    return RetentionResult(
        tenant=tenant,
        started_at=iso(started),
        finished_at=iso(datetime.now(UTC)),
        outcome="succeeded",
        stage_runs_shredded=cleared,
        periods_destroyed=len(periods),
        audit_segments_pruned=segments,
        backups_deleted=deleted,
    )
