"""The store: the only module that opens DuckDB connections; tables, locking and retries.

Two stores speak the same SQL. The default is an embedded DuckDB file: DuckDB lets one
process write, and while it does no other process can open the file at all, so
connections are opened per operation and closed at once, writers are serialised through a
lock file, and opening retries with backoff while another process holds the file. A
DuckLake URL (``ducklake:postgres:dbname=… host=…``) is a shared store instead: its
catalog in PostgreSQL, its data as Parquet files in a shared folder
(``DETECTOR_DATA_PATH``), read and written by processes on many machines at once with
snapshot isolation (:class:`_Lake`). There, writers that must take turns (the ledger's
chain, the flags, the review audit trail) take PostgreSQL advisory locks, held by a
session that dies with its process.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import importlib.util
import os
import random
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
from filelock import FileLock, Timeout
from pydantic import ByteSize, TypeAdapter

from detector.errors import DetectorError, StoreBusy
from detector.schema import KINDS, SPECS, fold_sql, name_status_sql, sql_string
from detector.settings import settings

_SQL_TYPES = {
    "text": "VARCHAR",
    "int": "BIGINT",
    "datetime": "TIMESTAMP",
    "date": "DATE",
    "vocab": "VARCHAR",
}
PROVENANCE = {
    "record_key": "VARCHAR",
    "source_sha256": "VARCHAR",
    "source_name": "VARCHAR",
    "source_row": "BIGINT",
    "upload_seq": "BIGINT",
}


LAKE = "ducklake:"


def is_lake(db: str | Path | None) -> bool:
    """Whether ``db`` names a DuckLake store (``ducklake:postgres:…``) rather than a file."""
    return str(db or "").startswith(LAKE)


def db_path(db: str | Path | None = None) -> Path:
    """The database file: the argument, else $DETECTOR_DB, else ./data/detector.duckdb."""
    return Path(db or settings().db)


def home_dir(db: str | Path | None = None) -> Path:
    """The folder the store's own files sit in (evidence, kept models, dashboard users): the
    database file's folder, or the folder holding a lake's data folder (shared by every
    machine, as the data folder is)."""
    db = db or settings().db
    return (_data_path(str(db)) if is_lake(db) else db_path(db)).parent


def evidence_dir(db: str | Path | None = None) -> Path:
    """Content-addressed copies of every uploaded file: ``$DETECTOR_EVIDENCE_PATH``, else
    ``evidence/`` beside the database file (or beside a lake's data folder)."""
    if settings().evidence_path:
        return Path(settings().evidence_path)
    return home_dir(db) / "evidence"


def _data_path(url: str) -> Path:
    if not settings().data_path:
        raise DetectorError(
            f"{_shown(url)}: a DuckLake store needs its data folder in DETECTOR_DATA_PATH "
            "(a folder every machine of the store mounts at the same path)"
        )
    # Absolute: the catalog records the folder as the first ATTACH spelt it, and every
    # later ATTACH must spell it alike, from whatever folder the command runs in.
    return Path(settings().data_path).absolute()


def _shown(url: str) -> str:
    """A store's name for messages: a password in a lake's URL is never shown."""
    return re.sub(r"(password=)\S+", r"\1***", url)


def kind_columns(kind: str) -> dict[str, str]:
    """Column name -> SQL type of a kind's table, in order."""
    cols: dict[str, str] = {}
    for f in SPECS[kind].fields:
        cols[f.name] = _SQL_TYPES[f.type]
        if f.keeps_raw:
            cols[f"{f.name}_raw"] = "VARCHAR"
    cols.update(SPECS[kind].derived)
    cols.update(PROVENANCE)
    return cols


def sealed_columns(kind: str) -> list[str]:
    """The columns a stored row's digest covers (``ledger.rows_digest``): what was read from
    the file and where it came from. Derived columns are left out, as a later version may
    fill a new one in for old rows."""
    derived = SPECS[kind].derived
    return [c for c in kind_columns(kind) if c not in derived]


# Fields a kind gained after rows were first sealed: older rows hold NULL there, so a row's
# digest covers them only when they hold a value (the seal of an older upload still holds).
LATE_FIELDS: dict[str, tuple[str, ...]] = {
    "visits": ("host", "minors"),
    "transfers": ("medical_approval_raw",),
}


def sealed_row_sql(kind: str) -> str:
    """SQL over a kind's table: the text of one stored row that its digest covers, the
    ``sealed_columns`` in order, a late field (``LATE_FIELDS``) only when it holds a value."""
    late = LATE_FIELDS.get(kind, ())
    row = " || chr(31) || ".join(
        f"coalesce(CAST({c} AS VARCHAR), chr(0))" for c in sealed_columns(kind) if c not in late
    )
    return row + "".join(f" || coalesce(chr(30) || CAST({c} AS VARCHAR), '')" for c in late)


def records_view_sql() -> str:
    """The ``records`` view: each kind's records as its ``Evidence`` declaration cites
    them, and the quarantined rows."""
    parts = [
        f"SELECT record_key, '{kind}' AS kind, {e.record_id} AS record_id, "
        f"{e.facility} AS facility, {e.logbook} AS logbook, {e.page} AS page, {e.line} AS line, "
        f"{e.happened_at} AS happened_at, {e.label} AS label, source_sha256, source_name, "
        f"source_row, {e.page_side}::VARCHAR AS page_side FROM {kind}"
        for kind, e in ((k, SPECS[k].evidence) for k in KINDS)
        if e is not None
    ]
    # a quarantined row once (a row failing several checks has a row for each), cited by
    # the place it was written as far as it was read
    parts.append(
        "SELECT 'Q|' || source_sha256[:16] || ':' || source_row, 'quarantine', "
        "any_value(record_id), any_value(facility), any_value(logbook), any_value(page), "
        "any_value(line), NULL, min(reason_code), source_sha256, any_value(source_name), "
        "source_row, NULL FROM quarantine GROUP BY source_sha256, source_row"
    )
    return "CREATE OR REPLACE VIEW records AS\n" + "\nUNION ALL\n".join(parts)


def unread_values_view_sql() -> str:
    """The ``unread_values`` view: each stored record's optional date that could not be
    read (or read as an implausible year), with its text as written. Ingest stores such a
    row with the field empty rather than lose the row; the data-quality rule reports them
    once per file."""
    parts = [
        f"SELECT record_key, '{kind}' AS kind, '{f.name}' AS field, {f.name}_raw AS raw, "
        f"source_sha256, source_name, source_row, upload_seq FROM {kind} "
        f"WHERE {f.name} IS NULL AND trim(coalesce({f.name}_raw, '')) <> ''"
        for kind in KINDS
        for f in SPECS[kind].fields
        if f.type in ("datetime", "date") and not f.required
    ]
    return "CREATE OR REPLACE VIEW unread_values AS\n" + "\nUNION ALL\n".join(parts)


SCHEMA = [
    *(
        f"CREATE TABLE IF NOT EXISTS {kind} ("
        + ", ".join(f"{c} {t}" for c, t in kind_columns(kind).items())
        + ")"
        for kind in KINDS
    ),
    """CREATE TABLE IF NOT EXISTS uploads (
        seq BIGINT PRIMARY KEY, sha256 VARCHAR NOT NULL, size BIGINT, original_name VARCHAR,
        uploaded_by VARCHAR, uploaded_at TIMESTAMP, kind VARCHAR, format VARCHAR,
        encoding VARCHAR, delimiter VARCHAR, mapping VARCHAR, rows_read BIGINT,
        rows_stored BIGINT, rows_quarantined BIGINT, rows_duplicate BIGINT,
        prev_hash VARCHAR, entry_hash VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        source_sha256 VARCHAR, source_name VARCHAR, kind VARCHAR, source_row BIGINT,
        field VARCHAR, reason_code VARCHAR, reason VARCHAR, raw VARCHAR, upload_seq BIGINT)""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id BIGINT PRIMARY KEY, kind VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP,
        status VARCHAR, triggered_by VARCHAR, rules VARCHAR, counts VARCHAR, errors VARCHAR,
        scope VARCHAR, watermark BIGINT)""",
    """CREATE TABLE IF NOT EXISTS flags (
        flag_id VARCHAR PRIMARY KEY, rule_id VARCHAR, category VARCHAR, severity VARCHAR,
        source VARCHAR, title VARCHAR, subject VARCHAR, facility VARCHAR, logbook VARCHAR,
        period_start TIMESTAMP, period_end TIMESTAMP, record_keys VARCHAR[],
        record_ids VARCHAR[], evidence VARCHAR, fields VARCHAR, explanation VARCHAR,
        score DOUBLE, first_run BIGINT, last_run BIGINT, first_seen TIMESTAMP,
        last_seen TIMESTAMP, state VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS models (
        model_id VARCHAR PRIMARY KEY, run_id BIGINT, model VARCHAR, config VARCHAR,
        features VARCHAR, fit_from TIMESTAMP, fit_to TIMESTAMP, fit_rows BIGINT,
        fitted_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS scores (
        run_id BIGINT, model_id VARCHAR, record_key VARCHAR, outlier_score DOUBLE,
        outlier_pct DOUBLE, rule_score DOUBLE, risk_score DOUBLE, rules VARCHAR[],
        top_features VARCHAR)""",
    # Weight factors learnt from reviews (``detector.calibration``), and their history.
    """CREATE TABLE IF NOT EXISTS rule_weights (
        rule_id VARCHAR PRIMARY KEY, factor DOUBLE, confirmed BIGINT, dismissed BIGINT,
        run_id BIGINT, updated_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS weight_changes (
        run_id BIGINT, rule_id VARCHAR, old DOUBLE, new DOUBLE, confirmed BIGINT,
        dismissed BIGINT, changed_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS reviews (
        flag_id VARCHAR PRIMARY KEY, status VARCHAR, assignee VARCHAR, reason VARCHAR,
        note VARCHAR, updated_at TIMESTAMP, updated_by VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS suppressions (
        rule_id VARCHAR, entity VARCHAR, until DATE, created_by VARCHAR,
        created_at TIMESTAMP, note VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS review_log (
        flag_id VARCHAR, acted_at TIMESTAMP, actor VARCHAR, action VARCHAR, old VARCHAR, new VARCHAR,
        note VARCHAR)""",
    # (the views are in VIEWS: made after MIGRATIONS, so they may read migrated columns)
]

VIEWS = [
    # The newest roster line of each inmate.
    """CREATE OR REPLACE VIEW inmates_current AS
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY inmate_id
                                         ORDER BY upload_seq DESC, source_row DESC) AS rn
            FROM inmates) WHERE rn = 1""",
    # Every stored record and quarantined row with where it came from: the evidence index.
    records_view_sql(),
    unread_values_view_sql(),
    # The views each kind brings (events paired into stays...).
    *(view.sql for kind in KINDS for view in SPECS[kind].views),
    # Each person under the name they are shown by: their commonest spelling that names
    # someone (a placeholder written beside their document, "NN", only when nothing else
    # does), given names first when some line writes them so ("PEREZ LOPEZ, JUAN" is a
    # surname-first line).
    f"""CREATE OR REPLACE VIEW person_names AS
        SELECT person_id,
               arg_max(name, named::INT * 1e12 + (NOT contains(name, ','))::INT * 1e9 + n)
                 AS name,
               sum(n)::BIGINT AS rows
        FROM (SELECT person_id, name, count(*) AS n,
                     {name_status_sql(fold_sql("name"))} = 'named' AS named
              FROM persons
              WHERE person_id IS NOT NULL AND coalesce(name, '') <> '' GROUP BY ALL)
        GROUP BY person_id""",
    # The person of each visit (its visitor, and the escort written on its line) and of
    # each reader event: what rules join to tell one person from a namesake.
    """CREATE OR REPLACE VIEW visit_persons AS
        SELECT record_key, any_value(person_id) FILTER (WHERE part = 'visitor') AS person_id,
               any_value(person_id) FILTER (WHERE part = 'escort') AS escort_person_id
        FROM persons WHERE kind = 'visits' GROUP BY record_key""",
    """CREATE OR REPLACE VIEW event_persons AS
        SELECT record_key, person_id FROM persons WHERE kind = 'events'""",
]


def _current_views(con) -> None:
    """This release's views as temporary views of a read-only connection, over the stored
    ones of an older release (a file no writer of this release has opened yet): a reader
    of it (``status``, the dashboard, the linkage's and the scoring's reads) reads what this
    release means by ``passages`` or ``records``, not what the older one did. (A rule run
    brings the file up to date instead: ``bring_current``.)"""
    for view in VIEWS:
        con.execute(view.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1))


def _transient(exc: Exception) -> bool:
    # DuckDB 1.5 reports a file another thread of this process holds open in the other
    # mode as a "unique file handle conflict" (2.0 as a "different configuration").
    text = str(exc).lower()
    return "lock" in text or "different configuration" in text or "file handle conflict" in text


# Where a quarantined row was written, as its kind's fields of these names read it (its
# facility by the list's code, its page as a number; NULL where unread or not a field of
# the kind): its evidence cites the place (the ``records`` view), and a rule may count the
# line as written (a page whose lines were all set aside is not a page torn out).
QUARANTINE_PLACE = {
    "record_id": "VARCHAR",
    "facility": "VARCHAR",
    "checkpoint": "VARCHAR",
    "logbook": "VARCHAR",
    "page": "BIGINT",
    "line": "BIGINT",
}

# Columns added after a table was first released: older database files gain them on open.
MIGRATIONS = [
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS watermark BIGINT",
    "ALTER TABLE flags ADD COLUMN IF NOT EXISTS subject VARCHAR",
    "ALTER TABLE visits ADD COLUMN IF NOT EXISTS name_status VARCHAR",
    # The side of a folio a line was written on ("12 vta.": schema.FOLIO_SIDE).
    "ALTER TABLE visits ADD COLUMN IF NOT EXISTS page_side VARCHAR",
    f"UPDATE visits SET name_status = {name_status_sql()} WHERE name_status IS NULL",
    # Reader events: how the name reads, and a person as their badge with that name.
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS name_status VARCHAR",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS outcome VARCHAR",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS outcome_raw VARCHAR",
    "ALTER TABLE zones ADD COLUMN IF NOT EXISTS strict VARCHAR",
    "ALTER TABLE zones ADD COLUMN IF NOT EXISTS strict_raw VARCHAR",
    f"UPDATE events SET name_status = {name_status_sql()} WHERE name_status IS NULL",
    "UPDATE events SET person_key = person_key || '|' || name_key "
    "WHERE person_key = badge AND coalesce(name_key, '') <> ''",
    "ALTER TABLE facilities ADD COLUMN IF NOT EXISTS role_hours VARCHAR",
    # A quarantined row's values beside its English reason, to say it in another language.
    "ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS reason_values VARCHAR",
    # Where a quarantined row was written, as read (``QUARANTINE_PLACE``).
    *(
        f"ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS {name} {sql}"
        for name, sql in QUARANTINE_PLACE.items()
    ),
    "ALTER TABLE reviews ADD COLUMN IF NOT EXISTS reopen_on_new BOOLEAN DEFAULT false",
    # Typed suppressions (matched exactly); older rows are facility codes.
    "ALTER TABLE suppressions ADD COLUMN IF NOT EXISTS entity_kind VARCHAR",
    "ALTER TABLE suppressions ADD COLUMN IF NOT EXISTS entity_key VARCHAR",
    # The review audit trail is hash-chained (rows written before this are not).
    "ALTER TABLE review_log ADD COLUMN IF NOT EXISTS seq BIGINT",
    "ALTER TABLE review_log ADD COLUMN IF NOT EXISTS prev_hash VARCHAR",
    "ALTER TABLE review_log ADD COLUMN IF NOT EXISTS entry_hash VARCHAR",
    # A digest of each upload's stored rows, sealed into its ledger entry.
    "ALTER TABLE uploads ADD COLUMN IF NOT EXISTS rows_digest VARCHAR",
    # Readers and zones matched folded (events and the zones list).
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS reader_key VARCHAR",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS zone_key VARCHAR",
    "ALTER TABLE zones ADD COLUMN IF NOT EXISTS reader_key VARCHAR",
    "ALTER TABLE zones ADD COLUMN IF NOT EXISTS zone_key VARCHAR",
    f"UPDATE events SET reader_key = {fold_sql('reader')}, zone_key = {fold_sql('zone')} "
    "WHERE reader_key IS NULL AND zone_key IS NULL AND coalesce(reader, zone) IS NOT NULL",
    f"UPDATE zones SET reader_key = {fold_sql('reader')}, zone_key = {fold_sql('zone')} "
    "WHERE zone_key IS NULL",
    # A flag keeps its words (every language) and the rule version it was worded under.
    "ALTER TABLE flags ADD COLUMN IF NOT EXISTS wording VARCHAR",
    "ALTER TABLE flags ADD COLUMN IF NOT EXISTS rule_version VARCHAR",
    # A fitted model is kept with its feature context (``scoring.Reference``), hashed.
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
    # Mappings saved by name (``detector.mapping.save_named``): each version kept, hashed.
    """CREATE TABLE IF NOT EXISTS mappings (
        name VARCHAR, version INTEGER, sha256 VARCHAR, kind VARCHAR, body VARCHAR,
        saved_by VARCHAR, saved_at TIMESTAMP, PRIMARY KEY (name, version))""",
    # Visits: the person visited (a host, not someone who came in) and the minors stated.
    "ALTER TABLE visits ADD COLUMN IF NOT EXISTS host VARCHAR",
    "ALTER TABLE visits ADD COLUMN IF NOT EXISTS minors BIGINT",
    "ALTER TABLE visits ADD COLUMN IF NOT EXISTS host_key VARCHAR",
    # An approval as written ("Pendiente" is kept there, and is no approval).
    "ALTER TABLE transfers ADD COLUMN IF NOT EXISTS medical_approval_raw VARCHAR",
    # Who each named row is (``detector.identity``): one row per person a record names, in
    # the part they play there, with the mention (the name, document and badge as one
    # spelling) and the person it was linked to, and the weight of that link.
    """CREATE TABLE IF NOT EXISTS persons (
        kind VARCHAR, record_key VARCHAR, part VARCHAR, name VARCHAR, id_number VARCHAR,
        badge VARCHAR, facility VARCHAR, happened_at TIMESTAMP, inmate_id VARCHAR,
        plate_key VARCHAR, mention_key VARCHAR, person_id VARCHAR, match_weight DOUBLE,
        upload_seq BIGINT)""",
    # Each mention once: what linkage compares, and the person it belongs to.
    """CREATE TABLE IF NOT EXISTS person_mentions (
        mention_key VARCHAR, canonical VARCHAR, words VARCHAR[], sounds VARCHAR[],
        sounds_key VARCHAR, id_number VARCHAR, id_type VARCHAR, badge VARCHAR, inmates VARCHAR[],
        commonness DOUBLE, first_seq BIGINT, person_id VARCHAR, match_weight DOUBLE,
        linked_to VARCHAR, model_id VARCHAR)""",
    # The pairs of mentions the model scored that explain a person: the links that joined
    # them (accepted) and those that came close, with each comparison's weight (why).
    """CREATE TABLE IF NOT EXISTS person_links (
        mention_key VARCHAR, other_key VARCHAR, match_weight DOUBLE,
        match_probability DOUBLE, why VARCHAR, accepted BOOLEAN, model_id VARCHAR,
        run_id BIGINT)""",
    # The linkage models (their Splink settings under the models folder, hashed).
    """CREATE TABLE IF NOT EXISTS person_models (
        model_id VARCHAR, run_id BIGINT, fitted_at TIMESTAMP, mentions BIGINT,
        threshold DOUBLE, trained VARCHAR, content_hash VARCHAR)""",
    # An auditor's merges and splits of persons, which every later linkage respects.
    """CREATE TABLE IF NOT EXISTS person_overrides (
        seq BIGINT, action VARCHAR, mentions VARCHAR[], others VARCHAR[], acted_by VARCHAR,
        acted_at TIMESTAMP, note VARCHAR)""",
    # How many rows wrote each mention (``identity.ESTABLISHED_ROWS``); none for mentions a
    # release before it linked.
    "ALTER TABLE person_mentions ADD COLUMN IF NOT EXISTS row_count BIGINT",
]

# Everything a database file needs, in order: tables, then the columns added since, then
# the views over both.
DDL = SCHEMA + MIGRATIONS + VIEWS
# The DDL a file was last brought up to date with, recorded in it (``schema_version``), so
# that a process finding its own DDL's digest there neither runs the DDL again (a writer:
# every view replaced and committed) nor compares every column (a reader: an in-memory
# database built to list them, 0.15 s of `detector status`).
DDL_SHA256 = hashlib.sha256("\n;\n".join(DDL).encode()).hexdigest()
# The views' SQL, what rules read besides the tables: a rule run records it (``engine``),
# and a release that changes a view has every rule re-run in full once.
VIEWS_SHA256 = hashlib.sha256("\n;\n".join(VIEWS).encode()).hexdigest()
_MARK = "CREATE TABLE IF NOT EXISTS schema_version (ddl_sha256 VARCHAR)"

# The storage format a new database file is written in (a file keeps the format it was
# created in). DuckDB writes files readable by its 1.0 releases unless told otherwise; the
# 1.5 format compresses text by dictionary and FSST together (DICT_FSST). Storing 10M
# badge reads: 12.9-13.7 s -> 8.4-8.6 s, the file 384 -> 289 MB.
STORAGE_VERSION = "v1.5.0"


def _keyless(sql: str) -> str:
    """A DDL statement as a lake takes it: DuckLake has no PRIMARY KEY (writers that could
    repeat a key take turns under an advisory lock and write with MERGE instead) and adds
    no column with a default (readers take a missing value as the default)."""
    sql = re.sub(r",\s*PRIMARY KEY\s*\([^)]*\)", "", sql)
    sql = re.sub(r"\s+PRIMARY KEY\b", "", sql)
    return re.sub(r"(ADD COLUMN .*?)\s+DEFAULT\s+\S+$", r"\1", sql)


# A lake records which schema it was last brought to, so that a process starting on it
# runs no DDL at all when nothing changed (DDL on a shared catalog is a commit that every
# other writer would then have to merge with).
LAKE_DDL = [
    *(_keyless(sql) for sql in DDL),
    "CREATE TABLE IF NOT EXISTS store_schema (ddl_sha256 VARCHAR, applied_at TIMESTAMP)",
]
LAKE_SCHEMA = hashlib.sha256("\n;\n".join(LAKE_DDL).encode("utf-8")).hexdigest()
# The tables where a store records the schema it was brought to (a file's ``schema_version``,
# a lake's ``store_schema``): each store's own, no record of the audit, never copied.
SCHEMA_MARKS = frozenset({"schema_version", "store_schema"})


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction on ``con``: committed when the block ends, rolled back when it
    raises (the block may commit and begin again part way)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _owner_only(path: Path) -> None:
    """The database file (and its write-ahead log) readable and writable by its owner only."""
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            os.chmod(p, 0o600)


_COLUMNS_SQL = "SELECT table_name, column_name FROM information_schema.columns"


def _marked(con: duckdb.DuckDBPyConnection) -> str | None:
    """The digest of the DDL the file was last brought up to date with (None: unknown)."""
    try:
        found = con.execute("SELECT max(ddl_sha256) FROM schema_version").fetchall()
    except duckdb.CatalogException:
        return None
    return found[0][0]


@functools.cache
def _expected_columns() -> frozenset[tuple[str, str]]:
    """Every (table, column) that DDL creates, read off an empty database."""
    con = duckdb.connect(":memory:")
    try:
        for ddl in DDL:
            con.execute(ddl)
        return frozenset(con.execute(_COLUMNS_SQL).fetchall())
    finally:
        con.close()


# Writers that must take turns, each on its own lock, always taken in this order: the
# ledger (ingests, saved mappings: one hash chain, one copy of each record), the runs (rule
# and scoring runs: run ids, flags, scores, models, weights) and the reviews (reviews and
# their hash-chained audit trail; a run re-opening cases writes them too). On a lake an
# ingest, a rule run and a reviewer's save proceed side by side; on a file every writer
# takes the one lock file.
WRITERS = ("ledger", "runs", "reviews")


def is_lake_connection(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a connection the store handed out reads and writes a lake."""
    return con.execute(
        "SELECT type FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall() == [("ducklake",)]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (someone else's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# DuckDB names its spill files alike in every process (duckdb_temp_storage_*.tmp): two
# processes spilling into one folder at once both died of a segmentation fault (DuckDB
# 1.5.5; the dashboard reading beside a scheduled run, each past the memory limit).
_SPILLS: dict[tuple[int, Path], Path] = {}


def spill_folder(folder: Path) -> Path:
    """Where this process's DuckDB connections spill for ``folder``: a folder of its own,
    ``folder/.duckdb_tmp/<pid>-<random>``, the same for every connection of the process
    (DuckDB refuses a second connection to an open file with other settings). DuckDB
    creates it when it first spills and removes it, with its files, when the connection
    that created it closes; this makes ``.duckdb_tmp`` (DuckDB creates one level only) and
    removes the folders of processes gone (one killed while spilling leaves its files)."""
    parent = folder / ".duckdb_tmp"
    key = (os.getpid(), parent)
    if key not in _SPILLS:
        # (a store on read-only media is still read: DuckDB needs the folder only to spill)
        with contextlib.suppress(OSError):
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            for old in parent.iterdir():
                pid = old.name.partition("-")[0]
                if pid.isdigit() and old.is_dir() and not process_alive(int(pid)):
                    shutil.rmtree(old, ignore_errors=True)
        _SPILLS[key] = parent / f"{os.getpid()}-{secrets.token_hex(4)}"
    return _SPILLS[key]


def connect(
    spill_in: Path, database: str = ":memory:", read_only: bool = False, **config
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection as every connection of the tool is made: under the store's
    memory limit (DuckDB spills to disk past it: runs stay within a known budget), spilling
    into this process's own folder in ``spill_in`` (``spill_folder``), without a progress
    bar (``quiet``); ``config`` adds settings of its own."""
    config = {
        "memory_limit": settings().duckdb_memory,
        "temp_directory": str(spill_folder(spill_in)),
        **config,
    }
    return quiet(duckdb.connect(database, read_only=read_only, config=config))


def private_con(workdir: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB of the process's own in memory (linkage's and scoring's work), under the
    store's memory limit, spilling into this process's folder in ``workdir``."""
    return connect(workdir)


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """``con`` without DuckDB's progress bar, which a query running past two seconds draws
    on standard output: into a command's JSON or CSV (``detector status --format json``,
    an export to stdout) on a large store. (A setting of each connection, not of the
    database: it cannot go in ``duckdb.connect``'s config.)"""
    con.execute("SET enable_progress_bar = false")
    return con


def frame_table(con: duckdb.DuckDBPyConnection, table: str, frame) -> None:
    """The polars ``frame`` as the temporary table ``table`` of ``con``.

    Handed over as a Parquet file that polars writes (without pyarrow), read by DuckDB and
    removed. Registering the frame instead makes DuckDB convert it through pyarrow, whose
    import (with NumPy and pyarrow.dataset) took 0.15-0.2 s of each daily ``detector
    run``; the file is as fast for a million rows. It is written in the connection's spill
    folder (``temp_directory``), the one folder a sandboxed connection still reads, which
    every connection of the tool keeps for its process alone (``spill_folder``): DuckDB
    removes it, with whatever is in it, when the connection that created it closes, and
    only this process's connections do. A connection without an absolute spill folder
    registers the frame."""
    (spill,) = con.execute("SELECT current_setting('temp_directory')").fetchone()
    if not spill or not os.path.isabs(spill):
        con.register(f"{table}_frame", frame)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {table}_frame")
        finally:
            con.unregister(f"{table}_frame")
        return
    Path(spill).mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=spill, prefix=f"frame-{table}-", suffix=".parquet")
    os.close(fd)
    try:
        frame.write_parquet(name, compression="uncompressed")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_parquet({sql_string(name)})"
        )
    finally:
        os.unlink(name)


def upsert(con: duckdb.DuckDBPyConnection, table: str, keys: tuple[str, ...], row: dict) -> None:
    """Insert ``row`` into ``table``, or replace the stored row with the same ``keys``. A
    MERGE, which both stores take: a lake has no primary keys for ``INSERT OR REPLACE``
    (the caller's writers' lock keeps two writers from adding one key twice)."""
    cols = list(row)
    match = " AND ".join(f"{table}.{k} = new.{k}" for k in keys)
    sets = ", ".join(f"{c} = new.{c}" for c in cols if c not in keys)
    con.execute(
        f"MERGE INTO {table} USING (SELECT {', '.join(f'? AS {c}' for c in cols)}) AS new "
        f"ON {match} WHEN MATCHED THEN UPDATE SET {sets} WHEN NOT MATCHED THEN INSERT BY NAME",
        list(row.values()),
    )


def snapshot(con: duckdb.DuckDBPyConnection) -> tuple[int, datetime] | None:
    """The lake snapshot a connection reads (its id and when it was committed); None on a
    file, which keeps no snapshots."""
    if not is_lake_connection(con):
        return None
    name = con.execute("SELECT current_database()").fetchall()[0][0]
    return con.execute(
        f'SELECT s.snapshot_id, s.snapshot_time FROM "{name}".current_snapshot() c '
        f"JOIN ducklake_snapshots('{name}') s ON s.snapshot_id = c.id"
    ).fetchall()[0]


def commit_part(con: duckdb.DuckDBPyConnection) -> None:
    """Commit what a long write has done so far and go on in a new transaction. DuckDB keeps
    a transaction's new rows in memory until a checkpoint, which a file makes by itself
    once its write-ahead log is large enough (``checkpoints_by_size``); a lake has written
    them to Parquet files already."""
    con.execute("COMMIT")
    con.execute("BEGIN TRANSACTION")


# The share of DuckDB's memory limit a file's write-ahead log may hold before a long write
# checkpoints it (``checkpoints_by_size``).
CHECKPOINT_SHARE = 0.25


@contextmanager
def checkpoints_by_size(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Within the block, a file checkpoints once its write-ahead log holds CHECKPOINT_SHARE
    of DuckDB's memory limit, not at each ``commit_part``: a checkpoint rewrites every row
    group a commit touched, whole, so that parts appended one by one to the same row group
    rewrote it again and again (10M visits, a common name's 822 flags citing 3.2M lines:
    15 parts, each checkpoint rewriting the evidence of every part before it; the rule run
    41 -> 29 s). The log's size bounds what is held in memory between checkpoints. A lake
    checkpoints nothing here (its CHECKPOINT is maintenance, merging and expiring files,
    that a writer must not start on others' behalf)."""
    if is_lake_connection(con):
        yield
        return
    (limit, before) = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('checkpoint_threshold')"
    ).fetchall()[0]
    size = max(16 << 20, int(TypeAdapter(ByteSize).validate_python(limit) * CHECKPOINT_SHARE))
    con.execute(f"SET checkpoint_threshold = '{size}B'")
    restore = f"SET checkpoint_threshold = '{before}'"
    try:
        yield
    except BaseException:
        # an aborted transaction refuses the SET: its refusal must not hide the failure
        # (an out-of-memory error was recorded as "transaction is aborted")
        with contextlib.suppress(duckdb.Error):
            con.execute(restore)
        raise
    con.execute(restore)


class Store:
    """Opens short-lived connections to one store: a DuckDB file, or a DuckLake.

    ``read()`` gives a read-only connection (on a file, retrying while a writer holds it);
    ``write()`` takes the writers' lock, opens read-write and runs the body in one
    transaction, committed only if the body returns. ``url`` is what ``--db`` took: a
    file's path or a lake's URL. Files the store keeps beside its tables (the evidence,
    the kept scoring models, the dashboard's users) are in ``home``: the database file's
    folder, or the folder that holds a lake's data folder (shared by every machine).
    """

    _ready: set[str] = set()  # stores whose schema this process has already created
    _readable: set[str] = set()  # stores found to have the whole schema already
    # ... whose views are an older release's (no writer of this one has opened them yet)
    _stale_views: set[str] = set()

    def __init__(
        self,
        db: str | Path | None = None,
        wait: float | None = None,
        data_path: str | Path | None = None,
    ):
        self.url = str(db) if db else settings().db
        self.wait = settings().lock_wait if wait is None else wait
        if is_lake(self.url):
            # (``data_path``: a lake's data folder other than DETECTOR_DATA_PATH's, for
            # copying one store into another and for tests that hold two lakes at once)
            self._lake: _Lake | None = _Lake(self.url, self.wait, data_path)
            self.path: Path | None = None
            self.home = self._lake.data_path.parent
            # Spills and hit spools stay on this machine's own disk, the owner's alone.
            self.scratch = Path(tempfile.gettempdir()) / f"detector-{os.getuid()}"
            self.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            self._lake = None
            self.path = db_path(self.url)
            self.home = self.scratch = self.path.parent
            # Logs are personal data: the data folder and the database are the owner's alone.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock = FileLock(str(self.path) + ".lock")

    @property
    def lake(self) -> bool:
        """Whether this is a shared DuckLake store."""
        return self._lake is not None

    @property
    def data_path(self) -> Path | None:
        """A lake's data folder (None for a file)."""
        return self._lake.data_path if self._lake is not None else None

    @property
    def name(self) -> str:
        """The store as messages name it (a lake's password never shown)."""
        return _shown(self.url) if self.lake else str(self.path)

    @property
    def evidence(self) -> Path:
        """Content-addressed copies of every uploaded file (see :func:`evidence_dir`)."""
        return Path(settings().evidence_path or self.home / "evidence")

    @property
    def users(self) -> Path:
        """The dashboard's users file: ``$DETECTOR_USERS``, else ``users.yaml`` in ``home``."""
        return settings().users or self.home / "users.yaml"

    @property
    def models(self) -> Path:
        """Kept scoring references (``detector.scoring``), beside the store."""
        return self.home / "models"

    def exists(self) -> bool:
        return self.lake or self.path.exists()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.wait
        delay = 0.02
        while True:
            try:
                return connect(
                    self.path.parent,
                    str(self.path),
                    read_only=read_only,
                    storage_compatibility_version=STORAGE_VERSION,
                )
            except (duckdb.IOException, duckdb.ConnectionException, duckdb.BinderException) as exc:
                # Another process holds the file (a lock), or, inside this process, another
                # thread holds it open in the other mode (read-only vs read-write): both pass.
                if not _transient(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreBusy(f"{self.path}: busy, another process is writing") from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)

    @contextmanager
    def read(self, as_of: datetime | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; with ``as_of`` (a lake only), to the store as it was then."""
        if self._lake is not None:
            self._prepare_lake()
            with self._lake.read(self.scratch, as_of=as_of) as con:
                yield con
            return
        if as_of is not None:
            raise DetectorError(
                f"{self.path}: a database file keeps no snapshots; reading the store as it "
                "was on a date needs a DuckLake store"
            )
        key = str(self.path)
        if not (key in Store._ready or key in Store._readable) or not self.path.exists():
            if self.path.exists() and self._schema_current():
                Store._readable.add(key)  # a writer still runs the DDL once (views)
            else:
                self.init()
        con = self._open(read_only=True)
        try:
            if key in Store._stale_views and key not in Store._ready:
                _current_views(con)
            yield con
        finally:
            con.close()

    @contextmanager
    def sandboxed(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection of its own, locked down before SQL from rule folders runs
        on it: no files, URLs or extensions (``read_text('/etc/passwd')``, ``COPY … TO``) and
        no way to switch that back on. It keeps reading the store's own tables (a lake's
        Parquet files in its data folder); use it for nothing else."""
        if self._lake is not None:  # a DuckDB of its own, locked down once (see _Lake)
            self._prepare_lake()
            with self._lake.read(self.scratch, sandbox=True) as con:
                yield con
            return
        with self.read() as con:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            yield con

    @contextmanager
    def write(self, serialise: tuple[str, ...] = WRITERS) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection in one transaction, after the turn of the writers
        ``serialise`` names (``WRITERS``: all of them, what a file always takes)."""
        if self._lake is not None:
            self._prepare_lake()
            with self._lake.write(self.scratch, serialise) as con:
                yield con
            return
        try:
            self._lock.acquire(timeout=self.wait)
        except Timeout as exc:
            raise StoreBusy(f"{self.path}: busy, another writer holds the lock") from exc
        try:
            con = self._open(read_only=False)
            try:
                if str(self.path) not in Store._ready:
                    if _marked(con) != DDL_SHA256:
                        # one transaction: all of the schema or none of it (and one commit,
                        # not one per statement: a new file in 0.05 s, not 0.18 s)
                        with transaction(con):
                            for ddl in (*DDL, _MARK):
                                con.execute(ddl)
                            con.execute("DELETE FROM schema_version")
                            con.execute("INSERT INTO schema_version VALUES (?)", [DDL_SHA256])
                    _owner_only(self.path)
                    Store._ready.add(str(self.path))
                with transaction(con):
                    yield con
            finally:
                con.close()
        finally:
            self._lock.release()

    def bring_current(self) -> None:
        """Bring a file an older release wrote to this release's schema (the DDL once, in a
        short write), unless a writer of this process already did. What a rule run does
        first: its queries read the views on read-only connections of their own, where the
        computed views are shadowed by temporary tables (``engine._computed_views``)."""
        key = str(self.path)
        if self._lake is not None or key in Store._ready or not self.path.exists():
            return
        con = self._open(read_only=True)
        try:
            stale = _marked(con) != DDL_SHA256
        finally:
            con.close()
        if stale:
            with self.write():
                pass

    def _prepare_lake(self) -> None:
        """Bring a lake's schema to this version once per process (nothing to do, and no
        write, when its recorded schema is this version's)."""
        if self.url not in Store._ready:
            self._lake.ensure_schema(self.scratch)
            Store._ready.add(self.url)

    def _schema_current(self) -> bool:
        """True when the file already has every table and column this version creates, so
        that a reader (``status``, ``verify``) needs no write: it works on a full disk, on
        a read-only copy and while a writer holds the lock."""
        con = self._open(read_only=True)
        try:
            if _marked(con) == DDL_SHA256:
                return True
            have = set(con.execute(_COLUMNS_SQL).fetchall())
        finally:
            con.close()
        if _expected_columns() <= have:
            Store._stale_views.add(str(self.path))  # the tables are this release's, not
            return True  # necessarily the views
        return False

    def release(self) -> None:
        """Close what this process keeps open on a lake (its DuckDB and catalog sessions);
        the next operation opens them again. A file keeps nothing open."""
        if self._lake is not None:
            self._lake.release()

    def init(self) -> None:
        """Create the file (or the lake) and its tables if they do not exist yet."""
        if self._lake is not None:
            self._prepare_lake()
            return
        with self.write():
            pass


# --- the shared store: DuckLake, its catalog in PostgreSQL --------------------------------

# PostgreSQL advisory locks are pairs of 32-bit keys: the tool's writers' locks, and each
# run's lease (keyed by its run id), held for as long as the run's write goes on.
_LOCK_SPACE = 0x44544354
_LEASE_SPACE = 0x44544355
_LOCKS = {"attach": 1, "ledger": 2, "runs": 3, "reviews": 4}  # taken in this order
_session: contextvars.ContextVar = contextvars.ContextVar("lake_session", default=None)


def _extension(name: str) -> str:
    """The ``.duckdb_extension`` file the pip package ``duckdb-extension-<name>`` installs for
    this DuckDB version: loaded from there, nothing is downloaded."""
    version = duckdb.__version__
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
        if path.is_file():
            return str(path)
    raise DetectorError(
        f"a DuckLake store needs the DuckDB extension {name} built for DuckDB {version}: "
        f"pip package {package.replace('_', '-')}=={version}"
    )


def lease_run(run_id: int) -> None:
    """Hold run ``run_id``'s lease for as long as the current write goes on: while held, no
    other process takes the run for one a killed process left (:func:`run_alive`). Inside
    a file's write nothing is needed: the writers' lock file is the lease."""
    session = _session.get()
    if session is not None:
        session.execute("SELECT pg_advisory_lock(%s, %s)", (_LEASE_SPACE, int(run_id)))


def run_alive(run_id: int) -> bool:
    """Whether the process that opened run ``run_id`` still runs it. On a lake its lease
    tells: PostgreSQL frees it when that process's session ends, however it ended (killed,
    crashed, its machine gone). In a file's write it is never so: the run held the writers'
    lock, which the caller now holds."""
    session = _session.get()
    if session is None:
        return False
    (free,) = session.execute(
        "SELECT pg_try_advisory_lock(%s, %s)", (_LEASE_SPACE, int(run_id))
    ).fetchone()
    if free:
        session.execute("SELECT pg_advisory_unlock(%s, %s)", (_LEASE_SPACE, int(run_id)))
    return not free


class _Lake:
    """A DuckLake store: the catalog in PostgreSQL, the data as Parquet files in a shared
    folder, read and written by any number of processes with snapshot isolation.

    Extensions are loaded from the pip packages' files (nothing is downloaded). A process
    keeps one in-memory DuckDB with the lake attached twice, read-write as ``lake`` and
    read-only as ``lake_ro``, and hands out a cursor per operation: attaching costs a
    catalog round trip and loading the extensions a second, so it is done once. Writers
    take their turn through PostgreSQL advisory locks on a session of their own (psycopg),
    taken before the transaction begins and freed after it commits."""

    _instances: dict[tuple, duckdb.DuckDBPyConnection] = {}
    _guard = threading.Lock()
    PREFIX = LAKE + "postgres:"

    def __init__(self, url: str, wait: float, data_path: str | Path | None = None):
        if not url.startswith(self.PREFIX):
            raise DetectorError(
                f"{_shown(url)}: a shared store is a DuckLake with its catalog in PostgreSQL "
                "(ducklake:postgres:dbname=… host=… port=… user=…)"
            )
        self.url = url
        self.conninfo = url[len(self.PREFIX) :]
        self.data_path = Path(data_path).absolute() if data_path else _data_path(url)
        self.data_folder = str(self.data_path).rstrip("/") + "/"
        self.wait = wait

    def _connect(self, scratch: Path) -> duckdb.DuckDBPyConnection:
        con = connect(
            scratch,
            # Offline: only the extension files the pip packages installed.
            autoinstall_known_extensions=False,
            autoload_known_extensions=False,
        )
        try:
            for name in ("ducklake", "postgres_scanner"):
                con.execute(f"LOAD {sql_string(_extension(name))}")
            # Commits that do not conflict (appends to other tables) are retried by
            # DuckLake itself; many offices committing at once need more than 10 tries.
            con.execute("SET ducklake_max_retry_count = 100")
        except BaseException:
            con.close()
            raise
        return con

    def _attach(self, con, alias: str, options: str) -> None:
        try:
            con.execute(f"ATTACH {sql_string(self.url)} AS {alias} ({options})")
        except duckdb.Error as exc:
            raise DetectorError(
                f"{_shown(self.url)}: cannot open the lake: {str(exc).splitlines()[0]}"
            ) from exc

    def _key(self, sandbox: bool) -> tuple:
        return (self.url, self.data_folder, settings().duckdb_memory, sandbox)

    def release(self) -> None:
        for sandbox in (False, True):
            with _Lake._guard:
                con = _Lake._instances.pop(self._key(sandbox), None)
            if con is not None:
                con.close()

    def instance(self, scratch: Path, sandbox: bool = False) -> duckdb.DuckDBPyConnection:
        """This process's DuckDB with the lake attached (made on first use). The
        ``sandbox`` one, for SQL from rule folders, has the lake read-only and is locked
        down when made: no file but the lake's own data files (never the evidence beside
        them), no URL or extension, and no setting can change that back."""
        key = self._key(sandbox)
        with _Lake._guard:
            con = _Lake._instances.get(key)
            if con is None:
                con = self._connect(scratch)
                try:
                    self.data_path.mkdir(mode=0o700, parents=True, exist_ok=True)
                    if not sandbox:
                        # The first ATTACH of a new lake creates its catalog: one at a time.
                        with self.locked(("attach",)):
                            self._attach(con, "lake", f"DATA_PATH {sql_string(self.data_folder)}")
                    self._attach(con, "lake_ro", "READ_ONLY")
                    if sandbox:
                        con.execute(f"SET allowed_directories = [{sql_string(self.data_folder)}]")
                        con.execute("SET enable_external_access = false")
                        con.execute("SET lock_configuration = true")
                except BaseException:
                    con.close()
                    raise
                _Lake._instances[key] = con
        return con

    @contextmanager
    def read(
        self, scratch: Path, sandbox: bool = False, as_of: datetime | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only cursor on this process's lake (on its ``sandbox`` DuckDB for rule
        SQL); ``as_of``: on a DuckDB of its own, the lake's last snapshot at that time."""
        if as_of is not None:
            con = self._connect(scratch)
            try:
                options = "READ_ONLY" + (
                    f", SNAPSHOT_TIME {sql_string(as_of.isoformat(sep=' '))}" if as_of else ""
                )
                try:
                    self._attach(con, "lake_ro", options)
                except DetectorError as exc:
                    if as_of is not None and "No snapshot found" in str(exc):
                        raise DetectorError(
                            f"{_shown(self.url)} held nothing yet at {as_of:%Y-%m-%d %H:%M %Z}"
                        ) from exc
                    raise
            except BaseException:
                con.close()
                raise
        else:
            con = self.instance(scratch, sandbox).cursor()
        try:
            con.execute("USE lake_ro")
            # One snapshot for the whole read: what it reads is consistent however many
            # writers commit meanwhile, and the lake's metadata is fetched once for it.
            con.execute("BEGIN TRANSACTION")
            yield con
        finally:
            con.close()

    @contextmanager
    def locked(self, names: tuple[str, ...]) -> Iterator[object]:
        """Take the named advisory locks (in their fixed order, so two writers never wait
        for each other) on a PostgreSQL session of their own; yields the session. They are
        freed when it closes, or when this process dies and the server sees the session end
        (a machine that vanished: when the server's TCP keepalives give up on it, see the
        README's "Deploying for several offices")."""
        import psycopg

        try:
            session = psycopg.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=max(2, min(30, int(self.wait))),
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
                application_name="detector",
            )
        except psycopg.OperationalError as exc:
            raise DetectorError(
                f"{_shown(self.url)}: cannot reach the catalog: {str(exc).splitlines()[0]}"
            ) from exc
        try:
            session.execute(f"SET lock_timeout = {max(1, int(self.wait * 1000))}")
            for name in sorted(set(names), key=list(_LOCKS).index):
                try:
                    session.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_SPACE, _LOCKS[name]))
                except psycopg.errors.LockNotAvailable as exc:
                    raise StoreBusy(
                        f"{_shown(self.url)}: busy, another writer holds the {name} lock"
                    ) from exc
            session.execute("SET lock_timeout = 0")
            yield session
        finally:
            session.close()

    @contextmanager
    def write(self, scratch: Path, names: tuple[str, ...]) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the read-write lake in one transaction, begun once the named writers'
        locks are held (so that it sees what the writer before committed) and committed
        before they are freed."""
        with self.locked(names) as session:
            con = self.instance(scratch).cursor()
            token = _session.set(session)
            try:
                con.execute("USE lake")
                with transaction(con):
                    yield con
            finally:
                _session.reset(token)
                con.close()

    def ensure_schema(self, scratch: Path) -> None:
        """Create the lake's tables, or bring them to this version, unless its recorded
        schema is this version's already: then nothing is written."""
        with self.read(scratch) as con:
            if self._current(con):
                return
        with self.locked(WRITERS):
            con = self.instance(scratch).cursor()
            try:
                con.execute("USE lake")
                if self._current(con):
                    return
                con.execute("BEGIN TRANSACTION")
                for ddl in LAKE_DDL:
                    con.execute(ddl)
                self._prime_stats(con)
                con.execute(
                    "INSERT INTO store_schema VALUES (?, current_timestamp::TIMESTAMP)",
                    [LAKE_SCHEMA],
                )
                con.execute("COMMIT")
            finally:
                con.close()

    @staticmethod
    def _prime_stats(con) -> None:
        """Give every empty table its statistics row (a row written and deleted). DuckLake
        1.5.5 caches a table's statistics but not their absence: each query naming an
        empty table asked the catalog again, column by column, and a rule run on a lake
        with a few kinds unused sent 5,500 statements to PostgreSQL instead of 2,400 and
        took twice as long (duckdb/ducklake#1313, fixed in later versions)."""
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'lake' "
            "AND table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            if con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]:
                continue
            required = [
                c
                for (c,) in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_catalog = "
                    "'lake' AND table_name = ? AND is_nullable = 'NO'",
                    [table],
                ).fetchall()
            ]
            if required:
                values = ", ".join("''" for _ in required)
                con.execute(f"INSERT INTO {table} ({', '.join(required)}) VALUES ({values})")
            else:
                con.execute(f"INSERT INTO {table} DEFAULT VALUES")
            con.execute(f"DELETE FROM {table}")

    @staticmethod
    def _current(con) -> bool:
        try:
            found = con.execute(
                "SELECT ddl_sha256 FROM store_schema ORDER BY applied_at DESC LIMIT 1"
            ).fetchall()
        except duckdb.CatalogException:
            return False
        return found == [(LAKE_SCHEMA,)]
