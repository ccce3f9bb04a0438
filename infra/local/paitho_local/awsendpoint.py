"""The local AWS endpoint: moto's server on loopback, with Step Functions execution on.

moto keeps everything in memory, so the platform snapshots every DynamoDB table (key schema and
items) to `home/aws/dynamodb.json` — atomically, whenever it changed — and restores it at the
next start. That is what lets tenants be found again after `make up` restarts. The snapshot
holds control-plane metadata only (the same allowlisted attributes as the tables).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

log = logging.getLogger(__name__)


class LocalAws:
    def __init__(self, home: Path, port: int, region: str = "us-east-1") -> None:
        self._state = home / "aws" / "dynamodb.json"
        self._port = port
        self._region = region
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._last_digest = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://localhost:{self._port}"

    def start(self) -> None:
        self._server.start()
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/config",
            data=b'{"stepfunctions": {"execute_state_machine": true}}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=10).close()
        self.restore()
        self._thread = threading.Thread(target=self._snapshot_loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.snapshot()
        self._server.stop()

    def _client(self) -> Any:
        return boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint,
            region_name=self._region,
            aws_access_key_id="paitho-local",
            aws_secret_access_key="paitho-local",  # noqa: S106 - moto's dummy credentials
        )

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.snapshot()
            except Exception:  # keep snapshotting; report once per failure
                log.exception("snapshot of the local AWS state failed")

    def snapshot(self) -> None:
        db = self._client()
        tables: dict[str, Any] = {}
        for name in db.list_tables()["TableNames"]:
            desc = db.describe_table(TableName=name)["Table"]
            items: list[Any] = []
            kwargs: dict[str, Any] = {"TableName": name}
            while True:
                page = db.scan(**kwargs)
                items += page["Items"]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            tables[name] = {
                "KeySchema": desc["KeySchema"],
                "AttributeDefinitions": desc["AttributeDefinitions"],
                "GlobalSecondaryIndexes": [
                    {k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
                    for g in desc.get("GlobalSecondaryIndexes", [])
                ],
                "Items": items,
            }
        text = json.dumps(tables, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._last_digest:
            return
        self._state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._state.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self._state)
        self._last_digest = digest

    def restore(self) -> None:
        if not self._state.exists():
            return
        db = self._client()
        tables = json.loads(self._state.read_text())
        for name, spec in tables.items():
            kwargs: dict[str, Any] = {
                "TableName": name,
                "KeySchema": spec["KeySchema"],
                "AttributeDefinitions": spec["AttributeDefinitions"],
                "BillingMode": "PAY_PER_REQUEST",
            }
            if spec.get("GlobalSecondaryIndexes"):
                kwargs["GlobalSecondaryIndexes"] = spec["GlobalSecondaryIndexes"]
            db.create_table(**kwargs)
            for item in spec["Items"]:
                db.put_item(TableName=name, Item=item)
        self._last_digest = hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()
