"""Benchmark: with N visits stored, append 1% spread over every facility (the next days of
each prison, as a day's uploads are) and run rules and scoring incrementally vs in full.

    .venv/bin/python bench/incremental.py --rows 1000000 --rows 10000000
Reported: the full run (every rule, the reference fitted and every visit scored), then
for the appended 1%: the rules alone and rules + scoring, each as a share of the full run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _append(db: Path, rows: int, seq: int = 2) -> int:
    """The next 1% of visits (all five facilities, the days after the stored ones), as
    one new upload, number ``seq`` (3: the 1% after the 1% of upload 2)."""
    import duckdb

    from bench.rules import VISITS

    extra = rows // 100
    start = rows + (seq - 2) * extra
    con = duckdb.connect(str(db))
    con.execute(
        """INSERT INTO uploads (seq, sha256, original_name, kind, entry_hash, uploaded_at)
        VALUES (?, ?, ?, 'visits', 'x', now())""",
        [seq, f"appended-{seq}", f"appended-{seq}.csv"],
    )
    body = (
        VISITS.replace("$n", str(extra))
        .replace("FROM range(", f"FROM (SELECT i + {start} AS i FROM range(")
        .replace(") t(i))", ") t(i)) u(i))")
        .replace("1 AS upload_seq", f"{seq} AS upload_seq")
    )
    con.execute(body)
    appended = con.execute(f"SELECT count(*) FROM visits WHERE upload_seq = {seq}").fetchall()[0][0]
    con.close()
    return appended


def measure(rows: int) -> None:
    from bench.rules import build
    from detector.engine import run_rules
    from detector.scoring import score
    from detector.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        build(db, rows)
        store = Store(db)
        t0 = time.perf_counter()
        run_rules(store, full=True)
        full_rules = time.perf_counter() - t0
        fitted = score(store, refit=True, workdir=Path(tmp))
        full = time.perf_counter() - t0
        appended = _append(db, rows)
        t0 = time.perf_counter()
        report = run_rules(store, full=False)
        rules = time.perf_counter() - t0
        scored = score(store, workdir=Path(tmp))
        both = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = score(store, full=True, workdir=Path(tmp))
        rescore = time.perf_counter() - t0
        print(
            f"{rows:,} visits, {appended:,} appended over every facility\n"
            f"  full run: rules {full_rules:.1f} s + fit and score {full - full_rules:.1f} s "
            f"= {full:.1f} s  (fit {fitted.seconds})\n"
            f"  incremental rules ({report.scope}): {rules:.1f} s = "
            f"{100 * rules / full_rules:.0f}% of the full rules, {100 * rules / full:.1f}% "
            "of the full run\n"
            f"  incremental rules + scoring ({scored.rows:,} visits re-scored): {both:.1f} s "
            f"= {100 * both / full:.1f}% of the full run  (scoring {scored.seconds})\n"
            f"  full re-scoring against the kept reference: {rescore:.1f} s "
            f"({again.rows:,} visits)",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, action="append")
    args = ap.parse_args()
    for rows in args.rows or [1_000_000]:
        measure(rows)


if __name__ == "__main__":
    main()
