"""The sending worker: exactly once per (lead, step).

1. Settle first: rows a dead worker left in 'sending' (lease expired) are looked up by their
   Message-ID token in the mailbox's Sent folder over IMAP. Found: sent. Not found: back to
   the queue when the provider files every submitted message in Sent (Gmail, Microsoft 365,
   our test server), or when DATA had not started; otherwise 'uncertain' and never resent.
2. Claim a batch (`FOR UPDATE SKIP LOCKED`, state 'sending' with a lease) — the row and its
   Message-ID exist before any SMTP traffic.
3. Per message: MAIL and RCPT, the suppression list (blind index) read just before DATA
   (RSET instead if suppressed), DATA, then mark sent (in batches, asynchronously
   committed). 4xx and connection failures before DATA are retried with backoff; 5xx marks
   a hard bounce; a connection lost during DATA leaves the row for settlement.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import smtplib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import imapclient
import psycopg
from imapclient.exceptions import IMAPClientError

from paitho_tenant.crypto import DataKey
from paitho_tenant.outbound import guardrails, queue, store, unsubscribe
from paitho_tenant.outbound.errors import MailboxCheckFailed
from paitho_tenant.outbound.queue import Job
from paitho_tenant.outbound.store import MailboxConfig

log = logging.getLogger(__name__)

SmtpFactory = Callable[[MailboxConfig], smtplib.SMTP]
ImapFactory = Callable[[MailboxConfig], imapclient.IMAPClient]


@dataclass
class SendResult:
    sent: int = 0
    retried: int = 0
    bounced: int = 0
    suppressed: int = 0
    skipped: int = 0
    settled_sent: int = 0
    settled_requeued: int = 0
    settled_uncertain: int = 0


class Sender:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        key: DataKey,
        workspace_id: int,
        smtp_factory: SmtpFactory,
        imap_factory: ImapFactory,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        lease: dt.timedelta = dt.timedelta(minutes=10),
        batch: int = 200,
        after_data: Callable[[Job], None] | None = None,
        flush_every: int = 50,
        probe_conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        self.conn = conn
        self.key = key
        self.workspace_id = workspace_id
        self.smtp_factory = smtp_factory
        self.imap_factory = imap_factory
        self.clock = clock
        self.lease = lease
        self.batch = batch
        self.after_data = after_data  # a test seam: called after the server accepted DATA
        self.flush_every = flush_every
        # The suppression check runs on its own connection in a helper thread while MAIL and
        # RCPT travel; without a second connection it runs on `conn` (one more round trip).
        self._probe_conn = probe_conn or conn
        self._probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suppression")
        self._mailboxes: dict[int, MailboxConfig] = {}
        self._smtp: dict[int, smtplib.SMTP] = {}
        self._stopped: dict[int, bool] = {}
        self._accepted: list[int] = []  # accepted by the server, not yet marked sent

    def mailbox(self, mailbox_id: int) -> MailboxConfig:
        if mailbox_id not in self._mailboxes:
            self._mailboxes[mailbox_id] = store.load_mailbox(
                self.conn, self.key, self.workspace_id, mailbox_id
            )
        return self._mailboxes[mailbox_id]

    def shutdown(self) -> None:
        """Close SMTP sessions and stop the suppression probe's thread (the end of its use)."""
        self.close()
        self._probe.shutdown(wait=True)

    def close(self) -> None:
        """Close SMTP sessions (the sender stays usable: they reopen on demand)."""
        for smtp in self._smtp.values():
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
        self._smtp.clear()

    # -- settlement ---------------------------------------------------------------------------
    def settle(self, result: SendResult | None = None) -> SendResult:
        result = result or SendResult()
        rows = queue.lease_expired(self.conn, self.workspace_id, self.clock(), self.lease)
        by_mailbox: dict[int, list[queue.Unsettled]] = {}
        for row in rows:
            by_mailbox.setdefault(row.mailbox_id, []).append(row)
        for mailbox_id, items in by_mailbox.items():
            config = self.mailbox(mailbox_id)
            try:
                client = self.imap_factory(config)
            except (MailboxCheckFailed, OSError, IMAPClientError):
                log.warning("settlement: mailbox %s unreachable; will try again", mailbox_id)
                continue
            try:
                client.select_folder(config.sent_folder, readonly=True)
                for item in items:
                    found = client.search(["HEADER", "Message-ID", f"pto.{item.token}@"])
                    if found:
                        queue.mark_sent(self.conn, self.workspace_id, item.id, self.clock())
                        result.settled_sent += 1
                    elif config.spec.sent_copy == "provider" or not item.data_started:
                        queue.requeue(self.conn, self.workspace_id, item.id, "retry")
                        result.settled_requeued += 1
                    else:
                        queue.requeue(self.conn, self.workspace_id, item.id, "uncertain")
                        result.settled_uncertain += 1
            except (IMAPClientError, OSError):
                log.warning("settlement: IMAP failed on mailbox %s; will try again", mailbox_id)
            finally:
                with contextlib.suppress(IMAPClientError, OSError):
                    client.logout()
        if rows:
            log.info(
                "settled %d: %d sent, %d requeued, %d uncertain",
                len(rows),
                result.settled_sent,
                result.settled_requeued,
                result.settled_uncertain,
            )
        return result

    # -- sending --------------------------------------------------------------------------------
    def send_ready(self, result: SendResult | None = None, limit: int | None = None) -> SendResult:
        """Send what is ready (at most `limit` messages), batch by batch."""
        result = result or SendResult()
        claimed = 0
        while limit is None or claimed < limit:
            size = self.batch if limit is None else min(self.batch, limit - claimed)
            jobs = queue.claim(
                self.conn, self.key, self.workspace_id, self.clock(), self.lease, size
            )
            claimed += len(jobs)
            if not jobs:
                return result
            self._stopped.clear()  # re-read each mailbox's status once per batch
            try:
                for job in jobs:
                    self._send(job, result)
            finally:
                self._flush()
        return result

    def _flush(self) -> None:
        if self._accepted:
            queue.mark_sent_many(self.conn, self.workspace_id, self._accepted, self.clock())
            self._accepted = []

    def run_once(self) -> SendResult:
        result = self.settle()
        try:
            return self.send_ready(result)
        finally:
            self.close()

    def _smtp_for(self, config: MailboxConfig) -> smtplib.SMTP:
        smtp = self._smtp.get(config.id)
        if smtp is None:
            smtp = self._smtp[config.id] = self.smtp_factory(config)
        return smtp

    def _drop_smtp(self, mailbox_id: int) -> None:
        smtp = self._smtp.pop(mailbox_id, None)
        if smtp is not None:
            smtp.close()

    def _send(self, job: Job, result: SendResult) -> None:
        ws, now = self.workspace_id, self.clock()
        config = self.mailbox(job.mailbox_id)
        if not job.active:
            queue.mark_outcome(self.conn, ws, job, "failed", None, "the lead left the sequence")
            result.skipped += 1
            return
        if job.mailbox_id not in self._stopped:
            self._stopped[job.mailbox_id] = guardrails.mailbox_stopped(
                self.conn, ws, job.mailbox_id
            )
        if self._stopped[job.mailbox_id]:
            queue.mark_outcome(
                self.conn, ws, job, "retry", None, "mailbox stopped", now + dt.timedelta(hours=1)
            )
            result.retried += 1
            return
        try:
            smtp = self._smtp_for(config)
        except MailboxCheckFailed as exc:
            self._retry(job, None, f"connect: {exc.check}", result)
            return
        try:
            outcome = self._transact(smtp, config, job)
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            self._refused(job, code, "recipient refused", result)
            return
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            self._refused(job, exc.smtp_code, "message refused", result)
            return
        except smtplib.SMTPResponseException as exc:
            self._drop_smtp(job.mailbox_id)
            self._refused(job, exc.smtp_code, "server error", result)
            return
        except (smtplib.SMTPServerDisconnected, OSError):
            # The server may or may not have taken DATA: keep the row in 'sending'; settlement
            # looks in the Sent folder once the lease expires.
            self._drop_smtp(job.mailbox_id)
            log.warning("send %s: connection lost mid-transaction; left for settlement", job.id)
            return
        if outcome == "suppressed":
            queue.mark_outcome(self.conn, ws, job, "suppressed", None, "on the suppression list")
            result.suppressed += 1
            return
        if self.after_data is not None:
            self.after_data(job)
        self._accepted.append(job.id)
        result.sent += 1
        if config.spec.sent_copy == "append":
            self._flush()  # keep the window where a crash leaves it 'uncertain' small
            self._append_sent(config, job.raw)
        elif len(self._accepted) >= self.flush_every:
            self._flush()

    def _transact(self, smtp: smtplib.SMTP, config: MailboxConfig, job: Job) -> str:
        """One SMTP transaction. The suppression list is queried while MAIL and RCPT travel
        (on the probe connection, so it costs no extra round trip) and read before DATA: a
        suppressed address gets RSET instead of the message. Returns 'sent' or 'suppressed'."""
        sender, rcpt = config.spec.from_address, job.recipient
        pending = self._probe.submit(queue.is_suppressed, self._probe_conn, job.email_bidx)
        try:
            smtp.ehlo_or_helo_if_needed()
            code, resp = smtp.mail(sender)
            if code != 250:
                smtp.rset()
                raise smtplib.SMTPSenderRefused(code, resp, sender)
            code, resp = smtp.rcpt(rcpt)
            if code not in (250, 251):
                smtp.rset()
                raise smtplib.SMTPRecipientsRefused({rcpt: (code, resp)})
        finally:
            suppressed = pending.result(timeout=60)
        if suppressed:
            smtp.rset()
            return "suppressed"
        if config.spec.sent_copy == "append":
            queue.mark_data(self.conn, self.workspace_id, job.id, self.clock())
        code, resp = smtp.data(job.raw)
        if code != 250:
            smtp.rset()
            raise smtplib.SMTPDataError(code, resp)
        return "sent"

    def _append_sent(self, config: MailboxConfig, raw: bytes) -> None:
        try:
            client = self.imap_factory(config)
            try:
                client.append(config.sent_folder, raw, flags=[imapclient.SEEN])
            finally:
                client.logout()
        except (MailboxCheckFailed, IMAPClientError, OSError):
            log.warning("could not file a sent copy in mailbox %s", config.id)

    def _refused(self, job: Job, code: int, what: str, result: SendResult) -> None:
        if 500 <= code < 600:
            queue.mark_outcome(
                self.conn, self.workspace_id, job, "bounced", code, f"{what} ({code})"
            )
            result.bounced += 1
            unsubscribe.suppress(self.conn, self.workspace_id, job.email_bidx, "hard_bounce")
            self._flush()  # the rate counts what was sent so far
            if guardrails.enforce_bounce_rate(self.conn, self.workspace_id, job.mailbox_id):
                self._stopped[job.mailbox_id] = True
        else:
            self._retry(job, code, f"{what} ({code})", result)

    def _retry(self, job: Job, code: int | None, reason: str, result: SendResult) -> None:
        now = self.clock()
        if job.attempts >= queue.MAX_ATTEMPTS:
            queue.mark_outcome(self.conn, self.workspace_id, job, "failed", code, reason)
            return
        queue.mark_outcome(
            self.conn,
            self.workspace_id,
            job,
            "retry",
            code,
            reason,
            queue.backoff(job.attempts, now),
        )
        result.retried += 1
