"""Review queue: flags sorted by risk, filtered, paged; export and dossier of a selection."""

from datetime import date

import streamlit as st

from dashboard import data, session
from dashboard.labels import readable
from detector.dossier import render
from detector.export import EXPORT_FORMATS, flags_bytes
from detector.review import STATUSES

store = session.store()
options = session.guarded(data.filter_options, store)

FILTER_KEYS = {
    "f_cat": [], "f_sev": [], "f_rule": [], "f_fac": [], "f_status": [], "f_assignee": None,
    "f_text": "", "f_resolved": False, "f_suppressed": False, "f_closed": False,
    "f_period": (), "f_page": 1,
}  # fmt: skip


def _clear_filters() -> None:
    st.session_state.update(FILTER_KEYS)


with st.sidebar:
    st.header("Filters")
    st.button("Clear filters", on_click=_clear_filters, key="f_clear")
    flt = data.QueueFilter(
        categories=st.multiselect("Category", options["categories"], key="f_cat"),
        severities=st.multiselect("Severity", options["severities"], key="f_sev"),
        rules=st.multiselect("Rule", options["rules"], key="f_rule"),
        facilities=st.multiselect("Facility", options["facilities"], key="f_fac"),
        statuses=st.multiselect("Status", list(STATUSES), key="f_status"),
        assignee=st.selectbox("Assignee", [None, *options["assignees"]], key="f_assignee"),
        text=st.text_input("Search names, ids, text", key="f_text"),
        include_resolved=st.checkbox("Include flags resolved by data", key="f_resolved"),
        include_suppressed=st.checkbox("Include suppressed flags", key="f_suppressed"),
        include_closed=st.checkbox(
            "Include closed flags (confirmed, dismissed)",
            key="f_closed",
            help="Closed flags leave the queue; they stay in exports and dossiers of a "
            "filter that includes them.",
        ),
    )
    period = st.date_input("Period", value=(), key="f_period")
    if isinstance(period, tuple) and len(period) == 2:
        flt.since, flt.until = period

st.title("Review queue")
counts = session.guarded(data.queue_counts, store, flt)
total = sum(counts.values())
cols = st.columns(max(1, len(counts)) + 1)
cols[0].metric("Flags", f"{total:,}")
for col, (category, n) in zip(cols[1:], counts.items(), strict=False):
    col.metric(category.replace("_", " ").capitalize(), f"{n:,}")

page_size = 50
pages = max(1, -(-total // page_size))
page = st.number_input("Page", min_value=1, max_value=pages, value=1, key="f_page") - 1
frame = session.guarded(data.queue, store, flt, page, page_size)
st.caption(f"Page {page + 1} of {pages}, riskiest first. Select rows to open or export them.")
event = st.dataframe(
    readable(frame),
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="multi-row",
    key="queue",
    column_config={
        "Risk": st.column_config.ProgressColumn("Risk", min_value=0, max_value=1, format="%.2f"),
        "Explanation": st.column_config.TextColumn("Explanation", width="large"),
        "Flag": st.column_config.TextColumn("Flag", width="small"),
    },
)
chosen = [frame["flag_id"][i] for i in event.selection.rows] if frame.height else []

left, mid, right = st.columns(3)
if left.button("Open selected", disabled=len(chosen) != 1, key="open"):
    st.session_state["flag_id"] = chosen[0]
    st.switch_page("views/2_Flag_detail.py")
if session.can("export"):
    flags = session.guarded(data.export_frame, store, flt)
    for fmt in ("csv", "csv-semicolon", "xlsx"):
        spec = EXPORT_FORMATS[fmt]
        mid.download_button(
            f"Export {spec.label} (current filter)",
            flags_bytes(flags, fmt),
            file_name=f"flags-{date.today()}{spec.suffix}",
            mime=spec.mime,
            key=f"export_{fmt}",
            help=spec.help or None,
        )
    lang = right.radio("Dossier language", ["en", "es"], horizontal=True, key="lang")
    right.download_button(
        "Case dossier of selected (HTML)",
        render(store, chosen, session.actor().username, lang) if chosen else "",
        file_name=f"dossier-{date.today()}.html",
        mime="text/html",
        disabled=not chosen,
        key="dossier",
    )
