"""Rule scopes: what new data a rule's hits can depend on, declared once.

An incremental rule run reads, for a rule of a scope, only the part of each table that the
new uploads touch, and resolves only the flags of that part that stopped firing. Each
scope says how to list the keys the new uploads touch, how each table is narrowed to
them, and which stored flags they cover. A table a scope does not name reads nothing for
it (``FALSE``): a new record kind needs an entry only where a scope can narrow it.

``global`` is not here: such rules always read everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScopeKind:
    name: str
    # SQL listing the keys the uploads $1 (a BIGINT[] of upload seqs) touch, one per row.
    touched: str
    # Table -> condition narrowing it to the touched keys (held in temp table ``scope_<name>``).
    tables: dict[str, str] = field(default_factory=dict)
    # Condition on a stored flag (table ``flags``) meaning the touched keys cover it, so it
    # resolves when the narrowed run no longer returns it; None: its flags never resolve
    # (their records are fixed).
    covers: str | None = None
    sql_type: str = "VARCHAR"

    def table_filter(self, table: str) -> str:
        return self.tables.get(table, "FALSE")


_IN = "(SELECT unnest($1::BIGINT[]))"

SCOPES: dict[str, ScopeKind] = {
    "record": ScopeKind(
        "record",
        touched="SELECT unnest($1::BIGINT[])",
        tables={
            t: "upload_seq IN (SELECT value FROM scope_record)"
            for t in ("visits", "transfers", "logbooks", "events")
        },
        sql_type="BIGINT",
    ),
    "facility": ScopeKind(
        "facility",
        touched=f"""
            SELECT facility FROM visits WHERE upload_seq IN {_IN}
            UNION SELECT from_facility FROM transfers WHERE upload_seq IN {_IN}
            UNION SELECT facility FROM logbooks WHERE upload_seq IN {_IN}
            UNION SELECT facility FROM events WHERE upload_seq IN {_IN}""",
        tables={
            "visits": "facility IN (SELECT value FROM scope_facility)",
            "transfers": "from_facility IN (SELECT value FROM scope_facility)",
            "logbooks": "facility IN (SELECT value FROM scope_facility)",
            "events": "facility IN (SELECT value FROM scope_facility)",
        },
        covers="flags.facility IN (SELECT value FROM scope_facility)",
    ),
    # "facility|checkpoint|logbook"; cheap column tests first, the exact one after them.
    "logbook": ScopeKind(
        "logbook",
        touched=f"""
            SELECT DISTINCT facility || '|' || coalesce(checkpoint, '') || '|' || logbook FROM (
                SELECT facility, checkpoint, logbook FROM visits
                 WHERE upload_seq IN {_IN} AND logbook IS NOT NULL
                UNION SELECT facility, checkpoint, logbook FROM logbooks
                 WHERE upload_seq IN {_IN})""",
        tables={
            "visits": "facility IN (SELECT split_part(value, '|', 1) FROM scope_logbook) "
            "AND logbook IN (SELECT split_part(value, '|', 3) FROM scope_logbook) "
            "AND facility || '|' || coalesce(checkpoint, '') || '|' || logbook "
            "IN (SELECT value FROM scope_logbook)",
            "logbooks": "facility || '|' || coalesce(checkpoint, '') || '|' || logbook "
            "IN (SELECT value FROM scope_logbook)",
        },
        covers="flags.facility || '|' || flags.logbook IN "
        "(SELECT split_part(value, '|', 1) || '|' || split_part(value, '|', 3) FROM scope_logbook)",
    ),
    "plate": ScopeKind(
        "plate",
        touched=f"""
            SELECT DISTINCT plate_key FROM visits
            WHERE upload_seq IN {_IN} AND coalesce(plate_key, '') <> ''""",
        tables={"visits": "plate_key IN (SELECT value FROM scope_plate)"},
        covers="json_extract_string(flags.fields, '$.plate_key') "
        "IN (SELECT value FROM scope_plate)",
    ),
    "official": ScopeKind(
        "official",
        touched=f"""
            SELECT DISTINCT k FROM (
                SELECT CASE WHEN role = 'official' THEN name_key END AS k FROM visits
                 WHERE upload_seq IN {_IN}
                UNION ALL SELECT escorted_key FROM visits WHERE upload_seq IN {_IN})
            WHERE coalesce(k, '') <> ''""",
        tables={
            "visits": "(role = 'official' AND name_key IN (SELECT value FROM scope_official)) "
            "OR escorted_key IN (SELECT value FROM scope_official)"
        },
        covers="json_extract_string(flags.fields, '$.official_key') "
        "IN (SELECT value FROM scope_official)",
    ),
}
# What a rule file may name as its scope.
SCOPE_NAMES = (*SCOPES, "global")
