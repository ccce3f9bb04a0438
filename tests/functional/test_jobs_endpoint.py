"""The production job path (issue 5): the dispatcher's signed request reaches the running
tenant app, which runs the backup/retention inside its own boundary and reports the token."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from paitho_tenant.restore import decrypt

from chalicelib.backups import (
    JOB_SIGNATURE_HEADER,
    HttpJobRunner,
    JobRequest,
    sign_job,
    urllib_post,
)
from chalicelib.errors import LaunchError
from tests.conftest import RunningCluster, free_port
from tests.functional.test_backup_support import KeyPair, customer_keys_fixture  # noqa: F401
from tests.functional.test_tenant_support import (
    client_for,
    make_app,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional

KEY = b"test-deployment-jobs-key"


class Reports:
    """The injected Step Functions reporter: (token, output JSON) pairs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.arrived = threading.Event()

    def __call__(self, token: str, output: str) -> None:
        self.calls.append((token, json.loads(output)))
        self.arrived.set()


@pytest.fixture
def served(
    tenant_cluster: RunningCluster,  # noqa: F811
    customer_keys: KeyPair,
    work_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[httpx.Client, Reports, Path]]:
    nas = work_root / f"jobs-nas-{free_port()}"
    monkeypatch.setenv("PAITHO_JOBS_KEY", KEY.decode())
    monkeypatch.setenv("PAITHO_BACKUP_TO", f"file://{nas}")
    monkeypatch.setenv("PAITHO_BACKUP_RECIPIENT", str(customer_keys.public_file))
    app = make_app(tenant_cluster)
    reports = Reports()
    app.state.job_reporter = reports
    with client_for(app) as client:
        yield client, reports, nas


def _runner(client: httpx.Client, key: bytes = KEY) -> HttpJobRunner:
    url = client.base_url
    return HttpJobRunner(lambda slug: (str(url.host), int(url.port or 80)), key)


def test_unsigned_or_badly_signed_requests_start_nothing(
    served: tuple[httpx.Client, Reports, Path],
) -> None:
    """No, a wrong-key or a stale signature gets 401 and no job runs; the dispatcher sees a
    LaunchError (so it fails the token at once)."""
    client, reports, nas = served
    body = json.dumps({"token": "tok-x", "execution": ""}).encode()
    url = f"http://{client.base_url.host}:{client.base_url.port}/internal/jobs/backup"
    plain = {"Content-Type": "application/json"}
    assert urllib_post(url, body, plain, 10) == 401
    wrong = {**plain, JOB_SIGNATURE_HEADER: sign_job(b"other-key", body, int(time.time()))}
    assert urllib_post(url, body, wrong, 10) == 401
    stale = {**plain, JOB_SIGNATURE_HEADER: sign_job(KEY, body, int(time.time()) - 3600)}
    assert urllib_post(url, body, stale, 10) == 401
    tampered = {**plain, JOB_SIGNATURE_HEADER: sign_job(KEY, body, int(time.time()))}
    assert urllib_post(url, body.replace(b"tok-x", b"tok-y"), tampered, 10) == 401
    with pytest.raises(LaunchError, match="refused the backup job: 401"):
        _runner(client, b"other-key").start(JobRequest("acme", "backup", "tok-x"))
    assert not reports.arrived.wait(1.0)
    assert not nas.exists()


def test_signed_backup_runs_in_the_tenant_and_reports_the_token(
    served: tuple[httpx.Client, Reports, Path], customer_keys: KeyPair
) -> None:
    """A signed request (no Origin, as the dispatcher sends it) gets 202; the tenant backs up
    to its own destination encrypted to the customer's key and reports success with the
    token and metadata only."""
    client, reports, nas = served
    handle = _runner(client).start(JobRequest("acme", "backup", "tok-backup-1", "exec-1"))
    assert handle.startswith("http:127.0.0.1:")
    assert reports.arrived.wait(120)
    [(token, output)] = reports.calls
    assert token == "tok-backup-1"
    assert output["outcome"] == "succeeded", output
    assert output["tenant"] == "acme" and output["destination_kind"] == "file"
    assert set(output) <= {
        "tenant", "started_at", "finished_at", "size", "sha256",
        "destination_kind", "object_name", "outcome",
    }  # fmt: skip
    stored = (nas / str(output["object_name"])).read_bytes()
    assert len(stored) == output["size"]
    plaintext = b"".join(decrypt(io.BytesIO(stored), customer_keys.private_pem))
    assert plaintext.startswith(b"PAITHO-BACKUP-1\n")


def test_signed_retention_runs_and_reports(served: tuple[httpx.Client, Reports, Path]) -> None:
    """A signed retention request runs retention inside the tenant and reports success."""
    client, reports, _ = served
    _runner(client).start(JobRequest("acme", "retention", "tok-retention-1"))
    assert reports.arrived.wait(60)
    [(token, output)] = reports.calls
    assert token == "tok-retention-1" and output["outcome"] == "succeeded", output


def test_without_a_key_the_endpoint_does_not_exist(
    tenant_cluster: RunningCluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tenant started without PAITHO_JOBS_KEY answers 404, even to a signed request."""
    monkeypatch.delenv("PAITHO_JOBS_KEY", raising=False)
    with client_for(make_app(tenant_cluster)) as client, pytest.raises(LaunchError, match="404"):
        _runner(client).start(JobRequest("acme", "backup", "tok-z"))
