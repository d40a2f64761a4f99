"""Map a source's headers and values onto a canonical record kind."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from anyascii import anyascii
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detector import lazy
from detector.dates import DATE_ORDERS, DEFAULT_YEARS_FROM
from detector.errors import FileError
from detector.i18n import N_
from detector.schema import (
    CUSTODY_SNAPSHOT,
    KINDS,
    NAME_PLACEHOLDERS,
    NOT_ALNUM,
    PLACEHOLDER_TAIL,
    REDACTION_TOKENS,
    SPECS,
    TYPED_DOCUMENTS,
    VOCAB_DEFAULTS,
    VOCABULARIES,
    VOCABULARY_FIRST,
    KindSpec,
    bare_placeholders,
)

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy.module("polars")


def fold(text: str) -> str:
    """Case-, accent- and space-insensitive key: ``"Fecha  Ingreso"`` -> ``"fecha_ingreso"``."""
    text = unicodedata.normalize("NFKD", str(text).replace("\ufeff", ""))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


# Words a header may carry around the name of its field ("Hora de entrada", "N° DUI",
# "Número de documento"): left out, the rest is looked up again (``plain``).
_CONNECTORS = frozenset({"de", "del", "la", "las", "el", "los", "y", "of", "the", "a", "al"})
_NUMBER_MARKS = frozenset({"n", "no", "nro", "num", "numero", "number", "nr"})


def plain(folded: str) -> str:
    """A folded header without its connecting words and a leading number mark:
    ``"hora_de_entrada"`` -> ``"hora_entrada"``, ``"n_dui"`` and ``"numero_de_dui"`` ->
    ``"dui"``. A second key to find the header's field by (``headers_by_key``)."""
    words = [w for w in folded.split("_") if w not in _CONNECTORS]
    while len(words) > 1 and words[0] in _NUMBER_MARKS:
        words = words[1:]
    return "_".join(words)


def headers_by_key(headers: list[str]) -> dict[str, str]:
    """Each header by its folded form and, where no other header has that form, by its
    plain form (``plain``), then a nested field by its last name (``person.name`` as
    ``name``): how a field's synonyms find it."""
    keys = {fold(h): h for h in headers}
    for h in headers:
        keys.setdefault(plain(fold(h)), h)
    for h in headers:  # a JSON export's nested field ("person.name") by its own name
        if "." in h:
            keys.setdefault(fold(h.rsplit(".", 1)[1]), h)
    return keys


def fold_expr(expr: pl.Expr) -> pl.Expr:
    """Folded comparison key for values: invisible format characters (zero-width spaces
    and joiners, bidi controls, soft hyphens) dropped, compatibility forms (fullwidth,
    ligatures) and accents removed, upper case, single spaces."""
    return (
        expr.str.replace_all(r"\p{Cf}", "")
        .str.normalize("NFKD")
        .str.replace_all(r"\p{M}", "")
        .str.to_uppercase()
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


class ColumnSource(BaseModel):
    """How one canonical field is read when it is not a plain header."""

    model_config = ConfigDict(extra="forbid")
    join: list[str] | None = None
    first_of: list[str] | None = None
    value: str | None = None
    date: str | None = None
    time: str | None = None


class UserMapping(BaseModel):
    """A mapping file (TOML or YAML) for sources the built-in synonyms do not cover.

    ``columns`` maps a canonical field to a header, a list of headers (joined by spaces),
    or a table: ``{join = [...]}``, ``{first_of = [...]}`` (first non-empty),
    ``{value = "X"}`` (a constant) or ``{date = "D", time = "T"}``.
    ``values`` maps raw values to canonical ones per vocabulary field.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal[KINDS] | None = None  # type: ignore[valid-type]
    date_order: str = "dmy"
    # Two-digit years are read into the hundred years starting here (1970: 69 -> 2069).
    two_digit_years_from: int = Field(default=DEFAULT_YEARS_FROM, ge=1900, le=2100)
    timezone: str | None = None
    sheet: str | None = None
    # A file written without a header row: ``header = false`` and its columns, in order.
    header: bool = True
    names: list[str] | None = None
    # Words this source writes instead of a name, and its markers of withheld names.
    placeholders: list[str] = Field(default_factory=list)
    redactions: list[str] = Field(default_factory=list)
    columns: dict[str, str | list[str] | ColumnSource] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("values")
    @classmethod
    def _value_tables(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, table in v.items():
            if len(table) > MAX_VALUE_ENTRIES:
                raise ValueError(
                    f"the value table of '{name}' has {len(table):,} entries (limit "
                    f"{MAX_VALUE_ENTRIES:,}): a vocabulary has a few dozen spellings, not one "
                    "per row"
                )
        return v

    @model_validator(mode="after")
    def _headerless(self) -> UserMapping:
        if not self.header and not self.names:
            raise ValueError("header = false needs 'names': the file's columns, in order")
        if self.names and len(set(self.names)) != len(self.names):
            raise ValueError("'names' must not repeat a column name")
        return self

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            pl.select(pl.lit(None, pl.Datetime("us")).dt.replace_time_zone(v))
        except pl.exceptions.PolarsError:
            raise ValueError(
                f"unknown time zone {v!r}: name it as the tz database does "
                "(America/Lima, America/New_York, UTC)"
            ) from None
        return v

    @field_validator("date_order")
    @classmethod
    def _order(cls, v: str) -> str:
        if v not in DATE_ORDERS:
            raise ValueError(f"date_order must be one of {', '.join(DATE_ORDERS)}")
        return v


# A mapping is at most four levels deep (``columns.name.first_of[0]``): far deeper is a
# file built to exhaust the parser's recursion, not a mapping.
MAX_DEPTH = 16
# Entries of one ``[values.FIELD]`` table: a vocabulary has a few dozen spellings.
MAX_VALUE_ENTRIES = 5_000


class _MappingLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags that build objects) that refuses a key given twice in
    one table: PyYAML keeps the last silently, so ``date_order`` written twice read as
    whichever came last."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports an unhashable key
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); a mapping says each thing once",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _yaml_mapping(text: str):
    """A mapping file's YAML, read only after its events show a plausible shape: nesting
    no deeper than MAX_DEPTH (the event parser is iterative; composing is recursive) and no
    aliases (a mapping has no use for them; they are how a small file expands into a
    billion entries)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise _Shape(
                f"line {event.start_mark.line + 1}: aliases (*name) are not allowed in a "
                "mapping file"
            )
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Shape(
                    f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels "
                    "deep; a mapping is a few levels deep"
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    return yaml.load(text, Loader=_MappingLoader)  # noqa: S506 — a SafeLoader subclass


class _Shape(ValueError):
    """A mapping file's text parses but is not shaped like a mapping."""


def _too_deep(data) -> bool:
    """Whether parsed data nests deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
    return False


def parse_mapping(text: str, toml: bool):
    """A mapping file's text as data (TOML or YAML); raises ValueError-like errors with the
    problem: not parseable, a key given twice, nested absurdly deep, aliases."""
    try:
        data = tomllib.loads(text) if toml else _yaml_mapping(text)
    except RecursionError:
        raise _Shape(
            f"nested more than {MAX_DEPTH} levels deep; a mapping is a few levels deep"
        ) from None
    if _too_deep(data):
        raise _Shape(f"nested more than {MAX_DEPTH} levels deep; a mapping is a few levels deep")
    return data


def load_mapping(path: str | Path | None) -> UserMapping:
    """Read and validate a mapping file; errors name the file and the field."""
    if path is None:
        return UserMapping()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = parse_mapping(text, toml=path.suffix.lower() == ".toml")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError, _Shape) as exc:
        raise FileError(
            path.name, N_("cannot read mapping file: {problem}"), problem=str(exc)
        ) from exc
    try:
        return UserMapping.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FileError(
            path.name, N_("mapping field '{field}': {problem}"), field=where, problem=first["msg"]
        ) from exc


# --- mappings saved by name ----------------------------------------------------------------

NAME = re.compile(r"^[\w][\w .-]{0,79}$")
# The inbox's own folders: a mapping saved under one of these names would make every tick
# take the files already processed (or failed) as new ones, and rename them again.
RESERVED_NAMES = ("processed", "failed")


def reserved_name(name: str) -> bool:
    """Whether ``name`` is one of the inbox's own folders (in any case: some file systems
    do not tell ``Failed`` from ``failed``)."""
    return name.strip().casefold() in RESERVED_NAMES


@dataclass(frozen=True)
class SavedMapping:
    """A mapping kept in the database under a name: every version stays, with its SHA-256,
    and each upload's ledger entry names the version and hash it was read with."""

    name: str
    version: int
    sha256: str
    mapping: UserMapping

    @property
    def label(self) -> str:
        """How the ledger names it: ``saved:waves v2 sha256:1f3a…`` (the full hash)."""
        return f"saved:{self.name} v{self.version} sha256:{self.sha256}"


def mapping_text(mapping: UserMapping) -> str:
    """A mapping as the YAML a mapping file holds (only what differs from the defaults)."""
    data = mapping.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=True)


def save_named(store, name: str, mapping: UserMapping, user: str) -> SavedMapping:
    """Keep ``mapping`` under ``name``; the same content again is the same version, a
    change is a new one (earlier versions stay: uploads read with them cite them)."""
    import hashlib
    from datetime import UTC, datetime

    name = name.strip()
    if not NAME.match(name):
        raise FileError(
            repr(name),
            N_(
                "a mapping name is 1-80 letters, digits, spaces, '.', '-' or '_', not "
                "starting with a space or a sign"
            ),
        )
    if reserved_name(name):
        raise FileError(
            repr(name),
            N_(
                "'{name}' is the name of one of the inbox's own folders ({reserved}); "
                "choose another name for the mapping"
            ),
            name=name,
            reserved=", ".join(RESERVED_NAMES),
        )
    body = mapping_text(mapping)
    sha = hashlib.sha256(body.encode("utf-8")).hexdigest()
    # saved in turn with the ingests that cite mappings (versions are numbered in turn)
    with store.write(("ledger",)) as con:
        found = con.execute(
            "SELECT version, sha256 FROM mappings WHERE name = ? ORDER BY version DESC LIMIT 1",
            [name],
        ).fetchall()
        if found and found[0][1] == sha:
            return SavedMapping(name, found[0][0], sha, mapping)
        version = found[0][0] + 1 if found else 1
        con.execute(
            "INSERT INTO mappings VALUES (?, ?, ?, ?, ?, ?, ?)",
            [name, version, sha, mapping.kind, body, user,
             datetime.now(UTC).replace(tzinfo=None)],
        )  # fmt: skip
    return SavedMapping(name, version, sha, mapping)


def load_named(store, name: str) -> SavedMapping | None:
    """The latest version of the mapping saved as ``name``, checked against its hash."""
    import hashlib

    with store.read() as con:
        found = con.execute(
            "SELECT version, sha256, body FROM mappings WHERE name = ? "
            "ORDER BY version DESC LIMIT 1",
            [name.strip()],
        ).fetchall()
    if not found:
        return None
    version, sha, body = found[0]
    if hashlib.sha256(body.encode("utf-8")).hexdigest() != sha:
        raise FileError(name, N_("the saved mapping does not match its recorded SHA-256"))
    try:
        mapping = UserMapping.model_validate(parse_mapping(body, toml=False) or {})
    except (yaml.YAMLError, _Shape) as exc:
        raise FileError(
            name, N_("saved mapping no longer valid: {problem}"), problem=str(exc)
        ) from exc
    except ValidationError as exc:
        raise FileError(
            name, N_("saved mapping no longer valid: {problem}"), problem=exc.errors()[0]["msg"]
        ) from exc
    return SavedMapping(name.strip(), version, sha, mapping)


def named_mappings(store) -> list[str]:
    with store.read() as con:
        return [
            r[0] for r in con.execute("SELECT DISTINCT name FROM mappings ORDER BY 1").fetchall()
        ]


def resolve_mapping(store, value: str | Path | None) -> tuple[UserMapping, str | None]:
    """A ``--mapping`` value: a mapping file, else a mapping saved under that name.
    Returns the mapping and how the ledger names it."""
    if value is None:
        return UserMapping(), None
    path = Path(value)
    if path.exists():
        return load_mapping(path), str(path)
    saved = load_named(store, str(value))
    if saved is None:
        raise FileError(
            str(value), N_("no such mapping file, and no mapping saved under that name")
        )
    return saved.mapping, saved.label


# --- resolving headers -------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a canonical field comes from in one file."""

    op: str  # column | join | first_of | value | datetime | typed
    columns: tuple[str, ...] = ()
    value: str | None = None

    def describe(self) -> str:
        if self.op == "value":
            return f"constant {self.value!r}"
        if self.op == "column":
            return self.columns[0]
        if self.op == "typed":
            return f"{self.value!r} where {self.columns[0]} has its shape"
        return f"{self.op}({', '.join(self.columns)})"


def _find(headers: dict[str, str], synonyms: tuple[str, ...]) -> str | None:
    for s in synonyms:
        if fold(s) in headers:
            return headers[fold(s)]
    return None


def refuse_custody_snapshot(headers: list[str], source: str) -> None:
    """Raise FileError when the headers are those of custody records, not a visit log: a
    custody snapshot (an admission date beside a discharge date, custody level or charge),
    a daily count of everyone held (the count's date beside a booking number or charge) or
    a booking register (a booking number beside bonds and charges)."""
    folded = {fold(h) for h in headers}
    if folded & {"visitor", "visitante", "checkpoint", "garita"}:
        return
    found = {
        part: [h for h in headers if fold(h) in {fold(x) for x in words}]
        for part, words in CUSTODY_SNAPSHOT.items()
    }
    admission, custody, count, booking = (
        found[k] for k in ("admission", "custody", "count", "booking")
    )
    if count and (custody or booking):
        template = N_(
            "this looks like a daily custody count (everyone held on each day counted, one "
            "row per person per day, with {columns}): a custody snapshot, not a visit log, "
            "and the day of a count is not a visit. Ingest it as an inmate roster with "
            "--kind inmates and a mapping, or give the visit logbooks of the same prisons"
        )
        columns = count + booking + custody[:2]
    elif booking and admission and len(custody) >= 2:
        template = N_(
            "this looks like a booking register (one row per booking or charge, with "
            "{columns}): a custody snapshot or roster of the people held, not a visit log: "
            "a booking is not a visit. Ingest it as an inmate roster with --kind inmates "
            "and a mapping, or give the visit logbooks of the same prisons"
        )
        columns = booking + admission + custody[:2]
    elif admission and custody:
        template = N_(
            "this looks like a custody snapshot or roster (one row per person held, with "
            "{columns}), not a visit log: an admission is not a visit. Ingest it as an "
            "inmate roster with --kind inmates and a mapping, or give the visit logbooks "
            "of the same prisons"
        )
        columns = admission + custody[:3]
    else:
        return
    raise FileError(source, template, columns=", ".join(dict.fromkeys(columns)))


def header_score(cells: list[str | None]) -> int:
    """How well a row reads as a header: the most headers of one record kind it holds
    (its signature headers and its fields' synonyms). A row of values scores 0 or 1."""
    folded = set(headers_by_key([str(c) for c in cells if c not in (None, "")]))
    return max(
        sum(fold(s) in folded for s in spec.signature)
        + sum(any(fold(s) in folded for s in f.synonyms) for f in spec.fields)
        for spec in (SPECS[kind] for kind in KINDS)
    )


def detect_kind(headers: list[str], source: str) -> str:
    """Guess the record kind from the headers; ambiguity is an error that asks for --kind."""
    folded = set(headers_by_key(headers))
    scores = {}
    for kind in KINDS:
        spec = SPECS[kind]
        signature = sum(fold(s) in folded for s in spec.signature)
        known = sum(any(fold(s) in folded for s in f.synonyms) for f in spec.fields)
        scores[kind] = (signature, known)
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (second, runner) = ranked[0], ranked[1]
    if top[0] == 0 and top[1] < 2:
        raise FileError(
            source,
            N_(
                "no recognisable columns for any record kind ({kinds}); headers are: "
                "{headers}; give --kind and a --mapping file"
            ),
            kinds=", ".join(KINDS),
            headers=", ".join(headers[:12]),
        )
    if top == runner:
        raise FileError(
            source,
            N_("the headers fit both '{best}' and '{second}': give --kind"),
            best=best,
            second=second,
        )
    return best


def resolve(
    spec: KindSpec, headers: list[str], mapping: UserMapping, source: str
) -> dict[str, Source]:
    """Decide, for every canonical field, which source columns feed it."""
    by_fold = headers_by_key(headers)
    exact = set(headers)
    out: dict[str, Source] = {}

    def header(name: str, target: str) -> str:
        if name in exact:
            return name
        if fold(name) in by_fold:
            return by_fold[fold(name)]
        raise FileError(
            source,
            N_(
                "mapping for '{field}' names column '{column}', which is not in the file "
                "(headers: {headers})"
            ),
            field=target,
            column=name,
            headers=", ".join(headers[:20]),
        )

    known = {f.name for f in spec.fields}
    for target, src in mapping.columns.items():
        if target not in known:
            raise FileError(
                source,
                N_("mapping names unknown field '{field}' for {kind}; known: {known}"),
                field=target,
                kind=spec.name,
                known=", ".join(sorted(known)),
            )
        if isinstance(src, str):
            out[target] = Source("column", (header(src, target),))
        elif isinstance(src, list):
            out[target] = Source("join", tuple(header(h, target) for h in src))
        elif src.value is not None:
            out[target] = Source("value", value=src.value)
        elif src.join:
            out[target] = Source("join", tuple(header(h, target) for h in src.join))
        elif src.first_of:
            out[target] = Source("first_of", tuple(header(h, target) for h in src.first_of))
        elif src.date:
            cols = (header(src.date, target),) + ((header(src.time, target),) if src.time else ())
            out[target] = Source("datetime", cols)
        elif src.time:
            # A time alone takes the day of the record's own start (an exit on the entry's day)
            if not any(c.target == target and c.fallback_date_of for c in spec.composites):
                raise FileError(
                    source,
                    N_(
                        "mapping for '{field}' gives a time alone ({{ time = \"{column}\" }}), "
                        "and a {kind} record has no other date to place it on: add its date "
                        'column ({{ date = "...", time = "{column}" }})'
                    ),
                    field=target,
                    column=src.time,
                    kind=spec.name,
                )
            out[target] = Source("datetime", ("", header(src.time, target)))
        else:
            raise FileError(
                source,
                N_("mapping for '{field}' names no column (use a header, join, first_of, "
                   "value, or date and time)"),
                field=target,
            )  # fmt: skip
    used = {c for s in out.values() for c in s.columns}
    free = {k: v for k, v in by_fold.items() if v not in used}

    for comp in spec.composites:
        if comp.target in out:
            continue
        date_col = _find(free, comp.date)
        time_col = _find(free, comp.time)
        if time_col and (date_col or comp.fallback_date_of):
            out[comp.target] = Source("datetime", (date_col or "", time_col))
        elif date_col and not _find(free, spec.field(comp.target).synonyms):
            out[comp.target] = Source("datetime", (date_col,))
    for f in spec.fields:
        if f.name in out:
            continue
        col = _find(free, f.synonyms)
        if col is not None:
            out[f.name] = Source("column", (col,))
    if "name" in known and spec.name_parts:
        taken = {c for s in out.values() for c in s.columns}
        parts = [p for p in (_find(free, syn) for syn in spec.name_parts) if p and p not in taken]
        last = _find(free, spec.name_parts[-1])
        if "name" not in out and parts:
            out["name"] = Source("join", tuple(parts))
        elif (
            "name" in out
            and out["name"].op == "column"
            and "name" not in mapping.columns
            and last in parts
        ):
            # "Nombre" beside "Apellido": the name column holds the given names only
            out["name"] = Source("join", (*out["name"].columns, last))

    typed = _typed_document(spec, out, mapping)
    if typed:
        out["id_type"] = Source("typed", out["id_number"].columns, value=typed)
    missing = [f for f in spec.required if f not in out]
    if missing:
        raise FileError(
            source,
            N_(
                "no column for required field(s) {fields} of kind '{kind}' (headers: "
                "{headers}); rename the column or map it in a --mapping file"
            ),
            fields=", ".join(missing),
            kind=spec.name,
            headers=", ".join(headers[:20]),
        )
    return out


def _typed_document(spec: KindSpec, out: dict[str, Source], mapping: UserMapping) -> str | None:
    """The document type a file's document column names in its header ("DUI", "DNI",
    "Pasaporte") when it has no column of document types: a visitors' book with a "DUI"
    column writes DUIs in it (and the DUI checks apply to them). Ingest gives that type to
    the numbers of its shape written there (``schema.DOCUMENT_SHAPES``); a value of another
    shape is another document (a foreign visitor's passport in the DUI column), whose type
    is left unknown."""
    if "id_type" not in {f.name for f in spec.fields} or "id_type" in out:
        return None
    src = out.get("id_number")
    if src is None or src.op != "column":
        return None
    column = fold(src.columns[0])
    return TYPED_DOCUMENTS.get(column) or TYPED_DOCUMENTS.get(plain(column))


def _per_distinct(values: pl.Series, convert: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """``convert`` applied once per distinct value, spread back over the rows.

    Logbooks repeat the same names, roles and document types on most lines, and optional
    columns are often empty throughout: a single distinct value needs no lookup at all.
    """
    distinct = values.unique()
    converted = convert(distinct)
    if len(distinct) == 1:
        return pl.repeat(converted[0], len(values), dtype=converted.dtype, eager=True).alias(
            values.name
        )
    lookup = pl.DataFrame({"raw": distinct, "out": converted})
    return (
        values.to_frame("raw")
        .join(lookup, on="raw", how="left", nulls_equal=True, maintain_order="left")
        .get_column("out")
        .alias(values.name)
    )


def fold_values(values: pl.Series) -> pl.Series:
    """Identity keys of a text column (names, escorts, plates), computed once per distinct
    value: ``fold_expr``, then letters of other scripts transliterated to Latin
    (``anyascii``), so that a name written with look-alike Cyrillic or Greek letters
    ("Оscar" with a Cyrillic О, "Ν/Ι" in Greek) is the same key as the Latin one."""

    def convert(d: pl.Series) -> pl.Series:
        folded = d.to_frame("raw").select(fold_expr(pl.col("raw"))).to_series()
        return folded.map_elements(_latin_key, return_dtype=pl.String, skip_nulls=True)

    return _per_distinct(values, convert)


def _latin_key(text: str) -> str:
    if text.isascii():
        return text
    return " ".join(anyascii(text).upper().split())


def own_values(values: pl.Series, overrides: dict[str, str]) -> pl.Series:
    """A text column's values as a mapping's value table writes them (``[values.facility]``
    "Apanteos" = "APA": a book that writes a prison's short name), looked up by their
    folded form as ``vocab_map`` looks them up; NULL where the table has no entry."""

    def convert(d: pl.Series) -> pl.Series:
        frame = d.to_frame("raw").with_columns(__key=fold_expr(pl.col("raw")).str.to_lowercase())
        return frame.join(
            _value_table(overrides), on="__key", how="left", maintain_order="left"
        ).get_column("__own")

    return _per_distinct(values, convert).alias(values.name)


def _value_table(overrides: dict[str, str]) -> pl.DataFrame:
    """A mapping's value table as a frame to join on: each spelling folded (``__key``),
    its value (``__own``); of several entries folding alike, the first."""
    return (
        pl.DataFrame(
            {"__key": list(overrides), "__own": list(overrides.values())},
            schema={"__key": pl.String, "__own": pl.String},
        )
        .with_columns(fold_expr(pl.col("__key")).str.to_lowercase())
        .unique("__key", keep="first", maintain_order=True)
    )


def vocab_map(values: pl.Series, vocab: str, overrides: dict[str, str]) -> pl.Series:
    """Canonical vocabulary values for a raw column, computed once per distinct value.

    A mapping's own values (``overrides``) are looked up by a join on their folded form,
    so a table of thousands of entries costs in proportion to its size (one condition per
    entry made a chain of thousands that took gigabytes to plan); they win over the
    built-in vocabulary, and the first of several entries folding alike wins."""

    def convert(d: pl.Series) -> pl.Series:
        frame = d.to_frame("raw").with_columns(
            __key=fold_expr(pl.col("raw")).str.to_lowercase(),
            __builtin=vocab_expr(pl.col("raw"), vocab),
        )
        if not overrides:
            return frame.get_column("__builtin")
        raw = pl.col("raw")
        return (
            frame.join(_value_table(overrides), on="__key", how="left", maintain_order="left")
            .select(
                pl.when(raw.is_null() | (raw.str.strip_chars() == ""))
                .then(pl.col("__builtin"))
                .otherwise(pl.coalesce("__own", "__builtin"))
            )
            .to_series()
        )

    return _per_distinct(values, convert).alias(values.name)


def vocab_expr(raw: pl.Expr, vocab: str) -> pl.Expr:
    """Canonical value of the built-in vocabulary for a raw text column (a mapping's own
    values are joined on by ``vocab_map``, not chained here: one condition per entry)."""
    empty_value, unknown_value = VOCAB_DEFAULTS[vocab]
    folded = fold_expr(raw).str.to_lowercase()
    expr = pl.when(raw.is_null() | (raw.str.strip_chars() == "")).then(pl.lit(empty_value))
    entries = [*VOCABULARY_FIRST.get(vocab, {}).items(), *VOCABULARIES[vocab].items()]
    for canonical, words in entries:
        pattern = r"(^|[^a-z0-9])(" + "|".join(re.escape(w) for w in words) + r")($|[^a-z0-9])"
        expr = expr.when(folded.str.contains(pattern)).then(pl.lit(canonical))
    return expr.otherwise(pl.lit(unknown_value))


def name_status(
    name_keys: pl.Series, placeholders: list[str] = (), redactions: list[str] = ()
) -> pl.Series:
    """How each folded name key reads: ``named``, ``blank``, ``placeholder`` or ``redacted``
    (see ``schema.NAME_PLACEHOLDERS`` and ``schema.REDACTION_TOKENS``); computed once per
    distinct value. ``placeholders`` and ``redactions`` are a source's own additions,
    written as they appear (they are folded here)."""
    words = sorted({*NAME_PLACEHOLDERS, *(fold_text(w) for w in placeholders)})
    bare = bare_placeholders(words)
    only_tokens = redaction_pattern(redactions)

    def classify(d: pl.Series) -> pl.Series:
        k = pl.col("k").fill_null("")
        return (
            d.to_frame("k")
            .select(
                pl.when(k.str.contains(only_tokens))
                .then(pl.lit("redacted"))
                .when((k == "") | ~k.str.contains("[A-Z0-9]"))
                .then(pl.lit("blank"))
                .when(
                    k.is_in(words)
                    | (
                        k.str.split(" ").list.first().is_in(words)
                        & k.str.contains(PLACEHOLDER_TAIL)
                    )
                    | k.str.replace_all(NOT_ALNUM, "").is_in(bare)
                )
                .then(pl.lit("placeholder"))
                .otherwise(pl.lit("named"))
            )
            .to_series()
        )

    return _per_distinct(name_keys, classify)


def redaction_pattern(redactions: list[str] = ()) -> str:
    """A regex matching a folded value made only of redaction markers ("(b)(6),(b)(7)(c)"):
    ``schema.REDACTION_TOKENS`` plus a source's own markers."""
    tokens = [*REDACTION_TOKENS, *(re.escape(fold_text(w)) for w in redactions)]
    token = "(" + "|".join(tokens) + ")"
    return rf"^{token}([\s,;/-]+{token})*$"


def withheld(column: str, redactions: list[str] = ()) -> pl.Expr:
    """True where an identifying value is missing or was withheld by the publisher: it
    tells no record from another, so it cannot be part of a record's key."""
    folded = fold_expr(pl.col(column).cast(pl.String)).fill_null("")
    return (folded == "") | folded.str.contains(redaction_pattern(redactions))


def fold_text(text: str) -> str:
    """``fold_expr`` of one Python string."""
    return pl.select(fold_expr(pl.lit(str(text)))).item()
