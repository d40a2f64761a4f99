"""Benchmark: the review queue's first paint and a filter change with N visits stored.

Builds the visits of bench/rules.py, runs the rules and the scoring, then drives the real
app with streamlit's AppTest: the time of the queue page's first run after login, and of
the run after a filter change (server-side time: queries plus rendering).
    .venv/bin/python bench/dashboard.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    from streamlit.testing.v1 import AppTest

    from bench.rules import build
    from detector import auth
    from detector.engine import run_rules
    from detector.scoring import score
    from detector.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        build(db, args.rows)
        store = Store(db)
        run_rules(store)
        score(store, workdir=Path(tmp))
        with store.read() as con:
            n_flags = con.execute("SELECT count(*) FROM flags").fetchall()[0][0]
        auth.add_user(auth.users_file(db), "bench", "auditor", password="bench-pw-1234")
        os.environ["DETECTOR_DB"] = str(db)
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
        at.run()
        at.text_input[0].set_value("bench")
        at.text_input[1].set_value("bench-pw-1234")
        at.button[0].click()
        t0 = time.perf_counter()
        at.run()  # login completes and the queue page paints
        first = time.perf_counter() - t0
        assert not at.exception and at.title[0].value == "Review queue", at.exception
        t0 = time.perf_counter()
        at.multiselect(key="f_sev").set_value(["high", "critical"])
        at.run()
        change = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.text_input(key="f_text").set_value("N/I")
        at.run()
        search = time.perf_counter() - t0
        print(
            f"{args.rows:,} visits, {n_flags:,} flags: queue first paint {first:.2f} s, "
            f"severity filter {change:.2f} s, text search {search:.2f} s"
        )


if __name__ == "__main__":
    main()
