"""A person: every spelling, document, badge and plate, their visits, reads and flags, why
their rows were linked (and which other persons came close), and the auditor's split and
merge."""

import streamlit as st

from dashboard import data, session
from dashboard.labels import table
from dashboard.text import _, lang, number
from detector.export import worded
from detector.identity import explain_link

store = session.store()
st.title(_("Person"))
st.caption(
    _(
        "Identity linkage joins the rows that name one person however they were written: "
        "the name's words in any order, with or without accents, a second surname dropped, "
        "a slip of the pen, the same document or badge. Namesakes with different documents "
        "stay apart, and so do completely different names on one document."
    )
)

search = st.text_input(_("Find a person by name, document, badge or id"), key="person_search")
if search.strip():
    found = session.guarded(data.find_persons, store, search)
    if not found.height:
        st.info(_("Nobody written that way."))
    else:
        picked = table(
            found, key="person_found", on_select="rerun", selection_mode="single-row"
        ).selection.rows
        if picked:
            st.session_state["person_id"] = found["person_id"][picked[0]]
person_id = st.session_state.get("person_id")
if not person_id:
    st.info(_("Search for a person, or open one from the risk per person."))
    st.stop()
p = session.guarded(data.person, store, person_id)
if p is None:
    st.error(_("No person {person}.").format(person=session.md(person_id)))
    st.stop()

st.header(session.md(p["name"]))
st.caption(session.md(person_id))
cols = st.columns(5)
for col, (label, n) in zip(
    cols,
    (
        (_("Rows"), p["rows"]),
        (_("Spellings"), p["spellings"].height),
        (_("Documents"), p["documents"].height),
        (_("Badges"), p["badges"].height),
        (_("Flags"), p["flags"].height),
    ),
    strict=True,
):
    col.metric(label, number(n))

st.subheader(_("Every spelling"))
table(p["spellings"].drop("mention_key"), key="person_spellings")
left, mid, right = st.columns(3)
for where, name, title in (
    (left, "documents", _("Documents")),
    (mid, "badges", _("Badges")),
    (right, "plates", _("Plates")),
):
    where.markdown(f"**{title}**")
    if p[name].height:
        table(p[name], key=f"person_{name}", where=where)
    else:
        where.caption(_("Nothing written."))

st.subheader(_("Flags"))
if p["flags"].height:
    table(worded(p["flags"], lang()).drop("fields", "title", "wording", strict=False), key="pf")
else:
    st.caption(_("No flag names this person."))
tabs = st.tabs([_("Visits"), _("Badge reads")])
for tab, name in zip(tabs, ("visits", "reads"), strict=True):
    if p[name].height:
        table(p[name], key=f"person_{name}_rows", where=tab)
    else:
        tab.caption(_("Nothing recorded."))

st.subheader(_("Why these rows are one person"))
st.caption(
    _(
        "Each link below joined two spellings. Every comparison adds or takes away weight "
        "(a match weight: each point doubles or halves the odds that the two are one "
        "person); a link needs the total to reach the threshold."
    )
)
linked = p["links"].filter(p["links"]["accepted"]) if p["links"].height else p["links"]
if not linked.height:
    st.caption(_("This person is written one way only: there was nothing to link."))
for row in linked.iter_rows(named=True):
    st.markdown(f"**{session.md(row['name'])}** ↔ **{session.md(row['other_name'])}**")
    st.markdown("\n".join(f"- {session.md(line)}" for line in explain_link(row["why"], lang())))
if p["apart"].height:
    with st.expander(_("Close to other persons, and kept apart")):
        for row in p["apart"].iter_rows(named=True):
            other = row["b_person"] if row["a_person"] == person_id else row["a_person"]
            st.markdown(
                f"**{session.md(row['name'])}** ↔ **{session.md(row['other_name'])}** "
                f"({session.md(other)})"
            )
            lines = explain_link(row["why"], lang())
            st.markdown("\n".join(f"- {session.md(line)}" for line in lines))

if session.can("review"):
    st.subheader(_("Split or merge"))
    st.caption(
        _(
            "An auditor's split or merge is written to the review audit trail and every "
            "later linkage (and a new model) keeps it."
        )
    )
    st.session_state["person_act_id"] = person_id
    spellings = p["spellings"]
    labels = {
        k: " · ".join(str(v) for v in (n, d, b) if v)
        for k, n, d, b in zip(
            spellings["mention_key"],
            spellings["name"],
            spellings["id_number"],
            spellings["badge"],
            strict=True,
        )
    }
    split, merge = st.columns(2)
    with split.form("person_split"):
        st.multiselect(
            _("Spellings that are somebody else"),
            list(labels),
            format_func=labels.get,
            key="person_split_keys",
        )
        st.text_input(_("Why"), key="person_split_note")
        st.form_submit_button(
            _("Split them off"),
            disabled=len(labels) < 2,
            on_click=session.queue_action,
            args=("person_split", None),
            kwargs={
                "person": "person_act_id",
                "mentions": "person_split_keys",
                "note": "person_split_note",
            },
        )
    with merge.form("person_merge"):
        st.text_input(
            _("Ids of the persons who are this one (comma-separated)"), key="person_merge_ids"
        )
        st.text_input(_("Why"), key="person_merge_note")
        st.form_submit_button(
            _("Merge them into this person"),
            on_click=session.queue_action,
            args=("person_merge", None),
            kwargs={
                "person": "person_act_id",
                "others": "person_merge_ids",
                "note": "person_merge_note",
            },
        )
