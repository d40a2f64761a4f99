"""Incremental rule runs give the same flags as a full run, back-filled logbooks included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from detector.engine import run_rules
from detector.pipeline import ingest_files
from detector.rulebook import load_rules
from detector.store import Store
from tests.conftest import REPO, rows


def _split(path: Path, out: Path) -> tuple[Path, Path, Path]:
    """Cut a visits log into early, later, and a withheld old stretch (a back-filled book)."""
    header, *lines = path.read_bytes().splitlines(keepends=True)
    n = len(lines)
    parts = {
        "a": lines[: int(n * 0.3)] + lines[int(n * 0.4) : int(n * 0.6)],
        "c": lines[int(n * 0.3) : int(n * 0.4)],  # uploaded last: an old logbook found later
        "b": lines[int(n * 0.6) :],
    }
    written = []
    for key, chunk in parts.items():
        target = out / f"{path.stem}_{key}{path.suffix}"
        target.write_bytes(header + b"".join(chunk))
        written.append(target)
    return tuple(written)


def _active(store: Store) -> set[tuple]:
    return set(
        rows(
            store,
            "SELECT flag_id, rule_id, explanation FROM flags "
            "WHERE state = 'active' AND source = 'rule'",
        )
    )


@pytest.mark.slow
@pytest.mark.lake
def test_incremental_runs_equal_a_full_run(tmp_path, demo_logs, new_store):
    reference = [demo_logs[k] for k in ("facilities", "inmates", "logbooks", "transfers")]
    splits = [_split(p, tmp_path) for k, p in demo_logs.items() if k.startswith("visits_")]
    early = [s[0] for s in splits]
    backfill = [s[1] for s in splits]
    later = [s[2] for s in splits]

    step = new_store("incremental")
    ingest_files(step, reference + early)
    first = run_rules(step, full=False)
    assert first.scope == "full"  # nothing to be incremental against yet
    ingest_files(step, later)
    second = run_rules(step, full=False)
    assert second.scope.startswith("incremental")
    gaps_before_backfill = _active(step)
    ingest_files(step, backfill)
    third = run_rules(step, full=False)
    assert third.scope.startswith("incremental")
    assert third.resolved > 0  # silent periods of the withheld stretch resolve

    whole = new_store("full")
    ingest_files(whole, reference + early + later + backfill)
    run_rules(whole, full=True)
    assert _active(step) == _active(whole)
    assert gaps_before_backfill != _active(whole)
    # the back-fill really was a gap before it arrived
    assert {r for _, r, _ in gaps_before_backfill} >= {"logbook-silent-period"}


@pytest.mark.lake
def test_a_run_with_nothing_new_changes_nothing(store, tmp_path):
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,record_id\nZAC,2019-06-01 10:00,N/I,R1\n", encoding="utf-8"
    )
    ingest_files(store, [path])
    run_rules(store)
    before = _active(store)
    report = run_rules(store, full=False)
    assert report.scope.startswith("incremental: 0 upload")
    assert _active(store) == before and report.resolved == 0


@pytest.mark.lake
def test_changed_rule_file_reruns_that_rule_in_full(store, tmp_path):
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,record_id\nZAC,2019-06-01 10:00,N/I,R1\n", encoding="utf-8"
    )
    ingest_files(store, [path])
    run_rules(store)
    with store.write() as con:  # as if the rule file had been edited since
        con.execute("UPDATE runs SET rules = '{}'")
    report = run_rules(store, full=False)
    assert report.counts.get("unidentified-placeholder-name") == 1


_ONE_NAME = """\
id: my-one-name
title: Visits by one named person
description: An auditor's own rule, of the record scope.
category: data_quality
severity: low
scope: record
parameters: {{who: "{who}"}}
query: SELECT record_key, facility FROM visits WHERE name_key = $who
explanation: "{{facility}}: that person was here"
es:
  title: Visitas de una persona con nombre
  description: Regla propia de un auditor, del alcance de registro.
  explanation: "{{facility}}: esa persona estuvo aquí"
regression:
  - input:
      visits:
        - {{record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: "{who}"}}
    expect:
      - {{record_ids: [V1]}}
dont_match:
  - description: somebody else
    input:
      visits:
        - {{record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: "Anabel"}}
"""


@pytest.mark.lake
def test_a_rule_changed_beside_new_rows_is_run_in_full(new_store, tmp_path):
    """A rule whose file changed is evaluated over every row even when the run has new
    rows to narrow the others to: the rows it now finds outside the upload are flagged,
    and what it no longer finds resolves, as in a full run of the same files."""
    mine = tmp_path / "mine" / "data_quality"
    mine.mkdir(parents=True)
    rule = mine / "one.yml"
    old = tmp_path / "old.csv"
    old.write_text(
        "record_id,facility,entered_at,name\n"
        "A1,ZAC,2019-06-01 10:00,Ana\nA2,ZAC,2019-06-01 11:00,Bea\n",
        encoding="utf-8",
    )
    new = tmp_path / "new.csv"
    new.write_text("record_id,facility,entered_at,name\nB1,IZA,2019-06-02 10:00,Eva\n", "utf-8")

    def found(store: Store) -> set[tuple]:
        return set(
            rows(store, "SELECT record_keys[1], state FROM flags WHERE rule_id = 'my-one-name'")
        )

    step = new_store("step")
    ingest_files(step, [old])
    rule.write_text(_ONE_NAME.format(who="ANA"), encoding="utf-8")
    run_rules(step, [tmp_path / "mine"])
    assert {state for _, state in found(step)} == {"active"}
    rule.write_text(_ONE_NAME.format(who="BEA"), encoding="utf-8")  # the file changes
    ingest_files(step, [new])
    report = run_rules(step, [tmp_path / "mine"], full=False)
    assert report.scope.startswith("incremental: 1 upload")
    assert report.counts["my-one-name"] == 1  # Bea, in the old upload
    assert sorted(state for _, state in found(step)) == ["active", "resolved_by_data"]

    whole = new_store("whole")
    ingest_files(whole, [old, new])
    run_rules(whole, [tmp_path / "mine"])
    active = "SELECT record_keys FROM flags WHERE rule_id = 'my-one-name' AND state = 'active'"
    assert rows(step, active) == rows(whole, active) != []


@pytest.mark.lake
def test_a_rule_comparing_two_facilities_survives_an_upload_touching_one(new_store, tmp_path):
    """A badge read at two facilities minutes apart compares reads across facilities: an
    upload touching one of them leaves its flag standing (narrowed to that facility, the
    rule lost the other read and its flag was resolved), as a full run does."""
    head = "event_id,centro,fecha_hora,nombre,tarjeta,lector,sentido\n"
    first = tmp_path / "first.csv"
    first.write_text(
        head + "E1,ZAC,01/10/2019 16:48,Oscar Lemus,C-1,Portón,Entrada\n"
        "E2,IZA,01/10/2019 16:58,Oscar Lemus,C-1,Portón,Entrada\n",
        encoding="utf-8",
    )
    later = tmp_path / "later.csv"
    later.write_text(head + "E3,ZAC,02/10/2019 09:00,Ana Perez,C-2,Portón,Entrada\n", "utf-8")
    rule = "access-badge-in-two-places"
    active = f"SELECT flag_id FROM flags WHERE rule_id = '{rule}' AND state = 'active'"
    step = new_store("step")
    ingest_files(step, [first])
    run_rules(step)
    flagged = rows(step, active)
    assert len(flagged) == 1
    ingest_files(step, [later])
    assert run_rules(step, full=False).scope.startswith("incremental: 1 upload")
    assert rows(step, active) == flagged
    whole = new_store("whole")
    ingest_files(whole, [first, later])
    run_rules(whole)
    assert rows(whole, active) == flagged


def _run_capped(db: Path, memory: str) -> subprocess.CompletedProcess:
    """A real `detector run --no-score` process under a DuckDB memory cap."""
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", "run", "--no-score", "--db", str(db)],
        cwd=REPO, env={**os.environ, "DETECTOR_DUCKDB_MEMORY": memory},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _many_hits(db: Path, rows: int) -> None:
    """``rows`` synthetic visits (bench/rules.py), every one with an invalid DUI."""
    import duckdb

    from bench.rules import build

    build(db, rows)
    con = duckdb.connect(str(db))
    con.execute("UPDATE visits SET id_type = 'DUI'")
    con.close()


@pytest.mark.slow
def test_a_run_with_hundreds_of_thousands_of_hits_stays_within_the_memory_cap(tmp_path):
    """1.5M rows matching one rule ended in DuckDB's OutOfMemoryException in store_flags
    and no run was recorded. Real `detector run` processes under a 200 MB cap: hits are
    spooled to Parquet and upserted 25,000 at a time, each chunk committed."""
    db = tmp_path / "many.duckdb"
    _many_hits(db, 300_000)
    done = _run_capped(db, "200MB")
    assert done.returncode == 0, done.stderr[-2000:]
    store = Store(db)
    assert rows(store, "SELECT count(*) FROM flags WHERE rule_id = 'unidentified-invalid-dui'") == [
        (300_000,)
    ]
    assert rows(store, "SELECT count(*) - count(DISTINCT flag_id) FROM flags") == [(0,)]
    assert rows(store, "SELECT status FROM runs WHERE kind = 'rules'") == [("ok",)]
    assert not list(tmp_path.glob(".hits-*"))  # the spool is gone


@pytest.mark.slow
def test_a_run_that_cannot_store_its_flags_is_recorded_as_failed(tmp_path):
    db = tmp_path / "many.duckdb"
    _many_hits(db, 100_000)
    done = _run_capped(db, "24MB")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "recorded as failed" in " ".join(done.stderr.split())
    ((status, errors),) = rows(Store(db), "SELECT status, errors FROM runs WHERE kind = 'rules'")
    assert status == "failed" and "OutOfMemory" in errors


@pytest.mark.slow
def test_a_rule_with_a_lookback_rereads_only_its_window_and_equals_a_full_run(tmp_path):
    """Silent periods are judged on the weeks before them: an incremental run re-reads the
    visits from the calendar year its new visits fall in (less the lookback), not every
    year, and still finds what a full run finds, a silence before the new visits included."""
    from detector.engine import window_floor
    from detector.generator import generate
    from detector.rulebook import load_rules

    logs = generate(tmp_path / "logs", seed=11, months=15)  # June 2019 to August 2020
    reference = [logs[k] for k in ("facilities", "inmates", "logbooks", "transfers")]
    early, later = [], []
    for key, path in logs.items():
        if key.startswith("visits_"):
            header, *lines = path.read_bytes().splitlines(keepends=True)
            cut = int(len(lines) * 0.9)
            before, after = lines[:cut], lines[cut:]
            if key == "visits_MAR":  # a silence across the two uploads (the old side stands)
                before, after = before[:-150], after[150:]
            if key == "visits_QZT":  # a silence inside the new visits
                after = after[:300] + after[800:]
            for part, chunk in (("early", before), ("later", after)):
                target = tmp_path / f"{path.stem}_{part}{path.suffix}"
                target.write_bytes(header + b"".join(chunk))
                (early if part == "early" else later).append(target)
    step = Store(tmp_path / "step.duckdb", wait=30)
    ingest_files(step, reference + early)
    run_rules(step, full=False)
    ingest_files(step, later)
    second = run_rules(step, full=False)
    assert "visits from 2020-" in second.scope
    (silent,) = [r for r in load_rules() if r.id == "logbook-silent-period"]

    since = datetime.strptime(second.scope.rsplit("visits from ", 1)[1], "%Y-%m-%d %H:%M")
    assert window_floor(since, silent.group.window) == datetime(2020, 1, 1)

    whole = Store(tmp_path / "whole.duckdb", wait=30)
    ingest_files(whole, reference + early + later)
    run_rules(whole, full=True)
    assert _active(step) == _active(whole)
    starts = rows(
        whole,
        "SELECT period_start >= TIMESTAMP '2020-01-01', count(*) FROM flags "
        "WHERE rule_id = 'logbook-silent-period' AND state = 'active' GROUP BY 1",
    )
    assert dict(starts).get(True) and dict(starts).get(False)  # re-evaluated, and standing


def test_a_release_changing_a_view_is_read_at_once_and_reruns_every_rule(tmp_path):
    """A file written by an older release whose views differ: before any writer of this
    release opens it, a reader already reads this release's views (temporary ones over the
    stored), and the next rule run, with nothing new stored, re-runs every rule in full
    (the views are what the rules read besides the tables)."""
    from detector.engine import VIEWS_KEY
    from detector.store import records_view_sql

    store = Store(tmp_path / "db" / "detector.duckdb", wait=30)
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,record_id\nZAC,2019-06-01 10:00,N/I,R1\n", encoding="utf-8"
    )
    ingest_files(store, [path])
    run_rules(store)
    older = re.split(r"\s+AS\s+", records_view_sql(), maxsplit=1)[1]  # its columns, no rows
    with store.write() as con:  # as an older release left it: its records view saw nothing
        con.execute(f"CREATE OR REPLACE VIEW records AS SELECT * FROM ({older}) WHERE false")
        con.execute("UPDATE schema_version SET ddl_sha256 = 'older'")
        con.execute(  # each rule file as it was, the views' hash an older one
            "UPDATE runs SET rules = json_merge_patch(rules, json_object(?, 'older'))",
            [VIEWS_KEY],
        )
    key = str(store.path)
    for known in (Store._ready, Store._readable, Store._stale_views):  # a new process
        known.discard(key)
    with store.read() as con:
        assert con.execute("SELECT count(*) FROM records WHERE kind = 'visits'").fetchall() == [
            (1,)
        ]
    again = run_rules(store, full=False)
    assert again.scope.startswith("incremental: 0 upload")
    assert again.counts.get("unidentified-placeholder-name") == 1
    assert len(again.counts) > 20  # every rule, not only changed ones
    with store.read() as con:  # the run's writer brought the file to this release
        assert con.execute("SELECT ddl_sha256 FROM schema_version").fetchall() != [("older",)]
    assert run_rules(store, full=False).counts == {}  # and the next run re-runs nothing


_ROSTER = (
    "inmate_id,name,gang,rank,facility\n"
    "P1,Salvador Armando Villalta Cruz,MS-13,Palabrero,CBA\n"
    "P2,Jorge Antonio Serrano Ayala,Barrio 18 Sureños,Palabrero,IZA\n"
)


def _go_between(path: Path, who: str, document: str, days: list[int]) -> Path:
    """A family visitor going from one gang's leader to the other's, a visit each day."""
    lines = ["record_id,facility,entered_at,name,role,id_number,inmate_id"]
    for i, day in enumerate(days):
        inmate, facility = ("P1", "CBA") if i % 2 == 0 else ("P2", "IZA")
        lines.append(
            f"{document}-{day},{facility},2019-05-{day:02d} 08:{i:02d},{who},Familiar,"
            f"{document},{inmate}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _two_go_betweens(folder: Path) -> list[Path]:
    """The roster of two rival leaders and two family visitors going between them (by
    their documents, 86718102-7 and 01234567-8), three visits each."""
    roster = folder / "roster.csv"
    roster.write_text(_ROSTER, encoding="utf-8")
    return [
        roster,
        _go_between(folder / "a1.csv", "Sandra Portillo Guevara", "86718102-7", [2, 6, 10]),
        _go_between(folder / "b.csv", "Marta Lemus Rivas", "01234567-8", [3, 7, 11]),
    ]


def test_a_visitor_scoped_rule_reads_only_the_visitors_the_new_rows_name(tmp_path):
    """The go-between rule is of the visitor scope: an upload naming one visitor
    re-evaluates that visitor's visits only (their flag grows), leaves another visitor's
    flag standing, and ends as a full run of the same files does."""
    from detector.scopes import VISITOR_KEY

    rule_id = "visit-relative-of-rival-leaders"
    rule = next(r for r in load_rules() if r.id == rule_id)
    assert rule.scope == "visitor" and VISITOR_KEY in rule.query  # one key for both
    first = _two_go_betweens(tmp_path)
    later = _go_between(tmp_path / "a2.csv", "Sandra Portillo Guevara", "86718102-7", [14, 18])

    def flags(store: Store) -> dict[str, tuple]:
        found = rows(
            store,
            "SELECT json_extract_string(fields, '$.person'), len(record_keys), state "
            "FROM flags WHERE rule_id = ?",
            [rule_id],
        )
        return {person: (keys, state) for person, keys, state in found}

    step = Store(tmp_path / "step" / "detector.duckdb", wait=30)
    ingest_files(step, first)
    run_rules(step, only=[rule_id])
    assert flags(step) == {"867181027": (3, "active"), "012345678": (3, "active")}
    ingest_files(step, [later])
    report = run_rules(step, full=False)
    assert report.scope.startswith("incremental")
    assert flags(step) == {"867181027": (5, "active"), "012345678": (3, "active")}
    # only the visitor the upload names was judged again: the other's flag was last
    # returned by the first run
    last = dict(
        rows(
            step,
            "SELECT json_extract_string(fields, '$.person'), last_run FROM flags WHERE rule_id = ?",
            [rule_id],
        )
    )
    assert last == {"867181027": report.run_id, "012345678": report.run_id - 1}

    whole = Store(tmp_path / "whole" / "detector.duckdb", wait=30)
    ingest_files(whole, [*first, later])
    run_rules(whole, only=[rule_id])
    assert flags(whole) == flags(step)


def _in_full(scope: str) -> list[str]:
    """The scope kinds a run's scope says it ran in full, cheaper than narrowing."""
    _, _, kinds = scope.partition("; in full, cheaper than narrowing: ")
    return kinds.removesuffix(" rules").split(", ") if kinds else []


def _record_costs(store: Store, **narrowing: float) -> None:
    """Set what narrowing cost for each scope the last rule run recorded, its rules
    narrowed costing nothing (as if it had measured that)."""
    import json

    from detector.engine import COSTS_KEY

    with store.write() as con:
        run_id, rules = con.execute(
            "SELECT run_id, rules FROM runs WHERE kind = 'rules' ORDER BY run_id DESC LIMIT 1"
        ).fetchall()[0]
        record = json.loads(rules)
        record[COSTS_KEY]["narrowing"].update(narrowing)
        record[COSTS_KEY]["narrowed"].update({kind: 0.0 for kind in narrowing})
        con.execute("UPDATE runs SET rules = ? WHERE run_id = ?", [json.dumps(record), run_id])


def test_a_scope_cheaper_in_full_than_narrowed_is_run_in_full(tmp_path):
    """Each rule run records what each rule cost over every row and what each scope's
    narrowing cost; an incremental run runs a scope's rules in full when that cost less
    than narrowing for them did (says so in its scope), else narrows, and the flags are a
    full run's either way."""
    import json

    from detector.engine import COSTS_KEY

    rule_id = "visit-relative-of-rival-leaders"
    files = _two_go_betweens(tmp_path)
    later = [
        _go_between(tmp_path / f"a{i}.csv", "Sandra Portillo Guevara", "86718102-7", days)
        for i, days in ((2, [14, 18]), (3, [22, 26]), (4, [30]))
    ]
    step = Store(tmp_path / "step" / "detector.duckdb", wait=30)
    ingest_files(step, files)
    run_rules(step)

    def record() -> dict:
        (rules,) = rows(step, "SELECT rules FROM runs WHERE kind = 'rules' ORDER BY run_id")[-1]
        return json.loads(rules)[COSTS_KEY]

    def other_last_run() -> int:  # the run that last returned the other visitor's flag
        return rows(
            step,
            "SELECT last_run FROM flags WHERE rule_id = ? "
            "AND json_extract_string(fields, '$.person') = '012345678'",
            [rule_id],
        )[0][0]

    costs = record()
    assert costs["full"][rule_id] > 0 and costs["narrowing"] == {}  # a full run narrows nothing
    ingest_files(step, [later[0]])
    narrowed = run_rules(step, full=False)  # no narrowing measured yet: narrowed
    assert "in full" not in narrowed.scope and other_last_run() < narrowed.run_id
    assert (
        record()["narrowing"]["visitor"] > 0 and record()["full"][rule_id] == costs["full"][rule_id]
    )
    assert record()["touched"]["visitor"] == 1 and record()["narrowed"]["visitor"] > 0

    _record_costs(step, visitor=1e6)  # narrowing cost more than the rule over every visit
    ingest_files(step, [later[1]])
    in_full = run_rules(step, full=False)
    assert "visitor" in _in_full(in_full.scope)
    assert other_last_run() == in_full.run_id  # every visitor judged again
    assert record()["full"][rule_id] != costs["full"][rule_id]  # measured anew

    _record_costs(step, visitor=0.0)  # narrowing cost nothing
    ingest_files(step, [later[2]])
    again = run_rules(step, full=False)
    assert "visitor" not in _in_full(again.scope) and other_last_run() == in_full.run_id

    whole = Store(tmp_path / "whole" / "detector.duckdb", wait=30)
    ingest_files(whole, [*files, *later])
    run_rules(whole)
    query = "SELECT flag_id, record_keys FROM flags WHERE rule_id = ? AND state = 'active'"
    assert sorted(rows(step, query, [rule_id])) == sorted(rows(whole, query, [rule_id])) != []


def test_a_scope_runs_in_full_when_narrowing_would_cost_more_for_what_is_touched_now():
    """Narrowing costs its own work and its rules' narrowed run, which scales with the
    keys touched: a scope whose narrowing left every row (every facility touched) the day
    before runs in full when every one is touched again, and narrows when one is."""
    from detector.engine import Costs, Scope, _cheaper_in_full

    rules = [r for r in load_rules() if r.scope == "facility" and r.lookback_days is None][:2]
    costs = Costs(
        full={r.id: 0.5 for r in rules},
        narrowing={"facility": 0.1},
        narrowed={"facility": 1.0},  # its rules read every row: what they take in full
        touched={"facility": 5},
    )
    every = Scope(False, keys={"facility": ["A", "B", "C", "D", "E"]})
    assert {r.scope for r in _cheaper_in_full(rules, costs, every)} == {"global"}
    assert every.in_full == ["facility"] and every.describe().endswith("facility rules")
    one = Scope(False, keys={"facility": ["A"]})  # 0.1 + 1.0 / 5 < 1.0 in full
    assert {r.scope for r in _cheaper_in_full(rules, costs, one)} == {"facility"}
    assert one.in_full == []
    untouched = Scope(False, keys={"facility": []})  # skipped: costs nothing
    assert {r.scope for r in _cheaper_in_full(rules, costs, untouched)} == {"facility"}
    unknown = Costs(full={rules[0].id: 0.5}, narrowing={"facility": 9.0})  # one not measured
    assert {r.scope for r in _cheaper_in_full(rules, unknown, every)} == {"facility"}


def test_recorded_costs_that_are_not_numbers_are_left_out():
    from detector.engine import COSTS_KEY, Costs

    costs = Costs.of({COSTS_KEY: {"full": {"a": 1.5, "b": "x", "c": None}, "narrowing": [1]}})
    assert costs.full == {"a": 1.5} and costs.narrowing == {}
    assert Costs.of({}) == Costs() and Costs.of({COSTS_KEY: "junk"}) == Costs()


def test_the_visitor_scope_narrows_to_the_rows_whose_key_is_touched(tmp_path):
    """The visitor scope looks each written document's key up once instead of computing
    every row's: the rows it keeps are exactly those whose ``VISITOR_KEY`` is touched,
    whatever the documents look like (blank, punctuation only, written two ways, none)."""
    from detector.scopes import SCOPES, VISITOR_KEY

    documents = ["86718102-7", "867181027", " 8671 8102 7 ", "---", "", "N/A", "A.B-12", None]
    lines = ["record_id,facility,entered_at,name,role,id_number,inmate_id"]
    for i, (doc, name) in enumerate(
        (d, n) for d in documents for n in ("Ana Ruiz", "Luis Mejía", "867181027")
    ):
        lines.append(f"r{i},CBA,2019-05-{1 + i % 28:02d} 08:00,{name},Familiar,{doc or ''},P1")
    (tmp_path / "v.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = Store(tmp_path / "d.duckdb", wait=30)
    ingest_files(store, [tmp_path / "v.csv"])
    scope = SCOPES["visitor"]
    with store.read() as con:
        keys = [k for (k,) in con.execute(f"SELECT DISTINCT {VISITOR_KEY} FROM visits").fetchall()]
        assert len(keys) >= 5
        for touched in ([keys[0]], keys[1:3], ["ANA RUIZ", "867181027", "AB12", "NA"], keys):
            con.execute(
                "CREATE OR REPLACE TEMP TABLE scope_visitor AS SELECT unnest(?::VARCHAR[]) AS value",
                [touched],
            )
            con.execute(scope.aid)
            narrowed = con.execute(
                f"SELECT record_id FROM visits WHERE {scope.table_filter('visits')} ORDER BY 1"
            ).fetchall()
            exact = con.execute(
                f"SELECT record_id FROM visits WHERE {VISITOR_KEY} IN "
                "(SELECT value FROM scope_visitor) ORDER BY 1"
            ).fetchall()
            assert narrowed == exact and exact, touched


def test_the_look_back_starts_at_the_last_record_before_a_long_silence(tmp_path):
    """A facility silent for three months before its new visits: an incremental run's
    look-back starts at its last visit before them, found past the month looked at first
    (the other facility's last visit is days before its new one)."""
    from detector.engine import change_scope
    from tests.conftest import write_csv

    store = Store(tmp_path / "s.duckdb", wait=30)
    header = ["facility", "entered_at", "name"]
    old = [["ZAC", "2022-01-03 10:00", "A"], ["ZAC", "2022-01-04 10:00", "B"],
           ["IZA", "2022-04-05 09:00", "C"]]  # fmt: skip
    ingest_files(store, [write_csv(tmp_path / "a.csv", header, old)])
    run_rules(store, full=False)
    new = [["ZAC", "2022-04-07 10:00", "D"], ["IZA", "2022-04-13 10:00", "E"]]
    ingest_files(store, [write_csv(tmp_path / "b.csv", header, new)])
    with store.read() as con:
        assert change_scope(con).since == datetime(2022, 1, 4, 10, 0)
    ingest_files(store, [write_csv(tmp_path / "c.csv", header, [["IZA", "2022-04-20 08:00", "F"]])])
    run_rules(store, full=False)
    ingest_files(store, [write_csv(tmp_path / "d.csv", header, [["IZA", "2022-04-21 08:00", "G"]])])
    with store.read() as con:
        assert change_scope(con).since == datetime(2022, 4, 13, 10, 0)
