"""Files built to hurt the reader: they cost that file, never the process reading it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest

from detector.errors import FileError
from detector.formats import read_table
from detector.ingest import ingest_file
from detector.store import Store
from tests.conftest import REPO, rows, tick_config

SAMPLE = REPO / "logs" / "sample"


def _workbook(path: Path, far_cell: bool, declare: bool = True) -> Path:
    """One data row; with ``far_cell`` a value at XFD1048576 (a 5 KB file whose used range
    is the whole sheet); without ``declare`` the sheet does not say its dimension."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["record_id", "facility", "entered_at", "name"])
    ws.append(["1", "ZAC", "2022-01-01 10:00", "Ana"])
    if far_cell:
        ws["XFD1048576"] = "x"
    wb.save(path)
    if not declare:
        tmp = path.with_suffix(".tmp")
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename.startswith("xl/worksheets/"):
                    data = re.sub(rb"<dimension [^>]*/>", b"", data)
                dst.writestr(info, data)
        tmp.replace(path)
    return path


def test_a_workbook_declaring_the_whole_sheet_is_refused_before_reading(tmp_path):
    path = _workbook(tmp_path / "bomb.xlsx", far_cell=True)
    assert path.stat().st_size < 10_000
    with pytest.raises(FileError, match="1,048,576 rows x 16,384 columns"):
        read_table(path)


def test_a_workbook_that_hides_its_size_kills_only_its_reader(store, tmp_path):
    """calamine aborts the whole process on this file: the read runs in a memory-capped
    child, so this process carries on and the file is refused with the reason."""
    path = _workbook(tmp_path / "liar.xlsx", far_cell=True, declare=False)
    r = ingest_file(store, path)
    assert r.status == "failed" and "cannot read as xlsx" in r.message
    good = ingest_file(store, _workbook(tmp_path / "good.xlsx", far_cell=False))
    assert good.status == "stored" and good.rows_stored == 1
    assert rows(store, "SELECT name FROM visits") == [("Ana",)]


@pytest.mark.slow
def test_the_scheduler_moves_a_killer_workbook_to_failed_and_goes_on(tmp_path):
    """In a real `detector schedule --once` process: the workbook goes to failed/ with its
    reason, the good file after it is stored, and the process exits normally."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _workbook(inbox / "a_bomb.xlsx", far_cell=True, declare=False)
    _workbook(inbox / "b_declared.xlsx", far_cell=True)
    (inbox / "c_visits.csv").write_bytes((SAMPLE / "visits_QZT.csv").read_bytes())
    old = time.time() - 60
    for p in inbox.iterdir():
        os.utime(p, (old, old))
    config = tick_config(tmp_path, inbox)
    done = subprocess.run(
        [sys.executable, "-m", "detector.cli", "schedule", "--config", str(config), "--once",
         "--db", str(tmp_path / "d.duckdb")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    status = {o["file"]: o["status"] for o in summary["inbox"]}
    assert status == {
        "a_bomb.xlsx": "failed",
        "b_declared.xlsx": "failed",
        "c_visits.csv": "stored",
    }
    failed = sorted(p.name for p in (inbox / "failed").iterdir())
    assert any(n.endswith("a_bomb.xlsx") for n in failed)
    reasons = " ".join(p.read_text() for p in (inbox / "failed").glob("*.reason.txt"))
    assert "cannot read as xlsx" in reasons and "16,384 columns" in reasons


def test_data_on_disk_is_the_owners_alone(tmp_path):
    from detector.store import Store

    store = Store(tmp_path / "data" / "d.duckdb", wait=10)
    path = tmp_path / "v.csv"
    path.write_text("record_id,facility,entered_at,name\n1,ZAC,2022-01-01 10:00,Ana\n")
    assert ingest_file(store, path).status == "stored"
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "data") == 0o700
    assert mode(store.path) == 0o600
    evidence = [p for p in store.evidence.rglob("*") if p.is_file()]
    assert evidence and all(mode(p) == 0o400 for p in evidence)
    assert all(mode(p) == 0o700 for p in [store.evidence, *store.evidence.rglob("*")] if p.is_dir())


RULE = """
id: {id}
title: Hostile rule
description: reads or writes outside the database
category: visit_pattern
severity: low
query: |
{query}
explanation: "{{x}}"
es: {{title: Regla hostil, description: lee o escribe fuera de la base, explanation: "{{x}} aquí"}}
regression:
  - input:
      visits:
        - {{record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: Ana}}
    expect: []
dont_match:
  - description: nothing
    input:
      visits:
        - {{record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: Ana}}
"""


def test_rule_sql_cannot_read_or_write_files(store, tmp_path):
    from detector.engine import run_rules
    from detector.rulebook import RuleError, load_rules

    path = tmp_path / "v.csv"
    path.write_text("record_id,facility,entered_at,name\n1,ZAC,2022-01-01 10:00,Ana\n")
    ingest_file(store, path)
    root = tmp_path / "auditor_rules"
    folder = root / "visit_pattern"
    folder.mkdir(parents=True)
    (folder / "read.yml").write_text(
        RULE.format(
            id="reads-passwd",
            query="  SELECT record_key, content AS x FROM visits, read_text('/etc/passwd')",
        )
    )
    report = run_rules(store, [root], only=["reads-passwd"])
    assert "reads-passwd" in report.errors
    assert "external access" in report.errors["reads-passwd"].lower() or (
        "permission" in report.errors["reads-passwd"].lower()
    )
    assert rows(store, "SELECT count(*) FROM flags WHERE explanation LIKE '%root:%'") == [(0,)]

    target = tmp_path / "leak.csv"
    (folder / "read.yml").unlink()
    (folder / "copy.yml").write_text(
        RULE.format(
            id="copies-out",
            query=f"  SELECT record_key, 1 AS x FROM visits; COPY visits TO '{target}'",
        )
    )
    with pytest.raises(RuleError, match="exactly one SELECT"):
        load_rules([root])
    assert not target.exists()


@pytest.mark.parametrize("width", [6_000, 100_000])
def test_absurdly_wide_files_are_refused_at_once(store, tmp_path, width):
    """A 47 KB CSV with 6,000 columns took 77 s under the write lock; 100,000 never ended."""
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(width)) + "\n" + ",".join("x" * width) + "\n")
    t0 = time.perf_counter()
    result = ingest_file(store, path)
    assert time.perf_counter() - t0 < 5
    assert result.status == "failed"
    assert "wide.csv" in result.message and "columns (limit 500" in result.message
    assert f"{width:,} columns" in result.message or "over " in result.message
    assert rows(store, "SELECT count(*) FROM uploads") == [(0,)]


def test_a_wide_but_plausible_file_is_read(store, tmp_path):
    """Below the limit, width costs linear time: the schema is read once per batch."""
    extra = [f"note_{i}" for i in range(480)]
    path = tmp_path / "wide_ok.csv"
    header = ["record_id", "facility", "entered_at", "name", *extra]
    lines = [",".join(header)] + [
        ",".join([str(n), "ZAC", "2022-01-01 10:00", f"Ana {n}", *([""] * len(extra))])
        for n in range(2_000)
    ]
    path.write_text("\n".join(lines) + "\n")
    result = ingest_file(store, path)
    assert result.status == "stored", result.message
    assert rows(store, "SELECT count(*) FROM visits") == [(2_000,)]


def test_look_alike_letters_and_invisible_characters_do_not_split_a_person(store, tmp_path):
    """Zero-width spaces, bidi controls, fullwidth letters and Cyrillic or Greek look-alikes
    used to give a name a key of its own: an official's escorts and placeholders escaped
    the rules that compare names."""
    path = tmp_path / "v.csv"
    lines = [
        "record_id,facility,entered_at,name,role,escorted_by,id_number",
        "V1,ZAC,2019-06-01 21:00,Óscar Lemus,Funcionario,,00000001-8",
        # Cyrillic О in the escort, a zero-width space in the placeholder
        "V2,ZAC,2019-06-01 21:01,N\u200b/I,,\u041escar Lemus,",
        # Greek Ν/Ι, a bidi override and fullwidth letters in the escort
        "V3,ZAC,2019-06-01 21:02,\u039d/\u0399,,\u202eＯscar\u202c Lemus,",
        "V4,ZAC,2019-06-01 21:03,Os\u00adcar Le\u200dmus,Funcionario,,00000001-8",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert ingest_file(store, path).status == "stored"
    keys = dict(rows(store, "SELECT record_id, name_key FROM visits"))
    assert keys["V1"] == keys["V4"] == "OSCAR LEMUS"
    assert rows(store, "SELECT DISTINCT escorted_key FROM visits WHERE escorted_key <> ''") == [
        ("OSCAR LEMUS",)
    ]
    assert dict(rows(store, "SELECT record_id, name_status FROM visits")) == {
        "V1": "named",
        "V2": "placeholder",
        "V3": "placeholder",
        "V4": "named",
    }
    from detector.engine import run_rules

    run_rules(store, only=["unidentified-companions-of-official"])
    ((companions,),) = rows(store, "SELECT json_extract(fields, '$.companions')::INT FROM flags")
    assert companions == 2


def test_the_dashboard_server_runs_with_the_products_limits(monkeypatch, tmp_path):
    """Streamlit takes uploads on its upload endpoint before anyone logs in; the limit
    per upload is what a stranger can make the server hold (was 1,024 MB)."""
    from detector.demo import streamlit_command

    command = streamlit_command(tmp_path / "d.duckdb", 8501, "127.0.0.1")
    assert "--server.maxUploadSize=200" in command
    assert "--client.disableDataExport=true" in command
    assert "--server.enableXsrfProtection=true" in command
    assert "--browser.gatherUsageStats=false" in command
    monkeypatch.setenv("DETECTOR_MAX_UPLOAD_MB", "50")
    assert "--server.maxUploadSize=50" in streamlit_command(tmp_path / "d.duckdb", 1, "x")


def test_the_first_admin_password_is_written_for_the_owner_not_printed(
    tmp_path, capsys, monkeypatch
):
    """It went to stdout, and so into any redirected log."""
    import bcrypt
    from rich.console import Console

    import detector.demo as pipeline
    from detector import auth
    from detector.store import Store

    store = Store(tmp_path / "data" / "d.duckdb")
    started = []
    monkeypatch.setattr(
        pipeline.subprocess,
        "run",
        lambda cmd, check: started.append(cmd) or pipeline.subprocess.CompletedProcess(cmd, 0),
    )
    pipeline.serve_dashboard(store, Console(), 8599)  # no real server: its command is kept
    secret = tmp_path / "data" / "admin-password.txt"
    password = secret.read_text().strip()
    assert secret.stat().st_mode & 0o777 == 0o600
    assert password not in capsys.readouterr().out and started
    stored = auth.load(auth.users_file(store.path))["credentials"]["usernames"]["admin"]
    assert bcrypt.checkpw(password.encode(), stored["password"].encode())


@pytest.mark.slow
def test_damaged_csvs_lose_nothing_without_a_word(tmp_path):
    """Through the real command line: an unterminated quote turned a 200,001-line file
    into one stored row holding an 8 MB name (exit 0); short rows were stored with NULLs;
    two over-long rows crashed with ShapeError. Now the first file is refused naming the
    row and field, and the damaged lines of the second are quarantined, the rest stored."""
    db = tmp_path / "d.duckdb"

    def ingest(path):
        return subprocess.run(
            [sys.executable, "-m", "detector.cli", "ingest", str(path), "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    swallowed = tmp_path / "swallowed.csv"
    with swallowed.open("w", encoding="utf-8") as fh:
        fh.write("facility,entered_at,name\n")
        fh.write('ZAC,2022-03-01 10:00,"Ana\n')  # the quote is never closed
        for n in range(200_000):
            fh.write(f"ZAC,2022-03-01 10:00,N{n}\n")
    done = ingest(swallowed)
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "row 2" in text and "never closed" in text
    assert rows(Store(db), "SELECT count(*) FROM visits") == [(0,)]

    damaged = tmp_path / "damaged.csv"
    damaged.write_text(
        "facility,entered_at,name\n"
        "ZAC,2022-03-01 10:00,Ana\n"
        "ZAC,2022-03-01 11:00\n"  # short
        "ZAC,2022-03-01 12:00,Luz,extra,more\n"  # long
        "ZAC,2022-03-01 13:00,Eva,extra\n"  # long
        "ZAC,2022-03-01 14:00,Kim\n",
        encoding="utf-8",
    )
    done = ingest(damaged)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    store = Store(db)
    assert rows(store, "SELECT name FROM visits ORDER BY name") == [("Ana",), ("Kim",)]
    assert rows(store, "SELECT source_row, reason_code FROM quarantine ORDER BY source_row") == [
        (3, "wrong_field_count"),
        (4, "wrong_field_count"),
        (5, "wrong_field_count"),
    ]
