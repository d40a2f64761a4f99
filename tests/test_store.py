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
