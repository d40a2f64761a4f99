"""Outlier scoring with PyOD, per-feature explanations, and the one risk score per visit.

Models follow PyOD's contract (``fit(X) -> self``, ``decision_function(X)``, higher =
more anomalous). They are fitted on a sample of a history window and recorded (model,
parameters, features, window, rows) in the ``models`` table; scoring then applies the
fitted model to every visit in batches.

ECOD is the default. PyOD's ``ECOD.decision_function`` re-fits its ECDFs on the training
rows *plus* the rows being scored, so a batch of polluted new data would shift the
reference it is judged against. :class:`FrozenECOD` therefore keeps the fitted model's
training ECDFs and applies ECOD's own formula to new rows (tests check it agrees with
PyOD on the training rows). Its per-dimension scores (ECOD's ``O`` matrix) are the
explanations, whatever model ranks the visits.

Risk (one number per visit, 0..1) is a noisy-OR of independent evidence::

    rule_score    = 1 - prod(1 - w[severity])   over the rule flags the visit is in
    outlier_part  = 0.7 * percentile ** 200     (mid-rank percentile of the outlier score
                                                 in the fitted window: only the top ~1% count)
    risk_score    = 1 - (1 - rule_score) * (1 - outlier_part)

with w = informational 0.05, low 0.2, medium 0.4, high 0.6, critical 0.8. A critical rule
hit alone gives 0.8; a top-0.1% outlier alone about 0.57 (between a medium and a high
hit), a top-0.01% outlier about 0.69, a top-1% outlier only 0.09: a named rule finding
outranks a merely unusual visit unless the visit is among the rarest. Both together give
more than either. Every part is bounded and monotone, so the order of the review queue is
easy to defend.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import joblib
import numpy as np
import polars as pl
import pyarrow.parquet as pq
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from scipy.stats import skew

from detector.features import FEATURE_NAMES, FEATURES, build_features
from detector.rules import Hit, severity_case, store_flags
from detector.store import Store

MODELS = {"ecod": ECOD, "iforest": IForest, "copod": COPOD, "hbos": HBOS}
WEEKDAYS = ["", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass
class ScoringConfig:
    """How to score; every field is recorded with the fitted model."""

    model: str = "ecod"  # ecod | iforest | copod | hbos | ensemble
    ensemble: tuple[str, ...] = ("ecod", "iforest", "hbos")
    fit_sample: int = 200_000
    fit_window_days: int | None = None  # None: all stored visits
    flag_top_fraction: float = 0.001
    top_features: int = 3
    batch_rows: int = 500_000
    seed: int = 42
    keep_runs: int = 2


class FrozenECOD:
    """ECOD's scoring with the ECDFs of a fitted model's training data held fixed.

    ``O`` per row and dimension is ``max(-log F(x), -log (1 - F(x) + p(x)))`` as in
    PyOD's ECOD (left tail, right tail, the skew-chosen tail), with the empirical CDFs
    of the training rows; the score is the row sum.
    """

    def __init__(self, fitted: ECOD):
        X = fitted.X_train
        self.n_ = X.shape[0]
        self.sorted_ = np.sort(X, axis=0)
        self.skew_ = np.sign(np.nan_to_num(skew(X, axis=0)))

    def per_feature(self, X: np.ndarray) -> np.ndarray:
        n, out = self.n_, np.empty(X.shape, dtype=float)
        for j in range(X.shape[1]):
            col = self.sorted_[:, j]
            left = (np.searchsorted(col, X[:, j], side="right") + 1) / (n + 1)
            right = (n - np.searchsorted(col, X[:, j], side="left") + 1) / (n + 1)
            u_l, u_r = -np.log(left), -np.log(right)
            s = self.skew_[j]
            u_skew = u_l * -1 * np.sign(s - 1) + u_r * np.sign(s + 1)
            out[:, j] = np.maximum(np.maximum(u_l, u_r), u_skew)
        return out

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.per_feature(X).sum(axis=1)


class RankEnsemble:
    """Average of each member's score percentile (rank-average), PyOD-style interface."""

    def __init__(self, members: tuple[str, ...] = ("ecod", "iforest", "hbos"), seed: int = 42):
        self.members = members
        self.seed = seed

    def fit(self, X: np.ndarray) -> RankEnsemble:
        self.models_ = [_make(m, self.seed).fit(X) for m in self.members]
        self.scorers_ = [_scorer(m) for m in self.models_]
        self.train_scores_ = [np.sort(s(X)) for s in self.scorers_]
        self.decision_scores_ = self.decision_function(X)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        ranks = [
            np.searchsorted(t, s(X), side="right") / len(t)
            for s, t in zip(self.scorers_, self.train_scores_, strict=True)
        ]
        return np.mean(ranks, axis=0)


def _make(name: str, seed: int):
    if name == "iforest":
        return IForest(n_estimators=100, random_state=seed, n_jobs=1)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)} or ensemble")
    return MODELS[name]()


def _scorer(model):
    """A function scoring new rows against the fitted model without re-fitting it."""
    if isinstance(model, ECOD):
        return FrozenECOD(model).decision_function
    return model.decision_function


def make_model(config: ScoringConfig):
    if config.model == "ensemble":
        return RankEnsemble(config.ensemble, config.seed)
    return _make(config.model, config.seed)


def matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    return frame.select(pl.col(columns).cast(pl.Float64).fill_null(0.0)).to_numpy()


@dataclass
class ScoreReport:
    run_id: int
    model_id: str
    rows: int
    fit_rows: int
    flags_new: int = 0
    flags_resolved: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _describe(feature: str, row: dict) -> str:
    template = next(f.template for f in FEATURES if f.name == feature)
    shown = {k: ("—" if v is None else v) for k, v in row.items()}
    shown["weekday"] = WEEKDAYS[int(row["weekday"])] if row.get("weekday") else "?"
    try:
        return template.format(**shown)
    except (KeyError, ValueError, IndexError):
        return feature


def percentile(sorted_reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of values in a sorted reference: ties share the middle rank, so
    the many visits with nothing unusual do not all look like the 90th percentile."""
    below = np.searchsorted(sorted_reference, values, side="left")
    upto = np.searchsorted(sorted_reference, values, side="right")
    return (below + upto) / 2 / len(sorted_reference)


def brief_explanations(contributions: np.ndarray, X: np.ndarray, k: int) -> np.ndarray:
    """Top-k features of every row as JSON (name, value, contribution), built vectorised."""
    top = np.argsort(-contributions, axis=1)[:, :k]
    rows = np.arange(len(X))[:, None]
    names = np.asarray(FEATURE_NAMES)[top]
    values = np.round(X[rows, top], 3)
    contrib = np.round(contributions[rows, top], 3)
    parts = [
        pl.format(
            '{{"feature": "{}", "value": {}, "contribution": {}}}',
            pl.lit(pl.Series(names[:, j])),
            pl.lit(pl.Series(values[:, j])),
            pl.lit(pl.Series(contrib[:, j])),
        )
        for j in range(top.shape[1])
    ]
    joined = pl.select(pl.concat_str(parts, separator=", ")).to_series()
    return np.asarray(("[" + joined + "]").to_list(), dtype=object)


def explain_rows(context: pl.DataFrame, contributions: np.ndarray, k: int) -> list[str]:
    """Top-k features per row as JSON: name, observed value, contribution and context."""
    top = np.argsort(-contributions, axis=1)[:, :k]
    rows = context.to_dicts()
    out = []
    for i, row in enumerate(rows):
        items = []
        for j in top[i]:
            name = FEATURE_NAMES[j]
            items.append(
                {
                    "feature": name,
                    "value": round(float(row[name]), 3),
                    "contribution": round(float(contributions[i, j]), 3),
                    "context": _describe(name, row),
                }
            )
        out.append(json.dumps(items, ensure_ascii=False))
    return out


def score(
    store: Store,
    config: ScoringConfig | None = None,
    triggered_by: str = "cli",
    workdir: Path | None = None,
) -> ScoreReport:
    """Build features, fit on the history window, score every visit, store scores and risk.

    The heavy work reads the database read-only and writes Parquet files; only the final
    load of scores and model flags takes the write lock.
    """
    config = config or ScoringConfig()
    seconds: dict[str, float] = {}
    with TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        feats = tmp / "features.parquet"
        rows = build_features(store, feats)
        seconds["features"] = time.perf_counter() - t
        if rows == 0:
            return ScoreReport(0, "", 0, 0, seconds=seconds)

        t = time.perf_counter()
        # The fitted window, and a seeded sample of it, read by DuckDB: nothing big in memory.
        fit_from, fit_to, X_fit = _fit_sample(feats, config)
        model = make_model(config).fit(X_fit)
        explainer = FrozenECOD(model if isinstance(model, ECOD) else ECOD().fit(X_fit))
        # ECOD's score is the sum of its per-feature scores: computed once for both.
        scorer = (
            None
            if isinstance(model, ECOD)
            else (model.decision_function if isinstance(model, RankEnsemble) else _scorer(model))
        )
        train_scores = np.sort(
            explainer.decision_function(X_fit) if scorer is None else scorer(X_fit)
        )
        seconds["fit"] = time.perf_counter() - t

        model_id = hashlib.sha256(
            json.dumps(
                [
                    config.__dict__,
                    FEATURE_NAMES,
                    str(fit_from),
                    str(fit_to),
                    X_fit.shape[0],
                    float(X_fit.sum()),
                ],
                default=str,
            ).encode()
        ).hexdigest()[:16]
        model_dir = store.path.parent / "models"
        model_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        joblib.dump(model, model_dir / f"{model_id}.joblib")

        t = time.perf_counter()
        out = tmp / "scores.parquet"
        writer = None
        for batch in pq.ParquetFile(feats).iter_batches(batch_size=config.batch_rows):
            frame = pl.from_arrow(batch)
            X = matrix(frame, FEATURE_NAMES)
            contributions = explainer.per_feature(X)
            raw = contributions.sum(axis=1) if scorer is None else scorer(X)
            pct = percentile(train_scores, raw)
            explained = brief_explanations(contributions, X, config.top_features)
            # Sentences with the visit's context where someone will read them: the top 10%.
            top = pct >= 0.9
            if top.any():
                sel = frame.filter(pl.Series(top))
                explained[np.flatnonzero(top)] = explain_rows(
                    sel, contributions[top], config.top_features
                )
            result = pl.DataFrame(
                {
                    "record_key": frame["record_key"],
                    "outlier_score": raw,
                    "outlier_pct": pct,
                    "top_features": pl.Series(explained.tolist(), dtype=pl.String),
                }
            )
            table = result.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
        writer.close()
        seconds["score"] = time.perf_counter() - t

        t = time.perf_counter()
        report = _store_scores(
            store,
            config,
            model_id,
            out,
            feats,
            rows,
            X_fit.shape[0],
            fit_from,
            fit_to,
            triggered_by,
        )
        seconds["store"] = time.perf_counter() - t
    report.seconds = seconds
    return report


def _fit_sample(feats: Path, config: ScoringConfig) -> tuple:
    import duckdb

    con = duckdb.connect()
    try:
        newest = con.execute(f"SELECT max(entered_at) FROM read_parquet('{feats}')").fetchall()[0][
            0
        ]
        where = ""
        if config.fit_window_days:
            where = f"WHERE entered_at >= TIMESTAMP '{newest}' - INTERVAL {int(config.fit_window_days)} DAY"
        fit_from, fit_to, n = con.execute(
            f"SELECT min(entered_at), max(entered_at), count(*) FROM read_parquet('{feats}') {where}"
        ).fetchall()[0]
        sample = (
            f"USING SAMPLE reservoir({int(config.fit_sample)} ROWS) REPEATABLE ({config.seed})"
            if n > config.fit_sample
            else ""
        )
        frame = con.sql(
            f"SELECT {', '.join(FEATURE_NAMES)} FROM read_parquet('{feats}') {where} {sample}"
        ).pl()
    finally:
        con.close()
    return fit_from, fit_to, matrix(frame, FEATURE_NAMES)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _store_scores(
    store: Store,
    config: ScoringConfig,
    model_id: str,
    scores: Path,
    feats: Path,
    rows: int,
    fit_rows: int,
    fit_from,
    fit_to,
    triggered_by: str,
) -> ScoreReport:
    from detector.rules import _next_run

    with store.write() as con:
        run_id = _next_run(con, "score", triggered_by, "full")
        con.execute(
            """INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                model_id,
                run_id,
                config.model,
                json.dumps(config.__dict__, default=str),
                json.dumps(FEATURE_NAMES),
                fit_from,
                fit_to,
                fit_rows,
                _now(),
            ],
        )
        # Rule evidence per visit: noisy-OR of the severity weights of its active rule flags.
        con.execute(
            f"""
            INSERT INTO scores
            SELECT ? AS run_id, ? AS model_id, s.record_key, s.outlier_score, s.outlier_pct,
                   coalesce(r.rule_score, 0) AS rule_score,
                   1 - (1 - coalesce(r.rule_score, 0)) * (1 - 0.7 * pow(s.outlier_pct, 200))
                     AS risk_score,
                   coalesce(r.rules, []) AS rules, s.top_features
            FROM read_parquet('{scores}') s
            LEFT JOIN (
                SELECT k AS record_key,
                       1 - product(1 - {severity_case("f.severity")}) AS rule_score,
                       list(DISTINCT f.rule_id) AS rules
                FROM flags f, unnest(f.record_keys) u(k)
                WHERE f.state = 'active' AND f.source = 'rule' AND f.subject = 'records'
                GROUP BY k) r USING (record_key)""",
            [run_id, model_id],
        )
        con.execute(
            "DELETE FROM scores WHERE run_id NOT IN (SELECT run_id FROM runs "
            "WHERE kind = 'score' ORDER BY run_id DESC LIMIT ?)",
            [config.keep_runs],
        )
        hits = _model_hits(con, config, run_id, feats)
        new, resolved = store_flags(con, hits, [f"outlier-{config.model}"], run_id, source="model")
        # A flag's place in the review queue: the highest risk among its visits.
        con.execute(
            """
            UPDATE flags SET score = x.risk FROM (
                SELECT u.flag_id, max(s.risk_score) AS risk
                FROM (SELECT flag_id, unnest(record_keys) AS k FROM flags) u
                JOIN scores s ON s.record_key = u.k AND s.run_id = ?
                GROUP BY u.flag_id) x
            WHERE flags.flag_id = x.flag_id AND coalesce(flags.subject, 'records') <> 'range'""",
            [run_id],
        )
        con.execute(
            "UPDATE runs SET ended_at = ?, status = 'ok', counts = ? WHERE run_id = ?",
            [_now(), json.dumps({"scored": rows, "model_flags": len(hits)}), run_id],
        )
    return ScoreReport(run_id, model_id, rows, fit_rows, sum(new.values()), resolved)


def _model_hits(con, config: ScoringConfig, run_id: int, feats: Path) -> list[Hit]:
    """The top outliers that no rule flags become visit_pattern flags of source model."""
    from detector.rules import _plain, flag_id

    rule_id = f"outlier-{config.model}"
    cur = con.execute(
        f"""
        SELECT s.record_key, s.outlier_score, s.outlier_pct, s.top_features, f.facility,
               f.role, f.entered_at
        FROM scores s JOIN read_parquet('{feats}') f USING (record_key)
        WHERE s.run_id = ? AND s.rule_score = 0 AND s.outlier_pct >= ?
        ORDER BY s.outlier_score DESC""",
        [run_id, 1 - config.flag_top_fraction],
    )
    hits = []
    for key, raw, pct, top, facility, role, at in cur.fetchall():
        reasons = "; ".join(t["context"] for t in json.loads(top or "[]"))
        fields = {
            "outlier_score": round(raw, 2),
            "percentile": round(100 * pct, 2),
            "role": role,
            "top_features": json.loads(top or "[]"),
        }
        hits.append(
            Hit(
                flag_id(rule_id, key),
                rule_id,
                "visit_pattern",
                f"Visit out of place ({config.model.upper()} outlier)",
                "records",
                "medium",
                facility,
                None,
                at,
                at,
                [key],
                fields,
                f"A {role} visit at {facility} on {_plain(at)} is out of place (outlier score "
                f"{raw:.1f}, top {100 * (1 - pct):.2f}% of the fitted window): {reasons}.",
            )
        )
    return hits


# --- reading scores and roll-ups -----------------------------------------------------------

ROLLUPS = {
    "official": "official_key",
    "inmate": "inmate_id",
    "facility": "facility",
}


def latest_run(con) -> int | None:
    rows = con.execute("SELECT max(run_id) FROM scores").fetchall()
    return rows[0][0]


def load_scores(store: Store, top: int | None = None) -> pl.DataFrame:
    """One row per scored visit of the latest scoring run, riskiest first."""
    with store.read() as con:
        run = latest_run(con)
        if run is None:
            return pl.DataFrame()
        limit = f"LIMIT {int(top)}" if top else ""
        return con.sql(
            f"""
            SELECT coalesce(v.record_id, s.record_key) AS record_id, s.record_key, v.facility,
                   v.entered_at, v.name, v.role, s.risk_score, s.outlier_score, s.outlier_pct,
                   s.rule_score, s.rules, s.top_features, v.source_name, v.source_row,
                   v.logbook, v.page, v.line
            FROM scores s JOIN visits v USING (record_key)
            WHERE s.run_id = $run ORDER BY s.risk_score DESC, s.record_key {limit}""",
            params={"run": run},
        ).pl()


def rollup(store: Store, by: str) -> pl.DataFrame:
    """Risk accumulated per official (incl. people they escorted), inmate or facility."""
    if by not in ROLLUPS:
        raise ValueError(f"roll up by one of {', '.join(ROLLUPS)}")
    key = {
        "official": """CASE WHEN v.role = 'official' THEN v.name_key
                              WHEN v.escorted_key IN (SELECT name_key FROM visits
                                                     WHERE role = 'official') THEN v.escorted_key
                         END""",
        "inmate": "v.inmate_id",
        "facility": "v.facility",
    }[by]
    with store.read() as con:
        run = latest_run(con)
        if run is None:
            return pl.DataFrame()
        return con.sql(
            f"""
            SELECT {key} AS {by}, count(*) AS visits,
                   round(sum(s.risk_score), 3) AS total_risk,
                   round(max(s.risk_score), 3) AS max_risk,
                   count(*) FILTER (WHERE s.risk_score >= 0.5) AS high_risk_visits,
                   count(*) FILTER (WHERE s.rule_score > 0) AS visits_with_rule_hits,
                   round(avg(s.outlier_pct), 3) AS mean_outlier_pct
            FROM scores s JOIN visits v USING (record_key)
            WHERE s.run_id = $run AND {key} IS NOT NULL
            GROUP BY ALL ORDER BY total_risk DESC""",
            params={"run": run},
        ).pl()
