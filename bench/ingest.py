"""Benchmark: `detector` ingest of N synthetic visits from CSV vs DuckDB's bare read_csv.

Each side runs in its own process so that peak memory (ru_maxrss) is its own.
    .venv/bin/python bench/ingest.py --rows 1000000
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


def _child(mode: str, csv: str, db: str) -> None:
    """One side of the comparison; libraries are imported before the clock starts."""
    import duckdb

    if mode == "detector":
        from detector.ingest import ingest_file
        from detector.store import Store

    t0 = time.perf_counter()
    if mode == "detector":
        r = ingest_file(Store(db), csv)
        n = r.rows_stored
        assert r.status == "stored" and r.rows_quarantined == 0, r
    else:
        con = duckdb.connect(db)
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv}', header=true)")
        n = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
        con.close()
    report(mode=mode, rows=n, seconds=time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=3)  # mode, csv, db
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    from bench.synth import visits

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "visits.csv"
        visits(args.rows).write_csv(csv)
        print(f"{args.rows:,} rows, {csv.stat().st_size / 1e6:.0f} MB CSV")
        results = {}
        for mode in ("duckdb", "detector"):
            results[mode] = in_child(__file__, mode, str(csv), str(Path(tmp) / f"{mode}.duckdb"))
        for mode, r in results.items():
            print(
                f"{mode:>9}: {r['seconds']:6.2f} s  {r['rows'] / r['seconds']:>10,.0f} rows/s  "
                f"peak {r['peak_mb']:,.0f} MB"
            )
        ratio = results["detector"]["seconds"] / results["duckdb"]["seconds"]
        print(f"detector / duckdb read_csv: {ratio:.2f}x")


if __name__ == "__main__":
    main()
