"""Overview: flags over time, entries by hour and weekday, logbook coverage, transfers, risk."""

import altair as alt
import streamlit as st

from dashboard import data, session
from dashboard.labels import table
from dashboard.text import _, lang, number, worded
from detector import i18n
from detector.rollup import ROLLUPS

store = session.store()
st.title(_("Overview"))
totals = session.guarded(data.totals, store)
for col, (key, n) in zip(st.columns(len(totals)), totals.items(), strict=True):
    col.metric(_(data.TOTALS[key]), number(n))

# dates on the axes as the reader writes them
DAY = "%d/%m/%Y" if lang() == "es" else "%Y-%m-%d"

st.subheader(_("Flags over time"))
flags = session.guarded(data.flags_over_time, store)
if flags.height:
    # one chart as wide as the page, a facility at a time (a column per facility grew
    # wider than the page and cut the last ones off)
    where = st.selectbox(
        _("Facility"), [None, *sorted(flags["facility"].unique().to_list())], key="time_f",
        format_func=lambda f: _("every facility") if f is None else f,
    )  # fmt: skip
    if where is not None:
        flags = flags.filter(flags["facility"] == where)
    flags = flags.with_columns(category=worded(flags["category"]))
    st.altair_chart(
        alt.Chart(flags.to_pandas())
        .mark_bar()
        .encode(
            x=alt.X(
                "week:T",
                title=_("week"),
                axis=alt.Axis(format=DAY, labelOverlap=True, labelAngle=0),
            ),
            y=alt.Y("sum(flags):Q", title=_("Flags")),
            color=alt.Color(
                "category:N", title=_("Category"), legend=alt.Legend(orient="bottom", columns=3)
            ),
            tooltip=[
                alt.Tooltip("week:T", format=DAY, title=_("week")),
                alt.Tooltip("facility:N", title=_("Facility")),
                alt.Tooltip("category:N", title=_("Category")),
                alt.Tooltip("flags:Q", title=_("Flags")),
            ],
        ),  # fmt: skip
        width="stretch",
        key="flags_time",
    )

st.subheader(_("Entries by hour and weekday"))
days = i18n.weekdays(lang())
heat = session.guarded(data.entries_heatmap, store, None, days)
if heat.height:
    facility = st.selectbox(
        _("Facility"), sorted(heat["facility"].unique().to_list()), key="heat_f"
    )
    st.altair_chart(
        alt.Chart(heat.filter(heat["facility"] == facility).to_pandas())
        .mark_rect()
        .encode(
            x=alt.X("hour:O", title=_("hour of entry (0–23)")),
            y=alt.Y("weekday:N", title=None, sort=days),
            color=alt.Color("entries:Q", scale=alt.Scale(type="sqrt"), title=_("Entries")),
            tooltip=[
                alt.Tooltip("weekday:N", title=_("Weekday")),
                alt.Tooltip("hour:O", title=_("Hour")),
                alt.Tooltip("entries:Q", title=_("Entries")),
            ],
        ),
        width="stretch",
        key="heatmap",
    )

st.subheader(_("Logbook coverage"))
st.caption(
    _(
        "Bars: the period each book's written lines cover; red: registered missing/removed "
        "books and the gaps the rules found (missing pages, missing books, silent periods)."
    )
)
cover = session.guarded(data.logbook_coverage, store)
if cover.height:
    cover = cover.with_columns(
        (cover["facility"] + " · " + cover["checkpoint"]).alias("lane"),
        cover["kind"]
        .replace({k: data.coverage_kind(_)(k) for k in cover["kind"].unique()})
        .alias("shown"),
    )
    st.altair_chart(
        alt.Chart(cover.to_pandas())
        .mark_bar(height=10)
        .encode(
            x=alt.X("start:T", title=None, axis=alt.Axis(format=DAY, labelOverlap=True)),
            x2="end:T",
            y=alt.Y("lane:N", title=None),
            color=alt.condition(
                alt.datum.kind == "written", alt.value("#4c78a8"), alt.value("#d62728")
            ),
            tooltip=[
                alt.Tooltip("facility:N", title=_("Facility")),
                alt.Tooltip("checkpoint:N", title=_("Checkpoint")),
                alt.Tooltip("logbook:N", title=_("Book")),
                alt.Tooltip("shown:N", title=_("Kind")),
                alt.Tooltip("start:T", format=DAY + " %H:%M", title=_("From")),
                alt.Tooltip("end:T", format=DAY + " %H:%M", title=_("To")),
            ],
        ),
        width="stretch",
        key="coverage",
    )

st.subheader(_("Transfers between facilities"))
moves = session.guarded(data.transfers_between, store)
if moves.height:
    moves = moves.with_columns(reason=worded(moves["reason"]))
    st.altair_chart(
        alt.Chart(moves.to_pandas())
        .mark_circle()
        .encode(
            x=alt.X("to_facility:N", title=_("To facility")),
            y=alt.Y("from_facility:N", title=_("From facility")),
            size=alt.Size("transfers:Q", title=_("Transfers")),
            color=alt.Color("reason:N", title=_("Reason")),
            tooltip=[
                alt.Tooltip("from_facility:N", title=_("From facility")),
                alt.Tooltip("to_facility:N", title=_("To facility")),
                alt.Tooltip("reason:N", title=_("Reason")),
                alt.Tooltip("transfers:Q", title=_("Transfers")),
                alt.Tooltip("not_returned:Q", title=_("Not returned")),
            ],
        ),
        width="stretch",
        key="transfers",
    )

st.subheader(_("Risk per person, official, inmate and facility"))
st.caption(
    _(
        "A person or an official is credited with their own visits and those of the people "
        "they escorted in; placeholders and blank names are no one."
    )
)
RISK_TABS = {"person": i18n.N_("Persons"), "official": i18n.N_("Officials"),
             "inmate": i18n.N_("Inmates"), "facility": i18n.N_("Facilities")}  # fmt: skip
assert set(RISK_TABS) == set(ROLLUPS)  # a roll-up added to detector.risk gets its tab here
for by, tab in zip(RISK_TABS, st.tabs([_(t) for t in RISK_TABS.values()]), strict=True):
    frame = session.guarded(data.risk_table, store, by)
    if frame.height:
        table(frame.head(100), key=f"risk_{by}", where=tab)
    else:
        tab.caption(_("No scores yet."))
