"""Benchmark: the `detector` commands a user or cron runs, as processes (start-up, imports,
rule loading and all), with N visits stored.

With the visits of bench/rules.py stored and the rules run once:

- ``full run``: `detector run --full --refit` (every rule, the reference fitted, every
  visit scored) and ``full rules``: `detector run --no-score --full`;
- then the next 1% of visits spread over every facility (the days after the stored ones,
  as one upload) and, each from its own copy of that state, `detector run --no-score`
  (the incremental rule run) and `detector run` (incremental rules and scoring), each as a
  share of its full counterpart;
- the fixed cost of a command: `detector run` with nothing new, `detector status`,
  `detector --help`.

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
    """Run ``detector ARGS`` on ``db``; (seconds, peak MB of that process)."""
    env = {**os.environ, "DETECTOR_DB": str(db), "DETECTOR_LANGUAGE": "en"}
    done = run_command([DETECTOR, *args], env)
    return done["seconds"], done["peak_mb"]


def _copy(src: Path, dst: Path) -> Path:
    """A copy of a database's folder (the file, its models and evidence)."""
    shutil.copytree(src, dst)
    os.sync()
    return dst / "bench.duckdb"


def measure(rows: int, repeat: int, out: dict | None = None) -> dict:
    from bench.incremental import _append
    from bench.rules import build

    res: dict[str, list[tuple[float, float]]] = {}

    def timed(name: str, args: list[str], db: Path) -> None:
        res.setdefault(name, []).append(command(args, db))

    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        db = base / "bench.duckdb"
        build(db, rows)
        command(["run", "--no-score"], db)  # the first run: flags exist, rules are cached
        for _ in range(repeat):
            timed("full rules", ["run", "--no-score", "--full"], db)
            timed("full run", ["run", "--full", "--refit"], db)
        appended = Path(tmp) / "appended"
        shutil.copytree(base, appended)
        _append(appended / "bench.duckdb", rows)
        for i in range(repeat):
            for name, args in (("incremental rules", ["run", "--no-score"]), ("run", ["run"])):
                copy = _copy(appended, Path(tmp) / f"{name}-{i}".replace(" ", "-"))
                timed(name, args, copy)
                if name == "run" and i == repeat - 1:
                    for _ in range(repeat):
                        timed("run, nothing new", ["run"], copy)
                        timed("status", ["status"], copy)
                        timed("--help", ["--help"], copy)
                shutil.rmtree(copy.parent)
    med = {
        name: (statistics.median(s for s, _ in v), max(m for _, m in v)) for name, v in res.items()
    }
    if out is not None:
        out.update(med)
    return med


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, action="append")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for rows in args.rows or [512_000]:
        med = measure(rows, args.repeat)
        print(f"{rows:,} visits, +1% over every facility ({args.repeat} runs each, medians):")
        for name, (s, mb) in med.items():
            print(f"  {name:>20}: {s:6.2f} s  peak {mb:,.0f} MB")
        print(
            f"  incremental rules / full rules: {med['incremental rules'][0] / med['full rules'][0]:.3f}\n"
            f"  run / full run: {med['run'][0] / med['full run'][0]:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
