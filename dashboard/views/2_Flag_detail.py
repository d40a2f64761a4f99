"""One flag: explanation, evidence, model features, related records, timeline, review."""

from datetime import date, timedelta

import altair as alt
import polars as pl
import streamlit as st

from dashboard import data, session
from dashboard.labels import readable, readable_value, table
from dashboard.text import _, lang, moment, number, worded, words
from detector import review
from detector.dossier import render
from detector.i18n import field_name
from detector.review import DISMISS_REASONS
from detector.wording import flag_wording, localised

store = session.store()
flag_id = st.text_input(_("Flag id"), value=st.session_state.get("flag_id", ""), key="flag_id_box")
if not flag_id:
    st.info(_("Open a flag from the review queue, or paste its id."))
    st.stop()
f = session.guarded(data.flag, store, flag_id.strip())
if f is None:
    st.error(_("No flag {flag}.").format(flag=session.md(flag_id)))
    st.stop()

title, explanation = flag_wording(f, lang())
st.title(session.md(title))
st.markdown(
    f"**{session.md(words(f['severity']).upper())}** · "
    + _("found by the {source}").format(source=session.md(words(f["source"])))
    + f" · {session.md(words(f['category']))} · "
    + _("status **{status}**").format(status=session.md(words(f["status"])))
    + (f" ({session.md(words(f['reason']))})" if f.get("reason") else "")
    + (
        " · " + _("assigned to {who}").format(who=session.md(f["assignee"]))
        if f.get("assignee")
        else ""
    )
    + (" · " + _("resolved by later data") if f["state"] != "active" else "")
)
st.info(session.md(explanation))
risk, seen, when = st.columns(3)
risk.metric(
    _("Risk (queue order)"),
    "—" if f["score"] is None else number(f["score"], 2),
    help=_(
        "A range (gap, silence, missing book) has no visits to score: its risk is its "
        "severity's weight raised by its size (the entries it hides)."
    )
    if f["subject"] == "range"
    else _(
        "The highest risk among its visits: the noisy-OR of their rule flags' "
        "severities and how rare the visit is to the outlier model."
    ),
)
occurrences = f["fields"].get("occurrences")
if occurrences:
    seen.metric(_("Occurrences in this case"), number(occurrences))
    when.metric(
        _("First · last"),
        session.md(f"{moment(f['fields'].get('first_at'))} · {moment(f['fields'].get('last_at'))}"),
    )

st.subheader(_("Evidence"))
table(pl.DataFrame(f["evidence"]) if f["evidence"] else pl.DataFrame(), key="evidence")
for kind, frame in session.guarded(data.evidence_records, store, f["record_keys"], lang()).items():
    st.caption(_("Original values — {kind}").format(kind=session.md(words(kind))))
    table(frame, key=f"orig_{kind}")

if f["source"] == "model":
    st.subheader(_("Why the model flagged it"))
    reasons = f["fields"].get("top_features", [])
    said = [r.get(f"context_{lang()}") or r.get("context", "") for r in reasons]
    for sentence in said:
        st.markdown(f"- {session.md(sentence)}")
    with st.expander(_("The figures behind these sentences")):
        st.caption(
            _(
                "Observed value: the visit's own figure for each reason, as the model measures "
                "it (an hour of the day, a share, a count in the week). Weight: how much that "
                "reason adds to the visit's outlier score; the larger it is, the more that "
                "reason made the visit unusual."
            )
        )
        st.dataframe(
            pl.DataFrame(
                {
                    _("Reason"): said,
                    _("Observed value"): [number(r.get("value"), 2) for r in reasons],
                    _("Weight in the outlier score"): [
                        number(r.get("contribution"), 2) for r in reasons
                    ],
                },
                schema={
                    _("Reason"): pl.String,
                    _("Observed value"): pl.String,
                    _("Weight in the outlier score"): pl.String,
                },
            ),  # fmt: skip
            hide_index=True,
            width="stretch",
            key="features",
            placeholder="",
        )
else:
    with st.expander(_("Values that made the rule fire")):
        values = f["fields"]
        # each value as the reader's language writes it (a field's reading in another
        # language, X_es, stands in for X in that language)
        shown = {
            k: v
            for k, v in localised(values, lang()).items()
            if not any(k.endswith(f"_{code}") for code in ("es", "en"))
        }
        st.dataframe(
            readable(
                pl.DataFrame(
                    {
                        "field": [field_name(k, lang()) for k in shown],
                        "value": [readable_value(v) for v in shown.values()],
                    },
                    schema={"field": pl.String, "value": pl.String},
                )
            ),
            hide_index=True,
            width="stretch",
            key="fields",
            placeholder="",
        )

if f["category"] == "access_events" or any(
    str(k).startswith("E|") for k in f["record_keys"]
):  # what the gate saw beside what the book says, for the people of this flag
    st.subheader(_("Reads and logbook lines of these people (±24 h)"))
    table(session.guarded(data.person_timeline, store, f["record_keys"]), key="person_timeline")

st.subheader(_("Related records"))
related = session.guarded(data.related, store, f["record_keys"])
if related:
    for label, tab in zip(related, st.tabs([_(label) for label in related]), strict=True):
        table(related[label], key=f"rel_{label}", where=tab)
else:
    st.caption(_("No related visits."))

line = session.guarded(data.timeline, store, f["facility"], f["period_start"], f["period_end"])
if line.height:
    # the window it shows, as it is: a day either side of the flag's own period (a month for
    # a missing book), never a fixed "±24 h"
    first, last = line["entered_at"].min(), line["entered_at"].max()
    st.subheader(
        _("Entries at {facility}, {first} to {last}").format(
            facility=session.md(f["facility"]),
            first=session.md(moment(first)),
            last=session.md(moment(last)),
        )
    )
    st.caption(
        _("Every entry written at the facility from a day before this flag to a day after it.")
    )
    line = line.with_columns(role=worded(line["role"]))
    axis = "%d/%m/%Y %H:%M" if lang() == "es" else "%Y-%m-%d %H:%M"
    chart = (
        alt.Chart(line.to_pandas())
        .mark_tick(thickness=2, size=18)
        .encode(
            x=alt.X(
                "entered_at:T",
                title=None,
                axis=alt.Axis(format=axis, labelOverlap=True, labelAngle=0),
            ),
            y=alt.Y("role:N", title=None),
            color=alt.Color("role:N", title=_("Role"), legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("entered_at:T", format=axis, title=_("Entered")),
                alt.Tooltip("name:N", title=_("Name")),
                alt.Tooltip("role:N", title=_("Role")),
                alt.Tooltip("record_id:N", title=_("Record")),
                alt.Tooltip("checkpoint:N", title=_("Checkpoint")),
            ],
        )  # fmt: skip
    )
    st.altair_chart(chart, width="stretch")

st.subheader(_("Review"))
if not session.can("review"):
    st.caption(_("Your role can read flags but not change them."))
else:
    # The form shows the opened flag's stored review: loaded again when another flag is
    # opened or its review changed (a confirmed flag must not show "in_review", and the
    # previous flag's assignee must not carry over).
    # The suppression form starts from the opened flag too: its facility, never the one of
    # the flag opened before (one click would have hidden the rule at the wrong prison).
    stored = (f["flag_id"], f["status"], f["reason"], f["note"], f["assignee"],
              bool(f["reopen_on_new"]))  # fmt: skip
    if st.session_state.get("r_loaded") != stored:
        st.session_state.update(
            r_loaded=stored,
            r_status=f["status"] if f["status"] != "new" else "in_review",
            r_reason=f["reason"],
            r_note=f["note"] or "",
            r_who=f["assignee"] or "",
            r_reopen=bool(f["reopen_on_new"]),
        )
    if st.session_state.get("r_entity_of") != f["flag_id"]:
        st.session_state.update(
            r_entity_of=f["flag_id"],
            r_entity_kind="facility",
            r_entity=f.get("facility") or "",
            r_until=date.today() + timedelta(days=30),
        )
    with st.form("review_form"):
        st.selectbox(
            _("Status"),
            ["in_review", "confirmed", "dismissed", "needs_external_verification"],
            format_func=words,
            key="r_status",
        )
        st.selectbox(
            _("Dismissal reason"), [None, *DISMISS_REASONS], key="r_reason",
            format_func=lambda r: "—" if r is None else words(r), help=_("Needed to dismiss."),
        )  # fmt: skip
        st.text_area(_("Note"), key="r_note")
        st.checkbox(
            _("Re-open this case when new occurrences arrive"),
            key="r_reopen",
            help=_("Off: a case closed once stays closed however often it repeats."),
        )
        st.form_submit_button(
            _("Save review"),
            on_click=session.queue_action,
            args=("status", f["flag_id"]),
            kwargs={"status": "r_status", "reason": "r_reason", "note": "r_note",
                    "reopen": "r_reopen"},
        )  # fmt: skip
    a, b = st.columns(2)
    with a.form("assign_form"):
        st.text_input(_("Assign to (username)"), key="r_who")
        st.form_submit_button(
            _("Assign"), on_click=session.queue_action, args=("assign", f["flag_id"]),
            kwargs={"who": "r_who"},
        )  # fmt: skip
    with b.form("suppress_form"):
        st.selectbox(
            _("Suppress this rule for a"), review.ENTITY_KINDS, key="r_entity_kind",
            format_func=words,
            help=_("Matched exactly: a facility code, a person's name (any spelling of the "
                   "same letters, accents aside), or a plate."),
        )  # fmt: skip
        st.text_input(_("named"), key="r_entity")
        st.date_input(
            _("until"), key="r_until",
            format="DD/MM/YYYY" if lang() == "es" else "YYYY-MM-DD",
        )  # fmt: skip
        st.form_submit_button(
            _("Suppress"), on_click=session.queue_action, args=("suppress", f["flag_id"], f["rule_id"]),
            kwargs={"kind": "r_entity_kind", "entity": "r_entity", "until": "r_until"},
        )  # fmt: skip

if session.can("export"):
    reader, user, one = lang(), session.actor().username, [f["flag_id"]]
    st.download_button(
        _("Case dossier of this flag (HTML)"),
        lambda: render(store, one, user, reader),  # built when clicked
        file_name=f"{_('dossier')}-{f['flag_id']}.html",
        mime="text/html",
        key="d_dossier",
        on_click="ignore",
    )

st.subheader(_("Audit trail"))
trail = session.guarded(data.review_log, store, f["flag_id"], lang())
if trail.height:
    table(trail.drop("flag_id"), key="audit")
else:
    st.caption(_("Nothing done on this flag yet."))
