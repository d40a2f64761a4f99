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

Each visit's risk is the noisy-OR of its rule flags and its outlier part: the formula
and its weights are in ``detector.risk``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import re
import shutil
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING

from detector import calibration, i18n, lazy
from detector.features import (
    FEATURE_NAMES,
    FEATURES,
    VISITOR_JOIN,
    VISITOR_SQL,
    build_raw,
    build_reference,
    finished,
)
from detector.flags import Hit, Resolution, flag_id, store_flags
from detector.i18n import N_
from detector.kept import folder_hash, publish
from detector.parallel import ordered_map
from detector.risk import in_affected, range_risk, rule_part, visit_risk
from detector.runs import RUN_WRITERS, newest_upload, next_run, now
from detector.schema import sql_string
from detector.store import Store, private_con, upsert
from detector.wording import model_wording

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    np = lazy.module("numpy")
    pl = lazy.module("polars")
    pa = lazy.module("pyarrow")
    pq = lazy.module("pyarrow.parquet")

FEATURE_DESCRIPTIONS = {f.name: f.description for f in FEATURES}
# PyOD (with scikit-learn, SciPy and numba: seconds to import) is loaded only to fit a
# model or to load a fitted one other than ECOD: scoring new visits against a kept ECOD
# reference needs numpy alone (``FrozenECOD.from_arrays``).
MODELS = ("ecod", "iforest", "copod", "hbos")


def _pyod_model(name: str):
    """PyOD's class of model ``name`` (imported on first use)."""
    if name == "ecod":
        from pyod.models.ecod import ECOD as model
    elif name == "iforest":
        from pyod.models.iforest import IForest as model
    elif name == "copod":
        from pyod.models.copod import COPOD as model
    else:
        from pyod.models.hbos import HBOS as model
    return model


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


class FrozenECOD:
    """ECOD's scoring with the ECDFs of a fitted model's training data held fixed.

    ``O`` per row and dimension is ``max(-log F(x), -log (1 - F(x) + p(x)))`` as in
    PyOD's ECOD (left tail, right tail, the skew-chosen tail), with the empirical CDFs
    of the training rows; the score is the row sum.
    """

    def __init__(self, fitted):
        self._train(fitted.X_train)

    @classmethod
    def from_training(cls, X: np.ndarray) -> FrozenECOD:
        """The scorer of an ECOD fitted on ``X`` (what ``ECOD().fit(X)`` keeps: ``X``)."""
        self = cls.__new__(cls)
        self._train(X)
        return self

    def _train(self, X: np.ndarray) -> None:
        from scipy.stats import skew

        self.n_ = X.shape[0]
        self.sorted_ = np.sort(X, axis=0)
        self.skew_ = np.sign(np.nan_to_num(skew(X, axis=0)))

    @classmethod
    def from_arrays(cls, sorted_: np.ndarray, skew_: np.ndarray) -> FrozenECOD:
        """The scorer of a kept reference: its sorted training columns and tail signs."""
        self = cls.__new__(cls)
        self.sorted_, self.skew_, self.n_ = sorted_, skew_, sorted_.shape[0]
        return self

    def per_feature(self, X: np.ndarray) -> np.ndarray:
        """Each row's contribution per feature. Most visits have nothing unusual, every
        feature zero (97-99.6% of the demo's and the benchmark's): their row is the same,
        computed once (the two searches per value cost 3.4 s of CPU at 10M visits)."""
        some = X.any(axis=1)
        if some.all():
            return self._per_feature(X)
        out = np.repeat(self._per_feature(np.zeros((1, X.shape[1]))), len(X), axis=0)
        if some.any():
            out[some] = self._per_feature(X[some])
        return out

    def _per_feature(self, X: np.ndarray) -> np.ndarray:
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
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)} or ensemble")
    if name == "iforest":
        return _pyod_model(name)(n_estimators=100, random_state=seed, n_jobs=1)
    return _pyod_model(name)()


def _scorer(model):
    """A function scoring new rows against the fitted model without re-fitting it."""
    if isinstance(model, _pyod_model("ecod")):
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
    scope: str = ""  # what was scored, and against which reference (refitted or kept)
    refit: bool = False


ROLE_PLURAL = {
    "family": N_("Relatives"),
    "lawyer": N_("Lawyers"),
    "official": N_("Officials"),
    "staff": N_("Staff"),
    "contractor": N_("Contractors"),
    "ngo": N_("Aid workers"),
    "police": N_("Police officers"),
    "other": N_("Visitors of this kind"),
}


@functools.cache
def _template(feature: str, lang: str) -> tuple[str, frozenset[str]]:
    """A feature's sentence template in ``lang`` and the fields it quotes."""
    template = i18n.translate(lang, next(f.template for f in FEATURES if f.name == feature))
    names = {
        re.split(r"[.\[]", name, maxsplit=1)[0]
        for _, name, _, _ in string.Formatter().parse(template)
        if name
    }
    return template, frozenset(names)


def _describe(feature: str, row: dict, lang: str = "en") -> str:
    """The sentence an auditor reads for one feature of one visit, with its context's
    figures (never the feature's name or a score), in ``lang``.

    Only the fields the sentence quotes are put in words (a million visits are explained
    in a full scoring of ten million)."""
    template, names = _template(feature, lang)
    shown = {}
    for k in names:
        if k == "weekday":
            v = (
                i18n.weekday(int(row["weekday"]), lang)
                if row.get("weekday")
                else i18n.translate(lang, "that day")
            )
        elif k == "Role_plural":
            role = row.get("role") or "other"
            v = i18n.translate(lang, ROLE_PLURAL.get(role, ROLE_PLURAL["other"]))
        elif k == "role":
            v = i18n.words(row.get("role") or "other", lang)
        elif k in row:
            v = i18n.translate(lang, "unknown") if row[k] is None else row[k]
        else:
            continue  # the template's KeyError below, as before
        if isinstance(v, float):
            v = int(v) if v.is_integer() else (i18n.number(v, lang) if lang != "en" else v)
        shown[k] = v
    try:
        return template.format(**shown)
    except (KeyError, ValueError, IndexError):
        return i18n.translate(
            lang, FEATURE_DESCRIPTIONS.get(feature, "an unusual feature")
        ).capitalize()


def percentile(sorted_reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of values in a sorted reference: ties share the middle rank, so
    the many visits with nothing unusual do not all look like the 90th percentile."""
    below = np.searchsorted(sorted_reference, values, side="left")
    upto = np.searchsorted(sorted_reference, values, side="right")
    return (below + upto) / 2 / len(sorted_reference)


def brief_explanations(contributions: np.ndarray, X: np.ndarray, k: int) -> pl.Series:
    """Top-k features of every row as JSON (name, value, contribution), built vectorised:
    each row's JSON is one ``concat_str`` of columns (the names gathered by index, each
    number cast to text once), no Python string per row. A row with every feature zero
    (most visits: nothing unusual) has no reasons, ``[]``: its top features would be
    zeros ranked by the reference's ties, which say nothing (at 10M visits, 99.4% of the
    rows carried one same 194-character list: 1.9 GB of text written, read and
    compressed for nothing)."""
    plain = ~(X.any(axis=1) | np.signbit(X).any(axis=1))  # -0.0 is written "-0.0"
    if not plain.any():
        return _brief(contributions, X, k)
    out = pl.repeat("[]", len(X), eager=True, dtype=pl.String)
    some = np.flatnonzero(~plain)
    return out.scatter(some, _brief(contributions[some], X[some], k)) if len(some) else out


def _brief(contributions: np.ndarray, X: np.ndarray, k: int) -> pl.Series:
    top = np.argsort(-contributions, axis=1)[:, :k]
    rows = np.arange(len(X))[:, None]
    values = np.round(X[rows, top], 3)
    contrib = np.round(contributions[rows, top], 3)
    heads = pl.Series([f'{{"feature": "{name}", "value": ' for name in FEATURE_NAMES])
    frame = pl.DataFrame(
        {
            **{f"n{j}": heads.gather(top[:, j]) for j in range(top.shape[1])},
            **{f"v{j}": values[:, j] for j in range(top.shape[1])},
            **{f"c{j}": contrib[:, j] for j in range(top.shape[1])},
        }
    )
    parts: list[pl.Expr] = [pl.lit("[")]
    for j in range(top.shape[1]):
        parts += [
            pl.col(f"n{j}"),
            pl.col(f"v{j}").cast(pl.String),
            pl.lit(', "contribution": '),
            pl.col(f"c{j}").cast(pl.String),
            pl.lit("}, " if j < top.shape[1] - 1 else "}"),
        ]
    return frame.select(pl.concat_str([*parts, pl.lit("]")])).to_series()


@functools.cache
def quoted_fields() -> frozenset[str]:
    """The fields of a visit the explanations read: its features and what the sentences of
    every language quote."""
    quoted = {"weekday", "role", *FEATURE_NAMES}
    for name in FEATURE_NAMES:
        for lang in i18n.LANGUAGES:
            quoted |= _template(name, lang)[1]
    return frozenset(quoted)


@functools.cache
def _sentence_keys(feature: str) -> tuple[str, ...]:
    """The fields of a visit that feature's sentences (in every language) depend on."""
    names = set().union(*(_template(feature, lang)[1] for lang in i18n.LANGUAGES))
    return tuple(sorted({"role" if k == "Role_plural" else k for k in names}))


def explain_rows(context: pl.DataFrame, contributions: np.ndarray, k: int) -> list[str]:
    """Top-k features per row as JSON: name, observed value, contribution and context.

    A feature at zero says nothing about a visit and is left out; only the rows with
    something to say are turned into dicts (with the fields the sentences quote). Each
    explanation is written once for what it says (the features, their figures and the
    fields their sentences quote): the visits explained share few (at 10M visits, 59,491
    explained in 184 distinct ways; written one by one, 1.7 s of CPU)."""
    top = np.argsort(-contributions, axis=1)[:, :k]
    values = context.select(pl.col(FEATURE_NAMES).cast(pl.Float64)).to_numpy()
    at = np.arange(len(top))[:, None]
    said = ~np.isnan(values[at, top]) & (values[at, top] != 0)
    quoted = quoted_fields()
    speaking = np.flatnonzero(said.any(axis=1))
    rows = (
        context[speaking].select([c for c in context.columns if c in quoted]).to_dicts()
        if len(speaking)
        else []
    )
    out = ["[]"] * len(top)
    written: dict[tuple, str] = {}
    for i, row in zip(speaking, rows, strict=True):
        items = [
            (FEATURE_NAMES[j], round(float(values[i, j]), 3), round(float(contributions[i, j]), 3))
            for j, say in zip(top[i], said[i], strict=True)
            if say
        ]
        key = (*items, *(row.get(f) for name, _, _ in items for f in _sentence_keys(name)))
        try:
            out[i] = written[key]
            continue
        except KeyError:
            pass
        except TypeError:  # a figure that is not hashable: written for this row alone
            key = None
        text = json.dumps(
            [
                {
                    "feature": name,
                    "value": value,
                    "contribution": contribution,
                    "context": _describe(name, row),
                    **{
                        f"context_{lang}": _describe(name, row, lang)
                        for lang in i18n.LANGUAGES
                        if lang != i18n.SOURCE
                    },
                }
                for name, value, contribution in items
            ],
            ensure_ascii=False,
        )
        if key is not None:
            written[key] = text
        out[i] = text
    return out


# --- the kept reference ----------------------------------------------------------------------

# Bumped when the features' meaning changes: a reference of another version is refitted.
REFERENCE_VERSION = 12  # 12: no purpose is unknown in an upload that writes none
_SCORER_FILE = "model.joblib"
_ECDF_FILE = "ecdf.npz"


@dataclass
class Reference:
    """A fitted model and the feature context it was fitted with, kept on disk.

    ``path`` holds the context's Parquet files (``features.build_reference``), the training
    ECDFs and training scores (``ecdf.npz``) and, for a model other than ECOD, the fitted
    model (``model.joblib``). ``content_hash`` covers every file: a reference whose files
    changed is not loaded (and a pickled model is never loaded before its hash is checked).
    """

    model_id: str
    path: Path
    explainer: FrozenECOD
    scorer: Callable[[np.ndarray], np.ndarray] | None  # None: ECOD's own per-feature sum
    train_scores: np.ndarray
    fit_from: datetime | None
    fit_to: datetime | None
    fit_rows: int
    content_hash: str = ""
    new: bool = False  # fitted in this run (not yet recorded in ``models``)
    # the window's raw features as fitted (when the window is every stored visit, they
    # are what a full scoring right after fitting would compute again)
    raw: Path | None = None

    def raw_scores(self, X: np.ndarray, contributions: np.ndarray) -> np.ndarray:
        return contributions.sum(axis=1) if self.scorer is None else self.scorer(X)


def models_dir(store: Store) -> Path:
    return store.models


def content_hash(path: Path) -> str:
    """SHA-256 over a reference folder's files (names and contents), in name order."""
    return folder_hash(path, keep=())[0]


# A reference's id as ``fit_reference`` makes it (16 hex digits), or any plain name: never
# a path (``/elsewhere``, ``..``) that would load a pickle from outside the models folder.
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def reference_folder(store: Store, model_id: object) -> Path | None:
    """The folder of the reference ``model_id`` inside the models folder, or None when the
    id is not a plain name or the folder resolves (through a link) outside it."""
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
        return None
    root = models_dir(store).resolve()
    path = (root / model_id).resolve()
    return path if path.parent == root else None


def _reference_key(config: ScoringConfig) -> str:
    """What a stored reference must match to be reused: the model and its fitting."""
    return json.dumps(
        {
            "version": REFERENCE_VERSION,
            "features": FEATURE_NAMES,
            "model": config.model,
            "ensemble": list(config.ensemble) if config.model == "ensemble" else None,
            "fit_sample": config.fit_sample,
            "fit_window_days": config.fit_window_days,
            "seed": config.seed,
        },
        sort_keys=True,
    )


def load_reference(store: Store, config: ScoringConfig) -> tuple[Reference | None, str]:
    """The newest stored reference fitted as ``config`` asks, or None and why not."""
    with store.read() as con:
        found = con.execute(
            "SELECT model_id, content_hash, fit_from, fit_to, fit_rows, config FROM models "
            "WHERE content_hash IS NOT NULL ORDER BY fitted_at DESC"
        ).fetchall()
    wanted = json.loads(_reference_key(config))
    for model_id, digest, fit_from, fit_to, fit_rows, stored in found:
        if json.loads(stored).get("reference") != wanted:
            continue
        path = reference_folder(store, model_id)
        if path is None:
            return None, f"reference {model_id!r} is not a folder inside the models folder"
        if not path.is_dir():
            return None, f"the files of reference {model_id} are gone"
        checked, files = folder_hash(path, keep=(_ECDF_FILE, _SCORER_FILE))
        if checked != digest or _ECDF_FILE not in files:
            return None, f"the files of reference {model_id} changed since it was fitted"
        ecdf = np.load(io.BytesIO(files[_ECDF_FILE]))  # arrays only: no pickles allowed
        explainer = FrozenECOD.from_arrays(ecdf["sorted"], ecdf["skew"])
        scorer = None
        if _SCORER_FILE in files:
            import joblib

            scorer = _scorer(joblib.load(io.BytesIO(files[_SCORER_FILE])))
        return (
            Reference(
                model_id,
                path,
                explainer,
                scorer,
                ecdf["train_scores"],
                fit_from,
                fit_to,
                fit_rows,
                digest,
            ),
            "",
        )
    return None, "no reference fitted yet" if not found else "no reference fitted this way"


def fit_reference(
    store: Store, config: ScoringConfig, workdir: Path, seconds: dict[str, float] | None = None
) -> Reference:
    """Fit the model on a sample of the window and keep it with the window's context; with
    ``seconds``, what building the reference's features took is added to it as
    ``reference`` (DuckDB's work: the context tables, the window's raw features, the
    sample), so that the model's own fit can be told from it."""
    newest = _newest_visit(store)
    window = None
    if config.fit_window_days and newest is not None:
        window = (newest - timedelta(days=int(config.fit_window_days)), newest)
    models_dir(store).mkdir(mode=0o700, parents=True, exist_ok=True)  # the owner's alone
    staging = models_dir(store) / f".fitting-{os.getpid()}-{time.time_ns()}"
    staging.mkdir(mode=0o700)
    try:
        raw = workdir / "fit_raw.parquet"
        t = time.perf_counter()
        build_reference(store, staging, window, raw=raw)
        fit_from, fit_to, X_fit = _fit_sample(staging, raw, config, workdir)
        if seconds is not None:
            seconds["reference"] = seconds.get("reference", 0.0) + time.perf_counter() - t
        if config.model == "ecod" and np.isfinite(X_fit).all():
            # What PyOD's ECOD keeps of its fit is its training rows, and the frozen scorer
            # needs nothing else: PyOD (scikit-learn, numba's compilations) is not loaded.
            explainer, scorer = FrozenECOD.from_training(X_fit), None
        else:
            model = make_model(config).fit(X_fit)
            ecod = _pyod_model("ecod")
            explainer = FrozenECOD(model if isinstance(model, ecod) else ecod().fit(X_fit))
            scorer = None
            if not isinstance(model, ecod):
                import joblib

                scorer = _scorer(model)
                joblib.dump(model, staging / _SCORER_FILE)
        train = explainer.decision_function(X_fit) if scorer is None else scorer(X_fit)
        train_scores = np.sort(train)
        np.savez(
            staging / _ECDF_FILE,
            sorted=explainer.sorted_,
            skew=explainer.skew_,
            train_scores=train_scores,
        )
        digest = content_hash(staging)
        model_id = hashlib.sha256(
            (_reference_key(config) + str(fit_from) + str(fit_to) + digest).encode()
        ).hexdigest()[:16]
        path = models_dir(store) / model_id
        publish(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Reference(
        model_id,
        path,
        explainer,
        scorer,
        train_scores,
        fit_from,
        fit_to,
        X_fit.shape[0],
        digest,
        new=True,
        raw=raw if window is None else None,
    )


def _idle(store: Store, config: ScoringConfig) -> tuple[str, int] | None:
    """(model id, rows fitted) of the kept reference when a scoring run would find nothing
    to do (what ``plan_run`` would say: no upload and no rule flag changed since the last
    scoring run, no review calling for new weights, every visit scored against the
    reference ``load_reference`` would load, its files intact); else None.

    Checked before the reference is loaded, so that `detector run` with nothing new does
    not pay for loading it."""
    with store.read() as con:
        last = con.execute(
            "SELECT run_id, watermark FROM runs WHERE kind = 'score' AND status = 'ok' "
            "ORDER BY run_id DESC LIMIT 1"
        ).fetchall()
        watermark = newest_upload(con)
        if not last or last[0][1] != watermark:
            return None
        found = con.execute(
            "SELECT model_id, content_hash, fit_rows, config FROM models "
            "WHERE content_hash IS NOT NULL ORDER BY fitted_at DESC"
        ).fetchall()
        wanted = json.loads(_reference_key(config))
        kept = next((f for f in found if json.loads(f[3]).get("reference") == wanted), None)
        if kept is None:
            return None
        model_id, digest, fit_rows, _ = kept
        changed = con.execute(
            "SELECT (SELECT count(*) FROM scores WHERE model_id IS DISTINCT FROM $m) "
            "+ (SELECT count(*) FROM flags WHERE source = 'rule' AND last_run > $run)",
            {"m": model_id, "run": last[0][0]},
        ).fetchall()[0][0]
        if changed or calibration.pending(con):
            return None
    path = reference_folder(store, model_id)
    if path is None or not path.is_dir() or content_hash(path) != digest:
        return None  # loading it would fail: the full path decides what to do
    return model_id, fit_rows


def _newest_visit(store: Store) -> datetime | None:
    with store.read() as con:
        return con.execute("SELECT max(entered_at) FROM visits").fetchall()[0][0]


# --- what a run scores ------------------------------------------------------------------------


@dataclass
class Plan:
    """The visits a scoring run re-scores: all of them, or the new ones and those whose
    neighbourhood they change (same weeks, same visitor within 30 days)."""

    full: bool
    why: str
    watermark: int
    targets: str = "TRUE"  # SQL condition on visits
    neighbourhood: str = "TRUE"  # SQL condition on the visits the targets' features read
    rules_since: int = 0  # rule flags changed after this run id get their visits' risk redone


def plan_run(
    store: Store, reference: Reference, full: bool, tmp: Path, refit_why: str = ""
) -> Plan:
    """Full when asked, when the reference is new (fitted because of ``refit_why``) or the
    roster changed since the last scoring run; otherwise the new visits and their
    neighbourhood."""
    with store.read() as con:
        watermark = newest_upload(con)
        last = con.execute(
            "SELECT run_id, watermark FROM runs WHERE kind = 'score' AND status = 'ok' "
            "ORDER BY run_id DESC LIMIT 1"
        ).fetchall()
        if reference.new:
            return Plan(
                True, f"refitted ({refit_why}): new reference {reference.model_id}", watermark
            )
        if full:
            return Plan(True, f"full re-scoring against reference {reference.model_id}", watermark)
        others = con.execute(
            "SELECT count(*) FROM scores WHERE model_id IS DISTINCT FROM ?", [reference.model_id]
        ).fetchall()[0][0]
        if not last or last[0][1] is None or others:
            return Plan(True, f"first scoring against reference {reference.model_id}", watermark)
        last_run, since = last[0]
        roster = con.execute(
            "SELECT count(*) FROM uploads WHERE seq > ? AND kind = 'inmates'", [since]
        ).fetchall()[0][0]
        if roster:
            return Plan(True, "the roster changed: every visit re-scored", watermark)
        new_rows, neighbourhood = _write_targets(con, since, watermark, tmp / "targets.parquet")
        ruled = con.execute(
            "SELECT count(*) FROM flags WHERE source = 'rule' AND last_run > ?", [last_run]
        ).fetchall()[0][0] + len(calibration.pending(con))
    if not new_rows and not ruled:
        return Plan(False, "nothing new since the last scoring run", watermark, "FALSE", "FALSE")
    targets = f"record_key IN (SELECT record_key FROM read_parquet({sql_string(tmp / 'targets.parquet')}))"
    return Plan(
        False,
        f"incremental: {new_rows:,} new visits against reference {reference.model_id}",
        watermark,
        targets,
        neighbourhood,
        last_run,
    )


_VISITOR = VISITOR_SQL.format(v="v.", p="p.")
_VISITS = "visits v " + VISITOR_JOIN.format(v="v.", p="p")
MAX_RANGES = 200  # beyond this many separate stretches of time, read every visit


def _write_targets(con, since: int, upto: int, out: Path) -> tuple[int, str]:
    """Write the keys of the visits to re-score; return (new visits, neighbourhood SQL).

    Re-scored: the new visits; every visit in a week they fall in (its week's volume
    changed), or in a week at an end of the covered days they moved (that week is now
    whole); and the visits of their visitors within 30 days (the visitor's spread changed).
    """
    new = "upload_seq > $since AND upload_seq <= $upto"
    new_v = "v.upload_seq > $since AND v.upload_seq <= $upto"
    params = {"since": since, "upto": upto}
    lo, hi, n = con.execute(
        f"SELECT min(entered_at), max(entered_at), count(*) FROM visits WHERE {new}", params
    ).fetchall()[0]
    if not n:
        con.execute(
            f"COPY (SELECT ''::VARCHAR AS record_key LIMIT 0) TO {sql_string(out)} (FORMAT parquet)"
        )
        return 0, "FALSE"
    weeks = [
        w
        for (w,) in con.execute(
            f"""
        WITH n AS (SELECT facility, entered_at FROM visits WHERE {new}),
        o AS (SELECT facility, min(entered_at) AS lo, max(entered_at) AS hi FROM visits
              WHERE upload_seq <= $since GROUP BY ALL),
        nf AS (SELECT facility, min(entered_at) AS lo, max(entered_at) AS hi FROM n GROUP BY ALL),
        og AS (SELECT min(lo) AS lo, max(hi) AS hi FROM o),
        ng AS (SELECT min(lo) AS lo, max(hi) AS hi FROM nf)
        SELECT DISTINCT date_trunc('week', entered_at) FROM n
        UNION SELECT date_trunc('week', o.lo) FROM o JOIN nf USING (facility)
              WHERE nf.lo::DATE < o.lo::DATE
        UNION SELECT date_trunc('week', o.hi) FROM o JOIN nf USING (facility)
              WHERE nf.hi::DATE > o.hi::DATE
        UNION SELECT date_trunc('week', og.lo) FROM og, ng WHERE ng.lo::DATE < og.lo::DATE
        UNION SELECT date_trunc('week', og.hi) FROM og, ng WHERE ng.hi::DATE > og.hi::DATE""",
            params,
        ).fetchall()
        if w is not None
    ]
    day = timedelta(days=1)
    in_weeks = _ranges([(w, w + 7 * day) for w in weeks])
    near = (lo - 30 * day, hi + 30 * day)
    con.execute(
        f"""
        COPY (
          SELECT record_key FROM visits WHERE {in_weeks}
          UNION SELECT record_key FROM visits WHERE {new}
          UNION SELECT v.record_key FROM {_VISITS}
                WHERE v.entered_at BETWEEN TIMESTAMP '{near[0]}' AND TIMESTAMP '{near[1]}'
                  AND {_VISITOR} IN (SELECT {_VISITOR} FROM {_VISITS} WHERE {new_v})
        ) TO {sql_string(out)} (FORMAT parquet)""",
        params,
    )
    # Around each re-scored visit: its whole week and its visitor's 30 days either side.
    around = [(w - 31 * day, w + 38 * day) for w in weeks]
    around.append((lo - 61 * day, hi + 61 * day))
    return n, _ranges(around)


def _ranges(spans: list[tuple]) -> str:
    """An SQL condition on entered_at for a union of [start, end) spans (merged)."""
    merged: list[list] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if not merged:
        return "FALSE"
    if len(merged) > MAX_RANGES:
        return "TRUE"
    return (
        "("
        + " OR ".join(
            f"(entered_at >= TIMESTAMP '{a}' AND entered_at < TIMESTAMP '{b}')" for a, b in merged
        )
        + ")"
    )


def score(
    store: Store,
    config: ScoringConfig | None = None,
    triggered_by: str = "cli",
    workdir: Path | None = None,
    refit: bool = False,
    full: bool = False,
) -> ScoreReport:
    """Score the visits against the kept reference; fit one only when asked or missing.

    Without ``refit`` the newest stored reference fitted as ``config`` asks is loaded and
    only new visits (and those whose neighbourhood they change) are scored against it, so
    that a visit's score does not move because unrelated visits arrived. With ``refit``,
    or when there is no usable reference, one is fitted on the history window and every
    visit is re-scored; the run says which (``ScoreReport.scope``). The heavy work reads
    the database read-only and writes Parquet files; only the final load of scores and
    model flags takes the write lock.
    """
    config = config or ScoringConfig()
    seconds: dict[str, float] = {}
    started = now()  # the run's row starts here, not when its results are stored
    with TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        idle = None if refit or full else _idle(store, config)
        if idle is not None:  # nothing new: the reference is not even loaded
            return ScoreReport(
                0,
                idle[0],
                0,
                idle[1],
                seconds=seconds,
                scope="nothing new since the last scoring run",
            )
        reference, why = (None, "asked to refit") if refit else load_reference(store, config)
        if reference is None:
            if _newest_visit(store) is None:
                return ScoreReport(0, "", 0, 0, seconds=seconds, scope="nothing to score")
            reference = fit_reference(store, config, tmp, seconds)
        # the model's fit (and loading or keeping a reference), the features aside
        seconds["fit"] = time.perf_counter() - t - seconds.get("reference", 0.0)

        t = time.perf_counter()
        plan = plan_run(store, reference, full, tmp, refit_why=why)
        if plan.targets == "FALSE":  # no run recorded: nothing would change
            return ScoreReport(
                0, reference.model_id, 0, reference.fit_rows, seconds=seconds, scope=plan.why
            )
        if plan.full and reference.raw is not None:
            raw = reference.raw
            rows = pq.ParquetFile(raw).metadata.num_rows
        else:
            raw = tmp / "raw.parquet"
            rows = build_raw(store, raw, reference.path, plan.neighbourhood, plan.targets)
        seconds["features"] = time.perf_counter() - t

        t = time.perf_counter()
        out = tmp / "scores"
        unseen = _score_batches(raw, reference, config, out, tmp)
        seconds["score"] = time.perf_counter() - t
        if unseen:
            plan.why += (
                f"; {unseen:,} visits of a facility and role the reference has not seen are "
                "judged without their weekday and hour context: refit to include them "
                "(detector score --refit, or the nightly scoring job)"
            )

        t = time.perf_counter()
        report = _store_scores(store, config, reference, plan, out, rows, triggered_by, started)
        seconds["store"] = time.perf_counter() - t
    report.seconds = seconds
    return report


def _scores_schema() -> pa.Schema:
    """The columns of the scores file the scoring batches write."""
    return pa.schema(
        [
            ("record_key", pa.string()),
            ("outlier_score", pa.float64()),
            ("outlier_pct", pa.float64()),
            ("top_features", pa.string()),
        ]
    )


# How many row ranges of a features file are streamed from DuckDB and scored side by
# side: one stream runs on one core whatever DuckDB's threads (at 10M visits, streaming
# the finished features took 8.5 s alone, two streams of half the rows 4.5 s).
SCORING_STREAMS = max(1, min(4, os.cpu_count() or 1))


def row_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """At most ``parts`` ranges (first, end) of the rows of the Parquet file ``path``,
    along its row groups and about equal in rows; one range (maybe empty) at least."""
    meta = pq.ParquetFile(path).metadata
    total = meta.num_rows
    ranges, first, end = [], 0, 0
    for i in range(meta.num_row_groups):
        end += meta.row_group(i).num_rows
        if end - first >= total / parts and len(ranges) < parts - 1:
            ranges.append((first, end))
            first = end
    return [*ranges, (first, total)] if first < total or not ranges else ranges


def _score_batches(
    raw: Path, reference: Reference, config: ScoringConfig, out: Path, workdir: Path
) -> int:
    """Score the finished features of the raw ones in ``raw`` in batches against the
    reference, writing one scores file per range of rows into the folder ``out``; returns
    how many rows are of a facility and role the reference holds nothing of. The finished
    features stream from DuckDB into the batches (written to a file and read back, they
    cost 8-9 s at 10M visits); a stream runs on one core, so ``SCORING_STREAMS`` ranges of
    the rows are streamed and scored side by side, each on its own connection (NumPy and
    polars release the GIL). At 10M visits on two cores, one stream scored by two threads
    took 9.3-9.6 s, two streams reading only what a batch reads 8.5-8.6 s."""
    out.mkdir()
    con = private_con(workdir)
    try:
        ranges = list(enumerate(row_ranges(raw, SCORING_STREAMS)))
        return sum(
            ordered_map(
                lambda numbered: _score_range(con, raw, reference, config, out, *numbered),
                ranges,
                workers=len(ranges),
                name="scoring",
            )
        )
    finally:
        con.close()


def _score_range(
    con,
    raw: Path,
    reference: Reference,
    config: ScoringConfig,
    out: Path,
    number: int,
    rows: tuple[int, int],
) -> int:
    """One range of ``raw``'s rows streamed on a cursor of ``con`` and scored in batches
    into ``out``'s file ``number``; returns its rows of a facility and role the reference
    has not seen."""
    cursor, unseen = con.cursor(), 0
    try:
        query = finished(cursor, reference.path, raw, span=rows)
        # only the columns a batch reads (37 of 48: each is converted to Arrow)
        names = [d[0] for d in cursor.execute(f"DESCRIBE {query}").fetchall()]
        read = ["record_key", "n_role", *(n for n in names if n in quoted_fields())]
        query = f"SELECT {', '.join(dict.fromkeys(read))} FROM ({query})"
        batches = cursor.execute(query).to_arrow_reader(config.batch_rows)
        # (with no rows: the file with its columns)
        with pq.ParquetWriter(out / f"{number:03}.parquet", _scores_schema()) as writer:
            for batch in batches:
                table, batch_unseen = _score_batch(batch, reference, config)
                unseen += batch_unseen
                writer.write_table(table)
    finally:
        cursor.close()
    return unseen


def _score_batch(batch, reference: Reference, config: ScoringConfig) -> tuple[pa.Table, int]:
    """One batch of feature rows scored: its scores table and its rows of a facility and
    role the reference has not seen."""
    frame = pl.from_arrow(batch)
    unseen = int((frame["n_role"] == 0).sum())
    X = matrix(frame, FEATURE_NAMES)
    contributions = reference.explainer.per_feature(X)
    raw = reference.raw_scores(X, contributions)
    pct = percentile(reference.train_scores, raw)
    explained = brief_explanations(contributions, X, config.top_features)
    # Sentences with the visit's context where someone will read them: the top 10%.
    top = pct >= 0.9
    if top.any():
        sel = frame.filter(pl.Series(top))
        explained = explained.scatter(
            np.flatnonzero(top), explain_rows(sel, contributions[top], config.top_features)
        )
    # Built by polars: pyarrow converting numpy arrays or Python values imports pandas
    # (seconds of an incremental `detector run`).
    table = (
        pl.DataFrame(
            {
                "record_key": frame["record_key"],
                "outlier_score": pl.Series(raw, dtype=pl.Float64),
                "outlier_pct": pl.Series(pct, dtype=pl.Float64),
                "top_features": explained,
            }
        )
        .to_arrow()
        .cast(_scores_schema())
    )
    return table, unseen


def _fit_sample(ref: Path, raw: Path, config: ScoringConfig, workdir: Path) -> tuple:
    """(first, last visit, the fitted rows) of the raw features in ``raw``, finished
    against the reference ``ref``.

    Above ``config.fit_sample`` rows the fit takes the rows whose record keys hash lowest
    under the seed, in that order (``features.finished``): the same rows and order
    whatever order the file holds them in, as it is written unordered."""
    con = private_con(workdir)
    try:
        fit_from, fit_to = con.execute(
            f"SELECT min(entered_at), max(entered_at) FROM read_parquet({sql_string(raw)})"
        ).fetchall()[0]
        sample = (int(config.fit_sample), int(config.seed))
        frame = con.sql(
            f"SELECT {', '.join(FEATURE_NAMES)} FROM ({finished(con, ref, raw, sample)})"
        ).pl()
    finally:
        con.close()
    return fit_from, fit_to, matrix(frame, FEATURE_NAMES)


def _store_scores(
    store: Store,
    config: ScoringConfig,
    reference: Reference,
    plan: Plan,
    scores: Path,
    rows: int,
    triggered_by: str,
    started: datetime,
) -> ScoreReport:
    """Write the run's scores, their risk, the model's flags and the flags' queue places
    (the run recorded from ``started``, when the scoring began).

    Besides the visits just scored, a visit whose rule flags changed since the last scoring
    run gets its risk recomputed (its outlier part stays): together they are ``affected``,
    and only their model flags and the flags holding them are touched."""
    src = f"read_parquet({sql_string(scores / '*.parquet')})"
    rule_id = f"outlier-{config.model}"
    with store.write(RUN_WRITERS) as con:
        run_id = next_run(con, "score", triggered_by, plan.why)
        con.execute(
            "UPDATE runs SET started_at = ?, watermark = ? WHERE run_id = ?",
            [started, plan.watermark, run_id],
        )
        # What the reviews taught since the last run: re-weighed rules (see calibration).
        changes = calibration.pending(con)
        calibration.apply(con, run_id, changes)
        reweighed = [c.rule_id for c in changes]
        if reference.new:
            _record_reference(con, config, reference, run_id)
        _replace_scores(con, plan, src, rule_id, reweighed, run_id, reference.model_id)
        con.execute(
            f"UPDATE flags SET score = {range_risk('flags')} "
            "WHERE subject = 'range' AND rule_id IN (SELECT unnest(?::VARCHAR[]))",
            [reweighed],
        )
        hits = _model_hits(con, config, reference.explainer.n_, plan.full)
        new, resolved = store_flags(
            con,
            hits,
            run_id,
            source="model",
            resolution=Resolution({"global": [rule_id]} if plan.full else {}),
        )
        if not plan.full:
            resolved += con.execute(
                """UPDATE flags SET state = 'resolved_by_data', last_run = ?
                   WHERE state = 'active' AND rule_id = ? AND last_run < ?
                     AND record_keys[1] IN (SELECT record_key FROM affected)""",
                [run_id, rule_id, run_id],
            ).fetchall()[0][0]
        _queue_places(con, plan.full)
        affected = (
            rows if plan.full else con.execute("SELECT count(*) FROM affected").fetchall()[0][0]
        )
        con.execute(
            "UPDATE runs SET ended_at = ?, status = 'ok', counts = ? WHERE run_id = ?",
            [
                now(),
                json.dumps({"scored": rows, "affected": affected, "model_flags": len(hits)}),
                run_id,
            ],
        )
        con.execute("DROP TABLE IF EXISTS temp.main.affected")
    return ScoreReport(
        run_id,
        reference.model_id,
        rows,
        reference.fit_rows,
        sum(new.values()),
        resolved,
        scope=plan.why,
        refit=reference.new,
    )


def _record_reference(con, config: ScoringConfig, reference: Reference, run_id: int) -> None:
    """A newly fitted reference in ``models``: what it is, its window and content hash."""
    upsert(
        con,
        "models",
        ("model_id",),
        {
            "model_id": reference.model_id,
            "run_id": run_id,
            "model": config.model,
            "config": json.dumps(
                {**config.__dict__, "reference": json.loads(_reference_key(config))}, default=str
            ),
            "features": json.dumps(FEATURE_NAMES),
            "fit_from": reference.fit_from,
            "fit_to": reference.fit_to,
            "fit_rows": reference.fit_rows,
            "fitted_at": now(),
            "content_hash": reference.content_hash,
        },
    )


def _replace_scores(
    con, plan: Plan, src: str, rule_id: str, reweighed: list[str], run_id: int, model_id: str
) -> None:
    """The scores of the visits just scored replace theirs (all of them in a full run); the
    visits whose rule flags changed, or whose rules were re-weighed, get their rule part
    redone. Leaves, in an incremental run, the temp table ``affected``: every visit whose
    risk was written (in a full run, every visit)."""
    if plan.full:  # every visit is affected: no table of them (10M keys held for a count)
        con.execute("DELETE FROM scores")
    else:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE affected AS
            SELECT record_key FROM {src}
            UNION SELECT unnest(record_keys) FROM flags
                  WHERE source = 'rule' AND last_run > ?
            UNION SELECT unnest(record_keys) FROM flags
                  WHERE rule_id IN (SELECT unnest(?::VARCHAR[]))
            UNION SELECT record_key FROM scores WHERE ? -- the model re-weighed: all""",
            [plan.rules_since, reweighed, rule_id in reweighed],
        )
        con.execute(f"DELETE FROM scores WHERE record_key IN (SELECT record_key FROM {src})")
    con.execute(
        f"""
        INSERT INTO scores
        SELECT ? AS run_id, ? AS model_id, s.record_key, s.outlier_score, s.outlier_pct,
               coalesce(r.rule_score, 0) AS rule_score,
               {visit_risk("coalesce(r.rule_score, 0)", "s", rule_id)} AS risk_score,
               coalesce(r.rules, []) AS rules, s.top_features
        FROM {src} s LEFT JOIN ({rule_part(plan.full)}) r USING (record_key)""",
        [run_id, model_id],
    )
    if not plan.full:
        con.execute(
            f"""
            UPDATE scores SET rule_score = coalesce(r.rule_score, 0),
                              risk_score = {visit_risk("coalesce(r.rule_score, 0)", "scores", rule_id)},
                              rules = coalesce(r.rules, [])
            FROM (SELECT a.record_key, x.rule_score, x.rules
                  FROM affected a LEFT JOIN ({rule_part()}) x USING (record_key)) r
            WHERE scores.record_key = r.record_key AND scores.run_id <> ?""",
            [run_id],
        )


def _queue_places(con, every: bool = False) -> None:
    """A flag's place in the review queue: the highest risk among its visits (for the
    flags holding an ``affected`` visit, or ``every`` flag; range flags keep their own)."""
    holding = "TRUE" if every else f"u.flag_id IN (SELECT flag_id FROM u WHERE {in_affected('k')})"
    con.execute(
        f"""
        UPDATE flags SET score = x.risk FROM (
            WITH u AS (SELECT flag_id, unnest(record_keys) AS k FROM flags
                       WHERE coalesce(subject, 'records') <> 'range')
            SELECT u.flag_id, max(s.risk_score) AS risk
            FROM u JOIN scores s ON s.record_key = u.k
            WHERE {holding}
            GROUP BY u.flag_id) x
        WHERE flags.flag_id = x.flag_id"""
    )


# A model flag asks a reviewer to look at a visit no rule found, so it must hold at least
# one striking fact: a feature whose value is rarer than 1 in STRIKING_ODDS among the
# reference's visits (in a reference too small for such odds, a value at its very edge).
# A visit unusual only by adding up several mildly rare values (a weekday, an hour, a
# role each a little off) is ranked by its score, not put in the queue: on an independent
# world such flags were all false. One arrival (a facility, a minute) is one case: the
# members of a party share their oddities.
STRIKING_ODDS = 5000


def striking_contribution(reference_rows: int) -> float:
    """The per-feature contribution (-log of the tail probability) a striking fact has."""
    return math.log(max(2.0, min(STRIKING_ODDS, (reference_rows + 1) / 2)))


def _model_hits(con, config: ScoringConfig, reference_rows: int, every: bool = False) -> list[Hit]:
    """The top outliers among the affected visits (``every`` visit: all of them) that no
    rule flags, holding a striking fact (``STRIKING_ODDS``), become visit_pattern flags of
    source model: one per arrival, citing every visit of it that qualifies."""
    rule_id = f"outlier-{config.model}"
    floor = striking_contribution(reference_rows)
    cur = con.execute(
        f"""
        SELECT s.record_key, s.outlier_score, s.outlier_pct, s.top_features, v.facility,
               coalesce(v.role, 'other'), v.entered_at
        FROM (SELECT * FROM scores WHERE rule_score = 0 AND outlier_pct >= ?
                AND {in_affected("record_key", every)}) s
        JOIN visits v USING (record_key)
        ORDER BY s.outlier_score DESC, s.record_key""",
        [1 - config.flag_top_fraction],
    )
    arrivals: dict[tuple, Hit] = {}
    for key, raw, pct, top, facility, role, at in cur.fetchall():
        features = json.loads(top or "[]")
        if max((f.get("contribution") or 0 for f in features), default=0) < floor:
            continue
        # one arrival: a facility and a minute (an undated visit is its own)
        arrival = (facility, at.replace(second=0, microsecond=0) if at is not None else key)
        if arrival in arrivals:
            arrivals[arrival].record_keys.append(key)
            continue
        fields = {
            "outlier_score": round(raw, 2),
            "percentile": round(100 * pct, 2),
            "role": role,
            "top_features": features,
        }
        flag = {"rule_id": rule_id, "facility": facility, "period_start": at}
        title, explanation = model_wording(flag, fields, i18n.SOURCE)
        arrivals[arrival] = Hit(
            flag_id(rule_id, key),
            rule_id,
            "visit_pattern",
            title,
            "records",
            "medium",
            facility,
            None,
            at,
            at,
            [key],
            fields,
            explanation,
        )
    return list(arrivals.values())
