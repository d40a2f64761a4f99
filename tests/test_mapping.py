"""Header folding, kind detection and date parsing."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.dates import to_datetime
from detector.errors import FileError
from detector.mapping import detect_kind, fold


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
