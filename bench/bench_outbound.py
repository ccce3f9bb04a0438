"""The outbound engine against plain smtplib in the same run; IMAP ingestion.

One fresh tenant cluster (initdb, trust settings, `migrate`, a vault), an SMTP sink (aiosmtpd
in its own process: STARTTLS + AUTH, accepts everything) and Dovecot on loopback.

    plan      queue.plan over 10,000 enrolled leads, caps off: render templates, compose,
              encrypt and store each message and its queue row
    engine    Sender.send_ready: claim batches (FOR UPDATE SKIP LOCKED), decrypt, check the
              suppression list just before each message, SMTP over one connection, mark sent
    smtplib   the same 10,000 messages (the same bytes, decrypted beforehand) sent with
              sendmail over one smtplib connection
    ingest    10,000 messages in the mailbox's INBOX (replies, out-of-office, DSNs, other):
              Receiver.poll_once fetches, classifies, matches, stores encrypted and acts
    fetch     the same 10,000 fetched with imapclient, nothing else (context for ingest)

Figures: send_msgs_per_s (engine), send_ratio_vs_smtplib (engine rate / smtplib rate, target
>= 0.5), plan_msgs_per_s, imap_ingest_msgs_per_s, imap_ingest_ratio_vs_fetch.

Run: .venv/bin/python -m bench bench_outbound
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import shutil
import smtplib
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from paitho_tenant import leads, migrate, workspaces
from paitho_tenant.crypto import generate_passphrase
from paitho_tenant.db import app_conninfo, workspace_tx
from paitho_tenant.outbound import mailbox, queue, store
from paitho_tenant.outbound.receiver import Receiver
from paitho_tenant.outbound.sender import Sender
from paitho_tenant.outbound.store import MailboxConfig
from paitho_tenant.vault import Vault

from bench.common import record
from chalicelib.launchers import pgcluster
from tests.functional.outbound_servers import Cert, Dovecot, make_cert

MESSAGES = 10_000
ROUNDS = 4
USER, PASSWORD = "sales@acme.test", "bench-password-1"
ORIGIN = "https://acme.paitho.test"
NOW = dt.datetime(2027, 6, 8, 10, 0, tzinfo=dt.UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sink(port: int, cert: str, key: str, ready: Any, stop: Any) -> None:
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        return AuthResult(success=True)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        authenticator=auth,
        auth_required=True,
    )
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Lead:
    def __init__(self, n: int) -> None:
        self.row_number = n + 2
        self.email = f"lead{n:05d}@prospect{n % 50}.test"
        self.fields = {"first_name": f"First{n}", "company": f"Company {n % 700}"}


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="paitho-bench-outbound-"))
    os.chmod(root, 0o755)  # noqa: S103  (the unprivileged cluster and IMAP user traverse it)
    bindir, ids = pgcluster.find_bindir(), pgcluster.run_as()
    cluster = pgcluster.Cluster(root / "pgdata", root / "run", _free_port())
    pgcluster.initdb(cluster.data_dir, bindir, ids)
    proc = pgcluster.start(cluster, bindir, ids)
    cert = make_cert(root / "cert")
    dovecot = Dovecot(root / "dovecot", cert, {USER: PASSWORD})
    port = _free_port()
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    sink = multiprocessing.Process(
        target=_sink, args=(port, str(cert.cert), str(cert.key), ready, stop), daemon=True
    )
    sink.start()
    ready.wait(30)
    try:
        _run(cluster.conninfo(), cert, dovecot, port)
    finally:
        stop.set()
        sink.join(10)
        dovecot.stop()
        pgcluster.stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _run(admin: str, cert: Cert, dovecot: Dovecot, smtp_port: int) -> None:
    migrate.migrate(admin)
    conn = psycopg.connect(app_conninfo(admin), autocommit=True)
    key, _ = Vault().initialise(conn, generate_passphrase())
    ws = int(workspaces.create(conn, "default", "eu")["id"])
    leads.import_rows(conn, key, ws, [Lead(n) for n in range(MESSAGES)])
    with workspace_tx(conn, ws):
        lead_ids = [int(r[0]) for r in conn.execute("SELECT id FROM leads ORDER BY id")]
    brand = workspaces.create_brand(conn, key, ws, "Acme", sending_identity="Alice at Acme")
    store.set_brand_footer(conn, key, ws, brand, "Acme Ltd, 1 Main Street, Berlin")
    spec = store.MailboxSpec(
        "sales", USER, "127.0.0.1", smtp_port, "starttls", "127.0.0.1", dovecot.port, "ssl",
        USER, daily_cap=10**9, ramp_start=10**9,
    )  # fmt: skip
    mailbox_id = store.create_mailbox(conn, key, ws, spec, PASSWORD)
    campaign = store.create_campaign(
        conn, ws, brand, "bench", "UTC", (dt.time(0), dt.time(23, 59, 59)), range(1, 8)
    )
    store.add_step(
        conn, key, ws, campaign, 1, 0, False,
        [store.Variant("A", "Quick question, {{first_name|there}}",
                       "Hi {{first_name|there}},\nhow does {{company|your team}} do outbound?")],
    )  # fmt: skip
    store.enroll(conn, key, ws, campaign, lead_ids, NOW)
    store.set_campaign_status(conn, ws, campaign, "active")

    started = time.perf_counter()
    planned = 0
    while True:
        result = queue.plan(conn, key, ws, NOW, ORIGIN, caps=False, limit=1000)
        planned += result.queued
        if result.queued == 0:
            break
    t_plan = time.perf_counter() - started
    assert planned == MESSAGES, planned

    def smtp(config: MailboxConfig) -> smtplib.SMTP:
        return mailbox.open_smtp(config.spec, config.secret, cert.client_context)

    def imap(config: MailboxConfig) -> Any:
        return mailbox.open_imap(config.spec, config.secret, cert.client_context)

    # The same messages, built before timing, for the smtplib baseline.
    jobs = queue.claim(conn, key, ws, NOW, dt.timedelta(hours=1), MESSAGES)
    built = [(job.raw, job.recipient) for job in jobs]
    with workspace_tx(conn, ws):
        conn.execute("UPDATE outbound_messages SET state = 'queued', attempts = 0")

    # Interleaved rounds, so both sides see the same machine load (2 shared cores).
    config = store.load_mailbox(conn, key, ws, mailbox_id)
    probe = psycopg.connect(app_conninfo(admin), autocommit=True)
    sender = Sender(
        conn, key, ws, smtp, imap, clock=lambda: NOW, batch=500, flush_every=250, probe_conn=probe
    )
    chunk = MESSAGES // ROUNDS
    t_smtplib = t_engine = 0.0
    engine_sent = 0
    for r in range(ROUNDS):
        started = time.perf_counter()
        client = smtp(config)
        for raw, rcpt in built[r * chunk : (r + 1) * chunk]:
            client.sendmail(USER, [rcpt], raw)
        client.quit()
        t_smtplib += time.perf_counter() - started
        started = time.perf_counter()
        engine_sent += sender.send_ready(limit=chunk).sent
        sender.close()
        t_engine += time.perf_counter() - started
    assert engine_sent == MESSAGES, engine_sent

    record("plan_msgs_per_s", MESSAGES / t_plan, "msgs/s")
    record("send_msgs_per_s", MESSAGES / t_engine, "msgs/s", t_smtplib / t_engine)
    record("send_ratio_vs_smtplib", t_smtplib / t_engine, "ratio", t_smtplib / t_engine)
    record("send_smtplib_msgs_per_s", MESSAGES / t_smtplib, "msgs/s")

    _fill_inbox(conn, ws, dovecot)
    config = store.load_mailbox(conn, key, ws, mailbox_id)
    warm = imap(config)
    warm.select_folder("INBOX", readonly=True)
    started = time.perf_counter()
    uids = warm.search(["ALL"])
    for i in range(0, len(uids), 250):
        warm.fetch(uids[i : i + 250], ["BODY.PEEK[]"])
    t_fetch = time.perf_counter() - started
    warm.logout()
    receiver = Receiver(conn, key, ws, mailbox_id, imap, clock=lambda: NOW)
    started = time.perf_counter()
    ingested = receiver.poll_once()
    t_ingest = time.perf_counter() - started
    assert ingested.fetched == MESSAGES, ingested
    record("imap_ingest_msgs_per_s", MESSAGES / t_ingest, "msgs/s", t_fetch / t_ingest)
    record("imap_ingest_ratio_vs_fetch", t_fetch / t_ingest, "ratio", t_fetch / t_ingest)
    print(f"ingested kinds: {ingested.kinds}")
    conn.close()


def _fill_inbox(conn: psycopg.Connection[Any], ws: int, dovecot: Dovecot) -> None:
    """10,000 messages written straight into the INBOX maildir (Dovecot indexes them)."""
    with workspace_tx(conn, ws):
        tokens = [str(r[0]) for r in conn.execute("SELECT token FROM outbound_messages")]
    new = dovecot.root / "mail" / USER / "new"
    new.mkdir(parents=True, exist_ok=True)
    for n in range(MESSAGES):
        token = tokens[n % len(tokens)]
        lead = f"lead{n % MESSAGES:05d}@prospect{n % 50}.test"
        mid = f"<pto.{token}@acme.test>"
        kind = n % 10
        if kind < 7:
            raw = (
                f"From: {lead}\r\nTo: {USER}\r\nSubject: Re: Quick question\r\n"
                f"Message-ID: <r{n}@prospect.test>\r\nIn-Reply-To: {mid}\r\n\r\n"
                f"Sounds good, call me.\r\n\r\nOn Mon, Alice wrote:\r\n> Hi\r\n"
            )
        elif kind == 7:
            raw = (
                f"From: {lead}\r\nTo: {USER}\r\nSubject: Automatic reply: Quick question\r\n"
                f"Auto-Submitted: auto-replied\r\nIn-Reply-To: {mid}\r\n\r\n"
                "I am out of the office until 21 June 2027.\r\n"
            )
        elif kind == 8:
            raw = (
                f"From: MAILER-DAEMON@mx.acme.test\r\nTo: {USER}\r\n"
                "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
                'Content-Type: multipart/report; report-type=delivery-status; boundary="B"'
                "\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--B\r\n"
                "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
                f"Final-Recipient: rfc822; {lead}\r\nAction: failed\r\nStatus: 5.1.1\r\n--B\r\n"
                f"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: {mid}\r\n--B--\r\n"
            )
        else:
            raw = f"From: news@elsewhere.test\r\nTo: {USER}\r\nSubject: Weekly news\r\n\r\nHi.\r\n"
        (new / f"{1700000000 + n}.M{n}P1.bench").write_bytes(raw.encode())
    for path in [new.parent, new, *new.iterdir()]:
        os.chown(path, dovecot.uid, dovecot.gid)
