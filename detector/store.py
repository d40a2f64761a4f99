"""The DuckDB store: the only module that opens connections; tables, locking and retries.

DuckDB lets one process write, and while it does no other process can open the file at
all. So connections are opened per operation and closed at once, writers are serialised
through a lock file, and opening retries with backoff while another process holds the file.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from filelock import FileLock, Timeout

from detector.errors import StoreBusy
from detector.schema import KINDS, SPECS, fold_sql, name_status_sql
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


def db_path(db: str | Path | None = None) -> Path:
    """The database file: the argument, else $DETECTOR_DB, else ./data/detector.duckdb."""
    return Path(db or settings().db)


def evidence_dir(db: str | Path | None = None) -> Path:
    """Content-addressed copies of every uploaded file, beside the database."""
    return db_path(db).parent / "evidence"


def kind_columns(kind: str) -> dict[str, str]:
    """Column name -> SQL type of a kind's table, in order."""
    cols: dict[str, str] = {}
    for f in SPECS[kind].fields:
        cols[f.name] = _SQL_TYPES[f.type]
        if f.type in ("vocab", "datetime", "date"):
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


def records_view_sql() -> str:
    """The ``records`` view: each kind's records as its ``Evidence`` declaration cites
    them, and the quarantined rows."""
    parts = [
        f"SELECT record_key, '{kind}' AS kind, {e.record_id} AS record_id, "
        f"{e.facility} AS facility, {e.logbook} AS logbook, {e.page} AS page, {e.line} AS line, "
        f"{e.happened_at} AS happened_at, {e.label} AS label, source_sha256, source_name, "
        f"source_row FROM {kind}"
        for kind, e in ((k, SPECS[k].evidence) for k in KINDS)
        if e is not None
    ]
    parts.append(
        "SELECT DISTINCT 'Q|' || source_sha256[:16] || ':' || source_row, 'quarantine', NULL, "
        "NULL, NULL, NULL, NULL, NULL, reason_code, source_sha256, source_name, source_row "
        "FROM quarantine"
    )
    return "CREATE OR REPLACE VIEW records AS\n" + "\nUNION ALL\n".join(parts)


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
    # The views each kind brings (events paired into stays...).
    *(view for kind in KINDS for view in SPECS[kind].views),
    # Each person under the name they are shown by: their commonest spelling, given names
    # first when some line writes them so ("PEREZ LOPEZ, JUAN" is a surname-first line).
    """CREATE OR REPLACE VIEW person_names AS
        SELECT person_id, arg_max(name, (NOT contains(name, ','))::INT * 1e9 + n) AS name,
               sum(n)::BIGINT AS rows
        FROM (SELECT person_id, name, count(*) AS n FROM persons
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


def _transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "different configuration" in text


# Columns added after a table was first released: older database files gain them on open.
MIGRATIONS = [
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS watermark BIGINT",
    "ALTER TABLE flags ADD COLUMN IF NOT EXISTS subject VARCHAR",
    "ALTER TABLE visits ADD COLUMN IF NOT EXISTS name_status VARCHAR",
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
]

# Everything a database file needs, in order: tables, then the columns added since, then
# the views over both.
DDL = SCHEMA + MIGRATIONS + VIEWS


def _owner_only(path: Path) -> None:
    """The database file (and its write-ahead log) readable and writable by its owner only."""
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            os.chmod(p, 0o600)


_COLUMNS_SQL = "SELECT table_name, column_name FROM information_schema.columns"


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


class Store:
    """Opens short-lived connections to one DuckDB file.

    ``read()`` gives a read-only connection (retrying while a writer holds the file);
    ``write()`` takes the writers' lock, opens read-write and runs the body in one
    transaction, committed only if the body returns.
    """

    _ready: set[str] = set()  # files whose schema this process has already created
    _readable: set[str] = set()  # files found to have the whole schema already

    def __init__(self, db: str | Path | None = None, wait: float | None = None):
        self.path = db_path(db)
        self.wait = settings().lock_wait if wait is None else wait
        # Logs are personal data: the data folder and the database are the owner's alone.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock")

    @property
    def evidence(self) -> Path:
        return evidence_dir(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.wait
        delay = 0.02
        while True:
            try:
                return duckdb.connect(
                    str(self.path),
                    read_only=read_only,
                    config={
                        # DuckDB spills to disk past this: big runs stay within a known budget.
                        "memory_limit": settings().duckdb_memory,
                        "temp_directory": str(self.path.parent / ".duckdb_tmp"),
                    },
                )
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                # Another process holds the file (a lock), or, inside this process, another
                # thread holds it open in the other mode (read-only vs read-write): both pass.
                if not _transient(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreBusy(f"{self.path}: busy, another process is writing") from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        key = str(self.path)
        if not (key in Store._ready or key in Store._readable) or not self.path.exists():
            if self.path.exists() and self._schema_current():
                Store._readable.add(key)  # a writer still runs the DDL once (views)
            else:
                self.init()
        con = self._open(read_only=True)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            self._lock.acquire(timeout=self.wait)
        except Timeout as exc:
            raise StoreBusy(f"{self.path}: busy, another writer holds the lock") from exc
        try:
            con = self._open(read_only=False)
            try:
                if str(self.path) not in Store._ready:
                    for ddl in DDL:
                        con.execute(ddl)
                    _owner_only(self.path)
                    Store._ready.add(str(self.path))
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            finally:
                con.close()
        finally:
            self._lock.release()

    def _schema_current(self) -> bool:
        """True when the file already has every table and column this version creates, so
        that a reader (``status``, ``verify``) needs no write: it works on a full disk, on
        a read-only copy and while a writer holds the lock."""
        con = self._open(read_only=True)
        try:
            have = set(con.execute(_COLUMNS_SQL).fetchall())
        finally:
            con.close()
        return _expected_columns() <= have

    def init(self) -> None:
        """Create the file and its tables if they do not exist yet."""
        with self.write():
            pass
