"""Typed gateways around the boto3 clients the ECS launcher uses.

Each gateway takes its client, a `sleep` callable and a monotonic clock in its constructor,
returns plain frozen dataclasses and raises `LaunchError` (never botocore's `ClientError`) with a
reason a person can act on. The same code runs against moto's server locally and AWS in
production: the endpoint is chosen by whoever builds the client (chalicelib/factory.py).

    EcsGateway      task definitions and tasks (RegisterTaskDefinition, RunTask, StopTask,
                    DescribeTasks, ListTasks)
    VolumeGateway   the EBS volumes and snapshots ECS leaves behind for a tenant (EC2 API)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import LaunchError

if TYPE_CHECKING:  # the stubs are optional; without them the clients are Any
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecs import ECSClient

log = logging.getLogger(__name__)

TENANT_TAG = "paitho:tenant"
STOPPED_STATES = frozenset({"DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED", "DELETED"})

# What to do about each ECS/EC2 error code; `{action}` and `{message}` are filled in.
_ADVICE: Mapping[str, str] = {
    "ClusterNotFoundException": "the ECS cluster does not exist in this account and region: "
    "deploy infra/aws/tenants.yaml or fix PAITHO_ECS_CLUSTER",
    "AccessDeniedException": "the control plane's IAM role may not call {action}: add it to the "
    "role's policy",
    "UnauthorizedOperation": "the control plane's IAM role may not call {action}: add it to the "
    "role's policy",
    "ThrottlingException": "AWS is throttling {action}; retry in a minute",
    "InvalidParameterException": "AWS rejected {action}: {message}; fix the ECS settings",
    "ClientException": "AWS rejected {action}: {message}; fix the ECS settings",
    "PlatformUnknownException": "the Fargate platform version is unknown: {message}",
    "UnsupportedFeatureException": "{action} uses a feature this region does not offer: {message}",
    "InvalidVolume.NotFound": "the tenant's EBS volume is gone: {message}",
    "InvalidSnapshot.NotFound": "the tenant's EBS snapshot is gone: {message}",
}


def translate(exc: Exception, action: str) -> LaunchError:
    """A LaunchError saying what failed and what to do about it (vendor text kept short)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        message = str(err.get("Message", ""))[:300]
        advice = _ADVICE.get(code)
        if advice is not None:
            return LaunchError(f"{action}: " + advice.format(action=action, message=message))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if isinstance(status, int) and status >= 500:
            return LaunchError(f"{action}: AWS answered with a server error ({code}); retry later")
        return LaunchError(f"{action} failed ({code}): {message}")
    return LaunchError(
        f"{action}: could not reach the AWS endpoint ({type(exc).__name__}); check the network "
        "and AWS_ENDPOINT_URL (`make up` starts the local one)"
    )


@dataclass(frozen=True)
class TaskInfo:
    """One ECS task, as plain values."""

    arn: str
    last_status: str
    desired_status: str
    task_definition_arn: str
    started_by: str = ""
    health: str | None = None
    private_ip: str | None = None
    stopped_reason: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def stopping(self) -> bool:
        return self.last_status in STOPPED_STATES or self.desired_status == "STOPPED"


@dataclass(frozen=True)
class VolumeInfo:
    volume_id: str
    state: str
    created: str
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    state: str
    started: str
    tags: Mapping[str, str] = field(default_factory=dict)


def _tags(
    raw: Sequence[Mapping[str, Any]] | None, key: str = "key", value: str = "value"
) -> dict[str, str]:
    return {str(t[key]): str(t.get(value, "")) for t in raw or ()}


def _task(raw: Mapping[str, Any]) -> TaskInfo:
    ip = None
    for attachment in raw.get("attachments", ()):
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        for detail in attachment.get("details", ()):
            if detail.get("name") == "privateIPv4Address":
                ip = str(detail.get("value"))
    return TaskInfo(
        arn=str(raw["taskArn"]),
        last_status=str(raw.get("lastStatus", "")),
        desired_status=str(raw.get("desiredStatus", "")),
        task_definition_arn=str(raw.get("taskDefinitionArn", "")),
        started_by=str(raw.get("startedBy", "")),
        health=raw.get("healthStatus"),
        private_ip=ip,
        stopped_reason=str(raw.get("stoppedReason", "")),
        tags=_tags(raw.get("tags")),
    )


class EcsGateway:
    """ECS calls for tenant tasks. Every method raises LaunchError on failure."""

    def __init__(
        self,
        client: ECSClient,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        poll_interval: float = 2.0,
    ) -> None:
        self._ecs = client
        self._sleep = sleep
        self._clock = clock
        self._poll = poll_interval

    def register_task_definition(self, definition: Mapping[str, Any]) -> str:
        """Register a revision; returns its ARN."""
        try:
            resp = self._ecs.register_task_definition(**definition)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ecs:RegisterTaskDefinition") from exc
        return str(resp["taskDefinition"]["taskDefinitionArn"])

    def latest_task_definition(self, family: str) -> tuple[str, dict[str, str]] | None:
        """(ARN, tags) of the newest ACTIVE revision of `family`, or None if there is none."""
        try:
            resp = self._ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("ClientException", "TaskDefinitionNotFoundException"):
                return None  # ECS answers ClientException for an unknown family
            raise translate(exc, "ecs:DescribeTaskDefinition") from exc
        except BotoCoreError as exc:
            raise translate(exc, "ecs:DescribeTaskDefinition") from exc
        arn = str(resp["taskDefinition"]["taskDefinitionArn"])
        return arn, _tags(resp.get("tags"))

    def run_task(self, request: Mapping[str, Any]) -> TaskInfo:
        """RunTask with one task; raises if ECS reports a placement failure instead."""
        try:
            resp = self._ecs.run_task(**request)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ecs:RunTask") from exc
        tasks = resp.get("tasks", [])
        if not tasks:
            reasons = "; ".join(
                f"{f.get('reason', '?')} {f.get('detail', '')}".strip()
                for f in resp.get("failures", [])
            )
            raise LaunchError(
                f"ecs:RunTask placed no task ({reasons or 'no reason given'}); check the "
                "cluster's Fargate capacity and the subnets"
            )
        return _task(tasks[0])

    def describe_tasks(self, cluster: str, arns: Sequence[str]) -> list[TaskInfo]:
        if not arns:
            return []
        found: list[TaskInfo] = []
        for start in range(0, len(arns), 100):  # DescribeTasks takes at most 100 ARNs
            try:
                resp = self._ecs.describe_tasks(
                    cluster=cluster, tasks=list(arns[start : start + 100]), include=["TAGS"]
                )
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "ecs:DescribeTasks") from exc
            found.extend(_task(raw) for raw in resp.get("tasks", []))
        return found

    def list_tasks(
        self, cluster: str, started_by: str, desired_status: str = "RUNNING"
    ) -> list[str]:
        """ARNs of the tasks started with `started_by` (every page)."""
        arns: list[str] = []
        kwargs: dict[str, Any] = {
            "cluster": cluster,
            "startedBy": started_by,
            "desiredStatus": desired_status,
        }
        try:
            while True:
                resp = self._ecs.list_tasks(**kwargs)
                arns.extend(str(a) for a in resp.get("taskArns", []))
                token = resp.get("nextToken")
                if not token:
                    return arns
                kwargs["nextToken"] = token
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ecs:ListTasks") from exc

    def stop_task(self, cluster: str, arn: str, reason: str) -> TaskInfo:
        try:
            resp = self._ecs.stop_task(cluster=cluster, task=arn, reason=reason[:255])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ecs:StopTask") from exc
        return _task(resp["task"])

    def wait_running(self, cluster: str, arn: str, timeout: float) -> TaskInfo:
        """Poll DescribeTasks until the task is RUNNING and not unhealthy; bounded by `timeout`.

        A task that stops on the way raises at once with ECS's stopped reason."""
        deadline = self._clock() + timeout
        last = "not yet described"
        while True:
            tasks = self.describe_tasks(cluster, [arn])
            if tasks:
                task = tasks[0]
                if task.stopping:
                    raise LaunchError(
                        f"task {arn.rsplit('/', 1)[-1]} stopped before it was ready "
                        f"({task.last_status}: {task.stopped_reason or 'no reason given'}); "
                        "check that the tenant image exists and the subnets reach ECR"
                    )
                if task.last_status == "RUNNING" and task.health in (None, "HEALTHY"):
                    return task
                last = f"{task.last_status}, health {task.health or 'unknown'}"
            if self._clock() >= deadline:
                raise LaunchError(
                    f"task {arn.rsplit('/', 1)[-1]} was not ready after {timeout:.0f}s ({last}); "
                    "raise the start timeout or check the containers' health checks"
                )
            self._sleep(self._poll)

    def wait_stopped(self, cluster: str, arn: str, timeout: float) -> TaskInfo | None:
        """Poll until the task reports STOPPED (its volume is then released)."""
        deadline = self._clock() + timeout
        while True:
            tasks = self.describe_tasks(cluster, [arn])
            if not tasks or tasks[0].last_status in ("STOPPED", "DELETED"):
                return tasks[0] if tasks else None
            if self._clock() >= deadline:
                raise LaunchError(
                    f"task {arn.rsplit('/', 1)[-1]} still {tasks[0].last_status} after "
                    f"{timeout:.0f}s of stopping; retry the stop"
                )
            self._sleep(self._poll)


class VolumeGateway:
    """The tenant's retained EBS volumes and snapshots, found by the `paitho:tenant` tag."""

    def __init__(
        self,
        client: EC2Client,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        poll_interval: float = 5.0,
    ) -> None:
        self._ec2 = client
        self._sleep = sleep
        self._clock = clock
        self._poll = poll_interval

    def volumes(self, slug: str) -> list[VolumeInfo]:
        """The tenant's volumes, newest first."""
        try:
            resp = self._ec2.describe_volumes(
                Filters=[{"Name": f"tag:{TENANT_TAG}", "Values": [slug]}]
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ec2:DescribeVolumes") from exc
        found = [
            VolumeInfo(
                str(v["VolumeId"]),
                str(v["State"]),
                str(v.get("CreateTime", "")),
                _tags(v.get("Tags"), "Key", "Value"),
            )
            for v in resp.get("Volumes", [])
        ]
        return sorted(found, key=lambda v: v.created, reverse=True)

    def snapshots(self, slug: str) -> list[SnapshotInfo]:
        """The tenant's snapshots, newest first."""
        try:
            resp = self._ec2.describe_snapshots(
                OwnerIds=["self"], Filters=[{"Name": f"tag:{TENANT_TAG}", "Values": [slug]}]
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ec2:DescribeSnapshots") from exc
        found = [
            SnapshotInfo(
                str(s["SnapshotId"]),
                str(s["State"]),
                str(s.get("StartTime", "")),
                _tags(s.get("Tags"), "Key", "Value"),
            )
            for s in resp.get("Snapshots", [])
        ]
        return sorted(found, key=lambda s: s.started, reverse=True)

    def snapshot(self, volume_id: str, tags: Mapping[str, str], timeout: float) -> str:
        """Snapshot a volume and wait (bounded) until the snapshot is usable; returns its id."""
        try:
            resp = self._ec2.create_snapshot(
                VolumeId=volume_id,
                Description="Paitho tenant data carried to the next task",
                TagSpecifications=[
                    {
                        "ResourceType": "snapshot",
                        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                    }
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ec2:CreateSnapshot") from exc
        snapshot_id = str(resp["SnapshotId"])
        deadline = self._clock() + timeout
        state = str(resp.get("State", "pending"))
        while state != "completed":
            if state == "error":
                raise LaunchError(
                    f"EBS snapshot {snapshot_id} of {volume_id} failed; the volume is kept, "
                    "retry the start"
                )
            if self._clock() >= deadline:
                raise LaunchError(
                    f"EBS snapshot {snapshot_id} of {volume_id} not complete after "
                    f"{timeout:.0f}s; the volume is kept, retry the start later"
                )
            self._sleep(self._poll)
            try:
                desc = self._ec2.describe_snapshots(SnapshotIds=[snapshot_id])
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "ec2:DescribeSnapshots") from exc
            state = str(desc["Snapshots"][0]["State"])
        return snapshot_id

    def wait_available(self, slug: str, volume_id: str, timeout: float) -> None:
        """Wait (bounded) until a detaching volume is available."""
        deadline = self._clock() + timeout
        while True:
            state = next((v.state for v in self.volumes(slug) if v.volume_id == volume_id), None)
            if state in (None, "available", "deleted", "deleting"):
                return
            if self._clock() >= deadline:
                raise LaunchError(
                    f"EBS volume {volume_id} still {state} after {timeout:.0f}s; stop the "
                    "tenant's task first, then retry"
                )
            self._sleep(self._poll)

    def delete_volume(self, volume_id: str) -> None:
        try:
            self._ec2.delete_volume(VolumeId=volume_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidVolume.NotFound":
                return
            raise translate(exc, "ec2:DeleteVolume") from exc
        except BotoCoreError as exc:
            raise translate(exc, "ec2:DeleteVolume") from exc

    def delete_snapshot(self, snapshot_id: str) -> None:
        try:
            self._ec2.delete_snapshot(SnapshotId=snapshot_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidSnapshot.NotFound":
                return
            raise translate(exc, "ec2:DeleteSnapshot") from exc
        except BotoCoreError as exc:
            raise translate(exc, "ec2:DeleteSnapshot") from exc
