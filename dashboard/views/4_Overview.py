"""Overview: flags over time, entries by hour and weekday, logbook coverage, transfers, risk."""

import altair as alt
import streamlit as st

from dashboard import data, session
from dashboard.labels import readable
from detector.risk import ROLLUPS, rollup

store = session.store()
st.title("Overview")
totals = session.guarded(data.totals, store)
for col, (label, n) in zip(st.columns(len(totals)), totals.items(), strict=True):
    col.metric(label, f"{n:,}")

st.subheader("Flags over time")
flags = session.guarded(data.flags_over_time, store)
if flags.height:
    st.altair_chart(
        alt.Chart(flags.to_pandas())
        .mark_bar()
        .encode(
            x=alt.X("week:T", title="week", axis=alt.Axis(format="%d %b %Y")),
            y="sum(flags):Q",
            color="category:N",
            column=alt.Column("facility:N", title=None),
            tooltip=[alt.Tooltip("week:T", format="%Y-%m-%d"), "facility", "category", "flags"],
        )
        .properties(width=160),
        key="flags_time",
    )

st.subheader("Entries by hour and weekday")
heat = session.guarded(data.entries_heatmap, store)
if heat.height:
    facility = st.selectbox("Facility", sorted(heat["facility"].unique().to_list()), key="heat_f")
    st.altair_chart(
        alt.Chart(heat.filter(heat["facility"] == facility).to_pandas())
        .mark_rect()
        .encode(
            x=alt.X("hour:O", title="hour of entry (0–23)"),
            y=alt.Y("weekday:N", title=None, sort=data.WEEKDAY_NAMES),
            color=alt.Color("entries:Q", scale=alt.Scale(type="sqrt")),
            tooltip=["weekday", "hour", "entries"],
        ),
        width="stretch",
        key="heatmap",
    )

st.subheader("Logbook coverage")
st.caption(
    "Bars: the period each book's written lines cover; red: registered missing/removed "
    "books and the gaps the rules found (missing pages, missing books, silent periods)."
)
cover = session.guarded(data.logbook_coverage, store)
if cover.height:
    cover = cover.with_columns((cover["facility"] + " · " + cover["checkpoint"]).alias("lane"))
    st.altair_chart(
        alt.Chart(cover.to_pandas())
        .mark_bar(height=10)
        .encode(
            x=alt.X("start:T", title=None, axis=alt.Axis(format="%d %b %Y")),
            x2="end:T",
            y=alt.Y("lane:N", title=None),
            color=alt.condition(
                alt.datum.kind == "written", alt.value("#4c78a8"), alt.value("#d62728")
            ),
            tooltip=[
                "facility",
                "checkpoint",
                "logbook",
                "kind",
                alt.Tooltip("start:T", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("end:T", format="%Y-%m-%d %H:%M"),
            ],
        ),
        width="stretch",
        key="coverage",
    )

st.subheader("Transfers between facilities")
moves = session.guarded(data.transfers_between, store)
if moves.height:
    st.altair_chart(
        alt.Chart(moves.to_pandas())
        .mark_circle()
        .encode(
            x="to_facility:N",
            y="from_facility:N",
            size="transfers:Q",
            color="reason:N",
            tooltip=["from_facility", "to_facility", "reason", "transfers", "not_returned"],
        ),
        width="stretch",
        key="transfers",
    )

st.subheader("Risk per person, official, inmate and facility")
st.caption(
    "A person or an official is credited with their own visits and those of the people "
    "they escorted in; placeholders and blank names are no one."
)
RISK_TABS = {"person": "Persons", "official": "Officials", "inmate": "Inmates",
             "facility": "Facilities"}  # fmt: skip
assert set(RISK_TABS) == set(ROLLUPS)  # a roll-up added to detector.risk gets its tab here
for by, tab in zip(RISK_TABS, st.tabs(list(RISK_TABS.values())), strict=True):
    frame = session.guarded(rollup, store, by)
    if frame.height:
        tab.dataframe(readable(frame.head(100)), hide_index=True, width="stretch", key=f"risk_{by}")
    else:
        tab.caption("No scores yet.")
