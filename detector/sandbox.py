"""Parse untrusted spreadsheets in a child process with a memory cap, so a file built to
exhaust memory or crash its reader costs that file, not the server or the scheduler.

A 5 KB workbook whose used range ends at XFD1048576 makes calamine (polars' Excel reader)
try to allocate hundreds of GB and abort the whole process, with no Python exception. The
declared dimension is checked first; the read itself runs in a child limited by
``RLIMIT_AS`` and a timeout, and hands its frame back as Parquet.
"""

from __future__ import annotations

import html
import os
import re
import resource
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from detector import lazy
from detector.errors import FileError
from detector.i18n import N_
from detector.settings import settings

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy.module("polars")

# A visit logbook sheet is far below the row and column limits (``settings().xlsx_max_rows``,
# ``max_columns``: the widest table any reader accepts); anything larger is refused before
# reading. The child that opens a workbook is capped in memory and time
# (``reader_memory_gb``, ``reader_timeout``).

_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="([A-Z]+)?(\d+)?(?::([A-Z]+)(\d+))?"')


def _column_number(letters: str) -> int:
    n = 0
    for c in letters:
        n = n * 26 + ord(c) - 64
    return n


def declared_size(path: Path) -> list[tuple[str, int, int]]:
    """(sheet part, rows, columns) each worksheet of a workbook declares for its used range."""
    out = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not re.fullmatch(r"xl/worksheets/[^/]+\.xml", info.filename):
                continue
            with zf.open(info) as fh:
                head = fh.read(4096)
            m = _DIMENSION.search(head)
            if not m:
                continue
            col = (m.group(3) or m.group(1) or b"A").decode()
            row = (m.group(4) or m.group(2) or b"1").decode()
            out.append((info.filename, int(row), _column_number(col)))
    return out


def check_dimensions(path: Path, name: str) -> None:
    """Refuse a workbook whose sheets declare more rows or columns than a logbook has."""
    try:
        sizes = declared_size(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileError(
            name, N_("not a readable XLSX workbook: {problem}"), problem=str(exc)
        ) from exc
    for part, rows, cols in sizes:
        limits = settings()
        if rows > limits.xlsx_max_rows or cols > limits.max_columns:
            raise FileError(
                name,
                N_(
                    "{sheet} declares a used range of {rows} rows x {columns} columns "
                    "(limits: {max_rows} x {max_columns}); a logbook export is far smaller: "
                    "save the sheet again with only its data, or as CSV"
                ),
                sheet=part.rsplit("/", 1)[-1],
                rows=f"{rows:,}",
                columns=f"{cols:,}",
                max_rows=f"{limits.xlsx_max_rows:,}",
                max_columns=f"{limits.max_columns:,}",
            )


_ELEMENT = re.compile(rb"<(?:\w+:)?(sheet|Relationship)\s([^>]*)>")
_ATTRIBUTE = re.compile(rb'(?:\w+:)?(\w+)="([^"]*)"')


def _elements(xml: bytes, tag: bytes) -> list[dict[bytes, bytes]]:
    """The attributes (prefixes dropped) of each ``tag`` element of an XML text."""
    return [dict(_ATTRIBUTE.findall(attrs)) for t, attrs in _ELEMENT.findall(xml) if t == tag]


def workbook_sheets(path: Path) -> list[tuple[str, int]]:
    """(name, rows its used range declares) of each worksheet of a workbook, in workbook
    order, read from the workbook's own index (nothing is parsed but the names and each
    sheet's declared range, and no more than a megabyte of the index is inflated: the file
    is untrusted). Empty when the index cannot be read."""
    try:
        with zipfile.ZipFile(path) as zf:
            with zf.open("xl/workbook.xml") as fh:
                book = fh.read(1_000_000)
            with zf.open("xl/_rels/workbook.xml.rels") as fh:
                rels = fh.read(1_000_000)
    except (KeyError, OSError, zipfile.BadZipFile):
        return []
    target = {
        r.get(b"Id", b"").decode(): r.get(b"Target", b"").decode().lstrip("/")
        for r in _elements(rels, b"Relationship")
    }
    rows = {part: r for part, r, _ in declared_size(path)}
    out = []
    for sheet in _elements(book, b"sheet"):
        part = target.get(sheet.get(b"id", b"").decode(), "")
        part = part if part.startswith("xl/") else f"xl/{part}"
        name = html.unescape(sheet.get(b"name", b"").decode(errors="replace"))
        out.append((name, rows.get(part, 0)))
    return out


def read_excel(path: Path, name: str, sheet: str | None, has_header: bool) -> pl.DataFrame:
    """The sheet (or with ``"*"`` every sheet, stacked) as text columns, read in a
    memory-limited child process."""
    check_dimensions(path, name)
    with tempfile.TemporaryDirectory(prefix="detector-xlsx-") as tmp:
        out = Path(tmp) / "sheet.parquet"
        cmd = [sys.executable, "-m", "detector.sandbox", str(path), str(out), sheet or "",
               "1" if has_header else "0"]  # fmt: skip
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                timeout=settings().reader_timeout,
                preexec_fn=_limit_memory,
                env={**os.environ, "POLARS_MAX_THREADS": "1"},
            )
        except subprocess.TimeoutExpired as exc:
            raise FileError(
                name,
                N_("reading the workbook took longer than {seconds} s"),
                seconds=f"{settings().reader_timeout:g}",
            ) from exc
        if done.returncode != 0:
            last = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            why = (
                last[:200] if done.returncode > 0 else f"the reader was killed ({done.returncode})"
            )
            raise FileError(name, N_("cannot read as xlsx: {problem}"), problem=why)
        return pl.read_parquet(out)


def _limit_memory() -> None:
    cap = int(settings().reader_memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


# ``sheet = "*"`` in a mapping: every sheet, stacked (FOIA releases often put one year per
# sheet). Each row keeps the sheet it came from and its row there in these two columns.
ALL_SHEETS = "*"
# The column a single sheet's rows carry their spreadsheet row in, from the reader's child
# process to ``formats`` (which takes it out of the table).
ROW = "__detector_sheet_row__"
SHEET_COLUMNS = ("sheet", "sheet_row")


def _child(path: str, out: str, sheet: str, header: str) -> None:
    has_header = header == "1"
    if sheet == ALL_SHEETS:
        frames = pl.read_excel(path, sheet_id=0, infer_schema_length=0, has_header=has_header)
        frame = stack_sheets(frames, first_row=2 if has_header else 1)
    else:
        # empty rows are read, numbered as the spreadsheet numbers them, then left out: a
        # row's evidence cites the row Excel shows, not its place among the rows written;
        # a title block above the header is left out the same way (``header_row``)
        def read(at: int = 0) -> pl.DataFrame:
            return pl.read_excel(
                path,
                sheet_name=sheet or None,
                infer_schema_length=0,
                has_header=has_header,
                drop_empty_rows=False,
                **({"read_options": {"header_row": at}} if at else {}),
            )

        from detector.mapping import header_score

        frame, at = read(), 0
        if has_header and header_score(frame.columns) < 2 and (at := header_row(path, sheet)):
            frame = read(at)  # (a sheet whose first row is its header is read once)
        frame = frame.with_columns(
            (pl.int_range(pl.len()) + (2 + at if has_header else 1)).alias(ROW)
        ).filter(~pl.all_horizontal(pl.exclude(ROW).is_null()))
    frame = frame.rename({c: str(c) for c in frame.columns})
    frame.with_columns(pl.all().cast(pl.String)).write_parquet(out)


# How far down a sheet its header row is looked for (below a title block: the office, the
# prison, the month, merged across the columns).
HEADER_SEARCH_ROWS = 20


def header_row(path: str, sheet: str) -> int:
    """The row (0 = the first) of a sheet that reads best as a header (``mapping.
    header_score``) among its first ``HEADER_SEARCH_ROWS``: the first row unless a later
    one names at least two fields and more than the first row does."""
    from detector.mapping import header_score

    probe = pl.read_excel(
        path,
        sheet_name=sheet or None,
        infer_schema_length=0,
        has_header=False,
        drop_empty_rows=False,
        read_options={"n_rows": HEADER_SEARCH_ROWS},
    )
    scores = [header_score(list(row)) for row in probe.rows()]
    if not scores:
        return 0
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best if scores[best] >= 2 and scores[best] > scores[0] else 0


def stack_sheets(frames: dict[str, pl.DataFrame], first_row: int = 2) -> pl.DataFrame:
    """The sheets of a workbook as one table, in workbook order, each row tagged with its
    sheet and its row there. Headers must match (case and spacing aside), else the error
    names the sheet that differs."""
    names = list(frames)
    if not names:
        raise ValueError("the workbook has no sheets")
    columns = [str(c) for c in frames[names[0]].columns]
    key = [c.strip().casefold() for c in columns]
    taken = [c for c in SHEET_COLUMNS if c.casefold() in key]
    if taken:
        raise ValueError(f"sheet = '*' adds the column {taken[0]!r}, which the sheets have already")
    parts = []
    for name in names:
        frame = frames[name]
        if [str(c).strip().casefold() for c in frame.columns] != key:
            raise ValueError(
                f"sheet {name!r} has other columns than sheet {names[0]!r}: "
                "sheet = '*' stacks sheets with the same header only"
            )
        parts.append(
            frame.rename(dict(zip(frame.columns, columns, strict=True)))
            .with_columns(pl.all().cast(pl.String))
            .with_columns(
                pl.lit(name).alias(SHEET_COLUMNS[0]),
                (pl.int_range(pl.len()) + first_row).cast(pl.String).alias(SHEET_COLUMNS[1]),
            )
        )
    return pl.concat(parts, how="vertical")


if __name__ == "__main__":
    _child(*sys.argv[1:5])
