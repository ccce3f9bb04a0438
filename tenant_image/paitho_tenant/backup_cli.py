"""`paitho-tenant backup | retention | restore | export-bundle`: the tenant CLI's backup commands.

The lead wires them into cli.py with `register(subparsers)` and dispatches with `run(args)`;
`python -m paitho_tenant.backup_cli ...` runs them standalone.

    backup --to URL --recipient KEY     dump, encrypt to the public key, store, verify; prints
                                        one JSON line of metadata (never content or key)
    retention [--to URL --keep-backups-days N]   shred stage-run periods older than 90 days
                                        (and their escrowed keys), delete old backups
    restore --from URL --private-key FILE --data-dir DIR
    export-bundle --from URL --image REF --out FILE

In a scheduled run (Step Functions), the environment carries PAITHO_TASK_TOKEN and the result
is sent back with SendTaskSuccess (outcome succeeded or failed); that token is a callback
handle, not a secret of the customer. The database comes from --db or PAITHO_TENANT_DB; the
tenant slug from --tenant or PAITHO_TENANT_SLUG; destination and recipient may also come from
PAITHO_BACKUP_TO and PAITHO_BACKUP_RECIPIENT (both public: a URL and a public key).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paitho_tenant.destinations import BackupError, open_destination, parse_url, split_object_url

log = logging.getLogger(__name__)

TOKEN_ENV = "PAITHO_TASK_TOKEN"  # noqa: S105 (the name of a variable, not a secret)


def register(subparsers: Any) -> None:
    """Add the backup, restore and export-bundle subcommands to an argparse subparsers."""
    backup = subparsers.add_parser("backup", help="encrypted backup to a destination URL")
    backup.add_argument("--to", dest="to", default=os.environ.get("PAITHO_BACKUP_TO"))
    backup.add_argument("--recipient", default=os.environ.get("PAITHO_BACKUP_RECIPIENT"))
    backup.add_argument("--db", default=os.environ.get("PAITHO_TENANT_DB"))
    backup.add_argument("--tenant", default=os.environ.get("PAITHO_TENANT_SLUG"))
    backup.add_argument("--attempts", type=int, default=3)
    backup.add_argument("--backoff", type=float, default=2.0, help="seconds, doubled per retry")
    backup.add_argument("--compress", type=int, default=None, help="pg_dump --compress level")

    restore = subparsers.add_parser("restore", help="restore a backup into a NEW cluster")
    restore.add_argument("--from", dest="source", required=True, help="the backup object's URL")
    restore.add_argument("--private-key", required=True, type=Path)
    restore.add_argument("--data-dir", required=True, type=Path)
    restore.add_argument(
        "--private-key-passphrase-file",
        type=Path,
        default=None,
        help="file holding the private key's passphrase, if the key is encrypted",
    )

    retention = subparsers.add_parser("retention", help="apply retention (no passphrase needed)")
    retention.add_argument("--db", default=os.environ.get("PAITHO_TENANT_DB"))
    retention.add_argument("--tenant", default=os.environ.get("PAITHO_TENANT_SLUG"))
    retention.add_argument("--to", dest="to", default=os.environ.get("PAITHO_BACKUP_TO"))
    retention.add_argument(
        "--keep-backups-days",
        type=int,
        default=int(os.environ.get("PAITHO_BACKUP_KEEP_DAYS", "0")) or None,
        help="delete backups older than this at the destination (the newest always stays)",
    )
    retention.add_argument("--as-of", default=None, help="ISO time to apply retention as of")

    bundle = subparsers.add_parser("export-bundle", help="one archive to walk away with")
    bundle.add_argument("--from", dest="source", required=True, help="the backup object's URL")
    bundle.add_argument("--image", required=True, help="the tenant image reference")
    bundle.add_argument("--out", required=True, type=Path)


def _report_to_step_functions(token: str, result_json: str) -> None:
    """Every finished run answers SendTaskSuccess with its metadata-only result (outcome
    succeeded or failed, with the reason); the state machine records it either way."""
    import boto3

    boto3.client("stepfunctions").send_task_success(taskToken=token, output=result_json)


def cmd_backup(args: argparse.Namespace, report: Callable[[str, str], None]) -> int:
    from chalicelib.launchers.pgcluster import find_bindir
    from paitho_tenant.backup import BackupJob, BackupResult, load_public_key, now_iso

    missing = [
        name
        for name, value in (
            ("--to", args.to),
            ("--recipient", args.recipient),
            ("--db", args.db),
            ("--tenant", args.tenant),
        )
        if not value
    ]
    if missing:
        print(f"paitho-tenant backup: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        kind = parse_url(args.to).kind
        job = BackupJob(
            tenant=args.tenant,
            conninfo=args.db,
            public_pem=load_public_key(args.recipient),
            bindir=find_bindir(),
            compress=args.compress,
        )
        result = job.run(lambda: open_destination(args.to), kind, args.attempts, args.backoff)
    except BackupError as exc:  # the request itself cannot work: report it, do not retry
        stamp = now_iso()
        result = BackupResult(
            tenant=args.tenant,
            started_at=stamp,
            finished_at=stamp,
            destination_kind=args.to.split(":", 1)[0],
            outcome="failed",
            error=type(exc).__name__,
            reason=exc.message,
        )
    line = result.to_json()
    print(line, flush=True)
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    if token:
        report(token, line)
    return 0 if result.outcome == "succeeded" else 1


def cmd_restore(args: argparse.Namespace) -> int:
    from chalicelib.launchers.pgcluster import find_bindir
    from paitho_tenant.restore import load_private_key, public_of, restore_into_new_cluster
    from paitho_tenant.retention import restore_period_keys

    passphrase = (
        args.private_key_passphrase_file.read_bytes().strip()
        if args.private_key_passphrase_file
        else None
    )
    private_pem = load_private_key(args.private_key, passphrase)
    base, name = split_object_url(args.source)
    root, tenant = split_object_url(base)  # dumps live under {root}/{tenant}/

    with open_destination(root) as destination:

        def put_back_period_keys(conninfo_for: Callable[[str], str], dbs: tuple[str, ...]) -> None:
            public_pem = public_of(private_pem)
            for db in dbs:
                restore_period_keys(destination, tenant, private_pem, public_pem, conninfo_for(db))

        with destination.reader(f"{tenant}/{name}") as source:
            result = restore_into_new_cluster(
                source, private_pem, args.data_dir, find_bindir(), after=put_back_period_keys
            )
    print(json.dumps({"data_dir": str(result.data_dir), "databases": list(result.databases)}))
    return 0


def cmd_retention(args: argparse.Namespace, report: Callable[[str, str], None]) -> int:
    from datetime import UTC, datetime

    from paitho_tenant.backup import now_iso
    from paitho_tenant.db import owner_conninfo
    from paitho_tenant.retention import RetentionResult, apply

    if not args.db or not args.tenant:
        print("paitho-tenant retention: missing --db or --tenant", file=sys.stderr)
        return 2
    as_of = datetime.fromisoformat(args.as_of) if args.as_of else datetime.now(UTC)
    try:
        if args.to:
            with open_destination(args.to) as destination:
                result = apply(
                    args.tenant, owner_conninfo(args.db), destination, as_of, args.keep_backups_days
                )
        else:
            result = apply(args.tenant, owner_conninfo(args.db), None, as_of)
    except BackupError as exc:
        stamp = now_iso()
        result = RetentionResult(
            tenant=args.tenant,
            started_at=stamp,
            finished_at=stamp,
            outcome="failed",
            error=type(exc).__name__,
            reason=exc.message,
        )
    line = result.to_json()
    print(line, flush=True)
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    if token:
        report(token, line)
    return 0 if result.outcome == "succeeded" else 1


def cmd_export_bundle(args: argparse.Namespace) -> int:
    from paitho_tenant.backup import export_bundle
    from paitho_tenant.retention import KEY_DIR

    base, name = split_object_url(args.source)
    root, tenant = split_object_url(base)
    with open_destination(root) as destination:
        keys: dict[str, bytes] = {}
        for obj in destination.list(f"{tenant}/{KEY_DIR}"):
            with destination.reader(obj.name) as fh:
                keys[obj.name.rsplit("/", 1)[-1]] = fh.read()
        with destination.reader(f"{tenant}/{name}") as source:
            export_bundle(source, name, args.image, args.out, keys)
    print(json.dumps({"bundle": str(args.out)}))
    return 0


def run(args: argparse.Namespace, report: Callable[[str, str], None] | None = None) -> int:
    """Dispatch a parsed backup/restore/export-bundle command; return the exit code."""
    try:
        if args.command == "backup":
            return cmd_backup(args, report or _report_to_step_functions)
        if args.command == "retention":
            return cmd_retention(args, report or _report_to_step_functions)
        if args.command == "restore":
            return cmd_restore(args)
        if args.command == "export-bundle":
            return cmd_export_bundle(args)
    except BackupError as exc:
        print(f"paitho-tenant {args.command}: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:  # the outermost handler: log it, and never leave a token waiting
        log.exception("paitho-tenant %s failed", args.command)
        token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
        if token and args.command in ("backup", "retention"):
            from paitho_tenant.backup import now_iso

            failed = {
                "tenant": getattr(args, "tenant", None) or "",
                "started_at": now_iso(),
                "finished_at": now_iso(),
                "outcome": "failed",
                "error": type(exc).__name__,
                "reason": f"unexpected {type(exc).__name__}; details are in the tenant's log",
            }
            (report or _report_to_step_functions)(token, json.dumps(failed))
        return 1
    print(f"paitho-tenant: unknown command {args.command!r}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="paitho-tenant")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
