"""Issue 29's adversarial findings that live in the run and the ledger: a rule template
that would stop the run, a run killed mid-upsert, the last ledger entries removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.engine import _spool_prefix
from detector.rulebook import RuleError, load_rule
from detector.runs import INTERRUPTED
from detector.store import Store
from tests.conftest import REPO, rows, write_csv

runner = CliRunner()

RULE = """
    id: wide
    title: Wide
    description: A rule from an auditor's folder.
    category: data_quality
    severity: low
    query: SELECT record_key, name FROM visits
    explanation: "{name:>300000000}"
    es:
      title: Ancho
      description: Una regla de la carpeta de un auditor.
      explanation: "{name}"
    regression:
      - input: {}
        expect: []
    dont_match:
      - description: nothing
        input: {}
"""


@pytest.mark.parametrize(
    "template", ["{name:>300000000}", "{name!r}", "{name.__class__}", "{name[0]}"]
)
def test_a_template_that_is_more_than_plain_names_is_refused_at_load(tmp_path, template):
    path = tmp_path / "data_quality" / "wide.yml"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(RULE).replace("{name:>300000000}", template), "utf-8")
    with pytest.raises(RuleError) as exc:
        load_rule(path)
    assert str(path) in str(exc.value) and "field 'explanation'" in str(exc.value)
    assert "plain name" in str(exc.value)


def test_one_rule_failing_in_python_leaves_the_others_to_run(tmp_path, monkeypatch):
    """Whatever a rule raises while its hits are built is that rule's error, recorded in
    the run; the other rules run and their flags are stored."""
    from detector import engine

    db = tmp_path / "d.duckdb"
    visits = write_csv(
        tmp_path / "v.csv",
        ["record_id", "facility", "entered_at", "name"],
        [["V1", "ZAC", "2019-06-01 10:00", "N/I"]],
    )
    assert runner.invoke(app, ["ingest", str(visits), "--db", str(db)]).exit_code == 0
    real = engine._hit

    def breaking(rule, values, *worded):
        if rule.id == "unidentified-placeholder-name":
            raise MemoryError("a template built a string too wide")
        return real(rule, values, *worded)

    monkeypatch.setattr(engine, "_hit", breaking)
    result = runner.invoke(app, ["run", "--no-score", "--db", str(db)])
    assert result.exit_code == 1 and "unidentified-placeholder-name failed" in result.output
    [(status, errors, counts)] = rows(
        Store(db), "SELECT status, errors, counts FROM runs WHERE kind = 'rules'"
    )
    assert status == "ok" and "too wide" in json.loads(errors)["unidentified-placeholder-name"]
    assert "unidentified-placeholder-name" not in json.loads(counts)
    assert len(json.loads(counts)) > 30  # every other rule ran


def _many_hits(db, n: int) -> None:
    import duckdb

    from bench.rules import build

    build(db, n)
    con = duckdb.connect(str(db))
    con.execute("UPDATE visits SET id_type = 'DUI'")  # every DUI invalid: a flood of hits
    con.close()


@pytest.mark.slow
def test_a_run_killed_while_storing_its_flags_is_closed_and_its_spool_removed(tmp_path):
    """kill -9 during the flag upsert left the run 'running' forever and its spool of hits
    (131 MB) beside the database; the next run closes the one and removes the other."""
    db = tmp_path / "d.duckdb"
    _many_hits(db, 100_000)
    run = [sys.executable, "-m", "detector.cli", "run", "--no-score", "--db", str(db)]
    victim = subprocess.Popen(run, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        spools = list(tmp_path.glob(".hits-*"))
        written = spools and any(p.suffix == ".parquet" for s in spools for p in s.iterdir())
        if written and (db.with_name(db.name + ".lock")).exists():
            try:
                if rows(Store(db, wait=0.5), "SELECT count(*) FROM runs")[0][0]:
                    break
            except Exception:  # noqa: BLE001 - the writer holds the file: it is storing
                break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert list(tmp_path.glob(".hits-*")), "the killed run should have left its spool"
    again = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not list(tmp_path.glob(".hits-*"))
    store = Store(db)
    assert rows(store, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
    assert (
        rows(store, "SELECT count(*) FROM flags WHERE rule_id = 'unidentified-invalid-dui'")[0][0]
        == 100_000
    )


def test_a_stale_run_and_a_dead_process_spool_are_cleaned_by_the_next_run(tmp_path):
    db = tmp_path / "d.duckdb"
    visits = write_csv(
        tmp_path / "v.csv",
        ["record_id", "facility", "entered_at", "name"],
        [["V1", "ZAC", "2019-06-01 10:00", "Ana"]],
    )
    assert runner.invoke(app, ["ingest", str(visits), "--db", str(db)]).exit_code == 0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    spool = tmp_path / f"{_spool_prefix(gone.pid)}abc"
    spool.mkdir()
    (spool / "0000-x.parquet").write_bytes(b"x" * 1000)
    mine = tmp_path / f"{_spool_prefix(os.getpid())}live"  # a live process's spool stays
    mine.mkdir()
    store = Store(db)
    with store.write() as con:
        con.execute(
            "INSERT INTO runs (run_id, kind, started_at, status) "
            "VALUES (1, 'rules', now(), 'running')"
        )
    assert runner.invoke(app, ["run", "--no-score", "--db", str(db)]).exit_code == 0
    assert not spool.exists() and mine.exists()
    assert rows(
        store,
        "SELECT status, errors LIKE '%' || ? || '%' FROM runs WHERE run_id = 1",
        [INTERRUPTED],
    ) == [("failed", True)]


def test_the_last_entry_removed_with_its_rows_is_caught_without_an_anchor(tmp_path):
    """Removing the last ledger entry with its rows left only a note; the runs that saw
    it and the flags citing its file say it was there."""
    db = tmp_path / "d.duckdb"
    for n, name in enumerate(("N/I", "Ana")):
        path = write_csv(
            tmp_path / f"v{n}.csv",
            ["record_id", "facility", "entered_at", "name"],
            [[f"V{n}", "ZAC", "2019-06-01 10:00", name]],
        )
        assert runner.invoke(app, ["ingest", str(path), "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, ["run", "--no-score", "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, ["verify", "--db", str(db)]).exit_code == 0
    with Store(db).write() as con:
        con.execute("DELETE FROM visits WHERE upload_seq = 2")
        con.execute("DELETE FROM uploads WHERE seq = 2")
    result = runner.invoke(app, ["verify", "--db", str(db)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1
    assert "ledger entries 2 to 2 are gone" in said
    # and the entry before it, removed alone, leaves its rows belonging to no entry
    with Store(db).write() as con:
        con.execute("DELETE FROM uploads WHERE seq = 1")
    said = " ".join(runner.invoke(app, ["verify", "--db", str(db)]).output.split())
    assert "1 visits row(s) belong to upload 1, which the ledger does not hold" in said
    assert "cite v0.csv" in said


def test_a_tampered_copy_sent_again_is_a_finding_not_a_duplicate(tmp_path):
    """Re-sending an ingested file with one row changed stored the change as a 'duplicate'
    of the original and said nothing: the changed row is quarantined beside the original,
    and the conflict is a high finding citing both; the unchanged rows are duplicates."""
    header = ["record_id", "facility", "entered_at", "name"]
    first = [
        ["V1", "ZAC", "2019-06-01 10:00", "Ana Pérez"],
        ["V2", "ZAC", "2019-06-01 11:00", "Luis Ruiz"],
    ]
    original = write_csv(tmp_path / "libro.csv", header, first)
    altered = write_csv(tmp_path / "libro_copia.csv", header, [first[0], [*first[1][:3], "N/I"]])
    db = str(tmp_path / "d.duckdb")
    assert runner.invoke(app, ["ingest", str(original), "--db", db]).exit_code == 0
    again = runner.invoke(app, ["ingest", str(altered), "--run", "--db", db])
    said = " ".join(again.output.split())
    assert again.exit_code == 0, said
    assert "record V|ZAC|V2" in said or "conflicts" in said or "other values" in said
    store = Store(db)
    assert rows(
        store, "SELECT rows_stored, rows_quarantined, rows_duplicate FROM uploads WHERE seq = 2"
    ) == [(0, 1, 1)]
    assert rows(store, "SELECT name FROM visits ORDER BY record_id") == [
        ("Ana Pérez",),
        ("Luis Ruiz",),
    ]
    [(severity, fields)] = rows(
        store, "SELECT severity, fields FROM flags WHERE rule_id = 'data-conflicting-resend'"
    )
    assert severity == "high" and json.loads(fields)["changed"] == "name"
    assert rows(store, "SELECT count(*) FROM flags WHERE rule_id = 'data-unreadable-rows'") == [
        (0,)
    ]
    assert runner.invoke(app, ["verify", "--db", db]).exit_code == 0
