"""Test harness: the outbound engine (plan + send loop) as a process of its own, so a test
can SIGKILL it at any moment. The passphrase arrives on stdin and unlocks the real vault.

With --hang-after-data N the N-th message the server accepted is announced on stdout as
`DATA-ACCEPTED <send id>` and the process then waits, before the database update, to be
killed. At the end it prints `RESULT {json}` with what it sent and settled.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import ssl
import sys
import time

import psycopg
from paitho_tenant.db import app_conninfo, workspace_tx
from paitho_tenant.outbound import mailbox, queue
from paitho_tenant.outbound.queue import Job
from paitho_tenant.outbound.sender import Sender
from paitho_tenant.outbound.store import MailboxConfig
from paitho_tenant.vault import Vault

ORIGIN = "https://acme.paitho.test"


def _open_rows(conn: psycopg.Connection[tuple[int]], workspace_id: int) -> int:
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "SELECT count(*) FROM outbound_messages WHERE state IN ('queued', 'retry', 'sending')"
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--workspace", type=int, required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--hang-after-data", type=int, default=0)
    args = parser.parse_args()
    passphrase = sys.stdin.readline().strip()
    conn = psycopg.connect(app_conninfo(args.admin), autocommit=True)
    vault = Vault()
    vault.unlock(conn, passphrase, actor="test-worker")
    key = vault.key()

    def context() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=args.cafile)

    def smtp(config: MailboxConfig):  # type: ignore[no-untyped-def]
        return mailbox.open_smtp(config.spec, config.secret, context)

    def imap(config: MailboxConfig):  # type: ignore[no-untyped-def]
        return mailbox.open_imap(config.spec, config.secret, context)

    accepted = 0

    def after_data(job: Job) -> None:
        nonlocal accepted
        accepted += 1
        if accepted == args.hang_after_data:
            print(f"DATA-ACCEPTED {job.id}", flush=True)
            time.sleep(3600)

    sender = Sender(
        conn,
        key,
        args.workspace,
        smtp,
        imap,
        lease=dt.timedelta(seconds=args.lease),
        batch=3,
        after_data=after_data,
    )
    print("READY", flush=True)
    totals: dict[str, int] = {}
    while True:
        planned = queue.plan(conn, key, args.workspace, dt.datetime.now(dt.UTC), ORIGIN)
        result = sender.run_once()
        for name, value in dataclasses.asdict(result).items():
            totals[name] = totals.get(name, 0) + value
        # Done only when a whole pass changed nothing: a message sent in this pass makes
        # the lead's next step due, and that is planned in the next pass.
        idle = planned.queued == 0 and result.sent == 0 and result.settled_sent == 0
        if idle and _open_rows(conn, args.workspace) == 0:
            break
        if result.sent == 0 and planned.queued == 0:
            time.sleep(0.1)  # rows leased by a killed worker: wait for the lease to expire
    print("RESULT " + json.dumps(totals), flush=True)


if __name__ == "__main__":
    main()
