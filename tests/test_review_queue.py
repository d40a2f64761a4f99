"""The review queue on look-alike traffic: range flags ranked by severity and size, cases
instead of rows, and a case closed once staying closed unless its reviewer asked."""

from __future__ import annotations

import json

import pytest

from detector.auth import Actor
from detector.engine import run_rules
from detector.flags import FlagQuery, read_flags
from detector.pipeline import ingest_files
from detector.review import reopen_on_new, set_status
from detector.store import Store
from tests.conftest import demo_store, rows, write_csv

ANA = Actor("ana", "auditor")


@pytest.fixture(scope="module")
def scored_demo(tmp_path_factory, demo_logs) -> Store:
    return demo_store(tmp_path_factory.mktemp("queue") / "q.duckdb", demo_logs)


def test_a_high_range_flag_ranks_above_every_routine_medium_entry(scored_demo):
    """Range flags used to take the risk of their anchor visits (0 after scoring), so a
    removed book ranked below routine medium entries. A routine entry here is a medium
    rule flag on visits the model does not find rare (below the top 1%)."""
    queue = read_flags(scored_demo, FlagQuery(include_suppressed=True)).with_row_index("rank")
    routine = rows(
        scored_demo,
        """SELECT DISTINCT f.flag_id FROM flags f, unnest(f.record_keys) u(k)
           JOIN scores s ON s.record_key = u.k
           WHERE f.severity = 'medium' AND f.subject = 'records' AND f.source = 'rule'
           GROUP BY f.flag_id HAVING max(s.outlier_pct) < 0.99""",
    )
    ranges = queue.filter(
        (queue["subject"] == "range") & queue["severity"].is_in(["high", "critical"])
    )
    assert routine and ranges.height >= 5
    rank = dict(zip(queue["flag_id"], queue["rank"], strict=True))
    worst_range = ranges["rank"].max()
    best_routine = min(rank[f] for (f,) in routine)
    assert worst_range < best_routine, (worst_range, best_routine)
    # and every range flag has a risk of its own, never 0
    assert ranges["score"].min() >= 0.6


def test_bigger_gaps_rank_higher_at_equal_severity(scored_demo):
    sized = rows(
        scored_demo,
        """SELECT json_extract(fields, '$.magnitude')::DOUBLE AS m, score FROM flags
           WHERE subject = 'range' AND severity = 'high' ORDER BY m""",
    )
    assert len(sized) >= 3
    assert [s for _, s in sized] == sorted(s for _, s in sized)
    assert sized[-1][1] > sized[0][1]


def _late_visits(path, rows_):
    write_csv(
        path,
        ["record_id", "facility", "entered_at", "name", "role"],
        [[r, "QZT", at, "Rosa Mejía", "Familiar"] for r, at in rows_],
    )
    return path


def _case(store):
    ((flag_id, keys, fields, status),) = rows(
        store,
        """SELECT f.flag_id, len(f.record_keys), f.fields, coalesce(r.status, 'new')
           FROM flags f LEFT JOIN reviews r USING (flag_id)
           WHERE f.rule_id = 'visit-outside-visiting-hours'""",
    )
    return flag_id, keys, json.loads(fields)["occurrences"], status


def test_repeated_hits_are_one_case_dismissed_once(store, tmp_path):
    write_csv(
        tmp_path / "f.csv",
        ["facility", "kind", "visiting_hours"],
        [["QZT", "centro penal", "08:00-15:00"]],
    )
    ingest_files(store, [tmp_path / "f.csv"])
    ingest_files(
        store,
        [
            _late_visits(
                tmp_path / "a.csv", [("V1", "2019-06-01 19:10"), ("V2", "2019-06-08 19:40")]
            )
        ],
    )
    run_rules(store, only=["visit-outside-visiting-hours"])
    flag_id, keys, occurrences, _ = _case(store)
    assert (keys, occurrences) == (2, 2)
    set_status(store, ANA, flag_id, "dismissed", "her shift ends at 18:00", "benign")

    # A third late entry that month joins the same case, which stays dismissed.
    ingest_files(store, [_late_visits(tmp_path / "b.csv", [("V3", "2019-06-15 20:05")])])
    run_rules(store, only=["visit-outside-visiting-hours"])
    assert _case(store) == (flag_id, 3, 3, "dismissed")

    # Asked to be told, the reviewer sees the case re-open on the next occurrence.
    reopen_on_new(store, ANA, flag_id, True)
    ingest_files(store, [_late_visits(tmp_path / "c.csv", [("V4", "2019-06-22 19:55")])])
    run_rules(store, only=["visit-outside-visiting-hours"])
    assert _case(store) == (flag_id, 4, 4, "new")
    assert rows(
        store,
        "SELECT actor, old, new, note FROM review_log WHERE flag_id = ? AND actor = 'system'",
        [flag_id],
    ) == [("system", "dismissed", "new", "new occurrences arrived")]
