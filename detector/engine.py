"""Running rules: each rule's query on a sandboxed read-only connection, its rows turned
into hits (grouped into cases where the rule says so), and, in an incremental run, only
what the new uploads touch re-evaluated (``detector.scopes``); the hits are then stored as
flags (``detector.flags``) in one short write.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from detector import cache, lazy
from detector.flags import Hit, Resolution, flag_id, spool_hits, store_flags
from detector.risk import SEVERITY_RANK
from detector.rulebook import Rule, RuleError, load_rules
from detector.runs import RUN_WRITERS, newest_upload, next_run, now, record_failed, watermark
from detector.schema import KINDS, SPECS
from detector.scopes import NARROWED, SCOPES
from detector.settings import settings
from detector.store import DDL, VIEWS_SHA256, Store, frame_table, process_alive
from detector.wording import explain, plain, repeated

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy.module("polars")


@dataclass
class RunReport:
    run_id: int
    counts: dict[str, int] = field(default_factory=dict)
    new: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    resolved: int = 0
    seconds: float = 0.0
    scope: str = "full"
    # what this run measured (``Costs``): each rule evaluated over every row, in seconds,
    # and each scope kind's narrowing
    costs: Costs = field(default_factory=lambda: Costs())


def holiday_countries() -> list[str]:
    """Public-holiday calendars rules judge silence against: ``$DETECTOR_HOLIDAYS``, a
    comma-separated list of ISO country codes, optionally with a subdivision ("US-DC");
    El Salvador's by default."""
    return [c.strip() for c in settings().holidays.split(",") if c.strip()]


def prepare_context(con: duckdb.DuckDBPyConnection) -> None:
    """Temporary tables rules may read beside the data (on this connection only):
    ``holidays(day, name, country)``, the public holidays of the configured calendars
    over the years the visits span (from the ``holidays`` library)."""
    con.execute("CREATE OR REPLACE TEMP TABLE holidays (day DATE, name VARCHAR, country VARCHAR)")
    first, last = con.execute(
        "SELECT year(min(entered_at)), year(max(entered_at)) FROM visits"  # statistics: no scan
    ).fetchall()[0]
    if first is None:
        return
    rows = holidays_of(holiday_countries(), first, last)
    if rows:  # one statement (a statement per row cost up to a second)
        days, names, codes = (list(c) for c in zip(*rows, strict=True))
        con.execute(
            "INSERT INTO holidays SELECT unnest(?::DATE[]), unnest(?::VARCHAR[]), "
            "unnest(?::VARCHAR[])",
            [days, names, codes],
        )


_HOLIDAYS_FORMAT = "holidays-1"


def holidays_of(codes: list[str], first: int, last: int) -> list[tuple[date, str, str]]:
    """(day, name, country code) of each public holiday of the calendars ``codes`` from
    year ``first`` to ``last``. Kept in the user's cache (``detector.cache``) by the codes,
    the years and the library's version: the library's import and its calendars were a
    tenth of a second of every rule run."""
    from importlib.metadata import version

    key = json.dumps([codes, first, last, version("holidays")])
    sha = hashlib.sha256(key.encode()).hexdigest()
    kept = cache.read("holidays", sha, _HOLIDAYS_FORMAT)
    if isinstance(kept, list):
        return [tuple(row) for row in kept]
    import holidays

    rows = []
    for code in codes:
        country, _, subdivision = code.partition("-")
        try:
            calendar = holidays.country_holidays(
                country, subdiv=subdivision or None, years=range(first, last + 1)
            )
        except NotImplementedError as exc:
            raise RuleError(f"DETECTOR_HOLIDAYS: no holiday calendar for {code!r}") from exc
        rows += [(day, name, code) for day, name in calendar.items()]
    cache.write("holidays", sha, _HOLIDAYS_FORMAT, rows)
    return rows


HIT_BATCH = 50_000  # rows fetched, explained and spooled at a time


def evaluate(con: duckdb.DuckDBPyConnection, rule: Rule) -> list[Hit]:
    """Run one rule's query and turn each returned row into a hit (all in memory: for
    regression cases and small checks; runs stream through ``evaluate_batches``)."""
    return [h for batch in evaluate_batches(con, rule) for h in batch]


def evaluate_batches(con: duckdb.DuckDBPyConnection, rule: Rule) -> Iterator[list[Hit]]:
    """Run one rule's query and yield its hits in batches of ``HIT_BATCH``, so that a rule
    matching millions of rows never holds them all as Python objects. A grouped rule
    yields its cases once its rows are read (a case holds its occurrences' record keys)."""
    if rule.group:
        merged = _cases(con, rule).hits()
        for i in range(0, len(merged), HIT_BATCH):
            yield merged[i : i + HIT_BATCH]
        return
    cursor = con.execute(rule.query, rule.bound_parameters())
    names = [d[0] for d in cursor.description]
    while rows := cursor.fetchmany(HIT_BATCH):
        yield [_hit(rule, dict(zip(names, row, strict=True))) for row in rows]


# A grouped rule returning more rows than this has them summed per case by DuckDB first
# (``_summed``): only each case's earliest rows become Python objects.
SUMMED_ROWS = 50_000
_ROWS = "rule_rows"  # the temporary table of a grouped rule's rows


def _cases(con: duckdb.DuckDBPyConnection, rule: Rule) -> Cases:
    """A grouped rule's rows gathered into cases. The rows are kept in a temporary table;
    up to ``SUMMED_ROWS`` they are read one by one, past it (a common name's lines without
    a document: 3M rows, 822 cases, 70 s one by one) DuckDB sums each case's occurrences
    and Python reads only its earliest rows (``_summed``). A case is worded once, from its
    first occurrence (wording every occurrence was half the time of that rule)."""
    cases = Cases(rule)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_ROWS} AS {rule.query}", rule.bound_parameters())
    try:
        (count,) = con.execute(f"SELECT count(*) FROM temp.main.{_ROWS}").fetchall()[0]
        if count <= SUMMED_ROWS or not _summed(con, rule, cases):
            cursor = con.execute(f"SELECT * FROM temp.main.{_ROWS}")
            names = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(HIT_BATCH):
                cases.add([_hit(rule, dict(zip(names, row, strict=True)), False) for row in rows])
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.main.{_ROWS}")
    return cases


_SUMMARY = ("__case", "__n", "__first_at", "__last_at", "__end_at", "__keys", "__severities")


def _summing_sql(rule: Rule, names: list[str]) -> tuple[str, str]:
    """The SQL of ``_summed`` over ``_ROWS``, whose columns are ``names``: a row with neither
    records nor a flag_key (one is enough to read the rows one by one: ``_hit`` refuses
    it), and the rows of each case's earliest moment with the case's sums."""
    assert rule.group is not None

    def col(name: str) -> str:
        return '"' + name.replace('"', '""') + '"' if name in names else "NULL"

    keys = {
        (True, True): "coalesce(record_keys, [record_key])",
        (True, False): "coalesce(record_keys, [])",
        (False, True): "[record_key]",
        (False, False): "[]::VARCHAR[]",
    }["record_keys" in names, "record_key" in names]
    by = [f"__by{i}" for i in range(len(rule.group.by))]
    same = " AND ".join(f"r.{b} IS NOT DISTINCT FROM c.{b}" for b in by)
    start = col("period_start")
    # a row with neither records nor a flag_key is refused one by one (``_hit``)
    unkeyed = (
        f"SELECT 1 FROM temp.main.{_ROWS} WHERE coalesce({col('flag_key')}::VARCHAR, '') = '' "
        f"AND len(list_filter({keys}, k -> k IS NOT NULL)) = 0 LIMIT 1"
    )
    sql = f"""
        WITH r AS (
            SELECT *, {", ".join(f"{col(k)} AS {b}" for k, b in zip(rule.group.by, by, strict=True))},
                   date_trunc('{rule.group.window}', {start}) AS __window,
                   {keys} AS __row_keys, coalesce({col("period_end")}, {start}) AS __row_end,
                   {col("severity")} AS __row_severity
            FROM temp.main.{_ROWS}),
        c AS (
            SELECT {", ".join(by)}, __window,
                   row_number() OVER () AS __case, count(*) AS __n,
                   min({start}) AS __first_at, max({start}) AS __last_at,
                   max(__row_end) AS __end_at, flatten(list(__row_keys)) AS __keys,
                   list(DISTINCT __row_severity) AS __severities
            FROM r GROUP BY ALL)
        SELECT r.* EXCLUDE ({", ".join(by)}, __window,
                            __row_keys, __row_end, __row_severity),
               {", ".join("c." + s for s in _SUMMARY)}
        FROM r JOIN c ON {same} AND r.__window IS NOT DISTINCT FROM c.__window
        WHERE {"r." + start if start != "NULL" else "NULL"} IS NOT DISTINCT FROM c.__first_at"""
    return unkeyed, sql


def _summed(con: duckdb.DuckDBPyConnection, rule: Rule, cases: Cases) -> bool:
    """Add the rows of ``_ROWS`` to ``cases`` summed per case by DuckDB: per entity
    (``group.by``) and window, the number of rows, their records, first and last moments
    and severities, with the rows of the earliest moment (the case's first occurrence is
    one of them). False, with nothing added, when the rows cannot be summed so (a moment
    that is not a time, a row with neither records nor a flag_key): they are then read one
    by one."""
    names = [d[0] for d in con.execute(f"SELECT * FROM temp.main.{_ROWS} LIMIT 0").description]
    unkeyed, sql = _summing_sql(rule, names)
    try:
        if con.execute(unkeyed).fetchall():
            return False
        cursor = con.execute(sql)
    except duckdb.Error:
        return False
    columns = [d[0] for d in cursor.description]
    summed: set[int] = set()
    while rows := cursor.fetchmany(HIT_BATCH):
        for row in rows:
            values = dict(zip(columns, row, strict=True))
            case, n, first_at, last_at, end_at, keys_, severities = (
                values.pop(s) for s in _SUMMARY
            )
            hit = _hit(rule, values, False)
            if case in summed:  # another row of the earliest moment: a candidate first
                cases.add_summed(hit)
                continue
            summed.add(case)
            cases.add_summed(
                hit,
                _Summary(
                    n,
                    {k for k in keys_ if k is not None},
                    first_at,
                    last_at,
                    end_at,
                    max(
                        (s or rule.severity for s in severities),
                        key=SEVERITY_RANK.__getitem__,
                    ),
                ),
            )
    return True


def _hit(rule: Rule, values: dict[str, Any], worded: bool = True) -> Hit:
    """One row of a rule's query as a hit; its explanation left empty unless ``worded``."""
    keys = values.pop("record_keys", None)
    if keys is None:
        keys = [values.pop("record_key")] if values.get("record_key") is not None else []
    values.pop("record_key", None)
    keys = sorted({k for k in keys if k is not None})
    identity = values.pop("flag_key", None) or "|".join(keys)
    if not identity:
        raise RuleError(f"{rule.path}: a row has neither record keys nor a flag_key")
    severity = values.pop("severity", None) or rule.severity
    shown = {k: plain(v) for k, v in values.items()}
    return Hit(
        flag_id(rule.id, str(identity)),
        rule.id,
        rule.category,
        rule.title,
        rule.subject,
        severity,
        values.get("facility"),
        None if values.get("logbook") is None else str(values.get("logbook")),
        values.get("period_start"),
        values.get("period_end"),
        keys,
        shown,
        explain(rule.explanation, {**rule.parameters, **shown}) if worded else "",
    )


def window_floor(at: datetime, window: str) -> datetime:
    """The first moment of the calendar window ``at`` falls in."""
    day = datetime(at.year, at.month, at.day)
    if window == "day":
        return day
    if window == "week":
        return day - timedelta(days=day.weekday())
    if window == "month":
        return day.replace(day=1)
    if window == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def window_start(at: datetime | None, window: str) -> str:
    """The calendar window a moment falls in, as a label ("2019-06", "2019-Q2", ...)."""
    if at is None:
        return "undated"
    if window == "day":
        return at.date().isoformat()
    if window == "week":
        iso = at.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if window == "month":
        return f"{at.year}-{at.month:02d}"
    if window == "quarter":
        return f"{at.year}-Q{(at.month - 1) // 3 + 1}"
    return str(at.year)


@dataclass
class _Summary:
    """One case's occurrences summed by DuckDB (``_summed``): how many, their records, the
    first and last moments, the end of the last, the gravest severity."""

    count: int
    keys: set[str]
    first_at: datetime | None
    last_at: datetime | None
    end_at: datetime | None
    severity: str


@dataclass
class _Case:
    first: Hit
    keys: set[str]
    count: int
    first_at: datetime | None
    last_at: datetime | None
    end_at: datetime | None
    severity: str


class Cases:
    """Repeated hits of a grouped rule gathered into one case per entity and window, as
    the rows arrive (in any order): the records of every occurrence, the graver severity,
    the earliest occurrence's values, and how many, when first and when last.

    A case's identity is the rule, the entity and the window, so that a new occurrence in
    the same window joins it (and its review state stays with it)."""

    def __init__(self, rule: Rule):
        assert rule.group is not None
        self.rule = rule
        self.cases: dict[tuple, _Case] = {}

    def add(self, hits: list[Hit]) -> None:
        """Hits read one by one: each one occurrence of its case."""
        for h in hits:
            end = h.period_end or h.period_start
            self.add_summed(
                h, _Summary(1, set(h.record_keys), h.period_start, h.period_start, end, h.severity)
            )

    def add_summed(self, h: Hit, summary: _Summary | None = None) -> None:
        """A hit with the occurrences it stands for: ``summary`` (itself alone when read one
        by one; a case summed by DuckDB, with the first of its rows of the earliest moment),
        or none (another such row: only a candidate for the case's first occurrence)."""
        group = self.rule.group
        entity = tuple(str(h.fields.get(k)) for k in group.by)
        key = (entity, window_start(h.period_start, group.window))
        case = self.cases.get(key)
        if case is None:
            s = summary or _Summary(0, set(), None, None, None, h.severity)
            self.cases[key] = _Case(h, s.keys, s.count, s.first_at, s.last_at, s.end_at, s.severity)
            return
        if _earlier(h, case.first):
            case.first = h
        if summary is None:
            return
        case.keys.update(summary.keys)
        case.count += summary.count
        case.first_at = min(filter(None, (case.first_at, summary.first_at)), default=None)
        case.last_at = max(filter(None, (case.last_at, summary.last_at)), default=None)
        case.end_at = max(filter(None, (case.end_at, summary.end_at)), default=None)
        if SEVERITY_RANK[summary.severity] > SEVERITY_RANK[case.severity]:
            case.severity = summary.severity

    def hits(self) -> list[Hit]:
        rule = self.rule
        out = []
        for (entity, window), case in sorted(self.cases.items(), key=lambda kv: str(kv[0])):
            first = case.first
            fields = {
                **first.fields,
                "occurrences": case.count,
                "first_at": plain(case.first_at),
                "last_at": plain(case.last_at),
                "window": window,
            }
            explanation = first.explanation or explain(
                rule.explanation, {**rule.parameters, **first.fields}
            )
            if case.count > 1:
                explanation += " " + repeated(rule, fields, "en")
            out.append(
                Hit(
                    flag_id(rule.id, "group|" + "|".join(entity) + "|" + window),
                    rule.id,
                    rule.category,
                    rule.title,
                    rule.subject,
                    case.severity,
                    first.facility,
                    first.logbook,
                    case.first_at,
                    case.end_at,
                    sorted(case.keys),
                    fields,
                    explanation,
                )
            )
        return out


def _earlier(a: Hit, b: Hit) -> bool:
    return (a.period_start or datetime.min, a.flag_id) < (b.period_start or datetime.min, b.flag_id)


@dataclass
class Scope:
    """What changed since the last rule run: the uploads and what they touch."""

    full: bool
    watermark: int = 0
    # What the new uploads touch, per scope of ``detector.scopes.SCOPES`` (uploads for
    # "record", facility codes, "facility|checkpoint|logbook", plate keys, officials).
    keys: dict[str, list] = field(default_factory=dict)
    # The earliest moment whose hits the new visits can change, for rules with a lookback:
    # per touched facility the last entry before the week of its first new visit (a
    # silence ending in that week starts there), the earliest of them. None: no new visits.
    since: datetime | None = None
    # The scope kinds whose rules this incremental run evaluates in full, that being
    # cheaper than narrowing for them (``_cheaper_in_full``).
    in_full: list[str] = field(default_factory=list)

    @property
    def uploads(self) -> list[int]:
        return self.keys.get("record", [])

    @property
    def facilities(self) -> list[str]:
        return self.keys.get("facility", [])

    def tables(self, con) -> None:
        """The touched keys as small temporary tables ``scope_<name>`` on ``con``, which
        the narrowed views and the flags' resolution filter by. They go in as polars
        columns through ``store.frame_table`` (as a bound list, the visitors a 10M world's
        next 1% names took 1.0 s; registered, they imported pyarrow)."""
        for name, kind in SCOPES.items():
            dtype = pl.Int64 if kind.sql_type == "BIGINT" else pl.String
            frame_table(
                con,
                f"scope_{name}",
                pl.DataFrame({"value": self.keys.get(name, [])}, {"value": dtype}),
            )

    def describe(self) -> str:
        if self.full:
            return "full"
        since = f", visits from {self.since:%Y-%m-%d %H:%M}" if self.since else ""
        in_full = (
            f"; in full, cheaper than narrowing: {', '.join(self.in_full)} rules"
            if self.in_full
            else ""
        )
        return (
            f"incremental: {len(self.uploads)} upload(s), facilities "
            f"{', '.join(self.facilities) or '-'}{since}{in_full}"
        )

    def resolution(self, rules: list[Rule]) -> Resolution:
        """Which flags of ``rules`` this run looked at all of (``flags.Resolution``): in a
        full run every flag of theirs; in an incremental one those within what each rule's
        scope re-evaluated, or, for a rule with a lookback, those from its window on."""
        out = Resolution()
        for rule in rules:
            zone = self.zone(rule)
            if zone:
                out.since[rule.id] = zone[0]
            else:
                out.by_scope.setdefault("global" if self.full else rule.scope, []).append(rule.id)
        return out

    def zone(self, rule: Rule) -> tuple[datetime, datetime] | None:
        """For a rule with a lookback, in an incremental run: (re-evaluated from, read
        from). Hits from the first are re-evaluated on visits from the second."""
        if self.full or rule.lookback_days is None or self.since is None:
            return None
        start = window_floor(self.since, rule.group.window if rule.group else "month")
        return start, start - timedelta(days=rule.lookback_days)


def change_scope(con, full: bool = False) -> Scope:
    """The uploads since the last successful rule run and the facilities/logbooks they touch.

    Inmate rosters and facility lists are context for every facility: they force a full run.
    """
    upto, last = newest_upload(con), watermark(con, "rules")
    if full or last is None:
        return Scope(True, upto)
    uploads = con.execute(
        "SELECT seq, kind FROM uploads WHERE seq > ? ORDER BY seq", [last]
    ).fetchall()
    if any(SPECS[kind].context for _, kind in uploads if kind in SPECS):
        return Scope(True, watermark=upto)
    seqs = [seq for seq, _ in uploads]
    keys = {
        name: [r[0] for r in con.execute(kind.touched, [seqs]).fetchall() if r[0] is not None]
        for name, kind in SCOPES.items()
    }
    return Scope(False, upto, {k: sorted(v) for k, v in keys.items()}, _since(con, seqs))


# The kinds whose records happen at an instant: what a rule's look-back narrows.
TIMED = tuple(k for k in NARROWED if SPECS[k].moment)
# The views the kinds bring, in order (a later one may read an earlier one): in a rule run
# each computed one (``View.computed``) is computed once for the rules that read it
# (``_computed_views``).
VIEW_KINDS = {view.name: kind for kind in KINDS for view in SPECS[kind].views}
KIND_VIEWS = tuple(VIEW_KINDS)
COMPUTED_VIEWS = {view.name for kind in KINDS for view in SPECS[kind].views if view.computed}


# In a run's ``rules`` (each rule's file hash), what its rules and narrowings cost
# (``Costs``). ("*" is no rule id's.)
COSTS_KEY = "*costs*"


@dataclass
class Costs:
    """What evaluating the rules cost, as runs measure it and each records it for the next
    (in its ``rules``, under ``COSTS_KEY``): each rule's seconds over every row (its latest
    evaluation in full) and, per scope kind as last narrowed, the seconds narrowing the
    tables to what the new rows touched (the aid and the narrowed tables), the seconds its
    rules then took narrowed, and how many keys were touched. An incremental run reads them
    to choose, per scope kind, between narrowing and running its rules in full
    (``_cheaper_in_full``); a later run's measures replace an earlier's."""

    full: dict[str, float] = field(default_factory=dict)
    narrowing: dict[str, float] = field(default_factory=dict)
    # per scope kind, what its rules took narrowed then, and how many keys were touched
    narrowed: dict[str, float] = field(default_factory=dict)
    touched: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, record: dict) -> Costs:
        """The costs a run's ``rules`` record holds (none in a run before they were
        recorded; a value that is not a number is left out)."""
        kept = record.get(COSTS_KEY)
        kept = kept if isinstance(kept, dict) else {}

        def numbers(part) -> dict[str, float]:
            part = part if isinstance(part, dict) else {}
            return {k: float(v) for k, v in part.items() if isinstance(v, int | float)}

        return cls(*(numbers(kept.get(name)) for name in _COST_PARTS))

    def kept(self, rule_ids: set[str]) -> dict:
        """As a run records them: the costs of the rules it knows."""
        return {
            name: {
                k: round(v, 4)
                for k, v in sorted(getattr(self, name).items())
                if name != "full" or k in rule_ids
            }
            for name in _COST_PARTS
        }

    def narrowed_now(self, kind: str, rules: list[Rule], touched: int) -> float | None:
        """What narrowing would cost ``rules`` of scope ``kind`` with ``touched`` keys:
        its narrowing as last measured, and what its rules took narrowed then, in the
        proportion of the keys touched now to those touched then (never more than they
        take in full). None when its narrowing or a rule's cost in full is not known."""
        if kind not in self.narrowing or any(r.id not in self.full for r in rules):
            return None
        full = sum(self.full[r.id] for r in rules)
        share = touched / max(self.touched.get(kind, touched), 1)
        return self.narrowing[kind] + min(full, self.narrowed.get(kind, 0.0) * share)


_COST_PARTS = ("full", "narrowing", "narrowed", "touched")


def _cheaper_in_full(rules: list[Rule], costs: Costs, scope: Scope) -> list[Rule]:
    """``rules``, those of each scope kind whose rules together cost less over every row
    than narrowing would (``Costs.narrowed_now``: the narrowing and the narrowed rules, as
    the runs last measured them) made global, the kinds listed in ``scope.in_full``.
    Narrowing reads every row too (the visitor scope looks up each document written: 0.6 s
    at 10M visits, about what the one rule of that scope takes over every visit), and with
    every facility touched the facility scope narrows nothing. A kind whose narrowing was
    never measured is narrowed; one the new rows do not touch costs nothing (its rules are
    skipped) and is left alone; rules with a lookback read a window, not a scope's keys."""
    groups: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.scope != "global" and scope.zone(rule) is None and scope.keys.get(rule.scope):
            groups.setdefault(rule.scope, []).append(rule)
    scope.in_full = []
    for kind, group in groups.items():
        narrowed = costs.narrowed_now(kind, group, len(scope.keys[kind]))
        if narrowed is not None and sum(costs.full[r.id] for r in group) < narrowed:
            scope.in_full.append(kind)
    scope.in_full.sort()
    return [
        r.model_copy(update={"scope": "global"})
        if r.scope in scope.in_full and scope.zone(r) is None
        else r
        for r in rules
    ]


# In a run's ``rules`` (each rule's file hash), the hash of the views they read: a release
# changing a view (how reads pair into stays, what a record is) re-runs every rule in full
# once, as a changed rule file re-runs that rule. ("*" is no rule id's.)
VIEWS_KEY = "*views*"


def _since(con, seqs: list[int]) -> datetime | None:
    """The earliest moment whose hits the new records can change, for rules with a
    look-back: per facility, the last record before the week of its first new one (a
    silence ending in that week starts there), the earliest of them; None without new
    timed records."""
    if not TIMED:
        return None
    timed = " UNION ALL ".join(
        f"SELECT {SPECS[k].facility} AS facility, {SPECS[k].moment} AS moment, upload_seq FROM {k}"
        for k in TIMED
    )
    weeks = con.execute(
        f"""WITH t AS ({timed})
        SELECT facility, date_trunc('week', min(moment)) FROM t
        WHERE upload_seq IN (SELECT unnest($1::BIGINT[])) GROUP BY ALL""",
        [seqs],
    ).fetchall()
    before = f"WITH t AS ({timed}) SELECT max(moment) FROM t WHERE facility = $f AND moment < $week"
    starts = [
        week if facility is None else _last_before(con, before, facility, week) or week
        for facility, week in weeks
        if week is not None
    ]
    return min(starts, default=None)


def _last_before(con, sql: str, facility: str, week: datetime) -> datetime | None:
    """The ``sql`` of ``_since`` (the last moment of a facility before a week) for one
    facility, looked for in the month before that week first: that bound lets DuckDB skip
    every row group outside it (one query over every record took 0.3-0.4 s at 10M
    visits; these take 0.01 s), and the last record is nearly always there."""
    args = {"f": facility, "week": week}
    near = con.execute(sql + " AND moment >= $week - INTERVAL 35 DAY", args).fetchall()[0][0]
    return near or con.execute(sql, args).fetchall()[0][0]


def _evaluate_scoped(
    con, rules: list[Rule], scope: Scope, report: RunReport, spool: Path
) -> list[Path]:
    """Evaluate rules; in an incremental run, local rules see only what the change touches.

    The tables a local rule reads are shadowed, in this connection only, by temporary
    views of the touched part (the file itself is not changed: reads stay read-only).
    Hits are written to Parquet files in ``spool`` as they come (one per rule; a rule that
    fails leaves none), and those files are returned for ``store_flags``.
    """
    files: list[Path] = []
    groups: dict[str, list[Rule]] = {}
    for rule in rules:
        kind = "global" if scope.full else rule.scope
        groups.setdefault("window" if scope.zone(rule) else kind, []).append(rule)
    catalog = con.execute("SELECT current_database()").fetchall()[0][0]
    if not scope.full:
        scope.tables(con)
    for kind, group in groups.items():
        if kind == "window":
            files += _evaluate_windowed(con, group, scope, report, spool, catalog, len(files))
            continue
        if kind != "global" and not scope.keys.get(kind):
            # Nothing of this kind was touched: no hit can appear and none can stop firing.
            report.counts.update({rule.id: 0 for rule in group})
            continue
        shadows = {}
        if kind != "global":
            started = time.perf_counter()
            if SCOPES[kind].aid:  # what its narrowing reads besides the touched keys
                con.execute(SCOPES[kind].aid)
            hint = SCOPES[kind].hint_sql
            hinted = [r[0] for r in con.execute(hint).fetchall()] if hint else None
            for table in NARROWED:
                where = SCOPES[kind].table_filter(table, hinted)
                shadows[table] = _narrow(
                    con, catalog, table, where, copy=not SCOPES[kind].stored_together
                )
            report.costs.narrowing[kind] = time.perf_counter() - started
            report.costs.touched[kind] = len(scope.keys[kind])
            report.costs.narrowed[kind] = 0.0
        computed = _computed_views(con, catalog, group)
        try:
            for rule in group:
                path = spool / f"{len(files):04d}-{rule.id}.parquet"
                started = time.perf_counter()
                try:
                    report.counts[rule.id], written = spool_hits(evaluate_batches(con, rule), path)
                except Exception as exc:  # noqa: BLE001 - one rule failing never stops the run
                    report.counts.pop(rule.id, None)
                    report.errors[rule.id] = str(exc).splitlines()[0][:500]
                    continue
                took = time.perf_counter() - started
                if kind == "global":  # over every row: what it costs in full
                    report.costs.full[rule.id] = took
                else:
                    report.costs.narrowed[kind] += took
                files.extend(written)
        finally:
            for view in reversed(computed):
                con.execute(f"DROP TABLE temp.main.{view}")
            for table, shadow in shadows.items():
                if shadow:
                    con.execute(f"DROP {shadow} temp.main.{table}")
    return files


def _computed_views(con, catalog: str, rules: list[Rule]) -> list[str]:
    """Shadow each kind's computed view (``View.computed``) that two or more of ``rules``
    read (the repeats the badge reads' passages leave out, the stays they pair into: each a
    window over every read) by a temporary table of its rows, on this connection only, after
    the tables it reads were narrowed: computed once, not once per rule (1M reads: 1.6 s a
    rule). A rule reading a later view (which may read an earlier one) counts as reading the
    earlier ones too; a view left uncomputed (``passages``) reads the earlier ones' tables.
    Past ``PRUNE_ROWS`` rows of the view's kind, the copy holds only the columns those rules
    read (``columns_read``). Returns the views shadowed, in order."""
    mentions = [
        {v for v in KIND_VIEWS if re.search(rf"\b{v}\b", rule.query, re.IGNORECASE)}
        for rule in rules
    ]
    computed: list[str] = []
    rows: dict[str, int] = {}
    planner = None
    try:
        for i, view in enumerate(KIND_VIEWS):
            later = set(KIND_VIEWS[i:])
            readers = [r for r, seen in zip(rules, mentions, strict=True) if seen & later]
            if len(readers) < 2 or view not in COMPUTED_VIEWS:
                continue
            columns = "*"
            kind = VIEW_KINDS[view]
            if kind not in rows:  # a kind's views (repeats, stays) share its count
                sql = f'SELECT count(*) FROM "{catalog}".main.{kind}'
                rows[kind] = con.execute(sql).fetchall()[0][0]
            if rows[kind] > PRUNE_ROWS:
                planner = planner or rule_planner()
                columns = ", ".join(columns_read(planner, view, readers))
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {view} AS "
                f'SELECT {columns} FROM "{catalog}".main.{view}'
            )
            computed.append(view)
    finally:
        if planner is not None:
            planner.close()
    return computed


# Past this many rows of its kind, a view computed for the rules is copied with only the
# columns they read: finding them (planning the rules) takes about a tenth of a second; at
# 10M badge reads the rules read 14 of ``passages``' 27 columns (when it was copied), and
# the whole copy spilled 2.6 GB past the memory limit (15 s -> 9 s).
PRUNE_ROWS = 1_000_000

# While rules are planned to see which columns they read: filters stay above the scans (a
# filter pushed into a scan reads a column the scan does not project), and an empty
# table's scans are not planned away.
_PLAN_ONLY_SCANS = "filter_pushdown,statistics_propagation,empty_result_pullup"


def rule_planner() -> duckdb.DuckDBPyConnection:
    """An in-memory database with the store's schema and no rows, locked down as a rule
    run's connection is (``Store.sandboxed``), where rules are planned, never run."""
    planner = duckdb.connect()
    for ddl in DDL:
        planner.execute(ddl)
    prepare_context(planner)
    planner.execute("SET enable_external_access = false")
    planner.execute(f"SET disabled_optimizers = '{_PLAN_ONLY_SCANS}'")
    planner.execute("SET lock_configuration = true")
    return planner


def columns_read(planner, view: str, readers: list[Rule]) -> list[str]:
    """The columns of ``view`` that ``readers`` read, as DuckDB plans them on ``planner``
    (``rule_planner``): their queries are planned against an empty stand-in of the view
    (left there for the views after it, which may read it), and the columns its scans
    project are kept, in the view's order; every column when a plan cannot tell (a query
    that does not plan, no scan of the stand-in found)."""
    planner.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS SELECT * FROM main.{view} LIMIT 0")
    every = [d[0] for d in planner.execute(f"SELECT * FROM temp.main.{view}").description]
    read: set[str] = set()
    for rule in readers:
        try:
            plan = planner.execute(f"EXPLAIN (FORMAT json) {rule.query}", rule.bound_parameters())
            scans = _scans_of(json.loads(plan.fetchall()[0][1]), f'"temp".main.{view}')
        except duckdb.Error:
            return every
        if not scans:
            return every
        read.update(*scans)
    return [c for c in every if c in read] or every[:1]


def _scans_of(plan: dict | list, table: str) -> list[set[str]]:
    """The column sets that a JSON plan's scans of ``table`` project."""
    found = []
    for node in plan if isinstance(plan, list) else [plan]:
        info = node.get("extra_info") or {}
        if info.get("Table") == table:
            projected = info.get("Projections") or []
            found.append({projected} if isinstance(projected, str) else set(projected))
        found += _scans_of(node.get("children", []), table)
    return found


# A touched part up to this share of a table, and this many rows, is copied into a
# temporary table (in memory); above it the table is read through a view.
NARROW_COPY_SHARE = 0.25
NARROW_COPY_ROWS = 1_000_000


def _narrow(con, catalog: str, table: str, condition: str, copy: bool = True) -> str | None:
    """Shadow ``table``, on this connection only, by its rows meeting ``condition`` (the
    scope's touched part): nothing when every row meets it (all facilities touched: the
    rules read the table as a full run does), a temporary copy when the part is small (a
    few logbooks: each of a rule's reads of it is then a small scan, not a filter of every
    row), else a view (always a view with ``copy`` False: a part the scan reaches by
    skipping row groups). Returns what shadows it (None, "TABLE" or "VIEW").

    The rows meeting it are counted only up to what a copy may hold, and past that (or
    with ``copy`` False, without counting) the table is only asked whether one row does not
    meet it (counting every row meeting the visitor scope's test cost 0.46 s at 10M
    visits). In a large table a sample of its vectors first tells a part well above that
    (0.04 s instead of 0.3 s at 10M visits, where the next 1% named visitors of 17% of the
    lines)."""
    source = f'"{catalog}".main.{table}'
    kind = _copied(con, source, condition) if copy else None
    if kind is None:
        uncovered = f"SELECT 1 FROM {source} WHERE ({condition}) IS NOT TRUE LIMIT 1"
        kind = "VIEW" if con.execute(uncovered).fetchall() else None
    if kind is not None:
        con.execute(
            f"CREATE OR REPLACE TEMP {kind} {table} AS SELECT * FROM {source} WHERE {condition}"
        )
    return kind


def _copied(con, source: str, condition: str) -> str | None:
    """ "TABLE" when the rows of ``source`` meeting ``condition`` are few enough to copy
    (``NARROW_COPY_SHARE``, ``NARROW_COPY_ROWS``) and not all of them; else None."""
    (total,) = con.execute(f"SELECT count(*) FROM {source}").fetchall()[0]
    cap = int(min(NARROW_COPY_SHARE * total, NARROW_COPY_ROWS))
    if _sampled_share(con, source, condition, total) * total > 1.2 * cap:
        return None
    (covered,) = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {condition} LIMIT {cap + 1})"
    ).fetchall()[0]
    return "TABLE" if covered <= cap and covered < total else None


# Tables of more rows than this are sampled before the part of them a scope touches is
# counted (``_narrow``).
SAMPLED_ROWS = 1_000_000


def _sampled_share(con, source: str, condition: str, total: int) -> float:
    """The share of the rows of ``source`` meeting ``condition`` in a 1% sample of its
    vectors (the same sample every time), or 0 for a table of ``SAMPLED_ROWS`` or fewer.
    It only chooses how a part is read (a copy or a view), never what is read."""
    if total <= SAMPLED_ROWS:
        return 0.0
    (share,) = con.execute(
        f"SELECT count(*) FILTER (WHERE {condition}) / count(*) "
        f"FROM {source} USING SAMPLE 1 PERCENT (system, 7)"
    ).fetchall()[0]
    return share or 0.0


def _evaluate_windowed(
    con, rules: list[Rule], scope: Scope, report: RunReport, spool: Path, catalog: str, n: int
) -> list[Path]:
    """Rules with a lookback in an incremental run: each reads the timed records (visits,
    reads, transfers) of every facility from its zone's reading start, and keeps the hits
    from the zone's start on."""
    files = []
    for rule in rules:
        start, read_from = scope.zone(rule)
        for table in TIMED:
            con.execute(
                f'CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM "{catalog}".main.{table} '
                f"WHERE {SPECS[table].moment} >= TIMESTAMP '{read_from}'"
            )
        path = spool / f"{n + len(files):04d}-{rule.id}.parquet"
        try:
            batches = (
                [h for h in batch if h.period_start is not None and h.period_start >= start]
                for batch in evaluate_batches(con, rule)
            )
            report.counts[rule.id], written = spool_hits(batches, path)
        except Exception as exc:  # noqa: BLE001 - one rule failing never stops the run
            report.counts.pop(rule.id, None)
            report.errors[rule.id] = str(exc).splitlines()[0][:500]
            continue
        finally:
            for table in TIMED:
                con.execute(f"DROP VIEW IF EXISTS temp.main.{table}")
        files.extend(written)
    return files


_SPOOLS = f".hits-{socket.gethostname()}-"  # a rule run's spool folder: host, process


def _spool_prefix(pid: int | None = None) -> str:
    """The name a rule run's spool folder starts with: this host and the run's process."""
    return f"{_SPOOLS}{os.getpid() if pid is None else pid}-"


def remove_orphan_spools(folder: Path) -> list[Path]:
    """Remove the hit spools of rule runs whose process is gone (a run killed mid-way
    leaves its folder, hundreds of MB on a flood); a live run's folder is left alone."""
    removed = []
    for spool in folder.glob(f"{_SPOOLS}*"):
        pid = spool.name.removeprefix(_SPOOLS).split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(spool, ignore_errors=True)
            removed.append(spool)
    return removed


def run_rules(
    store: Store,
    rule_dirs: list[Path] | None = None,
    only: list[str] | None = None,
    triggered_by: str = "cli",
    full: bool = True,
) -> RunReport:
    """Run the rules, then store the hits as flags in one short write.

    With ``full=False`` only what changed since the last successful run is re-evaluated:
    rules of scope record/logbook/facility see only the new records, their logbooks or
    their facilities, global rules run in full; the flags are the same as a full run's.
    Queries run on a read-only connection so that the dashboard can keep reading while
    they work; the write takes only the upsert. A rule that fails is recorded in the run
    and the others still run. Flags of rules that ran and no longer fire (within what was
    re-evaluated) are marked ``resolved_by_data``; nothing is deleted, and review state
    lives apart, keyed by flag id.
    """
    t0 = time.perf_counter()
    rules = [
        r for r in load_rules(rule_dirs) if r.status != "deprecated" and (not only or r.id in only)
    ]
    started = now()
    report = RunReport(run_id=0)
    # Hits are spooled to Parquet beside the database (its folder is the owner's alone),
    # in a folder named by this process, so that one a killed run left is removed later.
    remove_orphan_spools(store.scratch)
    store.bring_current()  # the rules read this release's views, not an older one's
    with tempfile.TemporaryDirectory(prefix=_spool_prefix(), dir=store.scratch) as tmp:
        # rule folders may come from auditors: their SQL reads the store's tables only
        with store.sandboxed() as con:
            scope = change_scope(con, full=full or bool(only))
            rules, evaluated = _planned(con, rules, scope, report)
            hits = []
            if evaluated:
                prepare_context(con)
                hits = _evaluate_scoped(con, evaluated, scope, report, Path(tmp))
        try:
            _store_run(store, hits, rules, report, scope, started, triggered_by, evaluated)
        except Exception as exc:
            # Say so in the run history (the run's own row when it was written), then let
            # the caller know.
            record_failed(
                store, "rules", triggered_by, scope.describe(), started, exc, report.run_id
            )
            raise
    report.scope = scope.describe()
    report.seconds = time.perf_counter() - t0
    return report


def _planned(
    con, rules: list[Rule], scope: Scope, report: RunReport
) -> tuple[list[Rule], list[Rule]]:
    """The rules as this run evaluates them, and those it evaluates. In an incremental
    run a rule whose file changed since the last run (or that failed in it), or every rule
    when the views they read changed, is run in full, and so are the rules of a scope kind
    cheaper in full than narrowed (``_cheaper_in_full``); with nothing stored since the
    last run, only the changed rules are evaluated (the others would return what they
    returned then). The last run's costs go to ``report.costs``, which this run's measures
    then update."""
    last = con.execute(
        "SELECT rules, errors FROM runs WHERE kind = 'rules' AND status = 'ok' "
        "ORDER BY run_id DESC LIMIT 1"
    ).fetchall()
    known = json.loads(last[0][0] or "{}") if last else {}
    report.costs = Costs.of(known)
    if scope.full:
        return rules, rules
    failed = json.loads(last[0][1] or "{}") if last else {}
    same = {r.id for r in rules if known.get(r.id) == r.sha256 and r.id not in failed}
    if known.get(VIEWS_KEY) != VIEWS_SHA256:
        same = set()  # the views the rules read changed since: all re-run
    rules = [r if r.id in same else r.model_copy(update={"scope": "global"}) for r in rules]
    rules = _cheaper_in_full(rules, report.costs, scope)
    return rules, rules if scope.uploads else [r for r in rules if r.id not in same]


def _store_run(
    store: Store,
    hits: list[Path],
    rules: list[Rule],
    report: RunReport,
    scope: Scope,
    started: datetime,
    triggered_by: str,
    evaluated: list[Rule],
) -> None:
    """Record the run and store the hits of the ``evaluated`` rules (the run records the
    files of all ``rules``, which the next incremental run compares with)."""
    with store.write(RUN_WRITERS) as con:
        report.run_id = run_id = next_run(con, "rules", triggered_by, scope.describe())
        con.execute(
            "UPDATE runs SET started_at = ?, watermark = ? WHERE run_id = ?",
            [started, scope.watermark, run_id],
        )
        con.execute("COMMIT")  # the run is on record before its flags are written
        con.execute("BEGIN TRANSACTION")
        ran = [r for r in evaluated if r.id not in report.errors]
        if ran:  # no rule ran (nothing new): no hit to store, no flag to resolve
            scope.tables(con)
            report.new, report.resolved = store_flags(
                con,
                hits,
                run_id,
                source="rule",
                rules={r.id: r for r in ran},
                resolution=scope.resolution(ran),
                commit_chunks=True,
            )
        con.execute(
            "UPDATE runs SET ended_at = ?, status = ?, rules = ?, counts = ?, errors = ? "
            "WHERE run_id = ?",
            [
                now(),
                "failed" if report.errors and not report.counts else "ok",
                json.dumps(
                    {
                        **{r.id: r.sha256 for r in rules},
                        VIEWS_KEY: VIEWS_SHA256,
                        COSTS_KEY: report.costs.kept({r.id for r in rules}),
                    }
                ),
                json.dumps(report.counts),
                json.dumps(report.errors),
                run_id,
            ],
        )
