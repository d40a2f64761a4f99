"""The review dashboard: login, then the pages. Run: streamlit run dashboard/app.py -- --db D."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import session  # noqa: E402
from dashboard.text import _  # noqa: E402

st.set_page_config(page_title="Auditoría de accesos", page_icon="🔎", layout="wide")
# Tables are exported only through the formula-safe buttons of the roles allowed to
# export: the dataframe toolbar's own "Download as CSV" (raw cells, for every role) is off.
st.set_option("client.disableDataExport", True)
session.streamlit_words()
user = session.login()
session.save_pending()  # review actions submitted on the last run, written before any read

HERE = Path(__file__).parent / "views"
pages = [
    st.Page(HERE / "1_Review_queue.py", title=_("Review queue"), default=True),
    st.Page(HERE / "2_Flag_detail.py", title=_("Flag detail")),
]
if session.can("upload"):  # a viewer is not shown a page it cannot use
    pages.append(st.Page(HERE / "3_Upload.py", title=_("Upload")))
pages += [
    st.Page(HERE / "4_Overview.py", title=_("Overview")),
    st.Page(HERE / "5_Evidence_and_runs.py", title=_("Evidence and runs")),
    st.Page(HERE / "7_Person.py", title=_("Person")),
]
if session.can("admin"):
    pages.append(st.Page(HERE / "6_Admin.py", title=_("Admin")))
nav = st.navigation(pages)
with st.sidebar:
    session.language_switch()
    st.caption(
        _("Signed in as **{user}** ({role})").format(
            user=session.md(user.username), role=session.md(session.words(user.role))
        )
    )
    st.caption(_("Database: {path}").format(path=session.md(session.store().name)))
    st.button(_("Log out"), key="sidebar_logout", on_click=session.log_out)
nav.run()
