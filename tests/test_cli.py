"""The CLI end to end through typer's runner, on a real DuckDB file."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from detector.cli import app
from tests.conftest import REPO, WAVES, rows, write_csv

runner = CliRunner()


def test_ingest_status_json_and_quarantine_summary(store, tmp_path):
    path = write_csv(
        tmp_path / "v.csv",
        ["facility", "entered_at", "name"],
        [["ZAC", "2022-02-05 10:00", "A"], ["ZAC", "nope", "B"]],
    )
    result = runner.invoke(app, ["ingest", str(path), "--db", str(store.path), "--user", "ana"])
    assert result.exit_code == 0, result.output
    assert "v.csv row 3, entered_at: entered_at 'nope' is not a date/time" in result.output
    result = runner.invoke(app, ["status", "--format", "json", "--db", str(store.path)])
    report = json.loads(result.output)
    assert report["totals"]["visits"] == 1
    assert report["quarantine"] == [
        {"source_name": "v.csv", "reason_code": "unparseable_date", "rows": 1}
    ]
    assert rows(store, "SELECT uploaded_by FROM uploads") == [("ana",)]


def test_an_upload_of_which_no_row_was_stored_says_so_and_fails(store, tmp_path, monkeypatch):
    """Every row set aside: the table said "stored" beside 0 stored (and the command
    failed); it says "nothing stored", with the reasons."""
    from detector import cli

    monkeypatch.setattr(cli.console, "width", 200)  # the table's cells unwrapped
    path = write_csv(tmp_path / "v.csv", ["facility", "entered_at", "name"], [["ZAC", "nope", "B"]])
    result = runner.invoke(app, ["ingest", str(path), "--db", str(store.path)])
    assert result.exit_code == 1
    assert "nothing stored" in result.output
    assert "v.csv row 2, entered_at: entered_at 'nope' is not a date/time" in result.output
    assert rows(store, "SELECT count(*) FROM quarantine") == [(1,)]


def test_a_spanish_form_is_read_by_its_headings_and_a_column_not_read_is_named(store, tmp_path):
    """Headings as Spanish forms write them ("Hora de entrada", "N° DUI", "Nombre del
    visitante", "Interno visitado") find their fields; a column no field goes by is named
    at ingest, not dropped unnoticed (found by a new user: a name column under an unknown
    heading was lost, and the run then said the file records no names)."""
    path = write_csv(
        tmp_path / "visitas.csv",
        ["Centro penal", "Fecha", "Hora de entrada", "Hora de salida", "Nombre del visitante",
         "N° DUI", "Interno visitado", "Observaciones del custodio"],
        [["ZAC", "14/02/2020", "02:40", "03:30", "Pedro Ramos", "99999999-9", "INT-1", "ok"]],
    )  # fmt: skip
    result = runner.invoke(app, ["ingest", str(path), "--db", str(store.path)])
    assert result.exit_code == 0, result.output
    assert rows(
        store,
        "SELECT entered_at::VARCHAR, entered_precision, exited_at::VARCHAR, name, id_number, "
        "id_type, inmate_id FROM visits",
    ) == [
        ("2020-02-14 02:40:00", "minute", "2020-02-14 03:30:00", "Pedro Ramos", "99999999-9",
         "DUI", "INT-1")
    ]  # fmt: skip
    said = " ".join(result.output.split())
    assert "visitas.csv: columns not read" in said
    assert "Observaciones del custodio" in said


def test_a_books_abbreviated_headings_are_read(store, tmp_path):
    """Headings as a women's prison book abbreviates them ("Hora Ent.", "Hora Sal.",
    "Interna visitada", "Observaciones"): a new user's 191 visits were stored at midnight
    with no exit, no inmate and no note (the hours rules then had nothing to judge)."""
    path = write_csv(
        tmp_path / "libro.csv",
        ["Centro penal", "Fecha", "Hora Ent.", "Hora Sal.", "Nombre", "Interna visitada",
         "Observaciones"],
        [["ZAC", "12/06/2019", "10:40 p. m.", "23h55", "Ana Ruiz", "INT-7", "visita familiar"]],
    )  # fmt: skip
    result = runner.invoke(app, ["ingest", str(path), "--db", str(store.path)])
    assert result.exit_code == 0, result.output
    assert rows(
        store,
        "SELECT entered_at::VARCHAR, entered_precision, exited_at::VARCHAR, inmate_id, purpose "
        "FROM visits",
    ) == [("2019-06-12 22:40:00", "minute", "2019-06-12 23:55:00", "INT-7", "visita familiar")]
    assert "columns not read" not in " ".join(result.output.split())


def test_a_workbooks_other_sheets_are_said_not_read(store, tmp_path):
    """A book of one month per sheet, read by default from its first: the July sheet's
    visits (an "Encapuchado" among them) were skipped without a word. The ingest names the
    sheets with rows it did not read, and how to read them; an empty sheet is not named."""
    import xlsxwriter

    path = tmp_path / "libro.xlsx"
    book = xlsxwriter.Workbook(str(path))
    for month, names in (("Junio", ["Ana Ruiz", "Luis Mejía"]), ("Julio", ["Encapuchado"])):
        sheet = book.add_worksheet(month)
        sheet.write_row(0, 0, ["Centro", "Fecha", "Hora de entrada", "Nombre"])
        for i, name in enumerate(names, start=1):
            sheet.write_row(i, 0, ["ZAC", f"0{i}/06/2019", "09:00", name])
    book.add_worksheet("Notas")
    book.close()
    result = runner.invoke(app, ["ingest", str(path), "--db", str(store.path)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "libro.xlsx: other sheets not read: Julio (up to 1 rows)" in said, said
    assert 'sheet = "*"' in said and "Notas" not in said
    assert rows(store, "SELECT count(*) FROM visits") == [(2,)]


def test_a_file_read_again_with_a_corrected_mapping_says_the_first_reading_is_kept(store, tmp_path):
    """A user corrects a mapping (the time column was left out) and ingests the file again:
    its rows were counted as duplicates and nothing said that the stored ones still hold
    the first reading. The ingest now says how many rows read otherwise, and what to do."""
    path = write_csv(
        tmp_path / "v.csv",
        ["Centro", "Fecha", "Hora", "Nombre"],
        [["ZAC", "03/06/2019", "22:40", "Ana Ruiz"], ["ZAC", "04/06/2019", "09:10", "Luis Mejía"]],
    )
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text('kind = "visits"\n[columns]\nentered_at = "Fecha"\n', encoding="utf-8")
    second.write_text(
        'kind = "visits"\n[columns]\nentered_at = { date = "Fecha", time = "Hora" }\n',
        encoding="utf-8",
    )
    db = ["--db", str(store.path)]
    assert runner.invoke(app, ["ingest", str(path), "--mapping", str(first), *db]).exit_code == 0
    again = runner.invoke(app, ["ingest", str(path), "--mapping", str(second), *db])
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())
    assert "v.csv: 2 rows read otherwise than when these bytes were first stored" in said, said
    assert "ingest it into a new database" in said
    assert rows(
        store, "SELECT count(*), count(*) FILTER (entered_precision = 'day') FROM visits"
    ) == [(2, 2)]
    assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]
    # the same reading again is a plain duplicate, and says nothing of the kind
    same = runner.invoke(app, ["ingest", str(path), "--mapping", str(first), *db])
    assert "read otherwise" not in same.output


def test_file_error_is_one_line_and_exit_code_1(store, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    result = runner.invoke(app, ["ingest", str(path), "--db", str(store.path)])
    assert result.exit_code == 1
    assert "empty.csv: file is empty" in result.output


def test_bad_mapping_file_names_the_field(store, tmp_path):
    mapping = tmp_path / "m.toml"
    mapping.write_text('date_order = "xyz"\n', encoding="utf-8")
    result = runner.invoke(
        app, ["ingest", str(mapping), "--mapping", str(mapping), "--db", str(store.path)]
    )
    assert result.exit_code == 1
    assert "m.toml: mapping field 'date_order'" in result.output


def test_waves_real_file_stores_every_row(store):
    result = runner.invoke(
        app,
        [
            "ingest",
            str(WAVES),
            "--mapping",
            str(REPO / "logs" / "mappings" / "waves.toml"),
            "--db",
            str(store.path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert rows(store, "SELECT count(*) FROM visits") == [(2155,)]
    assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]
    # arrival time where recorded, else the appointment start: 38 of the 820 rows with no
    # arrival carry a start time, the other 782 only a day (flagged as day precision)
    assert rows(store, "SELECT entered_precision, count(*) FROM visits GROUP BY 1 ORDER BY 1") == [
        ("day", 782),
        ("minute", 1373),
    ]
    assert rows(
        store,
        "SELECT name, entered_at::VARCHAR, party_id, party_size FROM visits WHERE source_row = 2",
    ) == [("MARC L OSTFIELD", "2022-02-01 11:46:00", "U39721", 2)]


def test_demo_builds_and_ingests(tmp_path):
    db = tmp_path / "d.duckdb"
    result = runner.invoke(
        app, ["demo", "--db", str(db), "--out", str(tmp_path / "logs"), "--no-serve"]
    )
    assert result.exit_code == 0, result.output
    again = runner.invoke(
        app, ["demo", "--db", str(db), "--out", str(tmp_path / "logs"), "--no-serve"]
    )
    assert again.exit_code == 0 and "already uploaded" in again.output
    # the evidence check believes the demo world: every kind counted, nothing "missing"
    verified = runner.invoke(app, ["verify", "--db", str(db)])
    assert verified.exit_code == 0, verified.output
    status = json.loads(runner.invoke(app, ["status", "--format", "json", "--db", str(db)]).output)
    assert {k for k, n in status["totals"].items() if n} >= {
        "visits", "transfers", "inmates", "logbooks", "facilities", "events", "zones", "absences"
    }  # fmt: skip


def test_a_badge_log_with_its_zones_is_verified_and_counted(tmp_path):
    """The VAST Challenge 2009 layout (a sample written here: the challenge's own copies
    carry no licence) with its zones file: stored, checked, and believed by `verify`."""
    db = str(tmp_path / "d.duckdb")
    mappings = REPO / "logs" / "mappings"
    zones = runner.invoke(app, ["ingest", str(mappings / "vast2009_zones.csv"), "--db", db])
    assert zones.exit_code == 0, zones.output
    prox = runner.invoke(
        app,
        ["ingest", str(REPO / "logs" / "sample" / "vast2009_layout_prox.csv"),
         "--mapping", str(mappings / "vast2009_prox.toml"), "--run", "--db", db],
    )  # fmt: skip
    assert prox.exit_code == 0, prox.output
    assert "access-exit-without-entry" in prox.output
    verified = runner.invoke(app, ["verify", "--db", db])
    assert verified.exit_code == 0, verified.output
    status = json.loads(runner.invoke(app, ["status", "--format", "json", "--db", db]).output)
    assert status["totals"]["events"] == 431 and status["totals"]["zones"] == 3


def _imported_by(argv: list[str]) -> set[str]:
    """The top-level packages a `detector` command loads, run in a fresh process."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom detector.cli import app\n"
        f"sys.argv = {['detector', *argv]!r}\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(done.stdout.split("\n")[-2].split())


SCORING_STACK = {"pyod", "sklearn", "scipy", "numba", "joblib", "matplotlib"}
# DuckDB 1.5.5 (the engine DuckLake needs, README "The engine") imports pandas to bind any
# query parameter that is not None (0.5 s); 2.0 did not. The rules, the scoring and `status`
# refuse it that import (detector.nopandas); identity linkage (Splink) may load it.
NO_QUERY = {"polars", "duckdb", "pyarrow", "pandas", *SCORING_STACK}
# 0.25-0.3 s of every command that loads them (detector.lazy)
FRAMES = {"polars", "pyarrow", "numpy"}


def test_commands_import_only_what_they_use(store, tmp_path):
    """`--help` loads neither polars nor DuckDB; `run --no-score` nothing of the scoring
    stack, nor pyarrow or pandas; `run` scoring new visits against a kept ECOD reference needs numpy alone;
    `status`, and `run` finding nothing new, no frame library at all."""
    assert not _imported_by(["--help"]) & NO_QUERY
    header = ["facility", "entered_at", "name", "role"]
    days = [[f, f"2022-02-{d:02d} {h}:00", f"N{d}{h}{f}", "family"] for d in range(1, 20)
            for h in (9, 10, 11) for f in ("ZAC", "IZA")]  # fmt: skip
    first = write_csv(tmp_path / "a.csv", header, days)
    assert (
        runner.invoke(app, ["ingest", str(first), "--run", "--db", str(store.path)]).exit_code == 0
    )
    more = write_csv(tmp_path / "b.csv", header, [["ZAC", "2022-02-21 10:00", "Late", "family"]])
    assert runner.invoke(app, ["ingest", str(more), "--db", str(store.path)]).exit_code == 0
    # the day's run: the new row linked to a person, the rules run and their flags stored,
    # every frame handed to DuckDB as a file (a registered frame imports pyarrow)
    assert not _imported_by(["run", "--no-score", "--db", str(store.path)]) & (
        SCORING_STACK | {"pyarrow", "pandas"}
    )
    assert not _imported_by(["run", "--db", str(store.path)]) & SCORING_STACK
    assert "pandas" not in _imported_by(["status", "--db", str(store.path)])
    assert "pandas" not in _imported_by(["run", "--no-score", "--db", str(store.path)])
    assert rows(store, "SELECT count(*) FROM scores") == [(len(days) + 1,)]
    assert not _imported_by(["run", "--db", str(store.path)]) & FRAMES  # nothing new
    assert not _imported_by(["status", "--db", str(store.path)]) & FRAMES


def test_the_command_line_speaks_spanish(store, tmp_path, monkeypatch):
    """It was all English even with DETECTOR_LANGUAGE=es: messages, tables and --help."""
    import subprocess
    import sys

    from tests.readable import english_words

    path = write_csv(
        tmp_path / "v.csv",
        ["facility", "entered_at", "name"],
        [["ZAC", "2022-02-05 10:00", "A"], ["ZAC", "nope", "B"]],
    )
    db = str(store.path)
    monkeypatch.setenv("DETECTOR_LANGUAGE", "es")
    ingested = runner.invoke(app, ["ingest", str(path), "--db", db])
    assert ingested.exit_code == 0, ingested.output
    assert "v.csv fila 3, Entrada: Entrada 'nope' no es una fecha" in ingested.output
    # the command as a user types it, in a process of its own
    verified = subprocess.run(
        [sys.executable, "-m", "detector.cli", "verify", "--db", db],
        capture_output=True, text=True, cwd=REPO,
        env={**__import__("os").environ, "DETECTOR_LANGUAGE": "es", "COLUMNS": "200"},
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == (
        "libro íntegro: 1 entrada; los archivos de evidencia coinciden con sus hashes"
    )
    for args in (
        ["status", "--db", db],
        ["users", "add", "lucia", "--role", "viewer", "--db", db],
        ["--help"],
        ["verify", "--help"],
        ["ingest", "--help"],
        ["users", "add", "--help"],
        ["ingest"],  # a mistake: the error and the usage line
        ["status", "--bogus"],
    ):
        said = runner.invoke(app, args, terminal_width=200).output
        left = set(english_words(said)) - COMMANDS  # a command's name is what the user types
        assert not left, (args, left, said)
    assert "Uso: " in runner.invoke(app, ["--help"], terminal_width=200).output
    # in a process of its own, typer's panels are worded when typer first imports them
    for args, expected in ((["--help"], "Opciones"), (["ingest"], "Falta el argumento")):
        shown = subprocess.run(
            [sys.executable, "-m", "detector.cli", *args],
            capture_output=True, text=True, cwd=REPO,
            env={**__import__("os").environ, "DETECTOR_LANGUAGE": "es", "COLUMNS": "200"},
        )  # fmt: skip
        said = shown.stdout + shown.stderr
        assert expected in said and "Uso: " in said, said
        left = set(english_words(said)) - COMMANDS
        assert not left, (args, left, said)


def _commands(group) -> set[str]:
    names = set()
    for name, command in getattr(group, "commands", {}).items():
        names |= {name} | _commands(command)
    return names


COMMANDS = _commands(__import__("typer").main.get_command(app))


def test_the_demo_on_a_busy_port_says_so_and_fails(tmp_path):
    """A second demo printed the dashboard's address, then Streamlit's "Port 8501 is not
    available", and exited 0. Now the busy port is said first, and the exit is 1."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(
            app,
            ["demo", "--db", str(tmp_path / "d.duckdb"), "--out", str(tmp_path / "logs"),
             "--port", str(port), "--address", "127.0.0.1"],
        )  # fmt: skip
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.output
    assert "--port" in result.output and "Dashboard:" not in result.output
    assert not (tmp_path / "logs").exists()  # said before the demo's work, not after it
