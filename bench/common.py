"""Shared benchmark plumbing: every figure goes to bench/results.json as
{"name", "value", "unit", "ratio"} objects (ratio is null where there is no baseline)."""

from __future__ import annotations

import fcntl
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def record(name: str, value: float, unit: str, ratio: float | None = None) -> None:
    """Add or replace one figure in bench/results.json and print it."""
    entry = {
        "name": name,
        "value": round(value, 4),
        "unit": unit,
        "ratio": None if ratio is None else round(ratio, 4),
    }
    RESULTS.touch()
    with RESULTS.open("r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        text = fh.read().strip()
        entries = json.loads(text) if text else []
        entries = [e for e in entries if e.get("name") != name] + [entry]
        fh.seek(0)
        fh.truncate()
        json.dump(entries, fh, indent=2)
        fh.write("\n")
    ratio_text = "" if ratio is None else f"  (ratio {entry['ratio']})"
    print(f"{name:32s} {entry['value']:>12} {unit}{ratio_text}", flush=True)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)
