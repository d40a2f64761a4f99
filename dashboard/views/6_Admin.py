"""Admin: users and roles (admins only)."""

import tomllib

import streamlit as st
from pydantic import ValidationError

from dashboard import data, session
from dashboard.labels import readable, table
from dashboard.text import _, lang, moment, words
from detector import auth
from detector.auth import ROLES, require
from detector.i18n import LANGUAGES
from detector.schedule import ScheduleConfig, config_error, next_fire_time
from detector.settings import settings

st.title(_("Admin"))
try:  # the page is hidden from others; refuse them anyway
    require(session.actor(), "admin")
except PermissionError as exc:
    st.error(session.md(exc))
    st.stop()

path = session.store().users
users = auth.load(path)["credentials"]["usernames"]
st.subheader(_("Users"))
st.dataframe(
    readable(
        [
            {
                "username": u,
                "role": (v.get("roles") or ["?"])[0],
                "language": LANGUAGES.get(v.get("language") or "", ""),
            }
            for u, v in users.items()
        ]
    ),
    hide_index=True,
    key="users",
)
with st.form("add_user"):
    username = st.text_input(_("Username"), key="new_user")
    role = st.selectbox(_("Role"), ROLES, index=1, key="new_role", format_func=words)
    if st.form_submit_button(_("Create or reset user")) and username.strip():
        password = auth.add_user(path, username.strip(), role)
        st.success(
            _("{user} ({role}) — password, shown once: `{password}`").format(
                user=session.md(username), role=words(role), password=password
            )
        )


def _next_run(job, timezone: str) -> str:
    """When a job runs next, as the reader writes a time, with the schedule's time zone."""
    if not job.cron:
        return _("every {seconds} s").format(seconds=f"{job.every_seconds:g}")
    when = next_fire_time(job, timezone)
    return f"{moment(when.replace(tzinfo=None))} {when.strftime('%Z')}" if when else _("never")


st.subheader(_("Schedules"))
st.caption(
    _(
        "The scheduler (`detector schedule`) runs in its own process and reads this file "
        "when it starts: restart it after saving."
    )
)
schedule_path = settings().schedule
text = schedule_path.read_text(encoding="utf-8") if schedule_path.exists() else ""
try:
    config = ScheduleConfig.model_validate(tomllib.loads(text)) if text else ScheduleConfig()
    st.dataframe(
        readable(
            [
                {
                    "job": name,
                    "action": job.action,
                    "when": job.cron
                    or _("every {seconds} s").format(seconds=f"{job.every_seconds:g}"),
                    "next run": _next_run(job, config.timezone),
                }
                for name, job in config.jobs.items()
            ]
        ),
        hide_index=True,
        key="jobs",
    )
except tomllib.TOMLDecodeError as exc:
    st.error(
        session.md(_("{file}: not valid TOML: {problem}").format(file=schedule_path, problem=exc))
    )
except ValidationError as exc:
    st.error(session.md(f"{schedule_path}: {config_error(exc)}"))
with st.form("schedule_form"):
    edited = st.text_area(f"{schedule_path}", value=text, height=300, key="schedule_text")
    if st.form_submit_button(_("Validate and save")):
        try:
            ScheduleConfig.model_validate(tomllib.loads(edited))
            schedule_path.write_text(edited, encoding="utf-8")
            st.success(_("Saved {file}.").format(file=session.md(schedule_path)))
        except tomllib.TOMLDecodeError as exc:
            st.error(_("Not saved, not valid TOML: {problem}").format(problem=session.md(exc)))
        except ValidationError as exc:
            st.error(_("Not saved: {problem}").format(problem=session.md(config_error(exc))))

st.subheader(_("Weights learnt from reviews"))
st.caption(
    _(
        "Each scoring run re-weighs a rule (or the outlier model) from its reviewed flags: "
        "confirmed ones raise its weight in the risk score, ones dismissed as false or benign "
        "lower it; below five decided flags the rule keeps its set weight."
    )
)
current, changes = session.guarded(data.weights, session.store(), lang())
if current.height:
    table(current, key="weights")
    table(changes, key="weight_changes")
else:
    st.caption(_("No rule has been re-weighed yet: every rule keeps its set weight."))

st.subheader(_("Run history"))
table(session.guarded(data.runs, session.store(), lang=lang()), key="admin_runs")
