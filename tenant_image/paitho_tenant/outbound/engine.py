"""The outbound engine's background loop, for the app's composition root.

While the tenant is unsealed, every `interval` seconds and for every workspace: apply the
unsubscribes kept while sealed, plan due steps, settle and send, and poll each active
mailbox's INBOX. Sealed: it does nothing (the data key is only in the vault's memory).
`Receiver.run` offers IMAP IDLE per mailbox for deployments that want push delivery.

    engine = OutboundEngine(app_conninfo(admin), components.vault, origin)
    engine.start()   # in the lifespan, after the pool opens
    engine.stop()    # before the pool closes
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from paitho_tenant import workspaces
from paitho_tenant.errors import Sealed
from paitho_tenant.outbound import mailbox, queue, store, unsubscribe
from paitho_tenant.outbound.receiver import Receiver
from paitho_tenant.outbound.sender import Sender
from paitho_tenant.outbound.store import MailboxConfig
from paitho_tenant.vault import Vault

log = logging.getLogger(__name__)


class OutboundEngine:
    def __init__(
        self,
        conninfo: str,
        vault: Vault,
        origin: str,
        ssl_factory: mailbox.SslFactory = mailbox.default_ssl,
        interval: float = 30.0,
        caps: bool = True,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.conninfo = conninfo
        self.vault = vault
        self.origin = origin
        self.ssl_factory = ssl_factory
        self.interval = interval
        self.caps = caps
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _smtp(self, config: MailboxConfig) -> Any:
        return mailbox.open_smtp(config.spec, config.secret, self.ssl_factory)

    def _imap(self, config: MailboxConfig) -> Any:
        return mailbox.open_imap(config.spec, config.secret, self.ssl_factory)

    def cycle(self) -> None:
        """One pass over every workspace (no-op while sealed)."""
        try:
            key = self.vault.key()
        except Sealed:
            return
        with (
            psycopg.connect(self.conninfo, autocommit=True) as conn,
            psycopg.connect(self.conninfo, autocommit=True) as probe,
        ):
            unsubscribe.apply_pending(conn, key)
            for ws in workspaces.list_all(conn):
                workspace_id = int(ws["id"])
                queue.plan(conn, key, workspace_id, self.clock(), self.origin, self.caps)
                sender = Sender(
                    conn, key, workspace_id, self._smtp, self._imap, self.clock, probe_conn=probe
                )
                try:
                    sender.run_once()
                finally:
                    sender.shutdown()
                for mailbox_id in store.mailbox_ids(conn, workspace_id):
                    try:
                        Receiver(
                            conn, key, workspace_id, mailbox_id, self._imap, self.clock
                        ).poll_once()
                    except Exception:
                        log.exception("mailbox %s: receiving failed", mailbox_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.cycle()
            except Exception:
                log.exception("outbound cycle failed; next attempt in %.0f s", self.interval)
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="outbound", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
