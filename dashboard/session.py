"""Login, idle expiry and the current user for every page (streamlit-authenticator, bcrypt)."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import streamlit as st
import streamlit_authenticator as stauth

from detector import auth
from detector.errors import StoreBusy
from detector.review import Actor, require
from detector.store import Store

IDLE_MINUTES = float(os.environ.get("DETECTOR_IDLE_MINUTES", "30"))
READ_WAIT = float(os.environ.get("DETECTOR_DASHBOARD_WAIT", "20"))


def db_path() -> Path:
    """--db after `--` on the streamlit command line, else $DETECTOR_DB, else the default."""
    argv = sys.argv
    if "--db" in argv[:-1]:
        return Path(argv[argv.index("--db") + 1])
    from detector.store import db_path as default

    return default()


def store() -> Store:
    """A store handle (no open connection): reads wait a little, writes wait their turn."""
    return Store(db_path(), wait=READ_WAIT)


def writer() -> Store:
    """For review actions: waits as long as it takes a scheduled run or an ingest to finish."""
    return Store(db_path())


def login() -> Actor:
    """Render the login form until the user is authenticated; enforce idle expiry."""
    config, created = auth.ensure(auth.users_file(db_path()))
    if created:
        print(f"\n  Dashboard user 'admin' created; password (shown once): {created}\n", flush=True)
    # The re-login cookie lasts no longer than an idle session, so a closed tab cannot log
    # itself back in later. Given the file's path, the authenticator would read the cookie's
    # lifetime from the file and ignore this one: it gets the credentials themselves.
    authenticator = stauth.Authenticate(
        config["credentials"],
        config["cookie"]["name"],
        config["cookie"]["key"],
        min(float(config["cookie"]["expiry_days"]), IDLE_MINUTES / 1440),
        login_sleep_time=0,
    )
    st.session_state["authenticator"] = authenticator
    now = time.time()
    last = st.session_state.get("last_activity")
    if st.session_state.get("authentication_status") and last and now - last > IDLE_MINUTES * 60:
        authenticator.logout(location="unrendered")
        st.session_state["expired"] = True
    try:
        authenticator.login(location="main", key="login")
    except Exception as exc:  # a wrong cookie or a locked account: say so, do not crash
        st.error(md(exc))
    if st.session_state.get("expired") and not st.session_state.get("authentication_status"):
        st.info(f"Your session expired after {IDLE_MINUTES:g} idle minutes: log in again.")
    status = st.session_state.get("authentication_status")
    if status is False:
        st.error("Username or password is incorrect.")
    if not status:
        st.stop()
    st.session_state["expired"] = False
    st.session_state["last_activity"] = now
    roles = st.session_state.get("roles") or ["viewer"]
    actor = Actor(st.session_state["username"], roles[0])
    st.session_state["actor"] = actor
    return actor


_ADDRESS = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*:(?=//)|\bwww\.|@")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|:$<>~&=\"'/@])")


def md(value: object) -> str:
    """Text from logs, files and users, made inert for Streamlit's Markdown: every
    character Markdown (or its colour, emoji, LaTeX and link extensions) would act on is
    escaped, so a visitor named ``![p](http://host/pixel.png)`` is shown as written and no
    reviewer's browser fetches anything. Use it for every value put into ``st.markdown``,
    ``st.info`` and the like; dataframes and ``st.text`` show text as it is already."""
    text = "" if value is None else str(value)
    # The page also turns bare addresses into live links, escaped or not: a zero-width
    # space after a URL scheme, "www." or an "@" keeps them text (exports and dossiers
    # keep the value exactly as written).
    text = _ADDRESS.sub(lambda m: m.group(0) + "\u200b", text)
    return _MARKDOWN.sub(r"\\\1", text)


def actor() -> Actor:
    return st.session_state["actor"]


def can(permission: str) -> bool:
    try:
        require(actor(), permission)
        return True
    except PermissionError:
        return False


def guarded(fn, *args, **kwargs):
    """Run a read; a busy database shows a notice and stops the page instead of failing."""
    try:
        return fn(*args, **kwargs)
    except StoreBusy:
        st.warning(
            "The database is busy (an ingest or a scheduled run is writing). "
            "This page will load when it finishes."
        )
        if st.button("Try again"):
            st.rerun()
        st.stop()
