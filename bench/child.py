"""Run a benchmark step in a fresh process, so that its peak memory (ru_maxrss) is its own."""

from __future__ import annotations

import json
import resource
import subprocess
import sys


def in_child(script: str, *args: str) -> dict:
    """Run ``script --child ARGS`` and return the JSON object its last line prints."""
    out = subprocess.run(
        [sys.executable, script, "--child", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def peak_mb() -> float:
    """This process's peak resident memory in MB.

    ``VmHWM`` is the high-water mark of the process's own memory since it started its
    program; ``ru_maxrss`` can instead carry over the parent's peak across fork + exec
    (a benchmark parent that built a large data set made every child report its size).
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(**values) -> None:
    """Print the step's figures, with this process's peak memory, as the last line."""
    values["peak_mb"] = peak_mb()
    print(json.dumps(values, default=str), flush=True)


# Runs a command as its child and writes its seconds and peak memory to a file: the
# command is forked from this small launcher, not from the benchmark (a fork + exec from
# the benchmark would report the benchmark's own peak, see ``peak_mb``).
_LAUNCH = """
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as fh:
    json.dump({"seconds": time.perf_counter() - t0, "peak_mb": usage.ru_maxrss / 1024,
               "code": os.waitstatus_to_exitcode(status)}, fh)
"""


def run_command(argv: list[str], env: dict | None = None) -> dict:
    """Run ``argv`` as a process of its own; {"seconds", "peak_mb"}. Raises if it fails."""
    import tempfile
    from pathlib import Path

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCH, out.name, *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        text = Path(out.name).read_text()
        result = json.loads(text) if text else {}
    if done.returncode or result.get("code"):
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
    return result


def connect_as_store(db: str):
    """A new DuckDB file at ``db`` in the storage format detector writes its store in
    (``store.STORAGE_VERSION``): a floor measured in DuckDB's default format (readable by
    its 1.0 releases) would pay for that format's slower compression, which detector
    does not."""
    import duckdb

    from detector.store import STORAGE_VERSION

    return duckdb.connect(db, config={"storage_compatibility_version": STORAGE_VERSION})


def store_floor(source: str, db: str, table: str) -> float:
    """Seconds DuckDB alone takes to store the rows ``source``'s ``table`` holds (what an
    ingest stored) into a fresh file ``db`` with detector's schema: from a copy of them in
    memory, in one INSERT and one commit, with insertion order not kept, as the ingest's
    INSERT does, into a file of the store's format (``connect_as_store``). Nothing is read
    from a file, converted, checked or sealed: the floor of an ingest that stores those
    rows (their width, their values' variety), which the bare ``read_csv`` of a file's few
    text columns does not pay."""
    import time

    from detector.store import DDL

    con = connect_as_store(db)
    try:
        for ddl in DDL:
            con.execute(ddl)
        con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        con.execute(f"CREATE TEMP TABLE held AS SELECT * FROM src.main.{table}")
        con.execute("DETACH src")
        start = time.perf_counter()
        con.execute("BEGIN")
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"INSERT INTO main.{table} SELECT * FROM held")
        con.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        con.close()
