"""Export flags as CSV, JSON or XLSX, safe to open in a spreadsheet."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from detector import i18n
from detector.i18n import N_
from detector.review import QUEUE_ORDER
from detector.rules import SEVERITIES
from detector.store import Store

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
# Spreadsheet exports: the dialects auditors' spreadsheets open without an import dialog.
# Excel in a Spanish (or most European) locale splits CSV on ";", and reads UTF-8 only
# with a byte-order mark.
CSV_DIALECTS = {"csv": ",", "csv-semicolon": ";"}
WIDE_COLUMNS = {"explanation": 90, "title": 40, "evidence_places": 60, "fields": 60}


@dataclass(frozen=True)
class ExportFormat:
    """One way flags leave the tool (the dashboard's buttons and `detector flags`)."""

    label: str
    suffix: str
    mime: str
    help: str = ""


# The export registry: a new format is declared here and written in ``write_flags``.
EXPORT_FORMATS: dict[str, ExportFormat] = {
    "csv": ExportFormat("CSV", ".csv", "text/csv"),
    "csv-semicolon": ExportFormat(
        N_("CSV for Excel with ;"),
        "-semicolon.csv",
        "text/csv",
        N_(
            "For a spreadsheet in a Spanish (or most European) locale, which splits columns on ';'."
        ),
    ),
    "xlsx": ExportFormat(
        "XLSX", ".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    ),
    "json": ExportFormat("JSON", ".json", "application/json"),
}


def flags_bytes(frame: pl.DataFrame, fmt: str, lang: str = i18n.SOURCE) -> bytes:
    """An export of ``frame`` in memory, for a download button."""
    if fmt == "xlsx":
        buf = io.BytesIO()
        write_flags(frame, fmt, buf, lang)
        return buf.getvalue()
    out = write_flags(frame, fmt, None, lang)
    return out if isinstance(out, bytes) else str(out).encode("utf-8")


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


def load_flags(
    store: Store,
    category: str | None = None,
    min_severity: str | None = None,
    state: str | None = "active",
) -> pl.DataFrame:
    """Flags with their review status, in the review queue's order (riskiest first)."""
    where, params = ["1 = 1"], []
    if category:
        where.append("f.category = ?")
        params.append(category)
    if min_severity:
        where.append("list_position(?::VARCHAR[], f.severity) >= list_position(?::VARCHAR[], ?)")
        params += [list(SEVERITIES), list(SEVERITIES), min_severity]
    if state:
        where.append("f.state = ?")
        params.append(state)
    sql = f"""
        SELECT f.*, coalesce(r.status, 'new') AS review_status, r.assignee
        FROM flags f LEFT JOIN reviews r USING (flag_id)
        WHERE {" AND ".join(where)}
        ORDER BY {QUEUE_ORDER}"""
    with store.read() as con:
        return con.sql(sql, params=params).pl()


def _evidence_text(evidence: str | None, lang: str = i18n.SOURCE) -> dict[str, str]:
    """A flag's evidence (JSON) as two readable cells: the files, and the places in them."""
    items = json.loads(evidence or "[]")
    files = sorted({str(i.get("file")) for i in items if i.get("file")})
    word = {k: i18n.field_name(k, lang).lower() for k in ("row", "logbook", "page", "line")}
    places = []
    for i in items:
        where = [f"{i.get('file')} {word['row']} {i.get('row')}"]
        where += [
            f"{word[k]} {i[k]}" for k in ("logbook", "page", "line") if i.get(k) not in (None, "")
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
    rules = i18n.rules_by_id()
    texts = [i18n.flag_wording(r, lang, rules) for r in frame.iter_rows(named=True)]
    return frame.with_columns(
        pl.Series("title", [t for t, _ in texts], dtype=pl.String),
        pl.Series("explanation", [e for _, e in texts], dtype=pl.String),
    )


def write_flags(
    frame: pl.DataFrame, fmt: str, output: Path | None, lang: str = i18n.SOURCE
) -> str | bytes | None:
    """Write flags as csv (``,``), csv-semicolon (``;``, for a Spanish-locale Excel), json
    or xlsx; returns the content when no output file is given. CSV is UTF-8 with a
    byte-order mark, so that Excel reads accents right; evidence comes as readable columns
    (files, and file/row/book/page/line of each record) besides its JSON. Titles,
    explanations and the evidence places are in ``lang``; column names and coded values
    stay the same in every language, so that a script reads any export."""
    if "score" in frame.columns and "risk" not in frame.columns:
        frame = frame.with_columns(pl.col("score").round(3).alias("risk"))
    frame = worded(frame, lang)
    frame = frame.select([c for c in FLAG_FIELDS if c in frame.columns])
    if fmt == "json":
        rows = frame.to_dicts()
        for row in rows:
            row["evidence"] = json.loads(row["evidence"] or "[]")
            row["fields"] = json.loads(row["fields"] or "{}")
        text = json.dumps(rows, indent=1, default=str, ensure_ascii=False)
        if output is None:
            return text
        Path(output).write_text(text, encoding="utf-8")
        return None
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
    flat = flat.select([c for c in FLAG_FIELDS if c in flat.columns])
    if fmt in CSV_DIALECTS:
        text = flat.pipe(neutralised).write_csv(separator=CSV_DIALECTS[fmt])
        data = "\ufeff".encode() + text.encode("utf-8")
        if output is None:
            return data
        Path(output).write_bytes(data)
    elif fmt == "xlsx":
        if output is None:
            raise ValueError("xlsx needs --output FILE")
        xlsx_text(flat).write_excel(
            output,
            worksheet="flags",
            autofit=True,
            table_style="Table Style Light 9",  # a table: a filter button on every header
            freeze_panes=(1, 1),  # the header row and the flag id stay in view
            column_widths={c: 7 * w for c, w in WIDE_COLUMNS.items() if c in flat.columns},
        )
    else:
        raise ValueError(f"unknown format {fmt!r}: use csv, csv-semicolon, json or xlsx")
    return None
