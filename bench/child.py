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
