"""The ECS launcher against moto's server. moto records what is asked of ECS and runs nothing, so
these tests check the requests ECS received (captured from the boto3 client's own event hooks)
and the task records it keeps."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.aws import EcsGateway, VolumeGateway
from chalicelib.errors import LaunchError
from chalicelib.launchers.base import TenantSpec
from chalicelib.launchers.ecs import NO_ORIGIN, EcsConfig, EcsLauncher

pytestmark = pytest.mark.functional

SECRET_WORDS = re.compile(r"PASSPHRASE|SECRET|PASSWORD|KEY|TOKEN|CREDENTIAL", re.IGNORECASE)


def set_task_transition(endpoint: str, transition: dict[str, Any] | None) -> None:
    """Tell moto how tasks advance on each DescribeTasks (None: back to moto's default)."""
    if transition is None:
        url, body = "unset-transition", {"model_name": "ecs::task"}
    else:
        url, body = "set-transition", {"model_name": "ecs::task", "transition": transition}
    req = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/{url}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).close()


@dataclass
class Calls:
    """Every ECS request as the client sent it (operation name, parameters)."""

    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.seen.append((model.name, json.loads(json.dumps(params, default=str))))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.seen if name == operation]


@dataclass
class EcsWorld:
    launcher: EcsLauncher
    config: EcsConfig
    ecs: Any
    ec2: Any
    calls: Calls
    endpoint: str
    az: str


@pytest.fixture
def world(moto_endpoint: str, aws_client: Any, unique: str) -> Iterator[EcsWorld]:
    """A VPC, subnet, security group, KMS key and ECS cluster of this test's own; tasks stay
    RUNNING until stopped."""
    ecs, ec2, kms = aws_client("ecs"), aws_client("ec2"), aws_client("kms")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    # ENIs for awsvpc tasks need DNS hostnames on (moto fails RunTask without it).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]
    sg = ec2.create_security_group(GroupName=f"tenants-{unique}", Description="t", VpcId=vpc)
    key = kms.create_key(Description=f"tenant volumes {unique}")["KeyMetadata"]["Arn"]
    ecs.create_cluster(clusterName=f"paitho-{unique}")
    config = EcsConfig(
        cluster=f"paitho-{unique}",
        subnets=(subnet["SubnetId"],),
        security_groups=(sg["GroupId"],),
        image_repository="123456789012.dkr.ecr.us-east-1.amazonaws.com/paitho-tenant",
        execution_role_arn="arn:aws:iam::123456789012:role/paitho-tenant-execution",
        task_role_arn="arn:aws:iam::123456789012:role/paitho-tenant-task",
        infrastructure_role_arn="arn:aws:iam::123456789012:role/paitho-ecs-volumes",
        kms_key_id=key,
        log_group=f"/paitho/tenants-{unique}",
        aws_region="us-east-1",
        domain="paitho.test",
        family=f"paitho-tenant-{unique}",
        start_timeout_s=5,
        stop_timeout_s=5,
        snapshot_timeout_s=5,
    )
    calls = Calls()
    ecs.meta.events.register("before-parameter-build.ecs.*", calls)
    no_sleep = lambda _s: None  # noqa: E731
    launcher = EcsLauncher.from_clients(ecs, ec2, config, sleep=no_sleep, clock=time.monotonic)
    set_task_transition(moto_endpoint, {"progression": "manual", "times": 10**9})
    yield EcsWorld(launcher, config, ecs, ec2, calls, moto_endpoint, subnet["AvailabilityZone"])
    set_task_transition(moto_endpoint, None)


def spec(unique: str, version: str = "1.0.0") -> TenantSpec:
    return TenantSpec(slug=f"acme{unique}", plan="pro", region="us", version=version)


def leave_volume(world: EcsWorld, slug: str) -> str:
    """What ECS does when a task with deleteOnTermination=False stops: the volume stays."""
    vol = world.ec2.create_volume(
        AvailabilityZone=world.az,
        Size=20,
        Encrypted=True,
        KmsKeyId=world.config.kms_key_id,
        TagSpecifications=[
            {
                "ResourceType": "volume",
                "Tags": [{"Key": "paitho:tenant", "Value": slug}, {"Key": "Name", "Value": "x"}],
            }
        ],
    )
    return str(vol["VolumeId"])


def test_provision_and_start_record_the_task(world: EcsWorld, unique: str) -> None:
    """Start registers both containers, asks for an encrypted volume and tags the RUNNING task."""
    tenant = spec(unique)
    placement = world.launcher.provision(tenant)
    assert placement.data_location == f"paitho-{tenant.slug}-data"
    assert placement.origin_host == NO_ORIGIN
    placement = world.launcher.start(tenant, placement)

    td = world.ecs.describe_task_definition(taskDefinition=world.config.family)["taskDefinition"]
    by_name = {c["name"]: c for c in td["containerDefinitions"]}
    assert set(by_name) == {"app", "postgres"}
    assert by_name["app"]["image"].endswith(":1.0.0")
    assert td["volumes"] == [{"name": "pgdata", "configuredAtLaunch": True}]

    (run,) = world.calls.of("RunTask")
    env = [e for c in td["containerDefinitions"] for e in c.get("environment", [])]
    env += run["overrides"]["containerOverrides"][0]["environment"]
    assert {"PAITHO_TENANT_SLUG", "PAITHO_TENANT_DB"} <= {e["name"] for e in env}
    for entry in env:
        assert not SECRET_WORDS.search(entry["name"] + "=" + entry["value"]), entry["name"]

    ebs = run["volumeConfigurations"][0]["managedEBSVolume"]
    assert ebs["encrypted"] is True and ebs["kmsKeyId"] == world.config.kms_key_id
    assert run["enableExecuteCommand"] is False

    (task,) = world.ecs.describe_tasks(
        cluster=world.config.cluster, tasks=[placement.task_arn], include=["TAGS"]
    )["tasks"]
    assert task["lastStatus"] == "RUNNING"
    tags = {t["key"]: t["value"] for t in task["tags"]}
    assert tags["paitho:tenant"] == tenant.slug and tags["paitho:plan"] == "pro"
    assert tags["paitho:region"] == "us"
    eni = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert placement.origin_host == eni["privateIPv4Address"]  # the task ENI's own address


def test_start_is_idempotent(world: EcsWorld, unique: str) -> None:
    """Starting a tenant that already runs at that version returns the same task, no RunTask."""
    tenant = spec(unique)
    first = world.launcher.start(tenant, world.launcher.provision(tenant))
    again = world.launcher.start(tenant, first)
    assert again.task_arn == first.task_arn
    assert len(world.calls.of("RunTask")) == 1
    assert len(world.calls.of("RegisterTaskDefinition")) == 1


def test_stop_issues_stop_task_and_observe_follows(world: EcsWorld, unique: str) -> None:
    """observe says running while the task runs; stop issues StopTask; observe then says stopped."""
    tenant = spec(unique)
    placement = world.launcher.start(tenant, world.launcher.provision(tenant))
    seen = world.launcher.observe(tenant, placement)
    assert seen.running and seen.version == "1.0.0" and "RUNNING" in seen.detail

    world.launcher.stop(tenant, placement)
    (stop,) = world.calls.of("StopTask")
    assert stop["task"] == placement.task_arn and stop["reason"]
    seen = world.launcher.observe(tenant, placement)
    assert not seen.running and seen.storage_exists and "STOPPED" in seen.detail
    world.launcher.stop(tenant, placement)  # idempotent
    assert len(world.calls.of("StopTask")) == 1


def test_upgrade_registers_new_revision_and_carries_the_data(world: EcsWorld, unique: str) -> None:
    """An upgrade runs a new revision with the new image, started from a snapshot of old data."""
    tenant = spec(unique)
    placement = world.launcher.start(tenant, world.launcher.provision(tenant))
    world.launcher.stop(tenant, placement)
    old_volume = leave_volume(world, tenant.slug)

    upgraded = spec(unique, "2.0.0")
    placement = world.launcher.start(upgraded, placement)

    revisions = world.calls.of("RegisterTaskDefinition")
    assert [r["containerDefinitions"][1]["image"].rsplit(":", 1)[1] for r in revisions] == [
        "1.0.0",
        "2.0.0",
    ]
    td = world.ecs.describe_task_definition(taskDefinition=world.config.family)["taskDefinition"]
    assert td["revision"] == 2
    runs = world.calls.of("RunTask")
    assert runs[-1]["taskDefinition"].endswith(":2")
    snapshot_id = runs[-1]["volumeConfigurations"][0]["managedEBSVolume"]["snapshotId"]
    snap = world.ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    assert snap["VolumeId"] == old_volume
    assert (
        world.ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [old_volume]}])[
            "Volumes"
        ]
        == []
    )  # carried over, then deleted
    assert world.launcher.observe(upgraded, placement).version == "2.0.0"


def test_destroy_stops_and_deletes_volumes_and_snapshots(world: EcsWorld, unique: str) -> None:
    """destroy stops the task and deletes every volume and snapshot of the tenant's data."""
    tenant = spec(unique)
    placement = world.launcher.start(tenant, world.launcher.provision(tenant))
    world.launcher.stop(tenant, placement)
    volume = leave_volume(world, tenant.slug)
    world.ec2.create_snapshot(
        VolumeId=volume,
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": "paitho:tenant", "Value": tenant.slug}]}
        ],
    )
    other = leave_volume(world, f"other{unique}")
    world.launcher.destroy(tenant, placement)
    tagged = [{"Name": "tag:paitho:tenant", "Values": [tenant.slug]}]
    assert world.ec2.describe_volumes(Filters=tagged)["Volumes"] == []
    assert world.ec2.describe_snapshots(OwnerIds=["self"], Filters=tagged)["Snapshots"] == []
    assert world.ec2.describe_volumes(VolumeIds=[other])["Volumes"]  # others untouched
    seen = world.launcher.observe(tenant, None)
    assert not seen.running and not seen.storage_exists


def test_unknown_cluster_is_an_actionable_launch_error(world: EcsWorld, unique: str) -> None:
    """An ECS error (unknown cluster) surfaces as LaunchError saying what to fix."""
    from dataclasses import replace

    gateway = EcsGateway(world.ecs, lambda _s: None, time.monotonic, poll_interval=0)
    volumes = VolumeGateway(world.ec2, lambda _s: None, time.monotonic, poll_interval=0)
    broken = EcsLauncher(gateway, volumes, replace(world.config, cluster=f"missing-{unique}"))
    tenant = spec(unique)
    with pytest.raises(LaunchError, match="cluster does not exist") as caught:
        broken.start(tenant, broken.provision(tenant))
    assert "tenants.yaml" in caught.value.message
    assert caught.value.__cause__ is not None


def test_task_that_stops_while_starting_fails_the_start(world: EcsWorld, unique: str) -> None:
    """A task that stops before it is ready makes start raise with ECS's reason."""
    set_task_transition(world.endpoint, {"progression": "manual", "times": 1})
    tenant = spec(unique)
    with pytest.raises(LaunchError, match="stopped before it was ready"):
        world.launcher.start(tenant, world.launcher.provision(tenant))
