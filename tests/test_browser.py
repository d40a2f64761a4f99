"""End to end in a real headless Chromium (Debian's) against a real `streamlit run`.

Logs in, uploads a latin-1 `;` CSV, sees its flags, confirms one with a note, dismisses
one with a reason, downloads the CSV export and a dossier; screenshots of each page go
to test-artifacts/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from detector import auth, i18n
from detector.engine import run_rules
from detector.pipeline import ingest_files
from detector.store import Store
from tests import readable
from tests.conftest import REPO, demo_store, rows, write_csv

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = REPO / "test-artifacts" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_logs):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed (scripts/test.sh installs it)")
    store = _scored_demo(tmp_path_factory.mktemp("browser"), demo_logs, "ana", "auditor")
    with _streamlit(store.path) as url:
        yield url, store


def _scored_demo(folder, demo_logs, user: str, role: str) -> Store:
    """The demo world ingested, its rules run and scored, with one dashboard user whose
    password is ``pw-<user>-1234``."""
    store = demo_store(folder / "d.duckdb", demo_logs)
    auth.add_user(auth.users_file(store.path), user, role, password=f"pw-{user}-1234")
    return store


@contextlib.contextmanager
def _streamlit(db, **env):
    """A real `streamlit run` of the dashboard on a free loopback port."""
    port = _free_port()
    env = {**os.environ, **env}
    # the product's own server settings (upload limit, no raw table export...), read in
    # the child's environment
    command = subprocess.run(
        [sys.executable, "-c", "import json, sys; from detector.demo import streamlit_command;"
         f" print(json.dumps(streamlit_command(sys.argv[1], {port}, '127.0.0.1')))", str(db)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    log = Path(db).with_name(f"streamlit-{port}.log")
    SERVER_LOGS.append(log)
    proc = subprocess.Popen(  # its console goes to a file (a pipe nobody reads fills up)
        json.loads(command),
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "streamlit did not start"
        time.sleep(0.3)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


SERVER_LOGS: list[Path] = []  # the console of each dashboard server these tests start


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


def _context(browser):
    """A browser session at 1400 px, the width charts must fit in. Its waits are on things
    to appear (a heading, a message, a row stored), given time for a loaded machine."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(120_000)
    context.add_init_script(RUNS)
    return context


@pytest.fixture(scope="module")
def page(server, browser):
    context = _context(browser)
    yield context.new_page()
    context.close()


def _log_in(page, url, user="ana", password="pw-ana-1234") -> None:
    page.goto(url)
    page.get_by_role("textbox", name="Username").wait_for()
    page.get_by_role("textbox", name="Username").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    # .first: while Streamlit reruns, the old heading can linger beside the new one
    page.get_by_role("heading", name="Review queue").first.wait_for()
    _wait_idle(page)


def _open_flag(page, flag_id: str, store=None, lang: str = "en") -> None:
    """The flag's detail page, by its id, down to its review form: with ``store``, once the
    page shows that flag's own title (the previous flag's page stays up until it does)."""
    if not page.get_by_label(i18n.translate(lang, "Flag id")).count():
        _goto(page, i18n.translate(lang, "Flag detail"))
    box = page.get_by_label(i18n.translate(lang, "Flag id"))
    box.fill(flag_id)
    box.press("Enter")
    if store is not None:
        page.get_by_role("heading", name=_flag_title(store, flag_id, lang), level=1).wait_for()
    page.get_by_role("heading", name=i18n.translate(lang, "Review"), exact=True).wait_for()
    _wait_idle(page)


def _flag_title(store, flag_id: str, lang: str) -> str:
    from dashboard.data import flag
    from detector.wording import flag_wording

    return flag_wording(flag(store, flag_id), lang)[0]


# What the page asked of Streamlit and what it saw, in order (each browser session's pages
# get this before any script of theirs): each rerun the page asked the server for (a
# BackMsg whose field is rerun_script, number 11: its first byte is 0x5A), each run seen
# beginning on the app element, and the point up to which every asked run is over.
RUNS = """(() => {
  const runs = window.__detectorRuns = {seq: 0, asked: 0, began: 0, settled: 0};
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
      : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, 1) : null;
    if (bytes && bytes.length && bytes[0] === 0x5a) runs.asked = ++runs.seq;
    return send.call(this, data);
  };
  const seen = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (app && app.dataset.testScriptState === 'running') runs.began = ++runs.seq;
  };
  new MutationObserver(seen).observe(document, {
    subtree: true, attributes: true, attributeFilter: ['data-test-script-state'],
  });
})()"""
# The run the page asked for since it was last seen idle has begun (or none was asked).
BEGUN = """() => {
  const runs = window.__detectorRuns;
  const app = document.querySelector('[data-testid="stApp"]');
  if (app && app.dataset.testScriptState === 'running') runs.began = ++runs.seq;
  return runs.asked <= runs.settled || runs.began > runs.asked;
}"""
# Streamlit's run state, on its app element: a run is over when the state is "notRunning",
# its status widget gone and no element of the run before left stale. (Every run asked for
# until then is counted as over.)
IDLE = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const idle = app && app.dataset.testScriptState === 'notRunning'
    && !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-stale="true"]');
  if (idle) window.__detectorRuns.settled = window.__detectorRuns.seq;
  return idle;
}"""
# Two frames: the page has handled the click or key before (React answers one at once).
FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def _wait_idle(page) -> None:
    """Wait until Streamlit has finished the run the last action started: once the page
    has handled the action, a run it asked the server for is waited for to begin (up to a
    second, as it begins a moment after the click or key; an action that asks for none,
    or a run already seen beginning, does not wait), then its end is waited for, however
    long a loaded machine takes."""
    from playwright.sync_api import TimeoutError as NotYet

    page.evaluate(FRAMES)
    with contextlib.suppress(NotYet):
        page.wait_for_function(BEGUN, timeout=1_000)
    page.wait_for_function(IDLE, timeout=180_000)


def _goto(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    _wait_idle(page)


def _fresh_upload(browser, url: str, path: Path):
    """A new browser session, logged in, with ``path`` dropped on the upload page."""
    context = _context(browser)
    page = context.new_page()
    _log_in(page, url)
    _upload_page(page).set_input_files(str(path))
    return context, page


def _upload_page(page):
    """The upload page's file input. On a loaded CI machine the page has once taken over
    a minute to appear after the busy-database test: it is given three."""
    _goto(page, "Upload")
    dropzone = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    dropzone.wait_for(state="attached", timeout=180_000)
    return dropzone


def _choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox: open it, type to filter, choose; until the
    box shows the option. (A rerun can redraw the list under the pointer: the option then
    detaches and the pick is made again, rather than trusting a click that went nowhere.)"""
    from playwright.sync_api import Error as Detached

    box = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True))
    for _attempt in range(5):
        _wait_idle(page)
        try:
            box.locator("input").click()
            page.keyboard.type(option)
            page.get_by_role("option").filter(has_text=option).first.click(timeout=15_000)
        except Detached:
            page.keyboard.press("Escape")
            continue
        _wait_idle(page)
        if not box.count() or option in _chosen(box):  # (a language switch renames the box)
            return
    assert option in _chosen(box), (label, option, _chosen(box))


def _chosen(box) -> str:
    """What a selectbox shows as chosen (its input holds the option's label)."""
    return f"{box.inner_text()} {box.locator('input').input_value()}"


def test_auditor_day_in_the_browser(server, page, tmp_path):
    try:
        _auditor_day(server, page, tmp_path)
    except Exception:
        page.screenshot(path=SHOTS / "failure.png", full_page=True)
        raise


def _auditor_day(server, page, tmp_path):
    url, store = server
    _log_in(page, url)
    page.screenshot(path=SHOTS / "1-review-queue.png", full_page=True)

    # Upload a latin-1, ';' CSV exported from Excel in a Spanish locale.
    csv = write_csv(
        tmp_path / "libro_noche.csv",
        [
            "Correlativo",
            "Centro Penal",
            "Fecha",
            "Hora Ingreso",
            "Hora Salida",
            "Nombre",
            "Calidad",
            "Autorizado por",
            "Documento",
        ],
        [
            [
                "B1",
                "ZAC",
                "12/03/2020",
                "22:40",
                "23:50",
                "Señor Director",
                "Funcionario",
                "",
                "00000001-8",
            ],
            [
                "B2",
                "ZAC",
                "12/03/2020",
                "22:41",
                "23:50",
                "Acompañante",
                "Otro",
                "Señor Director",
                "",
            ],
            [
                "B3",
                "ZAC",
                "12/03/2020",
                "22:42",
                "23:50",
                "Encapuchado",
                "Otro",
                "Señor Director",
                "",
            ],
        ],
        "latin-1",
        ";",
    )
    _upload_page(page).set_input_files(str(csv))
    page.get_by_text("Kind visits").wait_for()
    page.get_by_text("latin-1").first.wait_for() if page.get_by_text("latin-1").count() else None
    page.get_by_role("button", name="Ingest 1 file and run the checks").click()
    page.get_by_text("3 rows stored").wait_for(timeout=120_000)
    page.screenshot(path=SHOTS / "2-upload.png", full_page=True)
    uploaded = rows(
        store,
        "SELECT encoding, delimiter, uploaded_by FROM uploads "
        "WHERE original_name = 'libro_noche.csv'",
    )
    assert uploaded and uploaded[0][1:] == (";", "ana")
    assert uploaded[0][0] in ("cp1252", "latin-1")

    # Its flags are in the queue.
    _goto(page, "Review queue")
    page.get_by_label("Search names, ids, text").fill("Señor Director")
    page.keyboard.press("Enter")
    _wait_idle(page)
    found = rows(
        store,
        "SELECT flag_id, rule_id FROM flags f WHERE explanation LIKE "
        "'%Señor Director%' ORDER BY score DESC",
    )
    assert {r[1] for r in found} >= {
        "unidentified-companions-of-official",
        "visit-outside-visiting-hours",
    }
    # the count shown once the search has re-run the page (it may still be re-running)
    expect(page.get_by_test_id("stMetricValue").first).to_have_text(
        f"{len(found):,}", timeout=30_000
    )
    page.screenshot(path=SHOTS / "3-queue-filtered.png", full_page=True)
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export CSV (current filter)").click()
    exported = dl.value.path().read_text(encoding="utf-8")
    assert "Señor Director" in exported and exported.count("\n") == len(found) + 1

    # Confirm one with a note, dismiss another with a reason.
    confirm_id, dismiss_id = found[0][0], found[1][0]
    for flag_id, status, note, reason in (
        (confirm_id, "confirmed", "Paper log page 3", None),
        (dismiss_id, "dismissed", "Authorised visit", "benign"),
    ):
        _open_flag(page, flag_id, store)
        _choose(page, "Status", status)
        if reason:
            _choose(page, "Dismissal reason", reason)
        page.get_by_label("Note").fill(note)
        page.get_by_role("button", name="Save review").click()
        _wait_idle(page)
        # the flag's header shows the new status once the page has re-run after saving
        page.locator("strong").filter(has_text=re.compile(f"^{status}$")).first.wait_for()
        _wait_idle(page)
    assert rows(store, "SELECT flag_id, status, reason, note FROM reviews ORDER BY status") == [
        (confirm_id, "confirmed", None, "Paper log page 3"),
        (dismiss_id, "dismissed", "benign", "Authorised visit"),
    ]
    page.screenshot(path=SHOTS / "4-flag-detail.png", full_page=True)
    with page.expect_download() as dl:
        page.get_by_role("button", name="Case dossier of this flag (HTML)").click()
    dossier = dl.value.path().read_text(encoding="utf-8")
    (SHOTS / "dossier.html").write_text(dossier, encoding="utf-8")
    assert "Case dossier" in dossier and "Authorised visit" in dossier
    assert {r[0] for r in rows(store, "SELECT actor FROM review_log")} == {"ana"}

    for title, shot in (("Overview", "5-overview.png"), ("Evidence and runs", "6-evidence.png")):
        _goto(page, title)
        page.get_by_role("heading", name=title).wait_for()
        page.screenshot(path=SHOTS / shot, full_page=True)
    assert all(
        (SHOTS / f).stat().st_size > 10_000
        for f in ("1-review-queue.png", "2-upload.png", "4-flag-detail.png", "5-overview.png")
    )


def test_log_out_ends_the_session_on_the_server_and_its_cookie_is_http_only(server, browser):
    """A copy of the login cookie taken before "Log out" logged straight back in afterwards
    (log out only deleted the browser's copy), and page scripts could read the cookie. Now
    the cookie is HttpOnly, lasts no longer than an idle session, a reload keeps the user
    in, and log out ends the session on the server: the copy opens nothing."""
    url, _ = server
    context = _context(browser)
    page = context.new_page()
    try:
        _log_in(page, url)
        # the server sets the cookie when the page hands it the login's one-time ticket
        cookie = _session_cookie(context, page)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert 0 < cookie["expires"] - time.time() <= 30 * 60 + 5  # the idle limit
        assert "detector_session" not in page.evaluate("document.cookie")
        page.reload()
        page.get_by_role("heading", name="Review queue").first.wait_for()  # still in
        page.get_by_test_id("stSidebar").get_by_role("button", name="Log out").click()
        page.get_by_role("textbox", name="Username").wait_for()
        assert not page.get_by_text("StreamlitWidgetAlreadyInstantiatedError").count()
        page.reload()
        page.get_by_role("textbox", name="Username").wait_for()
        _wait_idle(page)
        assert not page.get_by_role("heading", name="Review queue").count()
        # the copy taken before logging out, in another browser
        other = _context(browser)
        try:
            other.add_cookies([cookie])
            copy = other.new_page()
            copy.goto(url)
            copy.get_by_role("textbox", name="Username").wait_for()
            _wait_idle(copy)
            assert not copy.get_by_role("heading", name="Review queue").count()
        finally:
            other.close()
    except Exception:
        page.screenshot(path=SHOTS / "failure-logout.png", full_page=True)
        raise
    finally:
        context.close()


def _session_cookie(context, page) -> dict:
    """The login session's cookie, once the server has set it."""
    page.wait_for_function(
        "async () => (await fetch('/_stcore/health')).ok"
    )  # a request after the ticket's: the cookie is set by now if it ever will be
    for _attempt in range(100):
        found = [c for c in context.cookies() if c["name"] == "detector_session"]
        if found:
            return found[0]
        page.wait_for_timeout(100)
    raise AssertionError("the server set no session cookie")


def test_the_re_login_cookie_lasts_no_longer_than_an_idle_session(server, browser):
    """Closing the tab and opening a new one after the idle limit asks for the password."""
    _, store = server
    with _streamlit(store.path, DETECTOR_IDLE_MINUTES="0.1") as url:
        context = _context(browser)
        try:
            first = context.new_page()
            _log_in(first, url)
            first.close()
            time.sleep(10)  # past the 6 s idle limit
            second = context.new_page()
            second.goto(url)
            second.get_by_role("textbox", name="Username").wait_for()
            _wait_idle(second)
            assert not second.get_by_role("heading", name="Review queue").count()
        finally:
            context.close()


def test_text_from_logs_and_users_is_shown_as_text_never_fetched(browser, tmp_path):
    """A visitor named like a Markdown image made every reviewer's browser fetch a
    tracking pixel; links went live, :red[...] and LaTeX rendered. Now all of it is text."""
    beacon = "http://127.0.0.1:9/pixel.png?leak=1"
    name = f"![p]({beacon}) :red[ALERTA] $x^2$ [aquí](http://127.0.0.1:9/phish)"
    db = tmp_path / "d.duckdb"
    store = Store(db, wait=30)
    facilities = write_csv(
        tmp_path / "f.csv",
        ["facility", "kind", "visiting_hours"],
        [["QZT", "centro penal", "08:00-15:00"]],
    )
    visits = write_csv(
        tmp_path / "v.csv",
        ["record_id", "facility", "entered_at", "name", "role"],
        [["V1", "QZT", "2019-06-01 21:10", name, "Familiar"]],
    )
    ingest_files(store, [facilities, visits], user="test")
    run_rules(store)
    ((flag_id,),) = rows(store, "SELECT flag_id FROM flags WHERE rule_id LIKE 'visit-outside%'")
    auth.add_user(auth.users_file(db), "ana", "auditor", password="pw-ana-1234")
    requested: list[str] = []
    with _streamlit(db) as url:
        context = _context(browser)
        page = context.new_page()
        page.on("request", lambda r: requested.append(r.url))
        try:
            _log_in(page, url)
            _open_flag(page, flag_id, store)
            page.get_by_label("Note").fill(f"see ![n]({beacon}&note=1)")
            page.get_by_role("button", name="Save review").click()
            _wait_idle(page)
            alert = page.get_by_test_id("stAlert").filter(has_text="entered QZT").first
            # the name as written, brackets and all (a zero-width space keeps addresses dead)
            assert name in alert.inner_text().replace("\u200b", "")
            assert not page.locator("img[src*='pixel.png']").count()
            links = page.locator("a[href*='127.0.0.1:9']")
            assert not links.count(), [
                links.nth(i).evaluate("e => e.parentElement.outerHTML")
                for i in range(links.count())
            ]
            assert not page.locator(".katex").count()
            page.screenshot(path=SHOTS / "markdown-as-text.png", full_page=True)
        finally:
            context.close()
    assert not [u for u in requested if "127.0.0.1:9" in u]


def test_tables_offer_no_raw_download_and_every_report_is_formula_safe(server, browser, tmp_path):
    """The dataframe toolbar's "Download as CSV" was offered to every role (viewers too)
    and wrote =HYPERLINK(...) cells as they were; the upload page's validation report
    carried a file name starting with "=". Now tables have no raw download, and the
    report's cells are neutralised like every other export."""
    url, store = server
    name = "=1+2 visitas.csv"
    path = tmp_path / name
    path.write_text(
        "record_id,facility,entered_at,name\n"
        "Q1,ZAC,2020-03-12 10:00,Ana Pérez\n"
        "Q2,ZAC,not a date,=HYPERLINK(1)\n",
        encoding="utf-8",
    )
    context, page = _fresh_upload(browser, url, path)
    try:
        page.get_by_text("Kind visits").wait_for()
        page.get_by_role("button", name="Ingest 1 file and run the checks").click()
        page.get_by_text("1 row stored").wait_for(timeout=120_000)
        with page.expect_download() as dl:
            page.get_by_role("button", name=re.compile("Validation report of")).click()
        report = dl.value.path().read_text(encoding="utf-8")
        assert "'=1+2 visitas.csv" in report and "unparseable_date" in report
        assert ",=" not in report and "\n=" not in report
        # No table offers its own raw download.
        grid = page.get_by_test_id("stDataFrame").first
        grid.hover()
        page.wait_for_timeout(500)
        assert not page.get_by_role("button", name="Download as CSV").count()
    finally:
        context.close()


HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])  # read-write: no other process can open the file
print("holding", flush=True)
sys.stdin.readline()  # until the test lets go (or is gone)
"""


def test_a_review_saved_while_the_database_is_busy_is_kept_and_written(browser, tmp_path):
    """The page's busy check ran before the form handler, so a review submitted while an
    ingest or a run held the database was dropped without a word. Now it is kept, the page
    says so, and it is written once the database is free."""
    db = tmp_path / "d.duckdb"
    store = Store(db, wait=30)
    visits = write_csv(
        tmp_path / "v.csv",
        ["record_id", "facility", "entered_at", "name"],
        [["V1", "ZAC", "2019-06-01 21:10", "N/I"]],
    )
    ingest_files(store, [visits], user="test")
    run_rules(store)
    ((flag_id,),) = rows(store, "SELECT flag_id FROM flags LIMIT 1")
    auth.add_user(auth.users_file(db), "ana", "auditor", password="pw-ana-1234")
    with _streamlit(db, DETECTOR_DASHBOARD_WAIT="1", DETECTOR_PENDING_WAIT="1") as url:
        context = _context(browser)
        page = context.new_page()
        holder = None
        try:
            _log_in(page, url)
            _open_flag(page, flag_id, store)
            _choose(page, "Status", "confirmed")
            page.get_by_label("Note").fill("seen in the paper log, page 4")
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(db)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert holder.stdout.readline().strip() == "holding"
            page.get_by_role("button", name="Save review").click()
            page.get_by_text("kept and waiting for the database").wait_for(timeout=30_000)
            page.screenshot(path=SHOTS / "review-kept-while-busy.png", full_page=True)
            assert holder.poll() is None  # still busy when the page said it kept the review
            holder.stdin.close()  # the database is free from now on
            holder.wait(timeout=60)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                saved = rows(Store(db, wait=30), "SELECT status, note FROM reviews")
                if saved:
                    break
                time.sleep(1)
            assert saved == [("confirmed", "seen in the paper log, page 4")]
        finally:
            if holder is not None and holder.poll() is None:
                holder.kill()
            context.close()


def test_two_files_of_one_name_and_a_file_named_dot_dot_upload_cleanly(server, browser):
    """Two uploads with the same name crashed the page (duplicate widget keys), a file
    named ".." gave a traceback, and the copies stayed in /tmp/upload-*."""
    import glob
    import tempfile

    url, store = server
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "upload-*")))
    header = b"record_id,facility,entered_at,name\n"
    files = [
        {"name": "libro.csv", "mimeType": "text/csv",
         "buffer": header + b"D1,ZAC,2020-05-01 10:00,Rosa Uno\n"},
        {"name": "libro.csv", "mimeType": "text/csv",
         "buffer": header + b"D2,ZAC,2020-05-02 10:00,Rosa Dos\n"},
        {"name": "..", "mimeType": "text/csv",
         "buffer": header + b"D3,ZAC,2020-05-03 10:00,Rosa Tres\n"},
    ]  # fmt: skip
    context = _context(browser)
    page = context.new_page()
    try:
        _log_in(page, url)
        _upload_page(page).set_input_files(files)
        page.get_by_role("button", name="Ingest 3 files and run the checks").click()
        page.get_by_text("1 row stored").nth(2).wait_for(timeout=120_000)
        assert not page.get_by_test_id("stException").count()
        assert rows(
            store,
            "SELECT name FROM visits WHERE record_id IN ('D1', 'D2', 'D3') "
            "AND name IN ('Rosa Uno', 'Rosa Dos', 'Rosa Tres') ORDER BY record_id",
        ) == [("Rosa Uno",), ("Rosa Dos",), ("Rosa Tres",)]
        assert set(glob.glob(os.path.join(tempfile.gettempdir(), "upload-*"))) <= before
    finally:
        context.close()


def _waves_sample(store, tmp_path) -> Path:
    """The head of the White House WAVES release (a layout the synonyms do not know), with
    the White House's buildings in the facilities list (else its rows are quarantined as
    visits to an unknown facility, as designed)."""
    from tests.conftest import WAVES

    buildings = write_csv(
        tmp_path / "wh_facilities.csv",
        ["facility", "name", "kind"],
        [["WH", "White House", "office"], ["OEOB", "Eisenhower Building", "office"],
         ["NEOB", "New Executive Office Building", "office"]],
    )  # fmt: skip
    ingest_files(store, [buildings], user="test")
    sample = tmp_path / "waves_head.csv"
    sample.write_bytes(b"".join(WAVES.read_bytes().splitlines(keepends=True)[:21]))
    return sample


def test_a_layout_the_tool_does_not_know_is_mapped_in_the_upload_page(server, browser, tmp_path):
    """The upload page was a dead end for a layout its synonyms do not know (the White
    House WAVES release): it said to write a --mapping file and listed 20 headers. Now it
    lists every column with sample values, takes a column per field, shows how a date of
    the file reads under each order, and ingests with that mapping."""

    url, store = server
    sample = _waves_sample(store, tmp_path)
    context, page = _fresh_upload(browser, url, sample)
    try:
        page.get_by_text("Map this file's columns.").wait_for()
        # every column is offered (MEETING_LOC is the 22nd: the message lists only 20)
        _choose(page, "Facility (required)", "MEETING_LOC")
        _choose(page, "Entered (required)", "TOA")
        page.get_by_text("reads as").wait_for()
        readings = page.get_by_text("reads as").inner_text()
        assert "month/day/year: 1 February 2022 11:46" in readings
        assert "day/month/year: 2 January 2022 11:46" in readings
        _choose(page, "Date order", "month/day/year")
        _choose(page, "Name", "NAMELAST")
        page.get_by_text("Kind visits").wait_for()
        page.screenshot(path=SHOTS / "6-upload-mapped-by-hand.png", full_page=True)
        page.get_by_role("button", name="Ingest 1 file and run the checks").click()
        # six rows have no arrival time (TOA): they wait in quarantine, saying so
        page.get_by_text("14 rows stored, 6 quarantined").wait_for(timeout=120_000)
    except Exception:
        page.screenshot(path=SHOTS / "failure-mapping.png", full_page=True)
        raise
    finally:
        context.close()
    stored = rows(
        store,
        "SELECT min(entered_at)::DATE, max(entered_at)::DATE, count(*), "
        "list(DISTINCT facility ORDER BY facility) FROM visits "
        "WHERE source_name = 'waves_head.csv'",
    )
    assert [str(v) for v in stored[0][:2]] == ["2022-02-01", "2022-02-01"]  # month first
    assert stored[0][2] == 14 and set(stored[0][3]) <= {"WH", "OEOB", "NEOB"}


# Words that are English and not Spanish: none may be left in the Spanish interface
# (identifiers such as rule ids, file names and codes are skipped: they hold a "-", "_"
# or "."; names in the data are Spanish in the demo world).


# What a page says as a person sees it: its visible text (not code, scripts or icon
# ligatures), and the cells of its tables (the grid draws them on a canvas; its
# accessibility table holds them as the data sent, dates unformatted).
VISIBLE_TEXT = """() => {
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const el = walk.currentNode.parentElement;
    // (icon names are ligatures of an icon font, not words anyone reads)
    if (!el || el.closest('textarea, code, pre, script, style, noscript, [data-testid="stIconMaterial"], [data-testid="stDataFrame"]')) continue;
    if (!el.checkVisibility({checkVisibilityCSS: true, checkOpacity: true})) continue;
    const box = el.getBoundingClientRect();  // a skip link parked off-screen until focused
    if (box.right <= 0 || box.bottom <= 0 || box.width * box.height <= 1) continue;
    out.push(walk.currentNode.textContent);
  }
  return out.join(' ');
}"""
GRID_CELLS = """() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"]')).map(grid => {
  const cells = Array.from(grid.querySelectorAll('table th, table td')).map(c => c.innerText);
  return [cells[0] || '', cells.join(' | ')];
})"""
# Each chart beside the column it sits in: a chart drawn wider than its column is cut.
CHART_WIDTHS = """() => Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]')).map(chart => {
  const column = chart.closest('[data-testid="stElementContainer"]') || chart.parentElement;
  const drawn = Array.from(chart.querySelectorAll('canvas, svg'))
    .reduce((w, el) => Math.max(w, el.getBoundingClientRect().width), 0);
  return [Math.round(drawn), Math.round(column.getBoundingClientRect().width),
          chart.scrollWidth - chart.clientWidth];
})"""
# Tables (by their first heading) whose cells are the tool's own sentences and figures, not
# the data as written: their dates and numbers must read as the language writes them (the
# values that made a rule fire; the model's figures).
WORDED_TABLES = ("field", "Reason")
# Tables whose every text cell the tool writes (the values of a rule, the model's figures,
# the audit trail): a word of the other language counts there too.
TOOL_TABLES = (*WORDED_TABLES, "acted_at")
# Tables of names people chose (the schedule's jobs, as its file names them).
NAMED_BY_USERS = ("job",)


def english_words(text: str) -> list[str]:  # (kept for the tests above)
    return readable.english_words(text)


def _page_reads_right(page, lang: str, name: str, problems: list) -> None:
    """The page as a person sees it, at 1400 px: no word of the other language, no internal
    word, no date or figure written the other way, no sentence glued from pieces, and no
    chart wider than its column. Its screenshot is kept; what is wrong is collected (the
    walk goes on, and fails at the end with every page's findings)."""
    _wait_idle(page)
    page.screenshot(path=SHOTS / f"{lang}-{name}.png", full_page=True)
    text = page.evaluate(VISIBLE_TEXT)
    leftovers = readable.spanish_leftovers if lang == "es" else readable.english_leftovers
    found = leftovers(text)

    def headings(names) -> set[str]:
        return {i18n.field_name(h, lang) for h in names} | {i18n.translate(lang, h) for h in names}

    worded, tool = headings(WORDED_TABLES), headings(TOOL_TABLES)
    named = {i18n.field_name(h, lang) for h in NAMED_BY_USERS}
    for heading, cells in page.evaluate(GRID_CELLS):
        if heading in named:
            continue
        found += [
            f"table {heading}: {p}"
            for p in leftovers(cells)
            if p.startswith(("internal", "snake_case", "english: empty", "rule id", "spanish"))
            or heading in worded
            or (heading in tool and p.startswith("english"))
        ]
    for drawn, column, overflow in page.evaluate(CHART_WIDTHS):
        if drawn > column + 1 or overflow > 1:
            found.append(f"chart {drawn} px wide in a {column} px column")
    if found:
        problems.append((name, found, text[:1500]))


@pytest.fixture(scope="module", params=["es", "en"])
def server_walk(request, tmp_path_factory, demo_logs):
    """The dashboard of an office speaking ``lang`` (its default language; the admin has
    not chosen one yet)."""
    lang = request.param
    store = _scored_demo(tmp_path_factory.mktemp(f"walk_{lang}"), demo_logs, "lucia", "admin")
    with _streamlit(store.path, DETECTOR_LANGUAGE=lang) as url:
        yield lang, url, store


def _go(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    _wait_idle(page)


# Flags opened in the walk beyond a rule flag and a model flag: those whose words the
# auditor's day found wrong (a medical transfer's evidence, a silence's holidays, a book's
# custody, a party's count, the hours of a visit, a series of books, a repeated case).
MORE_FLAGS = (
    "medical-transfer-without-approval",
    "logbook-silent-period",
    "logbook-not-in-custody",
    "unidentified-party-larger-than-names",
    "visit-outside-visiting-hours",
    "logbook-series-gap",
    "visit-official-meets-rival-leaders",
    "medical-transfer-gang-reunification",
    "unidentified-placeholder-name",
)


def test_a_walk_through_every_page_in_each_language(server_walk, browser, tmp_path):
    """Login, queue (with a filter open), flags of every kind the auditor met in detail, a
    review, the dossier, an upload of an unknown layout mapped in the page and saved by
    name, the overview, the evidence, the admin page, at 1400 px: in Spanish with no
    English, internal word, ISO date, English figure or glued sentence left; in English
    with no Spanish; and no chart wider than its column. Then, in Spanish, the reader
    switches to English and the choice stays with the user."""
    lang, url, store = server_walk
    context = _context(browser)
    page = context.new_page()
    problems: list = []
    try:
        _walk(lang, url, store, page, tmp_path, problems)
    except Exception:
        page.screenshot(path=SHOTS / f"failure-{lang}.png", full_page=True)
        raise
    finally:
        context.close()
    assert not problems, "\n\n".join(f"{n}: {f}\n  page: {t}" for n, f, t in problems)
    if lang != "es":
        return
    # The language chosen in the sidebar is kept with the user: a new session is English.
    context = _context(browser)
    page = context.new_page()
    try:
        page.goto(url)
        page.get_by_role("textbox", name="Usuario").fill("lucia")
        page.get_by_role("textbox", name="Contraseña").fill("pw-lucia-1234")
        page.get_by_role("button", name="Iniciar sesión").click()
        page.get_by_role("heading", name="Review queue").first.wait_for()
    finally:
        context.close()


def _walk(lang, url, store, page, tmp_path, problems):
    def t(message: str) -> str:
        return i18n.translate(lang, message)

    def check(name: str) -> None:
        _page_reads_right(page, lang, name, problems)

    page.goto(url)
    page.get_by_role("textbox", name=t("Username")).wait_for()
    check("1-login")
    page.get_by_role("textbox", name=t("Username")).fill("lucia")
    page.get_by_role("textbox", name=t("Password")).fill("pw-lucia-1234")
    page.get_by_role("button", name=t("Log in")).click()
    page.get_by_role("heading", name=t("Review queue")).first.wait_for()
    page.get_by_role("button", name=t("Case dossier of selected (HTML)")).first.wait_for()
    check("2-queue")
    # a filter's list open: its own words are Streamlit's ("Select all")
    rule_filter = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text(t("Rule")))
    rule_filter.locator("input").click()
    page.get_by_role("option").first.wait_for()
    check("2-queue-filter-open")
    page.keyboard.press("Escape")

    # A rule flag in detail, reviewed, and its dossier.
    (rule_flag,) = rows(
        store,
        "SELECT flag_id FROM flags WHERE rule_id = 'unidentified-companions-of-official' "
        "ORDER BY score DESC, flag_id LIMIT 1",
    )[0]
    _go(page, t("Flag detail"))
    box = page.get_by_label(t("Flag id"))

    def open_flag(flag_id: str) -> None:
        box.fill(flag_id)
        box.press("Enter")
        page.get_by_role("heading", name=_flag_title(store, flag_id, lang), level=1).wait_for()
        page.get_by_role("heading", name=t("Audit trail")).first.wait_for()
        _wait_idle(page)

    open_flag(rule_flag)
    page.get_by_role("heading", name=t("Review"), exact=True).first.wait_for()
    people = "personas no identificadas" if lang == "es" else "unidentified people"
    assert page.get_by_text(people).count(), people
    check("3-rule-flag")
    _choose(page, t("Status"), i18n.words("confirmed", lang))
    note = "visto en el libro en papel, folio 4" if lang == "es" else "seen in the paper book"
    page.get_by_label(t("Note")).fill(note)
    page.get_by_role("button", name=t("Save review")).click()
    saved = t("Saved: {status}.").format(status=i18n.words("confirmed", lang))
    page.get_by_text(saved).first.wait_for()
    assert rows(store, f"SELECT status FROM reviews WHERE flag_id = '{rule_flag}'") == [
        ("confirmed",)
    ]
    check("4-review-saved")
    with page.expect_download() as dl:
        page.get_by_role("button", name=t("Case dossier of this flag (HTML)")).click()
    dossier = dl.value.path().read_text(encoding="utf-8")
    (SHOTS / f"{lang}-dossier.html").write_text(dossier, encoding="utf-8")
    said = re.sub(r"<style.*?</style>|<code>.*?</code>|<[^>]+>", " ", dossier, flags=re.S)
    assert t("Case dossier") in said and i18n.words("confirmed", lang) in said
    leftovers = readable.spanish_leftovers if lang == "es" else readable.english_leftovers
    assert not leftovers(said), leftovers(said)

    # A model flag: why the model flagged it, in sentences; the figures explained.
    (model_flag,) = rows(
        store, "SELECT flag_id FROM flags WHERE source = 'model' ORDER BY score DESC LIMIT 1"
    )[0]
    open_flag(model_flag)
    page.get_by_role("heading", name=t("Why the model flagged it")).first.wait_for()
    _open_expanders(page)
    check("5-model-flag")
    # dismissed: refused without a reason (its reasons said in words), then as benign, and
    # the audit trail says so in words
    _choose(page, t("Status"), i18n.words("dismissed", lang))
    page.get_by_role("button", name=t("Save review")).click()
    needs = t("dismissing needs a reason: {reasons}").split(":")[0]
    page.get_by_test_id("stAlert").filter(has_text=needs).first.wait_for()
    check("5-model-flag-refused")
    _choose(page, t("Dismissal reason"), i18n.words("benign", lang))
    page.get_by_role("button", name=t("Save review")).click()
    page.get_by_text(
        t("Saved: {status}.").format(status=i18n.words("dismissed", lang))
    ).first.wait_for()
    check("5-model-flag-dismissed")

    # The flags whose words the auditor found wrong, with their values shown.
    for rule_id in MORE_FLAGS:
        found = rows(store, "SELECT flag_id FROM flags WHERE rule_id = ? LIMIT 1", [rule_id])
        assert found, rule_id
        open_flag(found[0][0])
        _open_expanders(page)
        check(f"5-{rule_id}")

    # An unknown layout (the White House WAVES release) mapped in the page, saved by name.
    sample = _waves_sample(store, tmp_path)
    _go(page, t("Upload"))
    check("6-upload")
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(sample))
    page.get_by_text(_bold(t(MAP_BY_HAND))).first.wait_for()
    _choose(page, _required(lang, "facility"), "MEETING_LOC")
    _choose(page, _required(lang, "entered_at"), "TOA")
    said = page.get_by_text(_reads_as(lang)).first.inner_text()
    month_first = (
        "mes/día/año: 1 de febrero de 2022 11:46"
        if lang == "es"
        else ("month/day/year: 1 February 2022 11:46")
    )
    assert month_first in said, said
    _choose(page, t("Date order"), t("month/day/year"))
    _choose(page, i18n.field_name("name", lang), "NAMELAST")
    page.get_by_text(_kind_line(lang)).first.wait_for()
    check("7-upload-mapped")
    page.get_by_role("textbox", name=t("Save as a named mapping")).fill(f"waves-{lang}")
    page.get_by_role("button", name=t("Save mapping")).click()
    page.get_by_text(
        t("Saved as {name}, version {version} (SHA-256 {sha}).")
        .split(" (")[0]
        .format(name=f"waves-{lang}", version=1)
    ).first.wait_for()
    ingest = i18n.translate_plural(
        lang, "Ingest {n} file and run the checks", "Ingest {n} files and run the checks", 1
    ).format(n=1)
    page.get_by_role("button", name=ingest).click()
    stored = (
        "14 filas guardadas, 6 en cuarentena" if lang == "es" else "14 rows stored, 6 quarantined"
    )
    page.get_by_text(stored).first.wait_for(timeout=120_000)
    check("8-upload-done")
    (label,) = rows(store, "SELECT mapping FROM uploads WHERE original_name = 'waves_head.csv'")[0]
    assert json.loads(label)["file"].startswith(f"saved:waves-{lang} v1 sha256:")

    _go(page, t("Overview"))
    risk = t("Risk per person, official, inmate and facility")
    page.get_by_role("heading", name=risk).first.wait_for()
    page.get_by_role("tab", name=t("Facilities")).first.wait_for()
    check("9-overview")
    _go(page, t("Evidence and runs"))
    page.get_by_role("button", name=t("Verify the ledger and every evidence file")).click()
    intact = i18n.translate_plural(
        lang,
        "Ledger intact: {n} entry; every evidence file matches its SHA-256.",
        "Ledger intact: {n} entries; every evidence file matches its SHA-256.",
        2,
    )
    page.get_by_text(intact.split(":")[0]).first.wait_for()
    page.get_by_role("heading", name=t("Quarantine")).first.wait_for()
    check("10-evidence")
    _go(page, t("Admin"))
    page.get_by_role("heading", name=t("Run history")).first.wait_for()
    check("11-admin")

    if lang == "es":
        # The reader switches to English in the sidebar: the page follows, the user keeps it.
        _choose(page, "Idioma", "English")
        page.get_by_role("heading", name="Weights learnt from reviews").first.wait_for()
        assert auth.language(auth.users_file(store.path), "lucia") == "en"


MAP_BY_HAND = (
    "**Map this file's columns.** Say what the file holds and which column holds each field, "
    "or upload a mapping file (the one `detector ingest --mapping` reads)."
)


def _bold(text: str) -> str:
    """The bold opening of a Markdown message, as the page shows it."""
    return re.match(r"\*\*(.+?)\*\*", text).group(1)


def _required(lang: str, field: str) -> str:
    return f"{i18n.field_name(field, lang)} {i18n.translate(lang, '(required)')}"


def _reads_as(lang: str) -> str:
    """The words between the value and the readings in "<value>" reads as: ..."""
    said = i18n.translate(
        lang, '"{value}" reads as: {readings} (the date order chosen above is {order})'
    )
    return said.split('"{value}" ')[-1].split(":")[0].strip("« »")


def _kind_line(lang: str) -> str:
    said = i18n.translate(
        lang, "Kind **{kind}** · format {format} · encoding {encoding} · delimiter {delimiter}"
    )
    return said.split("**{kind}**")[0] + i18n.words("visits", lang)


def _open_expanders(page) -> None:
    """Open every closed expander of the page (their tables are what the walk reads)."""
    for summary in page.locator("[data-testid='stExpander'] details:not([open]) > summary").all():
        summary.click()
    _wait_idle(page)


def test_the_server_console_stays_quiet_through_the_walk(server):
    """Streamlit printed a StreamlitValueAssignmentNotAllowedError (and other warnings) on
    every reload of a signed-in page. After the walks above, the console has no warning,
    error or traceback."""
    said = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in SERVER_LOGS)
    assert "You can now view your Streamlit app" in said  # the console was captured
    bad = [
        line
        for line in said.splitlines()
        if any(w in line for w in ("Traceback", "Error", "WARNING", "Warning", "warning"))
    ]
    assert not bad, "\n".join(bad[:20])
