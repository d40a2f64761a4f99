"""Parse the date and time spellings found in transcribed logbooks, as polars expressions."""

from __future__ import annotations

import polars as pl

DATE_ORDERS = ("dmy", "mdy", "ymd")

# Whole seconds before fractions: polars reads the plain spellings with a fast path, and a
# fraction-capable spelling chosen first would send every row through the slow one.
_ISO = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
)
_TIMES = ("%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p", "%H%M")


def _with_times(date_formats: tuple[str, ...]) -> list[str]:
    return [f"{d} {t}" for d in date_formats for t in _TIMES]


def _date_formats(order: str) -> tuple[str, ...]:
    if order == "ymd":
        return ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d")
    parts = ("%d", "%m") if order == "dmy" else ("%m", "%d")
    out = []
    for sep in ("/", "-", "."):
        for year in ("%Y", "%y"):
            out.append(sep.join((*parts, year)))
    return tuple(out)


def clean(expr: pl.Expr) -> pl.Expr:
    """Trim, fold the many spellings of a.m./p.m. and collapse inner spaces."""
    e = expr.str.strip_chars().str.to_uppercase()
    e = e.str.replace_all(r"\s+", " ")
    e = e.str.replace_all(r"\s*A\.?\s?M\.?$", " AM").str.replace_all(r"\s*P\.?\s?M\.?$", " PM")
    e = e.str.replace(r"(\d)H(\d)", "${1}:${2}")  # 14h30
    e = e.str.replace(r"Z$", "")
    return pl.when(e == "").then(None).otherwise(e)


def parse_datetime(expr: pl.Expr, order: str = "dmy") -> pl.Expr:
    """A datetime from text in ISO 8601, or day-first/month-first dates with optional time.

    Values that match no known spelling become null; callers compare with the raw
    value to tell "missing" from "unparseable".
    """
    e = clean(expr)
    # ISO with an offset: keep the wall-clock time as written (logs are local time).
    e = e.str.replace(r"([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)[+-]\d{2}:?\d{2}$", "${1}")
    dates = _date_formats(order)
    formats = [
        *_ISO,
        *_with_times(dates),
        *_with_times(_date_formats("ymd")),
        *dates,
        *_date_formats("ymd"),
    ]
    return pl.coalesce([e.str.to_datetime(f, strict=False, time_unit="us") for f in formats])


def parse_date(expr: pl.Expr, order: str = "dmy") -> pl.Expr:
    return parse_datetime(expr, order).dt.date()


def parse_time(expr: pl.Expr) -> pl.Expr:
    """A time of day from ``HH:MM[:SS]``, ``h:mm a.m.`` or ``HHMM``."""
    e = clean(expr)
    return pl.coalesce([e.str.to_time(f, strict=False) for f in _TIMES])


def _all_datetime_formats(order: str) -> list[str]:
    dates = _date_formats(order)
    return [
        *_ISO,
        *_with_times(dates),
        *_with_times(_date_formats("ymd")),
        *dates,
        *_date_formats("ymd"),
    ]


def to_datetime(
    values: pl.Series, order: str = "dmy", formats: list[str] | None = None
) -> pl.Series:
    """Parse a text column to datetimes, fast: the formats that fit a sample go first.

    Trying every spelling on every row costs one pass per spelling, so the spellings that
    read a sample go first and only rows still unparsed are tried against the rest.
    """
    formats = formats or _all_datetime_formats(order)
    fast = _as_written(values, formats)
    if fast is None:
        return _full(values, formats)
    left = fast.is_null() & values.is_not_null()
    if not left.any():
        return fast.alias(values.name)
    # The few rows the sample's spellings could not read go through the full path.
    idx = left.arg_true()
    return fast.scatter(idx, _full(values.gather(idx), formats)).alias(values.name)


def _as_written(values: pl.Series, formats: list[str]) -> pl.Series | None:
    """Parse text as written when a sample of it reads without cleaning, else None.

    Cleaning (trimming, a.m./p.m. spellings, offsets) costs several passes over every row;
    most exports write one clean spelling, which one parse per spelling reads directly.
    """
    # Spread over the batch; rows it misses that do not read are caught by the caller.
    spread = values.gather_every(max(1, len(values) // 5000))
    sample = spread.drop_nulls().unique(maintain_order=True).head(500)
    if sample.is_empty():
        return None
    ranked = []
    for f in formats:
        read = sample.str.to_datetime(f, strict=False, time_unit="us").is_not_null()
        if read.any():
            ranked.append(f)
            sample = sample.filter(~read)
            if sample.is_empty():
                break
    if not sample.is_empty():
        return None
    # Caching parses per distinct text pays only when texts repeat (dates without times).
    cache = spread.n_unique() < len(spread) // 2
    result = values.str.to_datetime(ranked[0], strict=False, time_unit="us", cache=cache)
    for f in ranked[1:]:
        again = values.str.to_datetime(f, strict=False, time_unit="us", cache=cache)
        result = result.fill_null(again)
    return result


def _full(values: pl.Series, formats: list[str]) -> pl.Series:
    text = (
        values.to_frame("v")
        .select(
            clean(pl.col("v")).str.replace(
                r"([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)[+-]\d{2}:?\d{2}$", "${1}"
            )
        )
        .to_series()
    )
    # Greedy on a sample: the first spellings (in order of preference) that read it, until
    # the whole sample is read; usually one or two spellings, whatever the batch size.
    sample = text.drop_nulls().unique(maintain_order=True).head(500)
    ranked = []
    for f in formats:
        if sample.is_empty():
            break
        read = sample.str.to_datetime(f, strict=False, time_unit="us").is_not_null()
        if read.any():
            ranked.append(f)
            sample = sample.filter(~read)
    result = pl.Series(values.name, [None] * len(values), dtype=pl.Datetime("us"))
    rest = [f for f in formats if f not in ranked]
    for f in [*ranked, *rest]:
        left = result.is_null() & text.is_not_null()
        if not left.any():
            break
        if left.all():
            result = text.str.to_datetime(f, strict=False, time_unit="us")
            continue
        idx = left.arg_true()  # only rows no earlier spelling could read
        result = result.scatter(
            idx, text.gather(idx).str.to_datetime(f, strict=False, time_unit="us")
        )
    return result.alias(values.name)


def to_time(values: pl.Series) -> pl.Series:
    text = values.to_frame("v").select(clean(pl.col("v"))).to_series()
    out = pl.Series([None] * len(values), dtype=pl.Time)
    for f in _TIMES:
        out = out.fill_null(text.str.to_time(f, strict=False))
    return out.alias(values.name)
