"""One flag: explanation, evidence, model features, related records, timeline, review."""

from datetime import date, timedelta

import altair as alt
import polars as pl
import streamlit as st

from dashboard import data, session
from dashboard.labels import VALUES, readable, readable_value
from detector import review
from detector.dossier import render
from detector.review import DISMISS_REASONS

store = session.store()
flag_id = st.text_input("Flag id", value=st.session_state.get("flag_id", ""), key="flag_id_box")
if not flag_id:
    st.info("Open a flag from the review queue, or paste its id.")
    st.stop()
f = session.guarded(data.flag, store, flag_id.strip())
if f is None:
    st.error(f"No flag {session.md(flag_id)}.")
    st.stop()

st.title(session.md(f["title"]))
status = VALUES["status"].get(f["status"], f["status"])
st.markdown(
    f"**{session.md(f['severity'].upper())}** · {session.md(f['rule_id'])} "
    f"({session.md(VALUES['source'].get(f['source'], f['source']))}) · "
    f"{session.md(f['category'].replace('_', ' '))} · status **{session.md(status)}**"
    + (f" ({session.md(f['reason'].replace('_', ' '))})" if f.get("reason") else "")
    + (f" · assigned to {session.md(f['assignee'])}" if f.get("assignee") else "")
    + (" · resolved by later data" if f["state"] != "active" else "")
)
st.info(session.md(f["explanation"]))
risk, seen, when = st.columns(3)
risk.metric(
    "Risk (queue order)",
    "—" if f["score"] is None else f"{f['score']:.2f}",
    help=(
        "A range (gap, silence, missing book) has no visits to score: its risk is its "
        "severity's weight raised by its size (the entries it hides)."
        if f["subject"] == "range"
        else "The highest risk among its visits: the noisy-OR of their rule flags' "
        "severities and how rare the visit is to the outlier model."
    ),
)
occurrences = f["fields"].get("occurrences")
if occurrences:
    seen.metric("Occurrences in this case", occurrences)
    when.metric("First · last", f"{f['fields'].get('first_at')} · {f['fields'].get('last_at')}")

st.subheader("Evidence")
st.dataframe(
    readable(pl.DataFrame(f["evidence"])) if f["evidence"] else pl.DataFrame(),
    hide_index=True,
    width="stretch",
    key="evidence",
)
for kind, frame in session.guarded(data.evidence_records, store, f["record_keys"]).items():
    st.caption(f"Original values — {session.md(kind)}")
    st.dataframe(readable(frame), hide_index=True, width="stretch", key=f"orig_{kind}")

if f["source"] == "model":
    st.subheader("Why the model flagged it")
    reasons = f["fields"].get("top_features", [])
    for reason in reasons:
        st.markdown(f"- {session.md(reason.get('context', ''))}")
    with st.expander("The figures behind these sentences"):
        st.dataframe(
            pl.DataFrame(
                {
                    "Reason": [r.get("context", "") for r in reasons],
                    "Observed value": [r.get("value") for r in reasons],
                    "Weight in the outlier score": [r.get("contribution") for r in reasons],
                }
            ),
            hide_index=True,
            width="stretch",
            key="features",
        )
else:
    with st.expander("Values that made the rule fire"):
        st.dataframe(
            readable(
                [
                    {"field": k.replace("_", " "), "value": readable_value(v)}
                    for k, v in f["fields"].items()
                ]
            ),
            hide_index=True,
            width="stretch",
            key="fields",
        )

st.subheader("Related records")
related = session.guarded(data.related, store, f["record_keys"])
if related:
    for label, tab in zip(related, st.tabs(list(related)), strict=True):
        tab.dataframe(
            readable(related[label]), hide_index=True, width="stretch", key=f"rel_{label}"
        )
else:
    st.caption("No related visits.")

line = session.guarded(data.timeline, store, f["facility"], f["period_start"], f["period_end"])
if line.height:
    st.subheader(f"Timeline at {session.md(f['facility'])} (±24 h)")
    chart = (
        alt.Chart(line.to_pandas())
        .mark_tick(thickness=2, size=18)
        .encode(
            x=alt.X("entered_at:T", title=None, axis=alt.Axis(format="%d %b %Y %H:%M")),
            y=alt.Y("role:N", title=None),
            color="role:N",
            tooltip=[
                alt.Tooltip("entered_at:T", format="%Y-%m-%d %H:%M"),
                "name",
                "role",
                "record_id",
                "checkpoint",
            ],
        )
    )
    st.altair_chart(chart, width="stretch")

st.subheader("Review")
if not session.can("review"):
    st.caption("Your role can read flags but not change them.")
else:
    # The form shows the opened flag's stored review: loaded again when another flag is
    # opened or its review changed (a confirmed flag must not show "in_review", and the
    # previous flag's assignee must not carry over).
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
    with st.form("review_form"):
        st.selectbox(
            "Status",
            ["in_review", "confirmed", "dismissed", "needs_external_verification"],
            key="r_status",
        )
        st.selectbox(
            "Dismissal reason", [None, *DISMISS_REASONS], key="r_reason", help="Needed to dismiss."
        )
        st.text_area("Note", key="r_note")
        st.checkbox(
            "Re-open this case when new occurrences arrive",
            key="r_reopen",
            help="Off: a case closed once stays closed however often it repeats.",
        )
        st.form_submit_button(
            "Save review",
            on_click=session.queue_action,
            args=("status", f["flag_id"]),
            kwargs={"status": "r_status", "reason": "r_reason", "note": "r_note",
                    "reopen": "r_reopen"},
        )  # fmt: skip
    a, b = st.columns(2)
    with a.form("assign_form"):
        st.text_input("Assign to (username)", key="r_who")
        st.form_submit_button(
            "Assign", on_click=session.queue_action, args=("assign", f["flag_id"]),
            kwargs={"who": "r_who"},
        )  # fmt: skip
    with b.form("suppress_form"):
        st.selectbox(
            "Suppress this rule for a", review.ENTITY_KINDS, key="r_entity_kind",
            help="Matched exactly: a facility code, a person's name (any spelling of the "
            "same letters, accents aside), or a plate.",
        )  # fmt: skip
        st.text_input("named", value=f.get("facility") or "", key="r_entity")
        st.date_input("until", value=date.today() + timedelta(days=30), key="r_until")
        st.form_submit_button(
            "Suppress", on_click=session.queue_action, args=("suppress", f["flag_id"], f["rule_id"]),
            kwargs={"kind": "r_entity_kind", "entity": "r_entity", "until": "r_until"},
        )  # fmt: skip

if session.can("export"):
    lang = st.radio("Dossier language", ["en", "es"], horizontal=True, key="d_lang")
    st.download_button(
        "Case dossier of this flag (HTML)",
        render(store, [f["flag_id"]], session.actor().username, lang),
        file_name=f"dossier-{f['flag_id']}.html",
        mime="text/html",
        key="d_dossier",
    )

st.subheader("Audit trail")
st.dataframe(
    readable(session.guarded(data.review_log, store, f["flag_id"])),
    hide_index=True,
    width="stretch",
    key="audit",
)
