"""Scheduled runs: inbox handling, notifications to local receivers, faults with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb
import pytest

from detector.auth import Actor
from detector.errors import DetectorError
from detector.notify import NotifyConfig
from detector.review import set_status
from detector.schedule import Job, ScheduleConfig, load_config, process_inbox, run_job
from detector.store import Store
from tests.conftest import REPO, rows, tick_config

SAMPLE = REPO / "logs" / "sample"


def _drop(inbox: Path, *names: str, content: bytes | None = None) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = inbox / name
        target.write_bytes(content if content is not None else (SAMPLE / name).read_bytes())
        old = time.time() - 60  # settled: not being copied any more
        os.utime(target, (old, old))


def _config(tmp_path, **notify) -> ScheduleConfig:
    return ScheduleConfig(
        inbox=str(tmp_path / "inbox"),
        jobs={"tick": Job(action="tick", every_seconds=1)},
        notify=NotifyConfig(digest_dir=str(tmp_path / "digests"), **notify),
    )


def test_inbox_files_go_to_processed_or_failed_with_a_reason(store, tmp_path):
    inbox = tmp_path / "inbox"
    _drop(inbox, "facilities.csv", "visits_MAR.csv")
    _drop(inbox, "corrupt.csv", content=b"\x00\x01\x02\x03" * 200)
    _drop(inbox, "empty.csv", content=b"")
    (inbox / "fresh.csv").write_bytes((SAMPLE / "visits_QZT.csv").read_bytes())  # still copying
    outcome = {o["file"]: o["status"] for o in process_inbox(store, inbox)}
    assert outcome == {
        "facilities.csv": "stored",
        "visits_MAR.csv": "stored",
        "corrupt.csv": "failed",
        "empty.csv": "failed",
    }
    assert sorted(p.name.split("_", 1)[1] for p in (inbox / "processed").iterdir()) == [
        "facilities.csv",
        "visits_MAR.csv",
    ]
    reasons = sorted((inbox / "failed").glob("*.reason.txt"))
    assert [p.name.split("_", 1)[1] for p in reasons] == [
        "corrupt.csv.reason.txt",
        "empty.csv.reason.txt",
    ]
    assert "empty.csv: file is empty" in reasons[1].read_text()
    assert (inbox / "fresh.csv").exists()
    lines = (SAMPLE / "visits_MAR.csv").read_text(encoding="utf-8").count("\n") - 1
    assert rows(store, "SELECT count(*) FROM visits") == [(lines,)]


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_new_serious_flags_reach_digest_email_and_webhook(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTOR_WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver is on this host
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    class Box(Sink):
        messages: list = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            Box.messages.append(envelope.content.decode())
            return "250 OK"

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        smtp_port = sock.getsockname()[1]
    smtp = Controller(Box(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    http = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        config = _config(
            tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_to=["auditor@example.org"],
            webhook_url=f"http://127.0.0.1:{http.server_port}/hook",
        )
        _drop(tmp_path / "inbox", "facilities.csv", "internos.csv", "visitas_ZAC.csv")
        summary = run_job(store, config, "tick")
        assert "error" not in summary, summary
        assert summary["notify"]["email"] == "sent"
        assert summary["notify"]["webhook"] == "HTTP 200"
        digest = Path(summary["notify"]["digest"]).read_text(encoding="utf-8")
        assert "critical" in digest and "Lemus" in digest
        assert Box.messages and "new serious flag" in Box.messages[0]
        posted = _Hook.received[-1]
        assert posted["run_id"] == summary["run_id"]
        assert {f["severity"] for f in posted["flags"]} <= {"high", "critical"}
        # nothing new next time: no second digest
        again = run_job(store, config, "tick")
        assert again["notify"] == {"flags": 0}
    finally:
        smtp.stop()
        http.shutdown()


def test_a_failing_tick_is_recorded_and_the_next_one_proceeds(store, tmp_path):
    config = _config(tmp_path)
    _drop(tmp_path / "inbox", "visits_MAR.csv")
    inbox = Path(config.inbox)
    (inbox / "processed").mkdir(parents=True)
    os.chmod(inbox / "processed", 0o500)  # cannot move files there
    try:
        if os.geteuid() == 0:  # root ignores permissions: make the folder a file instead
            os.chmod(inbox / "processed", 0o700)
            (inbox / "processed").rmdir()
            (inbox / "processed").write_text("not a folder")
        failed = run_job(store, config, "tick")
    finally:
        if (inbox / "processed").is_dir():
            os.chmod(inbox / "processed", 0o700)
    assert "error" in failed
    assert rows(store, "SELECT status FROM runs WHERE kind = 'schedule'") == [("failed",)]
    (inbox / "processed").unlink()
    fine = run_job(store, config, "tick")
    assert "error" not in fine
    # nothing was lost: the visits were stored once, the file was moved on the retry
    assert rows(store, "SELECT count(DISTINCT record_key) = count(*) FROM visits") == [(True,)]
    assert list((inbox / "processed").iterdir())


def test_a_tick_whose_linkage_fails_says_so_in_its_summary(store, tmp_path, monkeypatch):
    """The scheduler's log line of a tick tells a failed linkage (the rules still ran on the
    persons as they were), not only the run history."""
    from detector import identity

    def out_of_memory(*args, **kwargs):
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")

    monkeypatch.setattr(identity, "_predict", out_of_memory)
    config = _config(tmp_path)
    _drop(tmp_path / "inbox", "visits_MAR.csv")
    summary = run_job(store, config, "tick")
    assert "error" not in summary and summary["run_id"]
    assert "Out of Memory" in summary["persons_error"]
    assert rows(store, "SELECT status FROM runs WHERE kind = 'persons'")[-1] == ("failed",)


@pytest.mark.slow
def _logs_left(inbox: Path) -> list[Path]:
    """Files still waiting in the inbox (not its hidden bookkeeping of looks)."""
    return [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")]


def test_scheduler_process_survives_kill_9_mid_run(tmp_path):
    db = tmp_path / "d.duckdb"
    config = tmp_path / "s.toml"
    config.write_text(
        textwrap.dedent(f"""
        inbox = "{tmp_path / "inbox"}"
        [jobs.tick]
        action = "tick"
        every_seconds = 1
        [notify]
        digest_dir = "{tmp_path / "digests"}"
    """),
        encoding="utf-8",
    )
    _drop(
        tmp_path / "inbox",
        "facilities.csv",
        "internos.csv",
        "visitas_ZAC.csv",
        "visitas_IZA.csv",
        "visitas_CIU.csv",
        "visits_MAR.csv",
        "visits_QZT.csv",
    )
    cmd = [
        sys.executable,
        "-m",
        "detector.cli",
        "schedule",
        "--config",
        str(config),
        "--db",
        str(db),
    ]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(4)  # the first tick is ingesting the inbox
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not _logs_left(tmp_path / "inbox"):
                ok = (
                    rows(
                        Store(db),
                        "SELECT count(*) FROM runs WHERE kind = 'rules' AND status = 'ok'",
                    )[0][0]
                    if db.exists()
                    else 0
                )
                if ok:
                    break
            time.sleep(1)
    finally:
        second.terminate()
        second.wait(timeout=30)
    store = Store(db)
    assert not _logs_left(tmp_path / "inbox")
    assert rows(store, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
    assert rows(store, "SELECT count(*) - count(DISTINCT flag_id) FROM flags") == [(0,)]
    assert rows(store, "SELECT count(*) - count(DISTINCT record_key) FROM visits") == [(0,)]
    uploads = rows(store, "SELECT count(*), count(DISTINCT sha256) FROM uploads")[0]
    assert uploads[0] == uploads[1] == 7
    from detector.ledger import verify

    assert verify(store).ok


@pytest.mark.slow
def test_review_actions_during_a_rule_run_are_all_stored(tmp_path, demo_logs):
    from detector.engine import run_rules
    from detector.pipeline import ingest_files

    store = Store(tmp_path / "d.duckdb", wait=120)
    ingest_files(store, [p for k, p in demo_logs.items() if k != "truth"])
    run_rules(store)
    flags = [r[0] for r in rows(store, "SELECT flag_id FROM flags ORDER BY 1")]
    slow = tmp_path / "slow" / "data_quality"
    slow.mkdir(parents=True)
    (slow / "slow.yml").write_text(
        textwrap.dedent("""
        id: slow-check
        title: A deliberately slow rule
        description: Keeps the run busy for a few seconds.
        category: data_quality
        severity: informational
        query: |
          SELECT 'x' AS flag_key, count(*) AS n FROM range(400000000) t(i) WHERE i % 7 = 99
        explanation: "{n}"
        es: {title: Una regla lenta a propósito, description: Mantiene ocupada la ejecución., explanation: "n = {n}"}
        regression:
          - input: {visits: [{facility: A, entered_at: "2019-01-01 10:00"}]}
            expect: [{n: 0}]
        dont_match:
          - description: never used
            input: {visits: [{facility: A, entered_at: "2019-01-01 10:00"}]}
    """),
        encoding="utf-8",
    )
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        from pathlib import Path
        from detector.engine import run_rules
        from detector.store import Store
        print("start", flush=True)
        r = run_rules(Store({str(store.path)!r}), [Path({str(tmp_path / "slow")!r})])
        print("done", r.run_id, flush=True)
    """),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout.readline().strip() == "start"
    auditor = Actor("ana", "auditor")
    for i in range(100):
        set_status(store, auditor, flags[i % len(flags)], "in_review", note=f"n{i}")
    assert runner.wait(timeout=300) == 0
    assert {r[0] for r in rows(store, "SELECT note FROM review_log")} == {
        f"n{i}" for i in range(100)
    }
    assert (
        rows(store, "SELECT count(*) FROM runs WHERE kind = 'rules' AND status = 'ok'")[0][0] == 2
    )


def test_schedule_once_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from detector.cli import app

    config = tmp_path / "s.toml"
    config.write_text(
        textwrap.dedent(f"""
        inbox = "{tmp_path / "inbox"}"
        [jobs.ingest_and_rules]
        action = "tick"
        cron = "*/15 * * * *"
        [notify]
        digest_dir = "{tmp_path / "digests"}"
    """),
        encoding="utf-8",
    )
    _drop(tmp_path / "inbox", "visits_QZT.csv")
    db = tmp_path / "d.duckdb"
    result = CliRunner().invoke(
        app, ["schedule", "--config", str(config), "--once", "--db", str(db)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["inbox"][0]["status"] == "stored" and summary["scope"] == "full"
    bad = CliRunner().invoke(
        app, ["schedule", "--config", str(config), "--once", "--job", "nope", "--db", str(db)]
    )
    assert bad.exit_code == 1 and "no job named nope" in bad.output


WRITER = """
import os, sys, time
path, rows = sys.argv[1], int(sys.argv[2])
with open(path, "w", encoding="utf-8") as fh:
    fh.write("record_id,facility,entered_at,name\\n")
    for n in range(rows):
        fh.write(f"{n},QZT,2022-01-01 10:00,Ana {n}\\n")
    fh.write(f"{rows},QZT,2022-01-")  # half a row, then the writer stalls
    fh.flush()
    print("stalled", flush=True)
    while not os.path.exists(sys.argv[3]):  # stalled until the test lets it go on
        time.sleep(0.1)
    fh.write("01 11:00,Luis\\n")
    for n in range(rows + 1, 2 * rows + 1):
        fh.write(f"{n},QZT,2022-01-01 10:00,Ana {n}\\n")
"""


@pytest.mark.slow
def test_a_file_still_being_written_is_left_in_the_inbox(tmp_path):
    """A writer stalled 7 s mid-row used to get a truncated row stored and the rest of
    its file lost into processed/. Real processes: the writer (stalled mid-row until the
    first tick has looked), and `schedule --once`."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tick_config(tmp_path, inbox)
    db = tmp_path / "d.duckdb"

    def tick() -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "detector.cli", "schedule", "--config", str(config),
             "--once", "--db", str(db)],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return {o["file"]: o["status"] for o in json.loads(done.stdout.splitlines()[-1])["inbox"]}

    path = inbox / "visits.csv"
    go = tmp_path / "go"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "100", str(go)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "stalled"
    time.sleep(6)  # older than the old 5 s settle time, still open and half-written
    assert tick() == {}
    assert path.exists() and not any((inbox / "processed").glob("*"))
    go.touch()
    writer.wait(timeout=60)
    assert tick() == {}  # it changed since the last look: not yet
    time.sleep(6)
    assert tick() == {"visits.csv": "stored"}
    store = Store(db)
    assert rows(store, "SELECT count(*), count(DISTINCT name) FROM visits") == [(201, 201)]
    assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]


def test_part_files_are_never_taken(store, tmp_path):
    inbox = tmp_path / "inbox"
    _drop(inbox, "visits_MAR.csv")
    part = inbox / "visits_QZT.csv.part"
    part.write_bytes((SAMPLE / "visits_QZT.csv").read_bytes())
    os.utime(part, (time.time() - 600, time.time() - 600))
    assert {o["file"] for o in process_inbox(store, inbox)} == {"visits_MAR.csv"}
    assert part.exists()


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ('[jobs.tick]\naction = "tick"\ncron = "every quarter hour"\n', "not a crontab"),
        ('[jobs.tick]\naction = "tick"\ncron = "*/15 * * *"\n', "not a crontab"),
        ('[jobs.tick]\naction = "tick"\ncron = "61 * * * *"\n', "not a crontab"),
        ('[jobs.tick]\naction = "tick"\n', "either cron or every_seconds"),
        ('timezone = "Mars/Olympus"\n[jobs.tick]\naction = "tick"\ncron = "* * * * *"\n',
         "unknown time zone"),
    ],
)  # fmt: skip
def test_an_invalid_schedule_is_refused_with_why_before_anything_runs(tmp_path, toml, said):
    """'every quarter hour' was saved, then crashed the Admin page and `detector schedule`
    with a ValueError traceback. It is refused on reading, with the reason."""
    from typer.testing import CliRunner

    from detector.cli import app

    config = tmp_path / "schedule.toml"
    config.write_text(toml, encoding="utf-8")
    with pytest.raises(DetectorError, match=said):
        load_config(config)
    out = CliRunner().invoke(
        app, ["schedule", "--config", str(config), "--once", "--db", str(tmp_path / "d.duckdb")]
    )
    told = " ".join(out.output.split())
    assert out.exit_code != 0 and said in told and "Traceback" not in told, told


# --- hostile inbox files ----------------------------------------------------------------------


def test_no_inbox_file_stops_the_tick(tmp_path):
    """In a real `detector schedule --once` process: a name that is not UTF-8 (latin-1, as
    older Windows tools write), a 240-character name, a symbolic link to a file outside
    the inbox and a FIFO used to stop every tick before the rules ran (or, for the link,
    put the first line of the linked file in a world-readable reason file). Now the two
    names are stored and moved under names that fit, the link and the FIFO are not
    taken, and the tick goes on to the rules."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = (SAMPLE / "visits_QZT.csv").read_bytes()
    latin = os.fsdecode(b"visitas_a\xf1o.csv")
    (inbox / latin).write_bytes(data)
    (inbox / ("v" * 236 + ".csv")).write_bytes(data.replace(b"QZT-", b"QZU-"))
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    (inbox / "link.csv").symlink_to(secret)
    os.mkfifo(inbox / "pipe.csv")
    old = time.time() - 120
    for p in inbox.iterdir():
        os.utime(p, (old, old), follow_symlinks=False)
    done = subprocess.run(
        [sys.executable, "-m", "detector.cli", "schedule", "--config",
         str(tick_config(tmp_path, inbox)), "--once", "--db", str(tmp_path / "d.duckdb")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in summary, summary
    assert summary["run_id"] and summary["scope"] == "full"  # the rules ran
    status = {o["file"]: (o["status"], o["stored"]) for o in summary["inbox"]}
    assert status == {
        "visitas_a\\xf1o.csv": ("stored", 5776),
        "v" * 236 + ".csv": ("stored", 5776),
    }
    moved = sorted(os.listdir(os.fsencode(inbox / "processed")))
    assert len(moved) == 2 and all(len(n) <= 255 - len(".reason.txt") for n in moved)
    assert any(n.endswith(b"_visitas_a\xf1o.csv") for n in moved)
    assert any(n.endswith(b"vvv.csv") for n in moved)
    store = Store(tmp_path / "d.duckdb")
    names = {n for (n,) in rows(store, "SELECT original_name FROM uploads")}
    assert "visitas_a\\xf1o.csv" in names
    # the link and the FIFO stay where they were, and nothing read the linked file
    assert (inbox / "link.csv").is_symlink() and (inbox / "pipe.csv").exists()
    assert not list((inbox / "failed").iterdir())
    assert rows(store, "SELECT count(*) FROM uploads") == [(2,)]


def test_the_command_line_ingests_a_file_whose_name_is_not_utf8(store, tmp_path):
    from typer.testing import CliRunner

    from detector.cli import app

    path = tmp_path / os.fsdecode(b"visitas_a\xf1o.csv")
    path.write_bytes((SAMPLE / "visits_QZT.csv").read_bytes())
    result = CliRunner().invoke(app, ["ingest", str(path), "--db", str(store.path)])
    assert result.exit_code == 0, result.output
    assert rows(store, "SELECT original_name, rows_stored FROM uploads") == [
        ("visitas_a\\xf1o.csv", 5776)
    ]
    assert rows(store, "SELECT DISTINCT source_name FROM visits") == [("visitas_a\\xf1o.csv",)]


def test_a_file_that_fails_is_moved_under_a_name_that_fits_with_an_owner_only_reason(
    store, tmp_path
):
    inbox = tmp_path / "inbox"
    long_name = "é" * 118 + ".csv"  # 240 bytes in UTF-8
    _drop(inbox, long_name, "empty.csv", content=b"")
    outcome = {o["file"]: o for o in process_inbox(store, inbox)}
    assert {k: v["status"] for k, v in outcome.items()} == {
        long_name: "failed",
        "empty.csv": "failed",
    }
    reasons = sorted((inbox / "failed").glob("*.reason.txt"))
    assert len(reasons) == 2
    for reason in reasons:
        assert len(os.fsencode(reason.name)) <= 255
        assert reason.stat().st_mode & 0o777 == 0o600
        assert "file is empty" in reason.read_text(encoding="utf-8")
    cut = next(p for p in (inbox / "failed").iterdir() if p.name.endswith("é.csv"))
    assert cut.name.startswith(outcome[long_name]["moved_to"].rsplit("/", 1)[1][:16])


def test_names_in_processed_and_failed_fit_and_never_overwrite(tmp_path):
    from detector.schedule import _free_name

    folder = tmp_path / "processed"
    folder.mkdir()
    name = os.fsdecode(b"a\xf1" * 120 + b".xlsx")
    first = _free_name(folder, name)
    first.write_bytes(b"1")
    second = _free_name(folder, name)
    assert second != first and second.suffix == ".xlsx"
    for target in (first, second):
        assert len(os.fsencode(target.name + ".reason.txt")) <= 255
    assert _free_name(folder, "short.csv").name.endswith("_short.csv")


def test_a_mapping_saved_as_an_inbox_folder_never_re_takes_that_folder(store, tmp_path):
    """A mapping saved as "processed" before the name was reserved (or written into the
    database directly) must not make each tick re-take processed/ and rename its files
    again until the names are too long."""
    import hashlib

    from detector.mapping import UserMapping, mapping_text

    body = mapping_text(UserMapping(kind="visits"))
    with store.write() as con:
        con.execute(
            "INSERT INTO mappings VALUES ('processed', 1, ?, 'visits', ?, 'old', now())",
            [hashlib.sha256(body.encode()).hexdigest(), body],
        )
    inbox = tmp_path / "inbox"
    _drop(inbox, "visits_QZT.csv")
    first = process_inbox(store, inbox)
    assert [o["status"] for o in first] == ["stored"]
    for p in (inbox / "processed").iterdir():
        os.utime(p, (time.time() - 120, time.time() - 120))
    assert process_inbox(store, inbox) == []
    assert len(list((inbox / "processed").iterdir())) == 1


def test_an_inbox_file_replaced_by_a_link_or_a_fifo_is_refused_not_read(store, tmp_path):
    """Between the inbox listing and the ingest a file can be swapped for a link: the
    inbox's ingest opens it without following links and reads that open file."""
    from detector.ingest import ingest_file

    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2\n", encoding="utf-8")
    link = tmp_path / "swapped.csv"
    link.symlink_to(secret)
    r = ingest_file(store, link, regular_only=True)
    assert r.status == "failed" and "not a regular file (symbolic link)" in r.message
    assert "hunter2" not in r.message and "password" not in r.message
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    r = ingest_file(store, fifo, regular_only=True)  # would block forever if opened to read
    assert r.status == "failed" and "not a regular file" in r.message
    assert rows(store, "SELECT count(*) FROM uploads") == [(0,)]
    plain = ingest_file(store, SAMPLE / "visits_QZT.csv", regular_only=True)
    assert plain.status == "stored" and plain.rows_stored == 5776
