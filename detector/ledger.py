"""The evidence ledger: original files kept by content hash, uploads chained by hash, the
review audit trail chained alike, and the check of all of it (:func:`verify`)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from detector.i18n import N_, Said
from detector.schema import KINDS
from detector.store import Store, sealed_columns

# The ledger fields covered by each entry's hash, in this order.
CHAINED = (
    "seq",
    "sha256",
    "size",
    "original_name",
    "uploaded_by",
    "uploaded_at",
    "kind",
    "format",
    "encoding",
    "delimiter",
    "mapping",
    "rows_read",
    "rows_stored",
    "rows_quarantined",
    "rows_duplicate",
    "prev_hash",
)
GENESIS = "0" * 64


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def evidence_path(store: Store, sha: str) -> Path:
    return store.evidence / sha[:2] / sha


def stage_evidence(store: Store, path: Path, chunk: int = 1 << 22) -> tuple[str, Path]:
    """Copy a file into the evidence folder under a temporary name, hashing the bytes as
    they are written; returns (sha256, temporary path).

    Everything after this reads the copy, so what is stored is exactly what was hashed,
    even if the original changes meanwhile. Each block is hashed in a helper thread while
    it is written (both release the GIL).
    """
    store.evidence.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=store.evidence, prefix=".incoming-")
    h = hashlib.sha256()
    try:
        with ThreadPoolExecutor(1) as pool, open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            hashing = None
            while block := src.read(chunk):
                if hashing is not None:
                    hashing.result()  # blocks are hashed in order
                hashing = pool.submit(h.update, block)
                dst.write(block)
            if hashing is not None:
                hashing.result()
    except BaseException:
        os.unlink(tmp)
        raise
    return h.hexdigest(), Path(tmp)


def place_evidence(store: Store, staged: Path, sha: str) -> tuple[Path, bool]:
    """Move a staged copy to its content address, read-only; returns (path, newly placed).

    A copy already there (an earlier upload of the same bytes whose ingest failed) is kept
    and the staged one dropped.
    """
    target = evidence_path(store, sha)
    if target.exists():
        staged.unlink(missing_ok=True)
        return target, False
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(staged, stat.S_IRUSR)  # read-only, and for the owner alone: logs are personal data
    os.replace(staged, target)
    return target, True


def _canonical(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return "" if value is None else str(value)


def chain_hash(row: dict, fields: tuple[str, ...]) -> str:
    """The hash of a chained row (its ``fields``, in order, the previous hash among them):
    the ledger's entries and the review audit trail are chained alike."""
    payload = json.dumps([_canonical(row.get(k)) for k in fields], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# Sealed into an entry's hash when present: entries written before the digest existed
# keep the hash they were given.
DIGEST = "rows_digest"


def entry_hash(entry: dict) -> str:
    fields = CHAINED if entry.get(DIGEST) is None else (*CHAINED, DIGEST)
    return chain_hash(entry, fields)


# The audit row fields covered by each row's hash, in this order.
AUDITED = ("seq", "flag_id", "acted_at", "actor", "action", "old", "new", "note", "prev_hash")


def audit_hash(row: dict) -> str:
    return chain_hash(row, AUDITED)


def verify_audit(store: Store) -> list[str]:
    """Problems in the review audit trail's hash chain: an edited, removed or reordered row."""
    with store.read() as con:
        cur = con.execute(
            f"SELECT {', '.join(AUDITED)}, entry_hash FROM review_log "
            "WHERE seq IS NOT NULL ORDER BY seq"
        )
        rows = [dict(zip((*AUDITED, "entry_hash"), r, strict=True)) for r in cur.fetchall()]
    problems, prev = [], GENESIS
    for row in rows:
        if row["prev_hash"] != prev:
            problems.append(
                Said(
                    N_(
                        "review audit row {seq}: link to the row before is broken "
                        "(a row was removed or reordered)"
                    ),
                    seq=row["seq"],
                )
            )
        if audit_hash(row) != row["entry_hash"]:
            problems.append(
                Said(
                    N_(
                        "review audit row {seq} ({action} by {actor}): contents do not match "
                        "its hash (the row was edited)"
                    ),
                    seq=row["seq"],
                    action=row["action"],
                    actor=row["actor"],
                )
            )
        prev = row["entry_hash"]
    return problems


def rows_digest(con: duckdb.DuckDBPyConnection, kind: str, seq: int) -> str:
    """SHA-256 over the rows one upload stored, in source-row order: each row's fields as
    read and its provenance (``store.sealed_columns``). Sealed into the ledger entry, so an
    edited, added or deleted record is caught by ``verify`` even inside the database."""
    row = " || chr(31) || ".join(
        f"coalesce(CAST({c} AS VARCHAR), chr(0))" for c in sealed_columns(kind)
    )
    return con.execute(
        f"SELECT sha256(coalesce(string_agg(sha256({row}), '' ORDER BY source_row, "
        f"record_key), '')) FROM {kind} WHERE upload_seq = ?",
        [seq],
    ).fetchone()[0]


def append(con: duckdb.DuckDBPyConnection, entry: dict, pending: bool = False) -> dict:
    """Add one upload to the ledger inside the caller's transaction; returns it with seq and hash.

    With ``pending`` the entry is written before its counts are known and must be
    completed by :func:`seal` in the same transaction.
    """
    seq, prev = con.execute(
        "SELECT coalesce(max(seq), 0) + 1, "
        "coalesce((SELECT entry_hash FROM uploads ORDER BY seq DESC LIMIT 1), ?) FROM uploads",
        [GENESIS],
    ).fetchall()[0]
    entry = {**entry, "seq": seq, "prev_hash": prev}
    entry["entry_hash"] = "pending" if pending else entry_hash(entry)
    cols = [*CHAINED, "entry_hash"]
    con.execute(
        f"INSERT INTO uploads ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [entry[c] for c in cols],
    )
    return entry


def seal(con: duckdb.DuckDBPyConnection, entry: dict, **counts) -> dict:
    """Fill in a pending entry's counts and its hash."""
    entry.update(counts)
    entry["entry_hash"] = entry_hash(entry)
    sets = ", ".join(f"{k} = ?" for k in counts)
    con.execute(
        f"UPDATE uploads SET {sets}, entry_hash = ? WHERE seq = ?",
        [*counts.values(), entry["entry_hash"], entry["seq"]],
    )
    return entry


def find(con: duckdb.DuckDBPyConnection, sha: str) -> dict | None:
    rows = con.execute(
        "SELECT seq, original_name, uploaded_by, uploaded_at, kind FROM uploads "
        "WHERE sha256 = ? ORDER BY seq LIMIT 1",
        [sha],
    ).fetchall()
    if not rows:
        return None
    return dict(
        zip(("seq", "original_name", "uploaded_by", "uploaded_at", "kind"), rows[0], strict=True)
    )


@dataclass
class Verification:
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    # Files in the evidence folder that no ledger entry names: copies kept by uploads that
    # never committed (a crash, a lost lock). Not tampering, but worth knowing.
    unreferenced: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# Rows per upload, over every kind's table.
_STORED_SQL = (
    "SELECT upload_seq, count(*) FROM ("
    + " UNION ALL ".join(f"SELECT upload_seq FROM {kind}" for kind in KINDS)
    + ") GROUP BY upload_seq"
)
# Rows no ledger entry accounts for: no upload, or an upload the ledger does not hold.
_ORPHANS_SQL = " UNION ALL ".join(
    f"SELECT '{kind}', upload_seq, count(*) FROM {kind} "
    "WHERE upload_seq IS NULL OR upload_seq NOT IN (SELECT seq FROM uploads) GROUP BY ALL"
    for kind in (*KINDS, "quarantine")
)


def verify(store: Store) -> Verification:
    """Re-hash the chain, every evidence file and the review audit trail's chain, count and
    re-digest every kind's stored rows per upload, and find rows no upload accounts for;
    report each mismatch in one line."""
    result = Verification()
    with store.read() as con:
        fields = (*CHAINED, "entry_hash", DIGEST)
        entries = [
            dict(zip(fields, row, strict=True))
            for row in con.execute(
                f"SELECT {', '.join(fields)} FROM uploads ORDER BY seq"
            ).fetchall()
        ]
        digests = {
            e["seq"]: rows_digest(con, e["kind"], e["seq"])
            for e in entries
            if e[DIGEST] is not None
        }
        stored = dict(con.execute(_STORED_SQL).fetchall())
        quarantined = dict(
            con.execute(
                "SELECT upload_seq, count(DISTINCT source_row) FROM quarantine GROUP BY ALL"
            ).fetchall()
        )
        orphans = con.execute(_ORPHANS_SQL).fetchall()
    prev = GENESIS
    for entry in entries:
        result.entries += 1
        seq = entry["seq"]
        if entry["prev_hash"] != prev:
            result.problems.append(
                Said(
                    N_(
                        "ledger entry {seq}: previous-hash link broken (an entry was removed "
                        "or reordered)"
                    ),
                    seq=seq,
                )
            )
        if entry_hash(entry) != entry["entry_hash"]:
            result.problems.append(
                Said(
                    N_(
                        "ledger entry {seq} ({file}): contents do not match its hash (the row "
                        "was edited)"
                    ),
                    seq=seq,
                    file=entry["original_name"],
                )
            )
        prev = entry["entry_hash"]
        path = evidence_path(store, entry["sha256"])
        if not path.exists():
            result.problems.append(
                Said(
                    N_("ledger entry {seq}: evidence file {file} ({sha}…) is missing"),
                    seq=seq,
                    file=entry["original_name"],
                    sha=entry["sha256"][:12],
                )
            )
        elif sha256_file(path) != entry["sha256"]:
            result.problems.append(
                Said(
                    N_(
                        "ledger entry {seq}: evidence file {file} has changed since upload "
                        "(SHA-256 differs)"
                    ),
                    seq=seq,
                    file=entry["original_name"],
                )
            )
        if stored.get(seq, 0) != entry["rows_stored"]:
            result.problems.append(
                Said(
                    N_("ledger entry {seq}: {recorded} rows recorded as stored, {found} found "
                       "in the tables"),
                    seq=seq,
                    recorded=entry["rows_stored"],
                    found=stored.get(seq, 0),
                )
            )  # fmt: skip
        elif seq in digests and digests[seq] != entry[DIGEST]:
            result.problems.append(
                Said(
                    N_(
                        "ledger entry {seq} ({file}): its stored rows differ from those sealed "
                        "at upload (a record was edited, added or removed)"
                    ),
                    seq=seq,
                    file=entry["original_name"],
                )
            )
        if (
            entry["rows_quarantined"] is not None
            and quarantined.get(seq, 0) != (entry["rows_quarantined"])
        ):
            result.problems.append(
                Said(
                    N_("ledger entry {seq}: {recorded} rows recorded as quarantined, {found} "
                       "found in the quarantine"),
                    seq=seq,
                    recorded=entry["rows_quarantined"],
                    found=quarantined.get(seq, 0),
                )
            )  # fmt: skip
    for kind, seq, rows in orphans:
        if seq is None:
            template = N_(
                "{rows} {kind} row(s) belong to no upload: stored outside the ledger "
                "(rules and scoring would read them as evidence)"
            )
        else:
            template = N_(
                "{rows} {kind} row(s) belong to upload {seq}, which the ledger does not hold: "
                "stored outside the ledger (rules and scoring would read them as evidence)"
            )
        result.problems.append(Said(template, rows=rows, kind=kind, seq=seq))
    result.problems += verify_audit(store)  # the reviewers' audit trail is chained too
    named = {evidence_path(store, e["sha256"]) for e in entries}
    if store.evidence.is_dir():
        result.unreferenced = sorted(
            str(p.relative_to(store.evidence))
            for p in store.evidence.rglob("*")
            if p.is_file() and p not in named
        )
    return result


def anchor(store: Store) -> dict:
    """The ledger's head (last entry, its hash, how many entries) with the time it was
    taken: what to keep *outside* the machine (a signed mail to the supervising office, a
    print, a timestamping service), so that a later rewrite of the whole chain, hashes
    recomputed, is still caught by ``verify_anchor``."""
    with store.read() as con:
        row = con.execute(
            "SELECT seq, entry_hash, (SELECT count(*) FROM uploads) FROM uploads "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchall()
    seq, head, entries = row[0] if row else (0, GENESIS, 0)
    return {
        "database": str(store.path.name),
        "seq": seq,
        "entry_hash": head,
        "entries": entries,
        "taken_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def verify_anchor(store: Store, kept: dict) -> list[str]:
    """Problems between a kept anchor and the ledger now: the anchored entry must still be
    there with the same hash (entries after it are new uploads, which is fine)."""
    if int(kept["seq"]) == 0:  # anchored while the ledger was empty
        return []
    with store.read() as con:
        row = con.execute(
            "SELECT entry_hash FROM uploads WHERE seq = ?", [int(kept["seq"])]
        ).fetchall()
    if not row:
        return [
            Said(
                N_("anchored ledger entry {seq} is gone (taken {taken})"),
                seq=kept["seq"],
                taken=kept.get("taken_at"),
            )
        ]
    if row[0][0] != kept["entry_hash"]:
        return [
            Said(
                N_(
                    "ledger entry {seq} no longer has the hash anchored on {taken}: the chain "
                    "up to it was rewritten"
                ),
                seq=kept["seq"],
                taken=kept.get("taken_at"),
            )
        ]
    return []
