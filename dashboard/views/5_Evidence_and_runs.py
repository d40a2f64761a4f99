"""Evidence and runs: the ledger, its verification, run history and the quarantine."""

import streamlit as st

from dashboard import data, session
from dashboard.labels import readable
from detector import ledger

store = session.store()
st.title("Evidence and runs")

st.subheader("Evidence ledger")
st.dataframe(
    readable(session.guarded(data.ledger, store)), hide_index=True, width="stretch", key="ledger"
)
if st.button("Verify the ledger and every evidence file", key="verify"):
    result = session.guarded(ledger.verify, store)
    if result.ok:
        st.success(
            f"Ledger intact: {result.entries} entries; every evidence file matches its SHA-256."
        )
    else:
        for problem in result.problems:
            st.error(session.md(problem))

st.subheader("Runs")
st.dataframe(
    readable(session.guarded(data.runs, store)), hide_index=True, width="stretch", key="runs"
)

st.subheader("Quarantine")
q = session.guarded(data.quarantine, store)
files = sorted(q["source_name"].unique().to_list()) if q.height else []
chosen = st.selectbox("File", [None, *files], key="q_file")
if chosen:
    q = q.filter(q["source_name"] == chosen)
st.dataframe(readable(q), hide_index=True, width="stretch", key="quarantine")
