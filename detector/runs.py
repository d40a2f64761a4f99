"""Run bookkeeping shared by rule runs, scoring runs and the scheduler: every run has a row
in ``runs`` (kind, who started it, scope, status, counts, errors) from its start."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from detector.store import Store


def now() -> datetime:
    """The current time as stored (UTC, without a zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


# What a run left 'running' by a process that died says.
INTERRUPTED = "interrupted: its process stopped before the run finished"


def close_interrupted(con) -> int:
    """Mark failed the runs a killed process left 'running'; how many.

    Called under the writers' lock, which a run holds from the moment its row is written
    until it ends: any other run still 'running' then is one whose process died."""
    return con.execute(
        "UPDATE runs SET status = 'failed', ended_at = ?, errors = ? WHERE status = 'running'",
        [now(), json.dumps({"run": INTERRUPTED})],
    ).fetchall()[0][0]


def next_run(con, kind: str, triggered_by: str, scope: str) -> int:
    """Open a run (status ``running``) in the caller's write transaction; its id. Runs a
    killed process left 'running' are closed first (:func:`close_interrupted`)."""
    close_interrupted(con)
    run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0]
    con.execute(
        "INSERT INTO runs (run_id, kind, started_at, status, triggered_by, scope) "
        "VALUES (?, ?, ?, 'running', ?, ?)",
        [run_id, kind, now(), triggered_by, scope],
    )
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
        with store.write() as con:
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
