"""The review queue's filters, kept in the session under these keys (with their empty values):
the queue page shows them, and other pages open the queue with some of them set (the upload
page, at the flags an upload raised)."""

FILTER_KEYS = {
    "f_cat": [], "f_sev": [], "f_rule": [], "f_fac": [], "f_status": [], "f_assignee": None,
    "f_text": "", "f_resolved": False, "f_suppressed": False, "f_closed": False,
    "f_period": (), "f_page": 1, "f_runs": [],
}  # fmt: skip
