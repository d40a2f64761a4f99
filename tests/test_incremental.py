"""Incremental rule runs give the same flags as a full run, back-filled logbooks included."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.ingest import ingest_paths
from detector.rules import run_rules
from detector.store import Store
from tests.conftest import rows


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
def test_incremental_runs_equal_a_full_run(tmp_path, demo_logs):
    reference = [demo_logs[k] for k in ("facilities", "inmates", "logbooks", "transfers")]
    splits = [_split(p, tmp_path) for k, p in demo_logs.items() if k.startswith("visits_")]
    early = [s[0] for s in splits]
    backfill = [s[1] for s in splits]
    later = [s[2] for s in splits]

    step = Store(tmp_path / "incremental.duckdb", wait=30)
    ingest_paths(step, reference + early)
    first = run_rules(step, full=False)
    assert first.scope == "full"  # nothing to be incremental against yet
    ingest_paths(step, later)
    second = run_rules(step, full=False)
    assert second.scope.startswith("incremental")
    gaps_before_backfill = _active(step)
    ingest_paths(step, backfill)
    third = run_rules(step, full=False)
    assert third.scope.startswith("incremental")
    assert third.resolved > 0  # silent periods of the withheld stretch resolve

    whole = Store(tmp_path / "full.duckdb", wait=30)
    ingest_paths(whole, reference + early + later + backfill)
    run_rules(whole, full=True)
    assert _active(step) == _active(whole)
    assert gaps_before_backfill != _active(whole)
    # the back-fill really was a gap before it arrived
    assert {r for _, r, _ in gaps_before_backfill} >= {"logbook-silent-period"}


def test_a_run_with_nothing_new_changes_nothing(store, tmp_path):
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,record_id\nZAC,2019-06-01 10:00,N/I,R1\n", encoding="utf-8"
    )
    ingest_paths(store, [path])
    run_rules(store)
    before = _active(store)
    report = run_rules(store, full=False)
    assert report.scope.startswith("incremental: 0 upload")
    assert _active(store) == before and report.resolved == 0


def test_changed_rule_file_reruns_that_rule_in_full(store, tmp_path):
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,record_id\nZAC,2019-06-01 10:00,N/I,R1\n", encoding="utf-8"
    )
    ingest_paths(store, [path])
    run_rules(store)
    with store.write() as con:  # as if the rule file had been edited since
        con.execute("UPDATE runs SET rules = '{}'")
    report = run_rules(store, full=False)
    assert report.counts.get("unidentified-placeholder-name") == 1
