"""Header folding, kind detection and date parsing."""

from __future__ import annotations

import json
from datetime import date, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.dates import to_datetime
from detector.errors import FileError
from detector.mapping import detect_kind, fold
from tests.conftest import rows, write_csv


@pytest.mark.parametrize(
    "header,folded",
    [
        ("Fecha Ingreso", "fecha_ingreso"),
        ("  FECHA_INGRESO ", "fecha_ingreso"),
        ("Línea", "linea"),
        ("\ufeffCentro Penal", "centro_penal"),
        ("Nº Folio", "no_folio"),
    ],
)
def test_fold(header, folded):
    assert fold(header) == folded


@pytest.mark.parametrize(
    "headers,kind",
    [
        (["Centro Penal", "Fecha", "Hora Ingreso", "Nombre"], "visits"),
        (["Interno", "Centro Origen", "Centro Destino", "Fecha Traslado"], "transfers"),
        (["Interno", "Nombre", "Pandilla", "Rango"], "inmates"),
        (["Libro", "Centro Penal", "Fecha Apertura", "Fecha Cierre"], "logbooks"),
        (["Codigo", "Nombre", "Nivel Seguridad", "Horario Visitas"], "facilities"),
    ],
)
def test_detect_kind(headers, kind):
    assert detect_kind(headers, "f.csv") == kind


def test_detect_kind_rejects_unknown_headers():
    with pytest.raises(FileError, match="--kind"):
        detect_kind(["a", "b", "c"], "f.csv")


SPELLINGS = {
    "dmy": [
        "{d:02d}/{m:02d}/{Y} {H:02d}:{M:02d}",
        "{d}/{m}/{Y} {H}:{M:02d}",
        "{d:02d}-{m:02d}-{Y} {H:02d}:{M:02d}:00",
        "{Y}-{m:02d}-{d:02d}T{H:02d}:{M:02d}:00",
        "{d:02d}/{m:02d}/{Y} {h}:{M:02d} {ap}",
    ],
    "mdy": ["{m}/{d}/{Y} {H}:{M:02d}", "{m:02d}/{d:02d}/{Y} {h}:{M:02d} {ap}"],
}


@settings(max_examples=150, deadline=None)
@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2035, 12, 31)),
    st.sampled_from(["dmy", "mdy"]),
    st.data(),
)
def test_date_spellings_round_trip(when, order, data):
    when = when.replace(second=0, microsecond=0)
    spelling = data.draw(st.sampled_from(SPELLINGS[order]))
    h = when.hour % 12 or 12
    ap = data.draw(
        st.sampled_from(["AM", "a.m.", "a. m."] if when.hour < 12 else ["PM", "p.m.", "p. m."])
    )
    text = spelling.format(
        d=when.day, m=when.month, Y=when.year, H=when.hour, M=when.minute, h=h, ap=ap
    )
    parsed = to_datetime(pl.Series([text, None, "garbage"]), order)
    assert parsed.to_list() == [when, None, None], text


def test_a_large_column_mixing_spellings_reads_every_row():
    """Most rows take the fast path (read as written); the odd ones the full one."""
    base = datetime(2022, 2, 5, 10, 0)
    texts = [f"2022-02-05T10:{i % 60:02d}:00" for i in range(20_000)]
    odd = {
        777: ("05/02/2022 3:15 p.m.", datetime(2022, 2, 5, 15, 15)),
        9_001: (" 2022-02-05 10:00 ", base),
        15_000: ("2022-02-05T10:00:00.250", base.replace(microsecond=250_000)),
        19_999: ("2022-02-05T10:00:00+02:00", base),
        12_345: ("no date", None),
    }
    for i, (text, _) in odd.items():
        texts[i] = text
    parsed = to_datetime(pl.Series(texts), "dmy").to_list()
    for i, (text, expected) in odd.items():
        assert parsed[i] == expected, text
    assert parsed[0] == base and parsed[61] == base.replace(minute=1)
    assert sum(v is None for v in parsed) == 1


# --- mappings saved by name (the upload page's), reused from the CLI and the inbox ---------


def _hand_mapping():
    from detector.mapping import UserMapping

    return UserMapping(
        kind="visits",
        date_order="mdy",
        columns={"facility": "Lugar", "entered_at": "Llegada", "name": "Quien"},
    )


def _odd_layout(path):
    return write_csv(
        path,
        ["Lugar", "Llegada", "Quien"],
        [["ZAC", "2/1/2022 11:46", "Ana Pérez"], ["ZAC", "2/3/2022 09:10", "Luis Ruiz"]],
    )


def test_a_saved_mapping_keeps_each_version_with_its_hash(store):
    from detector.mapping import load_named, named_mappings, save_named

    first = save_named(store, "libro viejo", _hand_mapping(), "ana")
    again = save_named(store, "libro viejo", _hand_mapping(), "luis")
    assert (first.version, again.version) == (1, 1) and first.sha256 == again.sha256
    changed = _hand_mapping().model_copy(update={"date_order": "dmy"})
    second = save_named(store, "libro viejo", changed, "ana")
    assert second.version == 2 and second.sha256 != first.sha256
    loaded = load_named(store, "libro viejo")
    assert loaded.version == 2 and loaded.mapping.date_order == "dmy"
    assert loaded.label == f"saved:libro viejo v2 sha256:{second.sha256}"
    assert named_mappings(store) == ["libro viejo"]
    assert rows(store, "SELECT count(*) FROM mappings") == [(2,)]
    with pytest.raises(FileError, match="mapping name"):
        save_named(store, "../etc/passwd", _hand_mapping(), "ana")


def test_a_saved_mapping_altered_in_the_database_is_refused(store):
    from detector.mapping import load_named, save_named

    save_named(store, "libro", _hand_mapping(), "ana")
    with store.write() as con:
        con.execute("UPDATE mappings SET body = replace(body, 'mdy', 'dmy')")
    with pytest.raises(FileError, match="does not match its recorded SHA-256"):
        load_named(store, "libro")


def test_the_cli_ingests_with_a_saved_mapping_and_the_ledger_names_it(store, tmp_path):
    from typer.testing import CliRunner

    from detector.cli import app
    from detector.mapping import save_named

    saved = save_named(store, "libro", _hand_mapping(), "ana")
    path = _odd_layout(tmp_path / "odd.csv")
    runner = CliRunner()
    result = runner.invoke(
        app, ["ingest", str(path), "--mapping", "libro", "--db", str(store.path)]
    )
    assert result.exit_code == 0, result.output
    assert rows(store, "SELECT min(entered_at)::DATE, count(*) FROM visits") == [
        (date(2022, 2, 1), 2)  # month first, as the saved mapping says
    ]
    [(ledger_mapping,)] = rows(store, "SELECT mapping FROM uploads")
    assert json.loads(ledger_mapping)["file"] == saved.label
    listed = runner.invoke(app, ["mappings", "--db", str(store.path)])
    assert "libro" in listed.output and saved.sha256[:16] in listed.output
    shown = runner.invoke(app, ["mappings", "libro", "--db", str(store.path)])
    assert "date_order: mdy" in shown.output and saved.label in shown.output
    unknown = runner.invoke(
        app, ["ingest", str(path), "--mapping", "nada", "--db", str(store.path)]
    )
    assert unknown.exit_code == 1 and "no mapping saved under that name" in unknown.output


def test_the_inbox_reads_a_folder_named_as_a_saved_mapping_with_it(store, tmp_path):
    import os
    import time

    from detector.mapping import save_named
    from detector.schedule import process_inbox

    saved = save_named(store, "libro", _hand_mapping(), "ana")
    inbox = tmp_path / "inbox"
    (inbox / "libro").mkdir(parents=True)
    path = _odd_layout(inbox / "libro" / "odd.csv")
    old = time.time() - 60
    os.utime(path, (old, old))
    (inbox / "other").mkdir()
    stray = _odd_layout(inbox / "other" / "odd2.csv")  # not a saved mapping: left alone
    os.utime(stray, (old, old))
    outcome = process_inbox(store, inbox)
    assert [(o["file"], o["status"], o["stored"]) for o in outcome] == [("odd.csv", "stored", 2)]
    [(ledger_mapping,)] = rows(store, "SELECT mapping FROM uploads")
    assert json.loads(ledger_mapping)["file"] == saved.label
    assert stray.exists()
