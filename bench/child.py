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


def report(**values) -> None:
    """Print the step's figures, with this process's peak memory, as the last line."""
    values["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(values, default=str), flush=True)
