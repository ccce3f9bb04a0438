"""`make bench`: run every bench_*.py module's main() in turn; figures land in results.json."""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

from bench.common import RESULTS


def main() -> int:
    names = sys.argv[1:] or sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    RESULTS.write_text("[]\n")
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception:
            traceback.print_exc()
            failed.append(name)
    print(f"results in {RESULTS}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
