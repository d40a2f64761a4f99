"""What a person reads in the dashboard's tables: column headings and coded values in
words, blanks as blanks, JSON as text.

The headings and coded values come from ``detector.i18n`` (``FIELDS``, ``CODES``), in
the reader's language: a page shows a table through :func:`readable`, never with the
database's own names (``record_key``, ``period_start``, ``needs_external_verification``).
A heading or value missing there still reads as words (underscores become spaces), and
the page walk test fails on any that does not.
"""

from __future__ import annotations

import json

import polars as pl

from dashboard.text import lang, worded
from detector import i18n
from detector.i18n import FIELDS, field_name

# The registries live in ``detector.i18n`` (shared with the dossier and the exports):
# field names as headings, coded values as words, both in the reader's language.
COLUMNS = FIELDS
# Columns whose values are codes the tool wrote (statuses, categories, roles, problems).
CODED = frozenset(
    {"status", "review_status", "severity", "category", "source", "state", "reason",
     "reason_code", "kind", "name_status", "role", "roles", "role_of", "action", "old", "new",
     "part", "direction", "outcome", "entity_kind"}
)  # fmt: skip


# Columns whose values are field names (a quarantined row's field): shown by their headings.
FIELD_NAMED = frozenset({"field"})


def heading(column: str) -> str:
    return field_name(column, lang())


def _json_text(value: str | None, reader: str = "en") -> str | None:
    """A JSON cell as "name: value; ..." (objects, each name as a heading of ``reader``'s
    language) or items joined (lists)."""
    if value is None or not value.strip().startswith(("{", "[")):
        return value
    try:
        data = json.loads(value)
    except ValueError:
        return value
    if isinstance(data, dict):
        return "; ".join(f"{field_name(k, reader)}: {_shown(v, reader)}" for k, v in data.items())
    if isinstance(data, list):
        return "; ".join(
            _json_text(json.dumps(i), reader) if isinstance(i, dict) else _shown(i, reader)
            for i in data
        )
    return str(data)


def _shown(value: object, reader: str) -> str:
    if isinstance(value, bool):
        return i18n.words("yes" if value else "no", reader) or ""
    if isinstance(value, (int, float)):
        return i18n.number(value, reader)
    if value is None:
        return ""
    return str(value)


def readable_value(value: object) -> str:
    """One value for a person: lists and objects as text, yes or no, nothing as blank."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return _json_text(json.dumps(value, ensure_ascii=False, default=str), lang()) or ""
    if isinstance(value, bool):
        return _shown(value, lang())
    return str(value)


def readable(frame: pl.DataFrame | list[dict]) -> pl.DataFrame:
    """The frame as a person reads it: headings in words, coded values in words
    (categories, statuses), JSON cells as text, empty cells empty (never "None")."""
    if not isinstance(frame, pl.DataFrame):
        frame = pl.DataFrame(frame)
    reader = lang()
    out = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if name in CODED and dtype == pl.String:
            col = worded(frame[name])
        elif name in FIELD_NAMED and dtype == pl.String:
            col = frame[name].replace(
                {f: field_name(f, reader) for f in frame[name].drop_nulls().unique() if f != "*"}
            )
        elif dtype == pl.String:
            col = col.map_elements(
                lambda v, r=reader: _json_text(v, r), return_dtype=pl.String, skip_nulls=True
            )
        elif dtype == pl.List(pl.String):
            col = col.list.join("; ")
        if dtype == pl.String or dtype == pl.List(pl.String):
            col = col.fill_null("")
        out.append(col.alias(field_name(name, reader)))
    return frame.select(out)


_MOMENT = {"es": "DD/MM/YYYY HH:mm", "en": "YYYY-MM-DD HH:mm"}
_DAY = {"es": "DD/MM/YYYY", "en": "YYYY-MM-DD"}


def table(frame: pl.DataFrame | list[dict], key: str, where=None, empty: str | None = None,
          **kwargs):  # fmt: skip
    """Show a table as a person reads it (:func:`readable`), its dates and times written
    as the reader's language writes them, blanks blank; ``where`` is a column, tab or the
    page. A table with no rows is not drawn (Streamlit would write "empty" in it): a line
    says so instead (``empty``, or "Nothing to show.")."""
    import streamlit as st

    from dashboard.text import _

    shown = readable(frame)
    if not shown.height:
        (where or st).caption(empty or _("Nothing to show."))
        return None
    reader = lang()
    config = {}
    for name, dtype in shown.schema.items():
        if dtype == pl.Datetime or isinstance(dtype, pl.Datetime):
            config[name] = st.column_config.DatetimeColumn(name, format=_MOMENT[reader])
        elif dtype == pl.Date:
            config[name] = st.column_config.DateColumn(name, format=_DAY[reader])
    config.update(kwargs.pop("column_config", None) or {})
    kwargs.setdefault("hide_index", True)
    kwargs.setdefault("placeholder", "")
    kwargs.setdefault("width", "stretch")
    return (where or st).dataframe(shown, key=key, column_config=config, **kwargs)
