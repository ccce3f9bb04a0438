"""The audit log of auth and admin actions: append and verify.

The chain itself (seq, timestamp, prev_hash, row_hash) is assigned by a database trigger under a
lock on the chain head, so the app role only ever INSERTs (actor, action, detail). `detail`
holds metadata only: counts, ids, kinds; never a secret, a passphrase or personal data.
`verify()` walks the chain as the owner and names the first row that was edited, deleted or
moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

GENESIS = bytes(32)


def record(
    conn: psycopg.Connection[Any], actor: str, action: str, detail: dict[str, Any] | None = None
) -> None:
    """Append one event (inside the caller's transaction if there is one)."""
    conn.execute(
        "INSERT INTO audit_log (actor, action, detail) VALUES (%s, %s, %s)",
        (actor, action, Jsonb(detail or {})),
    )


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # "edited" | "deleted" | "reordered"
    message: str


@dataclass(frozen=True)
class Verification:
    rows: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(conn: psycopg.Connection[Any]) -> Verification:
    """Recompute every row's hash and check every link; needs SELECT on audit_log (owner)."""
    rows = conn.execute(
        "SELECT seq, prev_hash, row_hash,"
        " audit_row_hash(prev_hash, at, actor, action, detail) = row_hash"
        " FROM audit_log ORDER BY seq"
    ).fetchall()
    head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    position = {bytes(r[2]): int(r[0]) for r in rows}
    problems: list[Problem] = []
    expected_prev, prev_seq = GENESIS, 0
    for seq, prev_hash, row_hash, content_ok in rows:
        seq, prev_hash, row_hash = int(seq), bytes(prev_hash), bytes(row_hash)
        if not content_ok:
            problems.append(
                Problem(seq, "edited", f"row {seq} was edited: its contents no longer hash to it")
            )
        if prev_hash != expected_prev:
            if prev_hash in position and position[prev_hash] != prev_seq:
                problems.append(
                    Problem(
                        seq,
                        "reordered",
                        f"row {seq} is out of order: it was written after row "
                        f"{position[prev_hash]}, not after row {prev_seq}",
                    )
                )
            elif seq != prev_seq + 1:
                missing = (
                    f"row {prev_seq + 1}"
                    if seq == prev_seq + 2
                    else f"rows {prev_seq + 1}..{seq - 1}"
                )
                problems.append(Problem(seq, "deleted", f"{missing} deleted before row {seq}"))
            else:
                problems.append(
                    Problem(
                        prev_seq,
                        "edited",
                        f"row {prev_seq} was edited and re-hashed: row {seq} does not link to it",
                    )
                )
        elif seq != prev_seq + 1 and prev_hash in position:
            problems.append(Problem(seq, "reordered", f"row {seq} has a moved sequence number"))
        expected_prev, prev_seq = row_hash, seq
    if head is not None and int(head[0]) > prev_seq:
        problems.append(
            Problem(
                prev_seq + 1,
                "deleted",
                f"rows {prev_seq + 1}..{int(head[0])} deleted from the end of the log",
            )
        )
    return Verification(len(rows), problems)


def entries(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every audit row (through the owner's SECURITY DEFINER reader), for export."""
    cur = conn.execute("SELECT * FROM audit_entries()")
    names = [d.name for d in cur.description or []]
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        item["prev_hash"] = bytes(item["prev_hash"]).hex()
        item["row_hash"] = bytes(item["row_hash"]).hex()
        item["detail"] = json.loads(json.dumps(item["detail"]))
        out.append(item)
    return out
