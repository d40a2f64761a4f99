"""The kept scoring reference: fitted once, loaded and reused, scores that stay put.

The demo world is split in time (two facilities' logs end on a Wednesday noon, their
remaining weeks arrive as a second upload), so that the appended visits share a week and
visitors with stored ones: what an everyday upload does.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from detector.engine import run_rules
from detector.pipeline import ingest_files
from detector.scoring import ScoringConfig, load_reference, score
from detector.store import Store
from tests.conftest import rows

SPLIT = "2019-11-13T12:00:00"  # a Wednesday noon


def _split(path: Path, out: Path) -> tuple[Path, Path]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    at = header.index("entered_at")
    parts = []
    for name, keep in (("before", lambda r: r[at] < SPLIT), ("after", lambda r: r[at] >= SPLIT)):
        target = out / f"{path.stem}_{name}.csv"
        with target.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(r for r in body if keep(r))
        parts.append(target)
    return parts[0], parts[1]


def _scores(store: Store) -> dict[str, tuple]:
    return {
        k: rest
        for k, *rest in rows(
            store,
            "SELECT record_key, round(outlier_score, 9), round(outlier_pct, 9), "
            "round(risk_score, 9), rules, top_features FROM scores",
        )
    }


def _model_flags(store: Store) -> list[tuple]:
    return rows(
        store,
        "SELECT flag_id, state, round(score, 9) FROM flags WHERE source = 'model' ORDER BY 1",
    )


@pytest.fixture(scope="module")
def appended(demo_logs, tmp_path_factory):
    """(store, scores before the append, model flags after the incremental run)."""
    tmp = tmp_path_factory.mktemp("reference")
    later = []
    first = []
    for kind, path in demo_logs.items():
        if kind == "truth":
            continue
        if path.name in ("visits_MAR.csv", "visits_QZT.csv"):
            before, after = _split(path, tmp)
            first.append(before)
            later.append(after)
        else:
            first.append(path)
    store = Store(tmp / "db" / "detector.duckdb", wait=30)
    ingest_files(store, first, user="test")
    run_rules(store)
    fitted = score(store)
    before = _scores(store)
    ingest_files(store, later, user="test")
    run_rules(store, full=False)
    report = score(store)
    return store, fitted, report, before


def test_the_first_run_fits_and_later_runs_reuse_the_reference(appended):
    store, fitted, report, _ = appended
    assert fitted.refit and "refitted" in fitted.scope
    assert not report.refit and report.model_id == fitted.model_id
    assert report.scope.startswith("incremental") and "new visits" in report.scope
    assert rows(store, "SELECT count(*) FROM models") == [(1,)]
    reference, why = load_reference(store, ScoringConfig())
    assert reference is not None and reference.model_id == fitted.model_id, why


def test_incremental_scores_equal_a_full_scoring_against_the_same_reference(appended):
    store, fitted, report, _ = appended
    assert 0 < report.rows < 0.5 * len(_scores(store))  # only the new rows and their neighbours
    incremental, flags = _scores(store), _model_flags(store)
    full = score(store, full=True)
    assert full.model_id == fitted.model_id and not full.refit
    assert "full re-scoring" in full.scope
    assert _scores(store) == incremental
    assert _model_flags(store) == flags


def test_old_visits_keep_their_scores_when_new_visits_arrive(appended):
    store, _, _, before = appended
    after = _scores(store)
    old = {
        k
        for (k,) in rows(
            store,
            "SELECT record_key FROM visits WHERE entered_at < TIMESTAMP '2019-10-06'",
        )
    }
    assert len(old) > 5000
    assert all(after[k][:3] == before[k][:3] for k in old)


def test_a_refit_happens_only_when_asked_and_rescores_everything(appended):
    store, fitted, _, _ = appended
    again = score(store)
    assert not again.refit and again.model_id == fitted.model_id and again.rows == 0
    refitted = score(store, refit=True)
    assert refitted.refit and refitted.model_id != fitted.model_id
    assert "refitted (asked to refit)" in refitted.scope
    assert rows(store, "SELECT count(DISTINCT model_id), count(*) FROM scores") == [
        (1, rows(store, "SELECT count(*) FROM visits")[0][0])
    ]


def test_a_reference_whose_files_changed_is_not_loaded(appended, tmp_path):
    store, _, _, _ = appended
    reference, _ = load_reference(store, ScoringConfig())
    target = reference.path / "role_n.parquet"
    saved = target.read_bytes()
    try:
        target.write_bytes(saved + b"\0")
        again, why = load_reference(store, ScoringConfig())
        assert again is None and "changed since it was fitted" in why
    finally:
        target.write_bytes(saved)


def test_a_facility_the_reference_has_not_seen_is_not_judged_rare(demo_logs, tmp_path):
    """A whole prison's logs arriving after the fit made 5,281 of its 5,812 visits outlier
    flags: with no usual weekday or hour to compare with, everything looked rare. Unknown
    is not rare: those visits are judged without that context until a refit, and the run
    says so."""
    store = Store(tmp_path / "db" / "detector.duckdb", wait=30)
    first = [p for k, p in demo_logs.items() if k not in ("truth", "visits_MAR")]
    ingest_files(store, first, user="test")
    run_rules(store)
    score(store)
    before = rows(store, "SELECT count(*) FROM flags WHERE source = 'model'")[0][0]
    ingest_files(store, [demo_logs["visits_MAR"]], user="test")
    run_rules(store, full=False)
    report = score(store)
    assert "has not seen" in report.scope and "refit" in report.scope
    mar = rows(
        store,
        "SELECT count(*) FROM flags WHERE source = 'model' AND state = 'active' "
        "AND facility = 'MAR'",
    )[0][0]
    visits = rows(store, "SELECT count(*) FROM visits WHERE facility = 'MAR'")[0][0]
    assert mar <= 0.005 * visits, (mar, visits, before)
    refitted = score(store, refit=True)
    assert "has not seen" not in refitted.scope
