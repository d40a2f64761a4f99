"""Summaries of what the store holds, for `detector status` and the dashboard."""

from __future__ import annotations

from detector.store import Store

_TIME_OF = {"visits": "entered_at", "transfers": "transferred_at", "logbooks": "opened_on"}


def status_report(store: Store) -> dict:
    """Rows per kind and facility with date ranges, quarantine counts and ledger size."""
    parts = []
    for kind, fac in (
        ("visits", "facility"),
        ("transfers", "from_facility"),
        ("inmates", "facility"),
        ("logbooks", "facility"),
        ("facilities", "facility"),
    ):
        t = _TIME_OF.get(kind)
        span = f"min({t}), max({t})" if t else "NULL, NULL"
        parts.append(
            f"SELECT '{kind}' AS kind, {fac} AS facility, count(*) AS rows, {span} "
            f"FROM {kind} GROUP BY ALL"
        )
    with store.read() as con:
        by_facility = con.execute(" UNION ALL ".join(parts) + " ORDER BY 1, 2").fetchall()
        quarantine = con.execute(
            "SELECT source_name, reason_code, count(DISTINCT source_row) FROM quarantine "
            "GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
        uploads = con.execute("SELECT count(*) FROM uploads").fetchall()[0][0]
    totals: dict[str, int] = {}
    for kind, _, rows, _, _ in by_facility:
        totals[kind] = totals.get(kind, 0) + rows
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
