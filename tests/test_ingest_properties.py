"""Property-based ingest: any mix of good and bad rows, in any order and batch position.

Ingest never raises, every good row is stored exactly once, every bad row is quarantined
once with its reason; two-digit-year spellings read back as the same instant.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from unittest import mock

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector import formats
from detector.dates import to_datetime
from detector.ingest import ingest_file
from tests.conftest import empty_store

HEADER = ["record_id", "facility", "entered_at", "name", "page", "party_size"]

# kind of row -> (cells after the record id, the reason code it must be quarantined with)
ROWS = {
    "good": (["ZAC", "2022-03-01 10:00", "Ana", "4", "1"], None),
    "good_short_year": (["ZAC", "01/03/22 10:00", "Bea", "", ""], None),
    "good_12h": (["ZAC", "1/3/2022 8:05 p.m.", "Cora", "5", "2"], None),
    "no_date": (["ZAC", "", "Dora", "4", "1"], "missing_required"),
    "bad_date": (["ZAC", "31/02/2022 10:00", "Eva", "4", "1"], "unparseable_date"),
    "year_17": (["ZAC", "01/03/0017 10:00", "Flor", "4", "1"], "implausible_date"),
    "no_facility": (["", "2022-03-01 10:00", "Gina", "4", "1"], "missing_required"),
    "bad_page": (["ZAC", "2022-03-01 10:00", "Hugo", "4a", "1"], "invalid_number"),
    "negative_party": (["ZAC", "2022-03-01 10:00", "Ines", "4", "-3"], "negative_number"),
    "nul": (["ZAC", "2022-03-01 10:00", "Ju\x00an", "4", "1"], "nul_byte"),
    "short": (["ZAC", "2022-03-01 10:00", "Kim"], "wrong_field_count"),
    "long": (["ZAC", "2022-03-01 10:00", "Luz", "4", "1", "extra"], "wrong_field_count"),
}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kinds=st.lists(st.sampled_from(sorted(ROWS)), min_size=1, max_size=25),
    batch=st.integers(min_value=1, max_value=7),
)
def test_any_mix_of_rows_is_stored_or_quarantined_once(kinds, batch):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mix.csv"
        lines = [",".join(HEADER)]
        for i, kind in enumerate(kinds):
            lines.append(",".join([f"R{i}", *ROWS[kind][0]]))
        path.write_bytes(("\n".join(lines) + "\n").encode())
        store = empty_store(Path(tmp) / "db" / "d.duckdb", wait=10)
        with mock.patch.object(formats, "BATCH_ROWS", batch):
            result = ingest_file(store, path)
        good = {f"R{i}" for i, k in enumerate(kinds) if ROWS[k][1] is None}
        bad = {i + 2: ROWS[k][1] for i, k in enumerate(kinds) if ROWS[k][1] is not None}
        if not good:
            assert result.status == "failed" or result.rows_stored == 0
            return
        assert result.status == "stored", result.message
        assert (result.rows_read, result.rows_stored, result.rows_quarantined) == (
            len(kinds),
            len(good),
            len(bad),
        )
        with store.read() as con:
            stored = [r[0] for r in con.execute("SELECT record_id FROM visits").fetchall()]
            quarantined = con.execute(
                "SELECT source_row, list(reason_code) FROM quarantine GROUP BY 1"
            ).fetchall()
        assert sorted(stored) == sorted(good)
        assert {row: codes for row, codes in quarantined}.keys() == bad.keys()
        for row, codes in quarantined:
            assert bad[row] in codes, (row, codes)


@settings(max_examples=150, deadline=None)
@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2069, 12, 31)),
    st.sampled_from(["dmy", "mdy", "ymd"]),
    st.sampled_from(["/", "-", "."]),
    st.booleans(),
)
def test_two_digit_year_spellings_round_trip(when, order, sep, with_time):
    when = when.replace(second=0, microsecond=0)
    yy = f"{when.year % 100:02d}"
    parts = {
        "dmy": [str(when.day), str(when.month), yy],
        "mdy": [str(when.month), str(when.day), yy],
        "ymd": [yy, f"{when.month:02d}", f"{when.day:02d}"],
    }[order]
    text = sep.join(parts) + (f" {when.hour:02d}:{when.minute:02d}" if with_time else "")
    expected = when if with_time else when.replace(hour=0, minute=0)
    assert to_datetime(pl.Series([text]), order).to_list() == [expected], text
