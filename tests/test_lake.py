"""The shared store (a DuckLake catalogued in PostgreSQL): writers in many processes at
once, as the offices' machines would be. Each test here needs a lake, so it runs under
``DETECTOR_TEST_STORE=lake`` with a PostgreSQL server (``DETECTOR_TEST_PG``; ``.ci/run``
starts one) and is skipped otherwise."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from detector import ledger
from detector.errors import StoreBusy
from detector.pipeline import Steps, ingest_files
from detector.pipeline import run as run_pipeline
from detector.runs import RUN_WRITERS, close_interrupted
from detector.schema import KINDS
from detector.store import SCHEMA_MARKS, Store
from tests.conftest import LAKE, REPO, lake_url, pg_admin, rows, tick_config

pytestmark = [pytest.mark.lake]


@pytest.fixture(autouse=True)
def _on_its_store(request):
    """Each test here runs where its store is: on a lake under ``DETECTOR_TEST_STORE=lake``
    (with PostgreSQL), skipped otherwise; the load test's embedded-file half, which needs
    no lake, in the main suite instead (it would only lengthen the shared-store step)."""
    call = getattr(request.node, "callspec", None)
    on_file = call is not None and call.params.get("kind") == "file"
    if on_file and LAKE:
        pytest.skip("the embedded store's half runs in the main suite")
    if not on_file and not LAKE:
        pytest.skip("needs a lake: DETECTOR_TEST_STORE=lake and PostgreSQL")


ARTIFACTS = REPO / "test-artifacts"


def _env(store: Store, **more: str) -> dict[str, str]:
    env = {**os.environ, "DETECTOR_DB": store.url, "DETECTOR_LANGUAGE": "en", **more}
    if store.lake:
        env["DETECTOR_DATA_PATH"] = str(store.data_path)
    return env


def _detector(store: Store, *args: object, **env: str) -> subprocess.Popen:
    """A `detector` command in a process of its own, as another machine would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "detector.cli", *map(str, args)],
        cwd=REPO,
        env=_env(store, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _python(store: Store, code: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=_env(store, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done(procs: list[subprocess.Popen], timeout: float = 900) -> list[str]:
    outs = []
    for p in procs:
        out, errs = p.communicate(timeout=timeout)
        assert p.returncode == 0, (p.args, out[-2000:], errs[-3000:])
        outs.append(out)
    return outs


def _cut(path: Path, out: Path, parts: int, overlap: int = 0) -> list[Path]:
    """A log cut into ``parts`` files with its header, each repeating the last ``overlap``
    lines of the part before (a stretch sent by two offices)."""
    header, *lines = path.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    cuts = []
    for i in range(parts):
        chunk = lines[max(0, i * size - overlap) : (i + 1) * size]
        target = out / f"{path.stem}_part{i}{path.suffix}"
        target.write_bytes(header + b"".join(chunk))
        cuts.append(target)
    return cuts


def _flags(store: Store) -> set[tuple]:
    """The rule and model flags as an auditor reads them: what fired, on which records,
    how it reads and ranks (run numbers, times and the files cited aside: offices that
    sent a log in parts are cited by part)."""
    return set(
        rows(
            store,
            "SELECT flag_id, rule_id, source, severity, state, explanation, "
            "array_to_string(list_sort(record_keys), ' '), "
            "array_to_string(list_sort(record_ids), ' '), round(score, 9) FROM flags",
        )
    )


def _every_row_once(store: Store, lines: int) -> None:
    """Every line read is stored, quarantined or dropped as a repeat, and no record is
    stored twice."""
    assert rows(
        store,
        "SELECT sum(rows_read), bool_and(rows_read = rows_stored + rows_quarantined + "
        "rows_duplicate) FROM uploads WHERE kind = 'visits'",
    ) == [(lines, True)]
    assert rows(store, "SELECT count(*) = count(DISTINCT record_key) FROM visits") == [(True,)]


def _lines(*files: Path) -> int:
    return sum(len(f.read_bytes().splitlines()) - 1 for f in files)


def _chain_is_one_line(store: Store) -> None:
    seqs = [s for (s,) in rows(store, "SELECT seq FROM uploads ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    audit = [s for (s,) in rows(store, "SELECT seq FROM review_log ORDER BY seq")]
    assert audit == list(range(1, len(audit) + 1))
    result = ledger.verify(store)
    assert result.ok, result.problems


def test_the_same_file_from_two_offices_at_once_is_stored_once(store, tmp_path, demo_logs):
    ingest_files(store, [demo_logs["facilities"]])
    procs = [
        _detector(store, "ingest", demo_logs["visits_MAR"], "--user", f"office{i}")
        for i in range(3)
    ]
    _done(procs)
    assert rows(store, "SELECT count(*) FROM uploads WHERE original_name = 'visits_MAR.csv'") == [
        (1,)
    ]
    assert rows(store, "SELECT count(*) = count(DISTINCT record_key) FROM visits") == [(True,)]
    _chain_is_one_line(store)


def test_reviews_from_concurrent_auditors_are_all_kept(store, tmp_path, demo_logs):
    run_pipeline(store, [demo_logs["facilities"], demo_logs["visits_ZAC"]], Steps(score=False))
    flags = [f for (f,) in rows(store, "SELECT flag_id FROM flags ORDER BY flag_id LIMIT 6")]
    assert len(flags) == 6
    code = """
        import sys
        from detector.auth import Actor
        from detector.review import add_note, set_status
        from detector.store import Store
        who, flags = sys.argv[1], sys.argv[2:]
        store = Store()
        for i, flag in enumerate(flags * 2):
            if i % 2:
                add_note(store, Actor(who, "auditor"), flag, f"{who} note {i}")
            else:
                set_status(store, Actor(who, "auditor"), flag, "in_review", note=f"{who} {i}")
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), f"auditor{n}", *flags],
            cwd=REPO,
            env=_env(store),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for n in range(3)
    ]
    _done(procs)
    assert rows(store, "SELECT count(*) FROM review_log") == [(3 * 12,)]
    assert rows(store, "SELECT count(DISTINCT note) FROM review_log") == [(3 * 12,)]
    assert rows(store, "SELECT count(*), count(DISTINCT flag_id) FROM reviews") == [(6, 6)]
    _chain_is_one_line(store)


def test_a_rule_run_and_ingests_overlap_without_losing_or_repeating_flags(
    new_store, tmp_path, demo_logs
):
    store = new_store("lake")
    reference = [demo_logs[k] for k in ("facilities", "inmates", "logbooks", "transfers")]
    ingest_files(store, reference)
    parts = _cut(demo_logs["visits_QZT"], tmp_path, 4) + _cut(demo_logs["visits_MAR"], tmp_path, 2)
    ingest_files(store, parts[:1])
    rest = parts[1:]
    procs = [_detector(store, "ingest", p) for p in rest[:3]]
    procs += [_detector(store, "run", "--no-score")]
    procs += [_detector(store, "ingest", p) for p in rest[3:]]
    procs += [_detector(store, "run", "--no-score")]
    _done(procs)
    run_pipeline(store, [], Steps(score=False))  # what the overlapping runs had not seen
    assert rows(store, "SELECT count(*) - count(DISTINCT flag_id) FROM flags") == [(0,)]
    assert rows(store, "SELECT count(*) FROM runs WHERE status <> 'ok'") == [(0,)]
    # two runs' linkages overlapped too: each named row has its person once
    assert rows(
        store,
        "SELECT count(*) - count(DISTINCT (kind, record_key, part, mention_key)) FROM persons",
    ) == [(0,)]
    assert rows(store, "SELECT count(*) - count(DISTINCT mention_key) FROM person_mentions") == [
        (0,)
    ]
    whole = new_store("file", lake=False)
    ingest_files(whole, reference + parts)
    from detector.engine import run_rules

    run_rules(whole, full=True)
    active = "SELECT flag_id, explanation FROM flags WHERE state = 'active' ORDER BY 1"
    assert rows(store, active) == rows(whole, active)
    _chain_is_one_line(store)


def test_a_run_is_closed_as_interrupted_only_when_its_process_is_gone(store):
    store.init()
    holder = _python(
        store,
        """
        import time
        from detector.store import Store, lease_run
        with Store().write(("ledger",)) as con:  # holds run 7's lease, not the runs' lock
            lease_run(7)
            print("holding", flush=True)
            time.sleep(3)
        """,
    )
    assert holder.stdout.readline().strip() == "holding"
    with store.write(RUN_WRITERS) as con:
        con.execute(
            "INSERT INTO runs (run_id, kind, started_at, status) "
            "VALUES (7, 'rules', current_timestamp::TIMESTAMP, 'running')"
        )
        assert close_interrupted(con) == 0  # its process lives: left alone
    _done([holder])
    with store.write(RUN_WRITERS) as con:
        assert close_interrupted(con) == 1  # its session ended with it
    assert rows(store, "SELECT status FROM runs WHERE run_id = 7") == [("failed",)]


def test_a_writer_waits_for_its_turn_and_says_busy_after_its_wait(store):
    store.init()
    holder = _python(
        store,
        """
        import time
        from detector.store import Store
        with Store().write(("reviews",)):
            print("holding", flush=True)
            time.sleep(4)
        """,
    )
    assert holder.stdout.readline().strip() == "holding"
    impatient = Store(store.url, wait=0.5, data_path=store.data_path)
    with pytest.raises(StoreBusy, match="reviews lock"), impatient.write(("reviews",)):
        pass
    with impatient.write(("ledger",)):  # another writer's lock: no waiting
        pass
    with store.write(("reviews",)):  # waits for the holder, then proceeds
        pass
    _done([holder])


def test_the_sandbox_reads_the_lake_but_no_other_file(store):
    store.init()
    with store.sandboxed() as con:
        assert con.execute("SELECT count(*) FROM visits").fetchall() == [(0,)]
        with pytest.raises(Exception, match="disabled by configuration"):
            con.execute("SELECT * FROM read_text('/etc/hostname')").fetchall()
        with pytest.raises(Exception, match="lock"):
            con.execute("SET enable_external_access = true")


def test_a_relative_data_folder_opens_from_any_folder(tmp_path, monkeypatch):
    """The catalog records the data folder as the first ATTACH spells it: a relative
    ``DETECTOR_DATA_PATH`` is made absolute, so the lake opens from any working folder."""
    dbname = f"detector_test_{uuid.uuid4().hex[:16]}"
    pg_admin(f"CREATE DATABASE {dbname}")  # a new catalog (new_store's are copies)
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    first = Store(lake_url(dbname), data_path="rel/data")
    again = Store(lake_url(dbname), data_path=tmp_path / "here" / "rel" / "data")
    try:
        first.init()
        first.release()
        monkeypatch.chdir(tmp_path / "elsewhere")
        assert rows(again, "SELECT count(*) FROM uploads") == [(0,)]
    finally:
        again.release()
        pg_admin(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def _table_digests(store: Store) -> dict[str, tuple]:
    """Every table's row count and an order-free digest of its rows."""
    with store.read() as con:
        tables = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = "
                "'BASE TABLE' AND table_catalog = current_database() AND table_schema = 'main'"
            ).fetchall()
            if t not in SCHEMA_MARKS
        ]
        return {
            t: tuple(
                con.execute(
                    f"SELECT count(*), coalesce(sum(hash(t::VARCHAR)::HUGEINT), 0) FROM {t} t"
                ).fetchall()[0]
            )
            for t in sorted(tables)
        }


@pytest.mark.slow
def test_done_means_four_offices_one_world_and_a_round_trip(new_store, tmp_path, demo_logs):
    """Issue 26's "done": four concurrent `detector ingest` of parts of one world into the
    lake, then `detector run`: every row stored once, `detector verify` intact, the flags
    those of the same world in an embedded store; and `detector migrate` carries the demo
    world into a lake and back unchanged."""
    lake = new_store("lake")
    reference = [demo_logs[k] for k in ("facilities", "inmates", "logbooks")]
    logs = [p for k, p in demo_logs.items() if k != "truth" and p not in reference]
    # Four offices: each sends a quarter of every log, overlapping its neighbour's by 40
    # lines (a stretch two offices both hold).
    (tmp_path / "cut").mkdir()
    quarters = [_cut(p, tmp_path / "cut", 4, overlap=40) for p in logs]
    offices = [[q[i] for q in quarters] for i in range(4)]
    assert _detector(lake, "ingest", *reference).wait(timeout=600) == 0
    started = time.monotonic()
    _done(
        [
            _detector(lake, "ingest", *files, "--user", f"office{i}")
            for i, files in enumerate(offices)
        ]
    )
    ingest_seconds = time.monotonic() - started
    ran = _done([_detector(lake, "run")])[0]
    assert "error" not in ran.lower(), ran
    verified = _detector(lake, "verify")
    out, errs = verified.communicate(timeout=600)
    assert verified.returncode == 0 and "ledger intact" in out, errs

    embedded = new_store("embedded", lake=False)
    run_pipeline(embedded, reference + logs, Steps(), user="test")
    for kind in KINDS:  # every row once: the embedded store's rows, none twice
        assert rows(lake, f"SELECT count(*), count(DISTINCT record_key) FROM {kind}") == rows(
            embedded, f"SELECT count(*), count(*) FROM {kind}"
        ), kind
    accounted = "SELECT bool_and(rows_read = rows_stored + rows_quarantined + rows_duplicate)"
    assert rows(lake, f"{accounted} FROM uploads") == [(True,)]
    assert rows(lake, "SELECT sum(rows_duplicate) FROM uploads")[0][0] > 0  # overlaps dropped
    assert rows(lake, "SELECT count(*) FROM runs WHERE status <> 'ok'") == [(0,)]
    # identity linkage ran on the lake and found the same persons (ids aside: a person is
    # named after a mention, and the offices' files arrived in another order)
    persons = "SELECT list_sort(list(mention_key)) FROM person_mentions GROUP BY person_id"
    assert rows(lake, "SELECT count(*) FROM runs WHERE kind = 'persons'") == [(1,)]
    assert {tuple(p) for (p,) in rows(lake, persons)} == {
        tuple(p) for (p,) in rows(embedded, persons)
    }
    # the flags: the same ids, rules, records, words and scores
    shared, alone = _flags(lake), _flags(embedded)
    assert len(shared) > 50
    assert shared == alone, (sorted(shared - alone)[:5], sorted(alone - shared)[:5])
    _chain_is_one_line(lake)

    # The round trip: the embedded world, with a review and its audit trail, into a new
    # lake, and that lake into a new file.
    from detector.auth import Actor
    from detector.review import set_status

    ((flag,),) = rows(embedded, "SELECT flag_id FROM flags ORDER BY 1 LIMIT 1")
    set_status(embedded, Actor("ana", "auditor"), flag, "confirmed", note="seen on paper")
    there = new_store("there")
    moved = _detector(embedded, "migrate", "--to", there.url, "--db", embedded.url,
                      DETECTOR_DATA_PATH=str(there.data_path))  # fmt: skip
    out, errs = moved.communicate(timeout=900)
    assert moved.returncode == 0, out + errs
    assert "its ledger verifies" in " ".join(out.split())
    back = new_store("back", lake=False)
    from detector.migrate import migrate

    assert migrate(there, back).ok
    digests = _table_digests(embedded)
    assert digests == _table_digests(there) == _table_digests(back)
    for table in ("uploads", "visits", "flags", "reviews", "review_log", "persons", "models"):
        assert digests[table][0] > 0, table  # each part of the world made the trip
    assert ledger.verify(there).ok and ledger.verify(back).ok
    kept = {s: sorted(p.relative_to(s.models) for p in s.models.rglob("*") if p.is_file())
            for s in (embedded, there, back)}  # fmt: skip
    assert kept[embedded] and kept[embedded] == kept[there] == kept[back]  # scoring, linkage
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "lake-done-means.json").write_text(
        json.dumps({"four_concurrent_ingests_seconds": round(ingest_seconds, 1)}) + "\n"
    )


REVIEWER = """
    import json, sys, time
    from detector.auth import Actor
    from detector.review import set_status
    from detector.store import Store
    who, count = sys.argv[1], int(sys.argv[2])
    store = Store()
    with store.read() as con:
        flags = [f for (f,) in con.execute("SELECT flag_id FROM flags ORDER BY 1").fetchall()]
    took = []
    for i in range(count):
        t = time.monotonic()
        flag = flags[i % len(flags)]
        set_status(store, Actor(who, "auditor"), flag, "in_review", note=f"{who} {i}")
        took.append(time.monotonic() - t)
    print(json.dumps(took))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lake", "file"])
def test_load_eight_ingests_two_reviewers_and_a_tick(kind, new_store, tmp_path, demo_logs):
    """The load test: 8 processes ingest different files at once while 2 auditors save
    reviews and the scheduler's tick ingests its inbox and runs the rules and the scoring;
    every row is stored once and `verify` holds. The figures go to
    test-artifacts/load-<store>.json (the README quotes them)."""
    store = new_store(kind, wait=900, lake=kind == "lake")
    reference = [demo_logs[k] for k in ("facilities", "inmates", "logbooks", "transfers")]
    run_pipeline(store, reference + [demo_logs["visits_ZAC"]], Steps(score=False))
    files = _cut(demo_logs["visits_QZT"], tmp_path, 4) + _cut(demo_logs["visits_MAR"], tmp_path, 4)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("visits_IZA", "visits_CIU"):
        target = inbox / demo_logs[name].name
        target.write_bytes(demo_logs[name].read_bytes())
        os.utime(target, (time.time() - 120, time.time() - 120))  # settled
    config = tick_config(tmp_path, inbox)
    env = {"DETECTOR_LOCK_WAIT": "900"}
    started = time.monotonic()
    ingests = [
        _detector(store, "ingest", f, "--user", f"office{i}", **env) for i, f in enumerate(files)
    ]
    reviewers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(REVIEWER), f"auditor{n}", "15"],
            cwd=REPO,
            env=_env(store, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for n in range(2)
    ]
    tick = _detector(store, "schedule", "--config", config, "--once", "--job", "tick", **env)
    finished = {}
    for name, procs in (("ingests", ingests), ("reviews", reviewers), ("tick", [tick])):
        outs = _done(procs, timeout=1800)
        finished[name] = round(time.monotonic() - started, 1)
        if name == "reviews":
            took = [json.loads(o) for o in outs]  # each action's seconds, per auditor
    total = round(time.monotonic() - started, 1)

    expected = _lines(*files, *(demo_logs[n] for n in ("visits_ZAC", "visits_IZA", "visits_CIU")))
    _every_row_once(store, expected)
    assert rows(store, "SELECT count(*) FROM uploads") == [(len(reference) + 1 + len(files) + 2,)]
    assert rows(store, "SELECT count(*) FROM review_log WHERE actor LIKE 'auditor%'") == [(30,)]
    assert rows(store, "SELECT count(*) - count(DISTINCT flag_id) FROM flags") == [(0,)]
    assert rows(store, "SELECT count(*) - count(DISTINCT flag_id) FROM reviews") == [(0,)]
    assert rows(store, "SELECT count(*) FROM runs WHERE status <> 'ok'") == [(0,)]
    assert sorted(p.name.split("_", 1)[1] for p in (inbox / "processed").iterdir()) == sorted(
        demo_logs[n].name for n in ("visits_IZA", "visits_CIU")
    )
    _chain_is_one_line(store)
    figures = {
        "store": kind,
        "rows": expected,
        "all_done_seconds": total,
        "finished_seconds": finished,
        # a process's first save opens the store (imports, the lake's DuckDB): apart
        "review_save_seconds": {
            "first": round(max(t[0] for t in took), 2),
            "median": round(statistics.median(x for t in took for x in t[1:]), 2),
            "worst": round(max(x for t in took for x in t[1:]), 2),
        },
        "load_average": os.getloadavg()[0],
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"load-{kind}.json").write_text(json.dumps(figures) + "\n")
    print(figures)


def test_the_dashboard_works_on_a_lake(store, demo_logs, monkeypatch):
    """Every page on a shared store, and a review saved from a flag's page."""
    from streamlit.testing.v1 import AppTest

    from detector import auth

    run_pipeline(store, [demo_logs[k] for k in ("facilities", "visits_ZAC")], Steps())
    auth.add_user(store.users, "ana", "auditor", password="pw-ana-1234")
    monkeypatch.setenv("DETECTOR_DB", store.url)
    monkeypatch.delenv("DETECTOR_USERS", raising=False)
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.text_input[0].set_value("ana")
    at.text_input[1].set_value("pw-ana-1234")
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert at.dataframe and len(at.dataframe[0].value) > 0  # the queue
    ((flag,),) = rows(store, "SELECT flag_id FROM flags WHERE source = 'rule' ORDER BY 1 LIMIT 1")
    at.session_state["flag_id"] = flag
    at.switch_page("views/2_Flag_detail.py")
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="r_status").set_value("confirmed")
    at.text_area(key="r_note").set_value("seen in the paper log")
    at.get("form_submit_button")[0].click()
    at.run()
    assert rows(store, "SELECT status, note FROM reviews WHERE flag_id = ?", [flag]) == [
        ("confirmed", "seen in the paper log")
    ]
    for view in ("3_Upload", "4_Overview", "5_Evidence_and_runs"):  # (Admin: admins only)
        at.switch_page(f"views/{view}.py")
        at.run()
        assert not at.exception, (view, at.exception)
