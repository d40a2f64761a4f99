"""Dates as other systems write them (issue 24): zones after the time, epochs, months in
words. Each of these read as nothing before, and the row went to quarantine."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from detector.dates import timed, to_datetime


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2017-11-11 00:42:00 EST", datetime(2017, 11, 11, 0, 42)),
        ("2017-11-11 00:42:00 est", datetime(2017, 11, 11, 0, 42)),
        ("2020-03-12 09:30:00 PET", datetime(2020, 3, 12, 9, 30)),
        ("2020-03-12 09:30:00 -05:00", datetime(2020, 3, 12, 9, 30)),
        ("2020-03-12T09:30:00-0500", datetime(2020, 3, 12, 9, 30)),
        ("12/03/2020 09:30 GMT-5", datetime(2020, 3, 12, 9, 30)),
        ("19/08/2015 04:01:20 p.m. PET", datetime(2015, 8, 19, 16, 1, 20)),
    ],
)
def test_a_zone_after_the_time_is_read_and_the_time_kept_as_written(text, expected):
    """Without a mapping timezone the clock time is stored as written (the zone stays in
    the raw text); a zone abbreviation in lower case is one too."""
    assert to_datetime(pl.Series([text])).to_list() == [expected]


def test_a_time_in_another_zone_is_brought_to_the_logs_clock():
    """With the mapping's timezone, a time written in that zone stays as written and one
    written in another (a UTC export, an offset) is what the log's clock showed."""
    values = pl.Series(
        ["2020-03-12 09:30:00 PET", "2020-03-12 14:30:00 UTC", "2020-03-12T14:30:00Z",
         "2020-03-12 10:30:00 -04:00", "2020-03-12 09:30"]
    )  # fmt: skip
    got = to_datetime(values, timezone="America/Lima").to_list()
    assert got == [datetime(2020, 3, 12, 9, 30)] * 5
    # New York's clock in July is UTC-4: "EDT" stays, "EST" (an hour behind) is moved on
    ny = to_datetime(
        pl.Series(["2017-07-11 10:00 EDT", "2017-07-11 10:00 EST"]), timezone="America/New_York"
    )
    assert ny.to_list() == [datetime(2017, 7, 11, 10, 0), datetime(2017, 7, 11, 11, 0)]


def test_a_word_after_a_time_that_is_no_zone_is_not_read_as_one():
    assert to_datetime(pl.Series(["2020-03-12 09:30 XYZ", "2020-03-12 09:30 PM"])).to_list() == [
        None,
        datetime(2020, 3, 12, 21, 30),
    ]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1584023400000", datetime(2020, 3, 12, 14, 30)),  # milliseconds
        ("1584023400", datetime(2020, 3, 12, 14, 30)),  # seconds
        ("1584023400.0", datetime(2020, 3, 12, 14, 30)),  # seconds, as a spreadsheet writes
    ],
)
def test_epochs_are_instants(text, expected):
    """An epoch is an instant: UTC without a mapping timezone, that zone's clock with one."""
    assert to_datetime(pl.Series([text])).to_list() == [expected]
    assert to_datetime(pl.Series([text]), timezone="America/Lima").to_list() == [
        datetime(2020, 3, 12, 9, 30)
    ]


@pytest.mark.parametrize(
    "text,expected,is_timed",
    [
        ("43902", datetime(2020, 3, 12), False),
        ("43902.0", datetime(2020, 3, 12), False),
        ("43902.604166667", datetime(2020, 3, 12, 14, 30), True),
    ],
)
def test_excel_serials_are_the_clock_times_they_stand_for(text, expected, is_timed):
    """A date typed in a cell of General format (or a CSV saved from one) is a serial:
    days since 1899-12-30, the fraction the time of day; a clock time, not an instant."""
    assert to_datetime(pl.Series([text])).to_list() == [expected]
    assert to_datetime(pl.Series([text]), timezone="America/Lima").to_list() == [expected]
    assert pl.select(timed(pl.lit(text))).item() is is_timed


@pytest.mark.parametrize(
    "text,expected",
    [("08:05 hrs", "08:05"), ("0805 HORAS", "08:05"), ("12:00 m.", "12:00"), ("12 m.", "12:00"),
     ("8.05", "08:05"), ("805", "08:05"), ("8:05a", "08:05"), ("8:05p", "20:05"),
     ("20:05 p. m.", "20:05"), ("12:15 a. m.", "00:15"),
     ("02:14:57 p.m.", "14:14"),  # (minutes past 12 are not an hour)
     ("24:00", "00:00"), ("2400", "00:00"), ("24.00", "00:00"), ("24:00 hrs", "00:00")],
)  # fmt: skip
def test_times_as_official_records_write_them(text, expected):
    """Times a new user's logbooks wrote that set their visits aside."""
    from detector.dates import to_time

    assert to_time(pl.Series([text])).item().strftime("%H:%M") == expected


def test_numbers_that_are_not_epochs_stay_unread():
    assert to_datetime(pl.Series(["12345", "20200312", "158402340012345"])).to_list() == [None] * 3


@pytest.mark.parametrize(
    "text,expected",
    [
        ("12 de marzo de 2020", datetime(2020, 3, 12)),
        ("12 de marzo del 2020 10:50", datetime(2020, 3, 12, 10, 50)),
        ("12-mar-2020", datetime(2020, 3, 12)),
        ("12-MAR-20", datetime(2020, 3, 12)),
        ("1 de setiembre de 2015", datetime(2015, 9, 1)),
        ("jueves, 12 de marzo de 2020 04:01 p.m.", datetime(2020, 3, 12, 16, 1)),
        ("Miércoles 11 de marzo de 2020", datetime(2020, 3, 11)),
        ("12 dic. 2019", datetime(2019, 12, 12)),
        ("March 12, 2020", datetime(2020, 3, 12)),
    ],
)
def test_months_in_words(text, expected):
    assert to_datetime(pl.Series([text]), "mdy").to_list() == [expected]
    assert to_datetime(pl.Series([text]), "dmy").to_list() == [expected]


def test_words_that_are_no_month_stay_unread():
    assert to_datetime(pl.Series(["12 de nada de 2020", "pasado mañana"])).to_list() == [None] * 2


def test_what_gives_a_time_of_day():
    texts = pl.Series(["2020-03-12", "2020-03-12 10:50", "1584023400000", "4 PM", "12 de marzo"])
    assert pl.select(timed(pl.lit(texts))).to_series().to_list() == [
        False,
        True,
        True,
        True,
        False,
    ]
