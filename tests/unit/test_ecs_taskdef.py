"""The ECS task definition and RunTask request builders, and the gateway's bounded wait (no I/O:
botocore's Stubber answers in-process, a fake clock stands in for time)."""

from __future__ import annotations

import re
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.aws import EcsGateway, translate
from chalicelib.errors import LaunchError
from chalicelib.launchers.base import TenantSpec
from chalicelib.launchers.ecs import (
    EcsConfig,
    fingerprint,
    postgres_flags,
    run_task_request,
    task_definition,
)
from chalicelib.launchers.pgcluster import TRUST_SETTINGS

CONFIG = EcsConfig(
    cluster="paitho",
    subnets=("subnet-1", "subnet-2"),
    security_groups=("sg-1",),
    image_repository="123456789012.dkr.ecr.eu-west-1.amazonaws.com/paitho-tenant",
    execution_role_arn="arn:aws:iam::123456789012:role/exec",
    task_role_arn="arn:aws:iam::123456789012:role/task",
    infrastructure_role_arn="arn:aws:iam::123456789012:role/infra",
    kms_key_id="arn:aws:kms:eu-west-1:123456789012:key/k",
    log_group="/paitho/tenants",
    aws_region="eu-west-1",
    domain="paitho.ai",
)
SPEC = TenantSpec(slug="acme", plan="pro", region="eu", version="1.2.0")
SECRET_WORDS = re.compile(r"PASSPHRASE|SECRET|PASSWORD|KEY|TOKEN|CREDENTIAL", re.IGNORECASE)


def containers(version: str = "1.2.0") -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in task_definition(CONFIG, version)["containerDefinitions"]}


def all_env(version: str = "1.2.0") -> list[dict[str, str]]:
    env = [e for c in containers(version).values() for e in c.get("environment", [])]
    request = run_task_request(CONFIG, SPEC, "arn:td", None)
    for override in request["overrides"]["containerOverrides"]:
        env += override.get("environment", [])
    return env


def test_two_containers_app_waits_for_healthy_postgres() -> None:
    """The task runs exactly `app` and `postgres`; app starts only once postgres is HEALTHY."""
    defs = containers()
    assert set(defs) == {"app", "postgres"}
    assert defs["app"]["dependsOn"] == [{"containerName": "postgres", "condition": "HEALTHY"}]
    assert "pg_isready" in defs["postgres"]["healthCheck"]["command"]
    assert defs["app"]["image"] == f"{CONFIG.image_repository}:1.2.0"
    assert defs["app"]["portMappings"] == [{"containerPort": 8443, "protocol": "tcp"}]
    assert defs["postgres"].get("portMappings", []) == []


def test_fargate_awsvpc_and_volume_configured_at_launch() -> None:
    """Fargate + awsvpc, and the Postgres data volume is declared configured-at-launch."""
    body = task_definition(CONFIG, "1.2.0")
    assert body["family"] == "paitho-tenant"
    assert body["networkMode"] == "awsvpc"
    assert body["requiresCompatibilities"] == ["FARGATE"]
    assert body["volumes"] == [{"name": "pgdata", "configuredAtLaunch": True}]
    mount = containers()["postgres"]["mountPoints"][0]
    assert mount["sourceVolume"] == "pgdata"
    pgdata = next(
        e["value"] for e in containers()["postgres"]["environment"] if e["name"] == "PGDATA"
    )
    assert pgdata.startswith(mount["containerPath"] + "/")


def test_environment_carries_no_secret() -> None:
    """No environment variable name or value looks like a passphrase, password, key or token."""
    env = all_env()
    names = {e["name"] for e in env}
    assert {"PAITHO_TENANT_SLUG", "PAITHO_TENANT_DB", "PAITHO_TENANT_ORIGIN"} <= names
    for entry in env:
        assert not SECRET_WORDS.search(entry["name"]), entry["name"]
        assert not SECRET_WORDS.search(entry["value"]), entry["name"]
    db = next(e["value"] for e in env if e["name"] == "PAITHO_TENANT_DB")
    assert "host=127.0.0.1" in db and "password" not in db


def test_postgres_flags_carry_every_trust_setting_unquoted() -> None:
    """Every TRUST_SETTINGS entry becomes a `-c name=value` flag, config-file quotes removed."""
    flags = postgres_flags()
    pairs = dict(f.split("=", 1) for f in flags[1::2])
    assert flags[0::2] == ["-c"] * len(TRUST_SETTINGS)
    assert set(pairs) == set(TRUST_SETTINGS)
    assert pairs["log_statement"] == "none"
    assert pairs["listen_addresses"] == "127.0.0.1"
    assert pairs["shared_preload_libraries"] == ""
    assert containers()["postgres"]["command"] == ["postgres", *flags]


def test_fingerprint_follows_the_version() -> None:
    """The same version gives the same fingerprint; a new version gives a new one."""
    assert fingerprint(task_definition(CONFIG, "1.2.0")) == fingerprint(
        task_definition(CONFIG, "1.2.0")
    )
    assert fingerprint(task_definition(CONFIG, "1.2.0")) != fingerprint(
        task_definition(CONFIG, "1.3.0")
    )


def test_run_task_asks_for_an_encrypted_retained_volume() -> None:
    """RunTask asks ECS for a KMS-encrypted EBS volume that outlives the task."""
    request = run_task_request(CONFIG, SPEC, "arn:td", None)
    (volume,) = request["volumeConfigurations"]
    ebs = volume["managedEBSVolume"]
    assert volume["name"] == "pgdata"
    assert ebs["encrypted"] is True
    assert ebs["kmsKeyId"] == CONFIG.kms_key_id
    assert ebs["roleArn"] == CONFIG.infrastructure_role_arn
    assert ebs["terminationPolicy"] == {"deleteOnTermination": False}
    assert "snapshotId" not in ebs
    restored = run_task_request(CONFIG, SPEC, "arn:td", "snap-1")
    assert restored["volumeConfigurations"][0]["managedEBSVolume"]["snapshotId"] == "snap-1"


def test_run_task_tags_and_no_exec() -> None:
    """RunTask tags the task with tenant, plan, region and version, and forbids ECS Exec."""
    request = run_task_request(CONFIG, SPEC, "arn:td", None)
    tags = {t["key"]: t["value"] for t in request["tags"]}
    assert tags == {
        "paitho:tenant": "acme",
        "paitho:plan": "pro",
        "paitho:region": "eu",
        "paitho:version": "1.2.0",
    }
    assert request["enableExecuteCommand"] is False
    assert request["propagateTags"] == "TASK_DEFINITION"
    assert request["startedBy"] == "paitho:acme"
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_running_is_bounded() -> None:
    """A task stuck in PENDING makes wait_running raise after the timeout, sleeping meanwhile."""
    client = boto3.client("ecs", region_name="us-east-1")
    clock = FakeClock()
    pending = {"tasks": [{"taskArn": "arn:aws:ecs:us-east-1:1:task/c/t1", "lastStatus": "PENDING",
                          "desiredStatus": "RUNNING"}], "failures": []}  # fmt: skip
    with Stubber(client) as stub:
        for _ in range(4):
            stub.add_response("describe_tasks", pending)
        gateway = EcsGateway(client, clock.sleep, clock, poll_interval=10)
        with pytest.raises(LaunchError, match=r"not ready after 30s \(PENDING"):
            gateway.wait_running("c", "arn:aws:ecs:us-east-1:1:task/c/t1", timeout=30)
    assert clock.now == 30


def test_translate_names_the_fix() -> None:
    """An unknown cluster becomes a LaunchError that says how to fix it, not a ClientError."""
    client = boto3.client("ecs", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("run_task", "ClusterNotFoundException", "Cluster not found.")
        try:
            client.run_task(taskDefinition="x")
        except Exception as exc:
            error = translate(exc, "ecs:RunTask")
    assert isinstance(error, LaunchError)
    assert "tenants.yaml" in error.message and "PAITHO_ECS_CLUSTER" in error.message
