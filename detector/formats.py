"""Read the file formats auditors hold (CSV in any common encoding, XLSX, Parquet, JSON) as text tables."""

from __future__ import annotations

import codecs
import csv
import json
import mmap
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from charset_normalizer import from_bytes

from detector import lazy, sandbox
from detector.errors import FileError
from detector.i18n import N_
from detector.settings import settings

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy.module("polars")

SAMPLE = 256 * 1024
BATCH_ROWS = 250_000
DELIMITERS = (",", ";", "\t", "|")
# Latin-script single-byte guesses are all read as Windows-1252 (a superset of latin-1's
# printable range that also has €, curly quotes and dashes, as Excel writes them).
_WESTERN = {
    "latin_1",
    "iso8859_1",
    "cp1252",
    "iso8859_15",
    "cp1250",
    "iso8859_2",
    "mac_roman",
    "cp850",
    "cp437",
    "iso8859_9",
    "cp1254",
}

csv.field_size_limit(sys.maxsize)


@dataclass
class Batch:
    """Consecutive rows of a source; ``offset`` is the number of data rows before it."""

    frame: pl.DataFrame
    offset: int = 0
    # Rows that could not be split into the header's columns:
    # (row, {"found": fields on the line, "expected": the header's}, the line as read).
    broken: list[tuple[int, dict, str]] = field(default_factory=list)
    # True when the source is known to hold no NUL byte, so rows need no check for one.
    nul_free: bool = False
    # The spreadsheet row of the first data row: 2 under a header row, 1 without one.
    first_row: int = 2
    # Each row's spreadsheet row, when the rows are not consecutive (a sheet's empty rows
    # left out: the rows after them keep the numbers the spreadsheet shows).
    rows: pl.Series | None = None


@dataclass
class Table:
    """A source file opened for reading as text columns, in batches.

    Row numbers are spreadsheet rows (header = row 1, first data row = row 2).
    """

    name: str
    format: str
    columns: list[str]
    reader: Callable[[int], Iterator[Batch]]
    encoding: str | None = None
    delimiter: str | None = None
    _keep: object = None  # a transcoded temporary file lives as long as the table
    nul_free: bool = False
    first_row: int = 2

    def batches(self, rows: int | None = None) -> Iterator[Batch]:
        for batch in self.reader(rows or BATCH_ROWS):
            frame, numbers = _without_empty_rows(
                _nulls_for_empty(batch.frame), batch.rows, self.first_row + batch.offset
            )
            yield Batch(frame, batch.offset, batch.broken, self.nul_free, self.first_row, numbers)

    @property
    def frame(self) -> pl.DataFrame:
        """All rows at once (small files, previews and tests)."""
        parts = [b.frame for b in self.batches()]
        return (
            pl.concat(parts)
            if parts
            else pl.DataFrame(schema=dict.fromkeys(self.columns, pl.String))
        )

    @property
    def broken(self) -> list[tuple[int, dict, str]]:
        return [r for b in self.batches() for r in b.broken]


def _nulls_for_empty(frame: pl.DataFrame) -> pl.DataFrame:
    """An empty cell is missing whatever the format (CSV gives null, XLSX/Parquet/JSON "").

    The schema is read once: asking ``frame.schema`` per column made a wide file quadratic."""
    schema = frame.schema
    return frame.with_columns(
        pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
        for c, dtype in schema.items()
        if dtype == pl.String
    )


def _without_empty_rows(
    frame: pl.DataFrame, numbers: pl.Series | None, first: int
) -> tuple[pl.DataFrame, pl.Series | None]:
    """A batch without its rows of nothing but empty cells (a book's spacer lines: a CSV's
    ",,,,," was set aside twice over as a row missing its required fields, and counted as a
    row that could not be stored; a sheet's are left out when it is read), with the numbers
    of the rows kept (``Batch.rows``: the file's own row numbers, ``first`` the batch's
    first). Nothing is copied when no row is empty."""
    if not frame.width or not frame.height:
        return frame, numbers
    empty = frame.select(pl.all_horizontal(pl.all().is_null())).to_series()
    if not empty.any():
        return frame, numbers
    if numbers is None:
        numbers = pl.int_range(first, first + frame.height, dtype=pl.UInt32, eager=True)
    return frame.filter(~empty), numbers.filter(~empty)


def _check_width(columns: int, name: str, at_least: bool = False) -> None:
    """Refuse absurd column counts before any row is read (a 47 KB CSV with 6,000 columns
    used to hold the write lock for 77 s): no logbook export comes near the limit."""
    limit = settings().max_columns
    if columns > limit:
        raise FileError(
            name,
            N_(
                "{count} columns (limit {limit}; set DETECTOR_MAX_COLUMNS to raise it): "
                "not a logbook export"
            ),
            count=f"{'over ' if at_least else ''}{columns:,}",
            limit=f"{limit:,}",
        )


def _single(
    frame: pl.DataFrame, numbers: pl.Series | None = None
) -> Callable[[int], Iterator[Batch]]:
    def reader(rows: int) -> Iterator[Batch]:
        yield Batch(frame, rows=numbers)

    return reader


# How the reader writes Excel's date and time cells as text: a time-only cell as a moment
# of Excel's day zero (1899-12-30 or -31), a date-only cell as its midnight.
_EXCEL_TIME = r"^1899-12-3[01] (\d{2}:\d{2}:\d{2})(\.0+)?$"
_EXCEL_DATE = r"^(\d{4}-\d{2}-\d{2}) 00:00:00(\.0+)?$"


def _excel_cells(frame: pl.DataFrame) -> pl.DataFrame:
    """Excel's time cells as the time alone, its date cells as the date alone: a date
    column beside a time column then joins into one moment (they read as "2020-01-10
    00:00:00 1899-12-31 08:15:00", and every row was set aside), and a date typed without
    a time is a day, not an entry at midnight (one such cell was judged as an entry at
    00:00). A date-time cell at exactly midnight is read as that day: Excel stores a
    date-only cell as the same value."""
    text = pl.col(pl.String)
    return frame.with_columns(
        text.str.replace(_EXCEL_TIME, "${1}").str.replace(_EXCEL_DATE, "${1}")
    )


def _open_xlsx(path, head, size, name, sheet, names) -> Table:
    frame = _excel_cells(_as_text(sandbox.read_excel(path, name, sheet, has_header=names is None)))
    numbers = None
    if sandbox.ROW in frame.columns:  # a sheet read whole, its empty rows left out
        numbers = frame.get_column(sandbox.ROW).cast(pl.UInt32).alias("__row__")
        frame = frame.drop(sandbox.ROW)
    if names is not None:
        frame = _named(frame, names, name)
    table = Table(name, "xlsx", frame.columns, _single(frame, numbers))
    table.first_row = 1 if names is not None else 2
    return table


def _open_parquet(path, head, size, name, sheet, names) -> Table:
    columns = pl.scan_parquet(path).collect_schema().names()
    _check_width(len(columns), name)
    return Table(name, "parquet", [str(c) for c in columns], _parquet_reader(path))


def _open_json(fmt: str):
    def opener(path, head, size, name, sheet, names) -> Table:
        frame = _read_json(path, fmt, name)
        return Table(name, fmt, frame.columns, _single(frame))

    return opener


def _open_text(path, head, size, name, sheet, names) -> Table:
    return _open_csv(path, head, size <= SAMPLE, name, names)


@dataclass(frozen=True)
class Reader:
    """One file format the tool reads: the suffixes and first bytes that say it, and how
    it opens. ``detect_format``, ``read_table`` and the folders an ingest walks all read
    this registry, so a format is added here once."""

    suffixes: tuple[str, ...]
    open: Callable[..., Table]
    magic: bytes = b""
    headerless: bool = False  # can read a file written without a header row
    in_memory: bool = False  # read whole (so an empty one is refused at once)


READERS: dict[str, Reader] = {
    "xlsx": Reader((".xlsx", ".xlsm"), _open_xlsx, b"PK\x03\x04", headerless=True, in_memory=True),
    "parquet": Reader((".parquet",), _open_parquet, b"PAR1"),
    "ndjson": Reader((".ndjson", ".jsonl"), _open_json("ndjson"), in_memory=True),
    "json": Reader((".json",), _open_json("json"), in_memory=True),
    "csv": Reader((".csv", ".txt", ".tsv"), _open_text, headerless=True),
}
# Every suffix a folder given to ingest is searched for.
SUFFIXES = tuple(s for r in READERS.values() for s in r.suffixes)


def detect_format(path: Path, head: bytes, name: str | None = None) -> str:
    """The reader of ``READERS`` a file needs: by its first bytes, else its suffix, else
    by sniffing JSON; a text file is CSV."""
    name = name or path.name
    suffix = Path(name).suffix.lower()
    for fmt, reader in READERS.items():
        if fmt != "csv" and (
            (reader.magic and head.startswith(reader.magic)) or suffix in reader.suffixes
        ):
            return fmt
    # Text: CSV, unless it reads as JSON and is not named as CSV; never binary.
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return "csv"
    stripped = head.lstrip()
    if stripped[:1] in (b"[", b"{") and suffix not in READERS["csv"].suffixes:
        return "json" if stripped[:1] == b"[" else "ndjson"
    if _looks_binary(head) and not _looks_utf16(head):
        raise FileError(name, N_("binary file, not a CSV, XLSX, Parquet or JSON export"))
    if suffix in (".xls",):
        raise FileError(name, N_("old Excel .xls is not supported: save it as .xlsx or CSV"))
    return "csv"


_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13))


def _looks_binary(head: bytes) -> bool:
    """Text exports have next to no control bytes; a few stray NULs are damage, not binary."""
    sample = head[:4096]
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    return controls > max(8, len(sample) // 20)


def _looks_utf16(head: bytes) -> bool:
    sample = head[:1024]
    return len(sample) >= 4 and (
        sample[1::2].count(0) > len(sample) // 4 or sample[0::2].count(0) > len(sample) // 4
    )


_WESTERN_EXTRA = set("€‚„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ")


def _reads_as_western(sample: bytes) -> bool:
    """Whether every non-ASCII byte reads, in Windows-1252, as a Western letter or sign.

    Spanish logs written on Windows are the common case, and statistical detectors guess
    wrong on short samples with a few accents (Big5, Baltic code pages...).
    """
    try:
        text = sample.decode("cp1252")
    except UnicodeDecodeError:
        return False
    odd = [c for c in text if ord(c) > 127]
    return bool(odd) and all(0xA0 <= ord(c) <= 0xFF or c in _WESTERN_EXTRA for c in odd)


def detect_encoding(head: bytes, complete: bool) -> str:
    """The text encoding of a CSV from its first bytes: BOM, strict UTF-8, else charset-normalizer."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _looks_utf16(head):
        return "utf-16-le" if head[1:2] == b"\x00" else "utf-16-be"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if _reads_as_western(head[:SAMPLE]):
        return "cp1252"
    matches = from_bytes(head[:SAMPLE])
    # Short Spanish texts with a few accents are often guessed as Baltic or Central European
    # code pages; when Windows-1252 is among the plausible readings, it is the one.
    if any(m.encoding in _WESTERN for m in matches):
        return "cp1252"
    best = matches.best()
    guess = best.encoding if best else "cp1252"
    return "cp1252" if guess.startswith("utf") else guess


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the most, and most consistent, columns."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    best, best_score = ",", (0, 0)
    for d in DELIMITERS:
        counts = [len(r) for r in csv.reader(lines, delimiter=d)]
        if not counts or counts[0] < 2:
            continue
        consistent = sum(c == counts[0] for c in counts)
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = d, score
    return best


def read_table(
    path: str | Path,
    sheet: str | None = None,
    name: str | None = None,
    names: list[str] | None = None,
) -> Table:
    """Open any supported file as text columns, or raise FileError naming the file.

    ``name`` is the file's original name when ``path`` is a copy (the evidence file): it
    decides the format by extension and names the file in messages. ``names`` are the
    columns, in order, of a CSV or sheet written without a header row (several FOIA
    releases): its first line is then data, and rows are numbered from 1.
    """
    path = Path(path)
    name = name or path.name
    size = path.stat().st_size
    if size == 0:
        raise FileError(name, N_("file is empty"))
    with path.open("rb") as fh:
        head = fh.read(SAMPLE)
    fmt = detect_format(path, head, name)
    reader = READERS[fmt]
    try:
        table = reader.open(path, head, size, name, sheet, names)
    except FileError:
        raise
    except Exception as exc:  # a library's parse error becomes one clear line
        raise FileError(
            name,
            N_("cannot read as {format}: {problem}"),
            format=fmt,
            problem=str(exc).splitlines()[0][:200],
        ) from exc
    if not table.columns:
        raise FileError(name, N_("no columns found"))
    if names is not None and not reader.headerless:
        raise FileError(
            name, N_("'header = false' applies to CSV and XLSX files, not {format}"), format=fmt
        )
    if reader.in_memory and table.frame.height == 0:
        raise FileError(name, N_("has a header but no data rows"))
    return table


def _check_names(names: list[str], found: int, source: str) -> None:
    if found != len(names):
        raise FileError(
            source,
            N_(
                "the mapping names {named} columns but the first line has {found} "
                "(header = false needs one name per column, in order)"
            ),
            named=len(names),
            found=found,
        )


def _named(frame: pl.DataFrame, names: list[str], source: str) -> pl.DataFrame:
    """A header-less sheet's columns renamed to the mapping's names, which must fit."""
    _check_names(names, frame.width, source)
    return frame.rename(dict(zip(frame.columns, names, strict=True)))


def _parquet_reader(path: Path) -> Callable[[int], Iterator[Batch]]:
    def reader(rows: int) -> Iterator[Batch]:
        offset = 0
        for frame in pl.scan_parquet(path).collect_batches(chunk_size=rows):
            yield Batch(_as_text(frame), offset)
            offset += frame.height

    return reader


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.rename({c: str(c) for c in frame.columns})
    return frame.with_columns(
        pl.col(c).cast(pl.String) if frame.schema[c] != pl.String else pl.col(c)
        for c in frame.columns
    )


def _flat(record: dict, prefix: str = "", depth: int = 0) -> dict:
    """A record's nested objects as columns of their own, named by their path
    (``{"person": {"name": …}}`` -> ``person.name``), as web services export badge reads;
    lists, and objects nested deeper than eight, stay as JSON text."""
    out: dict = {}
    for key, value in record.items():
        column = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth < 8:
            out.update(_flat(value, column + ".", depth + 1))
        else:
            out[column] = value
    return out


def _read_json(path: Path, fmt: str, name: str) -> pl.DataFrame:
    text = path.read_bytes().decode("utf-8-sig")
    if fmt == "json":
        data = json.loads(text)
        if isinstance(data, dict):  # {"records": [...]} or a single object
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
    else:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not data:
        raise FileError(name, N_("JSON holds no records"))
    if not all(isinstance(r, dict) for r in data):
        raise FileError(name, N_("JSON must be a list of objects (one per record)"))
    data = [_flat(r) for r in data]
    columns: dict[str, None] = {}
    for r in data:
        columns.update(dict.fromkeys(r))
        _check_width(len(columns), name)

    def text_of(v):
        if v is None or isinstance(v, str):
            return v
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)

    return pl.DataFrame(
        {c: [text_of(r.get(c)) for r in data] for c in columns},
        schema={c: pl.String for c in columns},
    )


def _open_csv(
    path: Path, head: bytes, complete: bool, name: str, names: list[str] | None = None
) -> Table:
    encoding = detect_encoding(head, complete)
    keep = None
    if encoding == "utf-8":
        source = path  # polars reads it straight from disk
        text_head = head.decode("utf-8", errors="ignore")
    else:
        try:
            keep, encoding = _transcode(path, encoding)
        except UnicodeDecodeError as exc:
            raise FileError(
                name,
                N_(
                    "binary or damaged file: not valid {encoding} text "
                    "(expected a CSV, XLSX, Parquet or JSON export)"
                ),
                encoding=encoding,
            ) from exc
        source = Path(keep.name)
        with source.open("rb") as fh:
            text_head = fh.read(SAMPLE).decode("utf-8", errors="ignore")
    text_head = text_head.lstrip("\ufeff")
    lines = [ln for ln in text_head.splitlines() if ln.strip()]
    if not lines:
        raise FileError(name, N_("file holds only blank text"))
    if complete and len(lines) == 1 and names is None:
        raise FileError(name, N_("has a header but no data rows"))
    delimiter = sniff_delimiter(text_head)
    first = [c.lstrip("\ufeff") for c in next(csv.reader([lines[0]], delimiter=delimiter))]
    # a header line longer than the sample read is cut: it has at least these columns
    _check_width(len(first), name, at_least=not complete and "\n" not in text_head)
    if names is not None:
        _check_names(names, len(first), name)
    columns = _unique(list(names)) if names is not None else first
    header = names is None
    nul_free = not _holds_nul(source)
    # Rows with too few fields would be padded with nulls by the fast reader, and a quote
    # left open would swallow the lines after it: such files are read line by line instead.
    careful = not nul_free or not _lines_fit(source, delimiter, len(columns))

    first_row = 2 if header else 1

    def slowly(offset: int) -> Iterator[Batch]:
        # Line by line, so the good rows survive and the bad ones are named; rows already
        # handed out by the fast reader are skipped.
        frame, broken = _read_csv_slowly(source, delimiter, None if header else columns, name)
        yield Batch(frame.slice(offset), offset, [b for b in broken if b[0] - first_row >= offset])

    def reader(rows: int) -> Iterator[Batch]:
        if careful:
            yield from slowly(0)
            return
        offset = 0
        try:
            lazy = pl.scan_csv(
                source,
                separator=delimiter,
                infer_schema=False,
                raise_if_empty=True,
                has_header=header,
                new_columns=None if header else columns,
            )
            for frame in lazy.collect_batches(chunk_size=rows):
                frame = frame.rename({c: c.lstrip("\ufeff") for c in frame.columns})
                yield Batch(frame, offset)
                offset += frame.height
        except pl.exceptions.NoDataError as exc:
            raise FileError(name, N_("file is empty")) from exc
        except pl.exceptions.ComputeError:  # ragged rows the line audit did not see
            yield from slowly(offset)

    return Table(
        name,
        "csv",
        columns,
        reader,
        encoding,
        delimiter,
        keep,
        nul_free=nul_free,
        first_row=first_row,
    )


def _lines_fit(source: Path, delimiter: str, fields: int) -> bool:
    """Whether every line of a NUL-free UTF-8 CSV splits into ``fields`` fields with no
    quoted field running over a line end: streamed passes over the lines, no parsing.

    Lines without a quote are checked by counting delimiters, in one pass that also says
    whether any line holds a quote; only then are the quoted lines read again with their
    quoted parts taken out (a regular expression over every line of a 10M-row export that
    quotes nothing was half of this check's 1.1 s).
    """

    def lines() -> pl.LazyFrame:
        return pl.scan_csv(
            source,
            has_header=False,
            separator="\x00",
            quote_char=None,
            new_columns=["line"],
            infer_schema=False,
        )

    line = pl.col("line")
    quoted = line.str.contains('"', literal=True)
    blank = (line == "") | (line == "\r")
    try:
        plain_bad, any_quoted = (
            lines()
            .select(
                (~quoted & ~blank & (line.str.count_matches(delimiter, literal=True) + 1 != fields))
                .any()
                .alias("bad"),
                quoted.any().alias("quoted"),
            )
            .collect(engine="streaming")
            .row(0)
        )
        if plain_bad:
            return False
        if not any_quoted:
            return True
        text = line.str.strip_chars_end("\r")
        odd = text.str.count_matches('"', literal=True) % 2 == 1
        count = text.str.replace_all(r'"[^"]*"', "").str.count_matches(delimiter, literal=True)
        return not (
            lines()
            .filter(quoted)
            .select((odd | (count + 1 != fields)).any())
            .collect(engine="streaming")
            .item()
        )
    except pl.exceptions.PolarsError:
        return False


def _holds_nul(source: Path) -> bool:
    """Whether a (UTF-8) file holds a NUL byte: one scan of the bytes, not of every cell."""
    if source.stat().st_size == 0:
        return False
    with source.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return mm.find(b"\x00") != -1


# Two bytes that open a UTF-8 character of two bytes or more: seldom side by side in text
# of a one-byte code page ("Ã©"), always in UTF-8 text beyond ASCII.
_UTF8_PAIR = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")
# The code pages of one byte a character whose files may hold UTF-8 lines too.
_ONE_BYTE = {
    codecs.lookup(e).name for e in ("cp1252", "latin-1", "iso8859-15", "cp850", "mac_roman")
}


def _transcode(path: Path, encoding: str) -> tuple[object, str]:
    """Stream a non-UTF-8 CSV into a temporary UTF-8 file (cp1252 falls back to latin-1).
    A file of a one-byte code page that holds UTF-8 lines too (exports joined together) is
    read line by line: each line as UTF-8 when it is, else in the code page (read whole in
    the code page, its UTF-8 names came out as "MartÃ­nez")."""
    if codecs.lookup(encoding).name in _ONE_BYTE and _has_utf8(path):
        return _transcode_lines(path, encoding)
    for enc in (encoding, "latin-1") if encoding == "cp1252" else (encoding,):
        # Deleted when the Table holding it is collected, not at the end of this function.
        tmp = tempfile.NamedTemporaryFile(prefix="detector-", suffix=".csv")  # noqa: SIM115
        try:
            with path.open("rb") as src:
                decoder = codecs.getincrementaldecoder(enc)()
                while block := src.read(1 << 20):
                    tmp.write(decoder.decode(block).encode("utf-8"))
                tmp.write(decoder.decode(b"", final=True).encode("utf-8"))
            tmp.flush()
            return tmp, enc
        except UnicodeDecodeError:
            tmp.close()
            if enc == "latin-1" or encoding != "cp1252":
                raise
    raise AssertionError("unreachable")


def _has_utf8(path: Path) -> bool:
    """Whether the file holds a UTF-8 character beyond ASCII anywhere (``_UTF8_PAIR``)."""
    with path.open("rb") as src:
        tail = b""
        while block := src.read(1 << 20):
            if _UTF8_PAIR.search(tail + block):
                return True
            tail = block[-1:]
    return False


def _transcode_lines(path: Path, encoding: str) -> tuple[object, str]:
    """``_transcode`` line by line: each line as UTF-8 when it is valid UTF-8, else in
    ``encoding`` (latin-1 where even that fails). The encoding said is both."""
    tmp = tempfile.NamedTemporaryFile(prefix="detector-", suffix=".csv")  # noqa: SIM115
    with path.open("rb") as src:
        for line in src:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                try:
                    text = line.decode(encoding)
                except UnicodeDecodeError:
                    text = line.decode("latin-1")
            tmp.write(text.encode("utf-8"))
    tmp.flush()
    return tmp, f"{encoding} and utf-8 by line"


def _read_csv_slowly(
    source: Path, delimiter: str, names: list[str] | None = None, name: str = ""
) -> tuple[pl.DataFrame, list]:
    with source.open(encoding="utf-8-sig", newline="") as fh:
        return _split_rows(csv.reader(fh, delimiter=delimiter), delimiter, names, name)


def _swallowed(cell: str, delimiter: str, fields: int) -> int:
    """How many whole lines of data a cell holds: a quote left open reads the next lines
    (each with the header's delimiters) into one field."""
    lines = cell.split("\n")[1:]
    return sum(ln.count(delimiter) >= fields - 1 for ln in lines)


def _split_rows(
    reader, delimiter: str, names: list[str] | None = None, name: str = ""
) -> tuple[pl.DataFrame, list]:
    header = list(names) if names is not None else next(reader)
    first_row = 1 if names is not None else 2
    rows, broken = [], []
    for row_no, row in enumerate(reader, start=first_row):
        if not any(cell.strip() for cell in row):
            rows.append([None] * len(header))
            continue
        for col, cell in enumerate(row):
            if "\n" in cell and (lost := _swallowed(cell, delimiter, len(header))):
                where = header[col] if col < len(header) else f"column {col + 1}"
                raise FileError(
                    name,
                    N_(
                        "row {row}, field {field}: a quote opened there is never closed and "
                        "swallows the {lost} line(s) after it; fix the quote and upload again"
                    ),
                    row=row_no,
                    field=where,
                    lost=lost,
                )
        if len(row) != len(header):
            broken.append(
                (row_no, {"found": len(row), "expected": len(header)}, delimiter.join(row))
            )
            rows.append(None)
        else:
            rows.append([c if c != "" else None for c in row])
    # Keep the row numbering: broken rows stay as all-null placeholders and are dropped later.
    data = [r if r is not None else [None] * len(header) for r in rows]
    frame = pl.DataFrame(data, schema={h: pl.String for h in _unique(header)}, orient="row")
    skip = {b[0] for b in broken}
    frame = frame.with_columns(
        pl.Series("__broken__", [i + first_row in skip for i in range(len(data))])
    )
    return frame, broken


def _unique(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for h in header:
        n = seen.get(h, 0)
        out.append(h if n == 0 else f"{h}_duplicated_{n - 1}")
        seen[h] = n + 1
    return out
