"""Benchmark: `detector` ingest of N synthetic visits from CSV vs DuckDB loading the same file.

Ways to load the same CSV, each in its own process (peak memory is its own, VmHWM):

- ``duckdb``: DuckDB's bare ``CREATE TABLE AS SELECT * FROM read_csv(...)`` into a file
  of DuckDB's default format (the target's reference: 14 columns, types guessed, nothing
  kept but the values);
- ``duckdb-v1.5``: the same into a file of the format detector writes its store in
  (``store.STORAGE_VERSION``), whose compression is faster: the ratio to it is shown too;
- ``duckdb-wide``: DuckDB alone converting the file into the table detector stores (31
  columns: originals beside normalised values, keys, provenance) in one SQL statement,
  into a file of the store's format, with none of detector's checks, quarantine, row
  numbers, hashing or evidence copy. It shows what the width of the stored record costs
  by itself;
- ``detector``: ``detector.ingest.ingest_file`` (hash + evidence copy, canonical rows,
  quarantine checks, one transaction, ledger entry);
- ``duckdb-store``: DuckDB alone storing the rows ``detector`` stored, from memory
  (``child.store_floor``): the ingest's floor, the storing of those very rows.

    .venv/bin/python bench/ingest.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.child import connect_as_store, in_child, report, store_floor  # noqa: E402

MODES = ("duckdb", "duckdb-v1.5", "duckdb-wide", "detector", "duckdb-store")

# The synthetic layout (bench/synth.py) converted to detector's visits table by DuckDB.
WIDE = """
INSERT INTO visits BY NAME
SELECT record_id, facility, checkpoint, logbook,
       try_cast(page AS BIGINT) AS page, try_cast(line AS BIGINT) AS line,
       try_strptime(entered_at, '%Y-%m-%dT%H:%M:%S') AS entered_at, entered_at AS entered_at_raw,
       try_strptime(exited_at, '%Y-%m-%dT%H:%M:%S') AS exited_at, exited_at AS exited_at_raw,
       name, id_number,
       CASE WHEN lower(id_type) = 'dui' THEN 'DUI' ELSE 'other' END AS id_type,
       id_type AS id_type_raw,
       CASE WHEN lower(role) IN ('family', 'staff', 'lawyer', 'official', 'contractor')
            THEN lower(role) ELSE 'other' END AS role,
       role AS role_raw, inmate_id,
       coalesce(try_cast(party_size AS BIGINT), 1) AS party_size,
       CASE WHEN regexp_matches(entered_at, '\\d[:hH]\\d') THEN 'minute' ELSE 'day' END
           AS entered_precision,
       upper(strip_accents(name)) AS name_key,
       'V|' || facility || '|' || record_id AS record_key,
       $sha AS source_sha256, $name AS source_name, 0 AS source_row, 1 AS upload_seq
  FROM read_csv($csv, all_varchar = true, header = true)
"""


def _child(mode: str, csv: str, db: str) -> None:
    """One way to load the file; libraries are imported before the clock starts."""
    import duckdb

    if mode == "duckdb-store":  # csv: the database ``detector`` stored the file into
        seconds = store_floor(csv, db, "visits")
        report(mode=mode, rows=None, seconds=seconds)
        return
    if mode != "duckdb":
        from detector.ingest import ingest_file
        from detector.store import DDL, Store

    t0 = time.perf_counter()
    if mode == "detector":
        r = ingest_file(Store(db), csv)
        n = r.rows_stored
        assert r.status == "stored" and r.rows_quarantined == 0, r
    elif mode == "duckdb-wide":
        con = connect_as_store(db)
        for ddl in DDL:
            con.execute(ddl)
        con.execute("BEGIN")
        con.execute("SET preserve_insertion_order = false")  # as detector's insert does
        con.execute(WIDE, {"sha": "0" * 64, "name": Path(csv).name, "csv": csv})
        con.execute("COMMIT")
        n = con.execute("SELECT count(*) FROM visits").fetchall()[0][0]
        con.close()
    else:
        con = duckdb.connect(db) if mode == "duckdb" else connect_as_store(db)
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv}', header=true)")
        n = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
        con.close()
    report(mode=mode, rows=n, seconds=time.perf_counter() - t0)


def measure(rows: int, repeat: int = 3, csv: Path | None = None) -> dict:
    """Each way's median seconds and peak MB over ``repeat`` interleaved runs, and the
    ratios to DuckDB's bare read_csv (``csv``: a file to load instead of synthetic visits)."""
    from bench.synth import visits

    with tempfile.TemporaryDirectory() as tmp:
        if csv is None:
            csv = Path(tmp) / "visits.csv"
            visits(rows).write_csv(csv)
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for i in range(repeat):
            for mode in MODES:  # interleaved, so a slow moment of the machine hits all three
                db = Path(tmp) / f"{mode}-{i}" / "bench.duckdb"
                db.parent.mkdir()
                # Start from clean page cache state: nobody pays for writing back the
                # generated CSV or the previous run's database.
                os.sync()
                # the floor stores what this round's ingest stored
                source = db.parent.parent / f"detector-{i}" / "bench.duckdb"
                read = str(source) if mode == "duckdb-store" else str(csv)
                runs[mode].append(in_child(__file__, mode, read, str(db)))
        size = csv.stat().st_size
    out = {"rows": rows, "mb": size / 1e6, "repeat": repeat}
    for mode, rs in runs.items():
        out[mode] = {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "runs": [r["seconds"] for r in rs],
            "peak_mb": max(r["peak_mb"] for r in rs),
        }
    # The ratio of each run to the bare load of the same round, then their median: a
    # slow moment of the machine counts against both sides of one ratio.
    for mode in ("duckdb-v1.5", "duckdb-wide", "detector", "duckdb-store"):
        out[f"{mode}/duckdb"] = statistics.median(
            a["seconds"] / b["seconds"] for a, b in zip(runs[mode], runs["duckdb"], strict=True)
        )
    out["detector/duckdb-v1.5"] = statistics.median(
        a["seconds"] / b["seconds"]
        for a, b in zip(runs["detector"], runs["duckdb-v1.5"], strict=True)
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per way; the median is shown")
    ap.add_argument("--child", nargs=3)  # mode, csv, db
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    out = measure(args.rows, args.repeat)
    print(f"{args.rows:,} rows, {out['mb']:.0f} MB CSV, {args.repeat} runs each")
    for mode in MODES:
        r = out[mode]
        times = ", ".join(f"{t:.2f}" for t in r["runs"])
        print(
            f"{mode:>12}: {r['seconds']:6.2f} s  {args.rows / r['seconds']:>10,.0f} rows/s  "
            f"peak {r['peak_mb']:,.0f} MB  (runs: {times})"
        )
    for mode in ("duckdb-v1.5", "duckdb-wide", "detector", "duckdb-store"):
        print(
            f"{mode} / duckdb read_csv: {out[f'{mode}/duckdb']:.2f}x (median of the rounds' ratios)"
        )
    print(f"detector / duckdb-v1.5 read_csv: {out['detector/duckdb-v1.5']:.2f}x")


if __name__ == "__main__":
    main()
