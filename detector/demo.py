"""The main job end to end: demo logs -> the pipeline -> the dashboard, and serving the dashboard."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from detector import auth, i18n, pipeline
from detector.errors import DetectorError
from detector.generator import generate
from detector.i18n import N_
from detector.settings import settings
from detector.store import Store

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
# The dashboard's server: dashboard/app.py under Streamlit, with the routes that set and end
# the login session's HttpOnly cookie (dashboard/server.py).
SERVER = DASHBOARD.with_name("server.py")


def _(message: str) -> str:
    return i18n.translate(i18n.default_language(), message)


class PortBusy(DetectorError):
    """The dashboard's port is taken (another dashboard, or another program)."""

    TEMPLATE = N_(
        "port {port} on {address} is already in use (another dashboard or another program "
        "is listening there): stop it, or choose another port with --port"
    )

    def __init__(self, address: str, port: int):
        self.address, self.port = address, port
        super().__init__(self.said(i18n.SOURCE))

    def said(self, lang: str) -> str:
        return i18n.translate(lang, self.TEMPLATE).format(port=self.port, address=self.address)


def port_free(address: str, port: int) -> bool:
    """Whether the dashboard could listen on ``address``:``port`` now (as its server binds:
    an address still in TIME_WAIT counts as free, a listening one does not)."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except OSError:
        return True  # an address that does not resolve is the server's to report
    for family, kind, proto, _canon, where in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError:
                return False
    return True


def run_demo(
    store: Store,
    out: Path,
    console: Console,
    serve: bool = True,
    port: int = 8501,
    address: str = "localhost",
) -> int:
    """Generate the demo logs (the books, and the perimeter gate's reads beside them), ingest
    them (a re-run recognises them), run the checks; then serve the dashboard. Returns the
    dashboard's exit status (0 without it)."""
    files = generate(out, events=True)  # the books and the gate beside them
    logs = [p for k, p in files.items() if k != "truth"]
    report = pipeline.run(store, logs, user="demo", triggered_by="demo")
    lang = i18n.default_language()
    for r in report.ingested:
        state = (
            r.message
            if r.status != "stored"
            else _("{stored} stored, {quarantined} quarantined").format(
                stored=i18n.number(r.rows_stored, lang),
                quarantined=i18n.number(r.rows_quarantined, lang),
            )
        )
        kind = i18n.words(r.kind, lang) if r.kind else "-"
        console.print(f"{Path(r.path).name:<20} {kind:<11} {state}", highlight=False)
    if report.failed:
        raise SystemExit(
            _("demo ingest failed: {problem}").format(problem=report.failed[0].message)
        )
    if report.persons_error:
        console.print(f"[red]{escape(report.linkage_failure(lang))}[/]", highlight=False)
    if report.rules:
        rules = report.rules
        for rule_id, error in rules.errors.items():
            console.print(
                "[red]" + _("rule {rule} failed:").format(rule=rule_id) + f"[/] {escape(error)}",
                highlight=False,
            )
        console.print(
            _("rules: {hits} hits from {rules} rules, {new} new flags ({seconds} s)").format(
                hits=i18n.number(sum(rules.counts.values()), lang),
                rules=len(rules.counts),
                new=i18n.number(sum(rules.new.values()), lang),
                seconds=i18n.number(rules.seconds, lang, 1),
            )
        )
    if report.scoring:
        scored = report.scoring
        console.print(
            _("scoring: {rows} visits scored, {new} new outlier flags ({seconds} s)").format(
                rows=i18n.number(scored.rows, lang),
                new=i18n.number(scored.flags_new, lang),
                seconds=i18n.number(sum(scored.seconds.values()), lang, 1),
            )
        )
    if not report.new_uploads:
        console.print(_("the demo logs were already stored: nothing new to check"))
    console.print(_("database: {path}").format(path=store.name))
    if serve:
        return serve_dashboard(store, console, port, address)
    return 0


def serve_dashboard(
    store: Store, console: Console, port: int = 8501, address: str = "localhost"
) -> int:
    """Start the Streamlit dashboard on this database (blocks until Ctrl-C) and return its
    exit status. A busy port is refused before anything is printed (:class:`PortBusy`)."""
    if not port_free(address, port):
        raise PortBusy(address, port)
    users = store.users
    _users, created = auth.ensure(users)
    if created:
        secret = auth.store_first_password(users, created)
        console.print(
            _(
                "[bold]Dashboard login: user [green]admin[/], password in {secret}[/] "
                "(readable by you only; delete it once you have changed the password or "
                "stored it; the hash is in {users})"
            ).format(secret=secret, users=users),
            highlight=False,
        )
    else:
        console.print(
            _(
                "Dashboard users are in {users} (`detector users add NAME --role admin` "
                "resets a password)."
            ).format(users=users),
            highlight=False,
        )
    console.print(
        _("Dashboard: {url} (Ctrl-C to stop)").format(url=f"http://{address}:{port}"),
        highlight=False,
    )
    try:
        return subprocess.run(streamlit_command(store.url, port, address), check=False).returncode
    except KeyboardInterrupt:
        return 0


def streamlit_command(db: str | Path, port: int, address: str) -> list[str]:
    """The `streamlit run` of the dashboard's server (the pages, and the routes that set its
    HttpOnly session cookie) with the server settings the product relies on: no telemetry, no toolbar "Deploy" button, no raw CSV download from tables (exports
    go through the formula-safe buttons), XSRF protection on, and an upload limit
    sized to logbooks (``DETECTOR_MAX_UPLOAD_MB``, 200 MB by default) — Streamlit accepts
    uploads on its upload endpoint before anyone logs in, so this limit is what a stranger
    can make the server hold (see SECURITY.md for the proxy in front)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(SERVER),
        "--server.headless=true",
        f"--server.port={port}",
        f"--server.address={address}",
        "--browser.gatherUsageStats=false",
        "--server.enableXsrfProtection=true",
        "--client.toolbarMode=minimal",
        "--client.disableDataExport=true",
        f"--server.maxUploadSize={max_upload_mb()}",
        "--",
        "--db",
        str(db),
    ]


def max_upload_mb() -> int:
    return settings().max_upload_mb
