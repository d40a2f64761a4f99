"""Benchmark: ingest N reader events from a CSV with `detector` and pair them into stays.

A synthetic badge export (five facilities, three zones each, 2,000 people each going in
and out through the perimeter, some reads missing) is written once; then, in one process
each:

- ``ingest``: ``detector.ingest.ingest_file`` (hash and evidence copy, canonical rows,
  checks, one transaction, ledger entry), beside DuckDB's bare ``read_csv`` of the file
  into a file of its default format (``bare``) and of the format detector writes its store
  in (``bare-v1.5``, ``store.STORAGE_VERSION``), and DuckDB alone converting it into the
  stored table in one SQL statement (``wide``, in the store's format);
- ``book``: a visit logbook beside the reads (a line for one entry read in four, ten
  minutes after it), ingested, so that the rules holding the book against the gate have
  work;
- ``store``: DuckDB alone storing the rows the ingest stored (``child.store_floor``): the
  ingest's floor;
- ``pair``: the ``event_stays`` view counted by pairing (every event paired per person and
  zone, the unmatched ends kept), DuckDB alone pairing every read with the next one of its
  person (``PAIR_FLOOR``: the rules' floor), then the access and reconciliation rules run
  in full.

    .venv/bin/python bench/events.py --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.child import connect_as_store, in_child, report, store_floor  # noqa: E402

SYNTH = """
COPY (
  SELECT 'E' || i AS event_id,
         'F' || ((i // 2) % 5) AS centro,
         strftime(TIMESTAMP '2024-01-01 06:00' + to_minutes((i // 10)::BIGINT)
                  + to_minutes(((i % 2) * 480)::BIGINT), '%d/%m/%Y %H:%M') AS fecha_hora,
         'Persona ' || ((i // 2) % 10000) AS nombre,
         'C-' || ((i // 2) % 10000) AS tarjeta,
         CASE (i // 2) % 3 WHEN 0 THEN 'Portón' WHEN 1 THEN 'Torniquete' ELSE 'Lector M' END
           AS lector,
         CASE WHEN i % 997 = 0 THEN 'lectura' WHEN i % 2 = 0 THEN 'Entrada' ELSE 'Salida' END
           AS sentido
  FROM range($n) t(i)
) TO '$csv' (HEADER, DELIMITER ',')
"""


BOOK = """
COPY (
  SELECT 'V' || i AS correlativo, 'F' || ((i // 2) % 5) AS centro_penal,
         strftime(TIMESTAMP '2024-01-01 06:10' + to_minutes((i // 10)::BIGINT),
                  '%d/%m/%Y %H:%M') AS ingreso,
         'Persona ' || ((i // 2) % 10000) AS nombre
  FROM range(0, $n, 8) t(i)
) TO '$csv' (HEADER, DELIMITER ',')
"""


# The synthetic export converted to detector's events table by DuckDB alone, in one
# statement: the reads' derived columns (the moment, the direction, the folded name and
# reader, the person key, provenance) with none of detector's checks, quarantine, row
# numbers, seal or evidence copy. What storing the wide record costs by itself: the
# ingest's floor.
WIDE = """
INSERT INTO events BY NAME
SELECT event_id AS record_id, strptime(fecha_hora, '%d/%m/%Y %H:%M') AS seen_at,
       fecha_hora AS seen_at_raw, centro AS facility, nombre AS name, tarjeta AS badge,
       lector AS reader,
       CASE lower(sentido) WHEN 'entrada' THEN 'in' WHEN 'salida' THEN 'out'
            ELSE 'unknown' END AS direction, sentido AS direction_raw,
       upper(strip_accents(nombre)) AS name_key, 'named' AS name_status,
       tarjeta || '|' || upper(strip_accents(nombre)) AS person_key,
       upper(strip_accents(lector)) AS reader_key,
       'E|' || centro || '|' || event_id AS record_key,
       $sha AS source_sha256, $name AS source_name, 0 AS source_row, 1 AS upload_seq
FROM read_csv($csv, all_varchar = true, header = true)
"""


# The least any pairing of reads costs, DuckDB alone: every read with the next one of its
# person at its facility (one window over every read, ordered by time), kept in a table,
# with no repeats left out, no zones and none of the unmatched ends told apart. The access
# rules' floor: each of them reads reads paired so.
PAIR_FLOOR = """
CREATE TEMP TABLE pair_floor AS
SELECT record_key, facility, person_key, reader, direction, seen_at,
       lead(direction) OVER w AS next_direction, lead(seen_at) OVER w AS next_at,
       lead(record_key) OVER w AS next_key
FROM events WINDOW w AS (PARTITION BY facility, person_key ORDER BY seen_at)
"""


def _child(mode: str, csv: str, db: str) -> None:
    """One step in its own process; libraries are imported before the clock starts."""
    from detector.engine import run_rules
    from detector.ingest import ingest_file
    from detector.rulebook import load_rules
    from detector.store import Store

    if mode in ("bare", "bare-v1.5"):  # DuckDB's bare load of the same file, the reference
        import duckdb

        start = time.perf_counter()
        con = duckdb.connect(db) if mode == "bare" else connect_as_store(db)
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv}', header=true)")
        con.close()
        report(seconds=round(time.perf_counter() - start, 2))
        return
    if mode == "wide":
        from detector.store import DDL

        con = connect_as_store(db)
        for ddl in DDL:
            con.execute(ddl)
        start = time.perf_counter()
        con.execute("BEGIN")
        con.execute("SET preserve_insertion_order = false")  # as detector's insert does
        con.execute(WIDE, {"sha": "0" * 64, "name": Path(csv).name, "csv": csv})
        con.execute("COMMIT")
        con.close()
        report(seconds=round(time.perf_counter() - start, 2))
        return
    if mode == "store":  # csv: the database an ingest stored the file into
        report(seconds=round(store_floor(csv, db, "events"), 2))
        return
    store = Store(Path(db), wait=600)
    if mode in ("ingest", "book"):
        start = time.perf_counter()
        result = ingest_file(store, Path(csv))
        report(seconds=round(time.perf_counter() - start, 2), stored=result.rows_stored)
        return
    start = time.perf_counter()
    with store.read() as con:
        pairs = dict(con.execute("SELECT pairing, count(*) FROM event_stays GROUP BY 1").fetchall())
    paired = time.perf_counter() - start
    with store.read() as con:  # under the store's own memory limit
        start = time.perf_counter()
        con.execute(PAIR_FLOOR)
        floor = time.perf_counter() - start
    only = [r.id for r in load_rules() if r.category == "access_events"]
    start = time.perf_counter()
    done = run_rules(store, only=only, full=True)
    report(
        pair_seconds=round(paired, 2),
        pair_floor_seconds=round(floor, 2),
        pairs=pairs,
        rules_seconds=round(time.perf_counter() - start, 2),
        flags=done.counts,
    )


def measure(rows: int, repeat: int = 3, only_ingest: bool = False) -> dict:
    """Ingest against DuckDB's bare load (median of ``repeat`` interleaved rounds, each in a
    fresh database), then the book, the pairing and the access rules on the last one."""
    import statistics

    import duckdb

    out: dict = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "marcaciones.csv"
        duckdb.sql(SYNTH.replace("$n", str(rows)).replace("$csv", str(csv)))
        book = Path(tmp) / "libro.csv"
        duckdb.sql(BOOK.replace("$n", str(rows)).replace("$csv", str(book)))
        out["mb"] = csv.stat().st_size / 1e6
        rounds, bare15s = [], []
        for i in range(repeat):
            bare = in_child(__file__, "bare", str(csv), str(Path(tmp) / f"bare-{i}.duckdb"))
            bare15 = in_child(
                __file__, "bare-v1.5", str(csv), str(Path(tmp) / f"bare15-{i}.duckdb")
            )
            wide = in_child(__file__, "wide", str(csv), str(Path(tmp) / f"wide-{i}.duckdb"))
            db = str(Path(tmp) / f"d-{i}.duckdb")
            ingest = in_child(__file__, "ingest", str(csv), db)
            stored = in_child(__file__, "store", db, str(Path(tmp) / f"store-{i}.duckdb"))
            Path(tmp, f"store-{i}.duckdb").unlink()
            rounds.append((bare, ingest, wide, stored))
            bare15s.append((bare15, ingest))
            if only_ingest:
                Path(db).unlink()
        out["bare"] = statistics.median(b["seconds"] for b, _, _, _ in rounds)
        out["wide"] = statistics.median(w["seconds"] for _, _, w, _ in rounds)
        out["store"] = statistics.median(s["seconds"] for _, _, _, s in rounds)
        out["ingest"] = statistics.median(i["seconds"] for _, i, _, _ in rounds)
        out["ingest/bare"] = statistics.median(i["seconds"] / b["seconds"] for b, i, _, _ in rounds)
        out["wide/bare"] = statistics.median(w["seconds"] / b["seconds"] for b, _, w, _ in rounds)
        out["store/bare"] = statistics.median(s["seconds"] / b["seconds"] for b, _, _, s in rounds)
        out["ingest_peak_mb"] = max(i["peak_mb"] for _, i, _, _ in rounds)
        out["bare-v1.5"] = statistics.median(b["seconds"] for b, _ in bare15s)
        out["ingest/bare-v1.5"] = statistics.median(i["seconds"] / b["seconds"] for b, i in bare15s)
        if only_ingest:
            return out
        out["book"] = in_child(__file__, "book", str(book), db)
        out["pair"] = in_child(__file__, "pair", str(csv), db)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3)
    parser.add_argument("--only-ingest", action="store_true", help="the ingest and its floor")
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    out = measure(args.rows, args.repeat, args.only_ingest)
    print(
        f"{args.rows:,} events, {out['mb']:.0f} MB of CSV: ingest {out['ingest']:.2f} s "
        f"(peak {out['ingest_peak_mb']:,.0f} MB), DuckDB's bare read_csv {out['bare']:.2f} s: "
        f"{out['ingest/bare']:.2f}x; DuckDB alone into the stored table {out['wide']:.2f} s: "
        f"{out['wide/bare']:.2f}x; DuckDB storing the same rows {out['store']:.2f} s: "
        f"{out['store/bare']:.2f}x; DuckDB's bare read_csv into the store's format "
        f"{out['bare-v1.5']:.2f} s: the ingest {out['ingest/bare-v1.5']:.2f}x it"
    )
    if not args.only_ingest:
        print("book", out["book"])
        print("pair", out["pair"])


if __name__ == "__main__":
    main()
