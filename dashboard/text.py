"""The reader's language in the dashboard: ``_("...")`` translates a message, and dates and
numbers are written as that language writes them.

The language is the signed-in user's (saved with the user, switched in the sidebar); before
login, and for a user who never chose, the configured default (``$DETECTOR_LANGUAGE``).
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import streamlit as st

from detector import i18n


def lang() -> str:
    return i18n.known(st.session_state.get("lang"))


def _(message: str) -> str:
    return i18n.translate(lang(), message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return i18n.translate_plural(lang(), singular, plural, n)


def number(value: float | int | None, decimals: int | None = None) -> str:
    return i18n.number(value, lang(), decimals)


def moment(value: datetime | date | str | None) -> str:
    return i18n.moment(value, lang())


def words(value: str | None) -> str:
    """A coded value (status, severity, category, role) in words."""
    return i18n.words(value, lang()) or ""


def worded(column: pl.Series) -> pl.Series:
    """A column of coded values in words, also several of them in one cell ("family,
    lawyer"). (Not with ``map_elements``: polars runs Python functions on its own threads,
    where the session and its language are not known.)"""
    reader = lang()

    def said(value: str) -> str:
        return ", ".join(i18n.words(v, reader) or "" for v in value.split(", "))

    return column.replace({v: said(v) for v in column.drop_nulls().unique()})
