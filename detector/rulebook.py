"""Rules as data: the rule file's schema, and loading and validating rule files.

A rule file (YAML) holds Sigma-like metadata and one SQL query that returns the
offending records or ranges ("a test returns its failures"). Columns the query may return:

- ``record_keys`` (list) or ``record_key``: the records involved (keys of the ``records`` view);
- ``facility``, ``logbook``, ``period_start``, ``period_end``: where and when;
- ``severity``: overrides the rule's severity for this hit;
- ``flag_key``: the hit's identity when it has no records (e.g. a missing page range);
- any other column: a value quoted by the ``explanation`` template and kept in ``fields``.

The runner (``detector.engine``), not the SQL, adds rule id, category, severity, flag
identity and evidence. Parameters are bound as SQL parameters (``$name``), never formatted
into the SQL. A rule's category is the folder it sits in: the categories are the rules
folder's subfolders (:func:`categories`).
"""

from __future__ import annotations

import hashlib
import re
import string
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

from detector import cache
from detector.errors import DetectorError
from detector.risk import SEVERITIES
from detector.schema import KINDS
from detector.scopes import SCOPE_NAMES

BUILTIN_RULES = Path(__file__).resolve().parent.parent / "rules"


def categories(dirs: list[Path] | None = None) -> list[str]:
    """The rule categories: the subfolders of the built-in rules folder (and of any extra
    folders) that hold rule files, sorted."""
    folders = [BUILTIN_RULES, *(dirs or [])]
    return sorted({p.parent.name for d in folders for p in Path(d).rglob("*.yml")})


class RuleError(DetectorError):
    """A rule file that cannot be used; the message names the file and the field."""


def _kinds_of_files(files: dict[str, list]) -> dict[str, list]:
    """A case's input: one file per key, named by its kind ("visits"), or by its kind and a
    label ("visits.resent": a second file of that kind, ingested after the first)."""
    unknown = sorted(k for k in files if k.split(".")[0] not in KINDS)
    if unknown:
        raise ValueError(
            f"input names {', '.join(unknown)}: each file is named by its kind "
            f"({', '.join(KINDS)}), optionally with '.label'"
        )
    return files


class RegressionCase(BaseModel):
    """A tiny input (canonical rows per file, each named by its kind) and the hits the rule
    must return on it."""

    model_config = ConfigDict(extra="forbid")
    input: dict[str, list[dict[str, Any]]]
    expect: list[dict[str, Any]]
    # Thresholds for the case, so that a tiny input can cross them.
    parameters: dict[str, Any] = Field(default_factory=dict)
    # Rows of the input that ingest must quarantine (for rules that read the quarantine).
    quarantined: int = 0

    _files = field_validator("input")(classmethod(lambda cls, v: _kinds_of_files(v)))


class DontMatchCase(BaseModel):
    """Harmless look-alikes the rule must leave alone (Sigma's ``dont_match``): on this
    input the rule returns no hit at all."""

    model_config = ConfigDict(extra="forbid")
    description: str
    input: dict[str, list[dict[str, Any]]]
    parameters: dict[str, Any] = Field(default_factory=dict)
    quarantined: int = 0
    expect: list[dict[str, Any]] = Field(default_factory=list, max_length=0)

    _files = field_validator("input")(classmethod(lambda cls, v: _kinds_of_files(v)))


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

    @field_validator("explanation")
    @classmethod
    def _plain_explanation(cls, v: str) -> str:
        return plain_template(v)


def _placeholders(template: str) -> set[str]:
    """The fields a template quotes, those inside a wording's forms too."""
    names: set[str] = set()
    for _, name, spec, _ in string.Formatter().parse(template):
        if name:
            names.add(name)
        if spec and "{" in spec:
            names |= _placeholders(spec.partition(":")[2])
    return names


WORDED_SPECS = ("plural", "given", "date", "time", "pct", "fields")  # ``detector.wording._Words``


def plain_template(template: str) -> str:
    """An explanation template quotes fields by name (``{facility}``), optionally with one
    of the wordings ``detector.wording`` knows (``{n:plural:# row|# rows}``,
    ``{x:given:…|…}`` whose forms quote plain names, ``{t:date}``, ``{t:time}``,
    ``{share:pct}``): no attribute or index lookups, conversions, widths or other format
    specs. A spec such as ``{x:>300000000}`` would build a string of that width for every
    hit and stop the whole run."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        kind, _, forms = (spec or "").partition(":")
        if (
            conversion
            or not name.isidentifier()
            or (spec and kind not in WORDED_SPECS)
            or (kind in ("date", "time", "pct", "fields") and forms)
            or (kind in ("plural", "given") and "|" not in forms)
        ):
            raise ValueError(
                f"quotes {{{shown}}}: a template quotes fields by their plain name, or with "
                f"one of the wordings {', '.join(WORDED_SPECS)}"
            )
        if forms:
            for _, nested, nested_spec, nested_conversion in string.Formatter().parse(forms):
                if nested is not None and (
                    nested_spec or nested_conversion or not nested.isidentifier()
                ):
                    raise ValueError(
                        f"quotes {{{shown}}}: a wording's forms quote fields by their plain "
                        "name only"
                    )
    return template


class Rule(BaseModel):
    """One rule file."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str
    # The folder the file sits in (rules/<category>/): categories are the rules folder's.
    category: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
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

    @field_validator("explanation")
    @classmethod
    def _plain_explanation(cls, v: str) -> str:
        return plain_template(v)

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

# Across processes, a rule file's parsed YAML is cached by the file's SHA-256 (every
# command reads the 33 built-in rules: parsing them was 2 s of a command on a loaded
# machine). What is cached is only the YAML's data, never a validated rule: each command
# validates it again with the schema (``Rule``: the SELECT-only check, the Spanish block,
# the cases), so a cache entry edited by hand is held to every check the file is; an
# entry is used only for the file bytes whose SHA-256 names it (``detector.cache``).
_CACHE_FORMAT = "rule-yaml-1"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 6x faster


def load_rule(path: Path) -> Rule:
    """Read and validate one rule file; errors name the file and the field."""
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    key = (str(path), sha)
    if key in _PARSED:
        return _PARSED[key]
    _PARSED[key] = rule = _parse_rule(path, raw, sha)
    return rule


def _parse_rule(path: Path, raw: bytes, sha: str | None = None) -> Rule:
    sha = sha or hashlib.sha256(raw).hexdigest()
    data = cache.read("rules", sha, _CACHE_FORMAT)
    if data is None:
        try:
            data = yaml.load(raw, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            raise RuleError(f"{path}: not valid YAML: {exc}") from exc
        cache.write("rules", sha, _CACHE_FORMAT, data)
    if not isinstance(data, dict):
        raise RuleError(f"{path}: a rule file must be a mapping of fields")
    try:
        rule = Rule.model_validate({**data, "path": path, "sha256": sha})
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
