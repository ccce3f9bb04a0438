"""The audit log of auth and admin actions: append and verify.

The chain itself (seq, timestamp, prev_hash, row_hash) is assigned by a database trigger under a
lock on the chain head, so the app role only ever INSERTs (actor, action, detail). `detail`
holds metadata only: counts, ids, kinds; never a secret, a passphrase or personal data.
`verify()` walks the chain as the owner and names the first row that was edited, deleted or
moved.

Segments (migrations/0002_audit_segments.sql): `checkpoint()` closes whole UTC months into
numbered segments (first/last seq, the last row's hash, time range); `prune()` deletes the
oldest whole segments whose newest row is more than 12 months old, through the owner's
SECURITY DEFINER `audit_prune()`, the only path the delete trigger lets through, and appends an
`audit.segments_pruned` entry (segment numbers, row count, time range, the new anchor; no
content). Pruned checkpoints stay: verification starts from the newest one's hash instead of
genesis, and that anchor must be the one the newest pruning entry, inside the chain, names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

GENESIS = bytes(32)
PRUNED_ACTION = "audit.segments_pruned"


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
    kind: str  # "edited" | "deleted" | "reordered" | "checkpoint"
    message: str


@dataclass(frozen=True)
class Verification:
    rows: int
    problems: list[Problem]
    anchor_seq: int = 0  # the last pruned row (0: nothing pruned, the chain starts at genesis)
    pruned_segments: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Checkpoint:
    segment: int
    first_seq: int
    last_seq: int
    last_hash: bytes
    first_at: datetime
    last_at: datetime
    row_count: int
    created_at: datetime
    pruned_at: datetime | None


def checkpoints(conn: psycopg.Connection[Any]) -> list[Checkpoint]:
    """Every segment checkpoint, oldest first (pruned ones stay: the newest is the anchor)."""
    found = conn.execute("SELECT to_regclass('public.audit_checkpoints') IS NOT NULL").fetchone()
    if not found or not found[0]:
        return []
    rows = conn.execute(
        "SELECT segment, first_seq, last_seq, last_hash, first_at, last_at, row_count,"
        " created_at, pruned_at FROM audit_checkpoints ORDER BY segment"
    ).fetchall()
    return [
        Checkpoint(int(r[0]), int(r[1]), int(r[2]), bytes(r[3]), r[4], r[5], int(r[6]), r[7], r[8])
        for r in rows
    ]


def checkpoint(conn: psycopg.Connection[Any], as_of: datetime | None = None) -> int:
    """Close every whole UTC month before `as_of` (default: the database clock; never later)
    as a segment; returns how many were closed. Owner role."""
    row = conn.execute("SELECT audit_checkpoint(coalesce(%s, now()))", (as_of,)).fetchone()
    return int(row[0]) if row else 0


def prune(
    conn: psycopg.Connection[Any], as_of: datetime | None = None, actor: str = "retention"
) -> int:
    """Checkpoint, then prune whole segments whose newest row is more than 12 months older than
    `as_of` (never later than the database clock), logging it; returns the segments pruned."""
    row = conn.execute("SELECT audit_prune(coalesce(%s, now()), %s)", (as_of, actor)).fetchone()
    return int(row[0]) if row else 0


def _checkpoint_problems(points: list[Checkpoint]) -> list[Problem]:
    problems = []
    prev: Checkpoint | None = None
    for point in points:
        expected_segment = prev.segment + 1 if prev else 1
        expected_first = prev.last_seq + 1 if prev else 1
        if point.segment != expected_segment or point.first_seq != expected_first:
            problems.append(
                Problem(
                    point.first_seq,
                    "checkpoint",
                    f"segment {point.segment}'s checkpoint does not follow the previous one",
                )
            )
        if point.pruned_at is not None and prev is not None and prev.pruned_at is None:
            problems.append(
                Problem(
                    point.first_seq,
                    "checkpoint",
                    f"segment {point.segment} is marked pruned after a kept segment",
                )
            )
        prev = point
    return problems


def _anchor_problem(conn: psycopg.Connection[Any], anchor: Checkpoint) -> Problem | None:
    """The newest pruning entry (inside the chain) must name the anchor the checkpoints give."""
    row = conn.execute(
        "SELECT detail FROM audit_log WHERE action = %s ORDER BY seq DESC LIMIT 1",
        (PRUNED_ACTION,),
    ).fetchone()
    detail = row[0] if row else {}
    if (
        detail.get("anchor_seq") == anchor.last_seq
        and detail.get("anchor_hash") == anchor.last_hash.hex()
    ):
        return None
    return Problem(
        anchor.last_seq + 1,
        "checkpoint",
        f"the pruning anchor (row {anchor.last_seq}, segment {anchor.segment}) is not the one"
        " the newest pruning entry in the log names",
    )


def verify(conn: psycopg.Connection[Any]) -> Verification:
    """Recompute every row's hash and check every link, from genesis or, once segments were
    pruned, from the newest pruned checkpoint's hash; needs SELECT on audit_log (owner)."""
    points = checkpoints(conn)
    pruned = [p for p in points if p.pruned_at is not None]
    anchor_seq, anchor_hash = (
        (pruned[-1].last_seq, pruned[-1].last_hash) if pruned else (0, GENESIS)
    )
    problems = _checkpoint_problems(points)
    all_rows = conn.execute(
        "SELECT seq, prev_hash, row_hash,"
        " audit_row_hash(prev_hash, at, actor, action, detail) = row_hash"
        " FROM audit_log ORDER BY seq"
    ).fetchall()
    leftover = [int(r[0]) for r in all_rows if int(r[0]) <= anchor_seq]
    if leftover:
        problems.append(
            Problem(
                leftover[0],
                "checkpoint",
                f"rows {leftover[0]}..{leftover[-1]} remain in segments marked pruned",
            )
        )
    rows = [r for r in all_rows if int(r[0]) > anchor_seq]
    head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    position = {bytes(r[2]): int(r[0]) for r in rows}
    position_hash = {int(r[0]): bytes(r[2]) for r in rows}
    expected_prev, prev_seq = anchor_hash, anchor_seq
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
    for point in points:
        kept = position_hash.get(point.last_seq)
        if point.pruned_at is None and kept is not None and kept != point.last_hash:
            problems.append(
                Problem(
                    point.last_seq,
                    "checkpoint",
                    f"row {point.last_seq} no longer matches segment {point.segment}'s checkpoint",
                )
            )
    if pruned:
        anchor = _anchor_problem(conn, pruned[-1])
        if anchor is not None:
            problems.append(anchor)
    return Verification(len(rows), problems, anchor_seq, len(pruned))


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
