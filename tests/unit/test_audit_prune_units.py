"""The checkpoint list's own consistency rules (no I/O): contiguous segments, pruned ones a
prefix."""

from __future__ import annotations

from datetime import UTC, datetime

from paitho_tenant.audit import Checkpoint, _checkpoint_problems

T = datetime(2025, 1, 15, tzinfo=UTC)


def _point(segment: int, first: int, last: int, pruned: bool) -> Checkpoint:
    return Checkpoint(
        segment, first, last, bytes(32), T, T, last - first + 1, T, T if pruned else None
    )


def test_contiguous_checkpoints_with_a_pruned_prefix_are_consistent() -> None:
    """Segments 1..3 covering rows 1..9 without gaps, the first two pruned: no problem."""
    points = [_point(1, 1, 3, True), _point(2, 4, 5, True), _point(3, 6, 9, False)]
    assert _checkpoint_problems(points) == []


def test_a_gap_or_a_pruned_segment_after_a_kept_one_is_named() -> None:
    """A checkpoint not following its predecessor, and a pruned segment after a kept one."""
    gap = [_point(1, 1, 3, False), _point(2, 5, 6, False)]
    assert [(p.seq, p.kind) for p in _checkpoint_problems(gap)] == [(5, "checkpoint")]
    holes = [_point(1, 1, 3, False), _point(2, 4, 6, True)]
    problems = _checkpoint_problems(holes)
    assert [(p.seq, p.kind) for p in problems] == [(4, "checkpoint")]
    assert "pruned after a kept segment" in problems[0].message
