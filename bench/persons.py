"""Benchmark: identity linkage of N visits and N badge reads (``detector.identity``).

A synthetic store is written once: visitors drawn from Salvadoran given names and
surnames (so there are namesakes), each with a document (one in five writes none), whose
lines are written as clerks write them (one in twenty surname first, one in thirty with
the second surname dropped, one in a hundred with a slip of the pen), and a badge log of
staff cards (read under the holder's name and document) and visitor passes handed to many.
The true person of each row rides along in a column linkage does not read (visits:
``organization``; reads: ``source_system``). Then, in one process each:

- ``ingest``: both files stored (not linkage: for scale);
- ``link``: a full linkage: the model trained on the store (u by random sampling, EM),
  every mention scored against its candidates, persons formed, written;
- ``incremental``: 1% more visits (new people, and known people with new spellings)
  ingested and matched against the kept model and the known persons.

Each reports its time and peak memory; ``link`` and ``incremental`` also how the persons
found compare with the true ones (pairwise precision and recall of rows in one person).

    .venv/bin/python bench/persons.py --rows 1000000
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

GIVEN = (
    "JOSÉ", "MARÍA", "JUAN", "CARLOS", "LUIS", "ANA", "ANTONIO", "JORGE", "FRANCISCO",
    "MANUEL", "MIGUEL", "ROSA", "CARMEN", "MARTA", "MARIO", "ÓSCAR", "ROBERTO", "ERNESTO",
    "ALEXANDER", "ELIZABETH", "GUADALUPE", "SANTOS", "PEDRO", "ISABEL", "PATRICIA", "SANDRA",
    "CLAUDIA", "WILLIAM", "MAURICIO", "RENÉ", "JULIO", "ALBERTO", "RAFAEL", "SALVADOR",
    "ÁNGEL", "EDWIN", "NELSON", "KEVIN", "DOUGLAS", "WALTER", "SAÚL", "MARVIN", "HÉCTOR",
    "FREDY", "GLORIA", "BLANCA", "REINA", "DELMY", "YESENIA", "KARLA", "ELSA", "DINORA",
    "EVELYN", "SONIA", "CECILIA", "LORENA", "SILVIA", "XIOMARA", "IRIS", "YANIRA",
)  # fmt: skip
SURNAMES = (
    "HERNÁNDEZ", "MARTÍNEZ", "LÓPEZ", "GARCÍA", "RODRÍGUEZ", "GONZÁLEZ", "RIVERA", "RAMÍREZ",
    "FLORES", "PÉREZ", "CRUZ", "GÓMEZ", "ALVARADO", "DÍAZ", "ROMERO", "REYES", "MEJÍA",
    "CASTILLO", "ORTIZ", "GUEVARA", "AGUILAR", "MENJÍVAR", "ESCOBAR", "SÁNCHEZ", "MORALES",
    "VÁSQUEZ", "AYALA", "PORTILLO", "RIVAS", "CASTRO", "ORELLANA", "MOLINA", "GUARDADO",
    "SOSA", "RAMOS", "MENDOZA", "LEMUS", "ARGUETA", "CHÁVEZ", "FUENTES", "CAMPOS", "MIRANDA",
    "SERRANO", "QUINTANILLA", "LANDAVERDE", "OLMEDO", "SIBRIÁN", "FUNES", "IRAHETA", "JOVEL",
    "ZELAYA", "VENTURA", "DERAS", "CORNEJO", "BONILLA", "CAÑAS", "DURÁN", "ESCALANTE",
    "GALDÁMEZ", "HENRÍQUEZ", "MANCÍA", "NAVAS", "PINEDA", "RECINOS", "TOBAR", "UMAÑA",
    "VALLE", "ZEPEDA", "ABARCA", "BARAHONA", "MARROQUÍN", "ALFARO", "ARÉVALO", "BELTRÁN",
    "CARDOZA", "DUARTE",
)  # fmt: skip

# persons: one in ten visitors of a year; the same person's lines spread over it
PEOPLE = """
INSERT INTO people
SELECT i AS pid,
       $given[1 + ((hash(i * 3) % len($given))::BIGINT)] AS given,
       $sur[1 + ((hash(i * 5) % len($sur))::BIGINT)] AS sur1,
       $sur[1 + ((hash(i * 7) % len($sur))::BIGINT)] AS sur2,
       CASE WHEN ((hash(i * 11) % 5)::BIGINT) = 0 THEN NULL
            ELSE lpad((((hash(i * 13) % 100000000)::BIGINT))::VARCHAR, 8, '0') || '-'
                 || (((hash(i * 17) % 10)::BIGINT))::VARCHAR END AS dui
FROM range($first, $last) t(i)
"""
# a visit line: its person's name as this clerk wrote it
VISITS = """
COPY (
  WITH v AS (
    SELECT i, p.*, ((hash(i * 19) % 100)::BIGINT) AS how
    FROM range($n) t(i) JOIN people p ON p.pid = ((hash(i * 23) % $people)::BIGINT))
  SELECT 'V' || i AS record_id, ['ZAC', 'IZA', 'CIU', 'QZT', 'MAR'][1 + pid % 5] AS facility,
         strftime(TIMESTAMP '2024-01-01 08:00' + to_minutes((i * 525600 // $n)::BIGINT),
                  '%Y-%m-%dT%H:%M') AS entered_at,
         CASE WHEN how < 5 THEN sur1 || ' ' || sur2 || ', ' || given
              WHEN how < 8 THEN given || ' ' || sur1
              WHEN how < 9 THEN given || ' ' || regexp_replace(sur1, '([AEIOU])', '\\1\\1')
                                || ' ' || sur2
              ELSE given || ' ' || sur1 || ' ' || sur2 END AS name,
         CASE WHEN dui IS NOT NULL THEN 'DUI' END AS id_type, dui AS id_number,
         'Familiar' AS role, 'I-' || (pid % 20000) AS inmate_id, 'T' || pid AS organization
  FROM v
) TO '$csv' (HEADER, DELIMITER ',')
"""
# a badge read: a staff card read under its holder's name and document, or a visitor pass
# (twenty of them, each handed to whoever comes next)
READS = """
COPY (
  WITH r AS (SELECT i, ((hash(i * 29) % 100)::BIGINT) AS kind, ((hash(i * 31) % 5000)::BIGINT) AS holder
             FROM range($n) t(i))
  SELECT 'E' || i AS record_id, ['ZAC', 'IZA', 'CIU', 'QZT', 'MAR'][1 + holder % 5] AS facility,
         strftime(TIMESTAMP '2024-01-01 06:00' + to_minutes((i * 525600 // $n)::BIGINT),
                  '%Y-%m-%dT%H:%M') AS seen_at,
         CASE WHEN kind < 90 THEN s.given || ' ' || s.sur1 || ' ' || s.sur2
              ELSE v.given || ' ' || v.sur1 || ' ' || v.sur2 END AS name,
         CASE WHEN kind < 90 THEN 'C-' || holder ELSE 'PASE-' || (i % 20) END AS badge,
         CASE WHEN kind < 90 THEN s.dui END AS id_number,
         'Portón' AS reader, CASE WHEN i % 2 = 0 THEN 'Entrada' ELSE 'Salida' END AS direction,
         CASE WHEN kind < 90 THEN 'S' || holder ELSE 'T' || v.pid END AS source_system
  FROM r JOIN people s ON s.pid = $people + r.holder
  JOIN people v ON v.pid = ((hash(i * 37) % $people)::BIGINT)
) TO '$csv' (HEADER, DELIMITER ',')
"""
# pairs of rows in one person, as found and as true: precision and recall
QUALITY = """
WITH t AS (
  SELECT p.person_id, coalesce(v.organization, e.source_system) AS truth
  FROM persons p LEFT JOIN visits v USING (record_key) LEFT JOIN events e USING (record_key)
  WHERE p.part IN ('visitor', 'badge_holder')),
found AS (SELECT person_id, truth, count(*) AS n FROM t GROUP BY ALL)
SELECT (SELECT count(DISTINCT person_id) FROM t) AS persons,
       (SELECT count(DISTINCT truth) FROM t) AS true_persons,
       (SELECT sum(n * (n - 1) / 2) FROM found) AS both,
       (SELECT sum(c * (c - 1) / 2) FROM (SELECT count(*) AS c FROM t GROUP BY person_id))
         AS found_pairs,
       (SELECT sum(c * (c - 1) / 2) FROM (SELECT count(*) AS c FROM t GROUP BY truth))
         AS true_pairs
"""


def _sql(template: str, **values) -> str:
    for key, value in values.items():
        template = template.replace(f"${key}", str(value))
    return template


def _quality(store) -> dict:
    with store.read() as con:
        persons, truth, both, found, true = con.execute(QUALITY).fetchall()[0]
    # visitor passes are many people under one card: only the names tell them apart
    return {
        "persons": persons,
        "true_persons": truth,
        "pair_precision": round(both / found, 4) if found else None,
        "pair_recall": round(both / true, 4) if true else None,
    }


def _child(mode: str, folder: str) -> None:
    """One step in its own process; libraries are imported before the clock starts."""
    from detector import identity
    from detector.ingest import ingest_file
    from detector.store import Store

    folder = Path(folder)
    store = Store(folder / "d.duckdb", wait=600)
    if mode == "ingest":
        start = time.perf_counter()
        stored = sum(
            ingest_file(store, folder / f, kind=k).rows_stored
            for f, k in (("visits.csv", "visits"), ("reads.csv", "events"))
        )
        report(seconds=round(time.perf_counter() - start, 2), stored=stored)
        return
    if mode == "more":
        ingest_file(store, folder / "more.csv", kind="visits")
    import splink  # noqa: F401 - imported before the clock

    start = time.perf_counter()
    linked = identity.link(store, refit=mode == "link")
    seconds = round(time.perf_counter() - start, 2)
    report(
        seconds=seconds,
        scope=linked.scope,
        rows=linked.rows,
        mentions=linked.mentions,
        new_mentions=linked.new_mentions,
        steps={k: round(v, 1) for k, v in linked.seconds.items()},
        **_quality(store),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="visits, and as many reads")
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    import duckdb

    n, people = args.rows, max(args.rows // 10, 100)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        con = duckdb.connect()
        lists = {"given": f"{list(GIVEN)}", "sur": f"{list(SURNAMES)}"}
        con.execute(
            "CREATE TABLE people (pid BIGINT, given VARCHAR, sur1 VARCHAR, sur2 VARCHAR, "
            "dui VARCHAR)"
        )
        # visitors, then 5,000 staff card holders, then the new visitors of the 1% more
        con.execute(_sql(PEOPLE, first=0, last=people * 2 + 5000, **lists))
        con.execute(_sql(VISITS, n=n, people=people, csv=folder / "visits.csv"))
        con.execute(_sql(READS, n=n, people=people, csv=folder / "reads.csv"))
        # 1% more visits: of known people (some in a new spelling) and of new ones
        more = _sql(VISITS, n=n // 100, people=people * 2 + 5000, csv=folder / "more.csv")
        con.execute(more.replace("'V' || i", "'W' || i"))
        con.close()
        size = sum((folder / f).stat().st_size for f in ("visits.csv", "reads.csv")) / 1e6
        print(f"{n:,} visits and {n:,} badge reads, {size:.0f} MB of CSV", flush=True)
        for mode in ("ingest", "link", "more"):
            print(mode, in_child(__file__, mode, str(folder)), flush=True)


if __name__ == "__main__":
    main()
