"""The dashboard's server: ``dashboard/app.py`` under Streamlit, with the two routes that set
and clear the login session's cookie (``streamlit run dashboard/server.py -- --db D``).

Streamlit sends a page's messages over a websocket, where no cookie can be set: a cookie
only a server's HTTP answer sets can be HttpOnly, out of reach of page scripts. After a
login the page posts its one-time ticket to ``/session/open`` and gets the cookie; "Log
out" revokes the session, then posts to ``/session/close`` to clear it (see
``dashboard/sessions.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from dashboard import sessions  # noqa: E402
from detector import auth  # noqa: E402
from detector.settings import settings  # noqa: E402
from detector.store import db_path as store_db_path  # noqa: E402


def _users() -> Path:
    """The users file of the database given after ``--`` (else $DETECTOR_DB)."""
    argv = sys.argv
    db = argv[argv.index("--db") + 1] if "--db" in argv[:-1] else store_db_path()
    return auth.users_file(db)


def _answer(request: Request) -> Response:
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


async def open_session(request: Request) -> Response:
    """A one-time ticket in, the session's HttpOnly cookie out (403 for any other ticket)."""
    ticket = (await request.body()).decode("utf-8", "replace")[:200]
    cookie = await run_in_threadpool(sessions.claim, _users(), ticket)
    if cookie is None:
        return Response(status_code=403, headers={"Cache-Control": "no-store"})
    response = _answer(request)
    response.headers["Set-Cookie"] = sessions.cookie_header(
        cookie, settings().idle_minutes * 60, request.url.scheme == "https"
    )
    return response


async def close_session(request: Request) -> Response:
    """End the session of the cookie presented (if still open) and clear the cookie."""
    await run_in_threadpool(sessions.revoke_cookie, _users(), request.cookies.get(sessions.COOKIE))
    response = _answer(request)
    response.headers["Set-Cookie"] = sessions.clear_cookie_header(request.url.scheme == "https")
    return response


app = st.App(
    "app.py",
    routes=[
        Route("/session/open", open_session, methods=["POST"]),
        Route("/session/close", close_session, methods=["POST"]),
    ],
)
