"""Summaries of what the store holds, for `detector status` and the dashboard: every record
kind of ``detector.schema.SPECS``, by its declared facility and time."""

from __future__ import annotations

from detector.schema import KINDS, SPECS
from detector.store import Store


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


def status_report(store: Store) -> dict:
    """Rows per kind and facility with date ranges, quarantine counts and ledger size."""
    with store.read() as con:
        by_facility = con.execute(
            f"SELECT * FROM ({by_facility_sql()}) ORDER BY list_position(?, kind), 2",
            [list(KINDS)],
        ).fetchall()
        quarantine = con.execute(
            "SELECT source_name, reason_code, count(DISTINCT source_row) FROM quarantine "
            "GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
        uploads = con.execute("SELECT count(*) FROM uploads").fetchall()[0][0]
    totals: dict[str, int] = dict.fromkeys(KINDS, 0)
    for kind, _, rows, _, _ in by_facility:
        totals[kind] += rows
    return {
        "database": str(store.path),
        "totals": totals,
        "by_facility": [
            dict(zip(("kind", "facility", "rows", "first", "last"), r, strict=True))
            for r in by_facility
        ],
        "quarantine": [
            dict(zip(("source_name", "reason_code", "rows"), r, strict=True)) for r in quarantine
        ],
        "uploads": uploads,
    }
