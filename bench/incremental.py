"""Benchmark: with N visits stored, append 1% and run the rules incrementally vs in full.

    .venv/bin/python bench/incremental.py --rows 10000000
The appended 1% are the next days of one facility (one upload), as a scheduled tick sees.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    args = ap.parse_args()
    import duckdb

    from bench.rules import VISITS, build
    from detector.rules import run_rules
    from detector.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        build(db, args.rows)
        store = Store(db)
        t0 = time.perf_counter()
        run_rules(store, full=True)
        full = time.perf_counter() - t0
        # Append 1% more: later entries of one facility, as one new upload.
        extra = args.rows // 100
        con = duckdb.connect(str(db))
        con.execute("""INSERT INTO uploads (seq, sha256, original_name, kind, entry_hash,
                                            uploaded_at)
                       VALUES (2, 'appended', 'appended.csv', 'visits', 'x', now())""")
        body = (
            VISITS.replace("$n", str(extra * 5))
            .replace("FROM range(", f"FROM (SELECT i + {args.rows} AS i FROM range(")
            .replace(") t(i)", ") t(i)) u(i)")
        )
        body = body.replace("1 AS upload_seq", "2 AS upload_seq")
        con.execute(f"CREATE TEMP TABLE more AS {body.split('INSERT INTO visits BY NAME', 1)[1]}")
        con.execute("INSERT INTO visits BY NAME SELECT * FROM more WHERE facility = 'ZAC'")
        appended = con.execute("SELECT count(*) FROM visits WHERE upload_seq = 2").fetchall()[0][0]
        con.close()
        t0 = time.perf_counter()
        report = run_rules(store, full=False)
        incremental = time.perf_counter() - t0
        print(
            f"{args.rows:,} visits stored, {appended:,} appended ({report.scope}): full run "
            f"{full:.1f} s, incremental run {incremental:.1f} s "
            f"({100 * incremental / full:.0f}% of full)"
        )


if __name__ == "__main__":
    main()
