"""Case dossier: selected flags as a printable HTML document (Spanish or English)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from jinja2 import Environment, select_autoescape

from detector import i18n
from detector.flags import FlagQuery, read_flags
from detector.i18n import N_
from detector.store import Store
from detector.wording import flag_wording, rule_title, rules_by_id

# The dossier's headings (through the catalogue, in the dossier's language).
LABELS = {
    "title": N_("Case dossier"),
    "generated": N_("Generated"),
    "by": N_("by"),
    "rule": N_("Rule"),
    "severity": N_("Severity"),
    "category": N_("Category"),
    "facility": N_("Facility"),
    "period": N_("Period"),
    "status": N_("Review status"),
    "assignee": N_("Assigned to"),
    "note": N_("Review note"),
    "evidence": N_("Evidence"),
    "file": N_("Source file"),
    "row": N_("Row"),
    "logbook": N_("Logbook"),
    "page": N_("Page"),
    "line": N_("Line"),
    "record": N_("Record"),
    "history": N_("Review history"),
    "when": N_("When"),
    "who": N_("Who"),
    "action": N_("Action"),
    "files": N_("Source files and their SHA-256"),
    "none": N_("none"),
    "intro": N_(
        "Each finding below states what was expected, what was found, and where the "
        "evidence is. The SHA-256 of every source file lets anyone check that the evidence "
        "has not changed since it was received."
    ),
}


TEMPLATE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<title>{{ t.title }}</title>
<style>
 body { font-family: Georgia, serif; margin: 2em; color: #111; }
 h1 { margin-bottom: 0; } .meta { color: #555; margin-top: .2em; }
 section { page-break-inside: avoid; border-top: 2px solid #333; margin-top: 1.5em; }
 table { border-collapse: collapse; width: 100%; font-size: .85em; margin: .5em 0; }
 th, td { border: 1px solid #999; padding: .25em .4em; text-align: left; vertical-align: top; }
 .sev-critical, .sev-high { color: #a00; font-weight: bold; } code { font-size: .8em; }
 @media print { body { margin: 1cm; } }
</style></head><body>
<h1>{{ t.title }}</h1>
<p class="meta">{{ t.generated }} {{ generated }} {{ t.by }} {{ user }} · {{ count }}</p>
<p>{{ t.intro }}</p>
{% for f in flags %}
<section>
<h2>{{ loop.index }}. {{ f.title }}</h2>
<p>{{ f.explanation }}</p>
<table>
<tr><th>{{ t.rule }}</th><td><code>{{ f.rule_id }}</code> ({{ f.source|word }})</td>
    <th>{{ t.severity }}</th><td class="sev-{{ f.severity }}">{{ f.severity|word }}</td></tr>
<tr><th>{{ t.category }}</th><td>{{ f.category|word }}</td><th>{{ t.facility }}</th><td>{{ f.facility or '' }}</td></tr>
<tr><th>{{ t.period }}</th><td>{{ f.period_start|moment }} – {{ f.period_end|moment }}</td>
    <th>{{ t.status }}</th><td>{{ f.status|word }}{% if f.reason %} ({{ f.reason|word }}){% endif %}</td></tr>
<tr><th>{{ t.assignee }}</th><td>{{ f.assignee or t.none }}</td><th>{{ t.note }}</th><td>{{ f.note or '' }}</td></tr>
</table>
<h3>{{ t.evidence }}</h3>
<table><tr><th>{{ t.record }}</th><th>{{ t.file }}</th><th>{{ t.row }}</th><th>{{ t.logbook }}</th>
<th>{{ t.page }}</th><th>{{ t.line }}</th><th>SHA-256</th></tr>
{% for e in f.evidence %}<tr><td>{{ e.record_id or e.record_key }}</td><td>{{ e.file }}</td><td>{{ e.row }}</td>
<td>{{ e.logbook or '' }}</td><td>{{ e.page or '' }}</td><td>{{ e.line or '' }}</td><td><code>{{ e.sha256[:16] }}…</code></td></tr>
{% endfor %}</table>
{% if f.history %}<h3>{{ t.history }}</h3>
<table><tr><th>{{ t.when }}</th><th>{{ t.who }}</th><th>{{ t.action }}</th><th></th><th>{{ t.note }}</th></tr>
{% for h in f.history %}<tr><td>{{ h.acted_at|moment }}</td><td>{{ h.actor }}</td><td>{{ h.action|word }}</td>
<td>{{ h.old|audit(h.action) }} → {{ h.new|audit(h.action) }}</td><td>{{ h.note or '' }}</td></tr>{% endfor %}
</table>{% endif %}
</section>
{% endfor %}
<section><h2>{{ t.files }}</h2>
<table>{% for name, sha in files %}<tr><td>{{ name }}</td><td><code>{{ sha }}</code></td></tr>{% endfor %}</table>
</section>
</body></html>
"""


def render(store: Store, flag_ids: list[str], user: str, lang: str = "en") -> str:
    """The dossier of the given flags, in order, as a self-contained HTML page, in ``lang``
    (headings, titles, explanations, coded values, dates)."""
    if lang not in i18n.LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(i18n.LANGUAGES)}")
    every = FlagQuery(
        flag_ids=list(flag_ids), include_resolved=True, include_suppressed=True, include_closed=True
    )
    found = {
        f["flag_id"]: f
        for f in read_flags(store, every).rename({"review_status": "status"}).to_dicts()
    }
    with store.read() as con:
        log = con.execute(
            "SELECT flag_id, acted_at, actor, action, old, new, note FROM review_log "
            "WHERE flag_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY acted_at",
            [flag_ids],
        ).fetchall()
    flags = []
    for fid in flag_ids:
        if fid not in found:
            continue
        f = found[fid]
        f["fields"] = json.loads(f["fields"] or "{}")
        f["title"], f["explanation"] = flag_wording(f, lang)
        f["evidence"] = [
            {**e, "page": i18n.cited_page(e, lang)} for e in json.loads(f["evidence"] or "[]")
        ]
        f["history"] = [
            dict(
                zip(
                    ("flag_id", "acted_at", "actor", "action", "old", "new", "note"), h, strict=True
                )
            )
            for h in log
            if h[0] == fid
        ]
        flags.append(f)
    files = sorted({(e["file"], e["sha256"]) for f in flags for e in f["evidence"]})
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["word"] = lambda v: i18n.code(v, lang)
    env.filters["moment"] = lambda v: i18n.moment(v, lang)
    rules = rules_by_id()
    env.filters["audit"] = lambda v, action: i18n.audit_value(
        action, v, lang, lambda rule: rule_title(rule, lang, rules)
    )
    return env.from_string(TEMPLATE).render(
        lang=lang,
        t={k: i18n.translate(lang, v) for k, v in LABELS.items()},
        count=i18n.translate_plural(lang, "{n} finding", "{n} findings", len(flags)).format(
            n=len(flags)
        ),
        flags=flags,
        files=files,
        user=user,
        generated=i18n.moment(datetime.now(UTC), lang) + " UTC",
    )
