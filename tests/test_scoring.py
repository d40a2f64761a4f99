"""Outlier scoring: PyOD models, frozen ECOD, explanations, risk, roll-ups, quality floors."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from pyod.models.ecod import ECOD
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from detector.cli import app
from detector.evaluate import evaluate_world
from detector.features import FEATURE_NAMES
from detector.rollup import rollup
from detector.scoring import (
    FrozenECOD,
    RankEnsemble,
    ScoringConfig,
    _make,
    brief_explanations,
    score,
)
from detector.store import Store
from tests.conftest import demo_store, rows

runner = CliRunner()


def _data(seed=0, n=2000, d=6, outliers=40):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:outliers] += rng.choice([-6, 6], size=(outliers, d))
    y = np.zeros(n)
    y[:outliers] = 1
    return X, y


def test_frozen_ecod_agrees_with_pyod_on_training_rows():
    X, _ = _data()
    clf = ECOD().fit(X)
    frozen = FrozenECOD(clf)
    ours = frozen.per_feature(X)
    assert spearmanr(ours.sum(axis=1), clf.decision_scores_).statistic > 0.99
    # the same feature explains each row
    assert (ours.argmax(axis=1) == clf.O.argmax(axis=1)).mean() > 0.97


def test_frozen_ecod_does_not_move_with_the_batch_it_scores():
    X, _ = _data()
    frozen = FrozenECOD(ECOD().fit(X))
    batch = X[:50]
    polluted = np.vstack([batch, np.full((5000, X.shape[1]), 6.0)])  # a flood of odd rows
    assert np.allclose(frozen.decision_function(batch), frozen.decision_function(polluted)[:50])


def test_the_visits_with_nothing_unusual_are_scored_and_explained_as_each_alone():
    """Rows with every feature zero share one computed row (most visits): the result is
    what scoring and explaining each row alone gives, with -0.0 written as it is."""
    rng = np.random.default_rng(3)
    X = rng.random((600, len(FEATURE_NAMES)))
    X[rng.random(X.shape) < 0.7] = 0.0
    X[rng.random(len(X)) < 0.6] = 0.0  # most rows: nothing unusual
    X[5] = -0.0
    frozen = FrozenECOD.from_training(np.vstack([X[:300], np.zeros((50, X.shape[1]))]))
    alone = np.vstack([frozen.per_feature(row[None]) for row in X])
    assert np.array_equal(frozen.per_feature(X), alone)
    each = [brief_explanations(alone[i : i + 1], X[i : i + 1], 3)[0] for i in range(len(X))]
    assert brief_explanations(alone, X, 3).to_list() == each
    assert '"value": -0.0' in each[5] and each[5] != each[int(np.argmax(~X.any(axis=1)))]


@pytest.mark.parametrize("name", ["ecod", "iforest", "copod", "hbos"])
def test_each_pyod_model_ranks_obvious_outliers_first(name):
    X, y = _data(seed=1)
    model = _make(name, seed=1).fit(X)
    assert roc_auc_score(y, model.decision_function(X)) >= 0.9
    assert hasattr(model, "decision_scores_")


def test_rank_ensemble_has_the_pyod_contract():
    X, y = _data(seed=2)
    ens = RankEnsemble(("ecod", "iforest", "hbos"), seed=2)
    assert ens.fit(X) is ens
    scores = ens.decision_function(X)
    assert scores.min() >= 0 and scores.max() <= 1
    assert roc_auc_score(y, scores) >= 0.9


@pytest.fixture(scope="module")
def scored(tmp_path_factory, demo_logs) -> Store:
    return demo_store(tmp_path_factory.mktemp("scored") / "d.duckdb", demo_logs)


def test_one_score_per_stored_visit_in_the_csv_export(scored):
    out = runner.invoke(app, ["scores", "--format", "csv", "--db", str(scored.path)])
    assert out.exit_code == 0, out.output
    table = list(csv.DictReader(io.StringIO(out.output)))
    keys = [r["record_key"] for r in table]
    stored = rows(scored, "SELECT record_key FROM visits")
    assert len(keys) == len(set(keys)) == len(stored)
    assert set(keys) == {k for (k,) in stored}
    assert {"record_id", "risk_score", "outlier_score", "top_features"} <= set(table[0])
    reasons = [json.loads(r["top_features"]) for r in table]
    assert all(isinstance(items, list) for items in reasons)
    # a visit with every feature zero has no reasons (one same score: nothing unusual);
    # each other names the feature that departs from the usual
    plain = {r["outlier_score"] for r, items in zip(table, reasons, strict=True) if not items}
    assert len(plain) == 1
    assert any(reasons)
    assert all(any(i["value"] != 0 for i in items) for items in reasons if items)


def test_explanations_come_from_ecods_per_feature_scores(scored):
    top = rows(
        scored,
        "SELECT top_features, outlier_score FROM scores "
        "WHERE run_id = (SELECT max(run_id) FROM scores) "
        "ORDER BY outlier_score DESC LIMIT 20",
    )
    for text, outlier in top:
        items = json.loads(text)
        assert [i["feature"] for i in items][:1] and all(
            i["feature"] in FEATURE_NAMES for i in items
        )
        contributions = [i["contribution"] for i in items]
        assert contributions == sorted(contributions, reverse=True)
        assert sum(contributions) <= outlier + 1e-6  # a part of ECOD's row sum
        assert all(i["context"] for i in items)  # observed vs usual, in words
    # the sentences quote the visit's own figures: its hour and weekday among them (a
    # features file without them gave the feature's bare description, "that day")
    said = {
        i["feature"]: i["context"]
        for (text,) in rows(scored, "SELECT top_features FROM scores WHERE top_features <> '[]'")
        for i in json.loads(text)
    }
    assert {"hour_rarity", "weekday_rarity"} <= set(said), set(said)
    assert re.search(r"at \d{1,2}:00", said["hour_rarity"]), said["hour_rarity"]
    assert "that day" not in said["weekday_rarity"], said["weekday_rarity"]
    assert re.search(r"on a [A-Z][a-z]+day", said["weekday_rarity"]), said["weekday_rarity"]


def test_a_scoring_run_is_recorded_from_its_start(scored, tmp_path, monkeypatch):
    """The scoring's row in ``runs`` starts when the scoring started (its fit included),
    not when its results were stored: it read 7 s for a 60 s scoring at 10M visits."""
    import shutil
    import time
    from datetime import timedelta

    from detector import scoring
    from detector.runs import now

    shutil.copytree(scored.path.parent, tmp_path / "copy")
    store = Store(tmp_path / "copy" / scored.path.name, wait=30)
    real = scoring.fit_reference

    def slow_fit(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "fit_reference", slow_fit)
    before = now()
    report = score(store, refit=True)
    ((started, ended),) = rows(
        store, "SELECT started_at, ended_at FROM runs WHERE run_id = ?", [report.run_id]
    )
    assert before <= started < before + timedelta(seconds=1)
    assert ended - started >= timedelta(seconds=1.5)


def test_the_fit_sample_does_not_depend_on_the_order_the_features_are_written_in(scored, tmp_path):
    """The raw features are written in whatever order DuckDB makes them; the fit must
    still take the same rows, in the same order, from any order of the same rows."""
    import duckdb

    from detector.features import build_reference
    from detector.scoring import _fit_sample

    ref, raw, flipped = tmp_path / "ref", tmp_path / "raw.parquet", tmp_path / "flip.parquet"
    rows = build_reference(scored, ref, raw=raw)
    duckdb.sql(
        f"COPY (SELECT * FROM '{raw}' ORDER BY hash(record_key) DESC) TO '{flipped}' (FORMAT parquet)"
    )
    config = ScoringConfig(fit_sample=500)
    first, last, X = _fit_sample(ref, raw, config, tmp_path)
    again = _fit_sample(ref, flipped, config, tmp_path)
    assert rows > 10_000 and X.shape == (500, len(FEATURE_NAMES))
    assert (first, last) == again[:2] and np.array_equal(X, again[2])
    # another seed picks other rows
    other = _fit_sample(ref, raw, ScoringConfig(fit_sample=500, seed=7), tmp_path)[2]
    assert not np.array_equal(X, other)


def test_several_streams_score_as_one_stream_does(scored, tmp_path, monkeypatch):
    """The raw features cut into row ranges along their row groups, each streamed and
    scored on its own connection, give the very scores and explanations one stream gives:
    every row once, and a range boundary that falls inside nothing."""
    import duckdb

    import detector.scoring as scoring
    from detector.features import build_reference

    ref, raw, small = tmp_path / "ref", tmp_path / "raw.parquet", tmp_path / "small.parquet"
    build_reference(scored, ref, raw=raw)
    duckdb.sql(f"COPY '{raw}' TO '{small}' (FORMAT parquet, ROW_GROUP_SIZE 2048)")
    total = duckdb.sql(f"SELECT count(*) FROM '{small}'").fetchall()[0][0]
    ranges = scoring.row_ranges(small, 3)
    assert len(ranges) == 3 and ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert scoring.row_ranges(small, 1) == [(0, total)]
    reference, _ = scoring.load_reference(scored, ScoringConfig())
    reference.path = ref
    config = ScoringConfig(batch_rows=5000)
    got = {}
    for streams in (1, 3):
        monkeypatch.setattr(scoring, "SCORING_STREAMS", streams)
        out = tmp_path / f"scores-{streams}"
        scoring._score_batches(small, reference, config, out, tmp_path)
        assert len(list(out.glob("*.parquet"))) == streams
        got[streams] = duckdb.sql(f"SELECT * FROM '{out}/*.parquet' ORDER BY record_key").fetchall()
    assert len(got[1]) == total and got[1] == got[3]
    assert len({r[0] for r in got[3]}) == total


@pytest.mark.parametrize("bits, max_sets", [(126, 16), (4, 3), (2, 1)])
def test_the_bit_sets_count_what_count_distinct_counts(scored, monkeypatch, bits, max_sets):
    """A visitor's gangs, prisons and leaders within 30 days come from bit sets shared by
    the columns (a column's bits may straddle two sets; one of too many sets is counted
    with count(DISTINCT)): the counts are count(DISTINCT)'s, visit by visit."""
    from detector import features

    monkeypatch.setattr(features, "BITS", bits)
    monkeypatch.setattr(features, "MAX_SETS", max_sets)
    with scored.read() as con:
        table = features._visits_table(con, "bits_v", "TRUE")
        window = features.visitor_window_sql(con, table)
        distinct = ", ".join(
            f"count(DISTINCT {expr}) OVER w AS {name}" for name, expr in features._COUNTED.items()
        )
        differ = f"""WITH v AS (SELECT * FROM {table}), {window},
            plain AS (SELECT record_key, {distinct} FROM v WHERE {features._VISITOR_ROWS}
                      WINDOW w AS (PARTITION BY visitor ORDER BY entered_at RANGE BETWEEN
                                   INTERVAL 30 DAYS PRECEDING AND INTERVAL 30 DAYS FOLLOWING))
            SELECT count(*), count(*) FILTER (WHERE (w.gangs, w.prisons, w.leaders)
                                              IS DISTINCT FROM (p.gangs, p.prisons, p.leaders)),
                   max(p.gangs), max(p.prisons), max(p.leaders)
            FROM plain p FULL JOIN visitor_window w USING (record_key)"""
        n, wrong, gangs, prisons, leaders = con.execute(differ).fetchall()[0]
    assert n > 10_000 and wrong == 0
    assert gangs >= 2 and prisons >= 2 and leaders >= 2  # the demo has visitors to count


def test_model_and_fit_window_are_recorded(scored):
    ((model, config, features, fit_rows, fit_from, fit_to),) = rows(
        scored, "SELECT model, config, features, fit_rows, fit_from, fit_to FROM models"
    )
    assert model == "ecod" and json.loads(features) == FEATURE_NAMES
    assert fit_rows > 1000 and fit_from < fit_to
    assert json.loads(config)["fit_sample"] == ScoringConfig().fit_sample


def test_model_flags_only_for_visits_no_rule_flags(scored):
    model_flags = rows(
        scored, "SELECT category, record_keys, explanation FROM flags WHERE source = 'model'"
    )
    assert model_flags
    for category, keys, explanation in model_flags:
        assert category == "visit_pattern" and keys
        assert "out of place" in explanation
        assert rows(
            scored,
            "SELECT DISTINCT rule_score FROM scores WHERE record_key IN "
            "(SELECT unnest(?::VARCHAR[])) AND run_id = (SELECT max(run_id) FROM scores)",
            [keys],
        ) == [(0,)]


def test_a_model_flag_holds_a_striking_fact_and_one_arrival_is_one_case(scored):
    """On an independent world every model flag whose visit was unusual only by adding up
    mildly rare values was false. A model flag's visit has a feature rarer than 1 in
    5,000 in the reference; the visits of one arrival (a facility, a minute) are one case;
    and the rarest visits left out of the queue are still scored and ranked."""
    from detector.scoring import striking_contribution

    assert striking_contribution(100_000) == pytest.approx(np.log(5000))
    assert striking_contribution(999) == pytest.approx(np.log(500))  # the edge of a small one
    flags = rows(
        scored,
        "SELECT f.facility, date_trunc('minute', f.period_start), s.top_features "
        "FROM flags f JOIN scores s ON s.record_key = f.record_keys[1] "
        "WHERE f.source = 'model' AND s.run_id = (SELECT max(run_id) FROM scores)",
    )
    reference = rows(scored, "SELECT max(fit_rows) FROM models")[0][0]
    for _facility, _minute, top in flags:
        strongest = max(f["contribution"] for f in json.loads(top))
        assert strongest >= striking_contribution(reference) - 1e-3, top
    arrivals = [(facility, minute) for facility, minute, _ in flags]
    assert len(arrivals) == len(set(arrivals))
    rarest = rows(
        scored,
        "SELECT count(*) FROM scores WHERE rule_score = 0 AND outlier_pct >= 0.999 "
        "AND run_id = (SELECT max(run_id) FROM scores)",
    )[0][0]
    assert rarest > len(flags)  # some were left out of the queue, not out of the ranking


@pytest.mark.parametrize("by", ["official", "inmate", "facility"])
def test_risk_rolls_up_and_exports(scored, by):
    frame = rollup(scored, by)
    assert frame.height > 0 and frame.columns[0] == by
    assert frame["total_risk"].is_sorted(descending=True)
    out = runner.invoke(app, ["risk", "--by", by, "--format", "json", "--db", str(scored.path)])
    assert out.exit_code == 0 and json.loads(out.output)[0][by]
    if by == "official":  # the director who brought masked people in accumulates the most
        assert frame.row(0, named=True)["official"] == "OSCAR LEMUS MARROQUIN"


def test_rescoring_keeps_flag_ids(scored):
    before = rows(scored, "SELECT flag_id FROM flags WHERE source = 'model' ORDER BY 1")
    report = score(scored)
    assert report.flags_new == 0
    assert (
        rows(
            scored,
            "SELECT flag_id FROM flags WHERE source = 'model' AND state = 'active' ORDER BY 1",
        )
        == before
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 11])
def test_quality_floors_against_planted_behaviour(tmp_path, seed):
    result = evaluate_world(tmp_path, seed=seed)
    risk, outlier, baseline = result["ranking"]
    assert risk.ap_all >= 0.8 and risk.ap_contextual >= 0.3
    assert risk.ap_all >= baseline.ap_all + 0.3
    assert risk.ap_contextual >= baseline.ap_contextual + 0.2
    assert outlier.ap_contextual >= baseline.ap_contextual + 0.2


def test_the_model_never_restates_a_rule(scored):
    """Five model features re-encoded rules (unnamed, companion of an official, party
    beyond its names, missing exit, official with a leader): the noisy-OR then counted one
    fact twice. The model has none of them, and no explanation of an outlier score names
    one (before, "no identifiable name written" led many of them)."""
    from detector.features import RULE_RESTATED

    assert not set(FEATURE_NAMES) & set(RULE_RESTATED)
    named = {
        i["feature"]
        for (text,) in rows(scored, "SELECT top_features FROM scores")
        for i in json.loads(text)
    }
    assert named and not named & set(RULE_RESTATED)


# --- the kept reference against someone who can write the models folder ----------------------


def _planted_pickle(marker) -> bytes:
    """A pickle that writes a file when loaded: proof that code from the folder ran."""
    import pickle

    class Run:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    return pickle.dumps(Run())


def _kept_reference(store: Store, folder_name: str, root=None):
    """A reference recorded in ``models`` whose files are a harmless HBOS model: returns
    its folder (under the models folder, or ``root``) and the id recorded for it."""
    import joblib
    from pyod.models.hbos import HBOS

    from detector.scoring import _ECDF_FILE, _SCORER_FILE, _reference_key, content_hash, models_dir

    folder = (root or models_dir(store)) / folder_name
    folder.mkdir(parents=True)
    X = np.random.default_rng(0).normal(size=(50, 3))
    joblib.dump(HBOS().fit(X), folder / _SCORER_FILE)
    np.savez(folder / _ECDF_FILE, sorted=np.sort(X, axis=0), skew=np.ones(3), train_scores=X[:, 0])
    config = ScoringConfig(model="hbos")
    model_id = str(folder) if root else folder_name
    with store.write() as con:
        con.execute(
            "INSERT INTO models (model_id, config, fitted_at, content_hash) VALUES (?, ?, now(), ?)",
            [model_id, json.dumps({"reference": json.loads(_reference_key(config))}),
             content_hash(folder)],
        )  # fmt: skip
    return folder, model_id, config


def test_a_model_swapped_between_its_hash_and_its_load_is_never_unpickled(tmp_path, monkeypatch):
    """The pickle is read once: hashed and loaded from the same bytes. Swapping the file
    right after the hash read it (as a racing writer of the models folder would) used to
    load the swapped file unchecked, running its code."""
    from pathlib import Path

    from detector.scoring import _SCORER_FILE, load_reference

    store = Store(tmp_path / "db" / "detector.duckdb", wait=30)
    _, _, config = _kept_reference(store, "0123456789abcdef")
    marker = tmp_path / "ran"
    evil = _planted_pickle(marker)
    real_read = Path.read_bytes
    swapped = []

    def read_then_swap(self):
        data = real_read(self)
        if self.name == _SCORER_FILE and not swapped:
            self.write_bytes(evil)  # the swap, just after the check's read
            swapped.append(self)
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_swap)
    reference, why = load_reference(store, config)
    assert swapped, "the hash did not read the model file"
    assert not marker.exists(), "code from the swapped pickle ran"
    assert reference is not None and reference.scorer is not None, why
    assert reference.scorer(np.zeros((2, 3))).shape == (2,)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "link"])
def test_a_model_id_that_leads_outside_the_models_folder_is_never_loaded(tmp_path, how):
    """``models.model_id`` names a folder inside the models folder; an absolute id, one
    with ``..``, or a link out of the folder with a matching hash loaded a pickle from
    anywhere."""
    import os

    from detector.scoring import _SCORER_FILE, content_hash, load_reference, models_dir

    store = Store(tmp_path / "db" / "detector.duckdb", wait=30)
    folder, _, config = _kept_reference(store, "ref", root=tmp_path / "elsewhere")
    marker = tmp_path / "ran"
    (folder / _SCORER_FILE).write_bytes(_planted_pickle(marker))
    models_dir(store).mkdir(parents=True, exist_ok=True)
    new_id = {
        "absolute": str(folder),
        "dotdot": os.path.relpath(folder, models_dir(store)),
        "link": "0123456789abcdef",
    }[how]
    if how == "link":
        (models_dir(store) / new_id).symlink_to(folder, target_is_directory=True)
    with store.write() as con:
        con.execute(
            "UPDATE models SET model_id = ?, content_hash = ?",
            [new_id, content_hash(folder)],
        )
    reference, why = load_reference(store, config)
    assert reference is None and "not a folder inside the models folder" in why
    assert not marker.exists()


def test_a_visitors_first_arrival_of_a_day_is_one_visit(tmp_path):
    """The person features count a visitor's first arrival of each day: the earliest
    visit, and one of two written at the same moment (two inmates visited at once)."""
    from detector.features import VISITS_DESCRIBED, VISITS_SQL
    from detector.pipeline import ingest_files

    csv_text = (
        "record_id,facility,entered_at,name,role,id_number,inmate_id\n"
        "a1,CBA,2019-05-02 08:00,Ana Ruiz,Familiar,867181027,P1\n"
        "a2,CBA,2019-05-02 08:00,Ana Ruiz,Familiar,867181027,P2\n"
        "a3,CBA,2019-05-02 13:00,Ana Ruiz,Familiar,867181027,P1\n"
        "a4,CBA,2019-05-03 07:30,Ana Ruiz,Familiar,867181027,P1\n"
        "b1,CBA,2019-05-02 07:00,Luis Mejía,Familiar,012345678,P1\n"
    )
    (tmp_path / "v.csv").write_text(csv_text, encoding="utf-8")
    store = Store(tmp_path / "d.duckdb", wait=30)
    ingest_files(store, [tmp_path / "v.csv"])
    first = dict(
        rows(
            store,
            "SELECT record_id, first_of_day FROM "
            f"({VISITS_SQL.format(where='TRUE', described=VISITS_DESCRIBED)}) v",
        )
    )
    assert first["a1"] != first["a2"] and first["a1"] in (True, False)
    assert not first["a3"] and first["a4"] and first["b1"]


def test_a_persons_habit_is_the_busiest_neighbourhood_of_the_hours_they_came_at():
    """The person table (each person's 24 hourly counts as one list) against pairing each
    of a person's hours with each other, on random slots: round the clock (23 h is near
    1 h), ties to the earliest hour, an hour nobody came at (9 h, between 7 and 11) never
    the habit; each hour's neighbourhood (``around``) as the slots within two hours of it,
    for every hour of the day; the gang visits of people with and without slots."""
    import duckdb

    from detector.features import REFERENCE_TABLES

    rng = np.random.default_rng(5)
    slots = {
        (f"p{p}", int(h)): int(rng.integers(1, 4))
        for p in range(300)
        for h in rng.choice(24, size=int(rng.integers(1, 7)), replace=False)
    }
    slots |= {("wrap", 23): 2, ("wrap", 1): 2, ("gap", 7): 1, ("gap", 11): 1}
    gangs = {("p1", "MS"): 3, ("p1", "18"): 2, ("nobody's hours", "MS"): 4}
    con = duckdb.connect()
    con.execute("CREATE TABLE ref_person_slot (visitor VARCHAR, hr BIGINT, n BIGINT)")
    con.executemany(
        "INSERT INTO ref_person_slot VALUES (?, ?, ?)", [[*k, n] for k, n in slots.items()]
    )
    con.execute("CREATE TABLE ref_person_gang (visitor VARCHAR, gang VARCHAR, n BIGINT)")
    con.executemany(
        "INSERT INTO ref_person_gang VALUES (?, ?, ?)", [[*k, n] for k, n in gangs.items()]
    )
    con.execute(
        "CREATE TABLE ref_person_n AS SELECT visitor, sum(n)::BIGINT AS n "
        "FROM ref_person_slot GROUP BY ALL"
    )
    oracle = """
        SELECT a.visitor, any_value(tot.n) AS n, max(a.near) / any_value(tot.n) AS top_share,
               arg_max(a.hr, (a.near, -a.hr)) AS habit_hr, max(a.near) AS habit_n
        FROM (SELECT a.visitor, a.hr, sum(b.n) AS near
              FROM ref_person_slot a JOIN ref_person_slot b
                ON b.visitor = a.visitor AND least(abs(b.hr - a.hr), 24 - abs(b.hr - a.hr)) <= 2
              GROUP BY ALL) a
        JOIN ref_person_n tot USING (visitor)
        GROUP BY a.visitor"""
    ours = f"SELECT visitor, n, top_share, habit_hr, habit_n FROM ({REFERENCE_TABLES['person']})"
    got = sorted(con.execute(f"{ours} WHERE n IS NOT NULL").fetchall())
    assert got == sorted(con.execute(oracle).fetchall())
    habit = {v: (hr, n) for v, _, _, hr, n in got}
    assert habit["wrap"] == (1, 4) and habit["gap"] == (7, 1)  # 23 h and 1 h: a tie
    assert [r[1] for r in con.execute(f"DESCRIBE {ours}").fetchall()] == [
        r[1] for r in con.execute(f"DESCRIBE {oracle}").fetchall()
    ]
    around = {
        (v, hr + 1): near
        for v, hr, near in con.execute(
            """SELECT p.visitor, x.hr, sum(s.n) FROM (SELECT DISTINCT visitor FROM ref_person_slot) p
               CROSS JOIN range(24) x(hr) JOIN ref_person_slot s ON s.visitor = p.visitor
                AND least(abs(s.hr - x.hr), 24 - abs(s.hr - x.hr)) <= 2 GROUP BY ALL"""
        ).fetchall()
    }
    people = con.execute(
        f"SELECT visitor, around, gangs FROM ({REFERENCE_TABLES['person']})"
    ).fetchall()
    assert {v for v, *_ in people} == {*habit, "nobody's hours"}  # gang visits, no slots
    for visitor, hours, in_gangs in people:
        assert in_gangs == {"p1": 5, "nobody's hours": 4}.get(visitor)
        if visitor != "nobody's hours":
            assert hours == [around.get((visitor, i)) for i in range(1, 25)]  # None: nobody near
