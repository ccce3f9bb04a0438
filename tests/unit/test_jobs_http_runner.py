"""HttpJobRunner: the signed request it sends to the tenant's private origin, and how it
turns refusals and unreachable tenants into LaunchError (no I/O: injected poster)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pytest
from paitho_tenant.jobs import signature_ok

from chalicelib.backups import (
    JOB_SIGNATURE_HEADER,
    HttpJobRunner,
    JobRequest,
    http_runner_from_env,
    registry_origin,
)
from chalicelib.errors import InvalidInput, LaunchError

KEY = b"k" * 32


class Poster:
    def __init__(self, status: int = 202, error: OSError | None = None) -> None:
        self.status, self.error = status, error
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        self.sent.append((url, body, dict(headers)))
        if self.error:
            raise self.error
        return self.status


def test_sends_a_signed_request_to_the_private_origin() -> None:
    """The URL is the tenant's private origin and the job; the body carries the token; the
    signature verifies with the tenant's check and fails for another body."""
    poster = Poster()
    runner = HttpJobRunner(lambda slug: ("10.0.3.7", 8000), KEY, poster, clock=lambda: 1000.0)
    assert runner.start(JobRequest("acme", "retention", "tok", "ex")) == "http:10.0.3.7:8000"
    [(url, body, headers)] = poster.sent
    assert url == "http://10.0.3.7:8000/internal/jobs/retention"
    assert json.loads(body) == {"token": "tok", "execution": "ex"}
    assert signature_ok(KEY, headers[JOB_SIGNATURE_HEADER], body, 1000.0)
    assert not signature_ok(KEY, headers[JOB_SIGNATURE_HEADER], body + b" ", 1000.0)
    assert not signature_ok(b"x" * 32, headers[JOB_SIGNATURE_HEADER], body, 1000.0)
    assert not signature_ok(KEY, headers[JOB_SIGNATURE_HEADER], body, 1000.0 + 301)


@pytest.mark.parametrize(
    ("poster", "reason"),
    [(Poster(401), "refused the backup job: 401"), (Poster(error=OSError("down")), "did not")],
)
def test_refusal_or_no_answer_is_a_launch_error(poster: Poster, reason: str) -> None:
    """Anything but 202, or no answer, raises LaunchError (the dispatcher fails the token)."""
    runner = HttpJobRunner(lambda slug: ("10.0.3.7", 8000), KEY, poster)
    with pytest.raises(LaunchError, match=reason):
        runner.start(JobRequest("acme", "backup", "tok"))


@dataclass
class Record:
    state: str
    origin_host: str | None
    origin_port: int | None


class Registry:
    def __init__(self, records: dict[str, Record]) -> None:
        self.records = records

    def find(self, slug: str) -> Record | None:
        return self.records.get(slug)


def test_registry_origin_needs_a_running_tenant_with_an_origin() -> None:
    """Only a running tenant with a recorded private origin can be asked to run a job."""
    records = {
        "a": Record("running", "10.0.0.1", 8000),
        "b": Record("stopped", "h", 1),
        "c": Record("running", None, None),
    }
    lookup = registry_origin(Registry(records))
    assert lookup("a") == ("10.0.0.1", 8000)
    for slug in ("b", "c", "missing"):
        with pytest.raises(LaunchError):
            lookup(slug)


def test_factory_needs_the_key() -> None:
    """The Lambda's factory refuses to start without PAITHO_JOBS_KEY."""
    with pytest.raises(InvalidInput, match="PAITHO_JOBS_KEY"):
        http_runner_from_env(Registry({}), {})
    assert isinstance(http_runner_from_env(Registry({}), {"PAITHO_JOBS_KEY": "k"}), HttpJobRunner)
