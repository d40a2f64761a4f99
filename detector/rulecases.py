"""A rule's cases: its ``regression`` inputs (the hits it must return) and its
``dont_match`` look-alikes (it must return none), each ingested through the real pipeline
into a database of its own and checked (`detector rules test`, and the test suite)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from detector import identity
from detector.engine import evaluate, prepare_context
from detector.flags import Hit
from detector.pipeline import ingest_files
from detector.rulebook import RegressionCase, Rule
from detector.store import Store
from detector.wording import plain


def run_case(
    rule: Rule, case: RegressionCase, workdir: Path, fields_out: list[dict] | None = None
) -> list[str]:
    """Ingest a case's rows through the real pipeline, run the rule, compare with expect.

    Returns the problems found (empty when the rule returns exactly the expected hits);
    ``fields_out`` receives each hit's stored values (to render its texts).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    store = Store(workdir / "case.duckdb", wait=10)
    rule = rule.model_copy(update={"parameters": {**rule.parameters, **case.parameters}})
    paths = []
    for name, rows in case.input.items():  # one file each, in order ("visits.resent")
        frame = pl.DataFrame(
            [
                {k: None if v is None else str(v) for k, v in r.items()}
                for r in _expand_series(rows)
            ],
            infer_schema_length=None,
        )
        path = workdir / f"{name}.csv"
        frame.write_csv(path)
        paths.append(path)
    results = ingest_files(store, paths, user="regression")
    if reads_persons(rule):
        identity.link(store, triggered_by="regression")
    quarantined = sum(r.rows_quarantined for r in results)
    for result in results:
        if result.status != "stored" or quarantined != case.quarantined:
            return [
                f"case input {Path(result.path).name} did not ingest as the case says: "
                f"{result.message or result.reasons}"
            ]
    with store.sandboxed() as con:
        prepare_context(con)
        try:
            hits = evaluate(con, rule)
        except duckdb.Error as exc:
            return [f"the query failed: {str(exc).splitlines()[0][:500]}"]
        ids = dict(
            con.execute(
                "SELECT record_key, coalesce(record_id, record_key) FROM records"
            ).fetchall()
        )
    if fields_out is not None:
        fields_out.extend(h.fields for h in hits)
    remaining = list(hits)
    problems = []
    for want in case.expect:
        match = next((h for h in remaining if _matches(h, want, ids)), None)
        if match is None:
            problems.append(f"expected hit {want} not returned")
        else:
            remaining.remove(match)
    for h in remaining:
        problems.append(
            f"unexpected hit: records {[ids.get(k, k) for k in h.record_keys]} {h.fields}"
        )
    return problems


# What identity linkage writes (``detector.identity``): a rule reading it needs its case's
# rows linked to persons first, as the pipeline does before the rules.
_PERSON_TABLES = re.compile(
    r"\b(persons|person_mentions|person_links|person_names|visit_persons|event_persons)\b"
)


def reads_persons(rule: Rule) -> bool:
    return bool(_PERSON_TABLES.search(rule.query))


def _expand_series(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row with ``every_hours`` (or ``every_days``) and ``until`` stands for a series.

    The field stepped on is ``step`` (default ``entered_at``; a date alone stays a date);
    the copies get record ids ``<record_id>-0``, ``-1``, ... when the row has one.
    """
    out = []
    for row in rows:
        if "every_hours" not in row and "every_days" not in row:
            out.append(row)
            continue
        row = dict(row)
        hours = float(row.pop("every_hours", 0)) + 24 * float(row.pop("every_days", 0))
        field = row.pop("step", "entered_at")
        until = datetime.fromisoformat(str(row.pop("until")))
        first = str(row[field])
        at, n = datetime.fromisoformat(first), 0
        while at <= until:
            copy = {
                **row,
                field: at.date().isoformat() if len(first) == 10 else at.isoformat(sep=" "),
            }
            if "record_id" in row:
                copy["record_id"] = f"{row['record_id']}-{n}"
            out.append(copy)
            at, n = at + timedelta(hours=hours), n + 1
    return out


def _matches(hit: Hit, want: dict[str, Any], ids: dict[str, str]) -> bool:
    for key, value in want.items():
        if key == "record_ids":
            if sorted(ids.get(k, k) for k in hit.record_keys) != sorted(map(str, value)):
                return False
        else:
            got = {"severity": hit.severity, "facility": hit.facility, "logbook": hit.logbook}.get(
                key, hit.fields.get(key)
            )
            if str(plain(got)) != str(value):
                return False
    return True
