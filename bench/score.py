"""Benchmark: feature building + ECOD scoring of N visits (the visits of bench/rules.py).

    .venv/bin/python bench/score.py --rows 1000000 --rows 10000000
Each run scores in a fresh process so that its peak memory (VmHWM) is its own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.child import in_child, report  # noqa: E402


def _child(db: str) -> None:
    from detector.scoring import score
    from detector.store import Store

    t0 = time.perf_counter()
    result = score(Store(db), workdir=Path(db).parent)
    report(seconds=time.perf_counter() - t0, parts=result.seconds, rows=result.rows)


def measure(n: int) -> dict:
    """Features and scoring of ``n`` built visits (the reference fitted), in its own process."""
    from bench.rules import build

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        build(db, n)
        return in_child(__file__, str(db))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, action="append")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    for n in args.rows or [1_000_000]:
        r = measure(n)
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in r["parts"].items())
        print(
            f"{r['rows']:>11,} visits: {r['seconds']:.1f} s ({parts}), peak {r['peak_mb']:,.0f} MB"
        )


if __name__ == "__main__":
    main()
