"""The main job end to end: demo logs -> the pipeline -> the dashboard, and serving the dashboard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rich.console import Console

from detector import auth, pipeline
from detector.generator import generate
from detector.settings import settings
from detector.store import Store

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def run_demo(store: Store, out: Path, console: Console, serve: bool = True) -> None:
    """Generate the demo logs (the books, and the perimeter gate's reads beside them), ingest
    them (a re-run recognises them), run the checks."""
    files = generate(out, events=True)  # the books and the gate beside them
    logs = [p for k, p in files.items() if k != "truth"]
    report = pipeline.run(store, logs, user="demo", triggered_by="demo")
    for r in report.ingested:
        state = (
            r.message
            if r.status != "stored"
            else f"{r.rows_stored} stored, {r.rows_quarantined} quarantined"
        )
        console.print(f"{Path(r.path).name:<20} {r.kind or '-':<11} {state}", highlight=False)
    if report.failed:
        raise SystemExit(f"demo ingest failed: {report.failed[0].message}")
    if report.rules:
        rules = report.rules
        console.print(
            f"rules: {sum(rules.counts.values())} hits from {len(rules.counts)} rules, "
            f"{sum(rules.new.values())} new flags ({rules.seconds:.1f} s)"
        )
    if report.scoring:
        scored = report.scoring
        console.print(
            f"scoring: {scored.rows:,} visits scored, {scored.flags_new} new outlier "
            f"flags ({sum(scored.seconds.values()):.1f} s)"
        )
    if not report.new_uploads:
        console.print("the demo logs were already stored: nothing new to check")
    console.print(f"database: {store.name}")
    if serve:
        serve_dashboard(store, console)


def serve_dashboard(
    store: Store, console: Console, port: int = 8501, address: str = "localhost"
) -> None:
    """Start the Streamlit dashboard on this database (blocks until Ctrl-C)."""
    users = store.users
    _, created = auth.ensure(users)
    if created:
        secret = auth.store_first_password(users, created)
        console.print(
            f"[bold]Dashboard login: user [green]admin[/], password in {secret}[/] "
            "(readable by you only; delete it once you have changed the password or stored "
            f"it; the hash is in {users})",
            highlight=False,
        )
    else:
        console.print(
            f"Dashboard users are in {users} (`detector users add NAME --role "
            "admin` resets a password).",
            highlight=False,
        )
    console.print(f"Dashboard: http://{address}:{port} (Ctrl-C to stop)")
    subprocess.run(streamlit_command(store.url, port, address), check=False)


def streamlit_command(db: Path, port: int, address: str) -> list[str]:
    """The `streamlit run` of the dashboard with the server settings the product relies
    on: no telemetry, no toolbar "Deploy" button, no raw CSV download from tables (exports
    go through the formula-safe buttons), XSRF protection on, and an upload limit
    sized to logbooks (``DETECTOR_MAX_UPLOAD_MB``, 200 MB by default) — Streamlit accepts
    uploads on its upload endpoint before anyone logs in, so this limit is what a stranger
    can make the server hold (see SECURITY.md for the proxy in front)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(DASHBOARD),
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
