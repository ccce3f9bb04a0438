"""The scheduled tenant jobs (backup, retention) as seen from the control plane.

    EventBridge Scheduler ─> state machine (infra/aws/backup.asl.json, retention.asl.json)
        ListTenants   aws-sdk:dynamodb:scan of the registry (running tenants, slugs only)
        Map (bounded) per tenant:
            sqs:sendMessage.waitForTaskToken  {tenant, job, token}  ─> jobs queue
                └─ dispatcher Lambda (`dispatch_jobs` here) asks a JobRunner to start the job
                   with the token: in AWS a signed request to the tenant's running app
                   (HttpJobRunner), in `make up` a local process; the job runs inside the
                   tenant's boundary and answers SendTaskSuccess with metadata only
            Retry with backoff, Catch ─> dynamodb:putItem into the ledger (succeeded | failed)

Why a queue and not `ecs:runTask.waitForTaskToken` straight from the state machine: the
dispatcher keeps the state machine independent of the launcher (ECS in AWS, local processes in
`make up`), and moto, which the tests execute the exact definitions on, does not translate the
optimized ECS integration's parameters (it passes `Cluster` to boto3 unchanged).

The ledger holds, per tenant and run: time, size, SHA-256 of the ciphertext, destination kind,
outcome and error reason. No content, no key. Every write from Python goes through
`_check_allowed`; the state machines' putItem states use only allowlisted names (a unit test
reads them from the .asl.json files), and a functional test scans the table.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import InvalidInput, LaunchError, RegistryError
from chalicelib.registry import now_iso

log = logging.getLogger(__name__)

JOBS = ("backup", "retention")
OUTCOMES = ("succeeded", "failed")


@dataclass(frozen=True)
class LedgerEntry:
    """One outcome of one job for one tenant. Every field name is an allowlisted attribute."""

    tenant: str
    recorded_at: str
    job: str
    outcome: str
    execution: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    size: int | None = None
    sha256: str | None = None
    destination_kind: str | None = None
    error: str | None = None
    reason: str | None = None
    stage_runs_shredded: int | None = None
    audit_segments_pruned: int | None = None
    backups_deleted: int | None = None


LEDGER_ATTRIBUTES: frozenset[str] = frozenset(f.name for f in dataclasses.fields(LedgerEntry))
_INT_FIELDS = ("size", "stage_runs_shredded", "audit_segments_pruned", "backups_deleted")
MAX_REASON = 1000


def _check_allowed(names: Iterable[str]) -> None:
    extra = sorted(set(names) - LEDGER_ATTRIBUTES)
    if extra:
        raise RegistryError(f"refusing to store non-allowlisted ledger attributes: {extra}")


_ser = TypeSerializer()
_de = TypeDeserializer()


def _from_item(item: Mapping[str, Any]) -> LedgerEntry:
    plain = {k: _de.deserialize(v) for k, v in item.items() if k in LEDGER_ATTRIBUTES}
    for key in _INT_FIELDS:
        if key in plain:
            plain[key] = int(plain[key])
    return LedgerEntry(**plain)


class BackupLedger:
    """Typed gateway over the ledger table (hash key tenant, range key recorded_at)."""

    def __init__(self, dynamodb: Any, table: str, clock: Callable[[], str] = now_iso) -> None:
        self._db = dynamodb
        self._table = table
        self._clock = clock

    @property
    def table(self) -> str:
        return self._table

    def ensure_table(self) -> None:
        """CloudFormation creates it in AWS; `make up` and the tests call this."""
        try:
            self._db.create_table(
                TableName=self._table,
                AttributeDefinitions=[
                    {"AttributeName": "tenant", "AttributeType": "S"},
                    {"AttributeName": "recorded_at", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "tenant", "KeyType": "HASH"},
                    {"AttributeName": "recorded_at", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise RegistryError(f"could not create the backup ledger table: {exc}") from exc

    def record(self, entry: LedgerEntry) -> LedgerEntry:
        if entry.job not in JOBS or entry.outcome not in OUTCOMES:
            raise InvalidInput(f"unknown job {entry.job!r} or outcome {entry.outcome!r}")
        if not entry.recorded_at:
            entry = dataclasses.replace(entry, recorded_at=self._clock())
        if entry.reason is not None and len(entry.reason) > MAX_REASON:
            entry = dataclasses.replace(entry, reason=entry.reason[:MAX_REASON])
        values = {k: v for k, v in dataclasses.asdict(entry).items() if v is not None}
        _check_allowed(values)
        try:
            self._db.put_item(
                TableName=self._table, Item={k: _ser.serialize(v) for k, v in values.items()}
            )
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"could not write to the backup ledger: {exc}") from exc
        return entry

    def record_result(self, result: Mapping[str, Any], job: str = "backup") -> LedgerEntry:
        """Record a tenant's reported result (the JSON line `paitho-tenant backup` prints);
        anything outside the allowlist in it is dropped, not stored."""
        fields = {k: v for k, v in result.items() if k in LEDGER_ATTRIBUTES}
        fields.setdefault("recorded_at", "")
        return self.record(LedgerEntry(job=job, **fields))

    def list(self, tenant: str, limit: int = 50) -> list[LedgerEntry]:
        """A tenant's entries, newest first."""
        try:
            resp = self._db.query(
                TableName=self._table,
                KeyConditionExpression="tenant = :t",
                ExpressionAttributeValues={":t": {"S": tenant}},
                ScanIndexForward=False,
                Limit=limit,
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"the backup ledger is unavailable: {exc}") from exc
        return [_from_item(item) for item in resp.get("Items", [])]

    def raw_items(self) -> builtins.list[dict[str, Any]]:
        """Every stored item as plain values (for the allowlist proof)."""
        items: builtins.list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        while True:
            resp = self._db.scan(**kwargs)
            items += [{k: _de.deserialize(v) for k, v in i.items()} for i in resp["Items"]]
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


# -- the dispatcher: queue message -> the tenant's own task -------------------------------------
@dataclass(frozen=True)
class JobRequest:
    tenant: str
    job: str
    token: str
    execution: str = ""


def parse_job_message(body: str) -> JobRequest:
    try:
        data = json.loads(body)
        request = JobRequest(
            tenant=str(data["tenant"]),
            job=str(data["job"]),
            token=str(data["token"]),
            execution=str(data.get("execution", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("a job message needs tenant, job and token") from exc
    if request.job not in JOBS:
        raise InvalidInput(f"unknown job {request.job!r}")
    return request


class JobRunner(Protocol):
    def start(self, request: JobRequest) -> str:
        """Start the tenant's own task for the job; return a handle. Raise LaunchError."""
        ...


TOKEN_ENV = "PAITHO_TASK_TOKEN"  # noqa: S105 (the name of a variable)


class EcsJobRunner:
    """Runs `paitho-tenant <job>` as a one-off task of the tenant task definition (family
    `paitho-tenant`, the one chalicelib/launchers/ecs.py registers), with the tenant's slug and
    the callback token in the app container's environment.

    Not used in production any more: in the tenants.yaml layout the tenant's PostgreSQL listens
    on 127.0.0.1 inside the tenant's *running* task and its volume attaches to that task only,
    so a separate task cannot reach the database. HttpJobRunner (below) replaces it."""

    def __init__(
        self,
        ecs: Any,
        cluster: str,
        subnets: list[str],
        security_groups: list[str],
        family: str = "paitho-tenant",
        container: str = "app",
    ) -> None:
        self._ecs, self._cluster = ecs, cluster
        self._subnets, self._security_groups = subnets, security_groups
        self._family, self._container = family, container

    def start(self, request: JobRequest) -> str:
        try:
            resp = self._ecs.run_task(
                cluster=self._cluster,
                taskDefinition=self._family,
                launchType="FARGATE",
                startedBy=f"paitho-{request.job}",
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": self._subnets,
                        "securityGroups": self._security_groups,
                        "assignPublicIp": "DISABLED",
                    }
                },
                overrides={
                    "containerOverrides": [
                        {
                            "name": self._container,
                            "command": ["paitho-tenant", request.job],
                            "environment": [
                                {"name": "PAITHO_TENANT_SLUG", "value": request.tenant},
                                {"name": TOKEN_ENV, "value": request.token},
                            ],
                        }
                    ]
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"could not start the {request.job} task: {exc}") from exc
        if resp.get("failures") or not resp.get("tasks"):
            reasons = ", ".join(f.get("reason", "?") for f in resp.get("failures", []))
            raise LaunchError(f"ECS did not start the {request.job} task: {reasons or 'no task'}")
        return str(resp["tasks"][0]["taskArn"])


def ecs_runner_from_env(ecs: Any, environ: Mapping[str, str]) -> EcsJobRunner:
    """The dispatcher Lambda's runner, from the variables workflows.yaml sets (called once, in
    the composition root, with os.environ)."""
    try:
        return EcsJobRunner(
            ecs,
            cluster=environ["PAITHO_TENANT_CLUSTER"],
            subnets=[s for s in environ["PAITHO_TENANT_SUBNETS"].split(",") if s],
            security_groups=[environ["PAITHO_TENANT_SECURITY_GROUP"]],
            family=environ.get("PAITHO_TENANT_TASK_FAMILY", "paitho-tenant"),
        )
    except KeyError as exc:
        raise InvalidInput(f"the job dispatcher needs the environment variable {exc}") from exc


# -- production: the job runs inside the tenant's running task ----------------------------------
# Design (issue 5). The tenant's PostgreSQL listens on 127.0.0.1 inside its running task and its
# data volume is attached to that task, so no other task can do the work. The dispatcher instead
# asks the running tenant app: `POST http://{origin_host}:{origin_port}/internal/jobs/{job}` (the
# private origin the launcher records in the registry) with body {"token", "execution"}. The
# tenant (paitho_tenant/jobs.py) answers 202, runs the job in a background thread with its own
# admin conninfo, destination and recipient (PAITHO_BACKUP_TO / PAITHO_BACKUP_RECIPIENT), and
# reports SendTaskSuccess with the token exactly as `paitho-tenant backup` does.
#
# Authentication: header `X-Paitho-Job-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 over
# "<t>." + body>` with a per-deployment key (PAITHO_JOBS_KEY, from SSM; the launcher passes it
# in the task's environment). Threat model: the key is not customer data and the customer may
# see it in their own task; the token is unguessable and the job's output is encrypted to the
# customer's own key, so a forged request could at most trigger an extra backup or retention
# run. The signature keeps anyone else on the network from doing even that; the timestamp
# window (JOB_SIGNATURE_MAX_AGE) bounds replays, and the tenant runs one job of a kind at a time.
JOB_SIGNATURE_HEADER = "X-Paitho-Job-Signature"
JOB_SIGNATURE_MAX_AGE = 300
JOBS_KEY_ENV = "PAITHO_JOBS_KEY"


def sign_job(key: bytes, body: bytes, timestamp: int) -> str:
    """The signature header's value for a job request body."""
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


Poster = Callable[[str, bytes, Mapping[str, str], float], int]


def urllib_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST with the standard library; returns the HTTP status (raises OSError if unreachable)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def registry_origin(registry: Any) -> Callable[[str], tuple[str, int]]:
    """The private origin of a running tenant, from the registry (raises LaunchError)."""

    def lookup(slug: str) -> tuple[str, int]:
        record = registry.find(slug)
        if record is None or record.state != "running":
            raise LaunchError(f"tenant {slug!r} is not running")
        if not record.origin_host or record.origin_port is None:
            raise LaunchError(f"tenant {slug!r} has no private origin yet")
        return str(record.origin_host), int(record.origin_port)

    return lookup


class HttpJobRunner:
    """Asks the tenant's running app to run the job (see the design note above)."""

    def __init__(
        self,
        origin_of: Callable[[str], tuple[str, int]],
        key: bytes,
        post: Poster = urllib_post,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        if not key:
            raise InvalidInput("the job dispatcher needs a signing key")
        self._origin_of, self._key, self._post = origin_of, key, post
        self._clock, self._timeout = clock, timeout

    def start(self, request: JobRequest) -> str:
        host, port = self._origin_of(request.tenant)
        body = json.dumps({"token": request.token, "execution": request.execution}).encode()
        headers = {
            "Content-Type": "application/json",
            JOB_SIGNATURE_HEADER: sign_job(self._key, body, int(self._clock())),
        }
        url = f"http://{host}:{port}/internal/jobs/{request.job}"
        try:
            status = self._post(url, body, headers, self._timeout)
        except OSError as exc:
            raise LaunchError(f"tenant {request.tenant!r} did not answer: {exc}") from exc
        if status != 202:
            raise LaunchError(f"tenant {request.tenant!r} refused the {request.job} job: {status}")
        return f"http:{host}:{port}"


def http_runner_from_env(registry: Any, environ: Mapping[str, str]) -> HttpJobRunner:
    """The dispatcher Lambda's runner: the registry's origins and the key in PAITHO_JOBS_KEY."""
    key = environ.get(JOBS_KEY_ENV, "")
    if not key:
        raise InvalidInput(f"the job dispatcher needs the environment variable {JOBS_KEY_ENV}")
    return HttpJobRunner(registry_origin(registry), key.encode())


class SubprocessJobRunner:
    """The local platform's runner: `paitho-tenant <job>` as a process with the tenant's
    environment (its database, its destination and recipient) and the callback token."""

    def __init__(
        self,
        command_for: Callable[[JobRequest], tuple[list[str], dict[str, str]]],
        spawn: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    ) -> None:
        self._command_for = command_for
        self._spawn = spawn
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, request: JobRequest) -> str:
        argv, env = self._command_for(request)  # raises LaunchError for an unknown tenant
        proc = self._spawn(
            argv,
            env={**os.environ, **env, TOKEN_ENV: request.token},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(proc)
        return f"pid:{proc.pid}"

    def wait(self, timeout: float = 120) -> None:
        for proc in self.processes:
            proc.wait(timeout)


def dispatch_jobs(records: Iterable[Mapping[str, Any]], runner: JobRunner, sfn: Any) -> list[str]:
    """The SQS-triggered Lambda body: start each tenant's task, or fail its token at once.

    Returns the message ids that should be retried by SQS (batch item failures): only those
    whose failure could not even be reported to Step Functions."""
    retry: list[str] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            request = parse_job_message(str(record.get("body", "")))
        except InvalidInput as exc:
            log.error(json.dumps({"event": "bad_job_message", "reason": exc.message}))
            continue  # malformed: retrying cannot help
        try:
            handle = runner.start(request)
            log.info(json.dumps({"event": "job_started", "tenant": request.tenant,
                                 "job": request.job, "handle": handle}))  # fmt: skip
        except LaunchError as exc:
            log.warning(json.dumps({"event": "job_not_started", "tenant": request.tenant,
                                    "job": request.job, "reason": exc.message}))  # fmt: skip
            try:
                sfn.send_task_failure(
                    taskToken=request.token,
                    error="Job.TaskNotStarted",
                    cause=exc.message[:MAX_REASON],
                )
            except (ClientError, BotoCoreError):
                log.exception("could not report a job that did not start")
                retry.append(message_id)
    return retry


def poll_jobs(sqs: Any, queue_url: str, runner: JobRunner, sfn: Any, wait_s: int = 1) -> int:
    """One long poll of the jobs queue (the local platform's stand-in for the Lambda event
    source mapping). Returns the number of messages handled."""
    resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s)
    messages = resp.get("Messages", [])
    records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
    retry = set(dispatch_jobs(records, runner, sfn))
    for message in messages:
        if message["MessageId"] not in retry:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


# -- the same workflows on the local platform (`make up`) --------------------------------------
@dataclass(frozen=True)
class Workflows:
    """Where the deployed (or locally installed) workflows live."""

    backup_arn: str
    retention_arn: str
    queue_url: str
    ledger_table: str
    registry_table: str


def install_workflows(
    sfn: Any,
    sqs: Any,
    ledger: BackupLedger,
    registry_table: str,
    definitions: Mapping[str, str],
    role_arn: str,
    prefix: str = "paitho",
) -> Workflows:
    """Create the queue, the ledger table and both state machines from the .asl.json texts
    (`definitions["backup"]`, `definitions["retention"]`) on a local endpoint. Idempotent.
    In AWS, infra/aws/workflows.yaml does this instead."""
    queue_url = sqs.create_queue(QueueName=f"{prefix}-jobs")["QueueUrl"]
    ledger.ensure_table()
    arns: dict[str, str] = {}
    existing = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    for job in JOBS:
        name = f"{prefix}-{job}"
        if name in existing:
            sfn.update_state_machine(stateMachineArn=existing[name], definition=definitions[job])
            arns[job] = existing[name]
        else:
            arns[job] = sfn.create_state_machine(
                name=name, definition=definitions[job], roleArn=role_arn
            )["stateMachineArn"]
    return Workflows(arns["backup"], arns["retention"], queue_url, ledger.table, registry_table)


def run_workflow(
    sfn: Any,
    sqs: Any,
    workflows: Workflows,
    job: str,
    runner: JobRunner,
    *,
    page_size: int = 500,
    task_timeout_seconds: int = 14400,
    name: str,
    deadline_s: float = 6 * 3600,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Start one execution (what the schedule does) and serve its jobs queue until it ends
    (what the dispatcher Lambda does). Returns describe_execution's answer."""
    pause = sleep or time.sleep
    arn = workflows.backup_arn if job == "backup" else workflows.retention_arn
    execution = sfn.start_execution(
        stateMachineArn=arn,
        name=name,
        input=json.dumps(
            {
                "registry_table": workflows.registry_table,
                "page_size": page_size,
                "ledger_table": workflows.ledger_table,
                "jobs_queue_url": workflows.queue_url,
                "task_timeout_seconds": task_timeout_seconds,
            }
        ),
    )["executionArn"]
    started = time.monotonic()
    while (desc := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        if time.monotonic() - started > deadline_s:
            sfn.stop_execution(executionArn=execution, error="Local.Deadline")
            continue
        if not poll_jobs(sqs, workflows.queue_url, runner, sfn, wait_s=0):
            pause(0.1)
    return dict(desc)
