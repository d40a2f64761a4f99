"""Bugs seen on real public logs (issue: real logs nobody here wrote), each as a test.

Every test here failed before its fix: fixed-string quarantine messages on two rows, two-digit
years stored as the year 17, partial edge weeks read as collapses, files without a header,
redaction markers not counted as unidentified, and custody snapshots read as visits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from detector.dates import to_datetime
from detector.engine import run_rules
from detector.errors import FileError
from detector.features import build_features
from detector.ingest import ingest_file
from detector.mapping import UserMapping, load_mapping
from tests.conftest import rows, write_csv

HEADER = ["record_id", "facility", "entered_at", "name"]


def test_several_rows_failing_a_fixed_message_check_are_all_quarantined(store, tmp_path):
    """Two undated rows (and two with NUL bytes) in one batch used to raise ShapeError."""
    data = [
        [1, "ZAC", "", "Ana"],
        [2, "ZAC", "", "Bea"],
        [3, "ZAC", "2022-01-23 10:30", "Carla"],
        [4, "ZAC", "2022-01-23 10:40", "Do\x00ra"],
        [5, "ZAC", "2022-01-23 10:50", "Eva\x00"],
        [6, "ZAC", "", "Flor"],
    ]
    r = ingest_file(store, write_csv(tmp_path / "v.csv", HEADER, data))
    assert r.status == "stored", r.message
    assert (r.rows_read, r.rows_stored, r.rows_quarantined) == (6, 1, 5)
    q = rows(store, "SELECT source_row, reason_code, reason FROM quarantine ORDER BY 1")
    assert [(x[0], x[1]) for x in q] == [
        (2, "missing_required"),
        (3, "missing_required"),
        (5, "nul_byte"),
        (6, "nul_byte"),
        (7, "missing_required"),
    ]
    assert q[0][2] == "required field entered_at is empty"


@pytest.mark.parametrize(
    ("order", "text", "expected"),
    [
        ("mdy", "1/23/17", datetime(2017, 1, 23)),
        ("mdy", "1/23/17 10:30", datetime(2017, 1, 23, 10, 30)),
        ("dmy", "23/01/17", datetime(2017, 1, 23)),
        ("dmy", "05/06/19 10:30", datetime(2019, 6, 5, 10, 30)),
        ("mdy", "05/06/19 10:30", datetime(2019, 5, 6, 10, 30)),
        ("dmy", "23-01-69", datetime(2069, 1, 23)),
        ("dmy", "23.01.70", datetime(1970, 1, 23)),
        ("ymd", "17-01-23", datetime(2017, 1, 23)),
        ("dmy", "1/2/2019 8:05 p.m.", datetime(2019, 2, 1, 20, 5)),
    ],
)
def test_two_digit_years_pivot_into_a_window(order, text, expected):
    assert to_datetime(pl.Series([text]), order).to_list() == [expected]


def test_the_pivot_is_settable_in_a_mapping():
    assert to_datetime(pl.Series(["1/2/45"]), "dmy", years_from=1900).to_list() == [
        datetime(1945, 2, 1)
    ]
    assert UserMapping(two_digit_years_from=1950).two_digit_years_from == 1950


def test_implausible_years_are_quarantined_never_stored(store, tmp_path):
    data = [
        [1, "ZAC", "1/23/17 10:30", "Ana"],
        [2, "ZAC", "1/23/0017 10:30", "Bea"],
        [3, "ZAC", "1/23/1931 10:30", "Carla"],
        [4, "ZAC", f"1/23/{datetime.now().year + 3} 10:30", "Dora"],
    ]
    r = ingest_file(
        store, write_csv(tmp_path / "v.csv", HEADER, data), mapping=UserMapping(date_order="mdy")
    )
    assert r.rows_stored == 1
    assert rows(store, "SELECT entered_at, entered_at_raw FROM visits") == [
        (datetime(2017, 1, 23, 10, 30), "1/23/17 10:30")
    ]
    q = rows(store, "SELECT source_row, reason_code, reason FROM quarantine ORDER BY 1")
    assert [x[1] for x in q] == ["implausible_date"] * 3
    assert "reads as the year 17, outside 1950-" in q[0][2]


def _week_of_visits(start: datetime, days: int, per_day: int) -> list[list]:
    out = []
    for d in range(days):
        for i in range(per_day):
            at = start + timedelta(days=d, hours=8 + i % 8, minutes=i % 60)
            out.append([f"R{start:%m%d}{d}-{i}", "ZAC", at.isoformat(sep=" "), f"P {d} {i}"])
    return out


def _features(store, tmp_path) -> pl.DataFrame:
    out = tmp_path / "features.parquet"
    build_features(store, out)
    return pl.read_parquet(out)


def test_partial_edge_weeks_are_not_read_as_collapses(store, tmp_path):
    """A file that starts on a Sunday and ends on a Monday: its first and last weeks hold
    one day each, which the volume feature used to score as suspensions."""
    data = _week_of_visits(datetime(2022, 2, 6), 1, 20)  # Sunday 6 Feb only
    for monday in (7, 14, 21):
        data += _week_of_visits(datetime(2022, 2, monday), 7, 20)
    data += _week_of_visits(datetime(2022, 2, 28), 1, 20)  # Monday 28 Feb only
    ingest_file(store, write_csv(tmp_path / "v.csv", HEADER, data))
    features = _features(store, tmp_path)
    edge = features.filter(pl.col("entered_at").dt.day().is_in([6, 28]))
    assert edge.height == 40
    assert edge.get_column("volume_drop").max() == 0


def test_a_whole_week_of_silence_inside_the_data_still_counts_as_a_drop(store, tmp_path):
    data = []
    for monday in (7, 14, 21, 28):
        data += _week_of_visits(datetime(2022, 3, monday), 7, 20)
    data += _week_of_visits(datetime(2022, 4, 4), 7, 1)  # a whole week, 7 visits
    data += _week_of_visits(datetime(2022, 4, 11), 7, 20)
    ingest_file(store, write_csv(tmp_path / "v.csv", HEADER, data))
    features = _features(store, tmp_path)
    low = features.filter(
        pl.col("entered_at") >= datetime(2022, 4, 4), pl.col("entered_at") < datetime(2022, 4, 11)
    )
    assert low.get_column("volume_drop").min() > 0


def test_a_file_without_a_header_row_is_read_with_the_mappings_names(store, tmp_path):
    path = tmp_path / "foia.csv"
    path.write_text("U1,WH,1/23/17 10:30,(b)(6)\nU2,WH,1/23/17 11:30,Ana Perez\nU3,WH,,Bea Ruiz\n")
    mapping_file = tmp_path / "foia.toml"
    mapping_file.write_text(
        'kind = "visits"\ndate_order = "mdy"\nheader = false\n'
        'names = ["appt", "site", "arrived", "visitor"]\n'
        '[columns]\nrecord_id = "appt"\nfacility = "site"\nentered_at = "arrived"\n'
        'name = "visitor"\n'
    )
    r = ingest_file(store, path, mapping=load_mapping(mapping_file))
    assert r.status == "stored", r.message
    assert (r.rows_read, r.rows_stored, r.rows_quarantined) == (3, 2, 1)
    assert rows(store, "SELECT record_id, source_row FROM visits ORDER BY 1") == [
        ("U1", 1),
        ("U2", 2),
    ]
    # rows are numbered from 1: the first line is data
    assert rows(store, "SELECT source_row FROM quarantine") == [(3,)]


def test_headerless_mapping_must_name_every_column(store, tmp_path):
    path = tmp_path / "foia.csv"
    path.write_text("U1,WH,1/23/17 10:30,Ana\n")
    with pytest.raises(FileError, match="header = false needs 'names'"):
        load_mapping(_write(tmp_path / "a.toml", 'header = false\nkind = "visits"\n'))
    mapping = UserMapping(kind="visits", header=False, names=["a", "b", "c"])
    r = ingest_file(store, path, mapping=mapping)
    assert r.status == "failed" and "names 3 columns but the first line has 4" in r.message


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("(b)(6)", "redacted"),
        ("(b)(6) (b)(6)", "redacted"),
        ("(B)(7)(C)", "redacted"),
        ("[REDACTED]", "redacted"),
        ("XXXX", "redacted"),
        ("***", "redacted"),
        ("N/I", "placeholder"),
        ("Acompañante 2", "placeholder"),
        ("", "blank"),
        ("---", "blank"),
        ("Xiomara Xx", "named"),
        ("Ana Pérez", "named"),
    ],
)
def test_redaction_markers_are_unidentified_and_told_apart(store, tmp_path, name, status):
    r = ingest_file(
        store, write_csv(tmp_path / "v.csv", HEADER, [[1, "ZAC", "2022-01-03 10:00", name]])
    )
    assert r.rows_stored == 1
    assert rows(store, "SELECT name_status FROM visits") == [(status,)]
    run_rules(store)
    flags = rows(
        store,
        "SELECT severity, explanation FROM flags WHERE rule_id = 'unidentified-placeholder-name'",
    )
    if status == "named":
        assert flags == []
    elif status == "redacted":
        assert flags[0][0] == "low" and "the publisher withheld the name" in flags[0][1]
    else:
        assert flags[0][0] == "high" and "withheld" not in flags[0][1]


def test_a_mapping_adds_its_own_placeholders_and_redaction_markers(store, tmp_path):
    data = [[1, "ZAC", "2022-01-03 10:00", "Sin datos"], [2, "ZAC", "2022-01-03 10:00", "<<PRIV>>"]]
    mapping = UserMapping(placeholders=["Sin datos"], redactions=["<<PRIV>>"])
    ingest_file(store, write_csv(tmp_path / "v.csv", HEADER, data), mapping=mapping)
    assert rows(store, "SELECT record_id, name_status FROM visits ORDER BY 1") == [
        ("1", "placeholder"),
        ("2", "redacted"),
    ]


SNAPSHOT = ["INMATEID", "ADMITTED_DT", "DISCHARGED_DT", "CUSTODY_LEVEL", "TOP_CHARGE"]


def test_a_custody_snapshot_is_refused_as_visits_with_what_it_is(store, tmp_path):
    data = [[i, f"199{i % 10}-01-23 13:38:30", "", "MIN", "220.45"] for i in range(30)]
    path = write_csv(tmp_path / "dic.csv", SNAPSHOT, data)
    for kind in (None, "visits"):
        r = ingest_file(store, path, kind=kind)
        assert r.status == "failed"
        assert "custody snapshot" in r.message and "ADMITTED_DT" in r.message
    assert rows(store, "SELECT count(*) FROM visits") == [(0,)]


def test_custody_records_renamed_into_a_visit_mapping_are_refused_by_their_stays(store, tmp_path):
    data = [
        [f"I{i}", "NYC", f"2015-0{1 + i % 9}-11 05:07", f"2016-06-0{1 + i % 9} 10:00", "x"]
        for i in range(40)
    ]
    path = write_csv(tmp_path / "renamed.csv", ["id", "site", "in", "out", "who"], data)
    mapping = UserMapping(
        kind="visits",
        columns={
            "record_id": "id",
            "facility": "site",
            "entered_at": "in",
            "exited_at": "out",
            "name": "who",
        },
    )
    r = ingest_file(store, path, mapping=mapping)
    assert r.status == "failed" and "median stay is" in r.message and "custody" in r.message
    assert rows(store, "SELECT count(*) FROM visits") == [(0,)]
    assert rows(store, "SELECT count(*) FROM flags") == [(0,)]
