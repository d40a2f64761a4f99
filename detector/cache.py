"""A cache of small JSON results across processes, for this user: the parsed rule files,
the public-holiday calendars.

Each entry is named by the SHA-256 of what it was computed from (a rule file's bytes, a
calendar's countries, years and library version) and holds that SHA-256 and its format;
it is used only when both match, and only from a folder and a file of this user's that
nobody else can write (:func:`private`): whoever can write it can already write the rule
files and the database. The folder is ``settings().cache_folder`` (``DETECTOR_CACHE``;
``off``: no cache). Dates and times are kept with their type.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from detector.settings import settings


def _file(section: str, sha: str) -> Path | None:
    folder = settings().cache_folder
    return None if folder is None else folder / section / f"{sha}.json"


def read(section: str, sha: str, fmt: str) -> Any:
    """The data cached in ``section`` under ``sha`` in format ``fmt`` (None: none)."""
    path = _file(section, sha)
    if path is None or not private(path) or not private(path.parent):
        return None
    try:
        entry = json.loads(path.read_bytes(), object_hook=_untagged)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != fmt or entry.get("sha256") != sha:
        return None
    return entry.get("data")


def write(section: str, sha: str, fmt: str, data: Any) -> None:
    """Keep ``data`` for the next process; quietly nothing when the folder cannot be
    written or the data holds a value JSON cannot carry."""
    path = _file(section, sha)
    if path is None:
        return
    try:
        text = json.dumps(
            {"format": fmt, "sha256": sha, "data": data}, default=_tagged, ensure_ascii=False
        )
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{section}-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        return


def private(path: Path) -> bool:
    """Whether ``path`` is this user's and nobody else can write it (a cache another user
    could write is not read)."""
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _tagged(value: Any) -> dict:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    raise TypeError(f"not cached: {type(value).__name__}")


def _untagged(obj: dict) -> Any:
    if len(obj) == 1:
        if "$datetime" in obj:
            return datetime.fromisoformat(obj["$datetime"])
        if "$date" in obj:
            return date.fromisoformat(obj["$date"])
    return obj
