"""Every benchmark at the README's sizes, and one table: the machine, each figure beside its
goal (issue 25), ratios measured within one run, peak memory of each process.

    .venv/bin/python bench/all.py            # the README's sizes (about an hour here)
    .venv/bin/python bench/all.py --quick    # small sizes, to check the scripts (3 min)

The README's performance table is this command's output (with its date and commit).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL = {
    "ingest": [1_000_000],
    "rules": [1_000_000, 10_000_000],
    "flood": [10_000_000],
    "score": [1_000_000, 10_000_000],
    "fixed": [1_000_000],
    "commands": [512_000, 10_000_000],
    "events": [1_000_000, 10_000_000],
    "dashboard": [],  # bench/dashboard.py --rows 1000000 (its own run: AppTest)
}
BIG = 10_000_000  # from this size, at most two runs per measurement (time)
QUICK = {
    "ingest": [100_000],
    "rules": [100_000],
    "flood": [100_000],
    "score": [100_000],
    "commands": [51_200],
    "fixed": [100_000],
    "events": [100_000],
    "dashboard": [],
}


def step(m: dict, command: str, kind: str) -> str:
    """What one kind of run inside a measured command took, as its runs row says."""
    got = m.get(f"{command}: {kind}")
    return f"{got[0]:.2f} s" if got else "-"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    import duckdb
    import polars
    import pyarrow

    try:
        from importlib.metadata import version

        pyod = version("pyod")
    except Exception:  # noqa: BLE001
        pyod = "?"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GB; Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}, polars {polars.__version__}, pyarrow "
        f"{pyarrow.__version__}, PyOD {pyod}; load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "--", "detector", "bench", "rules")
        else ""
    )
    return git("rev-parse", "--short", "HEAD") + dirty


def n(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows / 1e3:g}k"


def gb(mb: float) -> str:
    return f"{mb / 1024:.2f} GB"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, what: str, result: str, goal: str = "") -> None:
        self.rows.append((what, result, goal))
        print(f"  {what}: {result}  [{goal}]", file=sys.stderr, flush=True)

    def markdown(self) -> str:
        lines = ["| what | result | goal |", "|---|---|---|"]
        lines += [f"| {w} | {r} | {g} |" for w, r, g in self.rows]
        return "\n".join(lines)


def verdict(value: float, limit: float, fmt: str = "{:.2f}", floor: str = "") -> str:
    """The goal and whether it is met; with ``floor`` (what DuckDB itself needs for the
    same work, as measured), that too when it is not."""
    met = value <= limit
    return f"≤ {fmt.format(limit)}: {'met' if met else 'NOT met'}" + (
        f" ({floor})" if floor and not met else ""
    )


def _command_floor(m: dict, name: str, full: float, queries: float = 0.0) -> str:
    """The floor of an incremental command as a share of its full counterpart: the same
    command with nothing new left to do (what it costs before it links a row or runs a
    rule), and with ``queries`` (the rule queries it runs, DuckDB's own time) added."""
    idle = m[f"{name}, nothing new"][0]
    text = f"floor: the same command with nothing new to do, {idle:.2f} s = {idle / full:.3f}"
    if queries:
        text += f"; with the rule queries it runs, {idle + queries:.2f} s = {(idle + queries) / full:.3f}"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (medians)")
    ap.add_argument("--only", action="append", help="only these benchmarks (repeatable)")
    ap.add_argument(
        "--max-rows", type=int, help="leave out the sizes above this (the 10M runs take hours)"
    )
    ap.add_argument("--min-rows", type=int, help="leave out the sizes below this")
    args = ap.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.only:
        sizes = {k: v for k, v in sizes.items() if k in args.only}
    if args.max_rows:
        sizes = {k: [r for r in v if r <= args.max_rows] for k, v in sizes.items()}
    if args.min_rows:
        sizes = {k: [r for r in v if r >= args.min_rows] for k, v in sizes.items()}
    t0 = time.perf_counter()
    flags = " --quick" if args.quick else ""
    flags += "".join(f" --only {o}" for o in args.only or ())
    flags += f" --max-rows {args.max_rows}" if args.max_rows else ""
    flags += f" --min-rows {args.min_rows}" if args.min_rows else ""
    head = (
        f"Measured {date.today()} at commit {commit()} with `bench/all.py{flags}` on: {machine()}."
    )
    print(head, file=sys.stderr, flush=True)
    table = Table()
    rep = args.repeat

    from bench import commands, events, ingest, rules, score

    def reps(rows: int) -> int:
        return min(rep, 2) if rows >= BIG else rep

    for rows in sizes.get("ingest", []):
        r = ingest.measure(rows, reps(rows))
        d, b, w = r["detector"], r["duckdb"], r["duckdb-wide"]
        table.add(
            f"ingest {n(rows)} visits ({r['mb']:.0f} MB CSV), the row seal included",
            f"{d['seconds']:.2f} s, peak {gb(d['peak_mb'])}; DuckDB's bare `read_csv` "
            f"{b['seconds']:.2f} s, peak {gb(b['peak_mb'])}: **{r['detector/duckdb']:.2f}×** "
            f"(into a file of the store's 1.5 format, DuckDB's bare `read_csv` "
            f"{r['duckdb-v1.5']['seconds']:.2f} s: the ingest {r['detector/duckdb-v1.5']:.2f}× "
            f"it; DuckDB alone into the stored table, no checks: {w['seconds']:.2f} s, "
            f"{r['duckdb-wide/duckdb']:.2f}×; DuckDB storing the very rows stored, from "
            f"memory: {r['duckdb-store']['seconds']:.2f} s, {r['duckdb-store/duckdb']:.2f}×)",
            verdict(
                r["detector/duckdb"],
                2.4,
                "{:.1f}×",
                f"floor, storing the same rows: {r['duckdb-store/duckdb']:.2f}×; the ingest is "
                f"{d['seconds'] / r['duckdb-store']['seconds']:.2f}× it",
            ),
        )
    for rows in sizes.get("rules", []):
        r = rules.measure(rows)
        slow = ", ".join(f"{k} {v:.1f} s" for k, v in r["slowest"].items())
        goal = f"{verdict(r['seconds'], 10, '{:.0f} s')}; peak ≤ 4 GB" if rows >= 10_000_000 else ""
        table.add(
            f"full rule run, {n(rows)} visits (in process)",
            f"{r['seconds']:.1f} s, peak {gb(r['peak_mb'])} (slowest: {slow})",
            goal,
        )
    for rows in sizes.get("flood", []):
        r = rules.measure(rows, flood=True)
        slow = ", ".join(f"{k} {v:.1f} s" for k, v in r["slowest"].items())
        table.add(
            f"full rule run, {n(rows)} visits, two lines in five one common name with no "
            "document (in process): the first run, then the same run again",
            f"{r['seconds']:.1f} s, then {r['again'][0]:.1f} s; peak {gb(r['peak_mb'])}; "
            f"{r['hits']:,} hits (slowest: {slow})",
            "peak ≤ 4 GB",
        )
    for rows in sizes.get("score", []):
        r = score.measure(rows)
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in r["parts"].items())
        goal = f"{verdict(r['seconds'], 60, '{:.0f} s')}; peak ≤ 4 GB" if rows >= 10_000_000 else ""
        table.add(
            f"features + fit + ECOD scoring, {n(rows)} visits (in process)",
            f"{r['seconds']:.1f} s ({parts}), peak {gb(r['peak_mb'])}",
            goal,
        )
    for rows in sizes.get("fixed", []):
        m = commands.measure(rows, rep, ratios=False)
        for name, limit in (("run, nothing new", 1.0), ("status", 0.5), ("--help", 0.3)):
            table.add(
                f"`detector {name.replace(', nothing new', '')}`"
                + (" with nothing new" if "nothing" in name else "")
                + f", {n(rows)} visits stored (a process)",
                f"{m[name][0]:.2f} s, peak {gb(m[name][1])} (start-up floor: Python with "
                f"DuckDB imported, the file opened: {m['start-up floor'][0]:.2f} s)",
                verdict(m[name][0], limit, "{:.1f} s"),
            )
    for rows in sizes.get("commands", []):
        # At 10M a full run with scoring three times over does not fit the time here: the
        # rule runs are compared there, the full scoring is measured once above.
        with_score = rows < 10_000_000
        m = commands.measure(rows, reps(rows), fixed=False, score=with_score)
        inc, full = m["incremental rules"][0], m["full rules"][0]
        table.add(
            f"{n(rows)} visits + 1% over every facility: `detector run --no-score` vs "
            "`detector run --no-score --full` (processes)",
            f"{inc:.2f} s vs {full:.2f} s: **{inc / full:.3f}** (inside each: identity "
            f"linkage of the new rows {step(m, 'incremental rules', 'persons')} vs "
            f"{step(m, 'full rules', 'persons')}, the rule run "
            f"{step(m, 'incremental rules', 'rules')} vs {step(m, 'full rules', 'rules')}; "
            f"the incremental rule queries alone {m['incremental rule queries'][0]:.2f} s = "
            f"{m['incremental rule queries'][0] / full:.3f}; peak {gb(m['incremental rules'][1])})",
            verdict(
                inc / full,
                0.10,
                floor=_command_floor(
                    m, "incremental rules", full, m["incremental rule queries"][0]
                ),
            ),
        )
        inc, full = m["incremental rules, the day after"][0], m["full rules, the day after"][0]
        table.add(
            f"the day after: that 1% run on incrementally, then the next 1% over every "
            f"facility, {n(rows)} visits: `detector run --no-score` vs `detector run "
            "--no-score --full` (processes)",
            f"{inc:.2f} s vs {full:.2f} s: **{inc / full:.3f}** (inside each: linkage "
            f"{step(m, 'incremental rules, the day after', 'persons')} vs "
            f"{step(m, 'full rules, the day after', 'persons')}, the rule run "
            f"{step(m, 'incremental rules, the day after', 'rules')} vs "
            f"{step(m, 'full rules, the day after', 'rules')}; peak "
            f"{gb(m['incremental rules, the day after'][1])})",
            verdict(inc / full, 0.10),
        )
        if not with_score:
            continue
        run, full_run = m["run"][0], m["full run"][0]
        table.add(
            f"{n(rows)} visits + 1% over every facility: `detector run` vs "
            "`detector run --full --refit` (processes)",
            f"{run:.2f} s vs {full_run:.2f} s: **{run / full_run:.3f}** (inside each: "
            f"linkage {step(m, 'run', 'persons')} vs {step(m, 'full run', 'persons')}, rules "
            f"{step(m, 'run', 'rules')} vs {step(m, 'full run', 'rules')}, scoring "
            f"{step(m, 'run', 'score')} vs {step(m, 'full run', 'score')}; peak "
            f"{gb(m['run'][1])} / {gb(m['full run'][1])})",
            verdict(run / full_run, 0.10, floor=_command_floor(m, "run", full_run)),
        )
    for rows in sizes.get("events", []):
        r = events.measure(rows, reps(rows))
        big = rows >= 10_000_000
        table.add(
            f"ingest {n(rows)} reader events ({r['mb']:.0f} MB CSV)",
            f"{r['ingest']:.2f} s, peak {gb(r['ingest_peak_mb'])}; DuckDB's bare `read_csv` "
            f"{r['bare']:.2f} s: **{r['ingest/bare']:.2f}×** (into a file of the store's 1.5 "
            f"format, DuckDB's bare `read_csv` {r['bare-v1.5']:.2f} s: the ingest "
            f"{r['ingest/bare-v1.5']:.2f}× it; DuckDB alone into the stored "
            f"table, no checks: {r['wide']:.2f} s, {r['wide/bare']:.2f}×; DuckDB storing the "
            f"very rows stored, from memory: {r['store']:.2f} s, {r['store/bare']:.2f}×)",
            verdict(
                r["ingest/bare"],
                3,
                "{:.0f}×",
                f"floor, storing the same rows: {r['store/bare']:.2f}×; the ingest is "
                f"{r['ingest'] / r['store']:.2f}× it",
            )
            if big
            else "",
        )
        p = r["pair"]
        table.add(
            f"{n(rows)} reader events: pairing into stays / the access and reconciliation rules in full",
            f"{p['pair_seconds']:.2f} s / {p['rules_seconds']:.2f} s, peak {gb(p['peak_mb'])}",
            verdict(
                p["rules_seconds"],
                10,
                "{:.0f} s",
                f"floor: DuckDB alone pairing each read with its person's next, "
                f"{p['pair_floor_seconds']:.1f} s; the rules are "
                f"{p['rules_seconds'] / p['pair_floor_seconds']:.1f}× it (their own pairing, "
                f"which they read, {p['pair_seconds']:.1f} s)",
            )
            if big
            else "",
        )
    for rows in sizes.get("dashboard", []):
        out = (
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "dashboard.py"), "--rows", str(rows)],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        table.add(f"review queue, {n(rows)} visits", out.split(": ", 1)[-1])
    print(head)
    print()
    print(table.markdown())
    print(
        f"\n(all benchmarks: {(time.perf_counter() - t0) / 60:.0f} min; load average at the end "
        f"{os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
