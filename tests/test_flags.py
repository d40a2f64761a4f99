"""Rules over the demo world and the real WAVES log: quality, idempotence, exports."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, time, timedelta

import polars as pl
import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.engine import run_rules
from detector.evaluate import hits, rule_quality
from detector.export import neutralise
from detector.mapping import load_mapping
from detector.pipeline import ingest_files
from detector.store import Store
from tests.conftest import REPO, WAVES, rows
from tests.conftest import demo_store as copy_demo

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, demo_logs) -> Store:
    return copy_demo(tmp_path_factory.mktemp("demo-db") / "d.duckdb", demo_logs, scored=False)


def test_each_planted_anomaly_is_flagged_per_category(demo_store, demo_logs):
    quality = rule_quality(demo_store, demo_logs["truth"])
    assert set(quality) == {
        "unidentified_entrant",
        "logbook_gap",
        "medical_transfer",
        "visit_pattern",
        "vehicle",
    }
    for q in quality.values():
        assert q.planted > 0
        assert q.recall >= 0.95, (q.category, q.found, q.planted)
        assert q.precision >= 0.9, (q.category, q.true_flags, q.flags)


def test_no_silent_period_flags_for_nights_sundays_or_holidays(demo_store, demo_logs):
    truth = json.loads(demo_logs["truth"].read_text(encoding="utf-8"))
    gaps = [t for t in truth if t["category"] == "logbook_gap" and t.get("period")]
    silent = rows(
        demo_store,
        "SELECT record_ids, facility, logbook, period_start, period_end "
        "FROM flags WHERE rule_id = 'logbook-silent-period'",
    )
    assert len(silent) >= 4
    for record_ids, facility, logbook, start, end in silent:
        flag = {
            "record_ids": record_ids,
            "facility": facility,
            "logbook": logbook,
            "period_start": start,
            "period_end": end,
        }
        assert any(hits(flag, t) for t in gaps), f"silent period {facility} {start}..{end}"
        # never one ordinary night: the silence covers working hours (09-15) of some day
        days = [start.date() + timedelta(days=n) for n in range((end - start).days + 2)]
        assert any(
            start < datetime.combine(d, time(15)) and end > datetime.combine(d, time(9))
            for d in days
        ), (start, end)


def test_non_medical_transfers_never_flagged(demo_store):
    assert rows(
        demo_store,
        """
        SELECT count(*) FROM flags f, unnest(f.record_keys) k(key)
        JOIN transfers t ON t.record_key = k.key
        WHERE f.category = 'medical_transfer' AND t.reason <> 'medical'""",
    ) == [(0,)]


def test_rerun_keeps_flag_ids_and_review_state(demo_store):
    before = rows(demo_store, "SELECT flag_id FROM flags ORDER BY 1")
    some = before[0][0]
    with demo_store.write() as con:
        con.execute(
            "INSERT OR REPLACE INTO reviews (flag_id, status, note) "
            "VALUES (?, 'confirmed', 'seen the paper log')",
            [some],
        )
    report = run_rules(demo_store)
    assert sum(report.new.values()) == 0 and report.resolved == 0
    assert rows(demo_store, "SELECT flag_id FROM flags ORDER BY 1") == before
    assert rows(demo_store, "SELECT status, note FROM reviews WHERE flag_id = ?", [some]) == [
        ("confirmed", "seen the paper log")
    ]
    assert (
        rows(demo_store, "SELECT count(*) FROM runs WHERE kind = 'rules' AND status = 'ok'")[0][0]
        >= 2
    )


def test_flags_that_stop_firing_are_resolved_not_deleted(store, tmp_path):
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,record_id\nZAC,2019-06-01 10:00,N/I,R1\n", encoding="utf-8"
    )
    ingest_files(store, [path])
    run_rules(store, only=["unidentified-placeholder-name"])
    with store.write() as con:  # e.g. the record was corrected at the source
        con.execute("UPDATE visits SET name = 'Ana', name_key = 'ANA', name_status = 'named'")
    report = run_rules(store, only=["unidentified-placeholder-name"])
    assert report.resolved == 1
    assert rows(store, "SELECT state FROM flags") == [("resolved_by_data",)]


def test_a_flag_hit_again_keeps_its_evidence_unless_its_records_or_their_places_changed(
    store, tmp_path
):
    """A flag hit again citing the same records, from the same places, keeps what it
    stored (its lists and evidence are not written again); one whose record is now cited
    from another page takes the new evidence (one citing other records: see
    test_incremental's grown cases)."""
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,record_id,logbook,page,line\n"
        "ZAC,2019-06-01 10:00,N/I,R1,L-1,4,7\nZAC,2019-06-01 11:00,Ana,R2,L-1,4,8\n",
        encoding="utf-8",
    )
    ingest_files(store, [path])
    rule = ["unidentified-placeholder-name"]
    first = run_rules(store, only=rule)
    stored = "SELECT flag_id, record_ids, evidence, last_run FROM flags"
    ((flag, ids, evidence, _),) = rows(store, stored)
    assert ids == ["R1"] and '"page":4' in evidence
    again = run_rules(store, only=rule)
    assert rows(store, stored) == [(flag, ids, evidence, again.run_id)]
    assert again.run_id > first.run_id
    with store.write() as con:  # the line was transcribed from another page
        con.execute("UPDATE visits SET page = 5 WHERE record_id = 'R1'")
    run_rules(store, only=rule)
    ((_, ids, evidence, _),) = rows(store, stored)
    assert ids == ["R1"] and '"page":5' in evidence and '"page":4' not in evidence


def test_flags_stored_in_small_chunks_and_summed_cases_are_the_same(
    demo_store, demo_logs, tmp_path, monkeypatch
):
    """Hits are upserted a few flags and a few cited records at a time (a common name's
    flags citing millions of lines must not be one chunk's evidence), and a grouped rule's
    rows past SUMMED_ROWS are summed per case by DuckDB: chunks of two flags and three
    records, every grouped rule summed, give the flags, evidence and words of the demo's
    run."""
    from detector import engine, flags

    monkeypatch.setattr(flags, "FLAG_CHUNK", 2)
    monkeypatch.setattr(flags, "KEY_CHUNK", 3)
    monkeypatch.setattr(engine, "SUMMED_ROWS", 0)
    fresh = copy_demo(tmp_path / "d.duckdb", demo_logs, scored=False)
    with fresh.write() as con:
        con.execute("DELETE FROM flags")
    run_rules(fresh, full=True)
    stored = (
        "SELECT flag_id, rule_id, record_ids, evidence, explanation, fields, severity, "
        "period_start, period_end, state FROM flags "
        "WHERE source = 'rule' ORDER BY flag_id"
    )
    got = rows(fresh, stored)
    assert len(got) > 50
    assert got == rows(demo_store, stored)


def test_every_flag_carries_evidence_to_file_row_logbook_page_line(demo_store):
    for rule_id, evidence, explanation in rows(
        demo_store, "SELECT rule_id, evidence, explanation FROM flags"
    ):
        items = json.loads(evidence)
        assert items, rule_id
        assert all(i["file"] and i["sha256"] and i["row"] for i in items), rule_id
        assert "?" not in explanation.replace("?)", ""), (rule_id, explanation)
    page_rows = rows(
        demo_store,
        "SELECT evidence FROM flags WHERE rule_id = 'unidentified-placeholder-name' LIMIT 1",
    )
    item = json.loads(page_rows[0][0])[0]
    assert item["logbook"] and item["page"] and item["line"]


def test_a_line_on_the_back_of_a_folio_is_cited_as_the_back(tmp_path):
    """A book written on both sides: an "N/I" entrant on "3 vta." (the back of folio 3) is
    cited as folio 3's back in the flag's evidence, the export and the dossier (as folio 3
    alone, an auditor would open the front)."""
    from detector import dossier
    from detector.export import flags_bytes
    from detector.flags import FlagQuery, read_flags

    path = tmp_path / "libro.csv"
    path.write_text(
        "record_id,facility,logbook,page,line,entered_at,name\n"
        "A1,ZAC,L-7,3,1,2019-06-03 09:00,Ana Ruiz\n"
        "A2,ZAC,L-7,3 vta.,1,2019-06-03 10:00,N/I\n",
        encoding="utf-8",
    )
    store = Store(tmp_path / "d.duckdb", wait=30)
    ingest_files(store, [path])
    run_rules(store, only=["unidentified-placeholder-name"])
    ((fid, evidence),) = rows(store, "SELECT flag_id, evidence FROM flags")
    (item,) = json.loads(evidence)
    assert (item["record_id"], item["page"], item["page_side"], item["line"]) == (
        "A2", 3, "verso", 1,
    )  # fmt: skip
    frame = read_flags(store, FlagQuery())
    assert "page 3 verso, line 1" in flags_bytes(frame, "csv", "en").decode()
    assert "3 vuelta" in dossier.render(store, [fid], "auditor", "es")


def test_flags_export_json_and_csv_fields(demo_store):
    db = ["--db", str(demo_store.path)]
    out = runner.invoke(app, ["flags", "--format", "json", "--category", "medical_transfer", *db])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data and all(isinstance(d["record_ids"], list) for d in data)
    assert {
        "flag_id",
        "rule_id",
        "category",
        "severity",
        "facility",
        "logbook",
        "period_start",
        "period_end",
        "record_ids",
        "evidence",
        "explanation",
    } <= set(data[0])
    out = runner.invoke(app, ["flags", "--format", "csv", "--min-severity", "critical", *db])
    table = list(csv.DictReader(io.StringIO(out.output)))
    assert table and {r["severity"] for r in table} == {"critical"}


def test_exports_neutralise_formula_injection(store, tmp_path):
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,vehicle_plate\n"
        'ZAC,2019-06-01 10:00,"=HYPERLINK(""http://x"",""y"")",\n'
        '"@SUM(A1)",2019-06-01 10:00,,+P123\n',
        encoding="utf-8",
    )
    ingest_files(store, [path])
    run_rules(store)
    out = runner.invoke(app, ["flags", "--format", "csv", "--db", str(store.path)])
    cells = [c for r in csv.reader(io.StringIO(out.output)) for c in r]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    assert "'@SUM(A1)" in cells  # the facility cell, escaped
    xlsx = tmp_path / "f.xlsx"
    assert (
        runner.invoke(
            app, ["flags", "--format", "xlsx", "--output", str(xlsx), "--db", str(store.path)]
        ).exit_code
        == 0
    )
    import openpyxl

    # A workbook stores them as text cells, never formulas, and as written: no visible
    # quote in front (the CSV needs one; a workbook cell typed as a string does not).
    with zipfile.ZipFile(xlsx) as zf:
        assert b"<f>" not in zf.read("xl/worksheets/sheet1.xml")
    sheet = openpyxl.load_workbook(xlsx).active
    cells = [c for row in sheet.iter_rows() for c in row if isinstance(c.value, str)]
    assert not [c for c in cells if c.data_type == "f"]
    assert "@SUM(A1)" in {c.value for c in cells}
    assert not [c.value for c in cells if c.value.startswith("'")]
    assert neutralise("-1+2") == "'-1+2" and neutralise("Ana") == "Ana"


def test_xlsx_export_shows_line_ends_as_line_ends(tmp_path):
    """A carriage return in a note or explanation showed as "_x000D_" in the workbook."""
    from detector.export import xlsx_text

    frame = pl.DataFrame({"note": ["line 1\r\nline 2", "a\rb"]})
    out = tmp_path / "n.xlsx"
    xlsx_text(frame).write_excel(out)
    with zipfile.ZipFile(out) as zf:
        assert b"_x000D_" not in zf.read("xl/sharedStrings.xml")
    assert pl.read_excel(out).get_column("note").to_list() == ["line 1\nline 2", "a\nb"]


def test_waves_party_rule_flags_exactly_the_short_appointments(store):
    ingest_files(store, [WAVES], mapping=load_mapping(REPO / "logs/mappings/waves.toml"))
    run_rules(store)

    raw = pl.read_csv(WAVES, infer_schema=False)
    short = (
        raw.group_by("UIN")
        .agg(pl.len().alias("named"), pl.col("TOTAL_PEOPLE").cast(pl.Int64).max().alias("total"))
        .filter(pl.col("total") > pl.col("named"))
    )
    flagged = rows(
        store, "SELECT rule_id, fields FROM flags WHERE category = 'unidentified_entrant'"
    )
    assert {r[0] for r in flagged} == {"unidentified-party-larger-than-names"}
    parties = {json.loads(f)["party_id"] for _, f in flagged}
    assert parties == set(short.get_column("UIN").to_list())
    assert len(parties) == short.height > 0


def test_exports_open_in_a_spanish_locale_spreadsheet(store, tmp_path):
    """Exports carried no risk column, evidence as one JSON cell, a UTF-8 CSV without BOM
    and with ',' (a Spanish-locale Excel splits on ';' and needs the BOM for accents), and
    an XLSX without a frozen header or filter."""
    import openpyxl

    from detector.auth import Actor
    from detector.review import set_status
    from detector.scoring import score

    path = tmp_path / "v.csv"
    path.write_text(
        "facility;entered_at;name;record_id;logbook;page;line\n"
        "ZAC;2019-06-01 10:00;N/I;R1;501;3;4\n"
        "ZAC;2019-06-02 10:00;Acompañante de Óscar;R2;501;3;5\n",
        encoding="utf-8",
    )
    ingest_files(store, [path])
    run_rules(store)
    score(store)
    flag = rows(store, "SELECT flag_id FROM flags ORDER BY flag_id LIMIT 1")[0][0]
    set_status(store, Actor("ana", "auditor"), flag, "confirmed")
    out = tmp_path / "flags.csv"
    result = runner.invoke(
        app, ["flags", "--format", "csv-semicolon", "--output", str(out), "--db", str(store.path)]
    )
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the byte-order mark
    table = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert list(table[0])[:4] == ["flag_id", "risk", "review_status", "assignee"]
    assert {"evidence_files", "evidence_places"} <= set(table[0])
    assert any(r["review_status"] == "confirmed" for r in table)
    assert all(float(r["risk"]) > 0 for r in table)
    places = " ".join(r["evidence_places"] for r in table)
    assert "v.csv row 2, book 501, page 3, line 4" in places
    assert any("Óscar" in r["explanation"] or "Óscar" in r["fields"] for r in table)
    plain = runner.invoke(app, ["flags", "--format", "csv", "--db", str(store.path)])
    assert plain.output.startswith("\ufeffflag_id,risk,")
    # In Spanish: the same columns and codes (scripts read any export), the words in Spanish.
    spanish = tmp_path / "hallazgos.csv"
    result = runner.invoke(
        app,
        ["flags", "--format", "csv-semicolon", "--language", "es", "--output", str(spanish),
         "--db", str(store.path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    es = list(csv.DictReader(io.StringIO(spanish.read_text("utf-8-sig")), delimiter=";"))
    assert list(es[0]) == list(table[0]) and [r["flag_id"] for r in es] == [
        r["flag_id"] for r in table
    ]
    assert {r["review_status"] for r in es} == {r["review_status"] for r in table}
    assert "v.csv fila 2, libro 501, folio 3, línea 4" in " ".join(r["evidence_places"] for r in es)
    named = next(r for r in es if r["rule_id"] == "unidentified-placeholder-name")
    assert named["title"].startswith("Persona anotada con un marcador")
    assert "alguien entró " in named["explanation"]

    xlsx = tmp_path / "flags.xlsx"
    runner.invoke(
        app, ["flags", "--format", "xlsx", "--output", str(xlsx), "--db", str(store.path)]
    )
    sheet = openpyxl.load_workbook(xlsx).active
    assert sheet.freeze_panes == "B2"
    assert sheet.tables and next(iter(sheet.tables.values())).autoFilter is not None
    header = [c.value for c in sheet[1]]
    widths = {header[i]: sheet.column_dimensions[chr(65 + i)].width for i in range(len(header))}
    assert widths["explanation"] > widths["severity"]
