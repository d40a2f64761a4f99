"""Evidence and runs: the ledger, its verification, run history and the quarantine."""

import streamlit as st

from dashboard import data, session
from dashboard.labels import table
from dashboard.text import _, lang, ngettext
from detector import ledger
from detector.i18n import said

store = session.store()
st.title(_("Evidence and runs"))

st.subheader(_("Evidence ledger"))
table(session.guarded(data.ledger, store), key="ledger")
if st.button(_("Verify the ledger and every evidence file"), key="verify"):
    result = session.guarded(ledger.verify, store)
    if result.ok:
        st.success(
            ngettext(
                "Ledger intact: {n} entry; every evidence file matches its SHA-256.",
                "Ledger intact: {n} entries; every evidence file matches its SHA-256.",
                result.entries,
            ).format(n=result.entries)
        )
    else:
        for problem in result.problems:
            st.error(session.md(said(problem, lang())))

st.subheader(_("Runs"))
table(session.guarded(data.runs, store, lang=lang()), key="runs")

st.subheader(_("Quarantine"))
q = session.guarded(data.quarantine, store, lang=lang())
files = sorted(q["source_name"].unique().to_list()) if q.height else []
chosen = st.selectbox(
    _("File"),
    [None, *files],
    key="q_file",
    format_func=lambda f: _("every file") if f is None else f,
)
if chosen:
    q = q.filter(q["source_name"] == chosen)
table(q, key="quarantine")
