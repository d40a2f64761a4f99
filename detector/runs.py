"""Run bookkeeping shared by rule runs, scoring runs and the scheduler: every run has a row
in ``runs`` (kind, who started it, scope, status, counts, errors) from its start."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from detector.store import Store, lease_run, run_alive


def now() -> datetime:
    """The current time as stored (UTC, without a zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


# What a run left 'running' by a process that died says.
INTERRUPTED = "interrupted: its process stopped before the run finished"

# The writers' locks a run's write takes: the runs (run ids, flags, scores, models), and
# the reviews, since storing flags re-opens closed cases and writes their audit rows.
RUN_WRITERS = ("runs", "reviews")


def close_interrupted(con) -> int:
    """Mark failed the runs a killed process left 'running'; how many.

    A run holds a lease from the moment its row is written until its write ends: on a
    file, the writers' lock file (so any other run still 'running' when the caller holds
    it is one whose process died); on a lake, where other machines' runs go on beside the
    caller's, a PostgreSQL advisory lock of its own that the server frees when the run's
    session ends (``store.run_alive``). Only runs whose lease is free are closed."""
    running = [
        r for (r,) in con.execute("SELECT run_id FROM runs WHERE status = 'running'").fetchall()
    ]
    dead = [r for r in running if not run_alive(r)]
    if not dead:
        return 0
    return con.execute(
        "UPDATE runs SET status = 'failed', ended_at = ?, errors = ? "
        "WHERE status = 'running' AND run_id IN (SELECT unnest(?::BIGINT[]))",
        [now(), json.dumps({"run": INTERRUPTED}), dead],
    ).fetchall()[0][0]


def next_run(con, kind: str, triggered_by: str, scope: str) -> int:
    """Open a run (status ``running``) in the caller's write transaction; its id. Runs a
    killed process left 'running' are closed first (:func:`close_interrupted`). The caller
    holds the runs' writers' lock (run ids are taken in turn); the run's lease is held
    until the caller's write ends."""
    close_interrupted(con)
    run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0]
    con.execute(
        "INSERT INTO runs (run_id, kind, started_at, status, triggered_by, scope) "
        "VALUES (?, ?, ?, 'running', ?, ?)",
        [run_id, kind, now(), triggered_by, scope],
    )
    lease_run(run_id)
    return run_id


def record_failed(
    store: Store,
    kind: str,
    triggered_by: str,
    scope: str,
    started: datetime,
    exc: Exception,
    run_id: int = 0,
) -> None:
    """A run whose results could not be stored is still in ``runs``, failed, with why."""
    try:
        with store.write(RUN_WRITERS) as con:
            known = con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchall()
            if not known:
                run_id = next_run(con, kind, triggered_by, scope)
            con.execute(
                "UPDATE runs SET started_at = ?, ended_at = ?, status = 'failed', errors = ? "
                "WHERE run_id = ?",
                [
                    started,
                    now(),
                    json.dumps({"run": f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}"}),
                    run_id,
                ],
            )
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def newest_upload(con) -> int:
    """The sequence number of the newest upload in the ledger (0: none)."""
    return con.execute("SELECT coalesce(max(seq), 0) FROM uploads").fetchall()[0][0]


def watermark(con, kind: str) -> int | None:
    """The last upload the newest successful run of ``kind`` covered (None: no such run).
    (The kind is one of the tool's own words, written into the SQL: a bound parameter
    would have DuckDB 1.5 import pandas, ``detector.nopandas``.)"""
    if not kind.isidentifier():
        raise ValueError(f"not a run kind: {kind!r}")
    return con.execute(
        f"SELECT max(watermark) FROM runs WHERE kind = '{kind}' AND status = 'ok'"
    ).fetchall()[0][0]


def pending(store: Store, kind: str) -> bool:
    """Whether uploads arrived since the last successful run of ``kind``."""
    with store.read() as con:
        return newest_upload(con) > (watermark(con, kind) or 0)
