"""Admin: users and roles (admins only)."""

import streamlit as st

from dashboard import session
from detector import auth
from detector.review import ROLES, require

st.title("Admin")
try:  # the page is hidden from others; refuse them anyway
    require(session.actor(), "admin")
except PermissionError as exc:
    st.error(str(exc))
    st.stop()

path = auth.users_file(session.db_path())
users = auth.load(path)["credentials"]["usernames"]
st.subheader("Users")
st.dataframe(
    [{"username": u, "role": (v.get("roles") or ["?"])[0]} for u, v in users.items()],
    hide_index=True,
    key="users",
)
with st.form("add_user"):
    username = st.text_input("Username", key="new_user")
    role = st.selectbox("Role", ROLES, index=1, key="new_role")
    if st.form_submit_button("Create or reset user") and username.strip():
        password = auth.add_user(path, username.strip(), role)
        st.success(f"{username} ({role}) — password, shown once: `{password}`")
