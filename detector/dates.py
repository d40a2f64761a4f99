"""Parse the date and time spellings found in transcribed logbooks, as polars expressions."""

from __future__ import annotations

from datetime import date

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
    # Four-digit years only: two-digit years are widened first (see ``widen_years``), and
    # polars' ``%Y`` would otherwise read "17" as the year 17.
    if order == "ymd":
        return ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d")
    parts = ("%d", "%m") if order == "dmy" else ("%m", "%d")
    return tuple(sep.join((*parts, "%Y")) for sep in ("/", "-", "."))


# A date written with a two-digit year, split as (before the year, the year, the rest):
# day and month first (``23/01/17 10:30``) or, in ``ymd`` order, the year first.
_SHORT_YEAR = {
    "last": r"^(\s*\d{1,2}[/.\-]\d{1,2}[/.\-])(\d{2})((?:\D.*)?)$",
    "first": r"^(\s*)(\d{2})([/.\-]\d{1,2}[/.\-]\d{1,2}(?:\D.*)?)$",
}
# Two-digit years fall in this window unless a mapping says otherwise: 70 -> 1970, 69 -> 2069.
DEFAULT_YEARS_FROM = 1970
# An access log's dates lie between these (the upper bound is next year): anything else is
# a transcription error, not a date to store.
PLAUSIBLE_FROM_YEAR = 1950


def plausible_until_year() -> int:
    return date.today().year + 1


def widen_years(
    values: pl.Series, order: str = "dmy", years_from: int = DEFAULT_YEARS_FROM
) -> pl.Series:
    """Two-digit years written out in full, into the window ``years_from .. years_from+99``.

    ``23/01/17`` -> ``23/01/2017``; with the year first (``ymd``) ``17-01-23`` ->
    ``2017-01-23``. Other text is left exactly as written.
    """
    pattern = _SHORT_YEAR["first" if order == "ymd" else "last"]
    if values.dtype != pl.String or not values.str.contains(pattern).any():
        return values
    parts = values.str.extract_groups(pattern).struct.unnest()
    before, yy, rest = (pl.col(c) for c in parts.columns)
    year = yy.cast(pl.Int32)
    century = (
        pl.when(year >= years_from % 100).then(years_from // 100).otherwise(years_from // 100 + 1)
    )
    full = pl.concat_str([before, century.cast(pl.String), yy, rest])
    return (
        parts.with_columns(v=values)
        .select(pl.when(yy.is_null()).then(pl.col("v")).otherwise(full))
        .to_series()
        .alias(values.name)
    )


def clean(expr: pl.Expr) -> pl.Expr:
    """Trim, fold the many spellings of a.m./p.m. and collapse inner spaces."""
    e = expr.str.strip_chars().str.to_uppercase()
    e = e.str.replace_all(r"\s+", " ")
    e = e.str.replace_all(r"\s*A\.?\s?M\.?$", " AM").str.replace_all(r"\s*P\.?\s?M\.?$", " PM")
    e = e.str.replace(r"(\d)H(\d)", "${1}:${2}")  # 14h30
    e = e.str.replace(r"Z$", "")
    return pl.when(e == "").then(None).otherwise(e)


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
    values: pl.Series,
    order: str = "dmy",
    formats: list[str] | None = None,
    years_from: int = DEFAULT_YEARS_FROM,
) -> pl.Series:
    """Parse a text column to datetimes, fast: the formats that fit a sample go first.

    Two-digit years are widened first (``widen_years``). Trying every spelling on every row
    costs one pass per spelling, so the spellings that read a sample go first and only rows
    still unparsed are tried against the rest.
    """
    formats = formats or _all_datetime_formats(order)
    values = widen_years(values, order, years_from)
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
