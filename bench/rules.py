"""Benchmark: a full rule run over N synthetic visits stored in DuckDB.

The visits are generated inside DuckDB (out of core), then `run_rules` runs in a fresh
process so that its peak memory (VmHWM) is its own. With ``--flood`` two lines in five are
written under one common name with no document, and the run is made twice (the first
stores the flags, the second finds them again).
    .venv/bin/python bench/rules.py --rows 1000000 --rows 10000000
    .venv/bin/python bench/rules.py --rows 10000000 --flood
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

REFERENCE = """
INSERT INTO facilities BY NAME
SELECT f AS facility, f AS name, 'prison' AS kind, 'high' AS security_level,
       '08:00-15:00' AS visiting_hours, 'F|' || f AS record_key
FROM unnest(['ZAC', 'IZA', 'CIU', 'QZT', 'MAR']) t(f);
INSERT INTO inmates BY NAME
SELECT 'P' || i AS inmate_id, ['MS13', 'B18S', 'B18R'][i % 3 + 1] AS gang,
       CASE WHEN i % 50 = 0 THEN 'leader' ELSE 'member' END AS rank,
       ['ZAC', 'IZA', 'CIU', 'QZT', 'MAR'][i % 5 + 1] AS facility, 'I|' || i AS record_key,
       1 AS upload_seq, i AS source_row
FROM range(5000) t(i);
"""

# Five prisons in turn, 80 entries a day each between 08:00 and 14:40, an hour's stay;
# each prison's own book/page/line sequence; one placeholder name every 100,000 lines;
# one line in seven a contractor's van; one line in 20,011 written at 23:00 (out of
# hours). The visitors are 400,000 people, each with their own document, named from
# 25 given names and 26 surnames twice over (16,900 names: about 24 namesakes each, as
# in a country's register), so that linkage, the name rules and the outside-hours rule
# have real work and real hits.
VISITS = """
INSERT INTO visits BY NAME
SELECT ['ZAC', 'IZA', 'CIU', 'QZT', 'MAR'][i % 5 + 1] AS facility, 'Garita' AS checkpoint,
       (i // 5 // 50000)::VARCHAR AS logbook, (i // 5 % 50000) // 25 + 1 AS page,
       i // 5 % 25 + 1 AS line,
       TIMESTAMP '2000-01-01' + to_days(i // 400)
         + to_minutes(CASE WHEN i % 20011 = 5 THEN 1380 ELSE 480 + i % 400 END) AS entered_at,
       TIMESTAMP '2000-01-01' + to_days(i // 400)
         + to_minutes(CASE WHEN i % 20011 = 5 THEN 1410 ELSE 540 + i % 400 END) AS exited_at,
       CASE WHEN i % 100000 = 7 THEN 'N/I' WHEN i % 7 = 3 THEN 'Conductor ' || (i // 7000)
            ELSE given[p % 25 + 1] || ' ' || surnames[p // 25 % 26 + 1] || ' '
                 || surnames[p // 650 % 26 + 1] END AS name,
       CASE WHEN i % 100000 = 7 THEN 'N/I' WHEN i % 7 = 3 THEN 'CONDUCTOR ' || (i // 7000)
            ELSE upper(strip_accents(given[p % 25 + 1] || ' ' || surnames[p // 25 % 26 + 1]
                                     || ' ' || surnames[p // 650 % 26 + 1])) END AS name_key,
       CASE WHEN i % 100000 = 7 THEN 'placeholder' ELSE 'named' END AS name_status,
       CASE WHEN i % 7 = 3 THEN 'AB-' || (i // 7000) ELSE 'AB-' || (10000000 + p) END AS id_number,
       'passport' AS id_type,
       ['staff', 'family', 'lawyer', 'contractor', 'family'][(i // 5) % 5 + 1] AS role,
       'P' || (hash(i) % 5000) AS inmate_id,
       -- a contractor's van: the same driver and plate for a stretch of days
       CASE WHEN i % 7 = 3 THEN 'P' || (i // 7000) END AS vehicle_plate,
       CASE WHEN i % 7 = 3 THEN 'P' || (i // 7000) END AS plate_key,
       1 AS party_size, 'minute' AS entered_precision, 'V|' || i AS record_key,
       'bench' AS source_sha256, 'bench.csv' AS source_name, i + 2 AS source_row, 1 AS upload_seq
FROM (SELECT i, (hash(i) % 400000)::BIGINT AS p,
             ['Ana', 'Blanca', 'Carmen', 'Delmy', 'Elsa', 'Fredy', 'Gloria', 'Héctor', 'Iris',
              'Jorge', 'Karla', 'Luis', 'Mario', 'Nelson', 'Óscar', 'Patricia', 'Reina',
              'Saúl', 'Teresa', 'Walter', 'Xiomara', 'Yanira', 'Zoila', 'Ever', 'Dinora']
               AS given,
             ['Alvarado', 'Bonilla', 'Cañas', 'Durán', 'Escalante', 'Funes', 'Galdámez',
              'Henríquez', 'Iraheta', 'Jovel', 'Landaverde', 'Mancía', 'Navas', 'Olmedo',
              'Pineda', 'Quintanilla', 'Recinos', 'Sibrián', 'Tobar', 'Umaña', 'Valle',
              'Zepeda', 'Abarca', 'Barahona', 'Cornejo', 'Deras'] AS surnames
      FROM range($n) t(i))
"""

# A flood: two lines in five written under one common name with no document (a form's
# default, a clerk's shortcut): the missing-document rule's cases (one per person and
# month: 822 here) then cite millions of lines, and every flag carries its evidence.
FLOOD = """
UPDATE visits SET name = 'María López', name_key = 'MARIA LOPEZ', name_status = 'named',
                  id_number = NULL, id_type = NULL
WHERE hash(source_row) % 5 < 2
"""


def _child(db: str, runs: int = 1) -> None:
    from detector import engine, nopandas
    from detector.store import Store

    # Each rule's own time (its query and its hits), for the slowest ones.
    evaluate, per_rule = engine.evaluate_batches, {}

    def timed(con, rule):
        t = time.perf_counter()
        yield from evaluate(con, rule)
        per_rule[rule.id] = round(time.perf_counter() - t, 2)

    engine.evaluate_batches = timed
    seconds = []
    for again in range(runs):
        t0 = time.perf_counter()
        # as `detector run` runs them: binding a query's parameters imports no pandas
        # (``detector.pipeline``; the import was a quarter of a second of this measure)
        with nopandas.refused():
            result = engine.run_rules(Store(db), full=bool(again))
        seconds.append(time.perf_counter() - t0)
    slowest = dict(sorted(per_rule.items(), key=lambda kv: -kv[1])[:3])
    report(
        seconds=seconds[0],
        again=seconds[1:],
        hits=sum(result.counts.values()),
        errors=result.errors,
        slowest=slowest,
    )


def build(db: Path, n: int, flood: bool = False) -> None:
    import duckdb

    from detector.store import Store

    Store(db).init()
    con = duckdb.connect(str(db))
    con.execute(REFERENCE)
    con.execute(VISITS.replace("$n", str(int(n))))
    if flood:
        con.execute(FLOOD)
    # the ledger entry of the synthetic upload (what incremental runs count from)
    con.execute("""INSERT INTO uploads (seq, sha256, original_name, kind, entry_hash, uploaded_at)
                   VALUES (1, 'bench', 'bench.csv', 'visits', 'x', now())""")
    con.close()


def measure(n: int, flood: bool = False) -> dict:
    """A full rule run over ``n`` built visits, in its own process: seconds, peak MB, hits,
    the slowest rules; with ``flood`` (see FLOOD) made twice, the second run's seconds in
    ``again``."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        build(db, n, flood)
        built = time.perf_counter() - t0
        runs = ["--runs", "2"] if flood else []
        return {**in_child(__file__, str(db), *runs), "built": built, "rows": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, action="append")
    ap.add_argument("--flood", action="store_true", help="two lines in five one common name")
    ap.add_argument("--child")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.runs)
        return
    for n in args.rows or [1_000_000]:
        r = measure(n, args.flood)
        again = f" (again: {r['again'][0]:.1f} s)" if r["again"] else ""
        print(
            f"{n:>11,} visits (built in {r['built']:.0f} s): rules {r['seconds']:.1f} s{again}, "
            f"peak {r['peak_mb']:,.0f} MB, {r['hits']:,} hits, errors: {r['errors'] or 'none'}; "
            f"slowest: {r['slowest']}"
        )


if __name__ == "__main__":
    main()
