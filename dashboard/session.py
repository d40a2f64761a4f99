"""Login, idle expiry and the current user for every page (streamlit-authenticator, bcrypt)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import streamlit as st
import streamlit_authenticator as stauth

from dashboard.text import _, lang, ngettext, words
from detector import auth, i18n
from detector.auth import Actor, require
from detector.errors import StoreBusy
from detector.settings import settings
from detector.store import Store
from detector.store import db_path as store_db_path


def db_path() -> Path:
    """--db after `--` on the streamlit command line, else $DETECTOR_DB, else the default."""
    argv = sys.argv
    if "--db" in argv[:-1]:
        return Path(argv[argv.index("--db") + 1])
    return store_db_path()


def store() -> Store:
    """A store handle (no open connection): reads wait a little, writes wait their turn."""
    return Store(db_path(), wait=settings().dashboard_wait)


def writer() -> Store:
    """For review actions: waits as long as it takes a scheduled run or an ingest to finish."""
    return Store(db_path())


def login() -> Actor:
    """Render the login form until the user is authenticated; enforce idle expiry."""
    users = auth.users_file(db_path())
    config, created = auth.ensure(users)
    if created:
        secret = auth.store_first_password(users, created)
        print(f"\n  Dashboard user 'admin' created; its password is in {secret}\n", flush=True)
    # The re-login cookie lasts no longer than an idle session, so a closed tab cannot log
    # itself back in later. Given the file's path, the authenticator would read the cookie's
    # lifetime from the file and ignore this one: it gets the credentials themselves.
    authenticator = stauth.Authenticate(
        config["credentials"],
        config["cookie"]["name"],
        config["cookie"]["key"],
        min(float(config["cookie"]["expiry_days"]), settings().idle_minutes / 1440),
        login_sleep_time=0,
    )
    st.session_state["authenticator"] = authenticator
    now = time.time()
    last = st.session_state.get("last_activity")
    if (
        st.session_state.get("authentication_status")
        and last
        and now - last > settings().idle_minutes * 60
    ):
        authenticator.logout(location="unrendered")
        st.session_state["expired"] = True
    fields = {"Form name": _("Log in"), "Username": _("Username"),
              "Password": _("Password"), "Login": _("Log in")}  # fmt: skip
    try:
        authenticator.login(location="main", key="login", fields=fields)
    except Exception as exc:  # a wrong cookie or a locked account: say so, do not crash
        st.error(md(exc))
    if st.session_state.get("expired") and not st.session_state.get("authentication_status"):
        st.info(
            _("Your session expired after {minutes} idle minutes: log in again.").format(
                minutes=f"{settings().idle_minutes:g}"
            )
        )
    status = st.session_state.get("authentication_status")
    if status is False:
        st.error(_("Username or password is incorrect."))
    if not status:
        st.stop()
    st.session_state["expired"] = False
    st.session_state["last_activity"] = now
    roles = st.session_state.get("roles") or ["viewer"]
    actor = Actor(st.session_state["username"], roles[0])
    if st.session_state.get("lang_of") != actor.username:  # the user's own language, once
        st.session_state["lang"] = i18n.known(auth.language(users, actor.username))
        st.session_state["lang_of"] = actor.username
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


def _save_language() -> None:
    chosen = st.session_state.get("ui_lang")
    if chosen in i18n.LANGUAGES:
        st.session_state["lang"] = chosen
        auth.set_language(auth.users_file(db_path()), actor().username, chosen)


def streamlit_words() -> None:
    """The few words Streamlit writes itself (its file uploader's button and size limit),
    in the reader's language: replaced in CSS, since Streamlit offers no setting."""
    if lang() == "en":
        return
    from detector.demo import max_upload_mb

    button = _("Choose files")
    limit = _("Up to {mb} MB per file").format(mb=max_upload_mb())
    drop = '[data-testid="stFileUploaderDropzone"]'
    st.html(
        "<style>"
        f'{drop} button [data-testid="stMarkdownContainer"] p {{display: none}}'
        f'{drop} button [data-testid="stMarkdownContainer"]::after {{content: "{button}"}}'
        f'{drop} [data-testid="stFileUploaderDropzoneInstructions"] span {{display: none}}'
        f'{drop} [data-testid="stFileUploaderDropzoneInstructions"] > div::after '
        f'{{content: "{limit}"; font-size: 0.875rem}}'
        "</style>"
    )


def language_switch() -> None:
    """The sidebar's language choice, saved with the user (their next login keeps it)."""
    st.session_state["ui_lang"] = lang()
    st.selectbox(
        _("Language"),
        list(i18n.LANGUAGES),
        format_func=i18n.LANGUAGES.get,
        key="ui_lang",
        on_change=_save_language,
    )


# --- review actions: queued, then written when the database lets them -----------------------

RETRY_SECONDS = 3


def queue_action(action: str, flag_id: str, rule_id: str | None = None, **values) -> None:
    """Keep a review action the user submitted; it is written by ``save_pending`` at the
    start of this run and, while the database is busy, retried every few seconds. A form
    callback calls this, so a submit is kept even when the page then stops on a busy read."""
    fields = {k: st.session_state.get(key) for k, key in values.items()}
    st.session_state.setdefault("pending_actions", []).append(
        {"action": action, "flag_id": flag_id, "rule_id": rule_id, **fields}
    )


def _apply(store: Store, a: dict) -> str:
    from detector import review

    who = actor()
    if a["action"] == "status":
        # one call: a review refused (a dismissal without a reason) writes nothing at all
        review.set_status(
            store, who, a["flag_id"], a["status"], a.get("note") or None, a.get("reason"),
            reopen=None if a.get("reopen") is None else bool(a["reopen"]),
        )  # fmt: skip
        return _("Saved: {status}.").format(status=words(a["status"]))
    if a["action"] == "assign":
        review.assign(store, who, a["flag_id"], (a.get("who") or "").strip() or None)
        who_ = a.get("who") or _("nobody")
        return _("Assigned to {who}.").format(who=who_)
    if a["action"] == "suppress":
        review.suppress(store, who, a["rule_id"], a["entity"], a["until"], kind=a["kind"])
        from detector.wording import rule_title

        return _("{rule} suppressed for the {kind} {entity} until {until}.").format(
            rule=rule_title(a["rule_id"], lang()), kind=words(a["kind"]), entity=a["entity"],
            until=i18n.moment(a["until"], lang()),
        )  # fmt: skip
    raise ValueError(a["action"])


def save_pending() -> None:
    """Write the queued review actions in order. One refused because the database is busy
    (an ingest or a scheduled run is writing) stays queued with the ones after it, the page
    says so, and they are retried every few seconds: a submitted review is never dropped."""
    pending = list(st.session_state.get("pending_actions") or [])
    if not pending:
        return
    from detector.review import ReviewError

    store = Store(db_path(), wait=settings().pending_wait)
    while pending:
        try:
            message = _apply(store, pending[0])
        except StoreBusy:
            break
        except ReviewError as exc:
            st.error(md(exc.said(lang())))
        except PermissionError as exc:
            st.error(md(exc))
        else:
            st.success(md(message))
        pending.pop(0)
    st.session_state["pending_actions"] = pending
    if pending:
        _waiting()


@st.fragment(run_every=RETRY_SECONDS)
def _waiting() -> None:
    pending = st.session_state.get("pending_actions") or []
    if not pending:
        st.rerun(scope="app")
    st.warning(
        ngettext(
            "{n} review action is kept and waiting for the database (an ingest or a "
            "scheduled run is writing); it is saved as soon as it is free. You can keep "
            "working or leave this page open.",
            "{n} review actions are kept and waiting for the database (an ingest or a "
            "scheduled run is writing); they are saved as soon as it is free. You can keep "
            "working or leave this page open.",
            len(pending),
        ).format(n=len(pending))
    )
    store = Store(db_path(), wait=settings().pending_wait)
    try:
        _apply(store, pending[0])
    except StoreBusy:
        return
    except Exception:  # noqa: BLE001 - shown by the full run that follows
        pass
    else:
        st.session_state["pending_actions"] = pending[1:]
        st.toast(_("Review action saved."))
    st.rerun(scope="app")


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
            _(
                "The database is busy (an ingest or a scheduled run is writing). "
                "This page will load when it finishes."
            )
        )
        if st.button(_("Try again")):
            st.rerun()
        st.stop()
