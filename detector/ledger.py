"""The evidence ledger: original files kept by content hash, uploads chained by hash, the
review audit trail chained alike, and the check of all of it (:func:`verify`)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from detector import seal as row_seal
from detector.i18n import N_, Said
from detector.schema import KINDS
from detector.store import Store, sealed_row_sql

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
    """Digest v1 (the entries sealed before v2, ``detector.seal``): SHA-256 over the rows
    one upload stored, in source-row order: each row's fields as read and its provenance
    (``store.sealed_row_sql``), as text. Sealed into the ledger entry, so an edited, added
    or deleted record is caught by ``verify`` even inside the database."""
    row = sealed_row_sql(kind)
    return con.execute(
        f"SELECT sha256(coalesce(string_agg(sha256({row}), '' ORDER BY source_row, "
        f"record_key), '')) FROM {kind} WHERE upload_seq = ?",
        [seq],
    ).fetchall()[0][0]


def digest_now(con: duckdb.DuckDBPyConnection, kind: str, seq: int, sealed: str) -> str:
    """The digest of upload ``seq``'s stored rows now, in the version ``sealed`` (the
    entry's ``rows_digest``) was made in, to compare with it: ``"v2:…"`` is
    ``seal.table_seal``, a bare hexadecimal digest :func:`rows_digest` (v1)."""
    if sealed.startswith(f"{row_seal.VERSION}:"):
        return row_seal.table_seal(con, kind, seq)
    return rows_digest(con, kind, seq)


@contextmanager
def appending(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    """The write transaction an upload's entry is appended in, after the turn of every
    other appender: the chain stays one line (each entry names the one before, read in
    :func:`append`) and a file uploaded from two places at once is stored once (its check
    is made again inside). On a file that is the writers' lock file; on a shared (DuckLake)
    store, the ledger's PostgreSQL advisory lock, taken before the transaction begins, so
    that it reads the entry the previous appender committed, and freed after it commits."""
    with store.write(("ledger",)) as con:
        yield con


def append(con: duckdb.DuckDBPyConnection, entry: dict, pending: bool = False) -> dict:
    """Add one upload to the ledger inside the caller's transaction (:func:`appending`);
    returns it with seq and hash.

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


_FOUND = ("seq", "original_name", "uploaded_by", "uploaded_at", "kind", "mapping")


def find(
    con: duckdb.DuckDBPyConnection,
    sha: str,
    reading: str | None = None,
    label: str | None = None,
) -> dict | None:
    """The first ledger entry of a file (by SHA-256); with ``reading``, the first entry that
    read it the same way: under the same mapping and kind (``reading``, as ``ingest``
    fingerprints them), or, for an entry recorded before readings were, under a mapping of
    the same name (``label``). A file may be read again under another mapping (its rows as
    another kind, or read right after a wrong first try): that is a new entry citing the
    first (``reading_of`` in its mapping), never a repeat."""
    rows = con.execute(
        f"SELECT {', '.join(_FOUND)} FROM uploads WHERE sha256 = ? ORDER BY seq", [sha]
    ).fetchall()
    for row in rows:
        entry = dict(zip(_FOUND, row, strict=True))
        if reading is None or _same_reading(entry["mapping"], reading, label):
            return entry
    return None


def _same_reading(mapping: str | None, reading: str, label: str | None) -> bool:
    """Whether an entry's recorded mapping is ``reading``; an older entry, which recorded
    none, is the same reading when it names the same mapping (``label``)."""
    try:
        recorded = json.loads(mapping or "{}")
    except ValueError:
        return False
    if not isinstance(recorded, dict):
        return False
    if "reading" in recorded:
        return recorded["reading"] == reading
    return recorded.get("file") == label


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


# Files flags cite as evidence that no ledger entry holds.
_CITED_SQL = """
    SELECT sha, any_value(name), count(DISTINCT flag_id) FROM (
        SELECT f.flag_id, json_extract_string(e.value, '$.sha256') AS sha,
               json_extract_string(e.value, '$.file') AS name
        FROM flags f, json_each(f.evidence) e)
    WHERE sha IS NOT NULL AND sha NOT IN (SELECT sha256 FROM uploads)
    GROUP BY sha ORDER BY sha"""


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
            e["seq"]: digest_now(con, e["kind"], e["seq"], e[DIGEST])
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
        # Traces an upload leaves beyond its entry: the runs that saw it, the flags citing
        # its file. They catch the last entries removed with their rows, anchor or not.
        seen = con.execute(
            "SELECT run_id, kind, watermark FROM runs WHERE watermark IS NOT NULL "
            "ORDER BY watermark DESC, run_id LIMIT 1"
        ).fetchall()
        cited = con.execute(_CITED_SQL).fetchall()
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
    last = entries[-1]["seq"] if entries else 0
    if seen and seen[0][2] > last:
        run_id, kind, watermark = seen[0]
        result.problems.append(
            Said(
                N_("ledger entries {first} to {last} are gone: {kind} run {run} had seen "
                   "uploads up to entry {last} (entries were removed from the end)"),
                first=last + 1,
                last=watermark,
                kind=kind,
                run=run_id,
            )
        )  # fmt: skip
    for sha, name, flags in cited:
        result.problems.append(
            Said(
                N_("{flags} flag(s) cite {file} ({sha}…), which no ledger entry holds (its "
                   "entry was removed)"),
                flags=flags,
                file=name,
                sha=sha[:12],
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
        "database": store.path.name if store.path else store.name,
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
