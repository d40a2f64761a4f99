"""Login, server-side sessions, idle expiry and the current user for every page (bcrypt)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import streamlit as st

from dashboard import sessions
from dashboard.text import _, lang, ngettext, words
from detector import auth, i18n
from detector.auth import Actor, require
from detector.errors import StoreBusy
from detector.settings import settings
from detector.store import Store


def db() -> str:
    """--db after `--` on the streamlit command line (a file's path or a lake's URL), else
    $DETECTOR_DB, else the default."""
    argv = sys.argv
    if "--db" in argv[:-1]:
        return argv[argv.index("--db") + 1]
    return settings().db


def store() -> Store:
    """A store handle (no open connection): reads wait a little, writes wait their turn."""
    return Store(db(), wait=settings().dashboard_wait)


def writer() -> Store:
    """For review actions: waits as long as it takes a scheduled run or an ingest to finish."""
    return Store(db())


def login() -> Actor:
    """Render the login form until the user is authenticated; end an idle or revoked
    session. A login opens a server-side session (``dashboard.sessions``) whose HttpOnly
    cookie logs a reload or a new tab back in while it lives; logging out revokes it."""
    users = store().users
    _config, created = auth.ensure(users)
    if created:
        secret = auth.store_first_password(users, created)
        print(f"\n  Dashboard user 'admin' created; its password is in {secret}\n", flush=True)
    state = st.session_state
    idle = settings().idle_minutes * 60
    now = time.time()
    if state.get("authentication_status"):
        last = state.get("last_activity")
        if (last and now - last > idle) or (
            state.get("session_key") and not sessions.alive(users, state["session_key"], idle)
        ):
            _end_session(users)
            state["expired"] = True
    if not state.get("authentication_status"):
        # a reload or a new tab: the session's cookie, if it is still open on the server
        found = sessions.from_cookie(users, _cookie(), idle)
        if found and auth.role(users, found[0]):
            _start(users, found[0], found[1])
    if not state.get("authentication_status"):
        _login_form(users)
    _close_cookie_if_asked()
    if state.get("expired") and not state.get("authentication_status"):
        st.info(
            _("Your session expired after {minutes} idle minutes: log in again.").format(
                minutes=f"{settings().idle_minutes:g}"
            )
        )
    if state.get("authentication_status") is False:
        st.error(_("Username or password is incorrect."))
    if not state.get("authentication_status"):
        st.stop()
    _hand_over_ticket()
    state["expired"] = False
    state["last_activity"] = now
    roles = state.get("roles") or ["viewer"]
    actor = Actor(state["username"], roles[0])
    if state.get("lang_of") != actor.username:  # the user's own language, once
        state["lang"] = i18n.known(auth.language(users, actor.username))
        state["lang_of"] = actor.username
    state["actor"] = actor
    return actor


def _cookie() -> str | None:
    """The session cookie the browser sent (nothing when no browser is behind this run, as
    in a test's AppTest)."""
    try:
        value = st.context.cookies.get(sessions.COOKIE)
    except Exception:  # noqa: BLE001
        return None
    return value if isinstance(value, str) else None


def _login_form(users: Path) -> None:
    with st.form("login"):
        st.subheader(_("Log in"))
        username = st.text_input(_("Username"), key="login_username")
        password = st.text_input(_("Password"), type="password", key="login_password")
        if not st.form_submit_button(_("Log in")):
            return
    role = auth.check_password(users, username.strip(), password)
    if role is None:
        st.session_state["authentication_status"] = False
        return
    key, ticket = sessions.open_session(users, username.strip())
    st.session_state["ticket"] = ticket  # handed to the server for the cookie on the next run
    _start(users, username.strip(), key)
    st.rerun()  # the pages, without the login form above them


def _start(users: Path, username: str, key: str) -> None:
    st.session_state.update(
        authentication_status=True,
        username=username,
        roles=[auth.role(users, username) or "viewer"],
        session_key=key,
        last_activity=time.time(),
    )


def _route(name: str) -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return "/" + "/".join(p for p in (base, "session", name) if p)


def _hand_over_ticket() -> None:
    """The page gives the server its one-time ticket and gets the session's cookie back
    (HttpOnly: set by the server's answer, never by a script)."""
    ticket = st.session_state.pop("ticket", None)
    if ticket:
        st.html(
            "<script>fetch(" + json.dumps(_route("open")) + ", {method: 'POST', body: "
            + json.dumps(ticket) + ", credentials: 'same-origin', cache: 'no-store'})</script>",
            unsafe_allow_javascript=True,
        )  # fmt: skip


def _close_cookie_if_asked() -> None:
    """After a logout, the browser's copy of the cookie is cleared by the server (the
    session itself was already revoked)."""
    if st.session_state.pop("close_cookie", False):
        st.html(
            "<script>fetch(" + json.dumps(_route("close")) + ", {method: 'POST', "
            "credentials: 'same-origin', cache: 'no-store'})</script>",
            unsafe_allow_javascript=True,
        )


def _end_session(users: Path) -> None:
    """Log out on the server: the session is revoked and this run forgets the user."""
    sessions.revoke(users, st.session_state.get("session_key"))
    for key in ("authentication_status", "username", "roles", "session_key", "actor",
                "ticket", "lang_of"):  # fmt: skip
        st.session_state.pop(key, None)
    st.session_state["close_cookie"] = True


def log_out() -> None:
    """The sidebar's "Log out" (a button callback)."""
    _end_session(store().users)


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
        auth.set_language(store().users, actor().username, chosen)


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
    if a["action"] == "person_split":
        from detector import identity

        left, taken = identity.split(
            store, who, a["person"], list(a.get("mentions") or []), a.get("note") or None
        )
        st.session_state["person_id"] = left
        return _("Split off as a person of their own: {person}.").format(person=taken)
    if a["action"] == "person_merge":
        from detector import identity

        others = [x.strip() for x in (a.get("others") or "").split(",") if x.strip()]
        into = identity.merge(store, who, [a["person"], *others], a.get("note") or None)
        st.session_state["person_id"] = into
        return _("Merged into {person}.").format(person=into)
    raise ValueError(a["action"])


def save_pending() -> None:
    """Write the queued review actions in order. One refused because the database is busy
    (an ingest or a scheduled run is writing) stays queued with the ones after it, the page
    says so, and they are retried every few seconds: a submitted review is never dropped."""
    pending = list(st.session_state.get("pending_actions") or [])
    if not pending:
        return
    from detector.review import ReviewError

    store = Store(db(), wait=settings().pending_wait)
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
    store = Store(db(), wait=settings().pending_wait)
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
