"""Copying a whole store into another (`detector migrate --to URL`): an office's DuckDB
file into the shared DuckLake, checked afterwards as `detector verify` checks it.

Everything moves: every table (the ledger, the records, the quarantine, flags, reviews and
their audit trail, runs, scores, models, weights, saved mappings), the evidence files the
ledger names (each re-hashed on the way), the kept scoring references and the dashboard's
users file. The rows go in one transaction, so a copy that fails leaves the target as it
was; the target must be empty, and the source must verify first: a migration carries a
chain that holds, or nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from detector import ledger
from detector.errors import DetectorError
from detector.store import SCHEMA_MARKS, Store

BATCH = 100_000  # rows streamed from the source to the target at a time


@dataclass
class Migration:
    """What was copied: rows per table, evidence files, and the target's verification."""

    rows: dict[str, int] = field(default_factory=dict)
    evidence: int = 0
    models: int = 0
    users: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _tables(store: Store) -> list[str]:
    with store.read() as con:
        return [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = "
                "'BASE TABLE' AND table_catalog = current_database() AND table_schema = 'main' "
                "ORDER BY 1"
            ).fetchall()
            if t not in SCHEMA_MARKS  # each store's own record of its schema version
        ]


def _counts(store: Store, tables: list[str]) -> dict[str, int]:
    with store.read() as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables}


def _copy_evidence(source: Store, target: Store, shas: list[str]) -> int:
    """Copy each named evidence file into the target's folder, hashing it on the way (a
    copy whose bytes do not match its name is refused); returns how many were copied."""
    copied = 0
    for sha in shas:
        if ledger.evidence_path(target, sha).exists():
            continue
        staged_sha, staged = ledger.stage_evidence(target, ledger.evidence_path(source, sha))
        if staged_sha != sha:
            staged.unlink(missing_ok=True)
            raise DetectorError(f"evidence file {sha[:12]}… changed while it was copied")
        copied += ledger.place_evidence(target, staged, sha)[1]
    return copied


def _copy_tree(source, target) -> int:
    """Copy a folder's files that the target lacks (kept models: content-hashed, checked
    when loaded); returns how many."""
    copied = 0
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        dest = target / path.relative_to(source)
        if dest.exists():
            continue
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        copied += 1
    return copied


def migrate(source: Store, target: Store, say: Callable[[str], None] = lambda _: None) -> Migration:
    """Copy ``source`` into the empty ``target`` and verify the copy; returns what moved.

    Raises DetectorError before writing anything when the source does not verify or the
    target already holds rows."""
    result = Migration()
    checked = ledger.verify(source)  # brings an older file's schema up to date too
    if not checked.ok:
        raise DetectorError(
            f"{source.name} does not verify, so it is not copied: " + "; ".join(checked.problems)
        )
    tables = _tables(source)
    target.init()
    missing = sorted(set(tables) - set(_tables(target)))
    if missing:
        raise DetectorError(f"{target.name} has no table {', '.join(missing)}")
    held = {t: n for t, n in _counts(target, tables).items() if n}
    if held:
        raise DetectorError(
            f"{target.name} already holds rows ({', '.join(f'{t}: {n}' for t, n in held.items())}):"
            " a store is copied into an empty one only"
        )
    with source.read() as con:
        shas = [
            s for (s,) in con.execute("SELECT DISTINCT sha256 FROM uploads ORDER BY 1").fetchall()
        ]
    result.evidence = _copy_evidence(source, target, shas)
    say(f"evidence: {len(shas)} files named by the ledger, {result.evidence} copied")
    if source.models.is_dir():
        result.models = _copy_tree(source.models, target.models)
        say(f"kept scoring models: {result.models} files copied")
    if source.users.exists() and not target.users.exists():
        target.users.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(source.users, target.users)
        os.chmod(target.users, 0o600)
        result.users = True
        say(f"dashboard users: {target.users}")
    with source.read() as src, target.write() as dst:  # every writer's turn: one commit
        for table in tables:
            reader = src.execute(f"SELECT * FROM {table}").to_arrow_reader(BATCH)
            dst.register("incoming", reader)
            try:
                dst.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
            finally:
                dst.unregister("incoming")
    result.rows = _counts(target, tables)
    expected = _counts(source, tables)
    for table in tables:
        say(f"{table}: {result.rows[table]} rows")
        if result.rows[table] != expected[table]:
            result.problems.append(
                f"{table}: {expected[table]} rows in {source.name}, {result.rows[table]} copied"
            )
    copy = ledger.verify(target)
    result.problems += copy.problems
    head, copied_head = ledger.anchor(source), ledger.anchor(target)
    if (head["seq"], head["entry_hash"]) != (copied_head["seq"], copied_head["entry_hash"]):
        result.problems.append("the copy's ledger head differs from the source's")
    return result
