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


def test_new_serious_flags_reach_digest_email_and_webhook(store, tmp_path):
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
