"""Folders of files kept beside the store and trusted by their hash: the scoring
references (``detector.scoring``) and the identity linkage models (``detector.identity``).

Each is written in a staging folder, hashed, then moved into place under a name derived
from its hash (``publish``); the hash is recorded in the database, and a folder is loaded
only from the bytes that were hashed (``folder_hash``), so that a file swapped between the
check and the load is never read unchecked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def folder_hash(path: Path, keep: tuple[str, ...] | None = None) -> tuple[str, dict[str, bytes]]:
    """SHA-256 over a folder's files (names and contents, in name order; hidden files
    aside), and the bytes hashed of the files named in ``keep`` (every file when None)."""
    digest, kept = hashlib.sha256(), {}
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        data = f.read_bytes()
        digest.update(os.fsencode(f.name) + b"\0" + hashlib.sha256(data).digest())
        if keep is None or f.name in keep:
            kept[f.name] = data
    return digest.hexdigest(), kept


def publish(staging: Path, path: Path) -> None:
    """Move a finished staging folder into place, replacing a folder of that name."""
    if path.exists():
        shutil.rmtree(path)
    staging.rename(path)
