"""Spanish and English: the catalogue translates every marked message, every rule's
Spanish text fills in from its own hits, and dates and numbers read as each language
writes them."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from detector import i18n
from detector.rulebook import load_rules
from detector.wording import rule_wording
from tests.conftest import REPO, rule_cases
from tests.readable import spanish_leftovers

KEYWORDS = {
    "_": None,
    "N_": None,
    "ngettext": (1, 2),
    "translate": (2,),
    "translate_plural": (2, 3),
}


def _marked() -> set[str]:
    """Every message the code marks for translation, extracted as `scripts/i18n.sh` does."""
    found = set()
    for folder in ("detector", "dashboard"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            REPO / folder, keywords=KEYWORDS, comment_tags=()
        ):
            found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_marked_message_has_its_spanish():
    with (i18n.LOCALES / "es" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="es")
    translated = {
        (m.id[0] if isinstance(m.id, tuple) else m.id)
        for m in catalog
        if m.id and (all(m.string) if isinstance(m.string, tuple) else m.string)
        and "fuzzy" not in m.flags
    }  # fmt: skip
    missing = sorted(_marked() - translated)
    assert not missing, f"run scripts/i18n.sh and translate: {missing[:10]}"


def test_a_message_placeholders_survive_translation():
    """A Spanish message that drops or renames a {value} would fail at .format()."""
    import string

    with (i18n.LOCALES / "es" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="es")
    for m in catalog:
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        wanted = {n for _, n, _, _ in string.Formatter().parse(ids[-1]) if n}
        for s in strings:
            got = {n for _, n, _, _ in string.Formatter().parse(s) if n}
            assert got == wanted, (m.id, s)


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r.id)
def test_each_rule_reads_in_spanish_from_its_own_hits(rule):
    """The Spanish explanation of each regression hit fills every field (no "?"), shows
    the Spanish reading of a sentence the query composes, and keeps no English of it; and
    each value the rule quotes has a heading in both languages (the detail page's table of
    the values that made it fire)."""
    cases = rule_cases(rule.id)
    assert cases.regression and all(p == [] for p in cases.regression), rule.id
    hits = cases.hits
    assert hits, rule.id
    unnamed = {
        k for f in hits for k in f
        if k not in i18n.FIELDS and not k.endswith("_es")
        and k.removesuffix("_raw") not in i18n.FIELDS
    }  # fmt: skip
    assert not unnamed, f"values {rule.id} quotes with no heading in detector.i18n.FIELDS"
    for fields in hits:
        title, text = rule_wording(rule, fields, "es")
        assert title == rule.es.title
        assert "?" not in text.replace("¿", ""), (rule.id, text)
        # no sentence glued from pieces, no date or figure written the English way, no
        # internal word (the words of the data and of a query's values aside)
        said = [p for p in spanish_leftovers(text) if not p.startswith("english:")]
        assert not said, (rule.id, said, text)
        for k, v in fields.items():
            if f"{k}_es" in fields and isinstance(v, str) and len(v) > 8:
                assert v not in text, (rule.id, k, text)
        english_title, english = rule_wording(rule, fields, "en")
        assert english_title == rule.title and "?" not in english


def test_dates_and_numbers_per_language():
    at = datetime(2019, 6, 1, 21, 5)
    assert i18n.moment(at, "es") == "01/06/2019 21:05"
    assert i18n.moment(at, "en") == "2019-06-01 21:05"
    assert i18n.moment(date(2019, 6, 1), "es") == "01/06/2019"
    assert i18n.moment("2019-06-01 21:05", "es") == "01/06/2019 21:05"
    assert i18n.number(1234.5, "es") == "1234,5" or i18n.number(1234.5, "es") == "1.234,5"
    assert i18n.number(1234567, "es") == "1.234.567"
    assert i18n.number(1234567, "en") == "1,234,567"
    assert i18n.weekday(1, "es") == "lunes" and i18n.weekday(7, "en") == "Sunday"


def test_coded_values_and_plurals():
    assert i18n.words("needs_external_verification", "es") == "requiere verificación externa"
    assert i18n.words("in_review", "en") == "in review"
    assert i18n.words("some_new_code", "es") == "some new code"
    assert i18n.translate_plural("es", "{n} finding", "{n} findings", 1) == "{n} hallazgo"
    assert i18n.translate_plural("es", "{n} finding", "{n} findings", 3) == "{n} hallazgos"


def test_unknown_language_falls_back_to_the_default(monkeypatch):
    monkeypatch.setenv("DETECTOR_LANGUAGE", "fr")
    assert i18n.default_language() == "es"
    monkeypatch.setenv("DETECTOR_LANGUAGE", "en")
    assert i18n.known("de") == "en" and i18n.known("es") == "es"


def test_every_column_a_page_can_show_has_a_heading_in_both_languages(store):
    """Tables show the database's columns through their headings: each column of every
    table (and of the risk roll-ups) has one, so no snake_case name reaches a reader in
    either language (a value as the file wrote it reads as "<heading> as written")."""
    from detector.rollup import ROLLUPS, rollup

    with store.read() as con:
        columns = {
            c for (c,) in con.execute(
                "SELECT DISTINCT column_name FROM information_schema.columns "
                "WHERE table_schema = 'main'"
            ).fetchall()
        }  # fmt: skip
    for by in ROLLUPS:
        columns |= set(rollup(store, by).columns)
    missing = sorted(
        c for c in columns if c not in i18n.FIELDS and c.removesuffix("_raw") not in i18n.FIELDS
    )
    assert not missing, missing
    assert i18n.field_name("entered_at_raw", "es") == "Entrada tal como se escribió"
    assert i18n.field_name("period_start", "es") == "Desde"


def test_a_refused_or_repeated_file_is_explained_in_spanish(store, tmp_path):
    """What the upload page says about a file it cannot store, or has stored already,
    follows the reader's language like everything else."""
    from detector.errors import said
    from detector.ingest import ingest_file

    empty = tmp_path / "vacio.csv"
    empty.write_bytes(b"")
    failed = ingest_file(store, empty)
    assert failed.status == "failed" and failed.message == "vacio.csv: file is empty"
    assert said(failed.source, failed.template, failed.values, "es") == (
        "vacio.csv: el archivo está vacío"
    )
    good = tmp_path / "v.csv"
    good.write_text("facility,entered_at,name\nZAC,2019-06-01 10:00,Ana\n", encoding="utf-8")
    ingest_file(store, good)
    again = ingest_file(store, good)
    assert again.status == "duplicate"
    assert said("v.csv", again.template, again.values, "es").startswith(
        "v.csv: ya se cargó como asiento 1 del libro de evidencias (v.csv, "
    )


def test_a_quarantined_row_reads_in_the_users_language(store, tmp_path):
    """Each quarantined row keeps its values beside its English reason: a Spanish user
    reads why in Spanish, with the field's Spanish heading; an English one reads the
    sentence stored with the row."""
    from dashboard.data import quarantine
    from detector.pipeline import ingest_files

    path = tmp_path / "libro.csv"
    path.write_text(
        "correlativo,centro_penal,ingreso,salida,nombre,folio\n"
        "1,ZAC,31/02/2019 08:00,,Ana Pérez,3\n"
        "2,ZAC,,,Luis Ruiz,4\n"
        "3,ZAC,04/06/2019 10:00,,Rosa Díaz,-2\n"
        "4,ZAC,05/06/2019 10:00,,Marta Gómez,5,extra\n",
        encoding="utf-8",
    )
    [result] = ingest_files(store, [path])
    assert result.rows_quarantined == 4, result.reasons
    english = dict(quarantine(store).select("reason_code", "reason").rows())
    spanish = dict(quarantine(store, lang="es").select("reason_code", "reason").rows())
    assert english["unparseable_date"].startswith("entered_at '31/02/2019 08:00' is not a date")
    assert spanish == {
        "unparseable_date": "Entrada '31/02/2019 08:00' no es una fecha u hora que esta "
        "herramienta pueda leer (se esperaba ISO 8601 o el orden dmy)",
        "missing_required": "el campo obligatorio Entrada está vacío",
        "negative_number": "Folio -2 es negativo",
        "wrong_field_count": "la fila tiene 7 campos y el encabezado 6",
    }


def test_a_file_error_names_fields_and_kinds_in_words():
    """ "ninguna columna para ... seen_at del tipo 'events'": a field and a kind are named
    by their words in Spanish, as the English names them by code."""
    from detector.errors import FileError

    error = FileError(
        "lecturas.csv",
        i18n.N_(
            "no column for required field(s) {fields} of kind '{kind}' (headers: {headers}); "
            "rename the column or map it in a --mapping file"
        ),
        fields="seen_at, reader",
        kind="events",
        headers="fecha, lector_id",
    )
    said = error.said("es")
    assert "Leído el, Lector" in said and "eventos de lectores" in said, said
    assert "seen_at" not in said and "events" not in said
    assert "seen_at, reader" in str(error)  # the English, as it was
