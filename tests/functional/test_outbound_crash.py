"""Exactly once across crashes: the sending process is SIGKILLed between the server's
acceptance of DATA and the database update, and at random moments, then restarted; counted
at the SMTP server, every lead receives each step exactly once."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from paitho_tenant.db import workspace_tx
from paitho_tenant.outbound import store

from tests.conftest import RunningCluster
from tests.functional.outbound_support import (
    PASSPHRASE,
    MailWorld,
    Tenant,
    mail_servers,
    running_tenant,
)

pytestmark = pytest.mark.functional


@pytest.fixture
def mail_world(work_root: Path) -> Iterator[MailWorld]:
    with mail_servers(work_root) as world:
        yield world


@pytest.fixture
def tenant(pg_cluster: RunningCluster) -> Iterator[Tenant]:
    with running_tenant(pg_cluster) as t:
        yield t


WORKER = Path(__file__).with_name("outbound_worker.py")
ROOT = Path(__file__).resolve().parents[2]
LEADS = 12
STEPS = 2


def _start(tenant: Tenant, mail: MailWorld, hang_after: int = 0) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            "--admin",
            tenant.admin,
            "--workspace",
            str(tenant.workspace_id),
            "--cafile",
            str(mail.cert.cert),
            "--lease",
            "1.0",
            "--hang-after-data",
            str(hang_after),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(PASSPHRASE + "\n")
    proc.stdin.close()
    assert proc.stdout.readline().strip() == "READY"
    return proc


def _kill(proc: subprocess.Popen[str], must_be_running: bool = True) -> None:
    """SIGKILL the worker. At random moments it may have just finished on its own
    (`must_be_running=False` accepts that)."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL or (not must_be_running and proc.returncode == 0)


def _finish(proc: subprocess.Popen[str]) -> dict[str, int]:
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(120) == 0
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result: dict[str, int] = json.loads(line[len("RESULT ") :])
    return result


def _campaign(tenant: Tenant, mail: MailWorld, sent_copy: str = "provider") -> int:
    conn, key, ws = tenant.conn, tenant.key, tenant.workspace_id
    ids = tenant.add_leads(
        [(f"crash{n:02d}@prospect.test", {"first_name": f"C{n}"}) for n in range(LEADS)]
    )
    user = "sales1@acme.test"
    store.create_mailbox(
        conn,
        key,
        ws,
        mail.spec(user, daily_cap=1000, ramp_start=1000, sent_copy=sent_copy),
        mail.users[user],
    )
    campaign = store.create_campaign(
        conn, ws, tenant.brand(), "crash", "UTC", (dt.time(0), dt.time(23, 59, 59)), range(1, 8)
    )
    for position in range(1, STEPS + 1):
        subject = "Hello {{first_name}}" if position == 1 else ""
        store.add_step(
            conn, key, ws, campaign, position, 0, False,
            [store.Variant("A", subject, f"Step {position} for {{{{first_name}}}}.")],
        )  # fmt: skip
    store.enroll(conn, key, ws, campaign, list(ids.values()), dt.datetime.now(dt.UTC))
    store.set_campaign_status(conn, ws, campaign, "active")
    return campaign


def _counts(mail: MailWorld) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for received in mail.handler.messages():
        msg = received.message
        counts[(str(msg["To"]), (str(msg["Subject"]).startswith("Re:") and "2") or "1")] += 1
    return counts


def test_sigkill_between_data_and_update_then_restart(
    tenant: Tenant, mail_world: MailWorld
) -> None:
    """Killed after the server took DATA and before the row was updated: the restarted
    worker finds the message in the Sent folder, marks it sent and never sends it again."""
    _campaign(tenant, mail_world)
    proc = _start(tenant, mail_world, hang_after=4)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("DATA-ACCEPTED ")
    send_id = int(line.split()[1])
    _kill(proc)
    with workspace_tx(tenant.conn, tenant.workspace_id):
        row = tenant.conn.execute(
            "SELECT state FROM outbound_messages WHERE id = %s", (send_id,)
        ).fetchone()
    assert row is not None and row[0] == "sending"  # the crash left it undecided
    assert len(mail_world.handler.messages()) == 4  # ... though the server has it
    time.sleep(1.1)  # let the dead worker's lease expire
    result = _finish(_start(tenant, mail_world))
    assert result["settled_sent"] >= 1
    counts = _counts(mail_world)
    assert len(counts) == LEADS * STEPS
    assert set(counts.values()) == {1}
    with workspace_tx(tenant.conn, tenant.workspace_id):
        states = dict(
            tenant.conn.execute(
                "SELECT state, count(*) FROM outbound_messages GROUP BY state"
            ).fetchall()
        )
    assert states == {"sent": LEADS * STEPS}


def test_sigkill_at_random_moments(tenant: Tenant, mail_world: MailWorld) -> None:
    """Killed five times at random points of its work and restarted: still exactly once."""
    _campaign(tenant, mail_world)
    rng = random.Random(6)
    for _ in range(5):
        proc = _start(tenant, mail_world)
        time.sleep(rng.uniform(0.02, 0.4))
        if proc.poll() is None:
            _kill(proc, must_be_running=False)
        else:
            _finish(proc)
        time.sleep(1.1)
    _finish(_start(tenant, mail_world))
    counts = _counts(mail_world)
    with workspace_tx(tenant.conn, tenant.workspace_id):
        rows = tenant.conn.execute(
            "SELECT e.lead_id, e.status, e.next_position, e.due_at, o.position, o.state,"
            " o.attempts FROM enrollments e LEFT JOIN outbound_messages o"
            " ON o.enrollment_id = e.id ORDER BY 1, 5"
        ).fetchall()
    assert len(counts) == LEADS * STEPS, (sorted(counts), rows)
    assert set(counts.values()) == {1}


def test_crash_without_provider_copy_is_never_resent(tenant: Tenant, mail_world: MailWorld) -> None:
    """Where the provider keeps no Sent copy and the engine died before filing its own, the
    outcome cannot be known: the row becomes 'uncertain' and is never sent again (at most
    once), while every other message still goes out exactly once."""
    mail_world.handler.file_sent = None
    _campaign(tenant, mail_world, sent_copy="append")
    proc = _start(tenant, mail_world, hang_after=2)
    assert proc.stdout is not None
    send_id = int(proc.stdout.readline().split()[1])
    _kill(proc)
    time.sleep(1.1)
    result = _finish(_start(tenant, mail_world))
    assert result["settled_uncertain"] == 1
    with workspace_tx(tenant.conn, tenant.workspace_id):
        state = tenant.conn.execute(
            "SELECT state FROM outbound_messages WHERE id = %s", (send_id,)
        ).fetchone()
    assert state is not None and state[0] == "uncertain"
    counts = _counts(mail_world)
    assert set(counts.values()) == {1}
    # the uncertain lead's step 1 reached the server once; its step 2 waits for a person
    assert len(counts) == LEADS * STEPS - 1
