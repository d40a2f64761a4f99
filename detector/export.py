"""Export flags as CSV, JSON or XLSX, safe to open in a spreadsheet."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from detector.review import QUEUE_ORDER
from detector.rules import SEVERITIES
from detector.store import Store

FLAG_FIELDS = [
    "flag_id",
    "rule_id",
    "category",
    "severity",
    "source",
    "title",
    "facility",
    "logbook",
    "period_start",
    "period_end",
    "record_ids",
    "evidence",
    "explanation",
    "fields",
    "state",
    "review_status",
    "assignee",
    "first_seen",
    "last_seen",
    "first_run",
    "last_run",
]
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


def write_flags(frame: pl.DataFrame, fmt: str, output: Path | None) -> str | None:
    """Write flags as csv, json or xlsx; returns the text when no output file is given."""
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
    flat = frame.with_columns(
        pl.col("record_ids").list.join("; "),
        *(
            pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S")
            for c, t in frame.schema.items()
            if t.is_temporal()
        ),
    )
    if fmt == "csv":
        flat = flat.pipe(neutralised)
        if output is None:
            return flat.write_csv()
        flat.write_csv(output)
    elif fmt == "xlsx":
        if output is None:
            raise ValueError("xlsx needs --output FILE")
        xlsx_text(flat).write_excel(
            output, worksheet="flags", autofit=True, table_style="Table Style Light 9"
        )
    else:
        raise ValueError(f"unknown format {fmt!r}: use csv, json or xlsx")
    return None
