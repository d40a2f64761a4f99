"""Export flags as CSV, JSON or XLSX, safe to open in a spreadsheet: one registry of formats,
each with its writer."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from detector import i18n
from detector.i18n import N_
from detector.wording import flag_wording, rules_by_id

# Columns of an export, in the queue's reading order: what to look at first on the left.
FLAG_FIELDS = [
    "flag_id",
    "risk",
    "review_status",
    "assignee",
    "severity",
    "category",
    "rule_id",
    "title",
    "facility",
    "logbook",
    "period_start",
    "period_end",
    "explanation",
    "record_ids",
    "evidence_files",
    "evidence_places",
    "evidence",
    "fields",
    "source",
    "state",
    "first_seen",
    "last_seen",
    "first_run",
    "last_run",
]
WIDE_COLUMNS = {"explanation": 90, "title": 40, "evidence_places": 60, "fields": 60}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str | None) -> str | None:
    """Make a cell that a spreadsheet would run as a formula read as plain text (OWASP)."""
    if value and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text cell of a frame made formula-safe: any table a user can download goes
    through here first (flags, validation reports)."""
    return frame.with_columns(
        pl.col(c).map_elements(neutralise, return_dtype=pl.String, skip_nulls=True)
        for c, t in frame.schema.items()
        if t == pl.String
    )


def xlsx_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells ready for a workbook. A workbook cell written as a string is never run as
    a formula, so no quote is prepended (it would show); a carriage return would show as
    ``_x000D_``, so line ends become plain new lines."""
    return frame.with_columns(
        pl.col(c).str.replace_all("\r\n?", "\n") for c, t in frame.schema.items() if t == pl.String
    )


def _evidence_text(evidence: str | None, lang: str = i18n.SOURCE) -> dict[str, str]:
    """A flag's evidence (JSON) as two readable cells: the files, and the places in them."""
    items = json.loads(evidence or "[]")
    files = sorted({str(i.get("file")) for i in items if i.get("file")})
    word = {k: i18n.field_name(k, lang).lower() for k in ("row", "logbook", "page", "line")}
    places = []
    for i in items:
        where = [f"{i.get('file')} {word['row']} {i.get('row')}"]
        cited = {**i, "page": i18n.cited_page(i, lang)}
        where += [
            f"{word[k]} {cited[k]}"
            for k in ("logbook", "page", "line")
            if cited.get(k) not in (None, "")
        ]
        places.append(", ".join(where))
    return {"evidence_files": "; ".join(files), "evidence_places": "; ".join(places)}


def _fields_text(fields: str | None) -> str:
    """The values that made a rule fire as "name: value" pairs (not a JSON blob)."""
    values = json.loads(fields or "{}")
    return "; ".join(
        f"{k}: {json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v}"
        for k, v in values.items()
    )


def worded(frame: pl.DataFrame, lang: str) -> pl.DataFrame:
    """Flags with their titles and explanations in ``lang`` (from their rules and values)."""
    if lang == i18n.SOURCE or not frame.height or "fields" not in frame.columns:
        return frame
    rules = rules_by_id() if "wording" not in frame.columns else None
    texts = [flag_wording(r, lang, rules) for r in frame.iter_rows(named=True)]
    return frame.with_columns(
        pl.Series("title", [t for t, _ in texts], dtype=pl.String),
        pl.Series("explanation", [e for _, e in texts], dtype=pl.String),
    )


def _prepared(frame: pl.DataFrame, lang: str) -> pl.DataFrame:
    """Flags as an export shows them: the risk, titles and explanations in ``lang``, the
    export's columns in reading order."""
    if "score" in frame.columns and "risk" not in frame.columns:
        frame = frame.with_columns(pl.col("score").round(3).alias("risk"))
    frame = worded(frame, lang)
    return frame.select([c for c in FLAG_FIELDS if c in frame.columns])


def _flat(frame: pl.DataFrame, lang: str) -> pl.DataFrame:
    """One text cell per value, for a spreadsheet: evidence as readable columns (files, and
    file/row/book/page/line of each record) beside its JSON, the rule's values as
    "name: value" pairs, times to the second."""
    evidence = (
        [_evidence_text(e, lang) for e in frame["evidence"]] if "evidence" in frame.columns else []
    )
    flat = frame.with_columns(
        pl.col("record_ids").list.join("; "),
        pl.Series("fields", [_fields_text(f) for f in frame["fields"]], dtype=pl.String),
        *(
            pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S")
            for c, t in frame.schema.items()
            if t.is_temporal()
        ),
    )
    if evidence:
        flat = flat.with_columns(
            pl.Series(k, [e[k] for e in evidence], dtype=pl.String)
            for k in ("evidence_files", "evidence_places")
        )
    return flat.select([c for c in FLAG_FIELDS if c in flat.columns])


def _write_json(frame: pl.DataFrame, out: BinaryIO, lang: str) -> None:
    rows = frame.to_dicts()
    for row in rows:
        row["evidence"] = json.loads(row["evidence"] or "[]")
        row["fields"] = json.loads(row["fields"] or "{}")
    out.write(json.dumps(rows, indent=1, default=str, ensure_ascii=False).encode("utf-8"))


def _csv_writer(separator: str) -> Callable[[pl.DataFrame, BinaryIO, str], None]:
    """CSV in UTF-8 with a byte-order mark (Excel reads accents right only with it), every
    cell formula-safe."""

    def write(frame: pl.DataFrame, out: BinaryIO, lang: str) -> None:
        text = _flat(frame, lang).pipe(neutralised).write_csv(separator=separator)
        out.write("\ufeff".encode() + text.encode("utf-8"))

    return write


def _write_xlsx(frame: pl.DataFrame, out: BinaryIO, lang: str) -> None:
    flat = _flat(frame, lang)
    xlsx_text(flat).write_excel(
        out,
        worksheet="flags",
        autofit=True,
        table_style="Table Style Light 9",  # a table: a filter button on every header
        freeze_panes=(1, 1),  # the header row and the flag id stay in view
        column_widths={c: 7 * w for c, w in WIDE_COLUMNS.items() if c in flat.columns},
    )


@dataclass(frozen=True)
class ExportFormat:
    """One way flags leave the tool (the dashboard's buttons and `detector flags`): how it
    is named and served, and its writer (flags, a binary output, the language)."""

    label: str
    suffix: str
    mime: str
    write: Callable[[pl.DataFrame, BinaryIO, str], None]
    help: str = ""


# The export registry: a new format is one entry here, with its writer.
EXPORT_FORMATS: dict[str, ExportFormat] = {
    "csv": ExportFormat("CSV", ".csv", "text/csv", _csv_writer(",")),
    # Excel in a Spanish (or most European) locale splits CSV on ";".
    "csv-semicolon": ExportFormat(
        N_("CSV for Excel with ;"),
        "-semicolon.csv",
        "text/csv",
        _csv_writer(";"),
        N_(
            "For a spreadsheet in a Spanish (or most European) locale, which splits columns on ';'."
        ),
    ),
    "xlsx": ExportFormat(
        "XLSX",
        ".xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _write_xlsx,
    ),
    "json": ExportFormat("JSON", ".json", "application/json", _write_json),
}


def flags_bytes(frame: pl.DataFrame, fmt: str, lang: str = i18n.SOURCE) -> bytes:
    """An export of the flags ``frame`` (as ``detector.flags.read_flags`` reads them) in
    format ``fmt`` of ``EXPORT_FORMATS``, in memory. Titles, explanations and the evidence
    places are in ``lang``; column names and coded values are the same in every language,
    so that a script reads any export."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use {', '.join(EXPORT_FORMATS)}")
    out = io.BytesIO()
    EXPORT_FORMATS[fmt].write(_prepared(frame, lang), out, lang)
    return out.getvalue()


def write_flags(frame: pl.DataFrame, fmt: str, output: Path, lang: str = i18n.SOURCE) -> None:
    """An export of the flags ``frame`` written to the file ``output``."""
    Path(output).write_bytes(flags_bytes(frame, fmt, lang))
