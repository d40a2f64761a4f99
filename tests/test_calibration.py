"""Review outcomes recalibrate the weights of rules and model in the risk score."""

from __future__ import annotations

import pytest

from detector import calibration
from detector.auth import Actor
from detector.flags import FlagQuery, read_flags
from detector.review import set_status
from detector.scoring import ScoringConfig, score
from tests.conftest import demo_store, rows

ANA = Actor("ana", "auditor")


def test_the_factor_is_a_posterior_with_a_prior_that_stands_for_few_reviews():
    assert calibration.factor(0, 0) == 1.0
    assert calibration.factor(2, 2) == 1.0  # fewer than MIN_REVIEWS decided: the prior
    assert calibration.factor(0, 10) == pytest.approx(2 / 14 / 0.5, abs=1e-3)
    assert calibration.factor(10, 0) == pytest.approx(12 / 14 / 0.5, abs=1e-3)
    assert calibration.factor(5, 5) == 1.0
    assert calibration.factor(0, 1000) == calibration.FACTOR_BOUNDS[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory, demo_logs):
    return demo_store(tmp_path_factory.mktemp("calibration") / "c.duckdb", demo_logs)


def _ranks(store, rule: str) -> list[int]:
    queue = read_flags(store, FlagQuery(include_suppressed=True))["rule_id"].to_list()
    return [i for i, r in enumerate(queue) if r == rule]


def test_dismissals_sink_a_rule_confirmations_raise_it_and_reverting_restores_the_order(store):
    rule = "visit-outside-visiting-hours"
    original = read_flags(store, FlagQuery(include_suppressed=True))["flag_id"].to_list()
    before = _ranks(store, rule)
    flags = [f for (f,) in rows(store, "SELECT flag_id FROM flags WHERE rule_id = ?", [rule])]
    assert len(flags) >= 8 and len(before) >= 8
    for flag in flags[:8]:
        set_status(store, ANA, flag, "dismissed", reason="benign", note="routine shift change")
    score(store)
    sunk = _ranks(store, rule)
    assert sum(sunk) / len(sunk) > sum(before) / len(before) + 5
    ((old, new, confirmed, dismissed),) = rows(
        store,
        "SELECT old, new, confirmed, dismissed FROM weight_changes WHERE rule_id = ?",
        [rule],
    )
    assert (old, confirmed, dismissed) == (1.0, 0, 8) and new < 0.5

    for flag in flags[:8]:
        set_status(store, ANA, flag, "confirmed", note="checked against the paper book")
    score(store)
    risen = _ranks(store, rule)
    assert sum(risen) / len(risen) < sum(before) / len(before)

    for flag in flags[:8]:  # back to undecided: the prior stands again, and the old order
        set_status(store, ANA, flag, "in_review")
    report = score(store)
    assert read_flags(store, FlagQuery(include_suppressed=True))["flag_id"].to_list() == original
    assert rows(
        store,
        "SELECT old, new FROM weight_changes WHERE rule_id = ? AND run_id = ?",
        [rule, report.run_id],
    ) == [(round(calibration.factor(8, 0), 3), 1.0)]


def test_the_model_part_is_recalibrated_from_its_flags_reviews(store):
    # The demo world's six months give four model flags (each must hold a striking fact);
    # a calibration needs five decided: the rarest 0.5% are the candidates here.
    wide = ScoringConfig(flag_top_fraction=0.005)
    score(store, wide, full=True)
    flags = [
        f
        for (f,) in rows(
            store, "SELECT flag_id FROM flags WHERE rule_id = 'outlier-ecod' AND state = 'active'"
        )
    ]
    assert len(flags) >= 5
    top = rows(store, "SELECT max(risk_score) FROM scores WHERE rule_score = 0")[0][0]
    for flag in flags[:5]:
        set_status(store, ANA, flag, "dismissed", reason="false_positive")
    score(store, wide)
    assert rows(store, "SELECT max(risk_score) FROM scores WHERE rule_score = 0")[0][0] < top
    for flag in flags[:5]:
        set_status(store, ANA, flag, "in_review")
    score(store, wide)
    assert rows(store, "SELECT max(risk_score) FROM scores WHERE rule_score = 0")[0][0] == (
        pytest.approx(top)
    )
