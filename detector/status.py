"""Summaries of what the store holds, for `detector status` and the dashboard: every record
kind of ``detector.schema.SPECS``, by its declared facility and time."""

from __future__ import annotations

import re
from datetime import datetime

from detector.schema import KINDS, SPECS
from detector.store import STORAGE_VERSION, Store, snapshot


def by_facility_sql() -> str:
    """Rows per kind and facility with the first and last time, every kind in ingest order."""
    parts = []
    for kind in KINDS:
        spec = SPECS[kind]
        at = spec.happened_at
        span = f"min({at}), max({at})" if at else "NULL::TIMESTAMP, NULL::TIMESTAMP"
        parts.append(
            f"SELECT '{kind}' AS kind, {spec.facility} AS facility, count(*) AS rows, {span} "
            f"FROM {kind} GROUP BY ALL"
        )
    return " UNION ALL ".join(parts)


def status_report(store: Store, as_of: datetime | None = None) -> dict:
    """Rows per kind and facility with date ranges, quarantine counts and ledger size; with
    ``as_of`` (a lake), what the store held then: its last snapshot at that moment."""
    with store.read(as_of=as_of) as con:
        held = snapshot(con) if as_of is not None else None
        by_facility = con.execute(
            f"SELECT * FROM ({by_facility_sql()}) ORDER BY list_position(?, kind), 2",
            [list(KINDS)],
        ).fetchall()
        quarantine = con.execute(
            "SELECT source_name, reason_code, count(DISTINCT source_row) FROM quarantine "
            "GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
        uploads = con.execute("SELECT count(*) FROM uploads").fetchall()[0][0]
        # the DuckDB storage format of a file (a lake's data are Parquet: none)
        file_format = None if store.lake else _file_format(con)
    totals: dict[str, int] = dict.fromkeys(KINDS, 0)
    for kind, _, rows, _, _ in by_facility:
        totals[kind] += rows
    return {
        "database": store.name,
        "totals": totals,
        "by_facility": [
            dict(zip(("kind", "facility", "rows", "first", "last"), r, strict=True))
            for r in by_facility
        ],
        "quarantine": [
            dict(zip(("source_name", "reason_code", "rows"), r, strict=True)) for r in quarantine
        ],
        "uploads": uploads,
        "file_format": file_format,
        **(
            {"as_of": {"asked": as_of, "snapshot": held[0], "committed_at": held[1]}}
            if held
            else {}
        ),
    }


def _file_format(con) -> str | None:
    """The storage format the open database file is written in, as DuckDB names it
    ("v1.5.0+": this release's ``STORAGE_VERSION``; "v1.0.0+": a store made before it)."""
    found = con.execute(
        "SELECT tags['storage_version'] FROM duckdb_databases() "
        "WHERE database_name = current_database()"
    ).fetchall()
    return found[0][0] if found else None


# The format new stores are written in, as DuckDB names it in a file's tags.
CURRENT_FORMAT = f"{STORAGE_VERSION}+"


def older_format(file_format: str | None) -> bool:
    """Whether a file is written in a format older than the one new stores take (slower
    to fill; the README's "The database" says how to copy it into the newer one). Versions
    are compared as versions: a file a later release wrote in a newer format is not older,
    and a tag that names no version says nothing."""
    found, current = _version(file_format), _version(CURRENT_FORMAT)
    return found is not None and current is not None and found < current


def _version(tag: str | None) -> tuple[int, ...] | None:
    """(1, 5, 0) for DuckDB's "v1.5.0+"; None for anything else."""
    match = re.fullmatch(r"v(\d+(?:\.\d+)*)\+?", (tag or "").strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None
