"""Review queue: flags sorted by risk, filtered, paged; export and dossier of a selection.

The exports and the dossier are built when their button is clicked (a deferred download),
never on a repaint: the export of a filter over 800,000 flags held in every session's memory
on every rerun took the dashboard down."""

from datetime import date

import polars as pl
import streamlit as st

from dashboard import data, session
from dashboard.filters import FILTER_KEYS
from dashboard.labels import table
from dashboard.text import _, lang, number, words
from detector.dossier import render
from detector.export import EXPORT_FORMATS, flags_bytes, worded
from detector.flags import FlagQuery
from detector.review import STATUSES
from detector.wording import rule_title, rules_by_id

store = session.store()
options = session.guarded(data.filter_options, store)
RULES = rules_by_id()


def _rule(rule_id: str) -> str:
    return rule_title(rule_id, lang(), RULES)


def _clear_filters() -> None:
    st.session_state.update(FILTER_KEYS)


with st.sidebar:
    st.header(_("Filters"))
    st.button(_("Clear filters"), on_click=_clear_filters, key="f_clear")
    runs = st.session_state.get("f_runs") or []
    if runs:  # opened from an upload's result: its flags only, until the filters are cleared
        st.info(_("Showing the flags the last upload raised."))
    choose = _("Choose")
    flt = FlagQuery(
        categories=st.multiselect(
            _("Category"), options["categories"], format_func=words, key="f_cat",
            placeholder=choose, select_all=False,
        ),
        severities=st.multiselect(
            _("Severity"), options["severities"], format_func=words, key="f_sev",
            placeholder=choose, select_all=False,
        ),
        rules=st.multiselect(
            _("Rule"), options["rules"], format_func=_rule, key="f_rule", placeholder=choose,
            select_all=False,
        ),
        facilities=st.multiselect(
            _("Facility"), options["facilities"], key="f_fac", placeholder=choose,
            select_all=False,
        ),
        statuses=st.multiselect(
            _("Status"), list(STATUSES), format_func=words, key="f_status", placeholder=choose,
            select_all=False,
        ),
        assignee=st.selectbox(
            _("Assigned to"), [None, *options["assignees"]], key="f_assignee",
            format_func=lambda u: _("anyone") if u is None else u,
        ),
        text=st.text_input(_("Search names, ids, text"), key="f_text"),
        include_resolved=st.checkbox(_("Include flags resolved by data"), key="f_resolved"),
        include_suppressed=st.checkbox(_("Include suppressed flags"), key="f_suppressed"),
        include_closed=st.checkbox(
            _("Include closed flags (confirmed, dismissed)"),
            key="f_closed",
            help=_(
                "Closed flags leave the queue; they stay in exports and dossiers of a "
                "filter that includes them."
            ),
        ),
    )  # fmt: skip
    period = st.date_input(
        _("Period"),
        value=(),
        key="f_period",
        format="DD/MM/YYYY" if lang() == "es" else "YYYY-MM-DD",
    )
    if isinstance(period, tuple) and len(period) == 2:
        flt.since, flt.until = period
    flt.first_runs = list(runs)

st.title(_("Review queue"))
counts = session.guarded(data.queue_counts, store, flt)
total = sum(counts.values())
cols = st.columns(max(1, len(counts)) + 1)
cols[0].metric(_("Flags"), number(total))
for col, (category, n) in zip(cols[1:], counts.items(), strict=False):
    col.metric(words(category).capitalize(), number(n))

page_size = 50
pages = max(1, -(-total // page_size))
page = st.number_input(_("Queue page"), min_value=1, max_value=pages, value=1, key="f_page") - 1
frame = session.guarded(data.queue, store, flt, page, page_size)
# in the reader's language: the title and explanation, and the rule by its title
frame = worded(frame, lang())
if frame.height:
    frame = frame.with_columns(
        pl.Series("rule_id", [_rule(r) for r in frame["rule_id"]], pl.String),
        pl.col("risk").round(2),
    )
frame = frame.drop("fields", "title", "wording", strict=False)
st.caption(
    _("Page {page} of {pages}, riskiest first. Select rows to open or export them.").format(
        page=page + 1, pages=pages
    )
)
event = table(
    frame,
    on_select="rerun",
    selection_mode="multi-row",
    key="queue",
    column_config={
        _("Risk"): st.column_config.ProgressColumn(
            _("Risk"), min_value=0, max_value=1, format="localized"
        ),
        _("Explanation"): st.column_config.TextColumn(_("Explanation"), width="large"),
        _("Flag"): st.column_config.TextColumn(_("Flag"), width="small"),
    },
)
chosen = [frame["flag_id"][i] for i in event.selection.rows] if frame.height else []

left, mid, right = st.columns(3)
if left.button(_("Open selected"), disabled=len(chosen) != 1, key="open"):
    st.session_state["flag_id"] = chosen[0]
    st.switch_page("views/2_Flag_detail.py")
if session.can("export"):
    # Deferred: each file is built on its button's click, on Streamlit's download thread
    # (no session there: the store, filter, language and user are taken now).
    reader, user, query = lang(), session.actor().username, flt

    def export(fmt: str):
        return lambda: flags_bytes(data.export_frame(store, query), fmt, reader)

    for fmt in ("csv", "csv-semicolon", "xlsx"):
        spec = EXPORT_FORMATS[fmt]
        mid.download_button(
            _("Export {format} (current filter)").format(format=_(spec.label)),
            export(fmt),
            file_name=f"{_('flags')}-{date.today()}{spec.suffix}",
            mime=spec.mime,
            key=f"export_{fmt}",
            help=_(spec.help) if spec.help else None,
            on_click="ignore",
        )
    selected = list(chosen)
    right.download_button(
        _("Case dossier of selected (HTML)"),
        lambda: render(store, selected, user, reader),
        file_name=f"{_('dossier')}-{date.today()}.html",
        mime="text/html",
        disabled=not chosen,
        key="dossier",
        on_click="ignore",
    )
