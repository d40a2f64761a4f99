"""How a finding reads: a rule's explanation filled with a hit's values, the sentence a
repeated case adds, the outlier model's wording, and a stored flag's words in a language.

A flag keeps its words: when it is written, its title and explanation are rendered in
every language and stored with it (English in ``flags.title`` and ``flags.explanation``, the
others in ``flags.wording``, with the rule file's SHA-256 it was worded under), so that editing a rule or the catalogue never changes an old finding.
:func:`flag_wording` reads those; only flags stored before words were kept are worded
from the current rules (``detector reword`` stores words for them, on the audit trail).
"""

from __future__ import annotations

import functools
import json
import re
import string
from datetime import date, datetime
from typing import Any

from detector import i18n
from detector.i18n import N_, moment, share, words
from detector.rulebook import Rule, load_rules


def plain(value: Any) -> Any:
    """A hit's value as an explanation shows it: minutes, dates, two decimals."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 2)
    return value


class _Value:
    """A template's value: as stored (``raw``) and as the reader's language shows it."""

    __slots__ = ("raw", "shown")

    def __init__(self, raw: Any, shown: Any):
        self.raw, self.shown = raw, shown


_MISSING = _Value(None, "?")  # a field the hit does not have: "?" rather than failing


class _Words(string.Formatter):
    """Fills a rule's explanation. A field reads as its value (lists joined with commas,
    nothing as "—"); a format spec after the field says more, so that a sentence reads
    right whatever the value (the same in every language):

    - ``{n:plural:# row|# rows}``: the first form when the count is one (a list counts its
      items), else the second; ``#`` is the value;
    - ``{x:given:with # written|with nothing written}``: the first form when there is a
      value, else the second (a missing value gets its own words, never "—" or "");
    - ``{t:date}``, ``{t:time}``: the day or the time of a moment;
    - ``{share:pct}``: a fraction as a percentage (1.0 is "100%");
    - ``{names:fields}``: field names (a list, or text separated by commas) as the
      language calls them ("exited_at" is "left", "salida").

    The forms may quote other fields (``{x:given:… {y} …|…}``). Nothing else: no widths
    or conversions (``detector.rulebook.plain_template`` refuses them when a rule is
    loaded; a spec it did not see is ignored here)."""

    def __init__(self, lang: str):
        super().__init__()
        self.lang = lang

    def get_value(self, key, args, kwargs):
        return kwargs.get(key, _MISSING)

    def format_field(self, value: Any, spec: str) -> str:
        if not isinstance(value, _Value):  # a nested field already filled in a form
            return format(value, spec)
        kind, _, forms = spec.partition(":")
        if kind == "plural":
            one, _, other = forms.partition("|")
            return (one if _count(value.raw) == 1 else other).replace("#", _text(value.shown))
        if kind == "given":
            present, _, absent = forms.partition("|")
            return present.replace("#", _text(value.shown)) if _given(value.raw) else absent
        if kind in ("date", "time"):
            return self._part(value, kind)
        if kind == "pct":
            return self._percent(value)
        if kind == "fields":
            return self._fields(value)
        return _text(value.shown)  # a width such as {x:>300000000} would build its string

    def _part(self, value: _Value, part: str) -> str:
        raw = value.raw
        if isinstance(raw, str) and _ISO_MOMENT.match(raw):
            raw = datetime.fromisoformat(raw)
        if not isinstance(raw, date):
            return _text(value.shown)
        if part == "time":
            return raw.strftime("%H:%M") if isinstance(raw, datetime) else ""
        day = raw.date() if isinstance(raw, datetime) else raw
        return day.isoformat() if self.lang == i18n.SOURCE else i18n.moment(day, self.lang)

    def _fields(self, value: _Value) -> str:
        raw = value.raw
        names = raw if isinstance(raw, (list, tuple)) else str(raw or "").split(",")
        return ", ".join(
            i18n.field_name(n.strip(), self.lang).lower() for n in names if str(n).strip()
        )

    def _percent(self, value: _Value) -> str:
        try:
            figure = 100 * float(value.raw)
        except (TypeError, ValueError):
            return _text(value.shown)
        shown = (
            f"{figure:.3g}"
            if self.lang == i18n.SOURCE
            else i18n.number(float(f"{figure:.3g}"), self.lang)
        )
        return i18n.translate(self.lang, "{share}%").format(share=shown)


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "—" if value is None else str(value)


def _given(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != ()


def _count(value: Any) -> float:
    if isinstance(value, (list, tuple)):
        return len(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0


def explain(
    template: str, values: dict[str, Any], lang: str = i18n.SOURCE, shown: dict | None = None
) -> str:
    """A rule's explanation filled with a hit's values (``values`` as stored; ``shown``, the
    same as the reader's language writes them, when it is not the source language)."""
    shown = values if shown is None else shown
    filled = {k: _Value(v, shown.get(k, v)) for k, v in values.items()}
    return _Words(lang).vformat(template.strip(), (), filled)


def repeated(rule: Rule, fields: dict[str, Any], lang: str) -> str:
    """The sentence a case adds to its first occurrence's explanation: how many, in which
    window, for which entity, first and last."""
    english = lang == i18n.SOURCE  # as the stored explanation already says it

    def when(value):
        return value if english else i18n.moment(value, lang)

    # the group's own values, in words (a folded key or a case's internal name is no
    # reader's business, and an empty one says nothing)
    named = ", ".join(
        f"{i18n.field_name(k, lang).lower()} {fields.get(k)}"
        for k in (rule.group.by if rule.group else [])
        if fields.get(k) not in (None, "")
        and not k.endswith("_key")
        and k != "case"
        and not _PLACE.match(str(fields.get(k)))
    )
    n = int(fields.get("occurrences") or 0)
    window = fields.get("window")
    if isinstance(window, str) and _ISO_MOMENT.match(window):
        window = when(date.fromisoformat(window))
    elif isinstance(window, str) and re.match(r"^\d{4}-\d{2}$", window) and not english:
        window = f"{window[5:]}/{window[:4]}"  # a month as the language writes it
    if named:
        said = i18n.translate_plural(
            lang,
            "Repeated {n} time in {window} ({named}), first {first}, last {last}.",
            "Repeated {n} times in {window} ({named}), first {first}, last {last}.",
            n,
        )
    else:
        said = i18n.translate_plural(
            lang,
            "Repeated {n} time in {window}, first {first}, last {last}.",
            "Repeated {n} times in {window}, first {first}, last {last}.",
            n,
        )
    return said.format(
        n=n,
        window=window,
        named=named,
        first=when(fields.get("first_at")),
        last=when(fields.get("last_at")),
    )


# A record keyed by its place in a file (the file's hash and its row): no one's name.
_PLACE = re.compile(r"^[0-9a-f]{16}:\d+$")
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$")


def localised(fields: dict[str, Any], lang: str) -> dict[str, Any]:
    """A hit's stored values as ``lang`` writes them: a field's own reading in the language
    (``X_es``) in place of ``X``, coded values and yes/no in words, dates and decimals
    localised, public holidays by their name in the language."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        reading = f"{k}_{lang}" in fields
        if reading or k.endswith(f"_{lang}"):
            v = i18n.localise_text(fields[f"{k}_{lang}"] if reading else v, lang)
            if k.startswith("holidays") and isinstance(v, str):
                v = holiday_names(v, lang)
        elif isinstance(v, list):
            v = [_localised(x, lang) for x in v]
        else:
            v = _localised(v, lang)
        out[k] = v
    return out


def _localised(value: Any, lang: str) -> Any:
    if isinstance(value, bool):
        return i18n.words("yes" if value else "no", lang)
    if isinstance(value, str) and _ISO_MOMENT.match(value):
        return i18n.moment(value, lang)
    if isinstance(value, float):
        return i18n.number(value, lang)
    if isinstance(value, str):
        return i18n.code(value, lang)
    return value


def holiday_names(names: str, lang: str) -> str:
    """Public holidays named in English (as the rules read them from the ``holidays``
    library), comma-separated, by their names in ``lang`` where the calendar has them."""
    known = _holidays(lang)
    return ", ".join(known.get(n.strip(), n.strip()) for n in names.split(","))


@functools.cache
def _holidays(lang: str) -> dict[str, str]:
    import holidays

    from detector.settings import settings

    out: dict[str, str] = {}
    years = range(1990, date.today().year + 2)
    for code in (c.strip() for c in settings().holidays.split(",") if c.strip()):
        country, _, subdivision = code.partition("-")
        try:
            english = holidays.country_holidays(
                country, subdiv=subdivision or None, years=years, language="en_US"
            )
            if lang not in english.supported_languages:
                continue
            own = holidays.country_holidays(
                country, subdiv=subdivision or None, years=years, language=lang
            )
        except NotImplementedError:
            continue
        for day, name in english.items():
            out.setdefault(name, own.get(day, name))
    return out


def rule_wording(rule: Rule, fields: dict[str, Any], lang: str) -> tuple[str, str]:
    """(title, explanation) of a rule's flag in ``lang``, from its stored values; in the
    source language exactly as a run composes it (the values as stored)."""
    text = rule.text(lang)
    values = {**rule.parameters, **fields}
    if lang == i18n.SOURCE:
        explanation = explain(text.explanation, values)
    else:
        readings = {
            k: i18n.localise_text(fields[f"{k}_{lang}"], lang)
            for k in fields
            if f"{k}_{lang}" in fields
        }
        explanation = explain(
            text.explanation, {**values, **readings}, lang, {**values, **localised(fields, lang)}
        )
    if int(fields.get("occurrences") or 0) > 1:
        explanation += " " + repeated(rule, fields, lang)
    return text.title, explanation


# --- the outlier model's flags ----------------------------------------------------------

# (the model's name, ECOD or another, is in the flag's rule id and its values; a reader is
# told what it is, not which algorithm)
MODEL_TITLE = N_("Visit out of the ordinary (outlier model)")
MODEL_EXPLANATION = N_(
    "A {role} visit at {facility} on {at} is out of place: among the rarest {share} of "
    "visits in the reference period. {reasons}."
)


def model_wording(flag: dict, fields: dict, lang: str) -> tuple[str, str]:
    """(title, explanation) of an outlier flag in ``lang``, from its stored values and
    the sentences kept for each language when it was scored."""
    reasons = ". ".join(
        t.get(f"context_{lang}") or t.get("context", "") for t in fields.get("top_features", [])
    )
    pct = float(fields.get("percentile") or 0) / 100
    role = fields.get("role") or "other"
    at = flag.get("period_start")
    english = lang == i18n.SOURCE  # the English as the run composed it: codes and ISO times
    explanation = i18n.translate(lang, MODEL_EXPLANATION).format(
        role=role if english else words(role, lang),
        facility=flag.get("facility") or "",
        at=plain(at) if english else moment(at, lang),
        share=share(1 - pct, lang),
        reasons=reasons,
    )
    return i18n.translate(lang, MODEL_TITLE), explanation


def rule_title(rule_id: str, lang: str, rules: dict | None = None) -> str:
    """What a reader calls a rule: its title in ``lang`` (the id only for a rule that is no
    longer in the rules folder)."""
    if str(rule_id).startswith("outlier-"):
        return i18n.translate(lang, MODEL_TITLE)
    rule = (rules if rules is not None else rules_by_id()).get(rule_id)
    return rule.text(i18n.known(lang)).title if rule is not None else str(rule_id)


# --- a flag's words, stored and read ------------------------------------------------------


def flag_words(flag: dict, rule: Rule | None) -> dict[str, dict[str, str]]:
    """A flag's title and explanation in every language but the source one (English, which
    the flag's own ``title`` and ``explanation`` hold as the run composed them), to be stored
    with it: from its rule (``rule``) or, for an outlier flag, from the model's wording.
    ``flag`` holds ``rule_id``, ``fields`` (a dict or JSON), ``facility`` and
    ``period_start``."""
    fields = _fields(flag)
    out = {}
    for lang in i18n.LANGUAGES:
        if lang == i18n.SOURCE:
            continue
        if str(flag.get("rule_id", "")).startswith("outlier-"):
            title, explanation = model_wording(flag, fields, lang)
        elif rule is not None:
            title, explanation = rule_wording(rule, fields, lang)
        else:
            continue
        out[lang] = {"title": title, "explanation": explanation}
    return out


def flag_wording(flag: dict, lang: str, rules: dict | None = None) -> tuple[str, str]:
    """(title, explanation) of a stored flag in ``lang``: the words stored with it when it
    was written. A flag stored before words were kept is worded from its rule as it is now
    (``rules``, id -> rule, saves reading the rule files again for each of many flags)."""
    lang = i18n.known(lang)
    if lang == i18n.SOURCE:
        return flag["title"], flag["explanation"]
    stored = flag.get("wording")
    if isinstance(stored, str):
        stored = json.loads(stored or "{}")
    if stored and lang in stored:
        return stored[lang]["title"], stored[lang]["explanation"]
    fields = _fields(flag)
    if str(flag.get("rule_id", "")).startswith("outlier-"):
        return model_wording(flag, fields, lang)
    rule = (rules if rules is not None else rules_by_id()).get(flag["rule_id"])
    if rule is None:
        return flag["title"], flag["explanation"]
    return rule_wording(rule, fields, lang)


def _fields(flag: dict) -> dict:
    fields = flag.get("fields") or {}
    return json.loads(fields or "{}") if isinstance(fields, str) else fields


def rules_by_id() -> dict:
    return {r.id: r for r in load_rules()}
