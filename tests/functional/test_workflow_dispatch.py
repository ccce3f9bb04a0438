"""The job dispatcher against moto's server: the ECS runner starts the tenant task definition
with the slug and the callback token, and a queue poll consumes what it handled."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.backups import JobRequest, dispatch_jobs, ecs_runner_from_env, poll_jobs
from chalicelib.errors import InvalidInput, LaunchError

pytestmark = pytest.mark.functional


class RecordingSfn:
    def __init__(self) -> None:
        self.failures: list[dict[str, str]] = []

    def send_task_failure(self, **kwargs: str) -> None:
        self.failures.append(kwargs)


def _cluster(aws_client: Any, unique: str, family: str | None) -> str:
    ecs = aws_client("ecs")
    arn: str = ecs.create_cluster(clusterName=f"tenants-{unique}")["cluster"]["clusterArn"]
    if family:
        ecs.register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="512",
            memory="1024",
            containerDefinitions=[{"name": "app", "image": "paitho/tenant:0.1.0", "memory": 512}],
        )
    return arn


def _network(aws_client: Any) -> tuple[str, str]:
    ec2 = aws_client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    # ENIs for awsvpc tasks need DNS hostnames on (moto fails RunTask without it).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"t-{vpc}", Description="t", VpcId=vpc)
    return subnet, group["GroupId"]


def test_ecs_runner_starts_the_tenant_task_with_slug_and_token(
    aws_client: Any, unique: str
) -> None:
    """RunTask of the tenant family, command `paitho-tenant backup`, slug and token in env."""
    family = f"paitho-tenant-{unique}"
    cluster = _cluster(aws_client, unique, family)
    subnet, group = _network(aws_client)
    env = {"PAITHO_TENANT_CLUSTER": cluster, "PAITHO_TENANT_SUBNETS": subnet,
           "PAITHO_TENANT_SECURITY_GROUP": group, "PAITHO_TENANT_TASK_FAMILY": family}  # fmt: skip
    runner = ecs_runner_from_env(aws_client("ecs"), env)
    arn = runner.start(JobRequest("acme", "backup", "tok-1"))
    (task,) = aws_client("ecs").describe_tasks(cluster=cluster, tasks=[arn])["tasks"]
    (override,) = task["overrides"]["containerOverrides"]
    assert override["command"] == ["paitho-tenant", "backup"]
    assert {e["name"]: e["value"] for e in override["environment"]} == {
        "PAITHO_TENANT_SLUG": "acme",
        "PAITHO_TASK_TOKEN": "tok-1",
    }
    with pytest.raises(InvalidInput, match="PAITHO_TENANT_CLUSTER"):
        ecs_runner_from_env(aws_client("ecs"), {})


def test_missing_task_definition_fails_the_token_and_the_queue_is_drained(
    aws_client: Any, unique: str
) -> None:
    """No task definition: LaunchError -> SendTaskFailure(Job.TaskNotStarted); the message is
    deleted either way (the state machine, not SQS, retries)."""
    cluster = _cluster(aws_client, unique, family=None)
    env = {"PAITHO_TENANT_CLUSTER": cluster, "PAITHO_TENANT_SUBNETS": "subnet-1",
           "PAITHO_TENANT_SECURITY_GROUP": "sg-1",
           "PAITHO_TENANT_TASK_FAMILY": f"missing-{unique}"}  # fmt: skip
    runner = ecs_runner_from_env(aws_client("ecs"), env)
    with pytest.raises(LaunchError):
        runner.start(JobRequest("ghost", "backup", "t"))
    sqs, sfn = aws_client("sqs"), RecordingSfn()
    queue = sqs.create_queue(QueueName=f"jobs-{unique}")["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue, MessageBody=json.dumps({"tenant": "ghost", "job": "backup", "token": "t9"})
    )
    assert poll_jobs(sqs, queue, runner, sfn, wait_s=0) == 1
    assert [f["taskToken"] for f in sfn.failures] == ["t9"]
    assert sfn.failures[0]["error"] == "Job.TaskNotStarted"
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages") is None
    assert dispatch_jobs([], runner, sfn) == []
