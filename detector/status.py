"""Summaries of what the store holds, for `detector status` and the dashboard: every record
kind of ``detector.schema.SPECS``, by its declared facility and time."""

from __future__ import annotations

from datetime import datetime

from detector.schema import KINDS, SPECS
from detector.store import Store, snapshot


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
        **(
            {"as_of": {"asked": as_of, "snapshot": held[0], "committed_at": held[1]}}
            if held
            else {}
        ),
    }
