"""Parse the date and time spellings found in transcribed logbooks, as polars expressions."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from detector import lazy

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy.module("polars")


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
    # "08:05 hrs", "08:05 horas": the hours named after the time
    e = e.str.replace(r"(\d)\s*(?:HRS?|HS|HORAS)\.?$", "${1}")
    # "12:00 m." and "12 m." (meridiano): noon
    e = e.str.replace(r"(^|\s)12(?::00)?\s*M\.?$", "${1}12:00")
    e = e.str.replace_all(r"\s*A\.?\s?M\.?$", " AM").str.replace_all(r"\s*P\.?\s?M\.?$", " PM")
    # "20:05 p. m.": a 24-hour time needs no p.m.
    e = e.str.replace(r"^((?:.*\s)?(?:1[3-9]|2[0-3]):\d{2}(?::\d{2})?)\s*P\.?\s?M\.?$", "${1}")
    # "8:05a", "8:05p": a.m. and p.m. by their first letter
    e = e.str.replace(r"(\d:\d{2})\s*A$", "${1} AM").str.replace(r"(\d:\d{2})\s*P$", "${1} PM")
    e = e.str.replace(r"(\d)H(\d)", "${1}:${2}")  # 14h30
    e = e.str.replace(r"(\d)Z$", "${1}")
    return pl.when(e == "").then(None).otherwise(e)


# Whether a date's text as written gives a time of day (a clock time, a.m./p.m., or an
# epoch, which is an instant): a date alone is judged at day precision.
# So does a time of four digits after a date ("14/02/2020 0230", a date column joined to a
# time column written "0230"), and an Excel serial with a fraction of a day ("43900.5").
TIMED = (
    r"\d[:hH]\d|[AP]\.?M|^\s*\d{9,13}(\.\d+)?\s*$"
    r"|[/.-]\d{1,4}\s+[0-2]\d[0-5]\d\s*$|^\s*\d{5}\.\d*[1-9]\d*\s*$"
)


def timed(raw: pl.Expr) -> pl.Expr:
    """True where a date's original text gives a time of day (see ``TIMED``)."""
    return raw.str.contains(TIMED, strict=False).fill_null(False)


# Zones written after a time, in minutes east of UTC. Abbreviations mean what they mean in
# the Americas (CST is US Central, not China) and are believed as written: an "EST" in July
# is read as UTC-5.
ZONES = {
    "Z": 0, "UT": 0, "UTC": 0, "GMT": 0, "WET": 0, "WEST": 60, "CET": 60, "CEST": 120,
    "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420, "MDT": -360,
    "PST": -480, "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600,
    "AST": -240, "ADT": -180, "PET": -300, "PEST": -240, "COT": -300, "ECT": -300,
    "BOT": -240, "VET": -240, "CLT": -240, "CLST": -180, "ART": -180, "BRT": -180,
    "PYT": -240, "PYST": -180, "UYT": -180,
}  # fmt: skip
# A clock time (with a.m./p.m.), then the zone: a name (``EST``), a numeric offset
# (``-05:00``, ``-0500``, ``GMT-5``) or both.
_TIME_PART = r"^(.*\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[AP]\.?\s?M\.?)?)"
_ZONE_OFFSET = _TIME_PART + r"\s*(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$"
_ZONE_NAME = _TIME_PART + r"\s*\(?([A-Z]{1,5})\)?$"


def _zones(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    """The text with a zone written after its time set aside, and that zone's offset in
    minutes east of UTC (None where the text names none, or a word that is no zone)."""
    t = text.str.strip_chars().str.to_uppercase()
    frame = t.to_frame("t").with_columns(
        num=pl.col("t").str.extract_groups(_ZONE_OFFSET),
        name=pl.col("t").str.extract_groups(_ZONE_NAME),
    )
    num, name = pl.col("num").struct, pl.col("name").struct
    hours = num.field("3").cast(pl.Int32, strict=False)
    minutes = num.field("4").cast(pl.Int32, strict=False).fill_null(0)
    sign = pl.when(num.field("2") == "-").then(-1).otherwise(1)
    named = name.field("2").replace_strict(ZONES, default=None, return_dtype=pl.Int32)
    out = frame.select(
        text=pl.when(hours.is_not_null())
        .then(num.field("1"))
        .when(named.is_not_null())
        .then(name.field("1"))
        .otherwise(pl.col("t")),
        offset=pl.when(hours.is_not_null())
        .then(sign * (hours * 60 + minutes))
        .otherwise(named)
        .cast(pl.Int32),
    )
    return out.get_column("text").alias(text.name), out.get_column("offset")


# Months in words (Spanish and English, whole or cut short), upper case without accents.
MONTHS = {
    **dict.fromkeys(("ENERO", "ENE", "JANUARY", "JAN"), 1),
    **dict.fromkeys(("FEBRERO", "FEB", "FEBRUARY"), 2),
    **dict.fromkeys(("MARZO", "MAR", "MARCH"), 3),
    **dict.fromkeys(("ABRIL", "ABR", "APRIL", "APR"), 4),
    **dict.fromkeys(("MAYO", "MAY"), 5),
    **dict.fromkeys(("JUNIO", "JUN", "JUNE"), 6),
    **dict.fromkeys(("JULIO", "JUL", "JULY"), 7),
    **dict.fromkeys(("AGOSTO", "AGO", "AUGUST", "AUG"), 8),
    **dict.fromkeys(("SEPTIEMBRE", "SETIEMBRE", "SEPT", "SEP", "SET", "SEPTEMBER"), 9),
    **dict.fromkeys(("OCTUBRE", "OCT", "OCTOBER"), 10),
    **dict.fromkeys(("NOVIEMBRE", "NOV", "NOVEMBER"), 11),
    **dict.fromkeys(("DICIEMBRE", "DIC", "DECEMBER", "DEC"), 12),
}
# "12 de marzo de 2020", "12-mar-2020", "jueves, 12 de marzo del 2020 10:50"; and the
# English "March 12, 2020".
_DAY_FIRST = (
    r"^(?:[A-Z\u00C0-\u00DD]+,?\s+)?(\d{1,2})(?:\s+DE\s+|\s*[-/.]\s*|\s+)([A-Z]{3,10})\.?"
    r"(?:\s+DEL?\s+|\s*[-/.,]\s*|\s+)(\d{4}|\d{2})(?:\s*,?\s+(.*))?$"
)
_MONTH_FIRST = r"^([A-Z]{3,10})\.?\s+(\d{1,2}),?\s+(\d{4})(?:\s*,?\s+(.*))?$"


def _worded(text: pl.Series, years_from: int = DEFAULT_YEARS_FROM) -> pl.Series:
    """Dates with the month in words written as ``yyyy-mm-dd`` (a time after them kept);
    anything else as it was."""
    if not text.str.contains(r"[A-Z]{3}").any():
        return text
    frame = text.to_frame("t").with_columns(
        d=pl.col("t").str.extract_groups(_DAY_FIRST),
        m=pl.col("t").str.extract_groups(_MONTH_FIRST),
    )
    d, m = pl.col("d").struct, pl.col("m").struct
    day = pl.coalesce(d.field("1"), m.field("2"))
    word = pl.when(d.field("1").is_not_null()).then(d.field("2")).otherwise(m.field("1"))
    year = pl.coalesce(d.field("3"), m.field("3"))
    rest = pl.when(d.field("1").is_not_null()).then(d.field("4")).otherwise(m.field("4"))
    month = word.replace_strict(MONTHS, default=None, return_dtype=pl.Int32)
    yy = year.cast(pl.Int32)
    full_year = (
        pl.when(year.str.len_chars() == 4)
        .then(yy)
        .when(yy >= years_from % 100)
        .then(years_from // 100 * 100 + yy)
        .otherwise((years_from // 100 + 1) * 100 + yy)
    )
    iso = pl.concat_str(
        full_year.cast(pl.String),
        pl.lit("-"),
        month.cast(pl.String).str.zfill(2),
        pl.lit("-"),
        day.str.zfill(2),
        pl.when(rest.is_not_null() & (rest != "")).then(pl.lit(" ") + rest).otherwise(pl.lit("")),
    )
    return (
        frame.select(pl.when(month.is_not_null()).then(iso).otherwise(pl.col("t")))
        .to_series()
        .alias(text.name)
    )


def _epochs(text: pl.Series) -> pl.Series | None:
    """Epoch times (seconds, with or without a fraction, or milliseconds, as JSON services
    and spreadsheets export them) as UTC datetimes; None when no row is one."""
    seconds = r"^(\d{9,10})(?:\.\d+)?$"
    millis = r"^(\d{12,13})$"
    if not text.str.contains(f"{seconds}|{millis}").any():
        return None
    micros = text.to_frame("t").select(
        pl.coalesce(
            pl.col("t").str.extract(seconds).cast(pl.Int64) * 1_000_000,
            pl.col("t").str.extract(millis).cast(pl.Int64) * 1_000,
        )
    )
    return pl.from_epoch(micros.to_series(), time_unit="us").alias(text.name)


# Excel's serial dates (days since 1899-12-30, a fraction the time of day), as a cell in
# General format or a CSV saved from one shows them: five digits, 1954 to 2119.
_SERIAL = r"^(\d{5}(?:\.\d+)?)$"
_SERIAL_DAYS = (20_000, 80_000)


def _serials(text: pl.Series) -> pl.Series | None:
    """Excel serial dates as the clock times they stand for (not instants: the clock of
    the spreadsheet's author); None when no row is one."""
    if not text.str.contains(_SERIAL).any():
        return None
    low, high = _SERIAL_DAYS
    days = pl.col("t").str.extract(_SERIAL).cast(pl.Float64)
    micros = (days * 86_400).round().cast(pl.Int64) * 1_000_000  # to the second
    moment = pl.datetime(1899, 12, 30, time_unit="us") + pl.duration(microseconds=micros)
    return (
        text.to_frame("t")
        .select(pl.when((days >= low) & (days < high)).then(moment))
        .to_series()
        .alias(text.name)
    )


def _on_clock(values: pl.Series, offsets: pl.Series, timezone: str) -> pl.Series:
    """Times written in a zone (``offsets``, minutes east of UTC) as the clock of
    ``timezone`` showed them; times written without one stay as they are."""
    return (
        pl.DataFrame({"v": values, "o": offsets})
        .select(
            pl.when(pl.col("o").is_null())
            .then(pl.col("v"))
            .otherwise(
                (pl.col("v") - pl.duration(minutes=pl.col("o")))
                .dt.replace_time_zone("UTC")
                .dt.convert_time_zone(timezone)
                .dt.replace_time_zone(None)
            )
        )
        .to_series()
        .alias(values.name)
    )


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
    timezone: str | None = None,
) -> pl.Series:
    """Parse a text column to datetimes, fast: the formats that fit a sample go first.

    Two-digit years are widened first (``widen_years``). Trying every spelling on every row
    costs one pass per spelling, so the spellings that read a sample go first and only rows
    still unparsed are tried against the rest. Those rows may also be written with a zone
    (``EST``, ``-05:00``), as an epoch (seconds or milliseconds) or with the month in words
    (``12 de marzo de 2020``): see ``_full``. ``timezone`` is the zone the log's clock
    kept (a mapping's ``timezone``): a time written in another zone, or an epoch, is stored
    as that clock would have shown it.
    """
    formats = formats or _all_datetime_formats(order)
    values = widen_years(values, order, years_from)
    fast = _as_written(values, formats)
    if fast is None:
        return _full(values, formats, years_from, timezone)
    left = fast.is_null() & values.is_not_null()
    if not left.any():
        return fast.alias(values.name)
    # The few rows the sample's spellings could not read go through the full path.
    idx = left.arg_true()
    full = _full(values.gather(idx), formats, years_from, timezone)
    return fast.scatter(idx, full).alias(values.name)


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


def _full(
    values: pl.Series,
    formats: list[str],
    years_from: int = DEFAULT_YEARS_FROM,
    timezone: str | None = None,
) -> pl.Series:
    """Every spelling tried on every row still unread: cleaned first (``clean``), its zone
    set aside (``_zones``), a month in words written as a number (``_worded``), a "24:00"
    read as the next day's 00:00; then epochs, and the times written in another zone
    brought to ``timezone``'s clock."""
    text, offsets = _zones(values)
    text = text.to_frame("v").select(clean(pl.col("v"))).to_series()
    text = _worded(text, years_from)
    ends = text.str.contains(_END_OF_DAY).fill_null(False)
    if ends.any():  # "01/04/2020 24:00": 00:00 of 2 April
        text = text.to_frame("v").select(_midnight(pl.col("v"))).to_series()
        result = _parsed(text, formats)
        result = pl.select(
            pl.when(pl.lit(ends))
            .then(pl.lit(result) + pl.duration(days=1))
            .otherwise(pl.lit(result))
        ).to_series()
    else:
        result = _parsed(text, formats)
    epochs = _epochs(text)
    if epochs is not None:  # an instant: UTC, unless a spelling above read the text
        frame = pl.DataFrame({"r": result, "e": epochs, "o": offsets})
        offsets = frame.select(
            pl.when(pl.col("r").is_null() & pl.col("e").is_not_null()).then(0).otherwise("o")
        ).to_series()
        result = frame.select(pl.coalesce("r", "e")).to_series()
    serials = _serials(text)
    if serials is not None:  # a clock time, as written: no zone
        result = pl.select(pl.coalesce(pl.lit(result), pl.lit(serials))).to_series()
    if timezone and offsets.is_not_null().any():
        result = _on_clock(result, offsets, timezone)
    return result.alias(values.name)


def _parsed(text: pl.Series, formats: list[str]) -> pl.Series:
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
    result = pl.Series(text.name, [None] * len(text), dtype=pl.Datetime("us"))
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
    return result


# "24:00" (also "24:00:00", "2400", "24.00"), how a clerk writes the midnight that ends a
# day: read as 00:00 of the next day (a time alone: 00:00, which an exit takes on the day
# after its entry; with its date, see ``end_of_day``).
_END_OF_DAY = r"(^|[\sT])24(?:[:.]?00(?::00)?)$"


def end_of_day(values: pl.Series) -> pl.Series:
    """True where a time (or a date and time) is written "24:00": the end of its day."""
    return (
        values.to_frame("v")
        .select(clean(pl.col("v")).str.contains(_END_OF_DAY).fill_null(False))
        .to_series()
    )


def _midnight(text: pl.Expr) -> pl.Expr:
    """A cleaned text's "24:00" written as 00:00 (its day is moved by the caller)."""
    return text.str.replace(_END_OF_DAY, "${1}00:00")


def to_time(values: pl.Series) -> pl.Series:
    """A time column's text as times of day: also "8.05" (a point for the colon), "805"
    (three digits: the hour's leading zero left out) and "24:00" (midnight, 00:00: see
    ``end_of_day``)."""
    text = (
        values.to_frame("v")
        .select(
            _midnight(clean(pl.col("v")))
            .str.replace(r"^(\d{1,2})\.(\d{2})$", "${1}:${2}")
            .str.replace(r"^(\d{3})$", "0${1}")
        )
        .to_series()
    )
    out = pl.Series([None] * len(values), dtype=pl.Time)
    for f in _TIMES:
        out = out.fill_null(text.str.to_time(f, strict=False))
    return out.alias(values.name)
