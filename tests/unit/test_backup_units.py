"""Pure parts of backups: destination URLs, object names, result and ledger allowlists, the
payload frame and the job dispatcher's decisions (fakes, no I/O)."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from paitho_tenant.backup import MAGIC, RESULT_FIELDS, BackupResult, Payload, object_name
from paitho_tenant.destinations import InvalidBackupRequest, parse_url, split_object_url

from chalicelib.backups import (
    LEDGER_ATTRIBUTES,
    BackupLedger,
    JobRequest,
    LedgerEntry,
    dispatch_jobs,
    parse_job_message,
)
from chalicelib.errors import InvalidInput, LaunchError, RegistryError


def test_parse_s3_url_with_endpoint_and_region() -> None:
    """s3:// gives bucket, prefix and the endpoint/region options (B2, MinIO, moto)."""
    spec = parse_url("s3://bkt/a/b/?endpoint_url=http://minio:9000&region=eu-central-1")
    assert (spec.kind, spec.host, spec.path) == ("s3", "bkt", "a/b")
    assert spec.option("endpoint_url") == "http://minio:9000"
    assert spec.option("region") == "eu-central-1"


def test_parse_sftp_url_with_user_port_key() -> None:
    """sftp:// gives user, host, port, absolute path and the key/known_hosts options."""
    spec = parse_url("sftp://nas@10.0.0.5:2222/volume1/backups?key=/k/id&known_hosts=/k/kh")
    assert (spec.kind, spec.user, spec.host, spec.port, spec.path) == (
        "sftp",
        "nas",
        "10.0.0.5",
        2222,
        "/volume1/backups",
    )
    assert (spec.option("key"), spec.option("known_hosts")) == ("/k/id", "/k/kh")


@pytest.mark.parametrize(
    "url",
    ["ftp://x/y", "file://host/path", "file:relative", "s3:///nobucket", "sftp://host"],
)
def test_bad_urls_say_what_to_use(url: str) -> None:
    """Unsupported or incomplete destination URLs are refused with a usable message."""
    with pytest.raises(InvalidBackupRequest):
        parse_url(url)


def test_split_object_url_keeps_query_options() -> None:
    """An object URL splits into its destination URL (options kept) and object name."""
    base, name = split_object_url("s3://b/p/acme/x.pgdump.aesdk?endpoint_url=http://h:1")
    assert (base, name) == ("s3://b/p/acme?endpoint_url=http://h:1", "x.pgdump.aesdk")
    assert split_object_url("file:///srv/nas/acme/x.aesdk") == ("file:///srv/nas/acme", "x.aesdk")
    with pytest.raises(InvalidBackupRequest):
        split_object_url("file:///srv/nas/")


def test_object_names_sort_by_time_under_the_tenant() -> None:
    """Object names live under the tenant's prefix and sort chronologically."""
    early = object_name("acme", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = object_name("acme", datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC))
    assert early.startswith("acme/acme-20260102T030405") and early.endswith(".pgdump.aesdk")
    assert early < late


def test_result_json_carries_metadata_fields_only() -> None:
    """A result serialises only allowlisted metadata, and every field is one the ledger keeps."""
    result = BackupResult(
        tenant="acme", started_at="t0", destination_kind="s3", outcome="failed",
        error="DestinationUnavailable", reason="cannot reach", attempts=3,
    )  # fmt: skip
    fields = json.loads(result.to_json())
    assert set(fields) <= set(RESULT_FIELDS)
    assert "attempts" not in fields
    assert set(RESULT_FIELDS) - {"object_name"} <= LEDGER_ATTRIBUTES


def test_payload_frames_roles_before_the_dump() -> None:
    """The encrypted payload is MAGIC, a length, the roles script, then the dump bytes."""
    payload = Payload(b"CREATE ROLE x;", io.BytesIO(b"PGDMP..."))
    data = b""
    while chunk := payload.read(5):
        data += chunk
    assert data.startswith(MAGIC)
    (length,) = struct.unpack(">Q", data[len(MAGIC) : len(MAGIC) + 8])
    assert data[len(MAGIC) + 8 : len(MAGIC) + 8 + length] == b"CREATE ROLE x;"
    assert data.endswith(b"PGDMP...")


class FakeDynamo:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_item(self, TableName: str, Item: dict[str, Any]) -> None:
        self.items.append(Item)


def test_ledger_drops_unknown_fields_of_a_reported_result() -> None:
    """A tenant-reported result is stored through the allowlist: unknown keys never land."""
    db = FakeDynamo()
    ledger = BackupLedger(db, "ledger", clock=lambda: "2026-01-01T00:00:00.000+00:00")
    ledger.record_result(
        {"tenant": "acme", "outcome": "succeeded", "size": 10, "sha256": "ab",
         "destination_kind": "file", "started_at": "t", "object_name": "n", "lead": "x"}
    )  # fmt: skip
    (item,) = db.items
    assert set(item) <= LEDGER_ATTRIBUTES and "lead" not in item
    assert item["recorded_at"] == {"S": "2026-01-01T00:00:00.000+00:00"}


def test_ledger_refuses_unknown_jobs_and_non_allowlisted_attributes() -> None:
    """record() rejects an unknown job; the allowlist check refuses extra attribute names."""
    ledger = BackupLedger(FakeDynamo(), "ledger")
    with pytest.raises(InvalidInput):
        ledger.record(LedgerEntry(tenant="a", recorded_at="t", job="exfiltrate", outcome="failed"))
    from chalicelib.backups import _check_allowed

    with pytest.raises(RegistryError):
        _check_allowed(["tenant", "prompt"])


def test_job_messages_need_tenant_job_and_token() -> None:
    """Job messages parse into requests; malformed or unknown jobs are refused."""
    req = parse_job_message('{"tenant": "acme", "job": "backup", "token": "t", "execution": "e"}')
    assert req == JobRequest("acme", "backup", "t", "e")
    for body in ("not json", '{"tenant": "a"}', '{"tenant": "a", "job": "rm", "token": "t"}'):
        with pytest.raises(InvalidInput):
            parse_job_message(body)


class FakeSfn:
    def __init__(self) -> None:
        self.failures: list[dict[str, str]] = []

    def send_task_failure(self, **kwargs: str) -> None:
        self.failures.append(kwargs)


class FakeRunner:
    def __init__(self) -> None:
        self.started: list[JobRequest] = []

    def start(self, request: JobRequest) -> str:
        if request.tenant == "ghost":
            raise LaunchError("no task definition for ghost")
        self.started.append(request)
        return "arn:task"


def test_dispatcher_starts_tasks_and_fails_tokens_of_tasks_that_cannot_start() -> None:
    """Each message starts its tenant's task; one that cannot start fails its token at once
    (Job.TaskNotStarted) without stopping the others; malformed messages are dropped."""
    runner, sfn = FakeRunner(), FakeSfn()
    records = [
        {"messageId": "1", "body": '{"tenant": "acme", "job": "backup", "token": "t1"}'},
        {"messageId": "2", "body": '{"tenant": "ghost", "job": "backup", "token": "t2"}'},
        {"messageId": "3", "body": "garbage"},
        {"messageId": "4", "body": '{"tenant": "beta", "job": "retention", "token": "t4"}'},
    ]
    assert dispatch_jobs(records, runner, sfn) == []
    assert [(r.tenant, r.job) for r in runner.started] == [
        ("acme", "backup"),
        ("beta", "retention"),
    ]
    assert sfn.failures == [
        {"taskToken": "t2", "error": "Job.TaskNotStarted", "cause": "no task definition for ghost"}
    ]
