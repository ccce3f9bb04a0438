"""The exact infra/aws/*.asl.json state machines executed on moto's server: fan-out over the
registry, real tenant backups reporting through task tokens, per-tenant failure isolation and
the outcomes recorded in the ledger."""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chalicelib.backups import (
    LEDGER_ATTRIBUTES,
    BackupLedger,
    JobRequest,
    SubprocessJobRunner,
    install_workflows,
    run_workflow,
)
from chalicelib.errors import LaunchError
from chalicelib.registry import Registry, TenantRecord
from tests.conftest import free_port
from tests.functional.test_backup_support import (  # noqa: F401  (fixtures)
    KeyPair,
    customer_keys_fixture,
    make_tenant_db,
)
from tests.functional.test_tenant_support import (  # noqa: F401  (fixtures)
    tenant_cluster,
    tenant_template,
)

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
AWS = REPO / "infra" / "aws"
ROLE = "arn:aws:iam::123456789012:role/paitho-workflows"


@pytest.fixture
def sfn_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto's ASL interpreter calls services at localhost:$MOTO_PORT; point it at our server."""
    monkeypatch.setenv("MOTO_PORT", moto_endpoint.rsplit(":", 1)[1])
    return moto_endpoint


def _setup(aws_client: Any, unique: str, tenants: dict[str, str]) -> dict[str, Any]:
    """Registry with these tenants, then the workflows installed from the exact .asl.json
    files the way the local platform does it (install_workflows)."""
    ddb = aws_client("dynamodb")
    registry = Registry(ddb, f"registry-{unique}")
    registry.ensure_table()
    for slug, state in tenants.items():
        registry.create(TenantRecord(slug=slug, plan="team", region="eu-west-1", state=state))
    ledger = BackupLedger(ddb, f"ledger-{unique}")
    definitions = {job: (AWS / f"{job}.asl.json").read_text() for job in ("backup", "retention")}
    workflows = install_workflows(
        aws_client("stepfunctions"), aws_client("sqs"), ledger, f"registry-{unique}",
        definitions, ROLE, prefix=f"p-{unique}",
    )  # fmt: skip
    again = install_workflows(
        aws_client("stepfunctions"), aws_client("sqs"), ledger, f"registry-{unique}",
        definitions, ROLE, prefix=f"p-{unique}",
    )  # fmt: skip
    assert again == workflows  # idempotent: the local platform installs on every start
    return {"ledger": ledger, "workflows": workflows}


def _execute(aws_client: Any, job: str, unique: str, env: dict[str, Any], runner: Any) -> Any:
    return run_workflow(
        aws_client("stepfunctions"),
        aws_client("sqs"),
        env["workflows"],
        job,
        runner,
        page_size=2,  # several pages: the machine must follow LastEvaluatedKey
        task_timeout_seconds=60,
        name=f"nightly-{unique}",  # AWS generates one; moto leaves $$.Execution.Name null
        deadline_s=120,
    )


def test_backup_machine_isolates_failures_and_records_outcomes(
    sfn_env: str,
    aws_client: Any,
    unique: str,
    pg_cluster: Any,
    customer_keys: KeyPair,
    work_root: Path,
) -> None:
    """Two tenants back up for real; one whose task cannot start and one whose destination is
    unreachable are retried, then recorded failed with a reason; a suspended one is skipped."""
    acme = make_tenant_db(pg_cluster, rows=10)
    with psycopg.connect(pg_cluster.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE beta")
    with psycopg.connect(pg_cluster.conninfo("beta"), autocommit=True) as conn:
        conn.execute("CREATE TABLE notes AS SELECT g AS id FROM generate_series(1, 100) g")
    env = _setup(
        aws_client,
        unique,
        {"acme": "running", "beta": "running", "ghost": "running", "offline": "running",
         "sleepy": "suspended"},
    )  # fmt: skip
    nas = work_root / f"wf-{unique}"
    databases = {
        "acme": (acme.conninfo, f"file://{nas}"),
        "beta": (pg_cluster.conninfo("beta"), f"file://{nas}"),
        "offline": (
            pg_cluster.conninfo("beta"),
            f"s3://b/p?endpoint_url=http://localhost:{free_port()}&region=us-east-1",
        ),
    }
    started: Counter[str] = Counter()

    def command_for(request: JobRequest) -> tuple[list[str], dict[str, str]]:
        started[request.tenant] += 1
        if request.tenant not in databases:
            raise LaunchError(f"tenant {request.tenant} has no task definition")
        conninfo, url = databases[request.tenant]
        argv = [sys.executable, "-m", "paitho_tenant.backup_cli", request.job, "--to", url,
                "--recipient", str(customer_keys.public_file), "--db", conninfo,
                "--tenant", request.tenant, "--attempts", "2", "--backoff", "0.1"]  # fmt: skip
        return argv, {"AWS_ENDPOINT_URL": sfn_env, "PYTHONPATH": str(REPO)}

    runner = SubprocessJobRunner(command_for)
    try:
        desc = _execute(aws_client, "backup", unique, env, runner)
    finally:
        runner.wait()
    assert desc["status"] == "SUCCEEDED", desc
    ledger: BackupLedger = env["ledger"]
    entries = {t: ledger.list(t) for t in ("acme", "beta", "ghost", "offline", "sleepy")}
    assert {t: [e.outcome for e in es] for t, es in entries.items()} == {
        "acme": ["succeeded"],
        "beta": ["succeeded"],
        "ghost": ["failed"],
        "offline": ["failed"],
        "sleepy": [],
    }
    for tenant in ("acme", "beta"):
        entry = entries[tenant][0]
        (stored,) = (nas / tenant).iterdir()
        blob = stored.read_bytes()
        assert (entry.size, entry.sha256) == (len(blob), hashlib.sha256(blob).hexdigest())
        assert entry.destination_kind == "file" and entry.job == "backup"
    ghost, offline = entries["ghost"][0], entries["offline"][0]
    # The dispatcher's reason travels as the task failure's Cause, which moto's server drops
    # (its SendTaskFailure handler reads only `error`); AWS keeps it. So only the name here.
    assert ghost.error == "Job.TaskNotStarted"
    assert offline.error == "Job.DestinationUnavailable"
    assert "cannot reach the S3 endpoint" in (offline.reason or "")
    assert offline.size is None and offline.sha256 is None
    history = aws_client("stepfunctions").get_execution_history(
        executionArn=desc["executionArn"], maxResults=1000
    )["events"]
    # ghost: the first try and 2 retries with backoff, then the Catch. (moto reuses the task
    # token across retries and may replay the previous failure, so the dispatcher can see
    # fewer starts than the state machine counts attempts.)
    assert sum(e["type"] == "TaskFailed" for e in history) == 3
    assert 2 <= started["ghost"] <= 3
    assert (started["acme"], started["beta"], started["offline"]) == (1, 1, 1)
    for item in ledger.raw_items():
        assert set(item) <= LEDGER_ATTRIBUTES


def test_retention_machine_fans_out_and_records_counts(
    sfn_env: str,
    aws_client: Any,
    unique: str,
    tenant_cluster: Any,  # noqa: F811
    work_root: Path,
) -> None:
    """The retention machine runs the real `paitho-tenant retention` on a migrated tenant that
    is sealed (never even set up: no passphrase anywhere) and records its counts; a tenant
    whose task cannot start is recorded failed while the other succeeds."""
    env = _setup(aws_client, unique, {"acme": "running", "ghost": "running"})

    def command_for(request: JobRequest) -> tuple[list[str], dict[str, str]]:
        if request.tenant == "ghost":
            raise LaunchError("tenant ghost has no task definition")
        nas = f"file://{work_root}/ret-{unique}"
        argv = [sys.executable, "-m", "paitho_tenant.backup_cli", request.job,
                "--db", tenant_cluster.conninfo(), "--tenant", request.tenant,
                "--to", nas, "--keep-backups-days", "30"]  # fmt: skip
        return argv, {"AWS_ENDPOINT_URL": sfn_env, "PYTHONPATH": str(REPO)}

    runner = SubprocessJobRunner(command_for)
    try:
        desc = _execute(aws_client, "retention", unique, env, runner)
    finally:
        runner.wait()
    assert desc["status"] == "SUCCEEDED", desc
    ledger: BackupLedger = env["ledger"]
    (acme,) = ledger.list("acme")
    assert (acme.job, acme.outcome, acme.stage_runs_shredded, acme.audit_segments_pruned,
            acme.backups_deleted) == ("retention", "succeeded", 0, 0, 0)  # fmt: skip
    assert acme.started_at and acme.finished_at
    (ghost,) = ledger.list("ghost")
    assert (ghost.outcome, ghost.error) == ("failed", "Job.TaskNotStarted")
