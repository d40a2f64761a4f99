"""Benchmark: the `detector` commands a user or cron runs, as processes (start-up, imports,
rule loading and all), with N visits stored.

With the visits of bench/rules.py stored and the rules run once:

- ``full run``: `detector run --full --refit` (every rule, the reference fitted, every
  visit scored) and ``full rules``: `detector run --no-score --full`;
- then the next 1% of visits spread over every facility (the days after the stored ones,
  as one upload) and, each from its own copy of that state, `detector run --no-score`
  (the incremental rule run) and `detector run` (incremental rules and scoring), each as a
  share of its full counterpart run from a copy of the same state;
- the fixed cost of a command: `detector run` with nothing new, `detector status`,
  `detector --help`, beside the start-up floor (Python with DuckDB imported and the
  database opened, nothing else);
- the floor of the incremental rule run: the time of the rule queries it runs (what
  DuckDB itself needs for them), and each incremental command run again on its copy, with
  nothing new left to do (what the command costs before it links a row or runs a rule);
- the day after: that 1% run on incrementally, then the next 1% appended, and
  `detector run --no-score` against `detector run --no-score --full` again (a store in
  daily use, whose last run was incremental: an incremental run chooses per scope between
  narrowing and running in full by what each cost the runs before, ``engine.Costs``).

Each command runs ``--repeat`` times (the state copied afresh for each incremental run);
medians are reported, with each command's peak memory (its own, from wait4).

    .venv/bin/python bench/commands.py --rows 512000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.child import run_command  # noqa: E402

DETECTOR = str(Path(sys.executable).parent / "detector")


def command(args: list[str], db: Path) -> tuple[float, float]:
    """Run ``detector ARGS`` (or a command of its own when ARGS starts with a path) on
    ``db``; (seconds, peak MB of that process)."""
    env = {**os.environ, "DETECTOR_DB": str(db), "DETECTOR_LANGUAGE": "en"}
    argv = args if args[0].startswith("/") else [DETECTOR, *args]
    done = run_command(argv, env)
    return done["seconds"], done["peak_mb"]


def _copy(src: Path, dst: Path) -> Path:
    """A copy of a database's folder (the file, its models and evidence)."""
    shutil.copytree(src, dst)
    os.sync()
    return dst / "bench.duckdb"


def measure(
    rows: int, repeat: int, ratios: bool = True, fixed: bool = True, score: bool = True
) -> dict:
    """Medians (seconds, peak MB) of each command over ``repeat`` runs: with ``ratios``
    the full and incremental ones (without ``score``, the rule runs alone), with ``fixed``
    those with nothing new to do."""
    from bench.incremental import _append
    from bench.rules import build

    res: dict[str, list[tuple[float, float]]] = {}

    def timed(name: str, args: list[str], db: Path, steps: bool = False) -> None:
        before = _last_run(db) if steps else 0
        res.setdefault(name, []).append(command(args, db))
        if steps:  # what the command's own runs took (linkage, rules, scoring)
            for kind, seconds in _runs_since(db, before).items():
                res.setdefault(f"{name}: {kind}", []).append((seconds, 0.0))

    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        db = base / "bench.duckdb"
        build(db, rows)
        # the first run: flags and the reference exist, rules cached
        command(["run"] if score else ["run", "--no-score"], db)
        if fixed:
            for _ in range(repeat):
                timed("run, nothing new", ["run"], db)
                timed("status", ["status"], db)
                timed("--help", ["--help"], db)
                timed("start-up floor", [sys.executable, "-c", FLOOR, str(db)], db)
        if ratios:
            appended = Path(tmp) / "appended"
            shutil.copytree(base, appended)
            _append(appended / "bench.duckdb", rows)
            # Each command, full or incremental, from its own copy of the same state: the
            # 1% appended and not yet run on (so both link the new rows to persons).
            for i in range(repeat):
                steps = [
                    ("full rules", ["run", "--no-score", "--full"]),
                    ("incremental rules", ["run", "--no-score"]),
                ]
                if score:
                    steps += [("full run", ["run", "--full", "--refit"]), ("run", ["run"])]
                for name, args in steps:
                    copy = _copy(appended, Path(tmp) / f"{name}-{i}".replace(" ", "-"))
                    timed(name, args, copy, steps=True)
                    if not name.startswith("full"):
                        # the same command again, nothing new left: its floor at this size
                        timed(f"{name}, nothing new", args, copy)
                    shutil.rmtree(copy.parent)
            copy = _copy(appended, Path(tmp) / "queries")
            res["incremental rule queries"] = [_rule_queries(copy)]
            shutil.rmtree(copy.parent)
            _the_day_after(appended, Path(tmp), rows, repeat, score, timed)
    return {
        name: (statistics.median(s for s, _ in v), max(m for _, m in v)) for name, v in res.items()
    }


def _the_day_after(appended: Path, tmp: Path, rows: int, repeat: int, score: bool, timed) -> None:
    """The 1% of ``appended`` run on incrementally, the next 1% appended, and each rule run
    (incremental, full) timed ``repeat`` times from its own copy of that state."""
    from bench.incremental import _append

    history = tmp / "history"
    shutil.copytree(appended, history)
    command(["run"] if score else ["run", "--no-score"], history / "bench.duckdb")
    _append(history / "bench.duckdb", rows, seq=3)
    for i in range(repeat):
        for name, args in (
            ("full rules, the day after", ["run", "--no-score", "--full"]),
            ("incremental rules, the day after", ["run", "--no-score"]),
        ):
            copy = _copy(history, tmp / f"{name}-{i}".replace(" ", "-").replace(",", ""))
            timed(name, args, copy, steps=True)
            shutil.rmtree(copy.parent)
    shutil.rmtree(history)


def _last_run(db: Path) -> int:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT coalesce(max(run_id), 0) FROM runs").fetchall()[0][0]


def _runs_since(db: Path, run_id: int) -> dict[str, float]:
    """The seconds each run after ``run_id`` took, by kind ("persons", "rules", "score"),
    as the runs table recorded them."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return dict(
            con.execute(
                "SELECT kind, sum(epoch(ended_at - started_at)) FROM runs "
                "WHERE run_id > ? AND status = 'ok' GROUP BY kind",
                [run_id],
            ).fetchall()
        )


# What any command of the tool that reads the store needs before it does anything: Python
# and DuckDB imported, the database opened read-only. (polars and Arrow are imported when
# first used, detector.lazy: `status` and a `run` finding nothing new use neither.)
FLOOR = (
    "import sys, duckdb; duckdb.connect(sys.argv[1], read_only=True).execute('SELECT 1').fetchall()"
)


def _rule_queries(db: Path) -> tuple[float, float]:
    """(seconds, 0): the time of the rule queries alone in an incremental run (what DuckDB
    itself needs for the rules it re-evaluates), run in a process of its own."""
    code = (
        "import json, sys, time\n"
        "from detector import engine\nfrom detector.store import Store\n"
        "spent = [0.0]\nevaluate = engine.evaluate_batches\n"
        "def timed(con, rule):\n"
        "    t = time.perf_counter()\n"
        "    yield from evaluate(con, rule)\n"
        "    spent[0] += time.perf_counter() - t\n"
        "engine.evaluate_batches = timed\n"
        "engine.run_rules(Store(sys.argv[1]), full=False)\n"
        "print(json.dumps(spent[0]))\n"
    )
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code, str(db)], check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1]), 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, action="append")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for rows in args.rows or [512_000]:
        med = measure(rows, args.repeat)
        print(f"{rows:,} visits, +1% over every facility ({args.repeat} runs each, medians):")
        for name, (s, mb) in med.items():
            print(f"  {name:>24}: {s:6.2f} s  peak {mb:,.0f} MB")
        inc, full = med["incremental rules"][0], med["full rules"][0]
        after = med["incremental rules, the day after"][0] / med["full rules, the day after"][0]
        print(
            f"  incremental rules / full rules: {inc / full:.3f} (the day after: {after:.3f})\n"
            f"  run / full run: {med['run'][0] / med['full run'][0]:.3f}"
            if "run" in med
            else "",
            flush=True,
        )


if __name__ == "__main__":
    main()
