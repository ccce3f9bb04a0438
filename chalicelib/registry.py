"""The tenant registry: one DynamoDB item per tenant, billing and lifecycle metadata only.

Every write goes through `_check_allowed`, so nothing outside ALLOWED_ATTRIBUTES can ever be
stored (a test scans the table to prove it). Creation is conditional, so two concurrent creates
of one slug yield one tenant. Deleted tenants stay as tombstones (state "deleted").
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import Conflict, NotFound, RegistryError

log = logging.getLogger(__name__)

STATES = (
    "provisioning",
    "starting",
    "running",
    "upgrading",
    "suspending",
    "suspended",
    "stopped",
    "deleting",
    "deleted",
    "failed",
)
DESIRED_STATES = ("running", "suspended", "deleted")


@dataclass(frozen=True)
class TenantRecord:
    """One registry item. Every field name here is an allowlisted attribute."""

    slug: str
    plan: str
    region: str
    state: str = "provisioning"
    desired_state: str = "running"
    version: str = ""
    launcher: str = ""
    origin_host: str | None = None
    origin_port: int | None = None
    db_port: int | None = None
    data_location: str | None = None
    task_arn: str | None = None
    created_at: str = ""
    updated_at: str = ""
    deleted_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    last_event: str | None = None
    last_event_at: str | None = None
    restarts: int = 0
    generation: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


ALLOWED_ATTRIBUTES: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(TenantRecord) if f.name != "extra"
)


def _check_allowed(names: Iterable[str]) -> None:
    extra = sorted(set(names) - ALLOWED_ATTRIBUTES)
    if extra:
        raise RegistryError(f"refusing to store non-allowlisted registry attributes: {extra}")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_ser = TypeSerializer()
_de = TypeDeserializer()


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> TenantRecord:
    plain = {k: _de.deserialize(v) for k, v in item.items()}
    for key in ("origin_port", "db_port", "restarts", "generation"):
        if key in plain:
            plain[key] = int(plain[key])
    known = {k: v for k, v in plain.items() if k in ALLOWED_ATTRIBUTES}
    return TenantRecord(**known, extra={k: v for k, v in plain.items() if k not in known})


class Registry:
    """Typed gateway over the DynamoDB table. Takes its client; returns plain records."""

    def __init__(self, dynamodb: Any, table: str, clock: Callable[[], str] = now_iso) -> None:
        self._db = dynamodb
        self._table = table
        self._clock = clock

    # -- schema (CloudFormation creates it in AWS; `make up` and tests call this) ---------------
    def ensure_table(self) -> None:
        try:
            self._db.create_table(
                TableName=self._table,
                AttributeDefinitions=[{"AttributeName": "slug", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "slug", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise RegistryError(f"could not create the registry table: {exc}") from exc

    # -- reads ---------------------------------------------------------------------------------
    def get(self, slug: str) -> TenantRecord:
        try:
            resp = self._db.get_item(
                TableName=self._table, Key={"slug": {"S": slug}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"the tenant registry is unavailable: {exc}") from exc
        if "Item" not in resp:
            raise NotFound(f"no tenant named {slug!r}; `paitho tenants list` shows them all")
        return _from_item(resp["Item"])

    def find(self, slug: str) -> TenantRecord | None:
        try:
            return self.get(slug)
        except NotFound:
            return None

    def list(self, include_deleted: bool = False) -> list[TenantRecord]:
        records: list[TenantRecord] = []
        kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        try:
            while True:
                resp = self._db.scan(**kwargs)
                records += [_from_item(item) for item in resp.get("Items", [])]
                if "LastEvaluatedKey" not in resp:
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"the tenant registry is unavailable: {exc}") from exc
        if not include_deleted:
            records = [r for r in records if r.state != "deleted"]
        return sorted(records, key=lambda r: r.slug)

    def raw_items(self) -> builtins.list[dict[str, Any]]:
        """Every stored item as plain values (for the allowlist proof)."""
        resp = self._db.scan(TableName=self._table, ConsistentRead=True)
        return [{k: _de.deserialize(v) for k, v in item.items()} for item in resp["Items"]]

    # -- writes --------------------------------------------------------------------------------
    def create(self, record: TenantRecord) -> TenantRecord:
        """Create the item unless the slug is taken (a tombstone can be reused)."""
        stamp = self._clock()
        record = dataclasses.replace(record, created_at=stamp, updated_at=stamp, generation=1)
        values = {k: v for k, v in dataclasses.asdict(record).items() if k != "extra"}
        _check_allowed(values.keys())
        try:
            self._db.put_item(
                TableName=self._table,
                Item=_to_item(values),
                ConditionExpression="attribute_not_exists(slug) OR #s = :deleted",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":deleted": {"S": "deleted"}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise Conflict(f"the name {record.slug!r} is already taken") from exc
            raise RegistryError(f"could not write to the tenant registry: {exc}") from exc
        except BotoCoreError as exc:
            raise RegistryError(f"the tenant registry is unavailable: {exc}") from exc
        return record

    def update(self, slug: str, **changes: Any) -> TenantRecord:
        """Set (or, with None, remove) attributes on an existing item; bumps generation."""
        _check_allowed(changes.keys())
        changes["updated_at"] = self._clock()
        sets = {k: v for k, v in changes.items() if v is not None}
        removes = [k for k, v in changes.items() if v is None]
        names = {f"#{k}": k for k in changes}
        names["#gen"] = "generation"
        expr = "SET " + ", ".join([f"#{k} = :{k}" for k in sets] + ["#gen = #gen + :one"])
        if removes:
            expr += " REMOVE " + ", ".join(f"#{k}" for k in removes)
        values = {f":{k}": _ser.serialize(v) for k, v in sets.items()}
        values[":one"] = {"N": "1"}
        try:
            resp = self._db.update_item(
                TableName=self._table,
                Key={"slug": {"S": slug}},
                UpdateExpression=expr,
                ConditionExpression="attribute_exists(slug)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise NotFound(f"no tenant named {slug!r}") from exc
            raise RegistryError(f"could not write to the tenant registry: {exc}") from exc
        except BotoCoreError as exc:
            raise RegistryError(f"the tenant registry is unavailable: {exc}") from exc
        return _from_item(resp["Attributes"])

    def record_error(self, slug: str, reason: str) -> TenantRecord:
        return self.update(slug, last_error=reason, last_error_at=self._clock())

    def record_event(self, slug: str, event: str, restarted: bool = False) -> TenantRecord:
        record = self.get(slug)
        restarts = record.restarts + (1 if restarted else 0)
        return self.update(slug, last_event=event, last_event_at=self._clock(), restarts=restarts)
