"""The nightly workflows on the local platform: the same .asl.json state machines as AWS, run on
the local Step Functions endpoint (moto), with each tenant's job run as a `paitho-tenant`
process inside that tenant's boundary (its own cluster; the plaintext dump never leaves it).

Backups go to `$PAITHO_HOME/backups/{slug}/` (a stand-in for the customer's NAS) encrypted to
the customer's RSA public key at `$PAITHO_HOME/tenants/{slug}/backup-recipient.pem`; a tenant
without one is recorded as failed with that reason. Retention needs no key.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chalicelib import factory
from chalicelib.backups import (
    BackupLedger,
    JobRequest,
    SubprocessJobRunner,
    Workflows,
    install_workflows,
    run_workflow,
)
from chalicelib.errors import LaunchError
from chalicelib.registry import Registry
from chalicelib.settings import Settings
from paitho_local import compose

log = logging.getLogger(__name__)

ASL_DIR = Path(__file__).resolve().parents[2] / "aws"
LOCAL_ROLE = "arn:aws:iam::123456789012:role/paitho-workflows"
LEDGER_TABLE = "paitho-backup-ledger"


def recipient_path(settings: Settings, slug: str) -> Path:
    return settings.home / "tenants" / slug / "backup-recipient.pem"


class LocalWorkflows:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self._settings = settings
        self._registry = registry
        self._ddb = factory.aws_client(settings, "dynamodb")
        self._sfn = factory.aws_client(settings, "stepfunctions")
        self._sqs = factory.aws_client(settings, "sqs")
        self.ledger = BackupLedger(self._ddb, LEDGER_TABLE)

    def install(self) -> Workflows:
        definitions = {
            job: (ASL_DIR / f"{job}.asl.json").read_text() for job in ("backup", "retention")
        }
        return install_workflows(
            self._sfn, self._sqs, self.ledger, self._settings.tenants_table, definitions, LOCAL_ROLE
        )

    def command_for(self, request: JobRequest) -> tuple[list[str], dict[str, str]]:
        record = self._registry.get(request.tenant)
        if record.data_location is None or record.db_port is None:
            raise LaunchError(f"{request.tenant} has no local cluster")
        conninfo = (
            compose.launcher(self._settings)
            .cluster(request.tenant, record.db_port)
            .conninfo("paitho")
        )
        tool = str(Path(sys.executable).with_name("paitho-tenant"))
        argv = [tool, request.job, "--db", conninfo, "--tenant", request.tenant]
        if request.job == "backup":
            key = recipient_path(self._settings, request.tenant)
            if not key.exists():
                raise LaunchError(
                    f"no backup recipient key for {request.tenant}: put the customer's RSA public "
                    f"key (PEM) at {key}"
                )
            dest = self._settings.home / "backups" / request.tenant
            dest.mkdir(parents=True, exist_ok=True)
            argv += ["--to", f"file://{dest}", "--recipient", str(key)]
        return argv, {}

    def _spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Jobs log to $PAITHO_HOME/logs/jobs.log (metadata only: no dumps, no keys)."""
        log_path = self._settings.home / "logs" / "jobs.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            return subprocess.Popen(argv, **{**kwargs, "stdout": out, "stderr": out})

    def run(self, job: str) -> dict[str, Any]:
        workflows = self.install()
        runner = SubprocessJobRunner(self.command_for, spawn=self._spawn)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        try:
            return run_workflow(
                self._sfn, self._sqs, workflows, job, runner, name=f"{job}-{stamp}", deadline_s=3600
            )
        finally:
            runner.wait()


def nightly(
    workflows: LocalWorkflows, at_hour: int, stop: threading.Event, say: Callable[[str], None]
) -> None:
    """Run retention then backup once a day at `at_hour` UTC until `stop` is set."""
    while True:
        now = datetime.now(UTC)
        due = now.replace(hour=at_hour, minute=0, second=0, microsecond=0)
        if due <= now:
            due += timedelta(days=1)
        if stop.wait((due - now).total_seconds()):
            return
        for job in ("retention", "backup"):
            try:
                desc = workflows.run(job)
                say(f"nightly {job}: {desc['status']}")
            except Exception:  # keep the schedule alive; the ledger holds per-tenant outcomes
                log.exception("nightly %s failed", job)
