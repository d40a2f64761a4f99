"""Ingest: canonical kinds, quarantine with reasons, duplicates, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date

import polars as pl
import pytest

from detector import formats, ingest, ledger
from detector.engine import run_rules
from detector.ingest import ingest_file
from detector.mapping import UserMapping, load_mapping
from detector.pipeline import ingest_files
from tests.conftest import REPO, rows, write_csv

SPANISH = [
    "Correlativo",
    "Centro Penal",
    "Garita",
    "Libro",
    "Folio",
    "Línea",
    "Fecha",
    "Hora Ingreso",
    "Hora Salida",
    "Nombre",
    "Tipo Documento",
    "Documento",
    "Calidad",
    "Interno",
    "Personas",
]


def visit(n, fecha="05/02/2022", entra="08:05", sale="09:10", nombre="José Pérez", **kw):
    base = {
        "Correlativo": f"R{n}",
        "Centro Penal": "ZAC",
        "Garita": "Principal",
        "Libro": "10",
        "Folio": "1",
        "Línea": str(n),
        "Fecha": fecha,
        "Hora Ingreso": entra,
        "Hora Salida": sale,
        "Nombre": nombre,
        "Tipo Documento": "DUI",
        "Documento": "01234567-8",
        "Calidad": "Familiar",
        "Interno": "PDL-1",
        "Personas": "1",
    }
    base.update(kw)
    return [base[h] for h in SPANISH]


def test_spanish_cp1252_export_maps_to_canonical_visits(store, tmp_path):
    path = write_csv(
        tmp_path / "visitas.csv",
        SPANISH,
        [
            visit(1),
            visit(
                2,
                entra="23:40",
                sale="01:10",
                nombre="Acompañante",
                Calidad="Funcionario",
                **{"Tipo Documento": "Pasaporte"},
            ),
        ],
        "cp1252",
        ";",
    )
    r = ingest_file(store, path)
    assert (r.status, r.kind, r.rows_stored, r.rows_quarantined) == ("stored", "visits", 2, 0)
    assert (r.encoding, r.delimiter) == ("cp1252", ";")
    got = rows(
        store,
        "SELECT record_id, entered_at::VARCHAR, exited_at::VARCHAR, name, name_key, "
        "role, role_raw, id_type, page, line, source_row FROM visits ORDER BY line",
    )
    assert got[0] == (
        "R1",
        "2022-02-05 08:05:00",
        "2022-02-05 09:10:00",
        "José Pérez",
        "JOSE PEREZ",
        "family",
        "Familiar",
        "DUI",
        1,
        1,
        2,
    )
    # exit time earlier than entry time on a split date/time row: the next day
    assert got[1][1:3] == ("2022-02-05 23:40:00", "2022-02-06 01:10:00")
    assert got[1][5:8] == ("official", "Funcionario", "passport")


@pytest.mark.parametrize(
    "kind,header,row,check",
    [
        (
            "transfers",
            [
                "Correlativo",
                "Interno",
                "Centro Origen",
                "Centro Destino",
                "Fecha Traslado",
                "Motivo",
                "Visto Bueno Médico",
                "Fecha Retorno",
            ],
            ["T1", "PDL-1", "ZAC", "HRO", "01/03/2020 10:00", "Traslado médico por dolor", "", ""],
            (
                "SELECT reason, reason_raw, medical_approval, returned_at FROM transfers",
                ("medical", "Traslado médico por dolor", None, None),
            ),
        ),
        (
            "inmates",
            ["Interno", "Nombre", "Pandilla", "Rango", "Centro Penal"],
            ["PDL-1", "Juan X", "MS13", "Palabrero", "ZAC"],
            (
                "SELECT rank, rank_raw, gang, facility FROM inmates",
                ("leader", "Palabrero", "MS13", "ZAC"),
            ),
        ),
        (
            "logbooks",
            [
                "Libro",
                "Centro Penal",
                "Garita",
                "Fecha Apertura",
                "Fecha Cierre",
                "Folio Inicial",
                "Folio Final",
                "Estado",
            ],
            ["12", "ZAC", "Principal", "01/02/2020", "28/02/2020", "1", "200", "Sustraído"],
            (
                "SELECT status, opened_on::VARCHAR, last_page FROM logbooks",
                ("removed", "2020-02-01", 200),
            ),
        ),
        (
            "facilities",
            ["Codigo", "Nombre", "Tipo", "Nivel Seguridad", "Horario Visitas"],
            ["ZAC", "Zacatecoluca", "Centro Penal", "Máxima", "08:00-15:00"],
            (
                "SELECT kind, security_level, visiting_hours FROM facilities",
                ("prison", "maximum", "08:00-15:00"),
            ),
        ),
    ],
)
@pytest.mark.parametrize("fmt", ["csv-cp1252", "csv-utf16", "xlsx", "parquet", "json", "ndjson"])
def test_every_kind_in_every_format(store, tmp_path, kind, header, row, check, fmt):
    frame = pl.DataFrame([row], schema=header, orient="row")
    if fmt == "csv-cp1252":
        path = write_csv(tmp_path / "f.csv", header, [row], "cp1252", ";")
    elif fmt == "csv-utf16":
        path = write_csv(tmp_path / "f.txt", header, [row], "utf-16", "\t")
    elif fmt == "xlsx":
        frame.write_excel(path := tmp_path / "f.xlsx")
    elif fmt == "parquet":
        frame.write_parquet(path := tmp_path / "f.parquet")
    elif fmt == "json":
        (path := tmp_path / "f.json").write_text(json.dumps(frame.to_dicts()), encoding="utf-8")
    else:
        (path := tmp_path / "f.ndjson").write_text(
            "".join(json.dumps(r) + "\n" for r in frame.to_dicts()), encoding="utf-8"
        )
    r = ingest_file(store, path)
    assert (r.status, r.kind, r.rows_stored) == ("stored", kind, 1), r.message
    sql, expected = check
    assert rows(store, sql) == [expected]


def test_an_excel_sheet_of_date_and_time_cells_with_empty_rows_keeps_times_and_row_numbers(
    store, tmp_path
):
    """A workbook as a clerk's Excel writes it (found by a new user): a date cell beside
    two time cells (every row was set aside, the two read as "2020-01-10 00:00:00
    1899-12-31 08:15:00"), two empty rows (the rows after them were cited two rows too
    high), a date typed without a time (judged as an entry at midnight) and a number typed
    in a General cell (an Excel serial: set aside)."""
    from datetime import datetime as dt
    from datetime import time

    import xlsxwriter

    path = tmp_path / "visitas.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    day, clock = (
        book.add_format({"num_format": "dd/mm/yyyy"}),
        book.add_format({"num_format": "hh:mm"}),
    )
    sheet.write_row(0, 0, ["Centro", "Fecha", "Hora de entrada", "Hora de salida", "Nombre"])
    lines = {1: (dt(2020, 1, 10), time(8, 15), time(11, 0), "Rosa Martínez"),
             # Excel rows 3 and 4 left empty
             4: (dt(2020, 1, 10), time(23, 50), time(0, 40), "Pedro Ramos"),
             5: (dt(2020, 1, 11), None, None, "Ana Sosa"),
             6: (43841.0, time(3, 0), None, "Luis Cruz")}  # fmt: skip
    for at, (when, entered, left, name) in lines.items():
        sheet.write(at, 0, "ZAC")
        if isinstance(when, float):
            sheet.write_number(at, 1, when)
        else:
            sheet.write_datetime(at, 1, when, day)
        for col, t in ((2, entered), (3, left)):
            if t is not None:
                sheet.write_datetime(at, col, dt.combine(date(1899, 12, 31), t), clock)
        sheet.write(at, 4, name)
    book.close()
    r = ingest_file(store, path)
    assert (r.rows_stored, r.rows_quarantined) == (4, 0), r.reasons
    assert rows(
        store,
        "SELECT source_row, name, entered_at::VARCHAR, entered_precision, exited_at::VARCHAR "
        "FROM visits ORDER BY source_row",
    ) == [
        (2, "Rosa Martínez", "2020-01-10 08:15:00", "minute", "2020-01-10 11:00:00"),
        (5, "Pedro Ramos", "2020-01-10 23:50:00", "minute", "2020-01-11 00:40:00"),
        (6, "Ana Sosa", "2020-01-11 00:00:00", "day", None),
        (7, "Luis Cruz", "2020-01-11 03:00:00", "minute", None),
    ]


def test_a_title_block_above_a_sheets_header_is_left_out(store, tmp_path):
    """A workbook as offices send it: the office and the month merged across the columns,
    a blank row, then the header (found by a new user: "no recognisable columns", the
    title taken for the header). The header is the row that names the fields; rows keep
    the numbers Excel shows. A sheet whose first row is its header is read as before."""
    import xlsxwriter

    path = tmp_path / "libro.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Enero")
    bold = book.add_format({"bold": True})
    sheet.merge_range("A1:E1", "DIRECCIÓN GENERAL DE CENTROS PENALES - REGISTRO DE VISITAS", bold)
    sheet.merge_range("A2:E2", "Centro Penal de Izalco - Enero 2020", bold)
    sheet.write_row(3, 0, ["Centro Penal", "Libro", "Fecha", "Hora de entrada", "Nombre"])
    sheet.write_row(4, 0, ["ZAC", "L-1", "10/01/2020", "08:15", "Rosa Martínez"])
    sheet.write_row(5, 0, ["ZAC", "L-1", "10/01/2020", "23:50", "Pedro Ramos"])
    book.close()
    r = ingest_file(store, path)
    assert (r.kind, r.rows_stored, r.rows_quarantined) == ("visits", 2, 0), r.message or r.reasons
    assert rows(
        store, "SELECT source_row, name, logbook, entered_at::VARCHAR FROM visits ORDER BY 1"
    ) == [
        (5, "Rosa Martínez", "L-1", "2020-01-10 08:15:00"),
        (6, "Pedro Ramos", "L-1", "2020-01-10 23:50:00"),
    ]


def test_a_time_written_as_four_digits_beside_a_date_is_a_time_of_day(store, tmp_path):
    """ "0230" in a time column was read as 02:30 but stored at day precision, so no rule of
    hours judged it (a new user's contractor at 02:30 was flagged written "02:30", not
    written "0230")."""
    path = write_csv(
        tmp_path / "v.csv",
        ["Centro", "Fecha", "Hora de entrada", "Nombre"],
        [["ZAC", "14/02/2020", "0230", "Mario Cruz"], ["ZAC", "14/02/2020", "02:30", "Luis Mejía"],
         ["ZAC", "14/02/2020", "230", "Ana Cruz"], ["ZAC", "14/02/2020", "02:30 hrs", "Eva Cruz"],
         ["ZAC", "14/02/2020", "2.30", "Iris Cruz"], ["ZAC", "14/02/2020", "", "Rosa Cruz"]],
    )  # fmt: skip
    r = ingest_file(store, path)
    assert r.rows_quarantined == 0, r.reasons
    assert rows(
        store, "SELECT entered_at::VARCHAR, entered_precision FROM visits ORDER BY source_row"
    ) == [("2020-02-14 02:30:00", "minute")] * 5 + [("2020-02-14 00:00:00", "day")]


def test_english_headers_with_first_and_last_names(store, tmp_path):
    path = write_csv(
        tmp_path / "v.csv",
        ["Prison", "Entry Time", "Exit Time", "First Name", "Last Name", "Visitor Type", "Plate"],
        [["IZA", "2022-02-05T08:05:00", "2022-02-05 10:00", "Ana", "López", "Lawyer", "p-123 456"]],
    )
    r = ingest_file(store, path)
    assert r.status == "stored", r.message
    assert rows(store, "SELECT name, role, plate_key FROM visits") == [
        ("Ana López", "lawyer", "P123456")
    ]


def test_twelve_hour_times_and_month_first_by_mapping(store, tmp_path):
    path = write_csv(
        tmp_path / "v.csv",
        ["site", "date", "time_in", "name"],
        [["ZAC", "2/13/2022", "8:05 p.m.", "A"], ["ZAC", "2/13/2022", "12:10 a. m.", "B"]],
    )
    r = ingest_file(store, path, mapping=UserMapping(date_order="mdy"))
    assert r.status == "stored", r.message
    assert rows(store, "SELECT entered_at::VARCHAR FROM visits ORDER BY name") == [
        ("2022-02-13 20:05:00",),
        ("2022-02-13 00:10:00",),
    ]


def test_mapping_file_renames_headers_and_values(store, tmp_path):
    path = write_csv(
        tmp_path / "odd.csv",
        ["Penal X", "Cuando", "Quien", "Tipo"],
        [["ZAC", "05/02/2022 08:00", "Ana", "VIS"]],
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        textwrap.dedent("""
        kind: visits
        columns: {facility: Penal X, entered_at: Cuando, name: Quien, role: Tipo}
        values: {role: {VIS: family}}
    """),
        encoding="utf-8",
    )
    r = ingest_file(store, path, mapping=load_mapping(mapping))
    assert r.status == "stored", r.message
    assert rows(store, "SELECT role, role_raw FROM visits") == [("family", "VIS")]


def test_a_value_table_names_a_facility_by_its_code_and_one_of_no_text_field_is_refused(
    store, tmp_path
):
    """A book writes its prison's short name ("Apanteos"), the facilities list its code:
    a value table maps it (it was accepted and left unused, and every row was set aside as
    of an unknown facility). A value table of a date is refused, naming the field."""
    ingest_file(
        store, write_csv(tmp_path / "centros.csv", ["codigo", "nombre"], [["APA", "CP Apanteos"]])
    )
    path = write_csv(
        tmp_path / "libro.csv",
        ["Centro", "Fecha", "Nombre"],
        [["Apanteos", "03/06/2019 09:15", "Ana"], ["APANTEOS ", "04/06/2019 10:00", "Bea"]],
    )
    mapping = tmp_path / "m.toml"
    mapping.write_text('kind = "visits"\n[values.facility]\napanteos = "APA"\n', encoding="utf-8")
    r = ingest_file(store, path, mapping=load_mapping(mapping))
    assert (r.status, r.rows_stored, r.rows_quarantined) == ("stored", 2, 0), r.message
    assert rows(store, "SELECT DISTINCT facility FROM visits") == [("APA",)]
    mapping.write_text('kind = "visits"\n[values.entered_at]\nayer = "2019-06-02"\n')
    r = ingest_file(store, write_csv(tmp_path / "otro.csv", ["Centro", "Fecha"], [["APA", "x"]]),
                    mapping=load_mapping(mapping))  # fmt: skip
    assert r.status == "failed"
    assert "[values.entered_at] is of no text field of a visits record" in r.message, r.message


def test_ambiguous_or_unknown_headers_ask_for_kind(store, tmp_path):
    path = write_csv(tmp_path / "x.csv", ["foo", "bar"], [["1", "2"]])
    r = ingest_file(store, path)
    assert r.status == "failed" and "x.csv" in r.message and "--kind" in r.message


def test_missing_required_column_names_the_field(store, tmp_path):
    path = write_csv(tmp_path / "v.csv", ["Centro Penal", "Nombre", "Placa"], [["ZAC", "A", "P1"]])
    r = ingest_file(store, path, kind="visits")
    assert r.status == "failed"
    assert "v.csv" in r.message and "entered_at" in r.message


def test_a_csvs_spacer_lines_are_left_out_and_the_rows_after_keep_their_numbers(store, tmp_path):
    """A book's spacer lines (",,,,," in its CSV) are no rows: a new user's two were each
    set aside twice as rows missing their required fields and reported as rows that could
    not be stored. The rows after them keep the file's row numbers; a totals line is still
    set aside (it is no visit), cited by its own row."""
    path = tmp_path / "visitas.csv"
    path.write_text(
        "Centro Penal,Fecha,Hora de ingreso,Nombre\n"
        "ZAC,03/06/2019,09:00,Rosa Mejía\n"
        ",,,\n"
        "ZAC,04/06/2019,09:10,Dolores Ayala\n"
        ",,,\n"
        ",,,TOTAL DE VISITANTES: 2\n",
        encoding="utf-8",
    )
    r = ingest_file(store, path)
    assert (r.rows_read, r.rows_stored, r.rows_quarantined) == (3, 2, 1)
    assert rows(store, "SELECT name, source_row FROM visits ORDER BY 2") == [
        ("Rosa Mejía", 2),
        ("Dolores Ayala", 4),
    ]
    assert rows(store, "SELECT DISTINCT source_row FROM quarantine") == [(6,)]


def test_hostile_rows_are_quarantined_and_good_rows_kept(store, tmp_path):
    big = "x" * 1_000_000
    data = [
        visit(1),  # good
        visit(2, fecha="31/02/2022"),  # impossible date
        visit(3, fecha="2022-02-05", entra="08:00"),  # ISO date mixed in: fine
        visit(4, **{"Centro Penal": ""}),  # missing required
        visit(5, nombre='=HYPERLINK("http://evil","x")'),  # formula: kept as text
        visit(6, Personas="-2"),  # negative party
        visit(7, Folio="1a"),  # not a number
        visit(8, nombre=big),  # 1 MB field: kept
        visit(9, nombre="Ana\x00Mar"),  # NUL byte
        visit(10, fecha="05-02-2022", entra="8:05 p.m.", sale="9:00 p.m."),  # other spellings
    ]
    path = write_csv(tmp_path / "hostile.csv", SPANISH, data, "utf-8", ";")
    r = ingest_file(store, path)
    assert r.status == "stored"
    stored = {x[0] for x in rows(store, "SELECT record_id FROM visits")}
    assert stored == {"R1", "R3", "R5", "R8", "R10"}
    q = rows(store, "SELECT source_row, field, reason_code, reason FROM quarantine ORDER BY 1")
    assert [(x[0], x[1], x[2]) for x in q] == [
        (3, "entered_at", "unparseable_date"),
        (5, "facility", "missing_required"),
        (7, "party_size", "negative_number"),
        (8, "page", "invalid_number"),
        (10, "*", "nul_byte"),
    ]
    assert "31/02/2022" in q[0][3]
    assert rows(store, "SELECT name FROM visits WHERE record_id='R5'") == [
        ('=HYPERLINK("http://evil","x")',)
    ]
    assert rows(store, "SELECT length(name) FROM visits WHERE record_id='R8'") == [(1_000_000,)]
    raw = json.loads(rows(store, "SELECT raw FROM quarantine WHERE source_row=3")[0][0])
    assert raw["Fecha"] == "31/02/2022"


def test_a_visit_whose_exit_is_written_before_its_entry_is_stored_and_judged(store, tmp_path):
    """The entry is evidence all the same (found by a new user: an 'N/I' contractor at 22:40
    whose exit the clerk dated the same day, 01:15, was set aside whole, and no rule judged
    the unnamed night entry): stored as written, the order reported by its rule."""
    path = write_csv(
        tmp_path / "v.csv",
        ["facility", "entered_at", "exited_at", "name", "role"],
        [
            ["ZAC", "2022-02-05 22:40", "2022-02-05 01:15", "N/I", "Contratista"],
            ["ZAC", "2022-02-05 10:00", "2022-02-05 11:00", "B", "Familiar"],
        ],
    )
    r = ingest_file(store, path)
    assert (r.rows_stored, r.rows_quarantined) == (2, 0)
    run_rules(store)
    fired = dict(rows(store, "SELECT rule_id, explanation FROM flags"))
    assert "unidentified-placeholder-name" in fired
    assert fired["visit-exit-before-entry"] == (
        "v.csv row 2: exit 2022-02-05 01:15 is before entry 2022-02-05 22:40."
    )


def test_unknown_facility_is_quarantined_once_a_facilities_list_exists(store, tmp_path):
    fac = write_csv(
        tmp_path / "facilities.csv",
        ["facility", "name", "security_level"],
        [["ZAC", "Zacatecoluca", "maxima"]],
    )
    v = write_csv(
        tmp_path / "v.csv",
        ["facility", "entered_at", "name"],
        [["ZAC", "2022-02-05 10:00", "A"], ["XXX", "2022-02-05 10:00", "B"],
         # the list's name for it, written otherwise (a new user's book wrote the name)
         ["zacatecolúca ", "2022-02-05 11:00", "C"]],
    )  # fmt: skip
    results = ingest_files(store, [v, fac])  # the facilities list goes first whatever the order
    assert [r.kind for r in results] == ["facilities", "visits"]
    assert rows(store, "SELECT field, reason FROM quarantine") == [
        (
            "facility",
            "facility 'XXX' is not in the facilities list (by code or name as the list "
            "writes it: ZAC)",
        )
    ]
    assert rows(store, "SELECT name, facility FROM visits ORDER BY name") == [
        ("A", "ZAC"),
        ("C", "ZAC"),
    ]


def test_same_file_twice_is_recognised(store, tmp_path):
    path = write_csv(tmp_path / "v.csv", SPANISH, [visit(1), visit(2)], "cp1252", ";")
    first = ingest_file(store, path, user="ana")
    again = ingest_file(store, path, user="ben")
    assert first.status == "stored" and again.status == "duplicate"
    assert "already uploaded as ledger entry 1" in again.message and "ana" in again.message
    assert rows(store, "SELECT count(*) FROM visits") == [(2,)]
    assert rows(store, "SELECT count(*) FROM uploads") == [(1,)]


def test_overlapping_file_does_not_duplicate_records(store, tmp_path):
    a = write_csv(tmp_path / "a.csv", SPANISH, [visit(1), visit(2)], "cp1252", ";")
    b = write_csv(tmp_path / "b.csv", SPANISH, [visit(2), visit(3)], "utf-8", ",")
    ingest_file(store, a)
    r = ingest_file(store, b)
    assert (r.rows_stored, r.rows_duplicate) == (1, 1)
    assert rows(store, "SELECT record_id FROM visits ORDER BY 1") == [("R1",), ("R2",), ("R3",)]


@pytest.mark.parametrize("hashed_rows", [1_000, 4], ids=["keys-hashed", "past-hash-limit"])
def test_a_file_read_in_many_batches_keeps_every_row_and_reason(
    store, tmp_path, monkeypatch, hashed_rows
):
    monkeypatch.setattr(formats, "BATCH_ROWS", 3)  # 12 data rows -> four batches
    monkeypatch.setattr(ingest, "KEY_HASH_ROWS", hashed_rows)  # past it: the SQL check
    data = [visit(n) for n in range(1, 11)]
    data[4] = visit(5, **{"Centro Penal": ""})  # no facility
    data[7] = visit(8, fecha="31/31/2022")  # no such date
    data.append(visit(2))  # row 2 again, three batches later
    data.append(visit(11))
    path = write_csv(tmp_path / "v.csv", SPANISH, data, "cp1252", ";")
    seen: list[int] = []
    r = ingest_file(store, path, on_rows=seen.append)
    assert seen == [3, 6, 9, 12]  # progress after each batch, in file order
    assert (r.rows_read, r.rows_stored, r.rows_quarantined, r.rows_duplicate) == (12, 9, 2, 1)
    assert rows(store, "SELECT source_row, reason_code FROM quarantine ORDER BY 1") == [
        (6, "missing_required"),
        (9, "unparseable_date"),
    ]
    stored = rows(store, "SELECT source_row FROM visits ORDER BY 1")
    assert [x for (x,) in stored] == [2, 3, 4, 5, 7, 8, 10, 11, 13]
    assert rows(store, "SELECT rows_stored, rows_duplicate FROM uploads") == [(9, 1)]


def test_a_failure_while_converting_stores_nothing_and_names_itself(store, tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "BATCH_ROWS", 2)
    real, calls = ingest.canonical, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("converter broke on the third batch")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "canonical", failing)
    path = write_csv(tmp_path / "v.csv", SPANISH, [visit(n) for n in range(1, 9)], "cp1252", ";")
    with pytest.raises(RuntimeError, match="third batch"):
        ingest_file(store, path)
    assert rows(store, "SELECT (SELECT count(*) FROM visits), (SELECT count(*) FROM uploads)") == [
        (0, 0)
    ]
    assert not [t for t in threading.enumerate() if t.name.startswith("ingest-")]
    assert not list(store.evidence.rglob(".incoming-*"))


def test_a_rejected_file_leaves_no_evidence_behind(store, tmp_path):
    path = write_csv(tmp_path / "v.csv", SPANISH, [], "utf-8", ",")
    r = ingest_file(store, path)
    assert r.status == "failed" and "no data rows" in r.message
    assert not [p for p in store.evidence.rglob("*") if p.is_file()]


def test_what_is_stored_is_read_from_the_evidence_copy(store, tmp_path, monkeypatch):
    """The original may change after it was hashed: the stored rows are the hashed bytes."""
    path = write_csv(tmp_path / "v.csv", SPANISH, [visit(1)], "cp1252", ";")
    real = ingest.plan

    def plan_then_tamper(*args, **kwargs):
        write_csv(path, SPANISH, [visit(1, nombre="Cambiado")], "cp1252", ";")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "plan", plan_then_tamper)
    r = ingest_file(store, path)
    assert rows(store, "SELECT name FROM visits") == [("José Pérez",)]
    kept = ledger.evidence_path(store, r.sha256)
    assert ledger.sha256_file(kept) == r.sha256


@pytest.mark.slow
def test_killed_mid_ingest_leaves_database_unchanged(store, tmp_path):
    ok = write_csv(tmp_path / "ok.csv", SPANISH, [visit(1)], "cp1252", ";")
    ingest_file(store, ok)
    before = rows(store, "SELECT (SELECT count(*) FROM visits), (SELECT count(*) FROM uploads)")
    big = tmp_path / "big.csv"
    frame = pl.DataFrame(
        {
            "facility": ["ZAC"] * 400_000,
            "entered_at": ["2022-02-05 10:00"] * 400_000,
            "record_id": [f"B{i}" for i in range(400_000)],
        }
    )
    frame.write_csv(big)
    # The child pauses inside the write transaction, after inserting every row, before commit.
    script = textwrap.dedent(f"""
        import os, sys, time
        import detector.ingest as ing
        from detector.store import Store
        real = ing.ledger.seal
        def slow_seal(con, entry, **kw):
            out = real(con, entry, **kw)
            con.execute("INSERT INTO visits (record_key, facility) VALUES ('half-written', 'ZAC')")
            open({str(tmp_path / "inside")!r}, 'w').close()
            time.sleep(60)
            return out
        ing.ledger.seal = slow_seal
        ing.ingest_file(Store({str(store.path)!r}), {str(big)!r})
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.monotonic() + 120
    while not (tmp_path / "inside").exists():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    after = rows(store, "SELECT (SELECT count(*) FROM visits), (SELECT count(*) FROM uploads)")
    assert after == before
    # and the same file can then be ingested for real
    assert ingest_file(store, big).rows_stored == 400_000


def test_the_same_file_ingested_twice_at_once_is_stored_once(store, tmp_path, monkeypatch):
    """Both ingests passed the "already uploaded" check before either committed, and both
    stored the file; the check is made again under the writers' lock."""
    import threading

    from detector import ingest
    from detector.store import Store

    path = write_csv(
        tmp_path / "v.csv", ["facility", "entered_at", "name"], [["ZAC", "2022-02-01 10:00", "A"]]
    )
    both_checked = threading.Barrier(2, timeout=30)
    real_plan = ingest.plan

    def plan_after_both_checked(*args, **kwargs):
        both_checked.wait()
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(ingest, "plan", plan_after_both_checked)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(ingest.ingest_file(Store(store.path), path)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.status for r in results) == ["duplicate", "stored"]
    assert rows(store, "SELECT count(*) FROM uploads") == [(1,)]
    assert rows(store, "SELECT count(*) FROM visits") == [(1,)]


# --- issue 24: exits, text, optional dates, custody layouts, files without names, readings


def test_an_exit_left_blank_beside_its_date_is_no_exit_and_a_time_alone_takes_the_entry_day(
    store, tmp_path
):
    """An exit time left blank beside an exit date column of its own is no exit (it was
    read as midnight, then quarantined as exit before entry); an exit time whose own date
    is blank is on the entry's day, the next day when earlier."""
    header = ["facility", "fecha_ingreso", "hora_ingreso", "fecha_salida", "hora_salida", "name"]
    data = [
        ["ZAC", "05/02/2022", "08:05", "05/02/2022", "", "Ana"],
        ["ZAC", "05/02/2022", "08:10", "", "09:30", "Bea"],
        ["ZAC", "05/02/2022", "22:10", "", "01:30", "Eva"],
        ["ZAC", "05/02/2022", "08:20", "06/02/2022", "07:00", "Flor"],
    ]
    r = ingest_file(store, write_csv(tmp_path / "v.csv", header, data))
    assert (r.rows_stored, r.rows_quarantined) == (4, 0), r.reasons
    assert rows(store, "SELECT name, exited_at::VARCHAR, exited_at_raw FROM visits ORDER BY 1") == [
        ("Ana", None, "05/02/2022"),
        ("Bea", "2022-02-05 09:30:00", "09:30"),
        ("Eva", "2022-02-06 01:30:00", "01:30"),
        ("Flor", "2022-02-06 07:00:00", "06/02/2022 07:00"),
    ]


def test_midnight_written_24_00_ends_its_day(store, tmp_path):
    """Clerks write the midnight that ends a day "24:00": an exit at 24:00 set the whole
    visit aside ("not a time"), an entry at "01/04/2020 24:00" too. It is 00:00 of the next
    day, as a time alone, beside its date, or in one date-and-time cell."""
    header = ["facility", "fecha_ingreso", "hora_ingreso", "fecha_salida", "hora_salida", "name"]
    data = [
        ["ZAC", "01/04/2020", "23:00", "", "24:00", "Ana"],
        ["ZAC", "01/04/2020", "22:30", "01/04/2020", "24:00", "Bea"],
        ["ZAC", "01/04/2020", "24:00", "", "00:40", "Eva"],
        ["ZAC", "01/04/2020", "21:00", "", "24:30", "Flor"],  # no time: the exit unread
    ]
    r = ingest_file(store, write_csv(tmp_path / "v.csv", header, data))
    assert (r.rows_stored, r.rows_quarantined) == (4, 0), r.reasons
    assert rows(
        store,
        "SELECT name, entered_at::VARCHAR, exited_at::VARCHAR, entered_precision "
        "FROM visits ORDER BY 1",
    ) == [
        ("Ana", "2020-04-01 23:00:00", "2020-04-02 00:00:00", "minute"),
        ("Bea", "2020-04-01 22:30:00", "2020-04-02 00:00:00", "minute"),
        ("Eva", "2020-04-02 00:00:00", "2020-04-02 00:40:00", "minute"),
        ("Flor", "2020-04-01 21:00:00", None, "minute"),
    ]
    one = write_csv(
        tmp_path / "w.csv",
        ["facility", "entered_at", "exited_at", "name"],
        [["ZAC", "31/12/2020 24:00", "01/01/2021 01:00", "Gil"]],
    )
    assert ingest_file(store, one).rows_stored == 1
    assert rows(store, "SELECT entered_at::VARCHAR FROM visits WHERE name = 'Gil'") == [
        ("2021-01-01 00:00:00",)
    ]


def test_a_date_column_that_holds_the_time_keeps_it(store, tmp_path):
    """A "Fecha" column written "2019-03-01 09:00" with no time column was cut to its day
    and stored at 00:00 with a time to the minute: the visiting-hours rule then flagged
    every visit as an entry at midnight. An exit date holding its time beside a blank exit
    time keeps it too."""
    header = ["Centro", "Fecha", "Fecha salida", "Hora salida", "Nombre"]
    data = [
        ["ZAC", "2019-03-01 09:00", "2019-03-01 10:15", "", "Ana"],
        ["ZAC", "2019-03-01", "", "", "Bea"],
        ["ZAC", "2019-03-01 11:00", "2019-03-01", "", "Eva"],
    ]
    path = write_csv(tmp_path / "v.csv", header, data)
    r = ingest_file(store, path, mapping=UserMapping(kind="visits"))
    assert (r.rows_stored, r.rows_quarantined) == (3, 0), r.reasons
    assert rows(
        store,
        "SELECT name, entered_at::VARCHAR, entered_precision, exited_at::VARCHAR "
        "FROM visits ORDER BY 1",
    ) == [
        ("Ana", "2019-03-01 09:00:00", "minute", "2019-03-01 10:15:00"),
        ("Bea", "2019-03-01 00:00:00", "day", None),
        ("Eva", "2019-03-01 11:00:00", "minute", None),
    ]


def test_a_quarantined_row_is_cited_by_where_it_was_written(store, tmp_path):
    """A row set aside keeps the place it was written as far as it was read (the list's
    facility code, its book, page and line): its evidence cites it, and the page-sequence
    rule counts its line as written (a page whose lines were all set aside was reported
    torn out)."""
    header = ["Correlativo", "Centro Penal", "Garita", "Libro", "Folio", "Línea", "Fecha", "Nombre"]
    data = [
        ["R1", "ZAC", "G", "L-1", "1", "1", "28/02/2019 08:00", "Ana"],
        ["R2", "ZAC", "G", "L-1", "2", "1", "31/02/2019 08:30", "Bea"],
        ["R3", "ZAC", "G", "L-1", "x", "2", "", "Eva"],
    ]
    r = ingest_file(store, write_csv(tmp_path / "v.csv", header, data))
    assert (r.rows_stored, r.rows_quarantined) == (1, 2)
    assert rows(
        store,
        "SELECT record_id, facility, logbook, page, line, source_row FROM records "
        "WHERE kind = 'quarantine' ORDER BY source_row",
    ) == [("R2", "ZAC", "L-1", 2, 1, 3), ("R3", "ZAC", "L-1", None, 2, 4)]


def test_a_page_written_as_the_back_of_a_folio_is_read(store, tmp_path):
    """Handwritten books number each sheet and write on both sides: "1 vta." (vuelta, the
    back), "2v", "3 vto", "4 r". Such a page set the whole visit aside ("not a whole
    number": 6 of a new user's 21 visits were judged by no rule). The page is the folio's
    number and the back is told in page_side; a page of no number is still set aside."""
    header = ["Centro", "Libro", "Folio", "Línea", "Fecha", "Nombre"]
    pages = ["1", "1 vta.", "2v", "3 VTO", "4 r", "F. 5 vta", "vta."]
    data = [["ZAC", "L-3", p, "1", f"0{i + 1}/04/2020 09:00", f"N{i}"] for i, p in enumerate(pages)]
    r = ingest_file(store, write_csv(tmp_path / "v.csv", header, data))
    assert (r.rows_stored, r.rows_quarantined) == (6, 1), r.reasons
    assert rows(store, "SELECT name, page, page_side FROM visits ORDER BY name") == [
        ("N0", 1, None), ("N1", 1, "verso"), ("N2", 2, "verso"), ("N3", 3, "verso"),
        ("N4", 4, None), ("N5", 5, "verso"),
    ]  # fmt: skip
    assert rows(store, "SELECT field, reason_code FROM quarantine") == [("page", "invalid_number")]


def test_a_time_alone_is_refused_where_there_is_no_day_to_place_it(store, tmp_path):
    path = write_csv(
        tmp_path / "t.csv",
        ["inmate", "from", "to", "hora", "fecha"],
        [["P1", "ZAC", "HRO", "10:00", "01/03/2020"]],
    )
    mapping = UserMapping(kind="transfers", columns={"transferred_at": {"time": "hora"}})
    r = ingest_file(store, path, mapping=mapping)
    assert r.status == "failed" and "transferred_at" in r.message and "time alone" in r.message
    assert rows(store, "SELECT count(*) FROM uploads") == [(0,)]


def test_text_is_stored_tidy_and_a_cell_of_spaces_is_empty(store, tmp_path):
    """Leading, trailing and doubled spaces (tabs, non-breaking spaces) in names,
    organisations, documents and facilities made other values of the same thing (and a
    facility of one space a facility of its own); the *_raw columns keep the text."""
    header = ["facility", "entered_at", "name", "documento", "institucion", "calidad"]
    data = [
        [" ZAC ", "2022-02-05 08:05", "PATRICIA  ITURREGUI\u00a0 BYRNE ", " 07231335", "\u00a0 ", " Familiar "],
        ["   ", "2022-02-05 08:06", "Ana", "1", "X", "Familiar"],
        ["\u00a0", "2022-02-05 08:07", "Bea", "2", "X", "Familiar"],
    ]  # fmt: skip
    r = ingest_file(store, write_csv(tmp_path / "v.csv", header, data))
    assert (r.rows_stored, r.rows_quarantined) == (1, 2)
    assert rows(
        store, "SELECT facility, name, id_number, organization, role, role_raw FROM visits"
    ) == [("ZAC", "PATRICIA ITURREGUI BYRNE", "07231335", None, "family", " Familiar ")]
    assert rows(store, "SELECT DISTINCT reason_code, field FROM quarantine") == [
        ("missing_required", "facility")
    ]


def test_an_unreadable_optional_date_keeps_the_row_and_makes_one_case_per_file(store, tmp_path):
    """A return written in words the tool does not know cost the whole transfer, approval
    and all; now the transfer is stored, its return empty with the text beside it, and the
    file gets one data-quality case (not a flag per row). Spanish dates in words are read."""
    from detector.engine import run_rules

    header = ["inmate_id", "from_facility", "to_facility", "transferred_at", "reason",
              "medical_approval", "returned_at"]  # fmt: skip
    data = [
        ["P1", "ZAC", "HRO", "10/03/2020 09:00", "Médico", "Dr. R", "12 de marzo de 2020"],
        ["P2", "ZAC", "HRO", "10/03/2020 09:30", "Médico", "Dr. R", "12-mar-2020"],
        ["P3", "ZAC", "HRO", "10/03/2020 10:00", "Médico", "Dr. R", "cuando le den el alta"],
        ["P4", "ZAC", "HRO", "10/03/2020 10:30", "Médico", "Dr. R", "12/03/0020"],
    ]
    r = ingest_file(store, write_csv(tmp_path / "t.csv", header, data))
    assert (r.rows_stored, r.rows_quarantined) == (4, 0), r.reasons
    assert rows(
        store, "SELECT inmate_id, returned_at::DATE::VARCHAR, returned_at_raw, medical_approval "
        "FROM transfers ORDER BY 1"
    ) == [
        ("P1", "2020-03-12", "12 de marzo de 2020", "Dr. R"),
        ("P2", "2020-03-12", "12-mar-2020", "Dr. R"),
        ("P3", None, "cuando le den el alta", "Dr. R"),
        ("P4", None, "12/03/0020", "Dr. R"),
    ]  # fmt: skip
    run_rules(store, only=["data-unreadable-values", "data-unreadable-rows"])
    assert rows(store, "SELECT rule_id, len(record_keys) FROM flags") == [
        ("data-unreadable-values", 2)
    ]


def test_stays_of_days_are_custody_records_whatever_their_median(store, tmp_path):
    """A booking register whose median stay is a day (26 hours) passed the median guard
    and became visits of days and weeks; its long tail gives it away. A visit log with
    24-hour staff shifts among the visits does not."""
    from datetime import datetime, timedelta

    start = datetime(2023, 1, 2, 8, 0)
    hours = [20, 22, 24, 26, 28, 30, 30, 40, 60, 80, 120, 200, 400, 900, 26, 25, 23, 27, 29, 31]
    bookings = [
        [f"B{i}", "JAIL", f"{start + timedelta(hours=i):%Y-%m-%d %H:%M}",
         f"{start + timedelta(hours=i + h):%Y-%m-%d %H:%M}", f"P{i}"]
        for i, h in enumerate(hours * 2)
    ]  # fmt: skip
    header = ["record_id", "facility", "entered_at", "exited_at", "name"]
    r = ingest_file(store, write_csv(tmp_path / "b.csv", header, bookings))
    assert r.status == "failed" and "custody records" in r.message and "over a week" in r.message
    shifts = [
        [f"V{i}", "ZAC", f"{start + timedelta(days=i // 4, hours=i % 4):%Y-%m-%d %H:%M}",
         f"{start + timedelta(days=i // 4, hours=i % 4 + (24 if i % 4 == 0 else 2)):%Y-%m-%d %H:%M}",
         f"V{i}"]
        for i in range(40)
    ]  # fmt: skip
    r = ingest_file(store, write_csv(tmp_path / "v.csv", header, shifts))
    assert r.status == "stored" and r.rows_stored == 40


def test_a_visit_log_without_a_name_column_is_one_case_not_a_flag_per_line(store, tmp_path):
    from detector.engine import run_rules

    header = ["record_id", "facility", "entered_at", "calidad"]
    data = [[f"V{i}", "ZAC", f"2022-02-0{1 + i % 5} 10:{i:02d}", "Familiar"] for i in range(12)]
    ingest_file(store, write_csv(tmp_path / "v.csv", header, data))
    assert rows(store, "SELECT DISTINCT name_status FROM visits") == [("not_recorded",)]
    run_rules(store, only=["unidentified-names-not-recorded", "unidentified-placeholder-name"])
    assert rows(store, "SELECT rule_id, len(record_keys) FROM flags") == [
        ("unidentified-names-not-recorded", 12)
    ]


def test_a_spanish_rol_column_is_the_role(store, tmp_path):
    """A logbook headed "Rol" (Spanish for role) gives each line its role: without it a
    relative entering at night was "other", judged by no visiting hours."""
    header = ["centro_penal", "fecha_hora_ingreso", "nombre", "rol"]
    data = [
        ["ZAC", "2020-03-02 09:10", "Ana Lopez", "Familiar"],
        ["ZAC", "2020-03-02 23:40", "Jose Perez", "Policía"],
    ]
    ingest_file(store, write_csv(tmp_path / "libro.csv", header, data))
    assert rows(store, "SELECT role FROM visits ORDER BY entered_at") == [("family",), ("police",)]


def test_a_second_reading_of_a_file_is_its_own_entry_citing_the_first(store, tmp_path):
    """The same bytes under the same mapping are already uploaded; under another mapping
    (another kind here) they are a new ledger entry that cites the first, and verify holds."""
    from detector.ledger import verify

    header = ["facility", "fecha_hora", "nombre", "lector"]
    data = [["ZAC", f"2022-02-01 10:0{i}", f"Persona {i}", "G1"] for i in range(5)]
    path = write_csv(tmp_path / "both.csv", header, data)
    as_visits = UserMapping(kind="visits", columns={"entered_at": "fecha_hora"})
    first = ingest_file(store, path, mapping=as_visits, mapping_name="visits.toml")
    again = ingest_file(store, path, mapping=as_visits, mapping_name="visits.toml")
    assert (first.status, again.status, again.seq) == ("stored", "duplicate", first.seq)
    as_events = UserMapping(kind="events")
    second = ingest_file(store, path, mapping=as_events, mapping_name="events.toml")
    assert second.status == "stored" and second.reading_of == first.seq
    assert ingest_file(store, path, mapping=as_events).status == "duplicate"
    cited = rows(store, "SELECT seq, json_extract(mapping, '$.reading_of') FROM uploads ORDER BY 1")
    assert [(s, None if c is None else int(c)) for s, c in cited] == [(1, None), (2, 1)]
    assert rows(store, "SELECT (SELECT count(*) FROM visits), (SELECT count(*) FROM events)") == [
        (5, 5)
    ]
    assert verify(store).ok, verify(store).problems


def test_a_headcount_register_is_read_by_its_spanish_headers(store, tmp_path):
    """The daily headcount register is detected from its headers; a day without its count
    is quarantined (a required whole number), the rest stored."""
    path = write_csv(
        tmp_path / "conteo.csv",
        ["Centro Penal", "Fecha Conteo", "Población", "Turno"],
        [["ZAC", "01/06/2019", "912", "mañana"], ["ZAC", "02/06/2019", "", "mañana"]],
        delimiter=";",
    )
    [result] = ingest_files(store, [path])
    assert (result.kind, result.rows_stored, result.rows_quarantined) == ("headcounts", 1, 1)
    assert rows(store, "SELECT counted_on, population FROM headcounts") == [(date(2019, 6, 1), 912)]


def test_ids_each_book_numbers_from_one_are_records_of_their_book(store, tmp_path):
    """Paper books number their lines from 1 each (found by a new user: March's book was
    set aside as an altered copy of February's, and raised false findings of tampering).
    The book that wrote an id first keeps its key, so a copy sent again is still told from
    an altered one; the ledger verifies."""
    header = ["Correlativo", "Centro Penal", "Libro", "Fecha", "Hora de entrada", "Nombre"]

    def book(name, rows_):
        return write_csv(tmp_path / name, header, rows_)

    feb = book(
        "febrero.csv",
        [
            [1, "ZAC", "L-2", "03/02/2020", "08:00", "Rosa Martínez"],
            [2, "ZAC", "L-2", "03/02/2020", "08:10", "Juan Pérez"],
        ],
    )
    both = book(
        "marzo_y_abril.csv",
        [
            [1, "ZAC", "L-3", "02/03/2020", "08:00", "Luis Mejía"],
            [2, "ZAC", "L-3", "02/03/2020", "03:10", "N/I"],
            [1, "ZAC", "L-4", "01/04/2020", "09:00", "Eva Soto"],
        ],
    )
    altered = book(
        "marzo_otra_vez.csv",
        [
            [1, "ZAC", "L-3", "02/03/2020", "08:00", "Luis Mejía"],
            [2, "ZAC", "L-3", "02/03/2020", "03:10", "Pedro Ruiz"],
        ],
    )
    again = book("febrero_copia.csv", [[1, "ZAC", "L-2", "03/02/2020", "08:00", "Rosa Martínez"]])
    results = [ingest_file(store, f) for f in (feb, both, altered, again)]
    assert [(r.rows_stored, r.rows_quarantined, r.rows_duplicate) for r in results] == [
        (2, 0, 0),
        (3, 0, 0),
        (0, 1, 1),  # the altered line, and one sent again as it was
        (0, 0, 1),
    ]  # fmt: skip
    assert rows(store, "SELECT record_key, name FROM visits ORDER BY upload_seq, source_row") == [
        ("V|ZAC|1", "Rosa Martínez"),
        ("V|ZAC|2", "Juan Pérez"),
        ("V|ZAC|1@L-3", "Luis Mejía"),
        ("V|ZAC|2@L-3", "N/I"),
        ("V|ZAC|1@L-4", "Eva Soto"),
    ]
    assert rows(store, "SELECT reason_code FROM quarantine") == [("conflicts_with_stored",)]
    assert ledger.verify(store).ok


def test_a_second_reading_of_the_same_kind_adds_no_conflict_with_the_first(store, tmp_path):
    """Read again as the same kind under another mapping, records the first reading stored
    are duplicates of it (the same bytes, read another way), not a re-send with other
    values (conflicts_with_stored)."""
    header = ["record_id", "facility", "entered_at", "name", "motivo", "nota"]
    data = [[f"R{i}", "ZAC", f"2022-02-01 10:0{i}", f"Persona {i}", "Visita", f"N{i}"]
            for i in range(4)]  # fmt: skip
    path = write_csv(tmp_path / "v.csv", header, data)
    first = ingest_file(store, path)
    second = ingest_file(store, path, mapping=UserMapping(columns={"purpose": "nota"}))
    assert (first.rows_stored, second.status, second.reading_of) == (4, "stored", first.seq)
    assert (second.rows_stored, second.rows_duplicate, second.rows_quarantined) == (0, 4, 0)
    assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]
