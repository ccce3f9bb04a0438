"""`paitho-tenant`: the tenant's own command line.

    serve              run the app (applies pending migrations first; starts sealed)
    migrate            create roles, database, pgcrypto and schema (idempotent)
    init               set up the vault and the owner account from the terminal
    rotate-passphrase  rewrap the data key under a new passphrase
    audit-verify       walk the audit hash chain; name any edited, deleted or moved row
    import-leads       import a CSV with a progress bar
    export             write the export zip (every table decrypted, JSON + CSV, manifest)

Settings: `--db` or PAITHO_TENANT_DB (libpq conninfo of the cluster's superuser over its
socket). Passphrases are read from the terminal or, where offered, from a file you name;
never from an environment variable or a command-line argument.
"""

from __future__ import annotations

import argparse
import getpass
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

EXIT_USAGE = 2


def _conninfo(args: argparse.Namespace) -> str:
    value = args.db or os.environ.get("PAITHO_TENANT_DB")
    if not value:
        raise SystemExit("paitho-tenant: set PAITHO_TENANT_DB or pass --db (libpq conninfo)")
    return str(value)


def _passphrase(args: argparse.Namespace, prompt: str = "Passphrase: ") -> str:
    path = getattr(args, "passphrase_file", None)
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return getpass.getpass(prompt)


def _unlocked_key(admin: str, args: argparse.Namespace) -> Any:
    import psycopg

    from paitho_tenant.db import app_conninfo
    from paitho_tenant.vault import Vault

    vault = Vault()
    with psycopg.connect(app_conninfo(admin), autocommit=True) as conn:
        vault.unlock(conn, _passphrase(args), actor="cli")
    return vault.key()


def harden_process() -> None:
    """No core dumps and no same-user ptrace: the unsealed data key lives in this process's
    memory (research/security.md §2.2). Best effort; root can still read memory."""
    import ctypes
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        logging.getLogger("paitho_tenant").warning("could not mark the process non-dumpable")


def _interval(raw: str | None) -> float:
    """PAITHO_OUTBOUND_INTERVAL: seconds between outbound engine passes (default 30)."""
    try:
        value = float(raw) if raw else 30.0
    except ValueError:
        value = 30.0
    return min(max(value, 0.5), 3600.0)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from paitho_tenant import licence, migrate
    from paitho_tenant.app import Settings, create_app
    from paitho_tenant.errors import DatabaseUnavailable

    admin = _conninfo(args)
    harden_process()
    unlock_file = Path(args.unlock_file) if args.unlock_file else None
    if unlock_file is not None and os.environ.get("PAITHO_EDITION") != "self-hosted":
        print(
            "paitho-tenant: --unlock-file is a self-hosted opt-in; set PAITHO_EDITION=self-hosted",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        if migrate.pending(admin):
            migrate.migrate(admin)
    except DatabaseUnavailable:
        logging.getLogger("paitho_tenant").warning("database unreachable at start; serving anyway")
    settings = Settings(
        admin_conninfo=admin,
        slug=os.environ.get("PAITHO_TENANT_SLUG", "tenant"),
        origin=os.environ.get("PAITHO_TENANT_ORIGIN") or None,
        unlock_file=unlock_file,
        outbound_interval=_interval(os.environ.get("PAITHO_OUTBOUND_INTERVAL")),
        **licence.settings_from_env(os.environ),  # type: ignore[arg-type]
    )
    cert = args.tls_cert or os.environ.get("PAITHO_TLS_CERT_FILE")
    key = args.tls_key or os.environ.get("PAITHO_TLS_KEY_FILE")
    if bool(cert) != bool(key):
        print("paitho-tenant: TLS needs both a certificate and its key", file=sys.stderr)
        return EXIT_USAGE
    # TLS ends here, inside the tenant: the edge only passes bytes through (DESIGN.md).
    tls = {"ssl_certfile": cert, "ssl_keyfile": key} if cert else {}
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        **tls,  # type: ignore[arg-type]
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from paitho_tenant import migrate

    applied = migrate.migrate(_conninfo(args))
    print(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    import psycopg

    from paitho_tenant import accounts, audit, migrate, workspaces
    from paitho_tenant.db import app_conninfo
    from paitho_tenant.vault import Vault

    admin = _conninfo(args)
    if migrate.pending(admin):
        migrate.migrate(admin)
    password = getpass.getpass("Owner password: ")
    passphrase = None if args.generate else _passphrase(args, "Passphrase (strong): ")
    vault = Vault()
    with psycopg.connect(app_conninfo(admin), autocommit=True) as conn, conn.transaction():
        key, generated = vault.initialise(conn, passphrase)
        account_id = accounts.create_owner(conn, key, args.owner_email, password)
        workspaces.create(conn, workspaces.DEFAULT_NAME, args.region)
        audit.record(conn, f"account:{account_id}", "vault.setup")
    if generated:
        print("Your passphrase (shown once; write it down):", file=sys.stderr)
        print(generated)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    import psycopg

    from paitho_tenant.db import app_conninfo
    from paitho_tenant.vault import Vault

    admin = _conninfo(args)
    current = _passphrase(args, "Current passphrase: ")
    new = None if args.generate else getpass.getpass("New passphrase: ")
    with psycopg.connect(app_conninfo(admin), autocommit=True) as conn:
        generated = Vault().rotate(conn, current, new, actor="cli")
    if generated:
        print("Your new passphrase (shown once; write it down):", file=sys.stderr)
        print(generated)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    import psycopg

    from paitho_tenant import audit
    from paitho_tenant.db import owner_conninfo

    with psycopg.connect(owner_conninfo(_conninfo(args)), autocommit=True) as conn:
        result = audit.verify(conn)
    if result.ok:
        since = (
            f", from row {result.anchor_seq + 1} after {result.pruned_segments} pruned segment(s)"
            if result.anchor_seq
            else ""
        )
        print(f"audit chain intact: {result.rows} rows{since}")
        return 0
    for problem in result.problems:
        print(f"{problem.kind}: {problem.message}")
    return 1


class _CountingReader(io.RawIOBase):
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def cmd_import(args: argparse.Namespace) -> int:
    import psycopg
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from paitho_tenant import audit, leads, workspaces
    from paitho_tenant.csvimport import CsvFormatError, LeadCsvReader
    from paitho_tenant.db import app_conninfo

    admin = _conninfo(args)
    mapping = dict(item.split("=", 1) for item in args.map or [])
    key = _unlocked_key(admin, args)
    path = Path(args.file)
    with (
        psycopg.connect(app_conninfo(admin), autocommit=True) as conn,
        path.open("rb") as raw,
        Progress(
            TextColumn("importing"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[rows]} rows"),
        ) as bar,
    ):
        counting = _CountingReader(raw)
        task = bar.add_task("import", total=path.stat().st_size, rows=0)
        workspace_id = workspaces.resolve(conn, args.workspace)
        try:
            reader = LeadCsvReader(io.BufferedReader(counting), mapping or None)
            result = leads.import_rows(
                conn,
                key,
                workspace_id,
                reader.rows(),
                progress=lambda n: bar.update(task, completed=counting.count, rows=n),
            )
        except CsvFormatError as exc:
            audit.record(conn, "cli", "leads.import_failed", {"workspace_id": workspace_id})
            print(f"import failed: {exc.message}", file=sys.stderr)
            return 1
        audit.record(
            conn,
            "cli",
            "leads.imported",
            {"workspace_id": workspace_id, "imported": result.imported},
        )
    print(
        f"imported {result.imported}, duplicates {result.duplicates}, "
        f"suppressed {result.suppressed}, errors {result.error_count}"
    )
    for error in result.errors[:50]:
        print(f"  row {error['row']}, column {error['column']}: {error['reason']}")
    return 0 if not result.error_count else 3


def cmd_export(args: argparse.Namespace) -> int:
    import psycopg

    from paitho_tenant import audit, export
    from paitho_tenant.db import app_conninfo

    admin = _conninfo(args)
    key = _unlocked_key(admin, args)
    out = Path(args.out)
    with psycopg.connect(app_conninfo(admin), autocommit=True) as conn:
        audit.record(conn, "cli", "export.written")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for chunk in export.stream_zip(conn, key):
                fh.write(chunk)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paitho-tenant")
    parser.add_argument(
        "--db", help="libpq conninfo of the cluster superuser (else PAITHO_TENANT_DB)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the tenant app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--unlock-file", help="self-hosted only: unseal at start from this file")
    serve.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    serve.add_argument("--tls-key", help="the certificate's private key (PEM)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="create roles, database and schema").set_defaults(
        func=cmd_migrate
    )
    init = sub.add_parser("init", help="set up the vault and the owner account")
    init.add_argument("--owner-email", required=True)
    init.add_argument("--region", choices=("eu", "us"), default="eu")
    init.add_argument("--generate", action="store_true", help="generate a strong passphrase")
    init.add_argument("--passphrase-file")
    init.set_defaults(func=cmd_init)
    rotate = sub.add_parser("rotate-passphrase", help="rewrap the data key")
    rotate.add_argument("--generate", action="store_true", help="generate the new passphrase")
    rotate.add_argument("--passphrase-file", help="file holding the current passphrase")
    rotate.set_defaults(func=cmd_rotate)
    sub.add_parser("audit-verify", help="verify the audit chain").set_defaults(
        func=cmd_audit_verify
    )
    imp = sub.add_parser("import-leads", help="import a CSV of leads")
    imp.add_argument("file")
    imp.add_argument("--workspace")
    imp.add_argument("--map", action="append", metavar="HEADER=FIELD")
    imp.add_argument("--passphrase-file")
    imp.set_defaults(func=cmd_import)
    exp = sub.add_parser("export", help="write the export zip")
    exp.add_argument("--out", required=True)
    exp.add_argument("--passphrase-file")
    exp.set_defaults(func=cmd_export)
    from paitho_tenant import backup_cli

    backup_cli.register(sub)
    for name in ("backup", "restore", "retention", "export-bundle"):
        sub.choices[name].set_defaults(func=backup_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from paitho_tenant.errors import TenantError

    try:
        return int(args.func(args))
    except TenantError as exc:
        print(f"paitho-tenant: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
