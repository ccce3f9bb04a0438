"""The ECS launcher: one Fargate task per tenant, the tenant app and its own Postgres side by
side, the Postgres data on an encrypted EBS volume.

Task definition (one revision per tenant *version*, shared by every tenant on that version;
family `paitho-tenant`, awsvpc, FARGATE):
    postgres  the distribution's PostgreSQL image, started with `-c` flags carrying
              pgcluster.TRUST_SETTINGS (no statement/parameter/duration logging, loopback only),
              health check `pg_isready`, data on the volume `pgdata`
    app       `{image_repository}:{version}`, starts once postgres is HEALTHY, reaches it on
              127.0.0.1 inside the task's own network namespace (shared only by these two
              containers). Its environment holds the slug, the origin and the database address:
              never a secret, never the passphrase (DESIGN.md trust point 4). The slug and origin
              are per-tenant RunTask overrides, so the task definition carries no tenant data.

Storage: why EBS-configured-at-launch with a snapshot hand-over, and not EFS.
    ECS creates the tenant's volume at RunTask (`volumeConfigurations.managedEBSVolume`):
    encrypted with our KMS key, one volume per tenant, block storage Postgres is at home on.
    Such a volume cannot be attached to a *later* task; only a new volume, optionally made from
    a snapshot, can. So data survives stop/suspend/upgrade like this:
      - RunTask asks `terminationPolicy.deleteOnTermination = False`: when the task stops, ECS
        leaves the volume in the account (tagged `paitho:tenant`), data intact;
      - the next `start` snapshots that retained volume (waiting, bounded, for completion),
        runs the new task with `snapshotId`, and once the task is RUNNING deletes the old
        volume and older snapshots (the newest snapshot stays as the last restore point);
      - `destroy` deletes every volume and snapshot tagged with the tenant.
    EFS was rejected: Postgres over NFS pays a network round trip per fsync and relies on NFS
    locking, and one file system with per-tenant access points would put every tenant under one
    KMS key and one mount target; EBS gives each tenant its own encrypted block device.
    The cost is start latency after a stop (a snapshot of a changed volume), which is bounded by
    `EcsConfig.snapshot_timeout_s`.

moto (the local endpoint) records all of this but runs nothing: it ignores
`volumeConfigurations`, `enableExecuteCommand` and `propagateTags` (the tests check the request
sent to ECS instead), creates no EBS volume (the tests create the volume ECS would leave), and
needs a per-container memory reservation (set here; Fargate accepts it too).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.aws import TENANT_TAG, EcsGateway, TaskInfo, VolumeGateway
from chalicelib.errors import LaunchError
from chalicelib.launchers.base import Observed, Placement, TenantSpec
from chalicelib.launchers.pgcluster import TRUST_SETTINGS

log = logging.getLogger(__name__)

# Origin host recorded before a task has an address (`.invalid` never resolves: RFC 2606).
NO_ORIGIN = "unassigned.invalid"
VOLUME = "pgdata"
PG_MOUNT = "/var/lib/postgresql/data"
PG_DATA = f"{PG_MOUNT}/pgdata"  # a subdirectory: a fresh ext4 volume has lost+found at its root
PG_PORT = 5432
PG_DB = "paitho"
PG_USER = "postgres"
VERSION_TAG = "paitho:version"
FINGERPRINT_TAG = "paitho:fingerprint"


@dataclass(frozen=True)
class EcsConfig:
    """Everything the launcher needs, resolved once by the composition root."""

    cluster: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    image_repository: str  # the tenant image without tag; the tag is the tenant version
    execution_role_arn: str  # pulls images, writes logs
    task_role_arn: str  # what the tenant's own code may call (nothing by default)
    infrastructure_role_arn: str  # lets ECS create, attach and tag the EBS volume
    kms_key_id: str  # encrypts the tenant volumes and their snapshots
    log_group: str
    aws_region: str
    domain: str
    postgres_image: str = "public.ecr.aws/docker/library/postgres:15-bookworm"
    family: str = "paitho-tenant"
    cpu: str = "512"
    memory: str = "1024"
    app_port: int = 8443  # TLS ends inside the tenant (DESIGN.md: the edge passes bytes through)
    volume_size_gib: int = 20
    filesystem_type: str = "ext4"
    assign_public_ip: bool = False
    start_timeout_s: float = 600.0
    stop_timeout_s: float = 300.0
    snapshot_timeout_s: float = 1800.0
    # The SSM parameter holding the workflows' job-signing key (see chalicelib/backups.py):
    # injected by ECS at run time as a container secret, never written into the environment.
    jobs_key_parameter: str = "/paitho/jobs-key"


def volume_name(slug: str) -> str:
    """The stable name of a tenant's data (the Name tag of its volumes and snapshots)."""
    return f"paitho-{slug}-data"


def started_by(slug: str) -> str:
    return f"paitho:{slug}"


def postgres_flags() -> list[str]:
    """TRUST_SETTINGS as `postgres -c name=value` arguments (config-file quotes removed)."""
    flags: list[str] = []
    for name, value in TRUST_SETTINGS.items():
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        flags += ["-c", f"{name}={value}"]
    return flags


def tenant_db_conninfo() -> str:
    """How the app reaches its own Postgres: loopback inside the task, no password."""
    return f"host=127.0.0.1 port={PG_PORT} dbname={PG_DB} user={PG_USER}"


def container_definitions(config: EcsConfig, version: str) -> list[dict[str, Any]]:
    def logs(prefix: str) -> dict[str, Any]:
        return {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": config.log_group,
                "awslogs-region": config.aws_region,
                "awslogs-stream-prefix": prefix,
            },
        }

    postgres = {
        "name": "postgres",
        "image": config.postgres_image,
        "essential": True,
        "memoryReservation": 256,
        "command": ["postgres", *postgres_flags()],
        "environment": [
            {"name": "PGDATA", "value": PG_DATA},
            {"name": "POSTGRES_DB", "value": PG_DB},
            # No password exists to give: the server listens on 127.0.0.1 inside the task.
            {"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"},
        ],
        "mountPoints": [{"sourceVolume": VOLUME, "containerPath": PG_MOUNT, "readOnly": False}],
        "healthCheck": {
            "command": ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", str(PG_PORT), "-d", PG_DB],
            "interval": 5,
            "timeout": 3,
            "retries": 10,
            "startPeriod": 30,
        },
        "stopTimeout": 60,
        "logConfiguration": logs("postgres"),
    }
    app = {
        "name": "app",
        "image": f"{config.image_repository}:{version}",
        "essential": True,
        "memoryReservation": 512,
        "command": ["paitho-tenant", "serve", "--host", "0.0.0.0", "--port", str(config.app_port)],  # noqa: S104
        "portMappings": [{"containerPort": config.app_port, "protocol": "tcp"}],
        "environment": [{"name": "PAITHO_TENANT_DB", "value": tenant_db_conninfo()}],
        "secrets": [{"name": "PAITHO_JOBS_KEY", "valueFrom": config.jobs_key_parameter}],
        "dependsOn": [{"containerName": "postgres", "condition": "HEALTHY"}],
        "healthCheck": {
            # Protocol-agnostic: the port accepts connections (TLS or not).
            "command": [
                "CMD",
                "python3",
                "-c",
                f"import socket; socket.create_connection(('127.0.0.1', {config.app_port}), 2)",
            ],
            "interval": 10,
            "timeout": 5,
            "retries": 6,
            "startPeriod": 20,
        },
        "stopTimeout": 30,
        "logConfiguration": logs("app"),
    }
    return [postgres, app]


def task_definition(config: EcsConfig, version: str) -> dict[str, Any]:
    """RegisterTaskDefinition arguments for one tenant version (pure; no I/O)."""
    body: dict[str, Any] = {
        "family": config.family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": config.cpu,
        "memory": config.memory,
        "executionRoleArn": config.execution_role_arn,
        "taskRoleArn": config.task_role_arn,
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
        "containerDefinitions": container_definitions(config, version),
        "volumes": [{"name": VOLUME, "configuredAtLaunch": True}],
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    body["tags"] = [
        {"key": VERSION_TAG, "value": version},
        {"key": FINGERPRINT_TAG, "value": digest},
        {"key": "paitho:component", "value": "tenant"},
    ]
    return body


def fingerprint(definition: Mapping[str, Any]) -> str:
    return str(next(t["value"] for t in definition["tags"] if t["key"] == FINGERPRINT_TAG))


def run_task_request(
    config: EcsConfig, spec: TenantSpec, task_definition_arn: str, snapshot_id: str | None
) -> dict[str, Any]:
    """RunTask arguments for one tenant (pure; no I/O)."""
    tags = {
        TENANT_TAG: spec.slug,
        "paitho:plan": spec.plan,
        "paitho:region": spec.region,
        VERSION_TAG: spec.version,
    }
    ebs: dict[str, Any] = {
        "encrypted": True,
        "kmsKeyId": config.kms_key_id,
        "volumeType": "gp3",
        "sizeInGiB": config.volume_size_gib,
        "filesystemType": config.filesystem_type,
        "roleArn": config.infrastructure_role_arn,
        # Keep the volume when the task stops: the next start carries it over by snapshot.
        "terminationPolicy": {"deleteOnTermination": False},
        "tagSpecifications": [
            {
                "resourceType": "volume",
                "tags": [
                    {"key": "Name", "value": volume_name(spec.slug)},
                    {"key": TENANT_TAG, "value": spec.slug},
                ],
                "propagateTags": "NONE",
            }
        ],
    }
    if snapshot_id is not None:
        ebs["snapshotId"] = snapshot_id
    return {
        "cluster": config.cluster,
        "taskDefinition": task_definition_arn,
        "launchType": "FARGATE",
        "count": 1,
        "startedBy": started_by(spec.slug),
        "group": f"tenant:{spec.slug}",
        "enableExecuteCommand": False,  # no operator shell inside a tenant
        "propagateTags": "TASK_DEFINITION",
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(config.subnets),
                "securityGroups": list(config.security_groups),
                "assignPublicIp": "ENABLED" if config.assign_public_ip else "DISABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {
                    "name": "app",
                    "environment": [
                        {"name": "PAITHO_TENANT_SLUG", "value": spec.slug},
                        {
                            "name": "PAITHO_TENANT_ORIGIN",
                            "value": f"https://{spec.slug}.{config.domain}",
                        },
                    ],
                }
            ]
        },
        "volumeConfigurations": [{"name": VOLUME, "managedEBSVolume": ebs}],
    }


class EcsLauncher:
    """Launcher protocol on ECS. Every method raises LaunchError with an actionable reason."""

    kind = "ecs"

    def __init__(self, gateway: EcsGateway, volumes: VolumeGateway, config: EcsConfig) -> None:
        self._ecs = gateway
        self._volumes = volumes
        self._config = config

    @classmethod
    def from_clients(
        cls,
        ecs_client: Any,
        ec2_client: Any,
        config: EcsConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> EcsLauncher:
        """For the composition root: boto3 `ecs` and `ec2` clients of the tenants' region."""
        return cls(
            EcsGateway(ecs_client, sleep, clock), VolumeGateway(ec2_client, sleep, clock), config
        )

    # -- task definitions ------------------------------------------------------------------

    def ensure_task_definition(self, version: str) -> str:
        """The ARN of a revision matching the builder for `version`; registers one if needed."""
        wanted = task_definition(self._config, version)
        latest = self._ecs.latest_task_definition(self._config.family)
        if latest is not None and latest[1].get(FINGERPRINT_TAG) == fingerprint(wanted):
            return latest[0]
        arn = self._ecs.register_task_definition(wanted)
        log.info("registered task definition %s for version %s", arn, version)
        return arn

    # -- the Launcher protocol -------------------------------------------------------------

    def provision(self, spec: TenantSpec) -> Placement:
        """Register the version's task definition; the volume itself is made at first start."""
        self.ensure_task_definition(spec.version)
        return Placement(NO_ORIGIN, self._config.app_port, volume_name(spec.slug))

    def start(self, spec: TenantSpec, placement: Placement) -> Placement:
        """Run the tenant's task at spec.version on its data; return once it is RUNNING."""
        cfg = self._config
        for task in self._tenant_tasks(spec.slug):
            if not task.stopping and task.tags.get(VERSION_TAG) == spec.version:
                ready = self._ecs.wait_running(cfg.cluster, task.arn, cfg.start_timeout_s)
                return self._placement(spec, ready)  # already there: start is idempotent
            self._stop_task(task, "Paitho: replaced by a task at another version")
        arn = self.ensure_task_definition(spec.version)
        retained, snapshot_id = self._carry_over(spec.slug)
        task = self._ecs.run_task(run_task_request(cfg, spec, arn, snapshot_id))
        try:
            task = self._ecs.wait_running(cfg.cluster, task.arn, cfg.start_timeout_s)
        except LaunchError:
            self._stop_task(task, "Paitho: the task did not become ready")
            raise
        if retained is not None:
            self._volumes.delete_volume(retained)
        for old in self._volumes.snapshots(spec.slug):
            if old.snapshot_id != snapshot_id:
                self._volumes.delete_snapshot(old.snapshot_id)
        return self._placement(spec, task)

    def stop(self, spec: TenantSpec, placement: Placement) -> None:
        """StopTask every task of the tenant and wait until each has STOPPED. Data stays."""
        tasks = self._tenant_tasks(spec.slug)
        known = {t.arn for t in tasks}
        if placement.task_arn and placement.task_arn not in known:
            tasks += self._ecs.describe_tasks(self._config.cluster, [placement.task_arn])
        for task in tasks:
            self._stop_task(task, "Paitho: tenant stopped by the control plane")

    def destroy(self, spec: TenantSpec, placement: Placement) -> None:
        """Stop the tenant, then delete every volume and snapshot of its data."""
        self.stop(spec, placement)
        for volume in self._volumes.volumes(spec.slug):
            self._volumes.wait_available(spec.slug, volume.volume_id, self._config.stop_timeout_s)
            self._volumes.delete_volume(volume.volume_id)
        for snap in self._volumes.snapshots(spec.slug):
            self._volumes.delete_snapshot(snap.snapshot_id)

    def observe(self, spec: TenantSpec, placement: Placement | None) -> Observed:
        tasks = self._tenant_tasks(spec.slug)
        if placement is not None and placement.task_arn and not tasks:
            tasks = self._ecs.describe_tasks(self._config.cluster, [placement.task_arn])
        live = [t for t in tasks if not t.stopping]
        volumes = self._volumes.volumes(spec.slug)
        snapshots = self._volumes.snapshots(spec.slug)
        parts = [f"task {t.arn.rsplit('/', 1)[-1]} {t.last_status}" for t in tasks]
        if volumes:
            parts.append(f"{len(volumes)} volume(s)")
        if snapshots:
            parts.append(f"{len(snapshots)} snapshot(s)")
        return Observed(
            storage_exists=placement is not None or bool(live or volumes or snapshots),
            running=bool(live),
            version=live[0].tags.get(VERSION_TAG) if live else None,
            detail="; ".join(parts) or "no task, no volume",
        )

    # -- helpers -----------------------------------------------------------------------------

    def _tenant_tasks(self, slug: str) -> list[TaskInfo]:
        arns = self._ecs.list_tasks(self._config.cluster, started_by(slug))
        return self._ecs.describe_tasks(self._config.cluster, arns)

    def _stop_task(self, task: TaskInfo, reason: str) -> None:
        if task.last_status in ("STOPPED", "DELETED"):
            return
        if task.desired_status != "STOPPED":
            self._ecs.stop_task(self._config.cluster, task.arn, reason)
        self._ecs.wait_stopped(self._config.cluster, task.arn, self._config.stop_timeout_s)

    def _carry_over(self, slug: str) -> tuple[str | None, str | None]:
        """(retained volume to delete after a good start, snapshot to start from)."""
        volumes = self._volumes.volumes(slug)
        if volumes:
            newest = volumes[0]
            if len(volumes) > 1:
                log.warning(
                    "tenant %s has %d retained volumes; using the newest", slug, len(volumes)
                )
            self._volumes.wait_available(slug, newest.volume_id, self._config.stop_timeout_s)
            tags = {"Name": volume_name(slug), TENANT_TAG: slug}
            snap = self._volumes.snapshot(newest.volume_id, tags, self._config.snapshot_timeout_s)
            return newest.volume_id, snap
        done = [s for s in self._volumes.snapshots(slug) if s.state == "completed"]
        return None, (done[0].snapshot_id if done else None)

    def _placement(self, spec: TenantSpec, task: TaskInfo) -> Placement:
        return Placement(
            origin_host=task.private_ip or NO_ORIGIN,
            origin_port=self._config.app_port,
            data_location=volume_name(spec.slug),
            task_arn=task.arn,
        )
