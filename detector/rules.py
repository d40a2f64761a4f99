"""Rules as data: load and validate rule files, run them in DuckDB, keep flags and runs.

A rule file (YAML) holds Sigma-like metadata and one SQL query that returns the
offending records or ranges ("a test returns its failures"). Columns the query may return:

- ``record_keys`` (list) or ``record_key``: the records involved (keys of the ``records`` view);
- ``facility``, ``logbook``, ``period_start``, ``period_end``: where and when;
- ``severity``: overrides the rule's severity for this hit;
- ``flag_key``: the hit's identity when it has no records (e.g. a missing page range);
- any other column: a value quoted by the ``explanation`` template and kept in ``fields``.

The runner, not the SQL, adds rule id, category, severity, flag identity and evidence.
Parameters are bound as SQL parameters (``$name``), never formatted into the SQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detector.errors import DetectorError
from detector.review import log_action
from detector.runs import next_run, now, record_failed
from detector.schema import KINDS, SPECS
from detector.scopes import SCOPE_NAMES, SCOPES
from detector.store import Store

BUILTIN_RULES = Path(__file__).resolve().parent.parent / "rules"
CATEGORIES = (
    "unidentified_entrant",
    "logbook_gap",
    "medical_transfer",
    "visit_pattern",
    "vehicle",
    "data_quality",
    "access_events",
)
SEVERITIES = ("informational", "low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
# How much one hit of a severity weighs in a visit's risk (see detector.scoring).
SEVERITY_WEIGHT = {"informational": 0.05, "low": 0.2, "medium": 0.4, "high": 0.6, "critical": 0.8}


# A range flag (a gap, a silent period, a missing book) has no scored visits: its risk is
# its severity's weight raised by its size, up to RANGE_SIZE_SHARE of the way to 1; half
# of that at RANGE_SIZE_HALF "magnitude" (the entries the gap hides, as the rule counts).
RANGE_SIZE_SHARE = 0.3
RANGE_SIZE_HALF = 50.0


def range_risk(alias: str) -> str:
    """SQL: the queue risk of hits/flags ``alias`` when first stored. Record flags start at
    their severity's weight (scoring raises it from their visits); range flags get their
    severity's weight raised by their size and keep it. Weights carry the factor the
    rule's reviews earned (``detector.calibration``)."""
    from detector.calibration import weighted

    m = f"greatest(coalesce(try_cast(json_extract_string({alias}.fields, '$.magnitude') AS DOUBLE), 0), 0)"
    w = weighted(severity_case(f"{alias}.severity"), f"{alias}.rule_id")
    return (
        f"(CASE WHEN {alias}.subject = 'range' "
        f"THEN 1 - (1 - {w}) * (1 - {RANGE_SIZE_SHARE} * {m} / ({m} + {RANGE_SIZE_HALF})) "
        f"ELSE {w} END)"
    )


def reopen_grown_cases(con, now: datetime) -> None:
    """Re-open closed cases of the temp table ``grown`` whose reviewer asked to be told of
    new occurrences (``reviews.reopen_on_new``), with an audit row for each."""
    reopened = con.execute(
        """SELECT flag_id, status FROM reviews
           WHERE reopen_on_new AND status NOT IN ('new', 'in_review')
             AND flag_id IN (SELECT flag_id FROM grown) ORDER BY flag_id"""
    ).fetchall()
    for fid, status in reopened:
        log_action(con, fid, now, "system", "status", status, "new", "new occurrences arrived")
    con.execute(
        """UPDATE reviews SET status = 'new', reason = NULL, updated_at = ?,
                  updated_by = 'system'
           WHERE flag_id IN (SELECT unnest(?::VARCHAR[]))""",
        [now, [fid for fid, _ in reopened]],
    )


def severity_case(column: str = "severity") -> str:
    """SQL mapping a severity column to its weight."""
    whens = " ".join(f"WHEN '{s}' THEN {w}" for s, w in SEVERITY_WEIGHT.items())
    return f"(CASE {column} {whens} ELSE 0 END)"


class RuleError(DetectorError):
    """A rule file that cannot be used; the message names the file and the field."""


class RegressionCase(BaseModel):
    """A tiny input (canonical rows per kind) and the hits the rule must return on it."""

    model_config = ConfigDict(extra="forbid")
    input: dict[
        Literal[KINDS], list[dict[str, Any]]  # type: ignore[valid-type]
    ]
    expect: list[dict[str, Any]]
    # Thresholds for the case, so that a tiny input can cross them.
    parameters: dict[str, Any] = Field(default_factory=dict)
    # Rows of the input that ingest must quarantine (for rules that read the quarantine).
    quarantined: int = 0


class DontMatchCase(BaseModel):
    """Harmless look-alikes the rule must leave alone (Sigma's ``dont_match``): on this
    input the rule returns no hit at all."""

    model_config = ConfigDict(extra="forbid")
    description: str
    input: dict[
        Literal[KINDS], list[dict[str, Any]]  # type: ignore[valid-type]
    ]
    parameters: dict[str, Any] = Field(default_factory=dict)
    quarantined: int = 0
    expect: list[dict[str, Any]] = Field(default_factory=list, max_length=0)


WINDOWS = ("day", "week", "month", "quarter", "year")


class Grouping(BaseModel):
    """Repeated hits of the rule on one entity within a calendar window become one flag
    (a case), with its occurrences counted: the queue shows cases, not rows."""

    model_config = ConfigDict(extra="forbid")
    by: list[str] = Field(min_length=1)  # hit fields naming the entity
    window: Literal[WINDOWS] = "month"  # type: ignore[valid-type]


class RuleText(BaseModel):
    """A rule's words in another language (the ``es:`` block): title, description, the
    explanation template and the usual false positives. The explanation quotes the same
    fields as the English one; a field ``X_es`` the query returns is the Spanish reading of
    ``X`` (a sentence the query composes), shown in its place."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    explanation: str = Field(min_length=1)
    falsepositives: list[str] = Field(default_factory=list)


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class Rule(BaseModel):
    """One rule file."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str
    category: Literal[CATEGORIES]  # type: ignore[valid-type]
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]
    # "records": the records returned are what is suspicious (they carry the flag's risk);
    # "range": they only anchor a range (the pages around a gap) and carry no risk.
    subject: Literal["records", "range"] = "records"
    # What new data a rule's hits can depend on, for incremental runs: "record" (only the
    # record itself), "logbook" (its logbook), "facility" (its facility's records) or
    # "global" (anything: always re-run in full).
    # "plate": the visits of the vehicle plates in the new records; "official": the visits
    # of the officials (and of the people they escorted) in the new records.
    scope: Literal[SCOPE_NAMES] = "global"  # type: ignore[valid-type]  # detector.scopes
    # For a facility-scoped rule whose hits depend on a bounded stretch of history (a
    # silence on the weeks before it): the days before a hit its evaluation reads. An
    # incremental run then reads every facility's visits only from this many days before
    # the calendar window (the group's window, else the month) in which the new visits can
    # first change a hit, and re-evaluates the hits from that window on; earlier ones stand.
    lookback_days: int | None = Field(default=None, ge=1)
    status: Literal["stable", "test", "experimental", "deprecated"] = "stable"
    tags: list[str] = Field(default_factory=list)
    falsepositives: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    query: str
    explanation: str
    # Spanish beside the English: a rule without it is refused.
    es: RuleText
    regression: list[RegressionCase] = Field(min_length=1)
    dont_match: list[DontMatchCase] = Field(min_length=1)
    group: Grouping | None = None
    path: Path | None = None
    sha256: str = ""

    @field_validator("query")
    @classmethod
    def _select_only(cls, v: str) -> str:
        try:
            statements = duckdb.extract_statements(v)
        except duckdb.Error as exc:
            raise ValueError(f"query is not valid SQL: {str(exc).splitlines()[0]}") from exc
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise ValueError("query must be exactly one SELECT (or WITH ... SELECT) statement")
        return v

    @model_validator(mode="after")
    def _same_fields_in_spanish(self) -> Rule:
        """The Spanish explanation quotes what the English one does (or a field's Spanish
        reading ``X_es``): a typo would show "?" to every Spanish reader."""
        english = _placeholders(self.explanation) | set(self.parameters)
        strange = sorted(
            n for n in _placeholders(self.es.explanation)
            if n not in english and not n.endswith("_es")
        )  # fmt: skip
        if strange:
            raise ValueError(
                f"es.explanation quotes {', '.join(strange)}, which the English explanation "
                "does not (use the same fields, or a field X_es the query returns)"
            )
        if len(self.es.falsepositives) != len(self.falsepositives):
            raise ValueError("es.falsepositives must translate each of falsepositives")
        return self

    def text(self, lang: str) -> RuleText:
        """Title, description, explanation and false positives in ``lang``."""
        if lang == "es":
            return self.es
        return RuleText(
            title=self.title,
            description=self.description,
            explanation=self.explanation,
            falsepositives=self.falsepositives,
        )

    def bound_parameters(self) -> dict[str, Any]:
        """Only the parameters the SQL names (DuckDB rejects unused named parameters)."""
        used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", self.query))
        missing = used - set(self.parameters)
        if missing:
            raise RuleError(
                f"{self.path}: query uses ${', $'.join(sorted(missing))} but "
                "'parameters' does not define it"
            )
        return {k: v for k, v in self.parameters.items() if k in used}


_PARSED: dict[tuple[str, str], Rule] = {}  # (path, sha256) -> rule: a long-lived scheduler
# re-reads its rule files every tick, and only a changed file is parsed again.


def load_rule(path: Path) -> Rule:
    """Read and validate one rule file; errors name the file and the field."""
    raw = path.read_bytes()
    key = (str(path), hashlib.sha256(raw).hexdigest())
    if key in _PARSED:
        return _PARSED[key]
    _PARSED[key] = rule = _parse_rule(path, raw)
    return rule


def _parse_rule(path: Path, raw: bytes) -> Rule:
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RuleError(f"{path}: a rule file must be a mapping of fields")
    try:
        rule = Rule.model_validate(
            {**data, "path": path, "sha256": hashlib.sha256(raw).hexdigest()}
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors()
        )
        raise RuleError(f"{path}: {problems}") from exc
    if path.parent.name != rule.category:
        raise RuleError(
            f"{path}: field 'category' is {rule.category} but the file is in {path.parent.name}/"
        )
    return rule


def rule_files(dirs: list[Path] | None = None) -> list[Path]:
    folders = [BUILTIN_RULES, *(dirs or [])]
    return sorted(p for d in folders for p in Path(d).rglob("*.yml"))


def load_rules(dirs: list[Path] | None = None) -> list[Rule]:
    """The built-in rules plus any extra folders; duplicate ids are an error."""
    rules: dict[str, Rule] = {}
    for path in rule_files(dirs):
        rule = load_rule(path)
        if rule.id in rules:
            raise RuleError(
                f"{path}: field 'id': '{rule.id}' is already used by {rules[rule.id].path}"
            )
        rules[rule.id] = rule
    return list(rules.values())


# --- running -------------------------------------------------------------------------------


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


@dataclass
class RunReport:
    run_id: int
    counts: dict[str, int] = field(default_factory=dict)
    new: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    resolved: int = 0
    seconds: float = 0.0
    scope: str = "full"


def plain(value: Any) -> Any:
    """A hit's value as an explanation shows it: minutes, dates, two decimals."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 2)
    return value


class _Quoted(dict):
    """Template values: lists joined, missing fields shown as '?' rather than failing."""

    def __missing__(self, key: str) -> str:
        return "?"


def explain(template: str, values: dict[str, Any]) -> str:
    shown = _Quoted(
        {
            k: ", ".join(map(str, v)) if isinstance(v, list) else ("—" if v is None else v)
            for k, v in values.items()
        }
    )
    return template.strip().format_map(shown)


def repeated(rule: Rule, fields: dict[str, Any], lang: str) -> str:
    """The sentence a case adds to its first occurrence's explanation: how many, in which
    window, for which entity, first and last."""
    from detector import i18n

    english = lang == i18n.SOURCE  # as the stored explanation already says it

    def when(value):
        return value if english else i18n.moment(value, lang)

    named = ", ".join(
        f"{k if english else i18n.field_name(k, lang).lower()} {fields.get(k)}"
        for k in (rule.group.by if rule.group else [])
    )
    n = int(fields.get("occurrences") or 0)
    window = fields.get("window")
    if isinstance(window, str) and _ISO_MOMENT.match(window):
        window = when(date.fromisoformat(window))
    return i18n.translate_plural(
        lang,
        "Repeated {n} time in {window} ({named}), first {first}, last {last}.",
        "Repeated {n} times in {window} ({named}), first {first}, last {last}.",
        n,
    ).format(
        n=n,
        window=window,
        named=named,
        first=when(fields.get("first_at")),
        last=when(fields.get("last_at")),
    )


_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$")


def localised(fields: dict[str, Any], lang: str) -> dict[str, Any]:
    """A hit's stored values as ``lang`` writes them: a field's own reading in the language
    (``X_es``) in place of ``X``, coded values in words, dates and decimals localised."""
    from detector import i18n

    out: dict[str, Any] = {}
    for k, v in fields.items():
        if f"{k}_{lang}" in fields:
            v = fields[f"{k}_{lang}"]
        elif isinstance(v, str) and _ISO_MOMENT.match(v):
            v = i18n.moment(v, lang)
        elif isinstance(v, float):
            v = i18n.number(v, lang)
        elif isinstance(v, str):
            v = i18n.code(v, lang)
        elif isinstance(v, list):
            v = [i18n.code(x, lang) for x in v]
        out[k] = v
    return out


def rule_wording(rule: Rule, fields: dict[str, Any], lang: str) -> tuple[str, str]:
    """(title, explanation) of a rule's flag in ``lang``, from its stored values."""
    text = rule.text(lang)
    explanation = explain(text.explanation, {**rule.parameters, **localised(fields, lang)})
    if int(fields.get("occurrences") or 0) > 1:
        explanation += " " + repeated(rule, fields, lang)
    return text.title, explanation


def flag_id(rule_id: str, identity: str) -> str:
    return hashlib.sha256(f"{rule_id}|{identity}".encode()).hexdigest()[:16]


def holiday_countries() -> list[str]:
    """Public-holiday calendars rules judge silence against: ``$DETECTOR_HOLIDAYS``, a
    comma-separated list of ISO country codes, optionally with a subdivision ("US-DC");
    El Salvador's by default."""
    return [c.strip() for c in os.environ.get("DETECTOR_HOLIDAYS", "SV").split(",") if c.strip()]


def prepare_context(con: duckdb.DuckDBPyConnection) -> None:
    """Temporary tables rules may read beside the data (on this connection only):
    ``holidays(day, name, country)``, the public holidays of the configured calendars
    over the years the visits span (from the ``holidays`` library)."""
    import holidays

    con.execute("CREATE OR REPLACE TEMP TABLE holidays (day DATE, name VARCHAR, country VARCHAR)")
    first, last = con.execute(
        "SELECT min(year(entered_at)), max(year(entered_at)) FROM visits"
    ).fetchall()[0]
    if first is None:
        return
    rows = []
    for code in holiday_countries():
        country, _, subdivision = code.partition("-")
        try:
            calendar = holidays.country_holidays(
                country, subdiv=subdivision or None, years=range(first, last + 1)
            )
        except NotImplementedError as exc:
            raise RuleError(f"DETECTOR_HOLIDAYS: no holiday calendar for {code!r}") from exc
        rows += [(day, name, code) for day, name in calendar.items()]
    if rows:
        con.executemany("INSERT INTO holidays VALUES (?, ?, ?)", rows)


def sandbox(con: duckdb.DuckDBPyConnection) -> None:
    """Lock a connection down before rule SQL runs on it: no files, URLs or extensions
    (``read_text('/etc/passwd')``, ``COPY ... TO``), and no way to switch that back on.
    The connection keeps reading the database's own tables; use it for nothing else."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


HIT_BATCH = 50_000  # rows fetched, explained and spooled at a time


def evaluate(con: duckdb.DuckDBPyConnection, rule: Rule) -> list[Hit]:
    """Run one rule's query and turn each returned row into a hit (all in memory: for
    regression cases and small checks; runs stream through ``evaluate_batches``)."""
    return [h for batch in evaluate_batches(con, rule) for h in batch]


def evaluate_batches(con: duckdb.DuckDBPyConnection, rule: Rule) -> Iterator[list[Hit]]:
    """Run one rule's query and yield its hits in batches of ``HIT_BATCH``, so that a rule
    matching millions of rows never holds them all as Python objects. A grouped rule
    yields its cases once its rows are read (a case holds its occurrences' record keys)."""
    cursor = con.execute(rule.query, rule.bound_parameters())
    names = [d[0] for d in cursor.description]
    cases = Cases(rule) if rule.group else None
    while rows := cursor.fetchmany(HIT_BATCH):
        hits = [_hit(rule, dict(zip(names, row, strict=True))) for row in rows]
        if cases is None:
            yield hits
        else:
            cases.add(hits)
    if cases is not None:
        merged = cases.hits()
        for i in range(0, len(merged), HIT_BATCH):
            yield merged[i : i + HIT_BATCH]


def _hit(rule: Rule, values: dict[str, Any]) -> Hit:
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
        explain(rule.explanation, {**rule.parameters, **shown}),
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
        group = self.rule.group
        for h in hits:
            entity = tuple(str(h.fields.get(k)) for k in group.by)
            key = (entity, window_start(h.period_start, group.window))
            case = self.cases.get(key)
            end = h.period_end or h.period_start
            if case is None:
                self.cases[key] = _Case(
                    h, set(h.record_keys), 1, h.period_start, h.period_start, end, h.severity
                )
                continue
            case.keys.update(h.record_keys)
            case.count += 1
            if _earlier(h, case.first):
                case.first = h
            if h.period_start is not None:
                case.first_at = min(filter(None, (case.first_at, h.period_start)))
                case.last_at = max(filter(None, (case.last_at, h.period_start)))
            if end is not None:
                case.end_at = max(filter(None, (case.end_at, end)))
            if SEVERITY_RANK[h.severity] > SEVERITY_RANK[case.severity]:
                case.severity = h.severity

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
            explanation = first.explanation
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

    @property
    def uploads(self) -> list[int]:
        return self.keys.get("record", [])

    @property
    def facilities(self) -> list[str]:
        return self.keys.get("facility", [])

    def tables(self, con) -> None:
        """The touched keys as small temporary tables ``scope_<name>`` on ``con``, which
        the narrowed views and the flags' resolution filter by."""
        for name, kind in SCOPES.items():
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE scope_{name} AS "
                f"SELECT unnest(?::{kind.sql_type}[]) AS value",
                [self.keys.get(name, [])],
            )

    def describe(self) -> str:
        if self.full:
            return "full"
        since = f", visits from {self.since:%Y-%m-%d %H:%M}" if self.since else ""
        return (
            f"incremental: {len(self.uploads)} upload(s), facilities "
            f"{', '.join(self.facilities) or '-'}{since}"
        )

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
    watermark = con.execute("SELECT coalesce(max(seq), 0) FROM uploads").fetchall()[0][0]
    last = con.execute(
        "SELECT max(watermark) FROM runs WHERE kind = 'rules' AND status = 'ok'"
    ).fetchall()[0][0]
    if full or last is None:
        return Scope(True, watermark)
    uploads = con.execute(
        "SELECT seq, kind FROM uploads WHERE seq > ? ORDER BY seq", [last]
    ).fetchall()
    if any(SPECS[kind].context for _, kind in uploads if kind in SPECS):
        return Scope(True, watermark=watermark)
    seqs = [seq for seq, _ in uploads]
    keys = {
        name: [r[0] for r in con.execute(kind.touched, [seqs]).fetchall() if r[0] is not None]
        for name, kind in SCOPES.items()
    }
    since = con.execute(
        """
        WITH n AS (SELECT facility, date_trunc('week', min(entered_at)) AS wk FROM visits
                   WHERE upload_seq IN (SELECT unnest($1::BIGINT[])) GROUP BY ALL)
        SELECT min(coalesce((SELECT max(o.entered_at) FROM visits o
                             WHERE o.facility = n.facility AND o.entered_at < n.wk), n.wk))
        FROM n""",
        [seqs],
    ).fetchall()[0][0]
    return Scope(False, watermark, {k: sorted(v) for k, v in keys.items()}, since)


# The tables a scoped rule sees narrowed to what changed: every kind but the context ones
# (a roster, the facilities list), which every facility's checks read whole.
NARROWED = tuple(k for k in KINDS if not SPECS[k].context)


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
        if kind != "global":
            for table in NARROWED:
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM "
                    f'"{catalog}".main.{table} WHERE {SCOPES[kind].table_filter(table)}'
                )
        try:
            for rule in group:
                path = spool / f"{len(files):04d}-{rule.id}.parquet"
                try:
                    report.counts[rule.id] = spool_hits(evaluate_batches(con, rule), path)
                except (duckdb.Error, RuleError) as exc:
                    report.counts.pop(rule.id, None)
                    report.errors[rule.id] = str(exc).splitlines()[0][:500]
                    path.unlink(missing_ok=True)
                    continue
                if path.exists():
                    files.append(path)
        finally:
            if kind != "global":
                for table in NARROWED:
                    con.execute(f"DROP VIEW IF EXISTS temp.main.{table}")
    return files


def _evaluate_windowed(
    con, rules: list[Rule], scope: Scope, report: RunReport, spool: Path, catalog: str, n: int
) -> list[Path]:
    """Rules with a lookback in an incremental run: each reads the visits of every facility
    from its zone's reading start, and keeps the hits from the zone's start on."""
    files = []
    for rule in rules:
        start, read_from = scope.zone(rule)
        con.execute(
            f'CREATE OR REPLACE TEMP VIEW visits AS SELECT * FROM "{catalog}".main.visits '
            f"WHERE entered_at >= TIMESTAMP '{read_from}'"
        )
        path = spool / f"{n + len(files):04d}-{rule.id}.parquet"
        try:
            batches = (
                [h for h in batch if h.period_start is not None and h.period_start >= start]
                for batch in evaluate_batches(con, rule)
            )
            report.counts[rule.id] = spool_hits(batches, path)
        except (duckdb.Error, RuleError) as exc:
            report.counts.pop(rule.id, None)
            report.errors[rule.id] = str(exc).splitlines()[0][:500]
            path.unlink(missing_ok=True)
            continue
        finally:
            con.execute("DROP VIEW IF EXISTS temp.main.visits")
        if path.exists():
            files.append(path)
    return files


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
    import tempfile
    import time

    t0 = time.perf_counter()
    rules = [
        r for r in load_rules(rule_dirs) if r.status != "deprecated" and (not only or r.id in only)
    ]
    started = now()
    report = RunReport(run_id=0)
    # Hits are spooled to Parquet beside the database (its folder is the owner's alone).
    with tempfile.TemporaryDirectory(prefix=".hits-", dir=store.path.parent) as tmp:
        with store.read() as con:
            scope = change_scope(con, full=full or bool(only))
            if not scope.full:
                # A rule whose file changed since the last run is re-run in full.
                last = con.execute(
                    "SELECT rules FROM runs WHERE kind = 'rules' AND status = 'ok' "
                    "ORDER BY run_id DESC LIMIT 1"
                ).fetchall()
                known = json.loads(last[0][0] or "{}") if last else {}
                rules = [
                    r if known.get(r.id) == r.sha256 else r.model_copy(update={"scope": "global"})
                    for r in rules
                ]
            prepare_context(con)
            sandbox(con)  # rule folders may come from auditors: their SQL reads tables only
            hits = (
                []
                if not scope.full and not scope.uploads and all(r.scope != "global" for r in rules)
                else _evaluate_scoped(con, rules, scope, report, Path(tmp))
            )
        try:
            _store_run(store, hits, rules, report, scope, started, triggered_by)
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


def _store_run(
    store: Store,
    hits: list[Path],
    rules: list[Rule],
    report: RunReport,
    scope: Scope,
    started: datetime,
    triggered_by: str,
) -> None:
    with store.write() as con:
        report.run_id = run_id = next_run(con, "rules", triggered_by, scope.describe())
        con.execute(
            "UPDATE runs SET started_at = ?, watermark = ? WHERE run_id = ?",
            [started, scope.watermark, run_id],
        )
        con.execute("COMMIT")  # the run is on record before its flags are written
        con.execute("BEGIN TRANSACTION")
        ran = [r for r in rules if r.id not in report.errors]
        report.new, report.resolved = store_flags(
            con, hits, ran, run_id, source="rule", scope=scope, commit_chunks=True
        )
        con.execute(
            "UPDATE runs SET ended_at = ?, status = ?, rules = ?, counts = ?, errors = ? "
            "WHERE run_id = ?",
            [
                now(),
                "failed" if report.errors and not report.counts else "ok",
                json.dumps({r.id: r.sha256 for r in rules}),
                json.dumps(report.counts),
                json.dumps(report.errors),
                run_id,
            ],
        )


def hits_frame(hits: list[Hit]):
    """Hits as a table with the flag columns (``fields`` as JSON)."""
    import polars as pl

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


def spool_hits(batches: Iterator[list[Hit]], path: Path) -> int:
    """Write batches of hits to one Parquet file as they come; returns how many (no file
    when there are none)."""
    import pyarrow.parquet as pq

    writer, count = None, 0
    try:
        for batch in batches:
            if not batch:
                continue
            table = hits_frame(batch).to_arrow()
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            count += len(batch)
    finally:
        if writer is not None:
            writer.close()
    return count


FLAG_CHUNK = 25_000  # hits whose evidence is resolved and upserted (and committed) at a time


def _stage_hits(con, hits: list) -> int:
    """The temp table ``hits``: one row per flag id (the first one found), from Hit objects
    or from spooled Parquet files; returns the number of chunks of FLAG_CHUNK rows (by
    ``ord``) to upsert. Staging is a plain copy and the de-duplication reads two columns, so
    that it stays within DuckDB's memory limit however many hits there are."""
    if hits and isinstance(hits[0], Path):
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in hits)
        source = f"read_parquet([{files}])"
    else:
        con.register("hits_in", hits_frame(hits))
        source = "hits_in"
    # ``ord`` numbers the rows (rowid is no dense index inside a transaction)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE hits AS "
        f"SELECT *, row_number() OVER () - 1 AS ord FROM {source}"
    )
    if source == "hits_in":
        con.unregister("hits_in")
    con.execute("DELETE FROM hits WHERE ord NOT IN (SELECT min(ord) FROM hits GROUP BY flag_id)")
    rows = con.execute("SELECT coalesce(max(ord) + 1, 0) FROM hits").fetchall()[0][0]
    return -(-rows // FLAG_CHUNK)


def _upsert_chunk(con, chunk: int, source: str, run_id: int, now: datetime) -> None:
    """Resolve the evidence of one chunk of hits (where each record came from: file, row,
    logbook, page, line) and upsert them as flags. The chunk's range is written into the
    SQL as integers, so that DuckDB prunes the scan to it."""
    lo, hi = int(chunk) * FLAG_CHUNK, (int(chunk) + 1) * FLAG_CHUNK - 1
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hit_evidence AS
        SELECT h.flag_id,
               list(r.record_id ORDER BY r.source_name, r.source_row)
                   FILTER (WHERE r.record_key IS NOT NULL) AS record_ids,
               to_json(list({{'kind': r.kind, 'record_id': r.record_id,
                              'record_key': r.record_key, 'file': r.source_name,
                              'sha256': r.source_sha256, 'row': r.source_row,
                              'logbook': r.logbook, 'page': r.page, 'line': r.line}}
                            ORDER BY r.source_name, r.source_row)
                    FILTER (WHERE r.record_key IS NOT NULL))::VARCHAR AS evidence
        FROM (SELECT flag_id FROM hits WHERE ord BETWEEN {lo} AND {hi}) h
        LEFT JOIN (SELECT flag_id, unnest(record_keys) AS k FROM hits
                   WHERE ord BETWEEN {lo} AND {hi}) u
             USING (flag_id)
        LEFT JOIN records r ON r.record_key = u.k
        GROUP BY h.flag_id"""
    )
    con.execute(
        f"""
        INSERT INTO flags BY NAME
        SELECT h.* EXCLUDE (ord), $source AS source, coalesce(e.record_ids, []) AS record_ids,
               coalesce(e.evidence, '[]') AS evidence, {range_risk("h")} AS score,
               $run AS first_run, $run AS last_run, $now AS first_seen, $now AS last_seen,
               'active' AS state
        FROM hits h JOIN hit_evidence e USING (flag_id)
        WHERE h.ord BETWEEN {lo} AND {hi}
        ON CONFLICT (flag_id) DO UPDATE SET
            last_run = excluded.last_run, last_seen = excluded.last_seen, state = 'active',
            severity = excluded.severity, explanation = excluded.explanation,
            fields = excluded.fields, record_keys = excluded.record_keys,
            record_ids = excluded.record_ids, evidence = excluded.evidence,
            period_start = excluded.period_start, period_end = excluded.period_end,
            score = CASE WHEN excluded.subject = 'range' OR flags.score IS NULL
                         THEN excluded.score ELSE flags.score END""",
        {"source": source, "run": run_id, "now": now},
    )


def store_flags(
    con,
    hits: list,
    rules: list,
    run_id: int,
    source: str,
    scope: Scope | None = None,
    commit_chunks: bool = False,
) -> tuple[dict[str, int], int]:
    """Upsert hits as flags; returns (new flags per rule, flags resolved by data).

    ``hits`` are Hit objects or Parquet files of them (``spool_hits``); the evidence of
    each is resolved and the flags upserted FLAG_CHUNK at a time, so that millions of hits
    stay within DuckDB's memory limit. With ``commit_chunks`` each chunk is committed on
    its own (DuckDB keeps a transaction's new rows in memory): a run that fails part way
    keeps the flags it wrote (upserts are idempotent, the next run completes them) and is
    recorded as failed. ``rules`` are the Rule objects (or bare rule ids, re-evaluated in
    full) that ran: their active flags within what was re-evaluated, and not hit again,
    are resolved by data.
    """
    at = now()
    chunks = _stage_hits(con, hits)
    new = dict(
        con.execute(
            "SELECT rule_id, count(*) FROM hits WHERE flag_id NOT IN (SELECT flag_id FROM flags) "
            "GROUP BY 1"
        ).fetchall()
    )
    # Cases that gain occurrences: a closed one re-opens if its reviewer asked for that.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE grown AS
        SELECT f.flag_id FROM flags f JOIN hits h USING (flag_id)
        WHERE len(h.record_keys) > len(f.record_keys)""")
    for chunk in range(chunks):
        _upsert_chunk(con, chunk, source, run_id, at)
        if commit_chunks:
            con.execute("COMMIT")
            con.execute("CHECKPOINT")  # written rows leave memory only at a checkpoint
            con.execute("BEGIN TRANSACTION")
    reopen_grown_cases(con, at)
    by_scope: dict[str, list[str]] = {name: [] for name in (*SCOPES, "global")}
    zoned: list[tuple[str, datetime]] = []
    for rule in rules:
        kind = "global" if isinstance(rule, str) or scope is None or scope.full else rule.scope
        if not isinstance(rule, str) and scope is not None and scope.zone(rule):
            zoned.append((rule.id, scope.zone(rule)[0]))
            continue
        by_scope[kind].append(rule if isinstance(rule, str) else rule.id)
    (scope or Scope(True)).tables(con)
    # A flag no longer returned stops firing where the run looked at all of its part.
    covered = ["rule_id IN (SELECT unnest(?::VARCHAR[]))"]
    params: list = [by_scope["global"]]
    for name, kind in SCOPES.items():
        if kind.covers is not None:  # (record-scoped flags cannot stop firing)
            covered.append(f"(rule_id IN (SELECT unnest(?::VARCHAR[])) AND {kind.covers})")
            params.append(by_scope[name])
    covered.append(
        "EXISTS (SELECT 1 FROM (SELECT unnest(?::VARCHAR[]) AS r, unnest(?::TIMESTAMP[]) AS s) z "
        "WHERE z.r = flags.rule_id AND flags.period_start >= z.s)"
    )
    params += [[r for r, _ in zoned], [t for _, t in zoned]]
    resolved = con.execute(
        "UPDATE flags SET state = 'resolved_by_data', last_run = ? "
        "WHERE state = 'active' AND flag_id NOT IN (SELECT flag_id FROM hits) AND ("
        + " OR ".join(covered)
        + ")",
        [run_id, *params],
    ).fetchall()[0][0]
    con.execute("DROP TABLE IF EXISTS temp.main.hits")
    return new, resolved


# --- regression cases ----------------------------------------------------------------------


def run_case(
    rule: Rule, case: RegressionCase, workdir: Path, fields_out: list[dict] | None = None
) -> list[str]:
    """Ingest a case's rows through the real pipeline, run the rule, compare with expect.

    Returns the problems found (empty when the rule returns exactly the expected hits);
    ``fields_out`` receives each hit's stored values (to render its texts).
    """
    import polars as pl

    from detector.ingest import ingest_paths

    workdir.mkdir(parents=True, exist_ok=True)
    store = Store(workdir / "case.duckdb", wait=10)
    rule = rule.model_copy(update={"parameters": {**rule.parameters, **case.parameters}})
    paths = []
    for kind, rows in case.input.items():
        frame = pl.DataFrame(
            [
                {k: None if v is None else str(v) for k, v in r.items()}
                for r in _expand_series(rows)
            ],
            infer_schema_length=None,
        )
        path = workdir / f"{kind}.csv"
        frame.write_csv(path)
        paths.append(path)
    results = ingest_paths(store, paths, user="regression")
    quarantined = sum(r.rows_quarantined for r in results)
    for result in results:
        if result.status != "stored" or quarantined != case.quarantined:
            return [
                f"case input {Path(result.path).name} did not ingest as the case says: "
                f"{result.message or result.reasons}"
            ]
    with store.read() as con:
        prepare_context(con)
        sandbox(con)
        try:
            hits = evaluate(con, rule)
        except duckdb.Error as exc:
            return [f"the query failed: {str(exc).splitlines()[0][:500]}"]
        ids = dict(
            con.execute(
                "SELECT record_key, coalesce(record_id, record_key) FROM records"
            ).fetchall()
        )
    if fields_out is not None:
        fields_out.extend(h.fields for h in hits)
    remaining = list(hits)
    problems = []
    for want in case.expect:
        match = next((h for h in remaining if _matches(h, want, ids)), None)
        if match is None:
            problems.append(f"expected hit {want} not returned")
        else:
            remaining.remove(match)
    for h in remaining:
        problems.append(
            f"unexpected hit: records {[ids.get(k, k) for k in h.record_keys]} {h.fields}"
        )
    return problems


def _expand_series(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row with ``every_hours`` and ``until`` stands for a series of entries.

    The copies get record ids ``<record_id>-0``, ``-1``, ... and entered_at stepping on.
    """
    from datetime import timedelta

    out = []
    for row in rows:
        if "every_hours" not in row:
            out.append(row)
            continue
        row = dict(row)
        step = timedelta(hours=float(row.pop("every_hours")))
        until = datetime.fromisoformat(str(row.pop("until")))
        at, n = datetime.fromisoformat(str(row["entered_at"])), 0
        while at <= until:
            out.append(
                {**row, "record_id": f"{row['record_id']}-{n}", "entered_at": at.isoformat(sep=" ")}
            )
            at, n = at + step, n + 1
    return out


def _matches(hit: Hit, want: dict[str, Any], ids: dict[str, str]) -> bool:
    for key, value in want.items():
        if key == "record_ids":
            if sorted(ids.get(k, k) for k in hit.record_keys) != sorted(map(str, value)):
                return False
        else:
            got = {"severity": hit.severity, "facility": hit.facility, "logbook": hit.logbook}.get(
                key, hit.fields.get(key)
            )
            if str(plain(got)) != str(value):
                return False
    return True
