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


def test_a_file_that_writes_no_purpose_is_not_every_visit_leaving_it_out(store, tmp_path):
    """One prison's book writes every visit's purpose but one; its gate's export has no
    purpose column at all. The export's visits are not rare for leaving the purpose out
    (the file records none: one fact of the file, which the outlier model counted on each
    of its visits); the book's one visit without a purpose is."""
    book = [
        [f"B{i}", "ZAC", f"2022-03-{1 + i % 28:02d} 09:{i % 60:02d}", f"Ana Ruiz {i}",
         "" if i == 7 else "Visita familiar"]
        for i in range(400)
    ]  # fmt: skip
    export = [
        [f"G{i}", "ZAC", f"2022-03-{1 + i % 28:02d} 10:{i % 60:02d}", f"Luis Mejía {i}"]
        for i in range(100)
    ]
    ingest_file(store, write_csv(tmp_path / "book.csv", [*HEADER, "purpose"], book))
    ingest_file(store, write_csv(tmp_path / "gate.csv", HEADER, export))
    features = _features(store, tmp_path)
    rarity = dict(zip(features["record_id"], features["purpose_missing_rarity"], strict=True))
    assert len(rarity) == 500
    assert rarity["B7"] > 5  # 1 of 400 of the book's visits: -ln(1/400 + 0.001)
    assert all(rarity[f"G{i}"] == 0 for i in range(100))
    assert all(rarity[f"B{i}"] == 0 for i in range(400) if i != 7)


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
        # written otherwise, as a new user's logbooks did (each was "named" before)
        ("N.I.", "placeholder"),
        ("[ilegible]", "placeholder"),
        ("ACOMPAÑANTE (MENOR)", "placeholder"),
        ("Persona no identificada", "placeholder"),
        ("Firma ilegible", "placeholder"),
        ("Familiar", "placeholder"),
        ("José N.", "named"),
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


@pytest.mark.parametrize(
    "name",
    ["N.N.", "Anónimo", "SIN DATOS", "No indica", "NULL", "0", "X.", "Na Kim", "Menor", "Idem",
     "Rosa Elena", "(b)(6)", "---", "Acompañante de Juan"],
)  # fmt: skip
def test_a_name_is_classified_alike_at_ingest_and_in_sql(name):
    """``mapping.name_status`` (ingest) and ``schema.name_status_sql`` (rows stored before
    the column, the kinds that have none) are one classification written twice."""
    import duckdb

    from detector.mapping import fold_values, name_status
    from detector.schema import name_status_sql

    key = fold_values(pl.Series([name]))[0]
    in_sql = duckdb.sql(f"SELECT {name_status_sql('k')} FROM (SELECT ? AS k)", params=[key])
    assert name_status(pl.Series([key])).to_list() == [in_sql.fetchone()[0]]


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


# Ingest findings of the independent world (tests/worlds/latam.py, issue 24), each in the
# layout the world writes it in: a transfer register, visitors' books.

MEDICAL = ["Correlativo", "Interno", "Centro Origen", "Centro Destino", "Fecha Traslado",
           "Motivo", "Autorizado por", "Visto Bueno Médico", "Fecha Retorno"]  # fmt: skip


def test_transfer_reasons_and_approvals_read_as_registers_write_them(store, tmp_path):
    """'razones médicas' (plural) and 'Cirugía programada' read as other, so the medical
    rules never saw them; a return from a court hearing read as a return from hospital;
    'Pendiente' (or 'N/A', '-') in the approval column counted as an approval."""
    data = [
        ["T1", "P1", "MSZ", "CBA", "03/10/2019 04:45", "Traslado por razones médicas", "DG", "", ""],
        ["T2", "P2", "CBA", "HNR", "04/10/2019 08:00", "Cirugía programada", "DG", "Memo 12/2019", ""],
        ["T3", "P3", "CJIM", "MSZ", "05/10/2019 17:00", "Retorno de audiencia", "Juzgado", "N/A", ""],
        ["T4", "P4", "CBA", "HNR", "20/01/2020 04:45", "Emergencia médica", "DG", "Pendiente", ""],
        ["T5", "P5", "CBA", "HNR", "21/01/2020 04:45", "Emergencia médica", "DG", "-", ""],
        ["T6", "P6", "HNR", "CBA", "22/01/2020 09:00", "Retorno de hospital", "DG", "", ""],
    ]  # fmt: skip
    r = ingest_file(store, write_csv(tmp_path / "t.csv", MEDICAL, data, "cp1252", ";"))
    assert r.rows_stored == 6, r.reasons
    assert rows(
        store,
        "SELECT record_id, reason, medical_approval, medical_approval_raw FROM transfers "
        "ORDER BY 1",
    ) == [
        ("T1", "medical", None, None),
        ("T2", "medical", "Memo 12/2019", "Memo 12/2019"),
        ("T3", "court", None, "N/A"),
        ("T4", "medical", None, "Pendiente"),
        ("T5", "medical", None, "-"),
        ("T6", "medical_return", None, None),
    ]
    run_rules(store, only=["medical-transfer-without-approval"])
    flagged = rows(
        store,
        "SELECT t.record_id FROM flags f, unnest(f.record_keys) u(k) "
        "JOIN transfers t ON t.record_key = u.k ORDER BY 1",
    )
    assert flagged == [("T1",), ("T4",), ("T5",)]


def test_a_same_day_return_written_as_a_date_is_no_return_before_the_transfer(store, tmp_path):
    """'11/03/2019' beside a transfer at '11/03/2019 14:14': the return was that day (24
    same-day hospital round trips of the world were quarantined); a return dated the day
    before still is."""
    data = [
        ["T1", "P1", "CBA", "HNR", "11/03/2019 14:14", "Consulta médica", "DG", "Dr. R", "11/03/2019"],
        ["T2", "P2", "CBA", "HNR", "11/03/2019 14:14", "Consulta médica", "DG", "Dr. R", "10/03/2019"],
        ["T3", "P3", "CBA", "HNR", "11/03/2019 14:14", "Consulta médica", "DG", "Dr. R", "11/03/2019 09:00"],
    ]  # fmt: skip
    r = ingest_file(store, write_csv(tmp_path / "t.csv", MEDICAL, data, "cp1252", ";"))
    assert (r.rows_stored, r.rows_quarantined) == (1, 2)
    assert rows(store, "SELECT record_id FROM transfers") == [("T1",)]
    assert rows(store, "SELECT source_row, reason_code FROM quarantine ORDER BY 1") == [
        (3, "return_before_transfer"),
        (4, "return_before_transfer"),
    ]


def test_a_dui_column_with_no_type_column_holds_duis(store, tmp_path):
    """Zacatecoluca writes everyone's document in a column headed 'DUI' and no type: the
    invalid-DUI rule never checked them (the type was empty). A foreign delegate's
    passport written in that column is no DUI."""
    header = ["Correlativo", "Centro Penal", "Fecha", "Hora Ingreso", "Nombre", "DUI", "Calidad"]
    data = [
        ["V1", "MSZ", "01/06/2019", "10:00", "Ana Pérez", "01234567-8", "Familiar"],
        ["V2", "MSZ", "01/06/2019", "10:05", "Bea Ruiz", "01234567-1", "Familiar"],
        ["V3", "MSZ", "01/06/2019", "10:10", "Eva Cruz", "", "Familiar"],
        ["V4", "MSZ", "01/06/2019", "10:15", "Lukas Meier", "X4471982", "ONG"],
        ["V5", "MSZ", "01/06/2019", "10:20", "Dilcia Zúniga", "0801-1979-04417", "Familiar"],
        ["V6", "MSZ", "01/06/2019", "10:25", "Rosa Díaz", "012345678", "Familiar"],
    ]
    ingest_file(store, write_csv(tmp_path / "v.csv", header, data, "cp1252", ";"))
    assert rows(store, "SELECT record_id, id_type FROM visits ORDER BY 1") == [
        ("V1", "DUI"),
        ("V2", "DUI"),
        ("V3", None),
        ("V4", None),  # a passport
        ("V5", None),  # a Honduran DNI
        ("V6", "DUI"),  # without its hyphen
    ]
    run_rules(store, only=["unidentified-invalid-dui"])
    flagged = rows(
        store,
        "SELECT v.record_id FROM flags f, unnest(f.record_keys) u(k) "
        "JOIN visits v ON v.record_key = u.k",
    )
    assert flagged == [("V2",)]


def test_minors_stated_in_their_own_column_are_read(store, tmp_path):
    """Izalco's 'num_menores' (children in the party, seldom named) had no field."""
    header = ["id_registro", "centro_penal", "fecha_ingreso", "hora_entrada", "nombres",
              "apellidos", "num_personas", "num_menores"]  # fmt: skip
    data = [
        ["V1", "IZA", "01/06/2019", "10:00", "Ana", "Pérez", "3", "2"],
        ["V2", "IZA", "01/06/2019", "10:05", "Bea", "Ruiz", "1", ""],
    ]
    ingest_file(store, write_csv(tmp_path / "v.csv", header, data, "utf-8-sig", ","))
    assert rows(store, "SELECT record_id, party_size, minors FROM visits ORDER BY 1") == [
        ("V1", 3, 2),
        ("V2", 1, None),
    ]


def test_peruvian_documents_read_as_dni(store, tmp_path):
    """INPE writes 'DNI/LE' as the type, the Despacho Presidencial 'DNI 09272448' in one
    cell: both were type other (or none) and the number kept its prefix."""
    header = ["Fecha", "Hora Ingreso", "Visitante", "Documento", "Tipo Documento", "Centro"]
    data = [
        ["31/08/2015", "19:04", "PAJARES CRIADO SERGIO", "DNI 09272448", "", "PALACIO"],
        ["31/08/2015", "19:05", "MARIA LLUEN", "17434996", "DNI/LE", "PALACIO"],
        ["31/08/2015", "19:06", "JOHN SMITH", "Pasaporte N° X1234567", "", "PALACIO"],
        ["31/08/2015", "19:07", "ANA RUIZ", "01234567-8", "DUI", "PALACIO"],
    ]
    ingest_file(store, write_csv(tmp_path / "v.csv", header, data))
    assert rows(
        store, "SELECT name, id_type, id_type_raw, id_number FROM visits ORDER BY entered_at"
    ) == [
        ("PAJARES CRIADO SERGIO", "DNI", "DNI", "09272448"),
        ("MARIA LLUEN", "DNI", "DNI/LE", "17434996"),
        ("JOHN SMITH", "passport", "Pasaporte", "X1234567"),
        ("ANA RUIZ", "DUI", "DUI", "01234567-8"),
    ]


def test_each_part_a_person_plays_in_a_visit_is_counted_apart(store, tmp_path):
    """A register's host column made the clerk visited the riskiest 'person': credited
    with every visitor's visits. Now a person's own visits, those they escorted in and
    those paid to them are apart; only the first two carry risk; a name written only as a
    host or escort never came in and is no person."""
    from detector import pipeline
    from detector.rollup import rollup

    header = ["record_id", "facility", "entered_at", "exited_at", "name", "host", "escorted_by"]
    data = [
        [f"A{d}", "ZAC", f"2022-02-{d:02d} 10:00", f"2022-02-{d:02d} 11:00", "Ana Pérez",
         "Beto Clerk", ""]
        for d in range(1, 21)
    ] + [
        ["B1", "ZAC", "2022-02-03 08:00", "2022-02-03 17:00", "Beto Clerk", "", ""],
        ["C1", "ZAC", "2022-02-04 09:00", "2022-02-04 12:00", "Carla Guard", "", ""],
        ["D1", "ZAC", "2022-02-04 09:05", "2022-02-04 12:00", "Dora Ruiz", "Elsa Only", "Carla Guard"],
    ]  # fmt: skip
    path = write_csv(tmp_path / "v.csv", header, data)
    pipeline.run(store, [path], pipeline.Steps(), user="test")
    frame = rollup(store, "person")
    got = {
        r["person"]: (r["visits"], r["escorted_visits"], r["hosted_visits"])
        for r in frame.iter_rows(named=True)
    }
    assert got == {  # each person shown as the logs write them (identity linkage)
        "Ana Pérez": (20, 0, 0),
        "Beto Clerk": (1, 0, 20),
        "Carla Guard": (1, 1, 0),
        "Dora Ruiz": (1, 0, 0),
    }
    risk = {r["person"]: r["total_risk"] for r in frame.iter_rows(named=True)}
    own = rows(
        store,
        "SELECT round(risk_score, 3) FROM scores JOIN visits USING (record_key) "
        "WHERE record_id = 'B1' AND run_id = (SELECT max(run_id) FROM scores)",
    )
    assert [(risk["Beto Clerk"],)] == own  # his own visit's risk, none of Ana's
