"""The main job end to end: demo logs -> ingest -> rules -> (dashboard)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rich.console import Console

from detector.generator import generate
from detector.ingest import ingest_paths
from detector.rules import run_rules
from detector.scoring import score
from detector.store import Store

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def run_demo(store: Store, out: Path, console: Console, serve: bool = True) -> None:
    """Generate the demo logs, ingest them (a re-run recognises them), run the checks."""
    files = generate(out)
    logs = [p for k, p in files.items() if k != "truth"]
    results = ingest_paths(store, logs, user="demo")
    for r in results:
        state = (
            r.message
            if r.status != "stored"
            else (f"{r.rows_stored} stored, {r.rows_quarantined} quarantined")
        )
        console.print(f"{Path(r.path).name:<20} {r.kind or '-':<11} {state}", highlight=False)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise SystemExit(f"demo ingest failed: {failed[0].message}")
    report = run_rules(store, triggered_by="demo")
    console.print(
        f"rules: {sum(report.counts.values())} hits from {len(report.counts)} rules, "
        f"{sum(report.new.values())} new flags ({report.seconds:.1f} s)"
    )
    scored = score(store, triggered_by="demo")
    console.print(
        f"scoring: {scored.rows:,} visits scored, {scored.flags_new} new outlier flags "
        f"({sum(scored.seconds.values()):.1f} s)"
    )
    console.print(f"database: {store.path}")
    if serve and DASHBOARD.exists():
        console.print("starting the dashboard (Ctrl-C to stop)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(DASHBOARD),
                "--server.headless=true",
                "--",
                "--db",
                str(store.path),
            ],
            check=False,
        )
