"""Turn one source file into canonical rows and quarantine, and store them in one transaction."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import stat
import string
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from detector import lazy, ledger, nopandas, sandbox
from detector.dates import (
    PLAUSIBLE_FROM_YEAR,
    end_of_day,
    plausible_until_year,
    timed,
    to_datetime,
    to_time,
)
from detector.errors import FileError
from detector.formats import SUFFIXES, Batch, Table, read_table
from detector.i18n import N_, REASONS
from detector.mapping import (
    Source,
    UserMapping,
    detect_kind,
    fold_expr,
    fold_text,
    fold_values,
    mapping_text,
    name_status,
    own_values,
    refuse_custody_snapshot,
    resolve,
    vocab_map,
    withheld,
)
from detector.parallel import ordered_map
from detector.schema import (
    DOCUMENT_PREFIX,
    DOCUMENT_SHAPES,
    FOLIO_SIDE,
    INGEST_ORDER,
    LONG_STAY_QUARTILE_DAYS,
    MAX_MEDIAN_STAY_DAYS,
    SPECS,
    WEEK_STAY_SHARE,
)
from detector.seal import StreamingSeal, table_seal
from detector.store import QUARANTINE_PLACE, Store, kind_columns, sealed_columns

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
else:
    pl = lazy.module("polars")
    pa = lazy.module("pyarrow")


@dataclass
class IngestResult:
    """What happened to one file; ``reasons`` holds the first quarantine reasons."""

    path: str
    sha256: str = ""
    status: str = "stored"  # stored | duplicate | failed
    kind: str | None = None
    seq: int | None = None
    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    rows_stored: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    reasons: list[tuple[int, str, str]] = field(default_factory=list)
    message: str = ""
    # The message as a catalogue entry and its values, to be said in another language.
    template: str = ""
    values: dict = field(default_factory=dict)
    source: str = ""  # what a failure names (the file, or a sheet of it)
    reading_of: int | None = None  # a second reading: the entry that first read the bytes
    # The file's columns no field was read from (no synonym named them, nor the mapping):
    # said at ingest, so that a column of names or times under a heading the tool does not
    # know is not lost unnoticed.
    unread: list[str] = field(default_factory=list)
    # A workbook's other sheets with rows, which this reading left out ((name, rows its
    # range declares)): said at ingest (a second sheet of a month's visits was skipped
    # without a word).
    unread_sheets: list[tuple[str, int]] = field(default_factory=list)
    # A second reading of stored bytes (``reading_of``): its rows whose record the first
    # reading stored with other values (a mapping corrected since). The first reading is
    # kept (a stored row is never replaced); said at ingest, not passed as duplicates.
    rows_read_otherwise: int = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Plan:
    """What one file will become: its opened table, its kind and each field's source columns."""

    table: Table
    kind: str
    sources: dict[str, Source]


def unread_sheets(path: Path, p: Plan, mapping: UserMapping) -> list[tuple[str, int]]:
    """The sheets of a workbook with rows that this reading of it left out (all but the one
    read: the mapping's ``sheet``, else the first), or none (not a workbook, every sheet
    read)."""
    if p.table.format != "xlsx" or mapping.sheet == sandbox.ALL_SHEETS:
        return []
    sheets = sandbox.workbook_sheets(path)
    read = mapping.sheet or (sheets[0][0] if sheets else None)
    # (a sheet of one row holds a header at most)
    return [(name, rows) for name, rows in sheets if name != read and rows > 1]


def unread_columns(p: Plan) -> list[str]:
    """The columns of ``p``'s file that feed no field, in the file's order (blank headers
    aside: a spreadsheet's empty trailing columns)."""
    used = {c for source in p.sources.values() for c in source.columns}
    return [c for c in p.table.columns if c not in used and c.strip()]


@dataclass
class Upload:
    """One file on its way in, carried through the ingest: the file as the user named it
    (its name is what evidence cites), how to read it, who sent it, its SHA-256 once
    hashed, the facilities its rows are checked against, and what became of it."""

    path: Path
    mapping: UserMapping = field(default_factory=UserMapping)
    result: IngestResult = field(default_factory=lambda: IngestResult(path=""))
    kind: str | None = None  # as asked for (None: the mapping's, else detected)
    user: str | None = None
    mapping_name: str | None = None
    on_rows: Callable[[int], None] | None = None
    sha: str = ""
    size: int = 0  # of the bytes hashed (the evidence copy), not of the path now
    # The facilities list: each facility's code and name, folded, -> its code.
    facilities: dict[str, str] = field(default_factory=dict)
    reading_of: int | None = None  # the ledger entry that first read these bytes otherwise

    @property
    def reading(self) -> str:
        """How the file is read: the kind asked for and the mapping's content, hashed. The
        same bytes read the same way are already uploaded; read another way, a new entry."""
        how = {"kind": self.kind or self.mapping.kind, "mapping": mapping_text(self.mapping)}
        return hashlib.sha256(json.dumps(how, sort_keys=True).encode("utf-8")).hexdigest()

    @property
    def name(self) -> str:
        return shown_name(self.path.name)


def shown_name(name: str) -> str:
    """A file name (or path) as messages, the ledger and the evidence show it.

    Names come as the file system holds them: bytes that are not UTF-8 (``año`` written
    in latin-1 by older Windows tools arrives as a surrogate escape, which DuckDB and
    UTF-8 output refuse) are shown as ``\\xf1``, without guessing their encoding; control
    characters (a line break inside a name) as ``\\x0a``. A name that is valid UTF-8
    without control characters is shown unchanged."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate no file system gave
        raw = name.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    return text if text.isprintable() else "".join(map(_shown_char, text))


def _shown_char(c: str) -> str:
    if unicodedata.category(c) not in ("Cc", "Zl", "Zp"):
        return c
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def _blank(e: pl.Expr) -> pl.Expr:
    return e.is_null() | (e.str.strip_chars() == "")


def _text(e: pl.Expr) -> pl.Expr:
    return pl.when(_blank(e)).then(None).otherwise(e)


def _tidy(e: pl.Expr) -> pl.Expr:
    """Text as a value: spaces around it dropped, runs of spaces inside (tabs and
    non-breaking spaces too) one space, a cell of spaces alone empty. The file in evidence
    keeps every byte, and the ``*_raw`` columns the text as written."""
    t = e.str.replace_all(r"\s{2,}|[^\S ]", " ").str.strip_chars()
    return pl.when(t == "").then(None).otherwise(t)


def _dui_shaped(number: pl.Expr) -> pl.Expr:
    """Whether a number written in a DUI column is a DUI, as clerks and spreadsheets write
    them: eight digits, a dash and the check digit, with spaces or dots inside ("0123
    4567-8", "01.234.567-8"), a letter O for a zero, the nine digits run together, a
    float's ".0" (an export of a number cell), or the leading zero Excel drops
    ("1234567-8"). Eight digits with no dash may be a DUI that lost its zero or another
    country's document (a DNI): a DUI only when its check digit holds once the zero is put
    back, else its type is left unknown (not judged as a bad DUI)."""
    core = (
        number.str.strip_chars()
        .str.to_uppercase()
        .str.replace(r"\.0+$", "")
        .str.replace_all(r"[\s.]", "")
        .str.replace_all("O", "0")
    )
    digits = core.str.replace("-", "").str.zfill(9)
    weighted = pl.sum_horizontal(
        digits.str.slice(i, 1).cast(pl.Int64, strict=False) * (9 - i) for i in range(8)
    )
    holds = (10 - weighted % 10) % 10 == digits.str.slice(8, 1).cast(pl.Int64, strict=False)
    return (
        core.str.contains(r"^\d{7,8}-\d$")
        | core.str.contains(r"^\d{9}$")
        | (core.str.contains(r"^\d{8}$") & holds)
    )


def _source_expr(src: Source | None) -> pl.Expr:
    if src is None:
        return pl.lit(None, dtype=pl.String)
    if src.op == "value":
        return pl.lit(src.value, dtype=pl.String)
    if src.op == "typed":  # the type a document column's header names, where it fits
        number = pl.col(src.columns[0])
        fits = (
            _dui_shaped(number)
            if src.value == "DUI"
            else number.str.contains(DOCUMENT_SHAPES[src.value])
        )
        return pl.when(fits.fill_null(False)).then(pl.lit(src.value, dtype=pl.String))
    cols = [_text(pl.col(c)) for c in src.columns if c]
    if src.op == "column":
        return pl.col(src.columns[0])
    if src.op == "first_of":
        return pl.coalesce(cols)
    joined = pl.concat_str(cols, separator=" ", ignore_nulls=True).str.replace_all(r"\s+", " ")
    return _text(joined.str.strip_chars())


class _Checks:
    """Row-level problems, collected as (field, code, condition, message, values): the
    message is the reason's English sentence (``detector.i18n.REASONS``) filled with the
    row's values, which are kept beside it (as JSON) to say it in another language."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, pl.Expr, pl.Expr, pl.Expr]] = []

    def add(self, field_name: str, code: str, cond: pl.Expr, **values: pl.Expr | str) -> None:
        exprs = {k: v if isinstance(v, pl.Expr) else pl.lit(v) for k, v in values.items()}
        self.items.append(
            (
                field_name,
                code,
                cond.fill_null(False),
                _reason_expr(REASONS[code], field_name, exprs),
                _values_json(exprs),
            )
        )


def _reason_expr(template: str, field_name: str, values: dict[str, pl.Expr]) -> pl.Expr:
    """A reason's sentence per row: ``{field}`` is the field's name, the other
    placeholders the row's values."""
    fmt, args = [], []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        fmt.append(literal)
        if name == "field":
            fmt.append(field_name)
        elif name is not None:
            fmt.append("{}")
            args.append(values[name])
    return pl.format("".join(fmt), *args) if args else pl.lit("".join(fmt))


def _values_json(values: dict[str, pl.Expr]) -> pl.Expr:
    if not values:
        return pl.lit("{}")
    return pl.struct(**{k: v.cast(pl.String) for k, v in values.items()}).struct.json_encode()


def canonical(batch: Batch, p: Plan, up: Upload) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical rows and quarantine rows for one batch of a source.

    Returns ``(good, quarantine)``: ``good`` has exactly the kind's table columns;
    ``quarantine`` has source_row, field, reason_code, reason, raw (the row as JSON) and
    reason_values (the values the reason quotes, as JSON). The steps: the source's columns per field (``_fields``), dates parsed
    (``_read_dates``), the other fields typed (``_typed``) and the dates joined with
    their checks (``_dated``), derived columns and the record key, checks of the whole
    row (``_row_checks``), then the split into good rows and quarantine (``_split``).
    """
    spec = SPECS[p.kind]
    df = (
        batch.frame.with_columns(batch.rows.alias("__row__"))
        if batch.rows is not None
        else batch.frame.with_row_index("__row__", offset=batch.first_row + batch.offset)
    )
    checks = _Checks()
    raw = _fields(df, spec, p.sources)
    dates = _read_dates(df, raw, spec, p.sources, up.mapping)
    frame = _typed(raw, spec, up.mapping, checks).with_columns(
        pl.Series("__row__", df.get_column("__row__"))
    )
    frame = _dated(frame, spec, dates, up.mapping.date_order, checks)
    named = spec.name_status_of in p.sources if spec.name_status_of else True
    frame = _derive(frame, p.kind, checks, up.facilities, up.mapping, up.name, named)
    frame = frame.with_columns(
        _record_key(frame, p.kind, up.sha, up.mapping.redactions).alias("record_key")
    )
    original = [c for c in batch.frame.columns if c != "__broken__"]
    frame = _row_checks(frame, df, batch, original, checks)
    return _split(frame, df, batch, original, checks, p.kind, up)


def _fields(df: pl.DataFrame, spec, sources: dict[str, Source]) -> pl.DataFrame:
    """Each field's text as the source gives it (a date built from two columns aside);
    text tidied (``_tidy``), while dates and vocabularies keep theirs as written for their
    ``*_raw`` columns, and whole numbers are trimmed as they are read."""
    raw = df.select(
        _source_expr(sources.get(f.name)).alias(f.name)
        for f in spec.fields
        if not (sources.get(f.name) and sources[f.name].op == "datetime")
    )
    # Most exports are tidy already: a column is rewritten only when some cell needs it.
    # (whole numbers are read through their own trim: see ``_typed``)
    text = [f.name for f in spec.fields if f.type == "text" and f.name in raw.columns]
    untidy = raw.select(_untidy(pl.col(text)).any()).row(0) if text else ()
    raw = raw.with_columns(
        _tidy(pl.col(c)).alias(c) for c, bad in zip(text, untidy, strict=True) if bad
    )
    return _documents(raw, spec)


# Spaces other than " " that exports leave in cells (tabs, line ends, non-breaking spaces).
_ODD_SPACES = ["  ", "\t", "\r", "\n", "\u00a0", "\u2007", "\u202f", "\u3000"]


def _untidy(e: pl.Expr) -> pl.Expr:
    """A cell with a space around it, a run of spaces or an odd space: literal searches,
    cheaper than a regular expression over every cell of a tidy export."""
    return e.str.starts_with(" ") | e.str.ends_with(" ") | e.str.contains_any(_ODD_SPACES)


def _documents(raw: pl.DataFrame, spec) -> pl.DataFrame:
    """A document written with its type in one cell ("DNI 09272448", "Pasaporte: X123"):
    the number in ``id_number`` and, where no type is written apart, the type's word in
    ``id_type`` (kept in ``id_type_raw``)."""
    if not spec.has("id_number", "id_type") or "id_number" not in raw.columns:
        return raw
    numbers = raw.get_column("id_number")
    if not numbers.str.contains(r"[A-Za-z]").any():  # digits alone, as most books write them
        return raw
    found = numbers.str.extract_groups(DOCUMENT_PREFIX)
    if found.struct.field("1").is_null().all():
        return raw
    word, number = found.struct.field("1"), found.struct.field("2").str.strip_chars()
    return raw.with_columns(
        id_number=pl.when(word.is_not_null()).then(number).otherwise(pl.col("id_number")),
        id_type=pl.when(_blank(pl.col("id_type")) & word.is_not_null())
        .then(word)
        .otherwise(pl.col("id_type")),
    )


def _read_dates(
    df: pl.DataFrame, raw: pl.DataFrame, spec, sources: dict[str, Source], mapping: UserMapping
) -> dict[str, pl.Series]:
    """Each date and datetime field parsed (``name``), with its text as written
    (``name_raw``) and, for an end written as a time alone (an exit "21:15", with or without
    a date column of its own), that time (``name__time``): ``_dated`` places it on the day
    of the record's start. A date beside a blank time is the day alone for a required
    field (an entry known to the day); for an optional one (an exit) it is no value: the
    date alone says nothing of when the visitor left."""
    order, years, zone = mapping.date_order, mapping.two_digit_years_from, mapping.timezone
    parsed: dict[str, pl.Series] = {}
    for f in spec.fields:
        if f.type not in ("datetime", "date"):
            continue
        src = sources.get(f.name)
        placeable = _fallback_of(spec, f.name) is not None
        time_only: pl.Series | None = None
        if src is not None and src.op == "datetime":
            date_col, time_col = (*src.columns, "")[:2]
            raw_s = df.select(
                _text(
                    pl.concat_str(
                        [pl.col(c) for c in (date_col, time_col) if c],
                        separator=" ",
                        ignore_nulls=True,
                    )
                )
            ).to_series()
            t = to_time(df.get_column(time_col)) if time_col else None
            if date_col:
                # a date column may hold the time too ("2019-03-01 09:00" under "Fecha"):
                # kept where no time column gives one (it was cut to the day, and the
                # entry judged at 00:00 as a time to the minute)
                whole = to_datetime(df.get_column(date_col), order, years_from=years, timezone=zone)
                day = whole.dt.date()
                own_time = df.select(timed(pl.col(date_col))).to_series()
                parts = pl.DataFrame({"d": day, "whole": whole, "own_time": own_time})
                if time_col:
                    parts = parts.with_columns(
                        t=t,
                        no_time=df.select(_blank(pl.col(time_col))).to_series(),
                        # "24:00" on a day is 00:00 of the next
                        next_day=end_of_day(df.get_column(time_col)),
                    )
                else:
                    parts = parts.with_columns(
                        t=pl.lit(None, pl.Time), no_time=pl.lit(True), next_day=pl.lit(False)
                    )
                # A date with no time still places a required record in its day.
                value = parts.select(
                    pl.when(pl.col("t").is_not_null() & pl.col("next_day"))
                    .then(pl.col("d").dt.combine(pl.col("t")) + pl.duration(days=1))
                    .when(pl.col("t").is_not_null())
                    .then(pl.col("d").dt.combine(pl.col("t")))
                    .when(pl.col("no_time") & (pl.lit(f.required or not time_col) | "own_time"))
                    .then(pl.col("whole"))
                ).to_series()
                if t is not None:  # the time column read: a time of day, however written
                    parsed[f"{f.name}__clock"] = t.is_not_null()
                if placeable and t is not None:  # an exit time with its own date left blank
                    no_day = df.select(_blank(pl.col(date_col)).fill_null(True)).to_series()
                    time_only = pl.select(pl.when(pl.lit(no_day)).then(pl.lit(t))).to_series()
            else:
                value = pl.Series([None] * df.height, dtype=pl.Datetime("us"))
                time_only = t
        else:
            raw_s = raw.get_column(f.name)
            value = to_datetime(raw_s, order, years_from=years, timezone=zone)
            if placeable:  # an exit column holding a time alone ("21:15")
                unread = value.is_null() & raw_s.is_not_null()
                if unread.any():
                    time_only = pl.select(
                        pl.when(pl.lit(unread)).then(pl.lit(to_time(raw_s)))
                    ).to_series()
        if f.type == "date":
            value = value.dt.date()
        parsed[f.name] = value
        parsed[f"{f.name}_raw"] = raw_s
        if time_only is not None and time_only.is_not_null().any():
            parsed[f"{f.name}__time"] = time_only
    return parsed


def _fallback_of(spec, name: str) -> str | None:
    """The field whose day a time alone of ``name`` is placed on (an exit: the entry)."""
    return next((c.fallback_date_of for c in spec.composites if c.target == name), None)


# Whole numbers that may be written as a side of a folio (``schema.FOLIO_SIDE``).
_PAGES = ("page", "first_page", "last_page")


def _typed(raw: pl.DataFrame, spec, mapping: UserMapping, checks: _Checks) -> pl.DataFrame:
    """The fields other than dates typed: whole numbers (with their text kept for the
    message), vocabularies mapped (with the original in ``name_raw``), required ones
    checked."""
    out: dict[str, pl.Expr] = {}
    for f in spec.fields:
        if f.type in ("datetime", "date"):
            continue
        e = pl.col(f.name)
        if f.type == "int":
            # Plain digits cast directly; only what that leaves unread is trimmed and
            # stripped of a spreadsheet's ".0" (a regex pass over every row costs more).
            direct = e.cast(pl.Int64, strict=False)
            unread = direct.is_null() & e.is_not_null()
            number = pl.when(unread).then(
                e.str.strip_chars().str.replace(r"\.0+$", "").cast(pl.Int64, strict=False)
            )
            verso = pl.lit(None, dtype=pl.String)
            # "12 vta.": the back of folio 12 (a page that is not plain digits is rare: its
            # text is searched only then)
            if f.name in _PAGES and raw.select(unread.any()).item():
                side = e.str.extract_groups(FOLIO_SIDE)
                number = number.fill_null(
                    pl.when(unread).then(side.struct.field("1").cast(pl.Int64, strict=False))
                )
                verso = pl.when(unread & side.struct.field("2").is_not_null()).then(pl.lit("verso"))
            if f.name == "page" and "page_side" in spec.derived:
                out["page_side"] = verso
            out[f.name] = direct.fill_null(number)
            out[f"{f.name}__txt"] = e
            txt = pl.col(f"{f.name}__txt")
            checks.add(f.name, "invalid_number", ~_blank(txt) & pl.col(f.name).is_null(), value=txt)
            checks.add(f.name, "negative_number", pl.col(f.name) < 0, value=txt)
        elif f.type == "vocab":
            out[f"{f.name}_raw"] = e
            out[f.name] = vocab_map(raw.get_column(f.name), f.vocab, mapping.values.get(f.name, {}))
        elif f.none_words:  # "Pendiente" in an approval column is no approval
            out[f"{f.name}_raw"] = e
            out[f.name] = pl.when(_says_none(e, f.none_words)).then(None).otherwise(e)
        elif f.name in mapping.values:  # the mapping's own spellings ("Apanteos" = "APA")
            own = own_values(raw.get_column(f.name), mapping.values[f.name])
            out[f.name] = pl.coalesce(pl.lit(own), e)
        else:
            out[f.name] = e
        if f.required:  # judged on the text as read (a number's or a vocabulary's too)
            written = {"int": f"{f.name}__txt", "vocab": f"{f.name}_raw"}.get(f.type, f.name)
            checks.add(f.name, "missing_required", _blank(pl.col(written)))
    return raw.with_columns(**out)


def _says_none(e: pl.Expr, words: tuple[str, ...]) -> pl.Expr:
    """True where a text says there is nothing: one of ``words`` (the whole value, folded)
    or punctuation alone."""
    folded = fold_expr(e).str.to_lowercase().str.strip_chars(" .")
    return folded.is_in(list(words)) | ~e.str.contains(r"[\p{L}\p{N}]")


def _dated(
    frame: pl.DataFrame, spec, parsed: dict[str, pl.Series], order: str, checks: _Checks
) -> pl.DataFrame:
    """The parsed dates joined to the frame with their original text, and their checks.

    A time alone takes the day of the record's start (the next day when it would come
    before it). A required date that is missing, unreadable or of an implausible year sends
    the row to the quarantine; an optional one (an exit, a return) that cannot be read or
    is implausible is left empty, the row stored with the text as written in ``*_raw``
    (the data-quality rule reports such values once per file)."""
    until = plausible_until_year()
    for f in spec.fields:
        if f.type not in ("datetime", "date"):
            continue
        value = parsed[f.name]
        unplaced = pl.Series([False] * len(value))
        t = parsed.get(f"{f.name}__time")
        if t is not None:
            start = parsed[_fallback_of(spec, f.name)]
            value = value.fill_null(_on_entry_day(start, t))
            # An unreadable start is reported there, not again as this field.
            unplaced = (start.is_null() & t.is_not_null()).fill_null(False)
        raw = parsed[f"{f.name}_raw"]
        if f"{f.name}__clock" in parsed:
            frame = frame.with_columns(parsed[f"{f.name}__clock"].alias(f"__clock_{f.name}"))
        year = value.dt.year()
        implausible = ((year < PLAUSIBLE_FROM_YEAR) | (year > until)).fill_null(False)
        if not f.required:  # left empty; the text stays in *_raw
            if implausible.any():
                value = pl.select(
                    pl.when(pl.lit(implausible)).then(None).otherwise(pl.lit(value))
                ).to_series()
            frame = frame.with_columns(raw.alias(f"{f.name}_raw"), value.alias(f.name))
            continue
        failed = value.is_null() & ~_blank_series(raw) & ~unplaced
        frame = frame.with_columns(
            raw.alias(f"{f.name}_raw"),
            value.alias(f.name),
            failed.alias(f"__failed_{f.name}"),
            implausible.alias(f"__implausible_{f.name}"),
        )
        r = pl.col(f"{f.name}_raw")
        checks.add(f.name, "missing_required", _blank(r))
        checks.add(f.name, "unparseable_date", pl.col(f"__failed_{f.name}"), value=r, order=order)
        checks.add(
            f.name,
            "implausible_date",
            pl.col(f"__implausible_{f.name}"),
            value=r,
            year=pl.col(f.name).dt.year(),
            first=str(PLAUSIBLE_FROM_YEAR),
            last=str(until),
        )
    return frame


def _blank_series(values: pl.Series) -> pl.Series:
    return values.to_frame("v").select(_blank(pl.col("v")).fill_null(True)).to_series()


def _on_entry_day(entered: pl.Series, t: pl.Series) -> pl.Series:
    """A time of exit placed on the day of the entry, or the next day if it would be earlier."""
    return (
        pl.DataFrame({"b": entered, "t": t})
        .select(
            x=pl.when(pl.col("b").is_not_null() & pl.col("t").is_not_null()).then(
                pl.col("b").dt.date().dt.combine(pl.col("t"))
            ),
            b=pl.col("b"),
        )
        .select(
            pl.when(pl.col("x") < pl.col("b"))
            .then(pl.col("x") + pl.duration(days=1))
            .otherwise(pl.col("x"))
        )
        .to_series()
    )


def _row_checks(
    frame: pl.DataFrame, df: pl.DataFrame, batch: Batch, original: list[str], checks: _Checks
) -> pl.DataFrame:
    """Checks of the whole row: a NUL byte anywhere (a damaged file), a record repeated
    within the file."""
    if original and not batch.nul_free:
        nul = df.select(
            pl.any_horizontal(pl.col(original).str.contains("\x00", literal=True).fill_null(False))
        ).to_series()
        frame = frame.with_columns(nul.alias("__nul__"))
        checks.add("*", "nul_byte", pl.col("__nul__"))
    if frame.get_column("record_key").n_unique() < frame.height:  # cheaper than the check
        # (one id in two books is two records: each book numbers its lines from 1, and the
        # store keys the later book's by it too: ``_keyed_by_book``)
        same = ["record_key", "logbook"] if "logbook" in frame.columns else ["record_key"]
        checks.add(
            "record_key",
            "duplicate_in_file",
            ~pl.struct(same).is_first_distinct(),
            key=pl.col("record_key"),
        )
    return frame


def _place_types() -> dict[str, pl.DataType]:
    """The ``store.QUARANTINE_PLACE`` columns as a frame holds them."""
    frame_type = {"VARCHAR": pl.String, "BIGINT": pl.Int64}
    return {name: frame_type[sql] for name, sql in QUARANTINE_PLACE.items()}


def quarantine_schema() -> dict[str, pl.DataType]:
    """The columns of a file's quarantined rows."""
    text = pl.String
    return {"source_row": pl.Int64, "field": text, "reason_code": text, "reason": text,
            "raw": text, "reason_values": text, **_place_types()}  # fmt: skip


_PLACE = ", ".join(QUARANTINE_PLACE)


def _place(frame: pl.DataFrame) -> list[pl.Series]:
    """The ``store.QUARANTINE_PLACE`` columns of rows of a kind's typed frame."""
    return [
        frame.get_column(name).cast(dtype, strict=False).alias(name)
        if name in frame.columns
        else pl.Series(name, [None] * frame.height, dtype=dtype)
        for name, dtype in _place_types().items()
    ]


def _split(
    frame: pl.DataFrame,
    df: pl.DataFrame,
    batch: Batch,
    original: list[str],
    checks: _Checks,
    kind: str,
    up: Upload,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows that pass every check, as the kind's table columns; and one quarantine row per
    failed check, with its reason and the source row as JSON (lines the reader could not
    split are reported once, for their shape)."""
    conds = frame.select(*(item[2].alias(f"__c{i}") for i, item in enumerate(checks.items)))
    broken = (
        df.get_column("__broken__")
        if "__broken__" in df.columns
        else pl.Series([False] * df.height)
    )
    # A line that could not be split is reported once, for its shape, not per empty field.
    conds = conds.select(pl.all() & ~broken)
    bad = conds.select(pl.any_horizontal(pl.all())).to_series() | broken if checks.items else broken
    frame = frame.with_columns(
        pl.lit(up.sha).alias("source_sha256"),
        pl.lit(up.name).alias("source_name"),
        pl.col("__row__").cast(pl.Int64).alias("source_row"),
        pl.lit(None, pl.Int64).alias("upload_seq"),
    )
    good = frame.filter(~bad).select(list(kind_columns(kind)))
    parts = _failed_checks(frame, df, original, checks, conds)
    if batch.broken:  # lines the reader could not split into the header's columns
        rows_, counts, texts = zip(*batch.broken, strict=True)
        template = REASONS["wrong_field_count"]
        parts.append(
            pl.DataFrame(
                {
                    "source_row": pl.Series(rows_, dtype=pl.Int64),
                    "field": "*",
                    "reason_code": "wrong_field_count",
                    "reason": [template.format(**c) for c in counts],
                    "raw": [json.dumps({"line": t}, ensure_ascii=False) for t in texts],
                    "reason_values": [json.dumps(c) for c in counts],
                    **{
                        n: pl.Series([None] * len(rows_), dtype=t)
                        for n, t in _place_types().items()
                    },
                }
            )
        )
    quarantine = (
        pl.concat(parts, how="vertical_relaxed").sort("source_row")
        if parts
        else pl.DataFrame(schema=quarantine_schema())
    )
    return good, quarantine


def _failed_checks(
    frame: pl.DataFrame,
    df: pl.DataFrame,
    original: list[str],
    checks: _Checks,
    conds: pl.DataFrame,
) -> list[pl.DataFrame]:
    """One quarantine frame per check that failed somewhere. Messages and raw rows are built
    for the failing rows only: building them for all is the slow part."""
    parts = []
    for i, (fname, code, _, msg, values) in enumerate(checks.items):
        mask = conds.get_column(f"__c{i}")
        if not mask.any():
            continue
        # with_columns broadcasts a constant message to every failing row (select would not).
        failing = frame.filter(mask).with_columns(
            msg.alias("__reason__"), values.alias("__values__")
        )
        raw_rows = df.filter(mask)
        parts.append(
            pl.DataFrame(
                {
                    "source_row": failing.get_column("__row__").cast(pl.Int64),
                    "field": fname,
                    "reason_code": code,
                    "reason": failing.get_column("__reason__"),
                    "raw": (
                        raw_rows.select(pl.struct(original).struct.json_encode()).to_series()
                        if original
                        else ""
                    ),
                    "reason_values": failing.get_column("__values__"),
                }
            ).with_columns(_place(failing))
        )
    return parts


def listed_facilities(rows: list[tuple[str, str | None]]) -> dict[str, str]:
    """The facilities list's (code, name) rows as folded code or name -> code: a log may
    write a facility by its code or by its name as the list writes them (case, accents and
    spacing aside). A code wins over another facility's name."""
    by_name = {fold_text(name): code for code, name in rows if code and name}
    return by_name | {fold_text(code): code for code, _ in rows if code}


def _derive(
    frame: pl.DataFrame,
    kind: str,
    checks: _Checks,
    known_facilities: dict[str, str] | None,
    mapping: UserMapping,
    batch_name: str,
    named: bool = True,
) -> pl.DataFrame:
    """The columns and checks the kind's declaration (``schema.SPECS``) asks for: names and
    plates folded into keys, how a name reads (``not_recorded`` on every row when the file
    has no name column: ``named`` False), whether a time is known to the minute, defaults,
    facilities checked against the list, dates that must come in order (at day precision
    when either is written without a time: a same-day return written as a date is no
    return before the transfer)."""
    spec = SPECS[kind]
    if known_facilities:
        known = sorted(set(known_facilities.values()))
        for col in spec.facility_fields:
            # written by its code or its name: stored by its code
            listed = fold_expr(pl.col(col)).replace_strict(known_facilities, default=None)
            frame = frame.with_columns(pl.coalesce(listed, pl.col(col)).alias(col))
            checks.add(
                col,
                "unknown_facility",
                pl.col(col).is_not_null() & ~pl.col(col).is_in(known),
                value=pl.col(col),
                known=pl.lit(", ".join(known[:12]) + (", …" if len(known) > 12 else "")),
            )
    derived = [pl.col(f).fill_null(v).alias(f) for f, v in spec.defaults.items()]
    # Each folded key once: a name's key also says how the name reads, and who a row is.
    folded = {
        key: fold_values(frame.get_column(source).fill_null("") if key == "name_key" else frame.get_column(source))
        for key, source in spec.folded.items()
    }  # fmt: skip
    derived += [values.alias(key) for key, values in folded.items()]
    if spec.name_status_of:
        key = next((k for k, s in spec.folded.items() if s == spec.name_status_of), None)
        names = (
            folded[key].fill_null("")
            if key
            else fold_values(frame.get_column(spec.name_status_of).fill_null(""))
        )
        status = (
            name_status(names, mapping.placeholders, mapping.redactions)
            if named
            else pl.repeat("not_recorded", frame.height, dtype=pl.String, eager=True)
        )
        derived.append(status.alias("name_status"))
    for key, source in spec.plates.items():
        derived.append(
            pl.col(source).str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "").alias(key)
        )

    def present(source: str) -> pl.Expr | pl.Series:
        if source in folded:
            return folded[source].replace("", None)
        return pl.col(source).cast(pl.String).str.strip_chars().replace("", None)

    for key, sources in spec.person.items():
        derived.append(
            pl.coalesce(
                *(
                    pl.concat_str([present(p) for p in s], separator="|")  # null if one is
                    if isinstance(s, tuple)
                    else present(s)
                    for s in sources
                )
            ).alias(key)
        )
    for key, source in spec.precision.items():
        told = timed(pl.col(f"{source}_raw"))
        if f"__clock_{source}" in frame.columns:  # read from a time column of its own
            told = told | pl.col(f"__clock_{source}")
        derived.append(pl.when(told).then(pl.lit("minute")).otherwise(pl.lit("day")).alias(key))
    if derived:
        frame = frame.with_columns(derived)
    if spec.stays:
        _refuse_long_stays(frame, batch_name, *spec.stays)
    for order in spec.orders:
        if order.stored:  # reported by a rule from the stored row
            continue
        frame = frame.with_columns(_before(frame, spec, order.later, order.earlier))
        checks.add(
            order.later,
            order.code,
            pl.col(f"__before_{order.later}"),
            value=_shown(frame, order.later),
            earlier=_shown(frame, order.earlier),
        )
    return frame


def _before(frame: pl.DataFrame, spec, later: str, earlier: str) -> pl.Series:
    """Where ``later`` comes before ``earlier``: for two datetimes, at day precision when
    either is written without a time (judged only on the few rows that look out of order)."""
    before = frame.select((pl.col(later) < pl.col(earlier)).fill_null(False)).to_series()
    if spec.field(later).type == spec.field(earlier).type == "datetime" and before.any():
        dated = ~timed(pl.col(f"{later}_raw")) | ~timed(pl.col(f"{earlier}_raw"))
        same_day = pl.col(later).dt.date() >= pl.col(earlier).dt.date()
        before = frame.select(pl.lit(before) & ~(dated & same_day)).to_series()
    return before.alias(f"__before_{later}")


def _shown(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A value as a reason quotes it: a time to the minute, anything else as it is."""
    if isinstance(frame.schema[column], pl.Datetime):
        return pl.col(column).dt.to_string("%Y-%m-%d %H:%M")
    return pl.col(column)


def _refuse_long_stays(frame: pl.DataFrame, source: str, entered: str, exited: str) -> None:
    """Visits last hours; rows whose stays run to days are custody records (a booking or an
    admission and a release), whatever the mapping called them. Judged on the shape of the
    stays, not their middle alone: jails differ (a county whose median booking lasts a day
    still holds a quarter of its people for days and one in ten for weeks)."""
    stays = frame.select(
        ((pl.col(exited) - pl.col(entered)).dt.total_hours() / 24).alias("d")
    ).get_column("d")
    stays = stays.drop_nulls()
    if len(stays) < 20:
        return
    ranked = stays.sort()  # once, for the median and the upper quartile
    median, upper = ranked.median(), ranked[int(0.75 * (len(ranked) - 1) + 0.5)]
    over_week = (stays > 7).mean()
    if median > MAX_MEDIAN_STAY_DAYS:
        raise FileError(
            source,
            N_(
                "the median stay is {days} days: these rows are custody records "
                "(admission and discharge), not visits; ingest them as an inmate roster "
                "(--kind inmates) or check which columns the mapping names as entry and exit"
            ),
            days=f"{median:,.0f}",
        )
    if upper > LONG_STAY_QUARTILE_DAYS or over_week >= WEEK_STAY_SHARE:
        raise FileError(
            source,
            N_(
                "stays of days to weeks: a quarter of the rows stay {upper} days or more and "
                "{week} stay over a week (median {hours} hours), where visits last hours: "
                "these rows are custody records (a booking and a release), not visits; "
                "ingest them as an inmate roster (--kind inmates) or check which columns "
                "the mapping names as entry and exit"
            ),
            upper=f"{upper:,.1f}",
            week=f"{over_week:.0%}",
            hours=f"{median * 24:,.0f}",
        )


def _record_key(frame: pl.DataFrame, kind: str, sha: str, redactions: list[str] = ()) -> pl.Expr:
    """A stable key per record: the source's own id where it gives one (with the fields
    the kind declares make it unique), else its natural key, else its place in the file.

    A natural key whose person is withheld ("(b)(6)" for every inmate of a FOIA release)
    tells no row from another: such rows are keyed by their place in the file, so two
    placements on one day are two records, not a duplicate."""
    spec = SPECS[kind]
    position = pl.concat_str([pl.lit(sha[:16] + ":"), pl.col("__row__").cast(pl.String)])
    if spec.natural_key:
        parts = [pl.col(c).cast(pl.String).fill_null("") for c in spec.natural_key]
        fallback = pl.concat_str([pl.lit(spec.key_prefix + "|"), *parts], separator="|")
        if spec.person_key:
            fallback = (
                pl.when(withheld(spec.person_key, redactions)).then(position).otherwise(fallback)
            )
    else:
        fallback = position
    if "record_id" not in {f.name for f in spec.fields}:
        return fallback
    own = pl.concat_str(
        [pl.lit(spec.key_prefix), *(pl.col(c).cast(pl.String) for c in spec.own_key)],
        separator="|",
    )
    # Both branches of a when/then are computed for every row: pick one when the batch
    # allows (usually every row has its id, or none has).
    blank = frame.select(
        _blank(pl.col("record_id")).any().alias("some"),
        _blank(pl.col("record_id")).all().alias("all"),
    ).row(0)
    if not blank[0]:
        return own
    if blank[1]:
        return fallback
    return pl.when(_blank(pl.col("record_id"))).then(fallback).otherwise(own)


def plan(path: Path, kind: str | None, mapping: UserMapping, name: str | None = None) -> Plan:
    """Open a file, decide its kind and map its headers; raises FileError.

    ``name`` is the original file name when ``path`` is its evidence copy.
    """
    name = name or shown_name(path.name)
    table = read_table(
        path, sheet=mapping.sheet, name=name, names=None if mapping.header else mapping.names
    )
    kind = kind or mapping.kind
    if kind in (None, "visits"):
        refuse_custody_snapshot(table.columns, name)
    kind = kind or detect_kind(table.columns, name)
    if kind not in SPECS:
        raise FileError(
            name, N_("unknown kind '{kind}'; use one of {kinds}"), kind=kind, kinds=", ".join(SPECS)
        )
    _value_tables_fit(SPECS[kind], mapping, name)
    return Plan(table, kind, resolve(SPECS[kind], table.columns, mapping, name))


def _value_tables_fit(spec, mapping: UserMapping, name: str) -> None:
    """Refuse a mapping's value table (``[values.FIELD]``) of a field that takes none: not
    a text field of the kind (a table for a date, a number or another kind's field was
    left unused without a word)."""
    takes = {f.name for f in spec.fields if f.type in ("text", "vocab")}
    for field_name in mapping.values:
        if field_name not in takes:
            raise FileError(
                name,
                N_(
                    "the mapping's value table [values.{field}] is of no text field of a "
                    "{kind} record; value tables go with: {fields}"
                ),
                field=field_name,
                kind=spec.name,
                fields=", ".join(sorted(takes)),
            )


def ingest_file(
    store: Store,
    path: str | Path,
    kind: str | None = None,
    mapping: UserMapping | None = None,
    user: str | None = None,
    mapping_name: str | None = None,
    on_rows: Callable[[int], None] | None = None,
    regular_only: bool = False,
) -> IngestResult:
    """Ingest one file: all of it is stored, in one transaction, or none of it.

    A file already in the ledger (same SHA-256) is recognised and not stored again;
    rows whose record key is already stored are counted as duplicates and skipped.
    The file is read in batches, so its size is bounded by disk, not memory;
    ``on_rows`` is called with the number of rows read so far after each batch.
    ``regular_only`` (the inbox's files, which others write) refuses a symbolic link, a
    FIFO or a device in the file's place: the file is opened without following a link
    and its bytes are read from that open file, so a link swapped in later is not read.
    The file's name is shown as ``shown_name`` does, in messages and in the ledger.
    """
    path = Path(path)
    result = IngestResult(path=shown_name(str(path)))
    up = Upload(path, mapping or UserMapping(), result, kind, user, mapping_name, on_rows)
    try:
        with _opened(path, up.name, regular_only) as source:
            up.sha, staged = ledger.stage_evidence(store, source)
        try:
            up.size = staged.stat().st_size
            with nopandas.refused():  # reading and storing a file never needs pandas
                _ingest_staged(store, up, staged)
        finally:
            staged.unlink(missing_ok=True)
    except FileError as exc:
        result.status, result.message = "failed", str(exc)
        result.template, result.values, result.source = exc.template, exc.values, exc.source
    return result


@contextlib.contextmanager
def _opened(path: Path, name: str, regular_only: bool) -> Iterator[Path]:
    """The path to read a file's bytes from: the path itself, or (``regular_only``) the
    file opened without following a link, checked to be a regular file and read through
    its descriptor."""
    if not regular_only:
        if not path.is_file():
            raise FileError(name, N_("no such file"))
        yield path
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise FileError(name, N_("no such file")) from None
    except OSError as exc:  # ELOOP: the name is a symbolic link
        raise FileError(
            name, N_("not a regular file ({problem}); only plain files are taken"),
            problem="symbolic link" if path.is_symlink() else exc.strerror,
        ) from None  # fmt: skip
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileError(
                name,
                N_("not a regular file ({problem}); only plain files are taken"),
                problem="FIFO, device or folder",
            )
        by_fd = Path(f"/proc/self/fd/{fd}")
        yield by_fd if by_fd.exists() else path
    finally:
        os.close(fd)


def _ingest_staged(store: Store, up: Upload, staged: Path) -> None:
    """The rest of ``ingest_file`` once the bytes are copied into evidence and hashed."""
    result = up.result
    result.sha256 = up.sha
    with store.read() as con:
        seen = _read_before(con, up)
        up.facilities = listed_facilities(
            con.execute("SELECT facility, name FROM facilities").fetchall()
        )
    if seen:
        _already(result, seen)
        return
    evidence, placed = ledger.place_evidence(store, staged, up.sha)
    try:
        p = plan(evidence, up.kind, up.mapping, name=up.name)
        result.kind = p.kind
        result.format, result.encoding, result.delimiter = (
            p.table.format,
            p.table.encoding,
            p.table.delimiter,
        )
        result.mapping = {k: v.describe() for k, v in p.sources.items()}
        result.unread = unread_columns(p)
        result.unread_sheets = unread_sheets(evidence, p, up.mapping)
        with ledger.appending(store) as con:
            # Checked again under the writers' lock: two ingests of one file started
            # together both passed the check above, and only one may store it.
            seen = _read_before(con, up)
            if seen:
                _already(result, seen)
                return
            _store(con, p, up)
    except FileError:
        if placed:  # nothing refers to it: a rejected file leaves no evidence behind
            evidence.unlink(missing_ok=True)
        raise


def _read_before(con, up: Upload) -> dict | None:
    """The ledger entry that already read these bytes the way ``up`` asks, if any; and,
    when an entry read them another way, its number in ``up.reading_of``."""
    first = ledger.find(con, up.sha)
    up.reading_of = first["seq"] if first else None
    if first is None:
        return None
    return ledger.find(con, up.sha, up.reading, up.mapping_name)


def _already(result: IngestResult, seen: dict) -> None:
    result.status, result.kind, result.seq = "duplicate", seen["kind"], seen["seq"]
    result.template = N_("already uploaded as ledger entry {seq} ({file}, {when} by {who})")
    result.values = {
        "seq": seen["seq"],
        "file": seen["original_name"],
        "when": f"{seen['uploaded_at']:%Y-%m-%d %H:%M}",
        "who": seen["uploaded_by"],
    }
    result.message = result.template.format(**result.values)


def _converted(
    p: Plan, up: Upload, workers: int = 2
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Canonical batches in file order, converted by ``workers`` threads while the caller
    stores earlier ones (one polars conversion alone keeps only part of two cores busy),
    at most ``workers + 1`` ahead of the caller, so memory stays bounded whatever the
    file's size (``parallel.ordered_map``)."""
    return ordered_map(lambda batch: canonical(batch, p, up), p.table.batches(), workers, "ingest")


# Up to this many rows a file's key hashes are kept (80 MB) to rule out repeats cheaply.
KEY_HASH_ROWS = 10_000_000


def _polars_type(sql_type: str) -> pl.DataType:
    """The polars type of a stored column's SQL type (``kind_columns``)."""
    return {"VARCHAR": pl.String, "BIGINT": pl.Int64, "TIMESTAMP": pl.Datetime("us"),
            "DATE": pl.Date}[sql_type]  # fmt: skip


# Arrow streams feeding the ingest's INSERT: DuckDB reads one stream on one thread at a
# time, so one stream left a core idle (10M reads: 23.4 s from one, 18.8 s from two).
STREAMS = 2


class _Feed:
    """The canonical rows of one file as Arrow streams read by a single INSERT (one commit
    of fresh row groups, no re-checkpoint of small appends). The streams take the file's
    converted batches in turn, in file order (the seal is fed in that order).

    Quarantined rows are spilled to Parquet beside the stream and counted as they pass.
    """

    def __init__(self, p: Plan, up: Upload, seq: int, spill: Path) -> None:
        self.plan, self.upload, self.seq, self.spill = p, up, seq, spill
        self.result, self.on_rows = up.result, up.on_rows
        self.columns = kind_columns(p.kind)
        empty = pl.DataFrame(schema={c: _polars_type(t) for c, t in self.columns.items()})
        # (Arrow's string views: polars hands its strings to DuckDB without copying them)
        self.schema = empty.to_arrow(compat_level=pl.CompatLevel.newest()).schema
        self.quarantine: list[Path] = []
        self.seal = StreamingSeal(p.kind)  # the rows' seal, hashed as they pass
        self.error: BaseException | None = None
        # 64-bit hashes of the record keys stored so far, to tell at the end whether the
        # file repeats a record across batches (8 bytes a row, up to KEY_HASH_ROWS rows).
        self.key_hashes: list[pl.Series] | None = []
        self._converted = _converted(p, up)
        self._lock = threading.Lock()

    def readers(self, n: int = STREAMS) -> list[pa.RecordBatchReader]:
        return [pa.RecordBatchReader.from_batches(self.schema, self._batches()) for _ in range(n)]

    def close(self) -> None:
        """Stop converting (the file's reader and converter threads end)."""
        with self._lock:
            self._converted.close()

    def _next(self) -> pa.Table | None:
        """The next converted batch in file order, counted and given to the seal."""
        with self._lock:
            item = next(self._converted, None)
            if item is None:
                return None
            good, quarantine = item
            self._count(good, quarantine)
            table = good.with_columns(pl.lit(self.seq, pl.Int64).alias("upload_seq"))
            rows = table.to_arrow(compat_level=pl.CompatLevel.newest()).cast(self.schema)
            self.seal.add(rows)
            return rows

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            while (rows := self._next()) is not None:
                yield from rows.to_batches()
        except BaseException as exc:  # DuckDB would re-raise it as a generic error
            self.error = exc
            raise

    def repeats_records(self) -> bool:
        """Whether two stored rows of this file may share a record key (False is certain;
        True may be a hash collision or the key count past the limit)."""
        if self.key_hashes is None:
            return True
        if not self.key_hashes:
            return False
        hashes = pl.concat(self.key_hashes)
        return hashes.n_unique() < len(hashes)

    def _count(self, good: pl.DataFrame, quarantine: pl.DataFrame) -> None:
        r = self.result
        if self.key_hashes is not None:
            self.key_hashes.append(good.get_column("record_key").hash())
            if r.rows_read + good.height > KEY_HASH_ROWS:
                self.key_hashes = None  # the exact check in SQL will do
        bad_rows = quarantine.get_column("source_row").n_unique()
        r.rows_read += good.height + bad_rows
        r.rows_quarantined += bad_rows
        if quarantine.height:
            r.reasons.extend(
                tuple(x)
                for x in quarantine.head(20).select("source_row", "field", "reason").iter_rows()
            )
            del r.reasons[20:]
            part = self.spill / f"quarantine-{len(self.quarantine)}.parquet"
            quarantine.write_parquet(part)
            self.quarantine.append(part)
        if self.on_rows:
            self.on_rows(r.rows_read)


def _store(con, p: Plan, up: Upload) -> None:
    """Store one planned file under the writers' lock: its ledger entry (sealed at the end
    with its counts and rows' digest), its rows in one INSERT, its quarantine, and the
    rows already stored dropped as duplicates."""
    kind, result, sha = p.kind, up.result, up.sha
    entry = ledger.append(
        con,
        {
            "sha256": sha,
            "size": up.size,
            "original_name": up.name,
            "uploaded_by": up.user or getpass.getuser(),
            "uploaded_at": datetime.now(UTC).replace(tzinfo=None),
            "kind": kind,
            "format": p.table.format,
            "encoding": p.table.encoding,
            "delimiter": p.table.delimiter,
            "mapping": json.dumps(
                {
                    "file": up.mapping_name,
                    "columns": result.mapping,
                    "reading": up.reading,
                    # a second reading of bytes an earlier entry read another way cites it
                    **({"reading_of": up.reading_of} if up.reading_of else {}),
                },
                ensure_ascii=False,
            ),
            "rows_read": None,
            "rows_stored": None,
            "rows_quarantined": None,
            "rows_duplicate": None,
        },
        pending=True,
    )
    seq = result.seq = entry["seq"]
    result.reading_of = up.reading_of
    cols = ", ".join(kind_columns(kind))
    with tempfile.TemporaryDirectory(prefix="detector-quarantine-") as spill:
        feed = _Feed(p, up, seq, Path(spill))
        streams = [f"incoming_{i}" for i in range(STREAMS)]
        for name, reader in zip(streams, feed.readers(), strict=True):
            con.register(name, reader)
        # Row order carries no meaning here (every row keeps its source_row); not keeping
        # it lets DuckDB write the rows straight into the file.
        con.execute("SET preserve_insertion_order = false")
        try:
            union = " UNION ALL ".join(f"SELECT {cols} FROM {name}" for name in streams)
            con.execute(f"INSERT INTO {kind} ({cols}) {union}").fetchall()
        except duckdb.Error:
            if feed.error is not None:
                raise feed.error from None
            raise
        finally:
            feed.close()
            feed.seal.close()
            with contextlib.suppress(duckdb.Error):  # an aborted transaction refuses these
                for name in streams:
                    con.unregister(name)
                con.execute("RESET preserve_insertion_order")
        if feed.quarantine:
            con.execute(
                "INSERT INTO quarantine (source_sha256, source_name, kind, source_row, field, "
                f"reason_code, reason, raw, upload_seq, reason_values, {_PLACE}) SELECT ?, ?, "
                f"?, source_row, field, reason_code, reason, raw, ?, reason_values, {_PLACE} "
                "FROM read_parquet(?)",
                [sha, up.name, kind, seq, [str(q) for q in feed.quarantine]],
            )
    if result.rows_read == 0:
        raise FileError(up.name, N_("has a header but no data rows"))
    stored = result.rows_read - result.rows_quarantined
    dropped, conflicts, rekeyed, otherwise = _drop_known(
        con, kind, seq, stored, feed.repeats_records(), up
    )
    result.rows_read_otherwise = otherwise
    result.rows_duplicate = dropped - len(conflicts)
    result.rows_quarantined += len(conflicts)
    result.reasons = (result.reasons + conflicts)[:20]
    result.rows_stored = stored - dropped
    if SPECS[kind].nesting:
        _refuse_circles(con, kind, seq, up.name)
    # The seal computed as the rows streamed in is the table's unless rows were dropped or
    # keyed again since, or came out of order: then it is computed from the table.
    sealed = feed.seal.ordered and not dropped and not rekeyed
    ledger.seal(
        con,
        entry,
        rows_read=result.rows_read,
        rows_stored=result.rows_stored,
        rows_quarantined=result.rows_quarantined,
        rows_duplicate=result.rows_duplicate,
        rows_digest=feed.seal.hexdigest() if sealed else table_seal(con, kind, seq),
    )


def _refuse_circles(con, kind: str, seq: int, name: str) -> None:
    """Refuse an upload whose rows would make its kind's nesting circular, with the circle
    named, the stored rows included (a zone inside itself, or A inside B inside A: the
    gate rule's idea of outer and inner zones goes, and it falls silent).

    The whole file is refused rather than its circle's rows quarantined: the nesting is
    one plan of the prison, and a plan missing the zones of the circle would still be
    read by the rules, silently otherwise than the file says. Only circles through this
    upload's rows are refused (one stored earlier does not block every later file)."""
    group, child, parent = SPECS[kind].nesting
    found = con.execute(
        f"SELECT {group}, {child}, {parent}, bool_or(upload_seq = $seq) FROM {kind} "
        f"WHERE {parent} IS NOT NULL AND {group} IN "
        f"(SELECT {group} FROM {kind} WHERE upload_seq = $seq) GROUP BY ALL ORDER BY ALL",
        {"seq": seq},
    ).fetchall()
    graphs: dict[str, dict[str, set[str]]] = {}
    new: list[tuple[str, str, str]] = []
    for where, inner, outer, mine in found:
        graphs.setdefault(where, {}).setdefault(inner, set()).add(outer)
        if mine:
            new.append((where, inner, outer))
    parts = {where: _strong_parts(graph) for where, graph in graphs.items()}
    for where, inner, outer in new:
        if parts[where][inner] != parts[where][outer]:
            continue  # no way back from the outer zone: no circle through this row
        if inner == outer:
            raise FileError(
                name,
                N_("at facility {facility}, zone {zone} is inside itself: zones must nest "
                   "without a circle; the file is refused"),
                facility=where, zone=inner,
            )  # fmt: skip
        back = _path_between(graphs[where], outer, inner)
        if back:
            raise FileError(
                name,
                N_("at facility {facility}, zone {zone} is inside {chain}, which is inside "
                   "{zone}: zones must nest without a circle; the file is refused"),
                facility=where, zone=inner, chain=", which is inside ".join(back[:-1]),
            )  # fmt: skip


def _strong_parts(graph: dict[str, set[str]]) -> dict[str, str]:
    """Each node's strongly connected part (Kosaraju, without recursion): two nodes share
    one exactly when each reaches the other, so an edge within a part closes a circle."""
    nodes = sorted(set(graph) | {n for outs in graph.values() for n in outs})
    order: list[str] = []
    seen: set[str] = set()
    for first in nodes:
        if first in seen:
            continue
        seen.add(first)
        stack = [(first, iter(sorted(graph.get(first, ()))))]
        while stack:
            node, rest = stack[-1]
            nxt = next((n for n in rest if n not in seen), None)
            if nxt is None:
                stack.pop()
                order.append(node)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
    back: dict[str, set[str]] = {}
    for node, outs in graph.items():
        for out in outs:
            back.setdefault(out, set()).add(node)
    part: dict[str, str] = {}
    for first in reversed(order):
        if first in part:
            continue
        part[first], stack2 = first, [first]
        while stack2:
            for m in back.get(stack2.pop(), ()):
                if m not in part:
                    part[m] = first
                    stack2.append(m)
    return part


def _path_between(graph: dict[str, set[str]], start: str, goal: str) -> list[str]:
    """The nodes from ``start`` to ``goal`` following ``graph``'s edges (both included),
    shortest first; empty when ``goal`` cannot be reached. Breadth first, no recursion."""
    came: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt in came:
                    continue
                came[nxt] = node
                if nxt == goal:
                    path = [goal]
                    while came[path[-1]] is not None:
                        path.append(came[path[-1]])
                    return path[::-1]
                following.append(nxt)
        frontier = following
    return []


def _drop_known(
    con, kind: str, seq: int, stored: int, repeats: bool, up: Upload
) -> tuple[int, list[tuple[int, str, str]], int, int]:
    """Remove this upload's rows whose record is already stored, by an earlier upload or by
    an earlier row of this file in another batch; returns how many, the reasons of those
    that conflict (moved to the quarantine by :func:`_quarantine_conflicts`), how many
    records were keyed by their book first (:func:`_keyed_by_book`), and how many rows of a
    second reading of the same bytes read otherwise than the stored ones.

    Overlaps are rare, so cheap checks decide whether the exact, slower delete runs at all:
    within the upload, ``repeats`` (from the key hashes seen while converting) or else
    distinct keys against rows; and, only when the table holds other uploads' rows, this
    upload's keys among theirs.
    """
    mine = f"SELECT record_key FROM {kind} WHERE upload_seq = $seq"
    overlap = False
    if repeats:
        (distinct,) = con.execute(
            f"SELECT count(DISTINCT record_key) FROM ({mine})", {"seq": seq}
        ).fetchall()[0]
        overlap = distinct < stored
    known = 0
    (total,) = con.execute(f"SELECT count(*) FROM {kind}").fetchall()[0]
    if total > stored:
        (known,) = con.execute(
            f"SELECT count(*) FROM {kind} WHERE upload_seq <> $seq AND record_key IN ({mine})",
            {"seq": seq},
        ).fetchall()[0]
    if not overlap and not known:
        return 0, [], 0, 0
    rekeyed = _keyed_by_book(con, kind, seq)
    conflicts = _quarantine_conflicts(con, kind, seq, up) if known else []
    otherwise = _read_otherwise(con, kind, seq) if known and up.reading_of else 0
    dropped = con.execute(
        f"""DELETE FROM {kind} v WHERE upload_seq = $seq AND EXISTS (
              SELECT 1 FROM {kind} o WHERE o.record_key = v.record_key
                 AND (o.upload_seq <> $seq OR o.source_row < v.source_row))""",
        {"seq": seq},
    ).fetchall()[0][0]
    return dropped, conflicts, rekeyed, otherwise


def _keyed_by_book(con, kind: str, seq: int) -> int:
    """Key this upload's records by their logbook too where their own id is another book's:
    paper books number their lines from 1 each, so "line 1" of book L-3 is not "line 1" of
    book L-2 (a new user's March book was set aside as an altered copy of February's, and
    raised false findings of tampering). The book that wrote an id first (stored first,
    else first in this file) keeps the plain key, so a copy of it sent again is still
    recognised; a later book's record becomes ``key@book``. Returns how many were keyed."""
    spec = SPECS[kind]
    if "logbook" not in kind_columns(kind) or "record_id" not in spec.own_key:
        return 0
    own = " || '|' || ".join(f"{c}::VARCHAR" for c in spec.own_key)
    (rekeyed,) = con.execute(
        f"""
        WITH claims AS (
            SELECT record_key, arg_min(logbook, (upload_seq, source_row)) AS first_book
            FROM {kind}
            WHERE record_key IN (SELECT record_key FROM {kind}
                                 WHERE upload_seq = $seq AND logbook IS NOT NULL)
            GROUP BY record_key)
        UPDATE {kind} v SET record_key = v.record_key || '@' || v.logbook
        FROM claims c
        WHERE v.upload_seq = $seq AND v.record_key = c.record_key
          AND v.logbook IS NOT NULL AND c.first_book IS NOT NULL AND v.logbook <> c.first_book
          AND v.record_key = '{spec.key_prefix}|' || {own}""",
        {"seq": seq},
    ).fetchall()[0]
    return rekeyed


def _twins_sql(kind: str) -> str:
    """SQL: this upload's rows (``$seq``) whose record an earlier upload stored, each with
    the first stored row of its record (``o``), whether both came from the same bytes
    (``reread``: a second reading of a stored file) and the fields whose values differ
    (``fields``; empty: the same record sent again, a duplicate)."""
    provenance = ("record_key", "source_sha256", "source_name", "source_row", "upload_seq")
    compared = [c for c in sealed_columns(kind) if c not in provenance]
    differs = ", ".join(f"CASE WHEN v.{c} IS DISTINCT FROM o.{c} THEN '{c}' END" for c in compared)
    return f"""
        WITH first AS (SELECT * FROM {kind} WHERE upload_seq <> $seq
                       QUALIFY row_number() OVER (PARTITION BY record_key
                                                  ORDER BY upload_seq, source_row) = 1)
        SELECT v.source_row, o.record_key, o.source_name, o.source_row AS stored_row,
               list_filter([{differs}], lambda x: x IS NOT NULL) AS fields,
               o.source_sha256 = v.source_sha256 AS reread, v
        FROM {kind} v JOIN first o USING (record_key)
        WHERE v.upload_seq = $seq"""


def _read_otherwise(con, kind: str, seq: int) -> int:
    """How many rows of this upload, a second reading of stored bytes (a mapping corrected
    since), read otherwise than the first reading stored them: no altered copy, not
    quarantined, but no duplicate to pass over in silence."""
    sql = f"SELECT count(*) FROM ({_twins_sql(kind)}) WHERE reread AND len(fields) > 0"
    return con.execute(sql, {"seq": seq}).fetchall()[0][0]


def _quarantine_conflicts(con, kind: str, seq: int, up: Upload) -> list[tuple[int, str, str]]:
    """This upload's rows whose record an earlier upload stored *with other values* (a copy
    of a log altered and sent again): each goes to the quarantine as
    ``conflicts_with_stored``, naming the stored row and the fields that differ, instead of
    passing as a duplicate. Returns their (row, field, reason). (The same bytes read again
    another way are no altered copy: ``_read_otherwise``.)"""
    found = con.execute(
        f"""SELECT source_row, record_key, source_name, stored_row, fields, to_json(v)::VARCHAR
            FROM ({_twins_sql(kind)}) WHERE NOT reread AND len(fields) > 0""",
        {"seq": seq},
    ).fetchall()
    rows, reasons = [], []
    for row, key, file, stored_row, fields, raw in found:
        values = {"key": key, "file": file, "row": stored_row, "fields": ", ".join(fields)}
        reason = REASONS["conflicts_with_stored"].format(**values)
        rows.append(
            (up.sha, up.name, kind, row, fields[0], "conflicts_with_stored", reason, raw, seq,
             json.dumps(values, ensure_ascii=False))
        )  # fmt: skip
        reasons.append((row, fields[0], reason))
    if rows:
        con.executemany(
            "INSERT INTO quarantine (source_sha256, source_name, kind, source_row, field, "
            "reason_code, reason, raw, upload_seq, reason_values) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return reasons


def reference_first(
    files: list[Path],
    kind_of: Callable[[Path], tuple[str | None, UserMapping | None]] | None = None,
) -> list[Path]:
    """Facilities, inmates and logbooks before the logs checked against them.

    ``kind_of(path)`` gives the kind and mapping a file is read with (None: detected); a
    file's kind is otherwise read from its headers (a workbook is opened in its sandbox for
    that, and again by its ingest), so a single file is not opened for it."""
    if len(files) <= 1:
        return list(files)
    kind_of = kind_of or (lambda p: (None, None))
    return sorted(files, key=lambda p: INGEST_ORDER.get(_kind_of(p, *kind_of(p)), 99))


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files named, and the supported files inside folders named (not hidden ones)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                sorted(
                    x
                    for x in p.rglob("*")
                    if x.is_file() and not x.name.startswith(".") and x.suffix.lower() in SUFFIXES
                )
            )
        else:
            out.append(p)
    return out


def _kind_of(path: Path, kind: str | None, mapping: UserMapping | None) -> str | None:
    """The kind a file will be read as: given, else its mapping's, else detected from its
    headers as ingest will (None when it cannot be read: it fails on its own turn)."""
    if kind or (mapping and mapping.kind):
        return kind or mapping.kind
    try:
        name = shown_name(path.name)
        return detect_kind(read_table(path, name=name).columns, name)
    except FileError:
        return None
