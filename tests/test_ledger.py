"""Evidence ledger: originals kept by hash, chain and files verified."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from detector import ledger
from detector.cli import app
from detector.ingest import ingest_file
from tests.conftest import write_csv

pytestmark = pytest.mark.lake  # on either store (DETECTOR_TEST_STORE)


def _two_uploads(store, tmp_path):
    for n in (1, 2):
        path = write_csv(
            tmp_path / f"v{n}.csv",
            ["facility", "entered_at", "name"],
            [["ZAC", f"2022-02-0{n} 10:00", f"N{n}"]],
        )
        ingest_file(store, path, user="auditor")
    return store


def test_original_bytes_kept_read_only_and_chain_verifies(store, tmp_path):
    _two_uploads(store, tmp_path)
    sha = ledger.sha256_file(tmp_path / "v1.csv")
    kept = ledger.evidence_path(store, sha)
    assert kept.read_bytes() == (tmp_path / "v1.csv").read_bytes()
    assert not os.access(kept, os.W_OK) or os.geteuid() == 0
    assert oct(kept.stat().st_mode)[-3:] == "400"  # read-only, and the owner's alone
    result = ledger.verify(store)
    assert result.ok and result.entries == 2


def test_changed_evidence_file_is_detected(store, tmp_path):
    _two_uploads(store, tmp_path)
    kept = ledger.evidence_path(store, ledger.sha256_file(tmp_path / "v2.csv"))
    os.chmod(kept, 0o644)
    kept.write_bytes(kept.read_bytes().replace(b"N2", b"XX"))
    problems = ledger.verify(store).problems
    assert problems == [
        "ledger entry 2: evidence file v2.csv has changed since upload (SHA-256 differs)"
    ]


def test_edited_ledger_row_is_detected_and_cli_exits_non_zero(store, tmp_path):
    _two_uploads(store, tmp_path)
    with store.write() as con:
        con.execute("UPDATE uploads SET uploaded_by = 'someone else' WHERE seq = 1")
    problems = ledger.verify(store).problems
    assert any("ledger entry 1" in p and "edited" in p for p in problems)
    result = CliRunner().invoke(app, ["verify", "--db", store.url])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output


def test_deleted_ledger_row_breaks_the_chain(store, tmp_path):
    _two_uploads(store, tmp_path)
    with store.write() as con:
        con.execute("DELETE FROM visits WHERE upload_seq = 1")
        con.execute("DELETE FROM uploads WHERE seq = 1")
    assert any("link broken" in p for p in ledger.verify(store).problems)


def test_removed_records_are_detected(store, tmp_path):
    _two_uploads(store, tmp_path)
    with store.write() as con:
        con.execute("DELETE FROM visits WHERE upload_seq = 2")
    assert ledger.verify(store).problems == [
        "ledger entry 2: 1 rows recorded as stored, 0 found in the tables"
    ]


def test_an_edited_or_swapped_record_is_caught_by_the_sealed_digest(store, tmp_path):
    """Editing a stored visit inside the database, or swapping a record for another one
    (the count stays right), used to pass as "intact"; the digest of each upload's rows is
    sealed into its ledger entry."""
    _two_uploads(store, tmp_path)
    with store.write() as con:
        con.execute("UPDATE visits SET name = 'Someone Else' WHERE upload_seq = 1")
    assert ledger.verify(store).problems == [
        "ledger entry 1 (v1.csv): its stored rows differ from those sealed at upload "
        "(a record was edited, added or removed)"
    ]
    with store.write() as con:
        con.execute("UPDATE visits SET name = 'N1' WHERE upload_seq = 1")
    assert ledger.verify(store).ok  # put back as it was: intact again
    with store.write() as con:
        con.execute("UPDATE visits SET entered_at = entered_at + INTERVAL 1 DAY, source_row = 3")
    assert len(ledger.verify(store).problems) == 2
    with store.write() as con:  # the digest itself cannot be rewritten without the hash
        con.execute("UPDATE visits SET entered_at = entered_at - INTERVAL 1 DAY, source_row = 2")
        con.execute("UPDATE uploads SET rows_digest = NULL WHERE seq = 2")
    assert any("ledger entry 2" in p and "edited" in p for p in ledger.verify(store).problems)


def test_entries_sealed_before_the_digest_existed_still_verify(store, tmp_path):
    _two_uploads(store, tmp_path)
    with store.write() as con:  # as an older version wrote them: no digest, hash without it
        for seq, *row in con.execute(
            f"SELECT seq, {', '.join(ledger.CHAINED)} FROM uploads ORDER BY seq"
        ).fetchall():
            entry = dict(zip(ledger.CHAINED, row, strict=True))
            con.execute(
                "UPDATE uploads SET rows_digest = NULL, entry_hash = ? WHERE seq = ?",
                [ledger.chain_hash(entry, ledger.CHAINED), seq],
            )
        heads = [
            h for (h,) in con.execute("SELECT entry_hash FROM uploads ORDER BY seq").fetchall()
        ]
        con.execute("UPDATE uploads SET prev_hash = ? WHERE seq = 2", [heads[0]])
    with store.write() as con:
        ((seq, *row),) = con.execute(
            f"SELECT seq, {', '.join(ledger.CHAINED)} FROM uploads WHERE seq = 2"
        ).fetchall()
        entry = dict(zip(ledger.CHAINED, row, strict=True))
        con.execute(
            "UPDATE uploads SET entry_hash = ? WHERE seq = 2",
            [ledger.chain_hash(entry, ledger.CHAINED)],
        )
    assert ledger.verify(store).ok


def _reseal(con, seq: int, digest: str) -> None:
    """Give entry ``seq`` another rows digest, its hash and the chain after it recomputed
    (as an older version would have written them)."""
    con.execute("UPDATE uploads SET rows_digest = ? WHERE seq = ?", [digest, seq])
    fields = (*ledger.CHAINED, ledger.DIGEST)
    prev = ledger.GENESIS
    for row in con.execute(f"SELECT {', '.join(fields)} FROM uploads ORDER BY seq").fetchall():
        entry = {**dict(zip(fields, row, strict=True)), "prev_hash": prev}
        prev = ledger.entry_hash(entry)
        con.execute(
            "UPDATE uploads SET prev_hash = ?, entry_hash = ? WHERE seq = ?",
            [entry["prev_hash"], prev, entry["seq"]],
        )


def test_entries_sealed_by_the_first_digest_still_verify_and_catch_an_edit(store, tmp_path):
    """Entries sealed by digest v1 (a bare hexadecimal SHA-256 over the rows as text) are
    checked with v1; new entries carry v2 ("v2:…", detector.seal)."""
    _two_uploads(store, tmp_path)
    with store.write() as con:
        assert all(
            d.startswith("v2:")
            for (d,) in con.execute("SELECT rows_digest FROM uploads").fetchall()
        )
        _reseal(con, 1, ledger.rows_digest(con, "visits", 1))
    assert ledger.verify(store).ok
    with store.write() as con:
        con.execute("UPDATE visits SET name = 'Someone Else' WHERE upload_seq = 1")
    assert ledger.verify(store).problems == [
        "ledger entry 1 (v1.csv): its stored rows differ from those sealed at upload "
        "(a record was edited, added or removed)"
    ]


def test_the_seal_made_as_rows_stream_in_is_the_one_verify_recomputes(store, tmp_path, monkeypatch):
    """In several read batches, with NULLs, empty text and a row dropped as a duplicate of
    an earlier upload (the seal is then taken from the table): each entry's seal is what
    ``seal.table_seal`` computes from the stored rows."""
    import detector.formats as formats
    from detector import seal

    monkeypatch.setattr(formats, "BATCH_ROWS", 2)
    rows = [["ZAC", f"2022-02-0{n} 10:00", f"N{n}" if n % 3 else "", str(n)] for n in range(1, 8)]
    ingest_file(
        store, write_csv(tmp_path / "a.csv", ["facility", "entered_at", "name", "record_id"], rows)
    )
    ingest_file(
        store,
        write_csv(
            tmp_path / "b.csv",
            ["facility", "entered_at", "name", "record_id"],
            rows[5:] + [["ZAC", "2022-02-09 10:00", "N9", "9"]],
        ),
    )
    with store.read() as con:
        entries = con.execute("SELECT seq, rows_digest, rows_duplicate FROM uploads").fetchall()
        assert [d for _, _, d in entries] == [0, 2]
        for seq, digest, _ in entries:
            assert digest == seal.table_seal(con, "visits", seq)
    assert ledger.verify(store).ok


def test_evidence_no_entry_names_is_noted_not_called_tampering(store, tmp_path):
    """A crash after the copy was placed, before the commit, leaves a copy nobody names."""
    _two_uploads(store, tmp_path)
    staged_sha, staged = ledger.stage_evidence(store, tmp_path / "v1.csv")
    (tmp_path / "v3.csv").write_text("facility,entered_at\nZAC,2022-02-05 10:00\n")
    orphan_sha, orphan = ledger.stage_evidence(store, tmp_path / "v3.csv")
    ledger.place_evidence(store, orphan, orphan_sha)
    result = ledger.verify(store)
    assert result.ok and result.entries == 2
    assert sorted(result.unreferenced) == sorted([staged.name, f"{orphan_sha[:2]}/{orphan_sha}"])
    out = CliRunner().invoke(app, ["verify", "--db", store.url])
    assert out.exit_code == 0 and "named by no ledger entry" in out.output


def test_a_rewritten_chain_passes_alone_but_not_against_a_kept_anchor(store, tmp_path):
    """Whoever can write the database can edit an entry and recompute every hash after it:
    the chain then checks out. An anchor kept off the machine catches it."""
    _two_uploads(store, tmp_path)
    runner = CliRunner()
    kept = tmp_path / "anchor.json"
    assert runner.invoke(app, ["anchor", "--db", store.url, "--output", str(kept)]).exit_code == 0
    # A later upload does not disturb the anchored entry.
    ingest_file(
        store,
        write_csv(
            tmp_path / "v3.csv",
            ["facility", "entered_at", "name"],
            [["ZAC", "2022-02-03 10:00", "N3"]],
        ),
    )
    ok = runner.invoke(app, ["verify", "--db", store.url, "--anchor", str(kept)])
    assert ok.exit_code == 0 and "anchor" in ok.output
    # Rewrite: entry 1 says someone else uploaded it, and every hash is recomputed.
    with store.write() as con:
        fields = (*ledger.CHAINED, ledger.DIGEST)
        cur = con.execute(f"SELECT {', '.join(fields)} FROM uploads ORDER BY seq")
        entries = [dict(zip(fields, r, strict=True)) for r in cur.fetchall()]
        prev = ledger.GENESIS
        for e in entries:
            if e["seq"] == 1:
                e["uploaded_by"] = "someone else"
            e["prev_hash"] = prev
            prev = ledger.entry_hash(e)
            con.execute(
                "UPDATE uploads SET uploaded_by = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                [e["uploaded_by"], e["prev_hash"], prev, e["seq"]],
            )
    assert ledger.verify(store).ok  # the chain alone cannot tell
    caught = runner.invoke(app, ["verify", "--db", store.url, "--anchor", str(kept)])
    assert caught.exit_code == 1
    assert "rewritten" in " ".join(caught.output.split())


def test_uploads_sealed_before_a_kind_gained_fields_still_verify(store, tmp_path):
    """Visits gained host and minors, transfers medical_approval_raw (issue 24); an older
    upload's rows hold NULL there, and its seal, computed without them, must still hold:
    such late fields are sealed only when they hold a value."""
    from detector.store import LATE_FIELDS, sealed_columns

    _two_uploads(store, tmp_path)
    late = LATE_FIELDS["visits"]
    old_row = " || chr(31) || ".join(
        f"coalesce(CAST({c} AS VARCHAR), chr(0))" for c in sealed_columns("visits") if c not in late
    )
    with store.read() as con:
        old = con.execute(
            f"SELECT sha256(coalesce(string_agg(sha256({old_row}), '' ORDER BY source_row, "
            "record_key), '')) FROM visits WHERE upload_seq = 1"
        ).fetchall()[0][0]
        assert ledger.rows_digest(con, "visits", 1) == old
    with store.write() as con:  # a host written in afterwards is caught
        con.execute("UPDATE visits SET host = 'X' WHERE upload_seq = 1")
    assert any("differ from those sealed" in p for p in ledger.verify(store).problems)


def test_v2_seals_leave_out_late_fields_that_hold_nothing(store, tmp_path):
    """The same rule for the streamed seal: an upload sealed (v2) before visits had host and
    minors equals the seal recomputed from a table that has them, empty; a value written
    in one of them afterwards breaks it."""
    from detector import seal
    from detector.store import LATE_FIELDS

    _two_uploads(store, tmp_path)
    late = LATE_FIELDS["visits"]
    before = seal.RowsSeal("visits")  # as the seal was made without the late fields
    before.types = {c: t for c, t in before.types.items() if c not in late}
    before.streams = {k: h for k, h in before.streams.items() if k[0] not in late}
    before.late = {}
    columns = ", ".join(before.types)
    with store.read() as con:
        rows = con.sql(
            f"SELECT {columns} FROM visits WHERE upload_seq = 1 ORDER BY source_row, record_key"
        ).to_arrow_table()
        before.add(rows)
        assert seal.table_seal(con, "visits", 1) == before.hexdigest()
    with store.write() as con:
        con.execute("UPDATE visits SET minors = 2 WHERE upload_seq = 1")
    with store.read() as con:
        assert seal.table_seal(con, "visits", 1) != before.hexdigest()
