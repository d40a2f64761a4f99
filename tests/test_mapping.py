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


# --- hostile mapping files --------------------------------------------------------------------

VALUE_TABLE_CHILD = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # 3 GB of address space
from detector.ingest import ingest_file
from detector.mapping import load_mapping
from detector.store import Store
r = ingest_file(Store(Path(sys.argv[1]), wait=30), sys.argv[2], mapping=load_mapping(sys.argv[3]))
print(r.status, r.rows_stored)
"""


def test_a_large_value_table_is_a_lookup_not_a_chain_of_conditions(tmp_path):
    """2,000 entries under [values.role] took 10 GB and two minutes for a small file (one
    condition per entry); as a join it fits a 3 GB address-space cap in seconds, in a
    process of its own (as the dashboard and the inbox run it)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    entries = "\n".join(f'"spelling {n}" = "lawyer"' for n in range(2_000))
    mapping = tmp_path / "m.toml"
    mapping.write_text(f'[values.role]\n"Contractor" = "official"\n{entries}\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", VALUE_TABLE_CHILD, str(tmp_path / "d.duckdb"),
         str(REPO / "logs" / "sample" / "visits_QZT.csv"), str(mapping)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["stored", "5776"]
    store = __import__("detector.store", fromlist=["Store"]).Store(tmp_path / "d.duckdb")
    got = dict(rows(store, "SELECT role_raw, any_value(role) FROM visits GROUP BY 1"))
    assert got["contractor"] == "official" and got["family"] == "family"


def test_a_value_table_maps_by_folded_spelling_and_the_first_entry_wins():
    from detector.mapping import vocab_map

    raw = pl.Series("role", ["VA", " va ", "Abogáda", None, "", "familia", "zzz"])
    out = vocab_map(raw, "role", {"va": "other", "VA": "lawyer", "ABOGADA": "official"})
    assert out.to_list() == ["other", "other", "official", None, None, "family", "other"]


@pytest.mark.parametrize(
    "written,reason",
    [
        ("Hemodiálisis", "medical"),
        ("Tratamiento oncológico", "medical"),
        ("Evaluación por psiquiatría", "medical"),
        ("Cita en Nefrología, Hospital Rosales", "medical"),
        ("Intervención quirúrgica", "medical"),
        ("Chemotherapy", "medical"),
        ("Retorno de hemodiálisis", "medical_return"),
        ("Tratamiento penitenciario", "other"),  # the prison's programme, not a doctor's
        ("Consejo Criminológico", "other"),
        ("Audiencia", "court"),
    ],
)
def test_a_transfer_reason_naming_the_treatment_or_specialty_is_medical(written, reason):
    """Transfer orders name the treatment ("Hemodiálisis") or the specialty, not the word
    "medical": such a transfer of a gang leader went unjudged by every medical-transfer
    rule (found by an independent world)."""
    from detector.mapping import vocab_map

    assert vocab_map(pl.Series("reason", [written]), "reason", {}).to_list() == [reason]


@pytest.mark.parametrize(
    "written,role",
    [
        ("Visita íntima", "family"),
        ("Visita conyugal", "family"),
        ("Tía", "family"),
        ("Compañera de vida", "family"),
        ("Procurador", "lawyer"),  # a public defender (Procuraduría General)
        ("Procurador de Derechos Humanos", "official"),  # the ombudsman's, not a defender
        ("Fiscal", "official"),
        ("Jueza", "official"),
        ("Capellán", "other"),
    ],
)
def test_a_role_as_salvadoran_logbooks_write_it_is_read(written, role):
    """Roles a new user's logbooks wrote that were read as 'other' (and so judged by
    hours learned from everyone else's)."""
    from detector.mapping import vocab_map

    assert vocab_map(pl.Series("role", [written]), "role", {}).to_list() == [role]


def test_a_value_table_past_the_limit_is_refused_with_its_size(tmp_path):
    from detector.mapping import MAX_VALUE_ENTRIES, load_mapping

    path = tmp_path / "huge.toml"
    path.write_text(
        "[values.role]\n" + "\n".join(f'"v{n}" = "family"' for n in range(MAX_VALUE_ENTRIES + 1)),
        encoding="utf-8",
    )
    with pytest.raises(FileError, match=r"huge.toml: .*'role' has 5,001 entries \(limit 5,000\)"):
        load_mapping(path)


@pytest.mark.parametrize(
    "name,text",
    [
        ("deep.yaml", "columns:\n  name: " + "[" * 20_000 + "]" * 20_000 + "\n"),
        ("deep_block.yaml", "".join(f"{'  ' * n}k{n}:\n" for n in range(40)) + "  " * 40 + "x\n"),
        ("deep.toml", 'kind = "visits"\nx = ' + "[" * 20_000 + "]" * 20_000 + "\n"),
    ],
)
def test_a_mapping_nested_absurdly_deep_is_refused_naming_the_file(tmp_path, name, text):
    from detector.mapping import load_mapping

    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileError, match=rf"{name}: cannot read mapping file: .*nested more than"):
        load_mapping(path)


def test_a_key_given_twice_in_a_yaml_mapping_is_refused(tmp_path):
    from detector.mapping import load_mapping

    path = tmp_path / "dup.yaml"
    path.write_text("date_order: dmy\nkind: visits\ndate_order: mdy\n", encoding="utf-8")
    with pytest.raises(
        FileError, match=r"dup.yaml: .*'date_order' appears twice \(lines 1 and 3\)"
    ):
        load_mapping(path)
    nested = tmp_path / "dup2.yaml"
    nested.write_text("values:\n  role:\n    VA: other\n    VA: lawyer\n", encoding="utf-8")
    with pytest.raises(FileError, match="'VA' appears twice"):
        load_mapping(nested)
    toml = tmp_path / "dup.toml"
    toml.write_text('date_order = "dmy"\ndate_order = "mdy"\n', encoding="utf-8")
    with pytest.raises(FileError, match="dup.toml: cannot read mapping file"):
        load_mapping(toml)


@pytest.mark.parametrize(
    "text,said",
    [
        ("!!python/object/apply:os.system ['echo pwned']\n", "could not determine a constructor"),
        ("a: &a [x, x]\nb: &b [*a, *a]\ncolumns: {name: *b}\n", "aliases"),
    ],
)
def test_yaml_tags_and_aliases_stay_refused(tmp_path, text, said):
    from detector.mapping import load_mapping

    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileError, match=said):
        load_mapping(path)


@pytest.mark.parametrize("name", ["processed", "failed", " Failed "])
def test_the_inbox_folders_names_are_not_mapping_names(store, name):
    from detector.mapping import save_named

    with pytest.raises(FileError, match="one of the inbox's own folders"):
        save_named(store, name, _hand_mapping(), "ana")
    assert rows(store, "SELECT count(*) FROM mappings") == [(0,)]


def test_a_mapping_names_its_timezone_as_the_tz_database_does():
    from pydantic import ValidationError

    from detector.mapping import UserMapping

    assert UserMapping(timezone="America/Lima").timezone == "America/Lima"
    with pytest.raises(ValidationError, match="unknown time zone"):
        UserMapping(timezone="Lima time")


def test_an_empty_column_source_is_refused_not_ignored(store, tmp_path):
    """A table naming no column (``exited_at = {}``) was accepted and the field silently
    left out."""
    from detector.ingest import ingest_file
    from detector.mapping import UserMapping

    path = write_csv(
        tmp_path / "v.csv", ["facility", "entered_at", "name"], [["ZAC", "2022-02-01 10:00", "A"]]
    )
    r = ingest_file(store, path, mapping=UserMapping(columns={"exited_at": {}}))
    assert r.status == "failed" and "exited_at" in r.message and "names no column" in r.message
