"""Review workflow: roles enforced on the server side, audit trail, concurrency with a writer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta

import pytest

from dashboard import data
from detector import auth
from detector.auth import Actor
from detector.engine import run_rules
from detector.flags import FlagQuery
from detector.pipeline import ingest_files
from detector.review import ReviewError, assign, history, set_status, suppress
from detector.store import Store
from tests.conftest import REPO, rows

pytestmark = pytest.mark.lake  # on either store (DETECTOR_TEST_STORE)

AUDITOR = Actor("ana", "auditor")
VIEWER = Actor("victor", "viewer")


@pytest.fixture
def flagged(store, tmp_path) -> tuple[Store, list[str]]:
    path = tmp_path / "v.csv"
    path.write_text(
        "facility,entered_at,name,record_id\n"
        + "".join(f"ZAC,2019-06-0{i} 10:00,N/I,R{i}\n" for i in range(1, 4)),
        encoding="utf-8",
    )
    ingest_files(store, [path])
    run_rules(store)
    auth.add_user(store.users, "ben", "auditor", password="pw-ben-12345")
    return store, [r[0] for r in rows(store, "SELECT flag_id FROM flags ORDER BY 1")]


def test_status_changes_are_audited(flagged):
    store, (a, b, *_) = flagged
    set_status(store, AUDITOR, a, "confirmed", note="matches the paper log, page 12")
    set_status(store, AUDITOR, b, "dismissed", reason="data_error", note="typo")
    assign(store, AUDITOR, a, "ben")
    assert rows(
        store, "SELECT flag_id, status, reason, assignee FROM reviews ORDER BY 1"
    ) == sorted([(a, "confirmed", None, "ben"), (b, "dismissed", "data_error", None)])
    trail = history(store, a)
    assert [(h["actor"], h["action"], h["old"], h["new"]) for h in trail] == [
        ("ana", "assign", None, "ben"),
        ("ana", "status", "new", "confirmed"),
    ]
    assert trail[1]["note"] == "matches the paper log, page 12"


def test_a_flag_is_assigned_only_to_a_user(flagged):
    """An unknown username was accepted as assignee: the flag then belonged to no one."""
    store, (a, *_) = flagged
    with pytest.raises(ReviewError, match="no user 'bne'.*ben"):
        assign(store, AUDITOR, a, "bne")
    assert rows(store, "SELECT count(*) FROM reviews WHERE assignee IS NOT NULL") == [(0,)]
    assign(store, AUDITOR, a, "ben")
    assign(store, AUDITOR, a, None)  # to nobody
    assert rows(store, "SELECT assignee FROM reviews WHERE flag_id = ?", [a]) == [(None,)]


def test_dismissal_needs_a_reason_and_status_must_exist(flagged):
    store, (a, *_) = flagged
    with pytest.raises(ReviewError, match="reason"):
        set_status(store, AUDITOR, a, "dismissed")
    with pytest.raises(ReviewError):
        set_status(store, AUDITOR, a, "approved")
    assert rows(store, "SELECT count(*) FROM review_log") == [(0,)]


def test_a_refused_review_writes_nothing_and_an_unchanged_one_adds_no_row(flagged):
    """A dismissal refused for lacking a reason still wrote "re-open on new occurrences
    False -> False", and every save added such a row (they reached the dossier). Now a
    review is checked before anything is written and only what changed is written, with
    the dismissal reason and yes/no as words for the reader."""
    store, (a, *_) = flagged
    with pytest.raises(ReviewError) as refused:
        set_status(store, AUDITOR, a, "dismissed", note="?", reopen=False)
    assert refused.value.said("es") == (
        "descartar necesita un motivo: falso positivo, inocuo, duplicado, error de datos"
    )
    assert rows(store, "SELECT count(*) FROM review_log") == [(0,)]
    set_status(store, AUDITOR, a, "dismissed", reason="benign", reopen=False)
    set_status(store, AUDITOR, a, "dismissed", reason="benign", reopen=False)  # the same again
    set_status(store, AUDITOR, a, "dismissed", reason="benign", reopen=True)
    trail = [(h["action"], h["old"], h["new"]) for h in reversed(history(store, a))]
    assert trail == [
        ("status", "new", "dismissed (benign)"),
        ("reopen_on_new", "no", "yes"),
    ]
    from detector.i18n import audit_value

    assert audit_value("status", "dismissed (benign)", "es") == "descartado (inocuo)"
    assert audit_value("reopen_on_new", "False", "es") == "no"  # as rows before said it


def test_viewer_cannot_change_review_state_by_any_action(flagged, tmp_path):
    store, (a, *_) = flagged
    for action in (
        lambda: set_status(store, VIEWER, a, "confirmed"),
        lambda: assign(store, VIEWER, a, "victor"),
        lambda: suppress(
            store, VIEWER, "unidentified-placeholder-name", "ZAC", date.today() + timedelta(days=3)
        ),
        lambda: data.ingest_uploaded(store, VIEWER, [tmp_path / "x.csv"], {}),
    ):
        with pytest.raises(PermissionError):
            action()
    assert rows(store, "SELECT count(*) FROM reviews") == [(0,)]
    assert rows(store, "SELECT count(*) FROM review_log") == [(0,)]


def test_suppression_hides_flags_until_it_expires(flagged):
    store, flags = flagged
    flt = FlagQuery()
    assert data.queue(store, flt)["flag_id"].len() == len(flags)
    suppress(
        store,
        AUDITOR,
        "unidentified-placeholder-name",
        "ZAC",
        date.today() + timedelta(days=2),
        note="known transcription problem",
    )
    assert data.queue(store, flt).height == 0
    assert data.queue(store, FlagQuery(include_suppressed=True)).height == len(flags)
    with store.write() as con:  # time passes
        con.execute("UPDATE suppressions SET until = current_date - 1")
    assert data.queue(store, flt).height == len(flags)
    assert history(store)[0]["action"] == "suppress"


def test_review_state_survives_rerun_and_restart(flagged):
    store, (a, *_) = flagged
    set_status(store, AUDITOR, a, "needs_external_verification", note="ask the prison")
    run_rules(store)
    fresh = Store(store.url, data_path=store.data_path)  # as a new process would open it
    assert rows(fresh, "SELECT status FROM reviews WHERE flag_id = ?", [a]) == [
        ("needs_external_verification",)
    ]


@pytest.mark.slow
def test_actions_wait_for_a_cli_writer_and_none_is_lost(flagged):
    store, flags = flagged
    # A second process holds the write lock and the DuckDB file, like a long CLI ingest.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from detector.store import Store
        with Store({store.url!r}).write() as con:
            print("holding", flush=True)
            time.sleep(4)
    """),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    t0 = time.monotonic()
    for i in range(20):
        set_status(store, AUDITOR, flags[i % len(flags)], "in_review", note=f"action {i}")
    waited = time.monotonic() - t0
    holder.wait(timeout=30)
    assert waited >= 2  # they waited for the writer instead of failing
    notes = {r[0] for r in rows(store, "SELECT note FROM review_log")}
    assert notes == {f"action {i}" for i in range(20)}


def test_suppressions_name_a_typed_entity_and_match_it_exactly(store, tmp_path):
    """Suppressing "Ana" used to hide every flag whose text contained "ana" (Mariana,
    Santa Ana...); a suppression now names a facility, a person or a plate, matched on its
    key."""
    path = tmp_path / "v.csv"
    path.write_text(
        "record_id,facility,entered_at,name,role,escorted_by,vehicle_plate,id_number\n"
        "V1,ZAC,2019-06-01 21:00,Ana Pérez,Abogado,,,\n"
        "V2,ZAC,2019-06-01 21:05,Mariana Cruz,Abogado,,,\n"
        "V3,QZT,2019-06-01 21:10,Luis Ramos,Abogado,,P123-456,\n"
        "V4,QZT,2019-06-01 21:15,Santa Ana Flores,Abogado,,,\n"
        # the log records documents (a log that records none is one case of its own)
        "V5,QZT,2019-06-01 21:20,Eva Ruiz,Abogado,,,01234567-8\n",
        encoding="utf-8",
    )
    ingest_files(store, [path])
    run_rules(store, only=["unidentified-missing-document"])
    rule = "unidentified-missing-document"
    until = date.today() + timedelta(days=5)

    def shown() -> set[str]:
        names = rows(
            store,
            "SELECT DISTINCT v.record_id FROM flags f, unnest(f.record_keys) u(k) "
            "JOIN visits v ON v.record_key = u.k WHERE f.flag_id IN (SELECT unnest(?))",
            [data.queue(store, FlagQuery())["flag_id"].to_list()],
        )
        return {n for (n,) in names}

    assert shown() == {"V1", "V2", "V3", "V4"}
    suppress(store, AUDITOR, rule, "ana perez", until, kind="person")
    assert shown() == {"V2", "V3", "V4"}
    suppress(store, AUDITOR, rule, "p123 456", until, kind="plate")
    assert shown() == {"V2", "V4"}
    suppress(store, AUDITOR, rule, "Ana", until, kind="person")  # nobody is just "Ana"
    assert shown() == {"V2", "V4"}
    suppress(store, AUDITOR, rule, "QZT", until, kind="facility")
    assert shown() == {"V2"}
    with pytest.raises(ReviewError, match="one of"):
        suppress(store, AUDITOR, rule, "x", until, kind="explanation")


def test_an_edited_or_deleted_audit_row_is_found(flagged):
    """The audit trail was append-only by convention only: a row edited or deleted in the
    database left no trace. Rows are now hash-chained and `detector verify` checks them."""
    from typer.testing import CliRunner

    from detector.cli import app
    from detector.ledger import verify

    store, (a, b, *_) = flagged
    set_status(store, AUDITOR, a, "confirmed", note="paper log page 12")
    set_status(store, AUDITOR, b, "dismissed", reason="benign", note="authorised")
    assign(store, AUDITOR, a, "ben")
    assert verify(store).ok
    with store.write() as con:  # someone softens a finding afterwards
        con.execute("UPDATE review_log SET new = 'dismissed' WHERE seq = 1")
    problems = verify(store).problems
    assert problems == ["review audit row 1 (status by ana): contents do not match its hash "
                        "(the row was edited)"]  # fmt: skip
    with store.write() as con:
        con.execute("UPDATE review_log SET new = 'confirmed' WHERE seq = 1")
        con.execute("DELETE FROM review_log WHERE seq = 2")
    assert any("row 3" in p and "removed" in p for p in verify(store).problems)
    result = CliRunner().invoke(app, ["verify", "--db", store.url])
    assert result.exit_code == 1
