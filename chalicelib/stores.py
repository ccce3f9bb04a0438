"""Control-plane tables: one typed gateway per DynamoDB table, each with an attribute allowlist.

Every write passes `_check_allowed`, so an attribute outside a table's allowlist can never be
stored (tests/functional/test_cp_allowlist.py scans every table to prove it). `DynamoTable`
talks to DynamoDB through an injected client; `MemoryTable` keeps the same contract in a dict
for unit tests. Both raise this project's errors, never botocore's.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.cpconfig import TableNames
from chalicelib.errors import Conflict, NotFound, StoreError

Item = dict[str, Any]


@dataclass(frozen=True)
class TableSpec:
    key: str
    allowed: frozenset[str]


SPECS: dict[str, TableSpec] = {
    "accounts": TableSpec(
        "email",
        frozenset(
            {
                "email",
                "account_id",
                "password_hash",
                "company",
                "subdomain",
                "region",
                "plan",
                "state",
                "created_at",
                "verified_at",
                "password_changed_at",
            }
        ),
    ),
    "claims": TableSpec("subdomain", frozenset({"subdomain", "email", "created_at"})),
    "sessions": TableSpec("sid_hash", frozenset({"sid_hash", "email", "created_at", "expires_at"})),
    "tokens": TableSpec("token_id", frozenset({"token_id", "purpose", "used_at", "expires_at"})),
    "ratelimits": TableSpec(
        "bucket", frozenset({"bucket", "hits", "over", "blocked_until", "expires_at"})
    ),
    "audit": TableSpec(
        "event_id",
        frozenset({"event_id", "at", "action", "actor", "target", "outcome", "detail"}),
    ),
    "subscriptions": TableSpec(
        "slug",
        frozenset(
            {
                "slug",
                "email",
                "plan",
                "state",
                "provider",
                "customer_id",
                "subscription_id",
                "last_event_created",
                "trial_ends_at",
                "past_due_since",
                "suspended_at",
                "canceled_at",
                "export_reminder_at",
                "delete_after",
                "deleted_at",
                "updated_at",
            }
        ),
    ),
    "stripe_events": TableSpec(
        "event_id", frozenset({"event_id", "type", "created", "received_at", "outcome"})
    ),
    "licences": TableSpec(
        "licence_id",
        frozenset({"licence_id", "slug", "plan", "key_id", "issued_at", "expires_at"}),
    ),
    "changelog": TableSpec(
        "entry_id",
        frozenset({"entry_id", "kind", "title", "body", "posted_on", "effective_on"}),
    ),
    "status": TableSpec(
        "item_id",
        frozenset(
            {
                "item_id",
                "kind",
                "name",
                "state",
                "uptime_pct",
                "title",
                "starts_at",
                "ends_at",
                "updated_at",
            }
        ),
    ),
}


# Tables whose items expire by DynamoDB TTL on `expires_at` (epoch seconds).
TTL_KINDS = frozenset({"sessions", "tokens", "ratelimits"})


def check_allowed(table: str, names: Any) -> None:
    extra = sorted(set(names) - SPECS[table].allowed)
    if extra:
        raise StoreError(f"refusing to store non-allowlisted {table} attributes: {extra}")


class Table(Protocol):
    kind: str

    def get(self, key: str) -> Item | None: ...
    def put_new(self, item: Item) -> None: ...
    def put(self, item: Item) -> None: ...
    def update(self, key: str, changes: Item, expect: Mapping[str, Any] | None = None) -> Item: ...
    def add(self, key: str, name: str, amount: int, sets: Item | None = None) -> Item: ...
    def delete(self, key: str) -> None: ...
    def scan(self) -> list[Item]: ...


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


_ser = TypeSerializer()
_de = TypeDeserializer()


def _serialize(value: Any) -> dict[str, Any]:
    """DynamoDB numbers are Decimals; floats (timestamps) go through their shortest repr."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    return dict(_ser.serialize(value))


class DynamoTable:
    """One DynamoDB table behind the Table contract. `expect` maps attribute → required value
    (None meaning "must not exist")."""

    def __init__(self, client: Any, name: str, kind: str) -> None:
        self._db = client
        self.name = name
        self.kind = kind
        self._key = SPECS[kind].key

    def ensure(self) -> None:
        try:
            self._db.create_table(
                TableName=self.name,
                AttributeDefinitions=[{"AttributeName": self._key, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": self._key, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise StoreError(f"could not create table {self.name}: {exc}") from exc
            return
        if self.kind in TTL_KINDS:
            self._call(
                "update_time_to_live",
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._db, method)(TableName=self.name, **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise Conflict(f"a {self.kind} record changed or already exists") from exc
            raise StoreError(f"the {self.kind} store refused a request: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"the {self.kind} store is unavailable: {exc}") from exc

    def _item(self, values: Item) -> dict[str, Any]:
        return {k: _serialize(v) for k, v in values.items() if v is not None}

    def get(self, key: str) -> Item | None:
        resp = self._call("get_item", Key={self._key: {"S": key}}, ConsistentRead=True)
        if "Item" not in resp:
            return None
        return {k: _plain(_de.deserialize(v)) for k, v in resp["Item"].items()}

    def put_new(self, item: Item) -> None:
        check_allowed(self.kind, item.keys())
        self._call(
            "put_item",
            Item=self._item(item),
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": self._key},
        )

    def put(self, item: Item) -> None:
        check_allowed(self.kind, item.keys())
        self._call("put_item", Item=self._item(item))

    def update(self, key: str, changes: Item, expect: Mapping[str, Any] | None = None) -> Item:
        check_allowed(self.kind, changes.keys())
        names: dict[str, str] = {"#key": self._key}
        values: dict[str, Any] = {}
        sets, removes = [], []
        for i, (name, value) in enumerate(changes.items()):
            names[f"#a{i}"] = name
            if value is None:
                removes.append(f"#a{i}")
            else:
                values[f":a{i}"] = _serialize(value)
                sets.append(f"#a{i} = :a{i}")
        expr = ("SET " + ", ".join(sets) if sets else "") + (
            " REMOVE " + ", ".join(removes) if removes else ""
        )
        conditions = ["attribute_exists(#key)"]
        for i, (name, value) in enumerate((expect or {}).items()):
            names[f"#e{i}"] = name
            if value is None:
                conditions.append(f"attribute_not_exists(#e{i})")
            else:
                values[f":e{i}"] = _serialize(value)
                conditions.append(f"#e{i} = :e{i}")
        kwargs: dict[str, Any] = {
            "Key": {self._key: {"S": key}},
            "UpdateExpression": expr.strip(),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ReturnValues": "ALL_NEW",
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        resp = self._call("update_item", **kwargs)
        return {k: _plain(_de.deserialize(v)) for k, v in resp["Attributes"].items()}

    def add(self, key: str, name: str, amount: int, sets: Item | None = None) -> Item:
        """Atomically add `amount` to a number (creating the item at 0), setting `sets` too."""
        sets = {k: v for k, v in (sets or {}).items() if v is not None}
        check_allowed(self.kind, [name, *sets])
        names = {"#n": name, **{f"#s{i}": k for i, k in enumerate(sets)}}
        values = {":n": _serialize(amount)}
        values |= {f":s{i}": _serialize(v) for i, v in enumerate(sets.values())}
        expr = "ADD #n :n"
        if sets:
            expr += " SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(sets)))
        resp = self._call(
            "update_item",
            Key={self._key: {"S": key}},
            UpdateExpression=expr,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return {k: _plain(_de.deserialize(v)) for k, v in resp["Attributes"].items()}

    def delete(self, key: str) -> None:
        self._call("delete_item", Key={self._key: {"S": key}})

    def scan(self) -> list[Item]:
        items: list[Item] = []
        kwargs: dict[str, Any] = {"ConsistentRead": True}
        while True:
            resp = self._call("scan", **kwargs)
            items += [
                {k: _plain(_de.deserialize(v)) for k, v in it.items()} for it in resp["Items"]
            ]
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


class MemoryTable:
    """The same contract in process memory (unit tests, no I/O). Thread-safe."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._key = SPECS[kind].key
        self._items: dict[str, Item] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Item | None:
        with self._lock:
            item = self._items.get(key)
            return copy.deepcopy(item) if item is not None else None

    def put_new(self, item: Item) -> None:
        check_allowed(self.kind, item.keys())
        with self._lock:
            if item[self._key] in self._items:
                raise Conflict(f"a {self.kind} record changed or already exists")
            self._items[item[self._key]] = {k: v for k, v in item.items() if v is not None}

    def put(self, item: Item) -> None:
        check_allowed(self.kind, item.keys())
        with self._lock:
            self._items[item[self._key]] = {k: v for k, v in item.items() if v is not None}

    def update(self, key: str, changes: Item, expect: Mapping[str, Any] | None = None) -> Item:
        check_allowed(self.kind, changes.keys())
        with self._lock:
            current = self._items.get(key)
            if current is None:
                raise Conflict(f"a {self.kind} record changed or already exists")
            for name, value in (expect or {}).items():
                if current.get(name) != value:
                    raise Conflict(f"a {self.kind} record changed or already exists")
            for name, value in changes.items():
                if value is None:
                    current.pop(name, None)
                else:
                    current[name] = value
            return copy.deepcopy(current)

    def add(self, key: str, name: str, amount: int, sets: Item | None = None) -> Item:
        sets = sets or {}
        check_allowed(self.kind, [name, *sets])
        with self._lock:
            item = self._items.setdefault(key, {self._key: key})
            item[name] = item.get(name, 0) + amount
            item.update({k: v for k, v in sets.items() if v is not None})
            return copy.deepcopy(item)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def scan(self) -> list[Item]:
        with self._lock:
            return copy.deepcopy(list(self._items.values()))


@dataclass(frozen=True)
class Stores:
    accounts: Table
    claims: Table
    sessions: Table
    tokens: Table
    ratelimits: Table
    audit: Table
    subscriptions: Table
    stripe_events: Table
    licences: Table
    changelog: Table
    status: Table

    def all(self) -> dict[str, Table]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def dynamo_stores(client: Any, names: TableNames) -> Stores:
    return Stores(**{kind: DynamoTable(client, getattr(names, kind), kind) for kind in SPECS})


def memory_stores() -> Stores:
    return Stores(**{kind: MemoryTable(kind) for kind in SPECS})


def ensure_tables(stores: Stores) -> None:
    """Create every DynamoDB table (CloudFormation does it in AWS; `make up` and tests here)."""
    for table in stores.all().values():
        if isinstance(table, DynamoTable):
            table.ensure()


def get_required(table: Table, key: str, what: str) -> Item:
    item = table.get(key)
    if item is None:
        raise NotFound(f"no {what} found")
    return item
