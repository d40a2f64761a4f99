"""The flags table: hits written as flags (evidence resolved, words kept, risk placed),
flags that stop firing resolved, and the one query every reader of flags uses.

Rule runs (``detector.engine``) and scoring (``detector.scoring``) write through
:func:`store_flags`; the dashboard, the exports, the digest and the dossier read through
:class:`FlagQuery`, so that they all show the same flags in the same order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detector import lazy
from detector.auth import require
from detector.review import SUPPRESSED, log_action
from detector.risk import SEVERITY_RANK, range_risk, severity_rank
from detector.runs import RUN_WRITERS, now
from detector.schema import sql_string
from detector.scopes import SCOPES
from detector.store import checkpoints_by_size, commit_part, frame_table
from detector.wording import flag_words, rule_wording

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy.module("polars")


@dataclass
class Hit:
    """One offending record set or range, as a flag row."""

    flag_id: str
    rule_id: str
    category: str
    title: str
    subject: str
    severity: str
    facility: str | None
    logbook: str | None
    period_start: datetime | None
    period_end: datetime | None
    record_keys: list[str]
    fields: dict[str, Any]
    explanation: str


def flag_id(rule_id: str, identity: str) -> str:
    return hashlib.sha256(f"{rule_id}|{identity}".encode()).hexdigest()[:16]


def reopen_grown_cases(con, at: datetime) -> None:
    """Re-open closed cases of the temp table ``grown`` whose reviewer asked to be told of
    new occurrences (``reviews.reopen_on_new``), with an audit row for each."""
    reopened = con.execute(
        """SELECT flag_id, status FROM reviews
           WHERE reopen_on_new AND status NOT IN ('new', 'in_review')
             AND flag_id IN (SELECT flag_id FROM grown) ORDER BY flag_id"""
    ).fetchall()
    for fid, status in reopened:
        log_action(con, fid, at, "system", "status", status, "new", "new occurrences arrived")
    con.execute(
        """UPDATE reviews SET status = 'new', reason = NULL, updated_at = ?,
                  updated_by = 'system'
           WHERE flag_id IN (SELECT unnest(?::VARCHAR[]))""",
        [at, [fid for fid, _ in reopened]],
    )


def hits_frame(hits: list[Hit]) -> pl.DataFrame:
    """Hits as a table with the flag columns (``fields`` as JSON)."""
    return pl.DataFrame(
        {
            "flag_id": [h.flag_id for h in hits],
            "rule_id": [h.rule_id for h in hits],
            "category": [h.category for h in hits],
            "severity": [h.severity for h in hits],
            "title": [h.title for h in hits],
            "subject": [h.subject for h in hits],
            "facility": [h.facility for h in hits],
            "logbook": [h.logbook for h in hits],
            "period_start": [h.period_start for h in hits],
            "period_end": [h.period_end for h in hits],
            "record_keys": [h.record_keys for h in hits],
            "fields": [json.dumps(h.fields, ensure_ascii=False, default=str) for h in hits],
            "explanation": [h.explanation for h in hits],
        },
        schema={
            "flag_id": pl.String,
            "rule_id": pl.String,
            "category": pl.String,
            "severity": pl.String,
            "title": pl.String,
            "subject": pl.String,
            "facility": pl.String,
            "logbook": pl.String,
            "period_start": pl.Datetime("us"),
            "period_end": pl.Datetime("us"),
            "record_keys": pl.List(pl.String),
            "fields": pl.String,
            "explanation": pl.String,
        },
    )


def spool_hits(batches: Iterator[list[Hit]], path: Path) -> tuple[int, list[Path]]:
    """Write batches of hits to Parquet as they come, the first to ``path`` and each
    further one to a file beside it (polars writes them, without pyarrow); returns how
    many hits and the files in order (none when there are no hits). When a batch fails,
    the files written are removed."""
    files: list[Path] = []
    count = 0
    try:
        for batch in batches:
            if not batch:
                continue
            out = path.with_name(f"{path.stem}.{len(files)}.parquet") if files else path
            hits_frame(batch).write_parquet(out)
            files.append(out)
            count += len(batch)
    except BaseException:
        for written in files:
            written.unlink(missing_ok=True)
        raise
    return count, files


FLAG_CHUNK = 25_000  # hits whose evidence is resolved and upserted (and committed) at a time
# ... and at most about this many records cited by them: a chunk's evidence is one list per
# flag, sorted in memory (a common name's flags, 822 citing 3M lines, ran out of memory
# at 2 GB in one chunk)
KEY_CHUNK = 200_000


def _stage_hits(con, hits: list) -> list[tuple[int, int]]:
    """The temp table ``hits``: one row per flag id (the first one found), from Hit objects
    or from spooled Parquet files; returns the chunks to upsert, as ranges (first, last) of
    ``ord``: FLAG_CHUNK hits at most, and the hits whose records start within one stretch
    of KEY_CHUNK records cited (a hit citing more is a chunk of its own). Staging is a
    plain copy and the de-duplication and chunking read two columns, so that it stays
    within DuckDB's memory limit however many hits there are."""
    if hits and isinstance(hits[0], Path):
        files = ", ".join(sql_string(p) for p in hits)
        source = f"read_parquet([{files}])"
    else:
        frame_table(con, "hits_in", hits_frame(hits))
        source = "hits_in"
    # ``ord`` numbers the rows (rowid is no dense index inside a transaction)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE hits AS "
        f"SELECT *, row_number() OVER () - 1 AS ord FROM {source}"
    )
    if source == "hits_in":
        con.execute("DROP TABLE temp.main.hits_in")
    con.execute("DELETE FROM hits WHERE ord NOT IN (SELECT min(ord) FROM hits GROUP BY flag_id)")
    return con.execute(
        f"""SELECT min(ord), max(ord) FROM (
              SELECT ord, dense_rank() OVER (ORDER BY ord // {FLAG_CHUNK},
                                                   (cited - n) // {KEY_CHUNK}) AS part
              FROM (SELECT ord, coalesce(len(record_keys), 0) AS n,
                           sum(coalesce(len(record_keys), 0)) OVER (
                             ORDER BY ord ROWS UNBOUNDED PRECEDING) AS cited
                    FROM hits))
            GROUP BY part ORDER BY part"""
    ).fetchall()


def _upsert_chunk(con, chunk: tuple[int, int], source: str, run_id: int, at: datetime) -> None:
    """Resolve the evidence of one chunk of hits (where each record came from: file, row,
    logbook, page, line) and upsert them as flags. The chunk's range of ``ord`` is written
    into the SQL as integers, so that DuckDB prunes the scan to it."""
    lo, hi = (int(x) for x in chunk)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hit_evidence AS
        SELECT h.flag_id,
               list(r.record_id ORDER BY r.source_name, r.source_row)
                   FILTER (WHERE r.record_key IS NOT NULL) AS record_ids,
               to_json(list({{'kind': r.kind, 'record_id': r.record_id,
                              'record_key': r.record_key, 'file': r.source_name,
                              'sha256': r.source_sha256, 'row': r.source_row,
                              'logbook': r.logbook, 'page': r.page, 'page_side': r.page_side,
                              'line': r.line}}
                            ORDER BY r.source_name, r.source_row)
                    FILTER (WHERE r.record_key IS NOT NULL))::VARCHAR AS evidence
        FROM (SELECT flag_id FROM hits WHERE ord BETWEEN {lo} AND {hi}) h
        LEFT JOIN (SELECT flag_id, unnest(record_keys) AS k FROM hits
                   WHERE ord BETWEEN {lo} AND {hi}) u
             USING (flag_id)
        LEFT JOIN records r ON r.record_key = u.k
        GROUP BY h.flag_id"""
    )
    # A flag hit again citing the same records from the same places keeps its stored lists
    # and evidence: a checkpoint rewrites every column an update touched (a common name's
    # 822 flags hit again rewrote 466 MB of unchanged evidence; 10M visits, the rule run
    # again 72 -> 24 s). Two statements, not one MERGE with two updates, which a shared
    # (DuckLake) store does not take.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE hit_same AS
        SELECT flag_id FROM hits h JOIN hit_evidence e USING (flag_id)
        JOIN stored_evidence f USING (flag_id)
        WHERE h.ord BETWEEN {lo} AND {hi}
          AND f.record_keys IS NOT DISTINCT FROM h.record_keys
          AND f.evidence_md5 IS NOT DISTINCT FROM md5_number(e.evidence)"""
    )
    incoming = f"""
        SELECT h.* EXCLUDE (ord), $source AS source, coalesce(e.record_ids, []) AS record_ids,
               coalesce(e.evidence, '[]') AS evidence, {range_risk("h")} AS score,
               $run AS first_run, $run AS last_run, $now AS first_seen, $now AS last_seen,
               'active' AS state, w.wording, w.rule_version
        FROM hits h JOIN hit_evidence e USING (flag_id) LEFT JOIN hit_words w USING (flag_id)
        WHERE h.ord BETWEEN {lo} AND {hi}"""
    values = {"source": source, "run": run_id, "now": at}
    con.execute(
        f"UPDATE flags SET {_HIT_AGAIN} "
        f"FROM (SELECT * FROM ({incoming}) SEMI JOIN hit_same USING (flag_id)) excluded "
        "WHERE flags.flag_id = excluded.flag_id",
        values,
    )
    # A MERGE, not INSERT ... ON CONFLICT: a shared (DuckLake) store has no primary key;
    # the runs' writers' lock keeps two runs from adding one flag id twice.
    con.execute(
        f"""
        MERGE INTO flags
        USING (SELECT * FROM ({incoming}) ANTI JOIN hit_same USING (flag_id)) AS excluded
        ON flags.flag_id = excluded.flag_id
        WHEN MATCHED THEN UPDATE SET {_HIT_AGAIN}, record_keys = excluded.record_keys,
            record_ids = excluded.record_ids, evidence = excluded.evidence
        WHEN NOT MATCHED THEN INSERT BY NAME""",
        values,
    )
    con.execute("DROP TABLE temp.main.hit_same")


# What a stored flag hit again takes from the hit (``_upsert_chunk``).
_HIT_AGAIN = """
            last_run = excluded.last_run, last_seen = excluded.last_seen, state = 'active',
            severity = excluded.severity, fields = excluded.fields,
            period_start = excluded.period_start, period_end = excluded.period_end,
            -- a finding keeps its words: new ones only with new values (hit_words)
            title = CASE WHEN excluded.wording IS NULL THEN flags.title ELSE excluded.title END,
            explanation = CASE WHEN excluded.wording IS NULL THEN flags.explanation
                               ELSE excluded.explanation END,
            wording = coalesce(excluded.wording, flags.wording),
            rule_version = CASE WHEN excluded.wording IS NULL THEN flags.rule_version
                                ELSE excluded.rule_version END,
            score = CASE WHEN excluded.subject = 'range' OR flags.score IS NULL
                         THEN excluded.score ELSE flags.score END"""


@dataclass
class Resolution:
    """What a run looked at all of, so that its flags there that it did not hit again stop
    firing (``resolved_by_data``): per scope (``global``, or a name of
    ``detector.scopes.SCOPES`` whose temp table ``scope_<name>`` holds the touched keys on
    the connection) the rules re-evaluated over it, and per rule re-evaluated from a moment
    on (a lookback window) that moment."""

    by_scope: dict[str, list[str]] = field(default_factory=dict)
    since: dict[str, datetime] = field(default_factory=dict)

    def where(self) -> tuple[str, list]:
        """SQL on ``flags``: the flags this run covered, and its parameters."""
        covered = ["rule_id IN (SELECT unnest(?::VARCHAR[]))"]
        params: list = [self.by_scope.get("global", [])]
        for name, kind in SCOPES.items():
            # (record-scoped flags cannot stop firing)
            if kind.covers is not None and self.by_scope.get(name):
                covered.append(f"(rule_id IN (SELECT unnest(?::VARCHAR[])) AND {kind.covers})")
                params.append(self.by_scope.get(name, []))
        covered.append(
            "EXISTS (SELECT 1 FROM (SELECT unnest(?::VARCHAR[]) AS r, "
            "unnest(?::TIMESTAMP[]) AS s) z "
            "WHERE z.r = flags.rule_id AND flags.period_start >= z.s)"
        )
        params += [list(self.since), list(self.since.values())]
        return "(" + " OR ".join(covered) + ")", params


def _word_chunk(con, chunk: tuple[int, int], rules: dict) -> None:
    """The temp table ``hit_words``: the words, in every language, of one chunk's hits that
    are new or whose values changed (and of flags stored before words were kept), with the
    rule version they were worded under. Unchanged flags keep theirs."""
    lo, hi = (int(x) for x in chunk)
    names = ("flag_id", "rule_id", "fields", "facility", "period_start")
    rows = con.execute(
        f"""SELECT {", ".join("h." + n for n in names)}
            FROM hits h LEFT JOIN flags f USING (flag_id)
            WHERE h.ord BETWEEN {lo} AND {hi}
              AND (f.flag_id IS NULL OR f.wording IS NULL
                   OR f.fields IS DISTINCT FROM h.fields
                   OR f.record_keys IS DISTINCT FROM h.record_keys)"""
    ).fetchall()
    worded = {"flag_id": [], "wording": [], "rule_version": []}
    for row in rows:
        hit = dict(zip(names, row, strict=True))
        rule = rules.get(hit["rule_id"])
        worded["flag_id"].append(hit["flag_id"])
        worded["wording"].append(json.dumps(flag_words(hit, rule), ensure_ascii=False))
        worded["rule_version"].append(getattr(rule, "sha256", None) or None)
    frame_table(con, "hit_words", pl.DataFrame(worded, schema=dict.fromkeys(worded, pl.String)))


def store_flags(
    con,
    hits: list,
    run_id: int,
    source: str,
    rules: dict | None = None,
    resolution: Resolution | None = None,
    commit_chunks: bool = False,
) -> tuple[dict[str, int], int]:
    """Upsert hits as flags; returns (new flags per rule, flags resolved by data).

    ``hits`` are Hit objects or Parquet files of them (``spool_hits``); the evidence of
    each is resolved and the flags upserted a chunk at a time (FLAG_CHUNK hits, and about
    KEY_CHUNK records cited), so that millions of hits stay within DuckDB's memory limit.
    New flags, and flags whose values changed, are worded in every language from ``rules``
    (id -> rule; outlier flags need none) and keep those words. With ``commit_chunks`` each
    chunk is committed on its own (DuckDB keeps a transaction's new rows in memory): a run
    that fails part way keeps the flags it wrote (upserts are idempotent, the next run
    completes them) and is recorded as failed. Active flags that ``resolution`` covers and
    that were not hit again are resolved by data.
    """
    at = now()
    chunks = _stage_hits(con, hits)
    # The stored flags hit again, read once for what follows: their record keys, and their
    # evidence as a 128-bit MD5, not the text (``_upsert_chunk``). Read again for each
    # chunk, the stored evidence was decompressed again each time (a common name's 822
    # flags, 466 MB of evidence in 16 chunks: 5.7 s in DuckDB's older file format, 11 s in
    # its 1.5 one, which compresses long texts with zstd).
    con.execute("""
        CREATE OR REPLACE TEMP TABLE stored_evidence AS
        SELECT flag_id, record_keys, md5_number(evidence) AS evidence_md5 FROM flags
        WHERE flag_id IN (SELECT flag_id FROM hits)""")
    new = dict(
        con.execute(
            "SELECT rule_id, count(*) FROM hits "
            "WHERE flag_id NOT IN (SELECT flag_id FROM stored_evidence) GROUP BY 1"
        ).fetchall()
    )
    # Cases that gain occurrences: a closed one re-opens if its reviewer asked for that.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE grown AS
        SELECT flag_id FROM stored_evidence f JOIN hits h USING (flag_id)
        WHERE len(h.record_keys) > len(f.record_keys)""")
    with checkpoints_by_size(con) if commit_chunks else contextlib.nullcontext():
        for chunk in chunks:
            _word_chunk(con, chunk, rules or {})
            _upsert_chunk(con, chunk, source, run_id, at)
            if commit_chunks:
                commit_part(con)
    reopen_grown_cases(con, at)
    covered, params = (resolution or Resolution()).where()
    resolved = con.execute(
        "UPDATE flags SET state = 'resolved_by_data', last_run = ? "
        f"WHERE state = 'active' AND flag_id NOT IN (SELECT flag_id FROM hits) AND {covered}",
        [run_id, *params],
    ).fetchall()[0][0]
    con.execute("DROP TABLE IF EXISTS temp.main.hits")
    con.execute("DROP TABLE IF EXISTS temp.main.hit_words")
    con.execute("DROP TABLE IF EXISTS temp.main.stored_evidence")
    return new, resolved


# --- reading flags: the one query ----------------------------------------------------------


@dataclass
class FlagQuery:
    """Which flags to read: what the review queue shows, what an export holds, what the
    digest and a dossier cite. Empty lists mean 'all'. Every reader of flags goes through
    :func:`read_flags` with one of these, so they agree on the flags and their order."""

    categories: list[str] = field(default_factory=list)
    severities: list[str] = field(default_factory=list)
    min_severity: str | None = None
    rules: list[str] = field(default_factory=list)
    facilities: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    flag_ids: list[str] | None = None
    first_run: int | None = None  # flags first raised by this run
    first_runs: list[int] = field(default_factory=list)  # ... by one of these runs (an upload's)
    source: str | None = None  # "rule" or "model"
    assignee: str | None = None
    text: str = ""
    since: date | None = None
    until: date | None = None
    include_resolved: bool = False
    include_suppressed: bool = False
    include_closed: bool = True  # confirmed and dismissed flags (the queue page hides them)

    def where(self) -> tuple[str, list]:
        """SQL over flags ``f`` joined with their reviews ``r``, and its parameters."""
        parts, params = ["1 = 1"], []

        def any_of(column: str, values: list[str] | None) -> None:
            if values:
                parts.append(f"{column} IN (SELECT unnest(?::VARCHAR[]))")
                params.append(list(values))

        any_of("f.category", self.categories)
        any_of("f.severity", self.severities)
        any_of("f.rule_id", self.rules)
        any_of("f.facility", self.facilities)
        any_of("coalesce(r.status, 'new')", self.statuses)
        if self.flag_ids is not None:
            parts.append("f.flag_id IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(self.flag_ids))
        if self.min_severity:
            parts.append(f"{severity_rank('f.severity')} >= ?")
            params.append(SEVERITY_RANK[self.min_severity])
        if self.first_run is not None:
            parts.append("f.first_run = ?")
            params.append(self.first_run)
        if self.first_runs:
            parts.append("f.first_run IN (SELECT unnest(?::BIGINT[]))")
            params.append([int(r) for r in self.first_runs])
        if self.source:
            parts.append("f.source = ?")
            params.append(self.source)
        if self.assignee:
            parts.append("r.assignee = ?")
            params.append(self.assignee)
        if self.text.strip():
            # accents and case aside: "oscar" finds "Óscar", "OSCAR" and "Oscar"
            parts.append(
                "(strip_accents(f.explanation) ILIKE strip_accents(?) "
                "OR strip_accents(coalesce(f.wording, '')) ILIKE strip_accents(?) "
                "OR strip_accents(f.fields) ILIKE strip_accents(?) "
                "OR array_to_string(f.record_ids, ' ') ILIKE ?)"
            )
            params += [f"%{self.text.strip()}%"] * 4
        if not self.include_closed:
            parts.append("coalesce(r.status, 'new') NOT IN ('confirmed', 'dismissed')")
        if self.since:
            parts.append("coalesce(f.period_end, f.period_start) >= ?")
            params.append(self.since)
        if self.until:
            parts.append("f.period_start < ?::DATE + 1")
            params.append(self.until)
        if not self.include_resolved:
            parts.append("f.state = 'active'")
        if not self.include_suppressed:
            parts.append(f"NOT {SUPPRESSED}")
        return " AND ".join(parts), params


# The review queue's order (flags ``f``): riskiest first; among equal risks the graver
# severity, then the more recent period; the flag id only last, for a stable order.
QUEUE_ORDER = (
    f"f.score DESC NULLS LAST, {severity_rank('f.severity')} DESC, "
    "coalesce(f.period_end, f.period_start) DESC NULLS LAST, f.flag_id"
)
# Every column of a flag, with its review: what exports, the digest and a flag's page read.
FLAG_COLUMNS = (
    "f.*, coalesce(r.status, 'new') AS review_status, r.assignee, r.reason, r.note, "
    "coalesce(r.reopen_on_new, false) AS reopen_on_new"
)
# What a page of the review queue shows.
QUEUE_COLUMNS = """f.flag_id, round(f.score, 3) AS risk, coalesce(r.status, 'new') AS status,
    r.assignee, f.severity, f.category, f.rule_id, f.facility, f.period_start, f.explanation,
    f.source, f.state, f.title, f.fields, f.wording"""


def flags_sql(query: FlagQuery, columns: str = FLAG_COLUMNS) -> tuple[str, list]:
    """The SELECT of the flags ``query`` names, riskiest first (the review queue's order)."""
    where, params = query.where()
    return (
        f"SELECT {columns} FROM flags f LEFT JOIN reviews r USING (flag_id) "
        f"WHERE {where} ORDER BY {QUEUE_ORDER}",
        params,
    )


def read_flags(
    store,
    query: FlagQuery,
    columns: str = FLAG_COLUMNS,
    limit: int | None = None,
    offset: int = 0,
) -> pl.DataFrame:
    """The flags ``query`` names, riskiest first (a page of them with ``limit``)."""
    sql, params = flags_sql(query, columns)
    if limit is not None:
        sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    with store.read() as con:
        return con.sql(sql, params=params).pl()


def count_flags(store, query: FlagQuery, by: str = "category") -> dict[str, int]:
    """How many flags ``query`` names, per value of a flag column."""
    where, params = query.where()
    with store.read() as con:
        return dict(
            con.execute(
                f"SELECT f.{by}, count(*) FROM flags f LEFT JOIN reviews r USING (flag_id) "
                f"WHERE {where} GROUP BY 1 ORDER BY 1",
                params,
            ).fetchall()
        )


# --- re-wording findings: only when asked, on the audit trail -----------------------------


def reword(store, actor, rules: dict, rule_ids: list[str] | None = None) -> int:
    """Word the stored flags of ``rule_ids`` (all rule flags when None) anew from their
    rules as they are now (``rules``: id -> rule), in every language; returns how many
    changed. A finding keeps the words it was raised with until this is asked: each flag
    re-worded gets an audit row (old rule version -> new), as a reviewer's action does."""
    require(actor, "admin")
    wanted = sorted(rules) if rule_ids is None else list(rule_ids)
    unknown = sorted(set(wanted) - set(rules))
    if unknown:
        raise ValueError(f"no rule with id {', '.join(unknown)}")
    at, changed = now(), 0
    with store.write(RUN_WRITERS) as con:
        stored = con.execute(
            "SELECT flag_id, rule_id, fields, facility, period_start, title, explanation, "
            "wording, rule_version FROM flags WHERE source = 'rule' "
            "AND rule_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY flag_id",
            [wanted],
        ).fetchall()
        for fid, rule_id, fields, facility, start, title, explanation, words, version in stored:
            rule = rules[rule_id]
            flag = {"rule_id": rule_id, "fields": fields, "facility": facility,
                    "period_start": start}  # fmt: skip
            new_title, new_explanation = rule_wording(rule, json.loads(fields or "{}"), "en")
            new_words = json.dumps(flag_words(flag, rule), ensure_ascii=False)
            if (new_title, new_explanation, new_words) == (title, explanation, words):
                continue
            con.execute(
                "UPDATE flags SET title = ?, explanation = ?, wording = ?, rule_version = ? "
                "WHERE flag_id = ?",
                [new_title, new_explanation, new_words, rule.sha256, fid],
            )
            log_action(con, fid, at, actor.username, "reword", version, rule.sha256, None)
            changed += 1
    return changed
