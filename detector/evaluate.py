"""Measure flags against the generator's truth file: recall and precision per category."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from detector.flags import FlagQuery, read_flags
from detector.review import OPEN_STATUSES
from detector.store import Store


@dataclass
class Quality:
    category: str
    planted: int
    found: int
    flags: int
    true_flags: int

    @property
    def recall(self) -> float:
        return self.found / self.planted if self.planted else 1.0

    @property
    def precision(self) -> float:
        return self.true_flags / self.flags if self.flags else 1.0


def _ts(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def hits(flag: dict, item: dict) -> bool:
    """Whether a flag points at a planted anomaly.

    It does when they share a record (visit or transfer id), or, for ranges, when they
    are at the same facility and the flag's logbook or period overlaps the planted one.
    """
    ids = set(flag["record_ids"] or [])
    if ids & set(item.get("visits", []) + item.get("transfers", []) + item.get("events", [])):
        return True
    facility = item.get("facility")
    if not facility or facility not in (flag["facility"] or ""):
        return False
    if item.get("logbook") and flag["logbook"] == item["logbook"]:
        return True
    period = item.get("period")
    if period and flag["period_start"] and item["category"] == "logbook_gap":
        start, end = _ts(period[0]), _ts(period[1])
        f_start, f_end = flag["period_start"], flag["period_end"] or flag["period_start"]
        return f_start <= end and f_end >= start
    return False


def _load(store: Store, truth_path: Path, source: str | None, states: tuple[str, ...]):
    every = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    query = FlagQuery(source=source, statuses=list(states), include_suppressed=True)
    flags = read_flags(store, query).to_dicts()
    return every, flags


def is_true(flag: dict, truth: list[dict]) -> bool:
    """A flag is true only when it points at a planted anomaly of its own category."""
    return any(t["category"] == flag["category"] and hits(flag, t) for t in truth)


def rule_quality(store: Store, truth_path: Path, source: str | None = "rule") -> dict[str, Quality]:
    """Recall (planted anomalies of a category hit by a flag of that category) and
    precision (flags of a category that point at a planted anomaly of that category)."""
    every, flags = _load(store, truth_path, source, OPEN_STATUSES)
    # Contextual anomalies are for the scoring: named rules are not expected to find them
    # (a rule flag that does still counts as a true flag).
    truth = [t for t in every if source != "rule" or not t.get("contextual")]
    out = {}
    for category in sorted({t["category"] for t in truth} | {f["category"] for f in flags}):
        planted = [t for t in truth if t["category"] == category]
        mine = [f for f in flags if f["category"] == category]
        out[category] = Quality(
            category,
            len(planted),
            sum(any(hits(f, t) for f in mine) for t in planted),
            len(mine),
            sum(is_true(f, every) for f in mine),
        )
    return out


@dataclass
class Queue:
    """What an auditor sees: the open queue, riskiest first."""

    visits: int
    flags: int
    true_flags: int
    precision_at: dict[int, float]
    per_rule: dict[str, tuple[int, int]]  # rule -> (flags, true flags)

    @property
    def share_true(self) -> float:
        return self.true_flags / self.flags if self.flags else 1.0

    @property
    def per_10k(self) -> float:
        return 10_000 * self.flags / self.visits if self.visits else 0.0


def queue_quality(store: Store, truth_path: Path, ks=(50, 100, 200)) -> Queue:
    """Precision at k of the open review queue (in queue order), the share of true flags
    in it, and flags per 10,000 visits; a flag is true only within its own category."""
    every, flags = _load(store, truth_path, None, OPEN_STATUSES)
    with store.read() as con:
        visits = con.execute("SELECT count(*) FROM visits").fetchall()[0][0]
    truth_of = [is_true(f, every) for f in flags]
    per_rule: dict[str, tuple[int, int]] = {}
    for f, ok in zip(flags, truth_of, strict=True):
        n, t = per_rule.get(f["rule_id"], (0, 0))
        per_rule[f["rule_id"]] = (n + 1, t + ok)
    return Queue(
        visits,
        len(flags),
        sum(truth_of),
        {k: sum(truth_of[:k]) / min(k, len(flags)) if flags else 1.0 for k in ks},
        dict(sorted(per_rule.items())),
    )


# --- ranking quality of the review queue -----------------------------------------------------


@dataclass
class Ranking:
    name: str
    ap_all: float
    ap_contextual: float
    p_at_k_all: float
    p_at_k_contextual: float


def _ranking(name, keys, scores, positives, contextual, others) -> Ranking:
    import numpy as np
    from sklearn.metrics import average_precision_score

    keys = np.asarray(keys)
    scores = np.asarray(scores, dtype=float)
    y_all = np.isin(keys, list(positives))
    keep = ~np.isin(keys, list(others))  # contextual vs normal visits only
    y_ctx = np.isin(keys[keep], list(contextual))

    def p_at_k(y, s):
        k = max(1, int(y.sum()))
        return float(y[np.argsort(-s, kind="stable")[:k]].mean())

    return Ranking(
        name,
        float(average_precision_score(y_all, scores)),
        float(average_precision_score(y_ctx, scores[keep])),
        p_at_k(y_all, scores),
        p_at_k(y_ctx, scores[keep]),
    )


def ranking_quality(store: Store, truth_path: Path, workdir: Path) -> list[Ranking]:
    """Average precision and precision@k (k = number of positives) of three rankings of
    the visits against the planted visit anomalies: the risk score, the outlier score
    alone, and a baseline (plain ECOD on marginal features: hour, weekday, stay, role).
    The contextual figures rank the contextual anomalies against normal visits only."""
    import polars as pl
    from pyod.models.ecod import ECOD

    from detector.features import MARGINAL, build_features
    from detector.scoring import matrix

    truth = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    with store.read() as con:
        key_of = dict(con.execute("SELECT record_id, record_key FROM visits").fetchall())
        scored = con.sql("SELECT record_key, risk_score, outlier_score FROM scores").pl()
    positives = {key_of[v] for t in truth for v in t.get("visits", []) if v in key_of}
    contextual = {
        key_of[v] for t in truth if t.get("contextual") for v in t.get("visits", []) if v in key_of
    }
    others = positives - contextual
    feats = workdir / "baseline_features.parquet"
    build_features(store, feats)
    base = pl.read_parquet(feats, columns=["record_key", *MARGINAL])
    baseline = ECOD().fit(matrix(base, MARGINAL)).decision_scores_
    keys = scored["record_key"].to_list()
    return [
        _ranking(
            "risk score (rules + outliers)",
            keys,
            scored["risk_score"],
            positives,
            contextual,
            others,
        ),
        _ranking(
            "outlier score (contextual features)",
            keys,
            scored["outlier_score"],
            positives,
            contextual,
            others,
        ),
        _ranking(
            "baseline: ECOD on marginal features",
            base["record_key"].to_list(),
            baseline,
            positives,
            contextual,
            others,
        ),
    ]


def evaluate_world(workdir: Path, seed: int = 7, months: int = 6, model: str = "ecod") -> dict:
    """Generator -> the pipeline (ingest, rules, scoring) on a fresh database; all the
    figures."""
    from detector import pipeline
    from detector.generator import generate

    files = generate(workdir / "logs", seed=seed, months=months)
    store = Store(workdir / "evaluate.duckdb", wait=30)
    logs = [p for k, p in files.items() if k != "truth"]
    pipeline.run(store, logs, pipeline.Steps(model=model), "evaluate", triggered_by="evaluate")
    return {
        "rules": rule_quality(store, files["truth"], source="rule"),
        "all_flags": rule_quality(store, files["truth"], source=None),
        "ranking": ranking_quality(store, files["truth"], workdir),
        "queue": queue_quality(store, files["truth"]),
    }
