"""How a finding reads: a rule's explanation filled with a hit's values, the sentence a
repeated case adds, the outlier model's wording, and a stored flag's words in a language.

A flag keeps its words: when it is written, its title and explanation are rendered in
every language and stored with it (English in ``flags.title`` and ``flags.explanation``, the
others in ``flags.wording``, with the rule file's SHA-256 it was worded under), so that editing a rule or the catalogue never changes an old finding.
:func:`flag_wording` reads those; only flags stored before words were kept are worded
from the current rules (``detector reword`` stores words for them, on the audit trail).
"""

from __future__ import annotations

import json
import re
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


class _Quoted(dict):
    """Template values: lists joined, missing fields shown as '?' rather than failing."""

    def __missing__(self, key: str) -> str:
        return "?"


def explain(template: str, values: dict[str, Any]) -> str:
    """A template filled with a hit's values (a template quotes plain names only:
    ``detector.rulebook.plain_template`` refuses anything else when a rule is loaded)."""
    shown = _Quoted(
        {
            k: ", ".join(map(str, v)) if isinstance(v, list) else ("—" if v is None else v)
            for k, v in values.items()
        }
    )
    return template.strip().format_map(shown)


def repeated(rule: Rule, fields: dict[str, Any], lang: str) -> str:
    """The sentence a case adds to its first occurrence's explanation: how many, in which
    window, for which entity, first and last."""
    english = lang == i18n.SOURCE  # as the stored explanation already says it

    def when(value):
        return value if english else i18n.moment(value, lang)

    named = ", ".join(
        f"{k if english else i18n.field_name(k, lang).lower()} {fields.get(k)}"
        for k in (rule.group.by if rule.group else [])
    )
    n = int(fields.get("occurrences") or 0)
    window = fields.get("window")
    if isinstance(window, str) and _ISO_MOMENT.match(window):
        window = when(date.fromisoformat(window))
    return i18n.translate_plural(
        lang,
        "Repeated {n} time in {window} ({named}), first {first}, last {last}.",
        "Repeated {n} times in {window} ({named}), first {first}, last {last}.",
        n,
    ).format(
        n=n,
        window=window,
        named=named,
        first=when(fields.get("first_at")),
        last=when(fields.get("last_at")),
    )


_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$")


def localised(fields: dict[str, Any], lang: str) -> dict[str, Any]:
    """A hit's stored values as ``lang`` writes them: a field's own reading in the language
    (``X_es``) in place of ``X``, coded values in words, dates and decimals localised."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if f"{k}_{lang}" in fields:
            v = fields[f"{k}_{lang}"]
        elif isinstance(v, str) and _ISO_MOMENT.match(v):
            v = i18n.moment(v, lang)
        elif isinstance(v, float):
            v = i18n.number(v, lang)
        elif isinstance(v, str):
            v = i18n.code(v, lang)
        elif isinstance(v, list):
            v = [i18n.code(x, lang) for x in v]
        out[k] = v
    return out


def rule_wording(rule: Rule, fields: dict[str, Any], lang: str) -> tuple[str, str]:
    """(title, explanation) of a rule's flag in ``lang``, from its stored values; in the
    source language exactly as a run composes it (the values as stored)."""
    text = rule.text(lang)
    values = fields if lang == i18n.SOURCE else localised(fields, lang)
    explanation = explain(text.explanation, {**rule.parameters, **values})
    if int(fields.get("occurrences") or 0) > 1:
        explanation += " " + repeated(rule, fields, lang)
    return text.title, explanation


# --- the outlier model's flags ----------------------------------------------------------

MODEL_TITLE = N_("Visit out of place ({model} outlier)")
MODEL_EXPLANATION = N_(
    "A {role} visit at {facility} on {at} is out of place: among the rarest {share} of "
    "visits in the reference period. {reasons}."
)


def model_wording(flag: dict, fields: dict, lang: str) -> tuple[str, str]:
    """(title, explanation) of an outlier flag in ``lang``, from its stored values and
    the sentences kept for each language when it was scored."""
    model = str(flag.get("rule_id", "")).removeprefix("outlier-").upper()
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
    return i18n.translate(lang, MODEL_TITLE).format(model=model), explanation


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
