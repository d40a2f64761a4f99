"""Who a row is: every named row of every kind linked to a person, with Splink.

A *mention* is one way a person was written: their name's words, whichever was written
first ("Pérez López, Juan" and "Juan Pérez López" are one mention), with the document and
the badge written beside it (a credential's number, a bar card or an institution's card,
counts as a badge). Mentions are linked into persons by a Fellegi-Sunter model (Splink,
on DuckDB) comparing names by their words, sounds and edit distance, documents, badges
and the inmates visited, with term frequencies that make a common name weak evidence;
the model is trained unsupervised on the store (u by random pairs, the names' m by EM)
and kept, hashed, in the models folder like the scoring reference. Linked pairs are
joined greedily, strongest first, never joining completely different names, two persons
whose documents differ, nor what an auditor split; an auditor's merges are joined first. A new upload's mentions are matched against the kept model and
the persons already known (``predict_between`` and ``predict_within``): no full relink
until ``detector persons --refit``.

Writes ``persons`` (one row per person a record names, with its person id and match
weight), ``person_mentions``, ``person_links`` (the scored pairs that explain a person)
and ``person_models``; ``person_overrides`` holds the auditors' merges and splits.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import duckdb
import polars as pl

from detector import names
from detector.auth import Actor, require
from detector.errors import DetectorError, StoreBusy
from detector.i18n import N_, number, translate
from detector.kept import folder_hash, publish
from detector.review import ReviewError, log_action
from detector.runs import newest_upload, next_run, now, record_failed, watermark
from detector.schema import KINDS, SPECS, Mention, fold_sql, name_status_sql, sql_string
from detector.store import Store, frame_table, private_con

MODEL_VERSION = 1
# A link is accepted at this probability or above (a match weight of about 4.2).
THRESHOLD = 0.95
# Pairs kept to explain a person: accepted links and those scored above this weight.
EXPLAIN_FLOOR = -5.0
# A document written under more different names than this is no identifier ("0", the
# office's own number): it is left out of linkage (and is a finding of its own).
JUNK_DOCUMENT_NAMES = 6
# Document types that are credentials, not identity documents (``VOCABULARIES["id_type"]``).
CREDENTIALS = ("badge", "bar_card")
TRAIN_MIN_PAIRS = 60  # an EM session on fewer pairs keeps the model's prior values
# A name written for more mentions than this (one name under thousands of documents: a
# form's default, a flood) is not a blocking key: pairing each of its mentions with every
# other is quadratic (90,000 new mentions of one name ran linkage out of memory). Its
# mentions still meet through a document, a badge or, without them, their name's sounds;
# two of them sharing nothing but that name are not compared.
CROWDED_NAME_MENTIONS = 2_000
# A document spelling written on this many rows or more is established: nobody's typo. A
# person holds at most one established document (spellings written once or twice are
# what a clerk's slip looks like): two of them one character apart ("AB-20" and "AB-21",
# each on a thousand lines of drivers named "Conductor") are two people, not a slip, and
# joining them chained 1,433 drivers of the benchmark world into one person.
ESTABLISHED_ROWS = 3
U_SAMPLE_PAIRS = 300_000


# --- the rows that name someone --------------------------------------------------------


def _sources() -> list[tuple[str, Mention]]:
    return [(kind, m) for kind in KINDS for m in SPECS[kind].people]


def _col(column: str | None) -> str:
    return column or "NULL"


def _identifier(expr: str) -> str:
    """A document or badge number as compared: letters and digits only, upper case; a
    number of fewer than four characters, or one character repeated, is none."""
    d = f"regexp_replace(upper(strip_accents(trim({expr}::VARCHAR))), '[^A-Z0-9]', '', 'g')"
    return f"CASE WHEN length({d}) >= 4 AND length(replace({d}, {d}[1], '')) > 0 THEN {d} END"


def _dui_digits(expr: str) -> str:
    """SQL: a number typed as a DUI as its nine digits, as clerks and spreadsheets write
    them (spaces, dots and the dash aside, a letter O for a zero, a float's ".0", the
    leading zero Excel drops: "01.234.567-8" and "1234567-8" are "012345678"), or the
    number as written when it is not nine digits then. (The invalid-DUI rule reads the
    digits the same way, in its own SQL; ``ingest._dui_shaped`` types them.)"""
    core = (
        f"regexp_replace(replace(upper(regexp_replace(trim({expr}), '\\.0+$', '')), 'O', '0'), "
        "'[\\s.\\-]', '', 'g')"
    )
    # (each step bound once, as a list's one item)
    return (
        f"[CASE WHEN regexp_full_match(d, '\\d{{9}}') THEN d ELSE {expr} END FOR d IN "
        f"[CASE WHEN length(c) = 8 THEN '0' || c ELSE c END FOR c IN [{core}]]][1]"
    )


def rows_sql(since: int, upto: int) -> str:
    """Every row of every kind naming a person in one of its parts, stored after upload
    ``since`` and up to ``upto``: who (the folded name when it names someone, the
    document and badge as compared), where, when, and the inmate and plate beside it."""
    parts = []
    for kind, m in _sources():
        spec = SPECS[kind]
        key = m.name or fold_sql(m.written)
        status = m.status or name_status_sql(key)
        name = f"CASE WHEN {status} = 'named' THEN {key} END"
        doc, badge = _identifier(_col(m.document)), _identifier(_col(m.badge))
        if m.document_type:
            # a DUI is compared as its nine digits however it was written
            dui = _dui_digits(_col(m.document))
            doc = _identifier(
                f"CASE WHEN {m.document_type} = 'DUI' THEN {dui} ELSE {_col(m.document)} END"
            )
            # a credential's number (an institution's card, a bar card) is compared as a
            # badge: one person holds several over the years, and clerks write other
            # numbers in its place; a document (DUI, passport) is one per person
            credential = f"{m.document_type} IN {CREDENTIALS}"
            doc, badge = (
                f"CASE WHEN {credential} THEN NULL ELSE {doc} END",
                f"coalesce({badge}, CASE WHEN {credential} THEN {doc} END)",
            )
        parts.append(
            f"SELECT '{kind}' AS kind, record_key, '{m.part}' AS part, {m.written} AS name, "
            f"{name} AS name_key, {doc} AS id_number, {_col(m.document_type)} AS id_type, "
            f"{badge} AS badge, {spec.facility} AS facility, "
            f"{spec.happened_at or 'NULL'}::TIMESTAMP AS happened_at, "
            f"{_col(m.inmate)}::VARCHAR AS inmate_id, {_col(m.plate)}::VARCHAR AS plate_key, "
            f"upload_seq FROM {kind} WHERE upload_seq > {int(since)} AND upload_seq <= {int(upto)}"
        )
    body = " UNION ALL ".join(parts)
    return (
        f"SELECT * FROM ({body}) WHERE name_key IS NOT NULL OR id_number IS NOT NULL "
        "OR badge IS NOT NULL"
    )


# --- the model ------------------------------------------------------------------------


def _level(sql: str, label: str, m: float, u: float, tf: str | None = None, **kw) -> dict:
    level = {"sql_condition": sql, "label_for_charts": label, "m_probability": m}
    level["u_probability"] = u
    if tf:
        level.update(tf_adjustment_column=tf, tf_adjustment_weight=1.0)
    return {**level, **kw}


def _null(sql: str) -> dict:
    return {"sql_condition": sql, "label_for_charts": "null", "is_null_level": True}


# as many words, one letter apart (as written or as they sound): the words are sorted, so
# a slip anywhere but a word's first letter keeps them in the same order. The edit
# distance is slow: only pairs already alike (Jaro-Winkler) are measured by it.
_SAME_COUNT_ONE_LETTER = (
    "CASE WHEN len(words_l) <> len(words_r) THEN false "
    "WHEN jaro_winkler_similarity(canonical_l, canonical_r) < 0.9 THEN false "
    "ELSE damerau_levenshtein(canonical_l, canonical_r) <= 1 "
    "OR damerau_levenshtein(sounds_key_l, sounds_key_r) <= 1 END"
)
_ONE_CHARACTER = (
    "CASE WHEN abs(length(id_number_l) - length(id_number_r)) > 1 "
    "OR jaro_winkler_similarity(id_number_l, id_number_r) < 0.8 THEN false "
    "ELSE damerau_levenshtein(id_number_l, id_number_r) <= 1 END"
)
# initials standing for words ("J. C. Pérez", "Juan Carlos Pérez López"): the full words of
# one are among the other's, and its initials among the other's first letters
_INITIALS = " OR ".join(
    f"(len(full_sounds_{a}) BETWEEN 1 AND len(sounds_{a}) - 1 "
    f"AND list_has_all(sounds_{b}, full_sounds_{a}) AND list_has_all(initials_{b}, initials_{a}))"
    for a, b in (("l", "r"), ("r", "l"))
)
# Each comparison's levels, from the strongest; the labels name the sentences that
# explain a link (``REASONS``). The m and u values are the model's prior: used as they are
# on a store too small to train on, and EM's starting point otherwise. What the store can
# teach is trained (the u values by random pairs, the names' m values by EM on mentions
# sharing a document, the chance two mentions are one person); what is policy is fixed:
# a document identifies one person (two people sharing one is fraud or error, which no
# sample of mostly-matching pairs measures), completely different names or documents are
# two people unless an auditor merges them, and visiting other inmates is weak evidence
# (a lawyer sees many).
_FIXED = {"fix_m_probability": True}
COMPARISONS = [
    {
        "output_column_name": "name",
        "comparison_levels": [
            _null("canonical_l IS NULL OR canonical_r IS NULL"),
            _level("canonical_l = canonical_r", "same_words", 0.80, 0.001, "canonical"),
            _level("sounds_key_l = sounds_key_r", "same_sounds", 0.06, 0.0005, "canonical"),
            # (the fuzzy levels weigh what they are, not how common the name is: two
            # people one letter apart, "Mario" and "María", are not rarer for a rare name)
            _level(_SAME_COUNT_ONE_LETTER, "one_letter", 0.04, 0.0005),
            _level(
                "len(sounds_l) <> len(sounds_r) AND least(len(sounds_l), len(sounds_r)) >= 2 "
                "AND (list_has_all(sounds_l, sounds_r) OR list_has_all(sounds_r, sounds_l))",
                "dropped_words",
                0.06,
                0.002,
            ),
            _level(_INITIALS, "initials", 0.04, 0.001),
            # the same words with two of them swapped ("Carmen Argueta Martínez", "Carmen
            # Martínez Argueta"): clerks turn a name round, they seldom swap surnames, and
            # two cousins can be written so; fixed at little evidence (a document decides)
            _level(
                "list_sort(sounds_l) = list_sort(sounds_r)",
                "swapped_words",
                0.001,
                0.00025,
                **_FIXED,
                fix_u_probability=True,
            ),
            _level("ELSE", "other_name", 1e-4, 0.996, **_FIXED),
        ],
    },
    {
        "output_column_name": "identifier",
        "comparison_levels": [
            _null(
                "(id_number_l IS NULL AND badge_l IS NULL) "
                "OR (id_number_r IS NULL AND badge_r IS NULL)"
            ),
            _level(
                "id_number_l = id_number_r",
                "same_document",
                0.90,
                1e-8,
                **_FIXED,
                fix_u_probability=True,
            ),
            _level(
                "id_number_l = badge_r OR badge_l = id_number_r",
                "document_as_badge",
                0.04,
                1e-8,
                **_FIXED,
                fix_u_probability=True,
            ),
            _level(
                _ONE_CHARACTER,
                "document_one_character",
                0.02,
                1e-6,
                **_FIXED,
                fix_u_probability=True,
            ),
            _level(
                "id_number_l <> id_number_r AND coalesce(id_type_l = id_type_r, true)",
                "other_document",
                0.002,
                0.55,
                **_FIXED,
            ),
            _level("badge_l = badge_r", "same_badge", 0.02, 0.0005, "badge", **_FIXED),
            _level("badge_l <> badge_r", "other_badge", 0.003, 0.05, **_FIXED),
            # a document on one side, only a badge on the other: two people unless something
            # else links them (a relative in the book, a contractor's card under one name)
            _level("ELSE", "other_identifiers", 0.002, 0.40, **_FIXED),
        ],
    },
    {
        "output_column_name": "inmates",
        "comparison_levels": [
            _null("len(inmates_l) = 0 OR len(inmates_r) = 0"),
            _level(
                "len(list_intersect(inmates_l, inmates_r)) > 0", "same_inmate", 0.6, 0.002, **_FIXED
            ),
            _level("ELSE", "other_inmates", 0.4, 0.998, **_FIXED),
        ],
    },
]
# A name's trained m values are kept at least this: a kind of variant the store happens not
# to show (no dropped surname in training) is not thereby impossible.
M_FLOOR = 0.01
# Candidate pairs: a shared document or badge (also one written as the other), the same
# name, or, where one of the two has neither document nor badge, two words sounding alike
# (a dropped word, a misspelt third one, initials): a spelling with an identifier meets
# its variants through it, and the commonest pairs of words ("José", "Hernández") are not
# compared across every documented namesake.
BLOCKING = [
    {"blocking_rule": "l.id_number = r.id_number"},
    {"blocking_rule": "l.badge = r.badge"},
    {"blocking_rule": "l.id_number = r.badge"},
    {"blocking_rule": "l.badge = r.id_number"},
    {"blocking_rule": "l.name_block = r.name_block"},  # the name, unless crowded
    # a bare mention's pairs (``bare_pairs``: those of a mention without document or badge,
    # else none) against any mention's, each way round: a join on the pairs alone, filtered
    # for a bare side after, paired every namesake holding an identifier with every other
    # (17,000 mentions of one name: 8 s)
    {"blocking_rule": "l.bare_pairs = r.pairs", "arrays_to_explode": ["bare_pairs", "pairs"]},
    {"blocking_rule": "l.pairs = r.bare_pairs", "arrays_to_explode": ["bare_pairs", "pairs"]},
]
COLUMNS = [
    "canonical",
    "sounds_key",
    "words",
    "sounds",
    "id_number",
    "id_type",
    "badge",
    "inmates",
]


def prior_settings(probability: float = 1e-4) -> dict:
    """The model before training: Splink settings with the prior m and u values."""
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "mention_key",
        "probability_two_random_records_match": probability,
        "comparisons": json.loads(json.dumps(COMPARISONS)),
        "blocking_rules_to_generate_predictions": BLOCKING,
        "retain_matching_columns": True,
        "retain_intermediate_calculation_columns": True,
        "additional_columns_to_retain": [],
        "max_iterations": 25,
        "em_convergence": 0.001,
    }


@dataclass
class Model:
    """A linkage model as kept: Splink's settings (trained m and u values), the threshold
    and what training did, in ``data/models/persons-<id>/``, hashed."""

    model_id: str
    splink: dict
    threshold: float
    trained: dict
    content_hash: str = ""
    path: Path | None = None
    new: bool = False


def models_dir(store: Store) -> Path:
    """Where linkage models are kept: the store's models folder (beside a database file,
    or beside a lake's shared data folder, which every machine mounts)."""
    return store.models


def save_model(store: Store, model: Model) -> Model:
    root = models_dir(store)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = root / f".persons-{os.getpid()}-{time.time_ns()}"
    staging.mkdir(mode=0o700)
    try:
        (staging / "splink.json").write_text(json.dumps(model.splink, indent=1, sort_keys=True))
        meta = {"version": MODEL_VERSION, "threshold": model.threshold, "trained": model.trained}
        (staging / "linkage.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        digest, _ = folder_hash(staging)
        model.model_id = "persons-" + digest[:16]
        path = root / model.model_id
        publish(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    model.content_hash, model.path, model.new = digest, path, True
    return model


def load_model(store: Store) -> tuple[Model | None, str]:
    """The newest linkage model, its files checked against their hash before they are
    read; or None and why not."""
    with store.read() as con:
        found = con.execute(
            "SELECT model_id, content_hash FROM person_models ORDER BY fitted_at DESC LIMIT 1"
        ).fetchall()
    if not found:
        return None, "no linkage model yet"
    model_id, digest = found[0]
    path = models_dir(store) / model_id
    # a plain id whose folder is inside the models folder (not a link out of it)
    if not re.fullmatch(r"persons-[0-9a-f]{16}", model_id or "") or not path.is_dir():
        return None, f"the files of linkage model {model_id} are gone"
    if path.resolve().parent != models_dir(store).resolve():
        return None, f"linkage model {model_id} is not a folder inside the models folder"
    checked, files = folder_hash(path)
    if checked != digest:
        return None, f"the files of linkage model {model_id} changed since it was fitted"
    meta = json.loads(files["linkage.json"])
    if meta.get("version") != MODEL_VERSION:
        return None, f"linkage model {model_id} is of an earlier version"
    splink = json.loads(files["splink.json"])
    return Model(model_id, splink, meta["threshold"], meta["trained"], digest, path), ""


# --- mentions --------------------------------------------------------------------------


def _parsed(name_keys: list[str]) -> pl.DataFrame:
    """Each folded name once: its words, canonical form, sounds and commonness (built by
    columns: a frame from one dict per name took half the time)."""
    parsed = [names.parse(key) for key in name_keys]
    return pl.DataFrame(
        {
            "name_key": name_keys,
            "canonical": [n.canonical or None for n in parsed],
            "words": [list(n.words) for n in parsed],
            "sounds": [list(n.sounds) for n in parsed],
            "sounds_key": [n.sounds_key or None for n in parsed],
            "commonness": [names.commonness(n) for n in parsed],
        },
        schema={
            "name_key": pl.String,
            "canonical": pl.String,
            "words": pl.List(pl.String),
            "sounds": pl.List(pl.String),
            "sounds_key": pl.String,
            "commonness": pl.Float64,
        },
    )


_KEY = (
    "md5(coalesce(canonical, '') || '|' || coalesce(id_number, '') || '|' "
    "|| coalesce(badge, ''))[:16]"
)
# Every pair of a mention's name sounds, each pair in sorted order ("a b", a <= b). The
# sorted list is bound once (the one-element list around it): sorted again for each
# sound, it took 0.30 s instead of 0.18 s over 267k mentions.
_PAIRS = (
    "list_transform([list_sort(sounds)], lambda ss: flatten(list_transform(ss, lambda a, i: "
    "list_transform(ss[i + 1:], lambda b: a || ' ' || b))))[1]"
)


def _mentions(con, rows: str) -> None:
    """From the table ``rows`` (``rows_sql``): ``rows_keyed`` (each row with its mention
    key) and ``new_mentions`` (each mention once, with what linkage compares)."""
    keys = [k for (k,) in con.execute(f"SELECT DISTINCT name_key FROM {rows}").fetchall() if k]
    frame_table(con, "parsed", _parsed(keys))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE rows_keyed AS
        SELECT r.*, p.canonical, {_KEY} AS mention_key
        FROM {rows} r LEFT JOIN parsed p USING (name_key)"""
    )
    # Each step below keeps to aggregates DuckDB can spill to disk: a mention's most
    # written document type is a grouped count's largest (of types as often written, the
    # last alphabetically; mode() kept every group's values in memory, 4.4 GB and 20 s for
    # 10M mentions), and the inmates a mention visited are listed only for the mentions that
    # visited more than one (a list per mention took the memory limit and more).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE mention_rows AS
        SELECT mention_key, any_value(name_key) AS name_key,
               any_value(id_number) AS id_number, any_value(badge) AS badge,
               min(inmate_id) AS inmate_lo, max(inmate_id) AS inmate_hi,
               min(upload_seq) AS first_seq, count(*) AS row_count
        FROM rows_keyed GROUP BY mention_key"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE new_mentions AS
        WITH typed AS (
            SELECT mention_key, arg_max(id_type, (n, id_type)) AS id_type
            FROM (SELECT mention_key, id_type, count(*) AS n FROM rows_keyed
                  WHERE id_type IS NOT NULL GROUP BY ALL)
            GROUP BY mention_key),
        several AS (
            SELECT mention_key, list_sort(list_distinct(list(inmate_id)))[1:50] AS inmates
            FROM rows_keyed
            SEMI JOIN (SELECT mention_key FROM mention_rows WHERE inmate_lo <> inmate_hi) s
              USING (mention_key)
            WHERE inmate_id IS NOT NULL
            GROUP BY mention_key)
        SELECT g.mention_key, p.canonical, p.words, p.sounds, p.sounds_key, g.id_number,
               t.id_type, g.badge,
               CASE WHEN g.inmate_lo IS NULL THEN []::VARCHAR[]
                    WHEN g.inmate_lo = g.inmate_hi THEN [g.inmate_lo]
                    ELSE s.inmates END AS inmates,
               coalesce(p.commonness, 1.0) AS commonness, g.first_seq, g.row_count
        FROM mention_rows g LEFT JOIN typed t USING (mention_key)
        LEFT JOIN several s USING (mention_key)
        LEFT JOIN parsed p USING (name_key)"""
    )
    con.execute("DROP TABLE mention_rows")


def _unjunked(junk: str = "junk") -> str:
    """SQL: a mention's ``id_number``, NULL when it is one of the junk documents (the
    table ``junk`` of ``id_number``): no identifier."""
    return f"CASE WHEN id_number IN (SELECT id_number FROM {junk}) THEN NULL ELSE id_number END"


def _for_linkage(con, table: str, out: str, junk: str) -> None:
    """A mentions table as the model reads it: name-word pairs for blocking, junk
    documents (``junk``: a table of ``id_number``) left out, and the name as a blocking
    key unless it is crowded (the ``crowded`` table of ``canonical``)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT *, {_PAIRS} AS pairs,
               CASE WHEN canonical IN (SELECT canonical FROM crowded) THEN NULL
                    ELSE canonical END AS name_block,
               CASE WHEN id_number IS NULL AND badge IS NULL THEN pairs
                    ELSE [NULL]::VARCHAR[] END AS bare_pairs,
               list_sort(list_transform(words, lambda w: w[1])) AS initials,
               list_filter(sounds, lambda x: len(x) > 1) AS full_sounds
        FROM (
            SELECT mention_key, canonical, sounds_key, coalesce(words, []) AS words,
                   coalesce(sounds, []) AS sounds,
                   {_unjunked(junk)} AS id_number,
                   id_type, badge, coalesce(inmates, []) AS inmates
            FROM {table})"""
    )


def _tf_tables(con, every: str, among: str | None = None) -> None:
    """Term frequencies over every mention (``every``), as temporary tables; with
    ``among`` (a table of ``canonical`` and ``badge``), for its values alone. A name's is
    how often two people share it: its share of the population (``names.commonness``), or,
    when the store has namesakes (the name under several identity documents), their share
    of the mentions. A mention is one spelling of one person, so a name's own count says
    nothing of namesakes: two spellings of one rare name are not two people sharing it. A
    badge's is its share of the mentions (a visitor pass handed to many is weak evidence)."""
    only = (lambda c: f"AND {c} IN (SELECT {c} FROM {among})") if among else (lambda c: "")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tf_canonical AS
        SELECT canonical,
               greatest(any_value(commonness),
                        (count(DISTINCT id_number) - 1) / (SELECT count(*) FROM {every}))
                 AS tf_canonical
        FROM {every} WHERE canonical IS NOT NULL {only("canonical")} GROUP BY canonical"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tf_badge AS
        SELECT badge, count(*) / (SELECT count(*) FROM {every}) AS tf_badge
        FROM {every} WHERE badge IS NOT NULL {only("badge")} GROUP BY badge"""
    )


# --- training and prediction ---------------------------------------------------------


def _linker(con, table: str, splink: dict):
    from splink import Linker
    from splink.backends.duckdb import DuckDBAPI

    db = DuckDBAPI(connection=con)
    # candidate pairs as this version finds them (a kept model may name older rules)
    splink = {**splink, "blocking_rules_to_generate_predictions": BLOCKING}
    linker = Linker(db.register(table), splink, log_level=None)  # its progress is not ours
    for column in ("canonical", "badge"):
        linker.table_management.register_term_frequency_lookup(db.register(f"tf_{column}"), column)
    return db, linker


def train(con, table: str) -> tuple[dict, dict]:
    """Fit the model on the mentions in ``table``: the chance two mentions are one person
    (from those sharing a document, and never below one in the number of mentions), the u
    values by random sampling, and the names' m values by EM on the mentions sharing a
    document (nearly all of them one person: how their names differ is how one person's
    names differ). With too few mentions or pairs, the prior values stay; a name variant
    the store does not show keeps a floor (``M_FLOOR``)."""
    n = _count(con, table)
    summary: dict = {"mentions": n}
    pairs_total = max(n * (n - 1) / 2, 1)
    same_doc = con.execute(
        f"SELECT coalesce(sum(c * (c - 1) / 2), 0)::BIGINT FROM (SELECT count(*) AS c "
        f"FROM {table} WHERE id_number IS NOT NULL GROUP BY id_number)"
    ).fetchall()[0][0]
    # a document finds about half the pairs that are one person; and at least one person
    # in two is written more than one way (a pair per person: 1 / n)
    probability = min(max(2 * same_doc / pairs_total, 1 / max(n, 2)), 0.05)
    splink = prior_settings(probability)
    summary.update(
        probability_two_random_records_match=probability, pairs_sharing_a_document=same_doc
    )
    if n < 50:
        summary["trained"] = "nothing: too few mentions, the prior values"
        return splink, summary
    _db, linker = _linker(con, table, splink)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=min(U_SAMPLE_PAIRS, pairs_total), seed=7, min_count_per_level=None, num_chunks=1
    )
    summary["trained"] = "u values"
    if same_doc >= TRAIN_MIN_PAIRS:
        em_log = logging.getLogger("splink.internals.expectation_maximisation")
        quiet = _UnseenLevels()
        em_log.addFilter(quiet)
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                "l.id_number = r.id_number", estimate_without_term_frequencies=True
            )
        finally:
            em_log.removeFilter(quiet)
        summary["trained"] = "u values, and the names' m values (EM on shared documents)"
    trained = linker.misc.save_model_to_json()
    trained["probability_two_random_records_match"] = probability
    summary["floored"] = _floor(trained)
    return trained, summary


class _UnseenLevels(logging.Filter):
    """Splink warns on the console of each name level the store's mentions do not show
    ("Level initials on comparison name not observed in dataset, unable to train m
    value"): lines in the middle of a demo's or a run's summary. Such a level keeps its
    prior m value (``prior_settings``), never below ``M_FLOOR`` (``_floor``), as this
    module intends: the warning tells the user nothing to do. Splink's other warnings still
    show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "not observed in dataset" not in record.getMessage()


def _floor(trained: dict) -> list[str]:
    """Keep each name level's m value at least ``M_FLOOR`` (the others scaled to make room);
    the levels raised."""
    raised = []
    for comparison in trained["comparisons"]:
        levels = [
            lv
            for lv in comparison["comparison_levels"]
            if not lv.get("is_null_level") and not lv.get("fix_m_probability")
        ]
        if comparison["output_column_name"] != "name" or not levels:
            continue
        low = [lv for lv in levels if (lv.get("m_probability") or 0) < M_FLOOR]
        for lv in low:
            lv["m_probability"] = M_FLOOR
            raised.append(lv["label_for_charts"])
        free = 1 - sum(
            lv["m_probability"]
            for lv in comparison["comparison_levels"]
            if lv.get("fix_m_probability")
        )
        total = sum(lv["m_probability"] for lv in levels)
        for lv in levels:
            lv["m_probability"] *= free / total
    return raised


def _predict(con, model: Model, new: str | None, every: str) -> str:
    """Score candidate pairs: among ``every`` mention (a full linkage, ``new`` None), or
    of the ``new`` mentions among themselves and against the others. Returns the name of
    the table of pairs (one row per pair, its weight and each comparison's part)."""
    db, linker = _linker(con, every, model.splink)
    floor = {"threshold_match_weight": EXPLAIN_FLOOR}
    if new is None:
        frames = [linker.inference.predict(**floor, warning_mode="never")]
    else:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE old_mentions AS SELECT * FROM {every} "
            f"WHERE mention_key NOT IN (SELECT mention_key FROM {new})"
        )
        fresh, old = db.register(new), db.register("old_mentions")
        frames = [
            linker.inference.predict_within(fresh, **floor, warning_mode="never"),
            linker.inference.predict_between(fresh, old, **floor, warning_mode="never"),
        ]
    parts = " UNION ALL ".join(
        f"SELECT mention_key_l AS a, mention_key_r AS b, match_weight, match_probability, "
        f"gamma_name, gamma_identifier, gamma_inmates, "
        f"mw_name + coalesce(mw_tf_adj_name, 0) AS w_name, "
        f"mw_identifier + coalesce(mw_tf_adj_identifier, 0) AS w_identifier, "
        f"mw_inmates AS w_inmates FROM {f.physical_name}"
        for f in frames
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE pairs AS {parts}")
    return "pairs"


def level_labels(splink: dict) -> dict[str, dict[int, str]]:
    """Per comparison, its gamma values (Splink numbers them from the last level, 0, up;
    the null level is -1) -> the level's label."""
    out = {}
    for c in splink["comparisons"]:
        levels = [lv for lv in c["comparison_levels"] if not lv.get("is_null_level")]
        out[c["output_column_name"]] = {
            len(levels) - 1 - i: lv["label_for_charts"] for i, lv in enumerate(levels)
        } | {-1: "null"}
    return out


# --- clustering ------------------------------------------------------------------------


def _close(a: str, b: str) -> bool:
    """Two documents one person may have written: equal, or one character apart."""
    if a == b:
        return True
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long = sorted((a, b), key=len)
    return len(long) - len(short) == 1 and any(
        long[:i] + long[i + 1 :] == short for i in range(len(long))
    )


@dataclass
class Clusters:
    """Persons as sets of mentions, joined greedily. A join is refused when the two
    persons have documents and none of one is (up to one character) one of the other's,
    when it would give one person two established documents (``ESTABLISHED_ROWS``), or
    when an auditor split them apart."""

    parent: dict[str, str] = field(default_factory=dict)
    docs: dict[str, set[str]] = field(default_factory=dict)
    established: dict[str, set[str]] = field(default_factory=dict)
    sides: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    order: dict[str, tuple] = field(default_factory=dict)  # root -> (first_seq, key): oldest

    def add(self, key: str, doc: str | None, first_seq: int, sides=(), rows: int = 0) -> None:
        """A mention: its key, document, first upload, the auditors' splits it is on a
        side of, and how many rows wrote it."""
        self.parent[key] = key
        self.docs[key] = {doc} if doc else set()
        self.established[key] = {doc} if doc and rows >= ESTABLISHED_ROWS else set()
        self.sides[key] = set(sides)
        self.order[key] = (first_seq, key)

    def find(self, key: str) -> str:
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def conflict(self, a: str, b: str) -> bool:
        if any((k, 1 - s) in self.sides[b] for k, s in self.sides[a]):
            return True
        if len(self.established[a] | self.established[b]) > 1:
            return True
        da, db = self.docs[a], self.docs[b]
        return bool(da and db) and not any(_close(x, y) for x in da for y in db)

    def union(self, a: str, b: str, force: bool = False) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if not force and self.conflict(ra, rb):
            return False
        if self.order[rb] < self.order[ra]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.docs[ra] |= self.docs.pop(rb)
        self.established[ra] |= self.established.pop(rb)
        self.sides[ra] |= self.sides.pop(rb)
        self.order.pop(rb)
        return True


def _overrides(con) -> tuple[list[list[str]], dict[str, set[tuple[int, int]]]]:
    """The auditors' merges (groups of mentions to join first) and splits (each mention's
    sides: (split number, 0 or 1)), a later act undoing an earlier one it contradicts."""
    acts = con.execute(
        "SELECT seq, action, mentions, others FROM person_overrides ORDER BY seq"
    ).fetchall()
    merges: list[list[str]] = []
    splits: list[tuple[set[str], set[str]]] = []
    for _seq, action, mentions, others in acts:
        group = set(mentions) | set(others or [])
        if action == "merge":
            splits = [(a, b) for a, b in splits if not (a & group and b & group)]
            merges.append(sorted(group))
        else:
            a, b = set(mentions), set(others)
            merges = [m for m in merges if not (a & set(m) and b & set(m))]
            splits.append((a, b))
    sides: dict[str, set[tuple[int, int]]] = {}
    for k, (a, b) in enumerate(splits):
        for key in a:
            sides.setdefault(key, set()).add((k, 0))
        for key in b:
            sides.setdefault(key, set()).add((k, 1))
    return merges, sides


def cluster(
    mentions: list[tuple[str, str | None, int, int]],
    edges: list[tuple[str, str, float]],
    threshold_weight: float,
    merges: list[list[str]] = (),
    sides: dict[str, set[tuple[int, int]]] | None = None,
    known: dict[str, str] | None = None,
) -> tuple[dict[str, str], dict[tuple[str, str], bool]]:
    """Join mentions (key, document, first upload, rows that wrote it) into persons: the
    auditors' merges first, then the persons already known (``known``: mention -> person
    id, kept as they are), then each pair at or above ``threshold_weight``, strongest
    first, unless it would join conflicting persons (``Clusters``). Returns mention ->
    person id (the key of the person's oldest mention) and, per pair considered, whether
    it joined."""
    sides = sides or {}
    c = Clusters()
    for key, doc, first, written in mentions:
        c.add(key, doc, first, sides.get(key, ()), written)
    present = set(c.parent)
    for group in merges:
        group = [k for k in group if k in present]
        for other in group[1:]:
            c.union(group[0], other, force=True)
    if known:
        by_person: dict[str, list[str]] = {}
        for key, person in known.items():
            if key in present:
                by_person.setdefault(person, []).append(key)
        for keys in by_person.values():
            for other in keys[1:]:
                c.union(keys[0], other, force=True)
    accepted = {}
    for a, b, w in sorted(edges, key=lambda e: (-e[2], e[0], e[1])):
        if w < threshold_weight:
            accepted[(a, b)] = False
            continue
        accepted[(a, b)] = c.union(a, b)
    people = {key: c.find(key) for key in c.parent}
    return people, accepted


# --- linking ---------------------------------------------------------------------------


@dataclass
class LinkReport:
    """What a linkage did: its scope, rows, mentions (new ones), persons and joins."""

    scope: str
    rows: int = 0
    mentions: int = 0
    new_mentions: int = 0
    known_read: int = 0  # the known mentions it read (an incremental one: those near)
    persons: int = 0
    joined: int = 0
    crowded_names: int = 0  # names too common to pair mentions by (CROWDED_NAME_MENTIONS)
    model_id: str = ""
    trained: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


def weight_of(probability: float) -> float:
    """A match probability as a match weight (log2 of its odds)."""
    return math.log2(probability / (1 - probability))


@dataclass
class _Job:
    """One linkage: where, against which model (None: train one, link every row), the
    uploads it covers (after ``since``, up to ``upto``) and the time each step took."""

    store: Store
    model: Model | None
    why: str
    since: int
    upto: int
    triggered_by: str
    workdir: Path | None
    seconds: dict[str, float] = field(default_factory=dict)
    # In an incremental linkage, the known mentions and persons it did not read (no new
    # mention can meet them): counted into its report, not clustered.
    outside: tuple[int, int] = (0, 0)
    started: datetime = field(default_factory=now)

    @property
    def full(self) -> bool:
        return self.model is None


def link(
    store: Store, refit: bool = False, triggered_by: str = "cli", workdir: Path | None = None
) -> LinkReport:
    """Link the rows stored since the last linkage to persons: all of them, with a new
    model, when ``refit`` or when there is no usable model; otherwise the new rows'
    mentions against the kept model and the persons known. The heavy work reads the
    store and runs in a private DuckDB; one short write stores the result. When another
    process stored a linkage meanwhile (two runs at once, on one machine or on a shared
    store's several), this one is done again from what that one left. A linkage that
    fails is recorded as failed in ``runs`` and raised."""
    overtaken = 0
    while True:
        with store.read() as con:
            upto, since = newest_upload(con), watermark(con, "persons") or 0
        model, why = (None, "asked to refit") if refit else load_model(store)
        if model is not None and upto <= since:
            return LinkReport("nothing new since the last linkage", model_id=model.model_id)
        job = _Job(store, model, why, since, upto, triggered_by, workdir)
        try:
            return _link(job)
        except _Overtaken:
            overtaken += 1
            if overtaken == _ATTEMPTS:
                raise
        except Exception as exc:
            scope = f"{'full' if job.full else 'incremental'} linkage"
            ours = isinstance(exc, (DetectorError, duckdb.Error, OSError))
            failure = exc if ours else LinkageFailed(exc)
            record_failed(store, "persons", triggered_by, scope, job.started, failure)
            if ours:
                raise
            raise failure from exc


_ATTEMPTS = 3


class LinkageFailed(DetectorError):
    """Linkage stopped on an error of its own (Splink's: a query that ran out of memory):
    one line saying why, not the query Splink ran."""

    def __init__(self, exc: Exception) -> None:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Error was:")),
                   lines[0] if lines else type(exc).__name__)  # fmt: skip
        super().__init__(f"linkage failed: {why[:300]}")


class _Overtaken(StoreBusy):
    """Another linkage was stored after this one read the store: its rows' persons would be
    stored twice (or a newer linkage undone), so this one is done again."""

    def __init__(self) -> None:
        super().__init__("busy: other linkages were stored meanwhile, three times over")


def _link(job: _Job) -> LinkReport:
    t = time.perf_counter()
    with TemporaryDirectory(dir=job.workdir or job.store.scratch, prefix=".persons-") as tmp:
        tmp = Path(tmp)
        con = private_con(tmp)
        try:
            with job.store.read() as store:
                store.execute(
                    f"COPY ({rows_sql(0 if job.full else job.since, job.upto)}) "
                    f"TO {sql_string(tmp / 'rows.parquet')} (FORMAT parquet)"
                )
                merges, sides = _overrides(store)
                con.execute(
                    f"CREATE TEMP TABLE rows AS SELECT * FROM read_parquet({sql_string(tmp / 'rows.parquet')})"
                )
                _mentions(con, "rows")
                if not job.full:
                    named = sorted({k for group in merges for k in group} | set(sides))
                    job.outside = _nearby(store, con, tmp, named)
            job.seconds["read"] = time.perf_counter() - t
            report, model = _link_private(con, job, tmp, merges, sides)
            t = time.perf_counter()
            _outputs(con, tmp, model, job.full)
            # the private DuckDB's tables (every row read, keyed) leave memory before the
            # store's write, which reads the outputs from their files: open beside that
            # write's checkpoint, the two took 3.9 GB (10M visits, a first linkage)
            con.close()
            _store(job, tmp, report, model)
            job.seconds["write"] = time.perf_counter() - t
        finally:
            con.close()
    report.seconds = job.seconds
    return report


# Read every known mention in an incremental linkage, not only those the new ones can meet.
READ_EVERY_KNOWN = False


def _nearby(store, con, tmp: Path, named: list[str]) -> tuple[int, int]:
    """For an incremental linkage: from the ``store``, the known mentions the new ones
    (``new_mentions`` on the private ``con``) can meet, and what linkage reads of every
    other, written to ``tmp`` for the private connection.

    The known mentions kept are those a blocking rule (``BLOCKING``) can pair with a new
    one never seen before (a shared document or badge, the same name, a shared pair of name
    sounds where one side has no identifier), the new rows' own known mentions and those
    the auditors' merges and splits name (``named``), closed over the persons they belong
    to (a known person is clustered whole or not at all). Only a mention never seen is
    paired (``_predict``), so the new rows' known mentions are kept for their rows' persons
    but block nothing: at 10M visits, the next 1% wrote 15 mentions never seen among 88,000
    known ones, whose namesakes were every known mention (399,532 read instead of 78,596).
    The documents left out as junk and the term frequencies are computed over every
    mention, for the values those mentions hold.
    Returns the known mentions and persons not kept (counted, not read). With
    ``READ_EVERY_KNOWN`` set, every known mention is kept (the result must be the same:
    the tests compare the two)."""
    con.execute(
        "COPY (SELECT mention_key, canonical, sounds, id_number, badge, commonness "
        f"FROM new_mentions) TO {sql_string(tmp / 'fresh.parquet')} (FORMAT parquet)"
    )
    store.execute(
        "CREATE OR REPLACE TEMP TABLE fresh AS "
        f"SELECT * FROM read_parquet({sql_string(tmp / 'fresh.parquet')})"
    )
    store.execute(
        """CREATE OR REPLACE TEMP TABLE unknown AS
        SELECT mention_key, canonical, id_number, badge, commonness
        FROM fresh ANTI JOIN person_mentions USING (mention_key)"""
    )
    store.execute(
        """CREATE OR REPLACE TEMP VIEW every_known AS
        SELECT mention_key, canonical, id_number, badge, commonness FROM person_mentions
        UNION ALL SELECT * FROM unknown"""
    )
    # junk documents are counted over every mention, for the documents a step reads, and
    # so are crowded names, for the new mentions' names
    store.execute("CREATE OR REPLACE TEMP TABLE junk AS " + _junk_sql("every_known", "fresh"))
    store.execute("CREATE OR REPLACE TEMP TABLE crowded AS " + _crowded_sql("every_known", "fresh"))
    unjunked = _unjunked()
    # the mentions never seen: the ones a blocking rule pairs
    store.execute(
        f"""CREATE OR REPLACE TEMP TABLE f AS
        SELECT mention_key, canonical, {unjunked} AS id_number, badge, {_PAIRS} AS pairs
        FROM (SELECT * REPLACE (coalesce(sounds, []) AS sounds) FROM fresh
              SEMI JOIN unknown USING (mention_key))"""
    )
    # known mentions sharing a pair of name sounds with a new one (which of them block
    # depends on whether either side has an identifier); the pairs are those of each
    # distinct list of sounds, far fewer than the mentions (16,901 lists for 267k
    # mentions at 512k visits: 0.40 -> 0.1 s)
    store.execute(
        f"""CREATE OR REPLACE TEMP TABLE sharing AS
        WITH fp AS (SELECT p, bool_or(id_number IS NULL AND badge IS NULL) AS bare
                    FROM (SELECT unnest(pairs) AS p, id_number, badge FROM f) GROUP BY p)
        SELECT k.mention_key, k.id_number, k.badge, s.fresh_bare
        FROM person_mentions k
        JOIN (SELECT sounds, bool_or(fp.bare) AS fresh_bare
              FROM (SELECT sounds, unnest({_PAIRS}) AS p
                    FROM (SELECT DISTINCT sounds FROM person_mentions WHERE len(sounds) > 1))
              JOIN fp USING (p) GROUP BY sounds) s USING (sounds)"""
    )
    store.execute(
        "INSERT INTO junk "
        + _junk_sql("every_known", "sharing")
        + " EXCEPT SELECT id_number FROM junk"
    )
    # the known mentions a blocking rule pairs with a new one never seen: the only ones
    # the model compares (the others are read for their persons, whom the new rows name)
    store.execute(
        f"""CREATE OR REPLACE TEMP TABLE blocking AS
        WITH ids AS (SELECT id_number AS v FROM f WHERE id_number IS NOT NULL
                     UNION SELECT badge FROM f WHERE badge IS NOT NULL)
        -- (each way a join of its own: one pass with five ORs was slower)
        SELECT p.mention_key FROM person_mentions p SEMI JOIN ids ON p.id_number = ids.v
        UNION SELECT p.mention_key FROM person_mentions p SEMI JOIN ids ON p.badge = ids.v
        UNION SELECT p.mention_key FROM person_mentions p
              SEMI JOIN (SELECT canonical FROM f EXCEPT SELECT canonical FROM crowded) c
                ON p.canonical = c.canonical
        UNION SELECT mention_key FROM sharing
        WHERE fresh_bare OR (({unjunked}) IS NULL AND badge IS NULL)
        UNION SELECT mention_key FROM person_mentions WHERE $every""",
        {"every": READ_EVERY_KNOWN},
    )
    store.execute(
        """CREATE OR REPLACE TEMP TABLE near AS
        WITH seed AS (
            SELECT mention_key FROM fresh
            UNION SELECT unnest($named::VARCHAR[])
            UNION SELECT mention_key FROM blocking)
        SELECT * FROM person_mentions
        WHERE person_id IN (SELECT person_id FROM person_mentions SEMI JOIN seed USING (mention_key))""",
        {"named": named},
    )
    store.execute(
        """CREATE OR REPLACE TEMP VIEW read_here AS
        SELECT canonical, badge, id_number FROM near
        UNION ALL SELECT canonical, badge, id_number FROM fresh"""
    )
    store.execute("CREATE OR REPLACE TEMP TABLE junk AS " + _junk_sql("every_known", "read_here"))
    _tf_tables(store, "every_known", among="read_here")
    for table, select in (
        ("known", _KNOWN_COLUMNS + " FROM near"),
        ("blocking", "SELECT * FROM blocking"),
        ("junk", "SELECT * FROM junk"),
        ("crowded", "SELECT * FROM crowded"),
        ("tf_canonical", "SELECT * FROM tf_canonical"),
        ("tf_badge", "SELECT * FROM tf_badge"),
    ):
        store.execute(f"COPY ({select}) TO {sql_string(tmp / f'{table}.parquet')} (FORMAT parquet)")
    # a person's id is "P-" and the key of its oldest mention (one of its own): counting
    # those mentions counts the persons, without a distinct over every mention
    (outside,) = store.execute(
        """SELECT [(SELECT count(*) FROM person_mentions) - (SELECT count(*) FROM near),
                   (SELECT count(*) FROM person_mentions WHERE person_id = 'P-' || mention_key)
                   - (SELECT count(DISTINCT person_id) FROM near)]"""
    ).fetchall()[0]
    return outside[0], outside[1]


_KNOWN_COLUMNS = """
    SELECT mention_key, canonical, words, sounds, sounds_key,
           id_number, id_type, badge, inmates, commonness, first_seq, person_id,
           match_weight, linked_to, row_count"""


def _link_private(con, job: _Job, tmp: Path, merges, sides) -> tuple[LinkReport, Model]:
    """Mentions, the model (trained when there is none), scored pairs and persons, in the
    private connection: leaves ``rows_keyed``, ``every_mention``, ``fresh``, ``pairs``,
    ``assigned`` (mention -> person, and the person it was known as) and ``accepted``."""
    with _timed(job.seconds, "mentions"):
        report = _prepare(con, job, tmp)
    with _timed(job.seconds, "train"):
        model = _modelled(con, job, report)
    with _timed(job.seconds, "predict"):
        _scored(con, model, job.full, report)
    with _timed(job.seconds, "cluster"):
        _clustered(con, model, report, merges, sides, job.outside[1])
    return report, model


@contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[step] = time.perf_counter() - start


def _prepare(con, job: _Job, tmp: Path) -> LinkReport:
    """Every mention as linkage reads it (the new ones with the known ones, all of them in
    a full linkage, else those :func:`_nearby` kept), the junk documents and the term
    frequencies."""
    if job.full:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE known AS SELECT *, NULL::VARCHAR AS person_id, "
            "NULL::DOUBLE AS match_weight, NULL::VARCHAR AS linked_to FROM new_mentions "
            "WHERE false"
        )
    else:
        for table in ("known", "blocking", "junk", "crowded", "tf_canonical", "tf_badge"):
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS "
                f"SELECT * FROM read_parquet({sql_string(tmp / f'{table}.parquet')})"
            )
    # a known mention's rows: those stored (none counted by a release before the column:
    # none is taken as established) and those of the new rows (``counted``, which the
    # store's mentions gain too: ``_outputs``)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE counted AS SELECT mention_key, row_count AS n "
        "FROM new_mentions SEMI JOIN known USING (mention_key)"
    )
    con.execute(
        """UPDATE known SET row_count = coalesce(known.row_count, 0) + c.n
        FROM counted c WHERE known.mention_key = c.mention_key"""
    )
    con.execute("DELETE FROM new_mentions WHERE mention_key IN (SELECT mention_key FROM known)")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE every_mention AS
        SELECT * EXCLUDE (person_id, match_weight, linked_to) FROM known
        UNION ALL BY NAME SELECT * FROM new_mentions"""
    )
    if job.full:
        con.execute("CREATE OR REPLACE TEMP TABLE junk AS " + _junk_sql("every_mention"))
        con.execute("CREATE OR REPLACE TEMP TABLE crowded AS " + _crowded_sql("every_mention"))
        _tf_tables(con, "every_mention")
    # what the model compares: every mention in a full linkage; in an incremental one the
    # new ones and the known ones a blocking rule pairs with them (``blocking``), not every
    # known mention read for its person (at 10M visits, the next 1%: 1,435 of the 78,611
    # mentions read are compared)
    compared = (
        "every_mention"
        if job.full
        else "(SELECT * FROM every_mention WHERE mention_key IN (SELECT mention_key FROM blocking)"
        " OR mention_key IN (SELECT mention_key FROM new_mentions))"
    )
    _for_linkage(con, compared, "mentions", "junk")
    _for_linkage(con, "new_mentions", "fresh", "junk")
    report = LinkReport("", rows=_count(con, "rows"))
    report.mentions = _count(con, "every_mention") + job.outside[0]
    report.known_read = _count(con, "known")
    report.new_mentions = _count(con, "fresh")
    report.crowded_names = _count(con, "crowded")
    return report


def _crowded_sql(every: str, among: str | None = None) -> str:
    """The names written for more than ``CROWDED_NAME_MENTIONS`` of the mentions ``every``
    (with ``among``, a table with a ``canonical`` column: of its names alone)."""
    only = f"AND canonical IN (SELECT canonical FROM {among})" if among else ""
    return (
        f"SELECT canonical FROM {every} WHERE canonical IS NOT NULL {only} "
        f"GROUP BY canonical HAVING count(*) > {CROWDED_NAME_MENTIONS}"
    )


def _junk_sql(every: str, among: str | None = None) -> str:
    """The documents written under more names than ``JUNK_DOCUMENT_NAMES`` among the
    mentions ``every``: no identifier (left out of linkage); with ``among`` (a table with
    an ``id_number`` column), of its documents alone."""
    only = f"AND id_number IN (SELECT id_number FROM {among})" if among else ""
    return (
        f"SELECT id_number FROM {every} WHERE id_number IS NOT NULL {only} "
        f"GROUP BY id_number HAVING count(DISTINCT canonical) > {JUNK_DOCUMENT_NAMES}"
    )


def _modelled(con, job: _Job, report: LinkReport) -> Model:
    """The kept model, or one trained on every mention (a full linkage) and kept."""
    model = job.model
    if job.full:
        splink, summary = train(con, "mentions")
        model = save_model(job.store, Model("", splink, THRESHOLD, summary))
        report.trained = True
        report.scope = f"full linkage ({job.why}): new model {model.model_id}"
    else:
        report.scope = (
            f"incremental: {report.new_mentions:,} new mentions against model {model.model_id}"
        )
    report.model_id = model.model_id
    return model


def _scored(con, model: Model, full: bool, report: LinkReport) -> None:
    """``pairs``: every candidate pair (full), or the new mentions' (incremental)."""
    if full or report.new_mentions:
        _predict(con, model, None if full else "fresh", "mentions")
    else:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE pairs (a VARCHAR, b VARCHAR, match_weight DOUBLE, "
            "match_probability DOUBLE, gamma_name INT, gamma_identifier INT, "
            "gamma_inmates INT, w_name DOUBLE, w_identifier DOUBLE, w_inmates DOUBLE)"
        )


def _clustered(
    con, model: Model, report: LinkReport, merges, sides, outside_persons: int = 0
) -> None:
    """``assigned`` (each mention's person, and the person it was known as) and
    ``accepted`` (whether each pair joined), from the pairs, the persons known and the
    auditors' merges and splits.

    Only the mentions a join could reach are clustered in Python (:func:`_touched`); every
    other known person is joined as it was, in SQL, to the same id ``cluster`` gives it
    (its oldest mention's key), and every other new mention is a person of its own (its
    own key): a linkage then costs the mentions its pairs reach, not the hundreds of
    thousands known nor the millions no pair reaches."""
    _touched(con, merges, sides)
    mentions = con.execute(
        f"SELECT mention_key, {_unjunked()}, first_seq, coalesce(row_count, 0) "
        "FROM every_mention SEMI JOIN touched t USING (mention_key)"
    ).fetchall()
    # completely different names are two people, whatever else they share (a document
    # under two names is a finding, not a link): such a pair is never joined
    edges = con.execute(
        "SELECT a, b, CASE WHEN gamma_name = 0 THEN -1e9 ELSE match_weight END FROM pairs"
    ).fetchall()
    known = {
        k: p.removeprefix("P-")
        for k, p in con.execute(
            "SELECT mention_key, person_id FROM known SEMI JOIN touched USING (mention_key)"
        ).fetchall()
    }
    people, accepted = cluster(
        mentions, edges, weight_of(model.threshold), merges, sides, known or None
    )
    assigned = pl.DataFrame(
        {
            "mention_key": list(people),
            "person_id": ["P-" + p for p in people.values()],
            "known_id": ["P-" + known[k] if k in known else None for k in people],
        },
        schema={"mention_key": pl.String, "person_id": pl.String, "known_id": pl.String},
    )
    decided = pl.DataFrame(
        [(a, b, ok) for (a, b), ok in accepted.items()],
        schema={"a": pl.String, "b": pl.String, "accepted": pl.Boolean},
        orient="row",
    )
    frame_table(con, "assigned", assigned)
    frame_table(con, "accepted", decided)
    # the persons no join reached: as they were, each under its oldest mention's key
    con.execute(
        """INSERT INTO assigned
        WITH rest AS (
            SELECT e.mention_key, e.first_seq, k.person_id
            FROM every_mention e JOIN known k USING (mention_key)
            ANTI JOIN touched t USING (mention_key)),
        oldest AS (
            SELECT person_id, min((first_seq, mention_key))[2] AS root
            FROM rest GROUP BY person_id)
        SELECT r.mention_key, 'P-' || o.root, r.person_id
        FROM rest r JOIN oldest o USING (person_id)"""
    )
    # the new mentions no join reached: each a person of its own, under its own key
    con.execute(
        """INSERT INTO assigned
        SELECT mention_key, 'P-' || mention_key, NULL FROM every_mention
        ANTI JOIN known USING (mention_key) ANTI JOIN touched USING (mention_key)"""
    )
    report.persons = _count(con, "(SELECT DISTINCT person_id FROM assigned)") + outside_persons
    report.joined = int(decided["accepted"].sum() or 0)


def _touched(con, merges, sides) -> None:
    """``touched``: the mentions a join of this linkage could reach, closed over the
    persons known (a known person is clustered whole or not at all): both ends of every
    scored pair, and those the auditors' merges and splits name. A new mention none of
    them reaches is a person of its own."""
    named = sorted({k for group in merges for k in group} | set(sides))
    con.execute(
        """CREATE OR REPLACE TEMP TABLE touched AS
        WITH seed AS (
            SELECT a AS mention_key FROM pairs UNION SELECT b FROM pairs
            UNION SELECT unnest($named::VARCHAR[]))
        SELECT mention_key FROM seed
        UNION SELECT k2.mention_key FROM seed JOIN known k1 USING (mention_key)
                JOIN known k2 ON k2.person_id = k1.person_id""",
        {"named": named},
    )


def _count(con, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def _outputs(con, tmp: Path, model: Model, full: bool) -> None:
    """The linkage's results as Parquet files for the store: the rows' persons, the new
    mentions, the pairs that explain them, and the persons whose id moved."""
    levels = [
        (comparison, gamma, label)
        for comparison, by_gamma in level_labels(model.splink).items()
        for gamma, label in by_gamma.items()
    ]
    con.execute("CREATE OR REPLACE TEMP TABLE levels (c VARCHAR, g INT, label VARCHAR)")
    con.executemany("INSERT INTO levels VALUES (?, ?, ?)", levels)
    prior = weight_of(model.splink["probability_two_random_records_match"])
    con.execute(
        f"""COPY (
        SELECT p.a, p.b, p.match_weight, p.match_probability,
               json_object('prior', {prior!r}, 'threshold', {weight_of(model.threshold)!r},
                 'name', json_object('level', ln.label, 'weight', round(p.w_name, 2)),
                 'identifier', json_object('level', li.label,
                                           'weight', round(p.w_identifier, 2)),
                 'inmates', json_object('level', lm.label, 'weight', round(p.w_inmates, 2))
               )::VARCHAR AS why,
               coalesce(x.accepted, false) AS accepted, '{model.model_id}' AS model_id
        FROM pairs p LEFT JOIN accepted x ON x.a = p.a AND x.b = p.b
        LEFT JOIN levels ln ON ln.c = 'name' AND ln.g = p.gamma_name
        LEFT JOIN levels li ON li.c = 'identifier' AND li.g = p.gamma_identifier
        LEFT JOIN levels lm ON lm.c = 'inmates' AND lm.g = p.gamma_inmates
        ) TO {sql_string(tmp / "links.parquet")} (FORMAT parquet)"""
    )
    # each mention's weight: its strongest accepted link (else the one it had; of links as
    # strong, the one to the greatest key, so that two linkages of the same rows agree), for
    # the mentions of the rows linked (the only ones written out)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE best AS
        WITH won AS (SELECT p.a, p.b, p.match_weight FROM pairs p
                     JOIN accepted x ON x.a = p.a AND x.b = p.b AND x.accepted),
        ends AS (SELECT a AS k, b AS o, match_weight AS w FROM won
                 UNION ALL SELECT b, a, match_weight FROM won
                 UNION ALL SELECT mention_key, linked_to, match_weight FROM known
                 WHERE match_weight IS NOT NULL)
        SELECT k AS mention_key, arg_max(o, (w, o)) AS linked_to, max(w) AS match_weight
        FROM ends SEMI JOIN rows_keyed r ON r.mention_key = ends.k GROUP BY k"""
    )
    fresh = "" if full else "WHERE e.mention_key IN (SELECT mention_key FROM new_mentions)"
    con.execute(
        f"""COPY (
        SELECT e.mention_key, e.canonical, e.words, e.sounds, e.sounds_key, e.id_number,
               e.id_type, e.badge,
               e.inmates, e.commonness, e.first_seq, a.person_id, b.match_weight, b.linked_to,
               '{model.model_id}' AS model_id, e.row_count
        FROM every_mention e JOIN assigned a USING (mention_key)
        LEFT JOIN best b USING (mention_key) {fresh}
        ) TO {sql_string(tmp / "mentions.parquet")} (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (
        SELECT r.kind, r.record_key, r.part, r.name, r.id_number, r.badge, r.facility,
               r.happened_at, r.inmate_id, r.plate_key, r.mention_key, a.person_id,
               b.match_weight, r.upload_seq
        FROM rows_keyed r JOIN assigned a USING (mention_key)
        LEFT JOIN best b USING (mention_key)
        ) TO {sql_string(tmp / "rows_out.parquet")} (FORMAT parquet)"""
    )
    # the known mentions the new rows wrote again: how many rows they add to each
    con.execute(f"COPY counted TO {sql_string(tmp / 'counted.parquet')} (FORMAT parquet)")
    # known persons joined to an older one: every row of theirs takes its id
    con.execute(
        f"""COPY (SELECT DISTINCT known_id AS old_id, person_id AS new_id FROM assigned
                  WHERE known_id IS NOT NULL AND known_id <> person_id)
            TO {sql_string(tmp / "moved.parquet")} (FORMAT parquet)"""
    )


def _store(job: _Job, tmp: Path, report: LinkReport, model: Model) -> None:
    """Store the linkage in one write: the model when it is new, the rows' persons, the
    mentions and the pairs that explain them, and the run with its watermark."""
    src = {
        f: f"read_parquet({sql_string(tmp / f'{f}.parquet')})"
        for f in ("rows_out", "mentions", "links")
    }
    with job.store.write() as w:
        if (
            watermark(w, "persons") or 0
        ) != job.since:  # (linkages store in turn: every writer's lock)
            raise _Overtaken()
        run_id = next_run(w, "persons", job.triggered_by, report.scope)
        w.execute("UPDATE runs SET started_at = ? WHERE run_id = ?", [job.started, run_id])
        if model.new:
            w.execute(
                "INSERT INTO person_models VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    model.model_id,
                    run_id,
                    now(),
                    report.mentions,
                    model.threshold,
                    json.dumps(model.trained, default=str),
                    model.content_hash,
                ],
            )
        if job.full:
            for table in ("persons", "person_mentions", "person_links"):
                w.execute(f"DELETE FROM {table}")
        elif _count(w, moved := f"read_parquet({sql_string(tmp / 'moved.parquet')})"):
            # (a join reaching no known person moves nothing: no pass over every row)
            for table in ("persons", "person_mentions"):
                w.execute(
                    f"UPDATE {table} SET person_id = m.new_id FROM {moved} m "
                    f"WHERE {table}.person_id = m.old_id"
                )
        if not job.full:
            counted = f"read_parquet({sql_string(tmp / 'counted.parquet')})"
            w.execute(
                "UPDATE person_mentions SET row_count = coalesce(row_count, 0) + c.n "
                f"FROM {counted} c WHERE person_mentions.mention_key = c.mention_key"
            )
        w.execute(f"INSERT INTO persons SELECT * FROM {src['rows_out']}")
        w.execute(f"INSERT INTO person_mentions SELECT * FROM {src['mentions']}")
        w.execute(f"INSERT INTO person_links SELECT *, {run_id} FROM {src['links']}")
        counts = {
            "rows": report.rows,
            "mentions": report.mentions,
            "new_mentions": report.new_mentions,
            "persons": report.persons,
            "joined": report.joined,
            "crowded_names": report.crowded_names,
        }
        w.execute(
            "UPDATE runs SET ended_at = ?, status = 'ok', watermark = ?, counts = ? "
            "WHERE run_id = ?",
            [now(), job.upto, json.dumps(counts), run_id],
        )


# --- an auditor's merges and splits ------------------------------------------------------


def _mentions_of(con, person_ids: list[str]) -> list[tuple[str, int]]:
    return con.execute(
        "SELECT mention_key, first_seq FROM person_mentions "
        "WHERE person_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY first_seq, mention_key",
        [person_ids],
    ).fetchall()


def _record(con, action: str, mentions: list[str], others: list[str], actor: Actor, note):
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM person_overrides").fetchall()[0][0]
    con.execute(
        "INSERT INTO person_overrides VALUES (?, ?, ?, ?, ?, ?, ?)",
        [seq, action, mentions, others, actor.username, now(), note],
    )


def _move(con, keys: list[str], person_id: str) -> None:
    for table in ("persons", "person_mentions"):
        con.execute(
            f"UPDATE {table} SET person_id = ? WHERE mention_key IN (SELECT unnest(?::VARCHAR[]))",
            [person_id, keys],
        )


def merge(store: Store, actor: Actor, person_ids: list[str], note: str | None = None) -> str:
    """Make several persons one (an auditor's decision, kept for every later linkage and
    written to the review audit trail). Returns the person id they now share."""
    require(actor, "review")
    person_ids = sorted(set(person_ids))
    if len(person_ids) < 2:
        raise ReviewError(N_("choose at least two persons to merge"))
    with store.write() as con:
        found = _mentions_of(con, person_ids)
        if not found:
            raise ReviewError(N_("no such persons"))
        keys = [k for k, _ in found]
        into = "P-" + keys[0]
        _record(con, "merge", keys, [], actor, note)
        _move(con, keys, into)
        log_action(
            con, None, now(), actor.username, "person_merge", ", ".join(person_ids), into, note
        )
    return into


def split(
    store: Store, actor: Actor, person_id: str, mention_keys: list[str], note: str | None = None
) -> tuple[str, str]:
    """Take some of a person's mentions out into a person of their own (an auditor's
    decision: the two are never joined again by a later linkage; written to the review
    audit trail). Returns the ids of the person left and of the one taken out."""
    require(actor, "review")
    with store.write() as con:
        found = _mentions_of(con, [person_id])
        keys = [k for k, _ in found]
        out = [k for k in keys if k in set(mention_keys)]
        rest = [k for k in keys if k not in set(mention_keys)]
        if not out or not rest:
            raise ReviewError(N_("a split needs some of the person's spellings, not all of them"))
        _record(con, "split", out, rest, actor, note)
        left, taken = "P-" + rest[0], "P-" + out[0]
        _move(con, rest, left)
        _move(con, out, taken)
        log_action(
            con,
            None,
            now(),
            actor.username,
            "person_split",
            person_id,
            f"{left} | {taken}: " + ", ".join(out),
            note,
        )
    return left, taken


# --- why two mentions were linked, in words --------------------------------------------

# What each level of a comparison says about a pair, as a reader reads it.
REASONS: dict[str, str] = {
    "same_words": N_("the same name, its words in any order"),
    "same_sounds": N_(
        "names that sound the same (accents, s/z/c, b/v, ll/y or a silent h written apart)"
    ),
    "one_letter": N_("names one letter apart in a word (a slip of the pen)"),
    "dropped_words": N_(
        "one name is the other with words left out (a second surname or a second given name)"
    ),
    "initials": N_("initials standing for the other's words (J. C. for Juan Carlos)"),
    "swapped_words": N_("the same words with two of them swapped (a surname for another)"),
    "other_name": N_("completely different names: never linked without an auditor"),
    "same_document": N_("the same document number"),
    "document_as_badge": N_(
        "the same number, written as a document on one and as a badge on the other"
    ),
    "document_one_character": N_("document numbers one character apart"),
    "other_document": N_("different documents"),
    "same_badge": N_("the same badge"),
    "other_badge": N_("different badges"),
    "other_identifiers": N_("a document on one, a badge on the other: nothing to compare them by"),
    "same_inmate": N_("they visited the same inmate"),
    "other_inmates": N_("they visited different inmates"),
    "null": N_("nothing to compare"),
}
STRENGTHS = (
    (10, N_("decisive evidence that they are one person")),
    (5, N_("strong evidence that they are one person")),
    (1, N_("some evidence that they are one person")),
    (-1, N_("says little either way")),
    (-5, N_("evidence that they are two people")),
    (float("-inf"), N_("strong evidence that they are two people")),
)


def strength(weight: float, lang: str) -> str:
    return translate(lang, next(text for floor, text in STRENGTHS if weight >= floor))


def explain_link(why: str | dict, lang: str = "en") -> list[str]:
    """A scored pair's match weight as sentences: the chance two spellings picked at
    random are one person, what each comparison found and how much it weighed, and the
    total against the threshold (Splink's waterfall, in words)."""
    why = json.loads(why) if isinstance(why, str) else why
    prior, threshold = why["prior"], why["threshold"]
    odds = 2 ** (-prior)
    lines = [
        translate(
            lang,
            N_(
                "Before comparing anything, two spellings taken at random are one person "
                "about once in {odds} ({weight})."
            ),
        ).format(odds=number(round(odds), lang), weight=_signed(prior))
    ]
    total = prior
    for comparison in ("name", "identifier", "inmates"):
        part = why.get(comparison) or {}
        level, weight = part.get("level") or "null", part.get("weight") or 0.0
        total += weight
        if level == "null":
            continue
        lines.append(
            translate(lang, N_("{Reason}: {strength} ({weight}).")).format(
                Reason=translate(lang, REASONS.get(level, level)).capitalize(),
                strength=strength(weight, lang),
                weight=_signed(weight),
            )
        )
    verdict = (
        N_("In all {total}: linked (a link needs {threshold}).")
        if total >= threshold
        else N_("In all {total}: not linked (a link needs {threshold}).")
    )
    lines.append(
        translate(lang, verdict).format(total=_signed(total), threshold=_signed(threshold))
    )
    return lines


def _signed(weight: float) -> str:
    return f"{weight:+.1f}".replace("-", "−")
