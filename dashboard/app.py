"""The review dashboard: login, then the pages. Run: streamlit run dashboard/app.py -- --db D."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import session  # noqa: E402

st.set_page_config(page_title="Prison access audit", page_icon="🔎", layout="wide")
# Tables are exported only through the formula-safe buttons of the roles allowed to
# export: the dataframe toolbar's own "Download as CSV" (raw cells, for every role) is off.
st.set_option("client.disableDataExport", True)
user = session.login()
session.save_pending()  # review actions submitted on the last run, written before any read

HERE = Path(__file__).parent / "views"
pages = [
    st.Page(HERE / "1_Review_queue.py", title="Review queue", default=True),
    st.Page(HERE / "2_Flag_detail.py", title="Flag detail"),
    st.Page(HERE / "3_Upload.py", title="Upload"),
    st.Page(HERE / "4_Overview.py", title="Overview"),
    st.Page(HERE / "5_Evidence_and_runs.py", title="Evidence and runs"),
]
if session.can("admin"):
    pages.append(st.Page(HERE / "6_Admin.py", title="Admin"))
nav = st.navigation(pages)
with st.sidebar:
    st.caption(f"Signed in as **{session.md(user.username)}** ({user.role})")
    st.caption(f"Database: {session.md(session.db_path())}")
    # Not key="logout": the authenticator writes that session key itself.
    st.session_state["authenticator"].logout("Log out", location="sidebar", key="sidebar_logout")
nav.run()
