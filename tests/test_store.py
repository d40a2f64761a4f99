"""The store: older database files gain new columns; threads share one file safely."""

from __future__ import annotations

import threading

import duckdb
from typer.testing import CliRunner

from detector.cli import app
from detector.store import Store
from tests.conftest import REPO


def test_an_older_database_gains_new_columns(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE runs (run_id BIGINT PRIMARY KEY, kind VARCHAR, started_at TIMESTAMP,"
        " ended_at TIMESTAMP, status VARCHAR, triggered_by VARCHAR, rules VARCHAR,"
        " counts VARCHAR, errors VARCHAR, scope VARCHAR)"
    )
    con.close()
    store = Store(path)
    store.init()
    with store.read() as con:
        columns = {r[0] for r in con.execute("DESCRIBE runs").fetchall()}
    assert "watermark" in columns


def test_readers_and_a_writer_in_threads_of_one_process(store):
    store.init()
    errors = []

    def read():
        for _ in range(20):
            try:
                with store.read() as con:
                    con.execute("SELECT count(*) FROM visits").fetchall()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    def write():
        for i in range(10):
            try:
                with store.write() as con:
                    con.execute("INSERT INTO suppressions (rule_id) VALUES (?)", [f"r{i}"])
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.read() as con:
        assert con.execute("SELECT count(*) FROM suppressions").fetchall() == [(10,)]


def test_status_and_verify_need_no_write_on_a_current_database(tmp_path):
    """Each process wrote the schema before reading, so `status` and `verify` failed with a
    traceback on a full disk or waited on a writer's lock; a current database is read
    without writing (here: a writer holds the lock the whole time)."""
    import os
    import subprocess
    import sys

    from filelock import FileLock

    db = tmp_path / "d.duckdb"
    Store(db).init()
    env = {**os.environ, "DETECTOR_LOCK_WAIT": "2"}
    with FileLock(str(db) + ".lock"):
        for cmd in (["status"], ["verify"]):
            done = subprocess.run(
                [sys.executable, "-m", "detector.cli", *cmd, "--db", str(db)],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert "Traceback" not in done.stderr


def test_a_schema_that_fails_part_way_leaves_no_half_of_it(tmp_path, monkeypatch):
    """The tables, views and the schema's mark are created in one transaction: a statement
    failing part way (a full disk, a killed process) leaves none of them, and the next
    write creates them all."""
    import pytest

    from detector import store as store_module

    broken = [*store_module.DDL[:5], "CREATE TABLE visits_broken AS SELECT nothing_here"]
    monkeypatch.setattr(store_module, "DDL", broken)
    path = tmp_path / "d.duckdb"
    with pytest.raises(duckdb.Error):
        Store(path).init()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]
    monkeypatch.undo()
    Store(path).init()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchall()[0][0] > 20


def test_a_long_write_checkpoints_by_the_log_size_within_the_block_only(store):
    """Within ``checkpoints_by_size`` a file's log may hold a quarter of DuckDB's memory
    limit before it checkpoints (not a checkpoint per committed part); after it, DuckDB's
    own threshold is back, and what was committed inside is stored."""
    from pydantic import ByteSize, TypeAdapter

    from detector.store import CHECKPOINT_SHARE, checkpoints_by_size, commit_part

    def setting(con, name: str) -> int:
        (value,) = con.execute(f"SELECT current_setting('{name}')").fetchall()[0]
        return TypeAdapter(ByteSize).validate_python(value)

    with store.write() as con:
        before = setting(con, "checkpoint_threshold")
        with checkpoints_by_size(con):
            inside = setting(con, "checkpoint_threshold")
            con.execute("CREATE TABLE parts (n INTEGER)")
            for n in range(3):
                con.execute("INSERT INTO parts VALUES (?)", [n])
                commit_part(con)
        assert setting(con, "checkpoint_threshold") == before
        limit = setting(con, "memory_limit")
    assert abs(inside - limit * CHECKPOINT_SHARE) < 2**20 and inside > before
    with store.read() as con:
        assert con.execute("SELECT list(n ORDER BY n) FROM parts").fetchall() == [([0, 1, 2],)]


def _format(path) -> str:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT tags['storage_version'] FROM duckdb_databases() WHERE NOT internal"
        ).fetchall()[0][0]
    finally:
        con.close()


# What the README tells the owner of a store made before the newer format to run.
CONVERT = (
    "ATTACH '{old}' AS old (READ_ONLY); "
    "ATTACH '{new}' AS new (STORAGE_VERSION 'v1.5.0'); "
    "COPY FROM DATABASE old TO new"
)


def test_a_new_file_is_written_in_the_newer_storage_format(tmp_path):
    store = Store(tmp_path / "new.duckdb")
    store.init()
    assert _format(store.path) == "v1.5.0+"
    shown = CliRunner().invoke(
        app, ["status", "--db", str(store.path)], env={"DETECTOR_LANGUAGE": "en"}
    )
    assert shown.exit_code == 0 and "uploads in ledger" in shown.output
    assert "file format" not in shown.output  # nothing to say


def test_only_an_older_format_is_called_older():
    """Formats are compared as versions: a newer one (a file a later release wrote) and a
    tag naming no version are not called older."""
    from detector.status import older_format

    assert older_format("v1.0.0+") and older_format("v1.4.3+") and older_format("v0.10.2")
    assert not older_format("v1.5.0+") and not older_format("v1.5.1+")
    assert not older_format("v2.0.0+") and not older_format("v1.10.0+")
    assert not older_format(None) and not older_format("") and not older_format("latest")


def test_a_file_of_the_older_format_keeps_it_works_and_converts(tmp_path):
    """A store made before the newer format (DuckDB's default, readable by 1.0 and later)
    is read and written as before, keeps its format, verifies; copied into a file of the
    newer one as the README says, it verifies too and holds the same rows."""
    from detector import ledger
    from detector.ingest import ingest_file
    from tests.conftest import write_csv

    path = tmp_path / "detector.duckdb"
    duckdb.connect(str(path)).close()  # an empty file of DuckDB's default format
    store = Store(path)
    csv = write_csv(
        tmp_path / "v.csv",
        ["facility", "entered_at", "name", "id_number"],
        [["ZAC", f"2019-06-0{d} 10:00", f"Ana Pérez {d}", f"0{d}234567-8"] for d in range(1, 6)],
    )
    assert ingest_file(store, csv).rows_stored == 5
    assert _format(path) == "v1.0.0+"
    assert ledger.verify(store).ok
    # `detector status` tells its owner, in either language
    for lang, said in (("en", "older than the v1.5.0+"), ("es", "anterior al v1.5.0+")):
        shown = CliRunner().invoke(
            app, ["status", "--db", str(path)], env={"DETECTOR_LANGUAGE": lang}
        )
        assert shown.exit_code == 0 and said in " ".join(shown.output.split()), shown.output
    new = tmp_path / "converted.duckdb"
    con = duckdb.connect()
    con.execute(CONVERT.format(old=path, new=new))
    con.close()
    assert _format(new) == "v1.5.0+"
    converted = Store(new)  # the evidence folder beside it is the same one
    assert ledger.verify(converted).ok
    query = "SELECT * FROM visits ORDER BY record_key"
    with store.read() as a, converted.read() as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_a_frame_reaches_duckdb_as_a_file_in_the_spill_folder_and_leaves_nothing(
    tmp_path, monkeypatch
):
    """``frame_table`` hands a polars frame to DuckDB through a Parquet file, types and
    nulls kept, written in the connection's spill folder (the process's own, the one
    folder a sandboxed connection still reads) and removed once read."""
    from datetime import datetime
    from pathlib import Path

    import polars as pl

    from detector.store import frame_table, spill_folder

    home = tmp_path / "data"
    spill = spill_folder(home)
    con = duckdb.connect(config={"temp_directory": str(spill)})
    con.execute("SET enable_external_access = false")  # as the rules' sandbox
    frame = pl.DataFrame(
        {
            "key": ["a", None, "ñ"],
            "n": [1, None, 3],
            "at": [datetime(2020, 1, 2, 3, 4), None, datetime(2021, 5, 6)],
            "keys": [["x", "y"], [], None],
        },
        schema={
            "key": pl.String,
            "n": pl.Int64,
            "at": pl.Datetime("us"),
            "keys": pl.List(pl.String),
        },
    )
    written = []
    write = pl.DataFrame.write_parquet

    def noted(self, file, *args, **kwargs):
        written.append(Path(file))
        return write(self, file, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", noted)
    frame_table(con, "handed", frame)
    frame_table(con, "empty", frame.clear())
    assert con.execute("SELECT * FROM handed").fetchall() == [
        ("a", 1, datetime(2020, 1, 2, 3, 4), ["x", "y"]),
        (None, None, None, []),
        ("ñ", 3, datetime(2021, 5, 6), None),
    ]
    assert con.execute("SELECT count(*) FROM empty").fetchall() == [(0,)]
    assert [f.parent for f in written] == [spill, spill]
    assert list(spill.iterdir()) == []  # read, then removed


def test_no_connection_draws_a_progress_bar_into_a_commands_output(tmp_path):
    """DuckDB draws a progress bar on standard output under a query running past two
    seconds (into a command's JSON or CSV on stdout, and into the two processes' output
    below on a loaded machine): none of the store's connections draws one. Checked in a
    process of its own, as a command starts (DuckDB's default there is to draw it)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import duckdb\n"
        "from detector.store import Store, private_con\n"
        "drawn = \"SELECT current_setting('enable_progress_bar')\"\n"
        "print(duckdb.connect().execute(drawn).fetchall()[0][0])\n"  # DuckDB's default
        "store = Store(Path(sys.argv[1]) / 'detector.duckdb')\n"
        "store.init()\n"
        "with store.read() as con:\n"
        "    print(con.execute(drawn).fetchall()[0][0])\n"
        "with store.sandboxed() as con:\n"
        "    print(con.execute(drawn).fetchall()[0][0])\n"
        "with store.write() as con:\n"
        "    print(con.execute(drawn).fetchall()[0][0])\n"
        "print(private_con(Path(sys.argv[1])).execute(drawn).fetchall()[0][0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False", "False", "False"]


def test_two_processes_spilling_at_once_each_finish(tmp_path):
    """DuckDB names its spill files alike in every process: two processes spilling into the
    store's one spill folder at once (the dashboard reading beside a scheduled run) both
    died of a segmentation fault. Each process spills into a folder of its own, which it
    removes; the folder of a process gone is removed by the next one."""
    import os
    import subprocess
    import sys

    db = tmp_path / "data" / "detector.duckdb"
    Store(db).init()
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE big AS SELECT range AS i, repeat('x', 60) || range AS s "
            "FROM range(1500000)"
        )
    spill = db.parent / ".duckdb_tmp"
    spill.mkdir(mode=0o700, exist_ok=True)
    (spill / "999999999-gone").mkdir()  # a folder a killed process left
    (spill / "999999999-gone" / "duckdb_temp_storage_S32K-0.tmp").write_bytes(b"x" * 10)
    script = (
        "import sys\n"
        "from detector.store import Store\n"
        "with Store(sys.argv[1]).read() as con:\n"
        "    for _ in range(3):\n"
        "        print(con.execute('SELECT sum(hash(i, s, n)) FROM (SELECT i, s, row_number() "
        "OVER (ORDER BY s DESC, i) AS n FROM big)').fetchall()[0][0])\n"
    )
    env = {**os.environ, "DETECTOR_DUCKDB_MEMORY": "60MB"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(db)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-2000:]
    assert outputs[0][0] == outputs[1][0] and len(set(outputs[0][0].split())) == 1
    assert list(spill.iterdir()) == []  # each its own, removed; the dead one's too
