"""What a person reads in the dashboard's tables: column headings and coded values in
words, blanks as blanks, JSON as text.

One registry for the headings (``COLUMNS``) and one for the coded values (``VALUES``):
a page shows a table through :func:`readable`, never with the database's own names
(``record_key``, ``period_start``, ``needs_external_verification``). A heading or value
missing here still reads as words (underscores become spaces), and the page walk test
fails on any that does not.
"""

from __future__ import annotations

import json

import polars as pl

COLUMNS: dict[str, str] = {
    "flag_id": "Flag",
    "risk": "Risk",
    "status": "Status",
    "review_status": "Status",
    "assignee": "Assigned to",
    "severity": "Severity",
    "category": "Category",
    "rule_id": "Rule",
    "facility": "Facility",
    "period_start": "From",
    "period_end": "To",
    "explanation": "Explanation",
    "source": "Found by",
    "state": "State",
    "kind": "Kind",
    "record_id": "Record",
    "record_key": "Record key",
    "file": "File",
    "row": "Row",
    "logbook": "Book",
    "page": "Page",
    "line": "Line",
    "sha256": "SHA-256",
    "source_name": "File",
    "source_row": "Row",
    "source_sha256": "File SHA-256",
    "source_sheet": "Sheet",
    "checkpoint": "Checkpoint",
    "entered_at": "Entered",
    "exited_at": "Left",
    "name": "Name",
    "name_key": "Name (folded)",
    "name_status": "Name written",
    "id_type": "Document type",
    "id_number": "Document",
    "role": "Role",
    "organization": "Organisation",
    "escorted_by": "Escorted by",
    "escorted_key": "Escort (folded)",
    "inmate_id": "Inmate",
    "purpose": "Purpose",
    "vehicle_plate": "Plate",
    "plate_key": "Plate (folded)",
    "party_size": "Party size",
    "party_id": "Party",
    "authorized_by": "Authorised by",
    "entered_precision": "Time known to",
    "seq": "Entry",
    "original_name": "File",
    "uploaded_by": "Uploaded by",
    "uploaded_at": "Uploaded at",
    "format": "Format",
    "encoding": "Encoding",
    "delimiter": "Delimiter",
    "mapping": "Mapping",
    "rows_read": "Rows read",
    "rows_stored": "Rows stored",
    "rows_quarantined": "Rows quarantined",
    "rows_duplicate": "Rows already stored",
    "size": "Bytes",
    "entry_hash": "Entry hash",
    "prev_hash": "Previous entry hash",
    "rows_digest": "Rows digest",
    "run_id": "Run",
    "triggered_by": "Started by",
    "started_at": "Started",
    "ended_at": "Ended",
    "counts": "Counts",
    "errors": "Errors",
    "scope": "Scope",
    "field": "Field",
    "reason_code": "Problem",
    "reason": "Reason",
    "raw": "Row as read",
    "acted_at": "When",
    "actor": "Who",
    "action": "Action",
    "old": "Before",
    "new": "After",
    "note": "Note",
    "username": "User",
    "job": "Job",
    "when": "When",
    "next run": "Next run",
    "visits": "Visits",
    "total_risk": "Total risk",
    "max_risk": "Highest risk",
    "high_risk_visits": "Visits of risk 0.5 or more",
    "visits_with_rule_hits": "Visits with rule flags",
    "rarest_visits": "Among the rarest 0.1%",
    "mean_outlier_pct": "Mean outlier percentile",
    "roles": "Roles",
    "facilities": "Facilities",
    "person": "Person",
    "official": "Official",
    "inmate": "Inmate",
    "gang": "Gang",
    "rank": "Rank",
    "transferred_at": "Transferred",
    "from_facility": "From facility",
    "to_facility": "To facility",
    "approved_by": "Approved by",
    "medical_approval": "Medical approval",
    "returned_at": "Returned",
    "opened_on": "Opened",
    "closed_on": "Closed",
    "first_page": "First page",
    "last_page": "Last page",
    "custody_status": "Custody",
}

# Coded values shown as words, per column (statuses, categories, sources, states).
VALUES: dict[str, dict[str, str]] = {
    "status": {
        "new": "new",
        "in_review": "in review",
        "confirmed": "confirmed",
        "dismissed": "dismissed",
        "needs_external_verification": "needs external verification",
    },
    "source": {"rule": "rule", "model": "outlier model"},
    "state": {"active": "active", "resolved_by_data": "resolved by later data"},
}
VALUES["review_status"] = VALUES["status"]


def heading(column: str) -> str:
    return COLUMNS.get(column) or column.replace("_", " ").capitalize()


def _words(value: str | None) -> str | None:
    return None if value is None else value.replace("_", " ")


def _json_text(value: str | None) -> str | None:
    """A JSON cell as "name: value; ..." (objects) or items joined (lists)."""
    if value is None or not value.strip().startswith(("{", "[")):
        return value
    try:
        data = json.loads(value)
    except ValueError:
        return value
    if isinstance(data, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in data.items())
    if isinstance(data, list):
        return "; ".join(_json_text(json.dumps(i)) if isinstance(i, dict) else str(i) for i in data)
    return str(data)


def readable_value(value: object) -> str:
    """One value for a person: lists and objects as text, nothing as blank."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return _json_text(json.dumps(value, ensure_ascii=False, default=str)) or ""
    return str(value)


def readable(frame: pl.DataFrame | list[dict]) -> pl.DataFrame:
    """The frame as a person reads it: headings in words, coded values in words
    (categories, statuses), JSON cells as text, empty cells empty (never "None")."""
    if not isinstance(frame, pl.DataFrame):
        frame = pl.DataFrame(frame)
    out = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if name in VALUES:
            col = col.replace(VALUES[name])
        elif name in ("category", "reason", "reason_code", "kind", "name_status", "role"):
            col = col.map_elements(_words, return_dtype=pl.String, skip_nulls=True)
        elif dtype == pl.String:
            col = col.map_elements(_json_text, return_dtype=pl.String, skip_nulls=True)
        elif dtype == pl.List(pl.String):
            col = col.list.join("; ")
        if dtype == pl.String or dtype == pl.List(pl.String) or name in VALUES:
            col = col.fill_null("")
        out.append(col.alias(heading(name)))
    return frame.select(out)
