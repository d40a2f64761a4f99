"""The store: older database files gain new columns; threads share one file safely."""

from __future__ import annotations

import threading

import duckdb

from detector.store import Store


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
