"""Readers: encodings, delimiters and file formats auditors send."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.errors import FileError
from detector.formats import read_table, sniff_delimiter
from tests.conftest import write_csv

HEADER = ["Centro Penal", "Fecha", "Hora Ingreso", "Nombre", "Institución"]
ROW = ["ZAC", "05/02/2022", "08:05", "José Peña", "Dirección €"]


@pytest.mark.parametrize(
    "encoding,expected",
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("cp1252", "cp1252"),
        ("utf-16", "utf-16"),
        ("utf-16-le", "utf-16-le"),
    ],
)
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_encodings_and_delimiters(tmp_path, encoding, expected, delimiter):
    path = write_csv(tmp_path / "v.csv", HEADER, [ROW, ROW], encoding, delimiter)
    table = read_table(path)
    assert table.encoding == expected
    assert table.delimiter == delimiter
    assert table.frame.columns == HEADER
    assert table.frame.row(0) == tuple(ROW)


@pytest.mark.parametrize("name", ["Óscar Lemus Marroquín", "Peña", "José"])
def test_a_few_accents_in_a_short_file_are_windows_1252(tmp_path, name):
    path = write_csv(tmp_path / "v.csv", ["Centro", "Nombre"], [["ZAC", name]], "cp1252", ";")
    table = read_table(path)
    assert table.encoding == "cp1252" and table.frame.row(0)[1] == name


def test_latin1_without_euro(tmp_path):
    path = write_csv(tmp_path / "v.csv", HEADER, [[*ROW[:4], "Dirección"]], "latin-1", ";")
    table = read_table(path)
    assert table.frame.row(0)[3] == "José Peña"
    assert table.frame.row(0)[4] == "Dirección"


def test_xlsx_parquet_json_ndjson(tmp_path):
    frame = pl.DataFrame({h: [v] for h, v in zip(HEADER, ROW, strict=True)})
    frame.write_excel(tmp_path / "v.xlsx")
    frame.write_parquet(tmp_path / "v.parquet")
    (tmp_path / "v.json").write_text(json.dumps(frame.to_dicts()), encoding="utf-8")
    (tmp_path / "v.ndjson").write_text(
        "\n".join(json.dumps(r) for r in frame.to_dicts()), encoding="utf-8"
    )
    for name, fmt in (
        ("v.xlsx", "xlsx"),
        ("v.parquet", "parquet"),
        ("v.json", "json"),
        ("v.ndjson", "ndjson"),
    ):
        table = read_table(tmp_path / name)
        assert table.format == fmt
        assert table.frame.row(0) == tuple(ROW), name


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"Centro;Fecha;Hora Ingreso\r\n", "header but no data"),
        (bytes(range(256)) * 40, "binary"),
        (b"   \n\n  \n", "blank"),
    ],
)
def test_file_level_errors_are_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(FileError) as exc:
        read_table(path)
    assert "bad.csv" in str(exc.value) and message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_ragged_rows_are_kept_apart_not_fatal(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n", encoding="utf-8")
    table = read_table(path)
    assert [b[0] for b in table.broken] == [3, 4]
    good = table.frame.filter(~pl.col("__broken__"))
    assert good.get_column("a").to_list() == ["1", "10"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
        min_size=3,
        max_size=3,
    ),
    st.sampled_from([",", ";", "\t", "|"]),
)
def test_sniffer_finds_the_delimiter_of_quoted_rows(cells, delimiter):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL)
    w.writerow(["facility", "entered_at", "name"])
    for _ in range(5):
        w.writerow(cells)
    assert sniff_delimiter(buf.getvalue()) == delimiter


def test_all_sheets_stack_with_their_sheet_and_row():
    """``sheet = "*"``: a FOIA workbook with one sheet per year is one table; headers
    that differ only in case match, and a sheet with other columns is named."""
    from detector.sandbox import stack_sheets

    frames = {
        "2020": pl.DataFrame({"Date in": ["2020-01-02", "2020-01-03"], "Reason": ["a", "b"]}),
        "2015": pl.DataFrame({"date in ": ["2015-01-03"], "reason": ["c"]}),
    }
    out = stack_sheets(frames)
    assert out.columns == ["Date in", "Reason", "sheet", "sheet_row"]
    assert out.rows() == [
        ("2020-01-02", "a", "2020", "2"),
        ("2020-01-03", "b", "2020", "3"),
        ("2015-01-03", "c", "2015", "2"),
    ]
    frames["2014"] = pl.DataFrame({"Fecha": ["2014-01-01"], "Reason": ["d"]})
    with pytest.raises(ValueError, match="sheet '2014' has other columns than sheet '2020'"):
        stack_sheets(frames)


def test_a_json_export_s_nested_objects_are_columns_found_by_their_own_names(store, tmp_path):
    """A badge web service's records nest the person ({"person": {"name": …, "card": …}}):
    the whole object was stored as the name, and the card lost (found by a new user)."""
    from detector.ingest import ingest_file
    from tests.conftest import rows

    records = [
        {"id": "e1", "timestamp": "2020-03-10 09:00", "site": "ZAC", "door": "Garita",
         "direction": "IN", "person": {"name": "Rosa Martínez", "card": "V-01"}},
        {"id": "e2", "timestamp": "2020-03-10 04:00", "site": "ZAC", "door": "Garita",
         "direction": "IN", "person": {"name": None, "card": "V-09", "extra": {"a": [1]}}},
    ]  # fmt: skip
    path = tmp_path / "eventos.json"
    path.write_text(json.dumps({"total": 2, "data": records}), encoding="utf-8")
    assert read_table(path).columns == [
        "id", "timestamp", "site", "door", "direction", "person.name", "person.card",
        "person.extra.a",
    ]  # fmt: skip
    r = ingest_file(store, path)
    assert r.rows_stored == 2, r.reasons
    assert rows(store, "SELECT name, badge FROM events ORDER BY record_id") == [
        ("Rosa Martínez", "V-01"),
        (None, "V-09"),
    ]


def test_a_windows_file_with_utf8_lines_appended_reads_each_line_as_written(tmp_path):
    """Exports joined together: UTF-8 lines and a Windows-1252 one in one file. Read whole
    as Windows-1252, the UTF-8 names came out as "MartÃ­nez" with no warning (found by a
    new user)."""
    path = tmp_path / "mixed.csv"
    utf8 = "centro,ingreso,nombre\nZAC,2020-03-10 09:00,Rosa Martínez\n".encode()
    path.write_bytes(utf8 + "ZAC,2020-03-10 10:00,José Peña\n".encode("cp1252"))
    table = read_table(path)
    assert table.frame.get_column("nombre").to_list() == ["Rosa Martínez", "José Peña"]
    assert table.encoding == "cp1252 and utf-8 by line"
    only = tmp_path / "windows.csv"
    only.write_bytes("centro,ingreso,nombre\nZAC,2020-03-10 10:00,José Peña\n".encode("cp1252"))
    assert read_table(only).encoding == "cp1252"
