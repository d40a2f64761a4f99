"""Spanish and English: the words a person reads, and dates and numbers as their language
writes them.

Messages are written in English in the code and translated through a gettext catalogue
(Babel): ``detector/locales/<lang>/LC_MESSAGES/messages.po`` is the one file a translator
edits; it is compiled in memory when first used, so there is no build step. Strings kept
in module-level registries are marked with :func:`N_` (extracted, translated when shown);
strings shown at once go through :func:`translate`. ``tests/test_i18n.py`` extracts every
marked string with Babel and fails on one the Spanish catalogue does not translate.

Rule texts live in the rule files (an ``es:`` block beside the English one, required by
the schema); ``detector.wording`` words a flag from them. This module is the bottom layer:
it imports nothing of the project but its settings.

To add a message: mark it, then run ``scripts/i18n.sh`` (extracts and merges into the
catalogue) and write its Spanish.
"""

from __future__ import annotations

import functools
import gettext as _gettext
import io
import json
import os
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from detector.settings import language as language_setting

LANGUAGES: dict[str, str] = {"es": "Español", "en": "English"}
SOURCE = "en"  # the language the code is written in
LOCALES = Path(__file__).parent / "locales"


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it here (registries)."""
    return message


def default_language() -> str:
    """``$DETECTOR_LANGUAGE`` (``es`` or ``en``); Spanish when unset, for the first users."""
    return language_setting()


def known(lang: str | None) -> str:
    """The language itself when supported, else the default."""
    return lang if lang in LANGUAGES else default_language()


@functools.cache
def translations(lang: str) -> _gettext.NullTranslations:
    """The catalogue of ``lang``, compiled from its ``.po`` file. The compiled form is kept
    beside it (``messages.mo``, rebuilt whenever the ``.po`` is newer) so that a command
    loads it without Babel; where that folder cannot be written it is compiled in memory."""
    if lang == SOURCE:
        return _gettext.NullTranslations()
    po = LOCALES / lang / "LC_MESSAGES" / "messages.po"
    mo = po.with_suffix(".mo")
    try:
        if mo.stat().st_mtime_ns >= po.stat().st_mtime_ns:
            with mo.open("rb") as handle:
                return _gettext.GNUTranslations(handle)
    except (OSError, ValueError):
        pass
    compiled = _compile(po, lang)
    try:  # written whole, then renamed: a reader never sees half a file
        part = mo.with_name(f".{mo.name}.{os.getpid()}")
        part.write_bytes(compiled)
        os.replace(part, mo)
    except OSError:
        pass
    return _gettext.GNUTranslations(io.BytesIO(compiled))


def _compile(po: Path, lang: str) -> bytes:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


class Said(str):
    """A sentence in English (the code's language) that can be said in another: the
    catalogue entry it was made from and its values ride along (:func:`said`)."""

    template: str
    values: dict

    def __new__(cls, template: str, **values):
        sentence = super().__new__(cls, template.format(**values))
        sentence.template, sentence.values = template, values
        return sentence

    def said(self, lang: str) -> str:
        return translate(lang, self.template).format(**self.values)


def said(message: str, lang: str) -> str:
    """A message in ``lang`` when it was made from a catalogue entry (:class:`Said`)."""
    return message.said(lang) if isinstance(message, Said) else str(message)


def translate(lang: str, message: str) -> str:
    return translations(known(lang)).gettext(message) if message else message


def translate_plural(lang: str, singular: str, plural: str, n: int) -> str:
    return translations(known(lang)).ngettext(singular, plural, n)


# --- dates and numbers ---------------------------------------------------------------------

# Dates and times are written with digits only (no month names), so they need no locale
# data: a plain strftime pattern per language.
_MOMENT = {"es": "%d/%m/%Y %H:%M", "en": "%Y-%m-%d %H:%M"}
_DAY = {"es": "%d/%m/%Y", "en": "%Y-%m-%d"}


def number(value: float | int | None, lang: str, decimals: int | None = None) -> str:
    """``1.234,5`` in Spanish, ``1,234.5`` in English; blank for nothing."""
    if value is None:
        return ""
    from babel.numbers import format_decimal

    # Spanish groups thousands from five digits on (CLDR's minimum grouping digits, which
    # babel does not apply): 2991, 12.345.
    grouping = "" if known(lang) == "es" and abs(value) < 10_000 else "#,##"
    fraction = "###" if decimals is None else "0" * decimals
    pattern = grouping + "0" + ("." + fraction if fraction else "")
    return format_decimal(value, format=pattern, locale=known(lang))


def moment(value: datetime | date | str | None, lang: str) -> str:
    """A date and time as the language writes it (24 hours): ``01/06/2019 21:00``."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return _moment_text(value, known(lang))
    if isinstance(value, datetime):
        return value.strftime(_MOMENT[known(lang)])
    return value.strftime(_DAY[known(lang)])


@functools.lru_cache(maxsize=4096)
def _moment_text(value: str, lang: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if len(value) == 10:  # a date alone
        return parsed.strftime(_DAY[lang])
    return parsed.strftime(_MOMENT[lang])


_ISO_IN_TEXT = re.compile(
    r"(?<![\w-])(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2})(?::\d{2})?)?(?![\w-])"
)
_DECIMAL_IN_TEXT = re.compile(r"(?<![\w.,])(\d+\.\d+)(?!\d)(?![.,]\d)")


def localise_text(text: str, lang: str) -> str:
    """A sentence composed in one language's figures (a query's ``X_es`` reading: "estuvo
    13.5 h", "desde 2019-07-15") with its dates, times and decimals as ``lang`` writes them."""
    if known(lang) == "en" or not isinstance(text, str):
        return text

    def when(m: re.Match) -> str:
        day = date.fromisoformat(m[1])
        if m[2] is None:
            return moment(day, lang)
        return moment(datetime.fromisoformat(f"{m[1]} {m[2]}"), lang)

    text = _ISO_IN_TEXT.sub(when, text)
    return _DECIMAL_IN_TEXT.sub(lambda m: number(float(m[1]), lang), text)


def weekday(n: int, lang: str) -> str:
    """ISO weekday (1 = Monday) as a word: ``lunes``, ``Monday``."""
    from babel.dates import get_day_names

    return get_day_names("wide", locale=known(lang))[(int(n) - 1) % 7]


def weekdays(lang: str) -> list[str]:
    return [weekday(n, lang) for n in range(1, 8)]


# --- coded values and field names ----------------------------------------------------------

# Coded values the tool writes (statuses, severities, categories, roles, sources, states,
# problems found in rows): the word a person reads, per column it appears in.
CODES: dict[str, str] = {
    # review statuses
    "new": N_("new"),
    "in_review": N_("in review"),
    "confirmed": N_("confirmed"),
    "dismissed": N_("dismissed"),
    "needs_external_verification": N_("needs external verification"),
    # dismissal reasons
    "false_positive": N_("false positive"),
    "benign": N_("benign"),
    "duplicate": N_("duplicate"),
    "data_error": N_("data error"),
    "out_of_scope": N_("out of scope"),
    # a folio's side (``page_side``): the back of the sheet
    "verso": N_("verso"),
    # severities
    "informational": N_("informational"),
    "low": N_("low"),
    "medium": N_("medium"),
    "high": N_("high"),
    "critical": N_("critical"),
    # categories
    "unidentified_entrant": N_("unidentified entrant"),
    "logbook_gap": N_("logbook gap"),
    "medical_transfer": N_("medical transfer"),
    "visit_pattern": N_("visit pattern"),
    "vehicle": N_("vehicle"),
    "data_quality": N_("data quality"),
    "access_events": N_("access events"),
    # roles
    "family": N_("family"),
    "lawyer": N_("lawyer"),
    "official": N_("official"),
    "staff": N_("staff"),
    "contractor": N_("contractor"),
    "ngo": N_("aid worker"),
    "police": N_("police"),
    "other": N_("other"),
    # how a name was written
    "named": N_("named"),
    "placeholder": N_("placeholder"),
    "redacted": N_("redacted"),
    "blank": N_("blank"),
    "not_recorded": N_("not recorded by the file"),
    # what found a flag, and its state
    "rule": N_("rule"),
    "model": N_("outlier model"),
    "active": N_("active"),
    "resolved_by_data": N_("resolved by later data"),
    # record kinds
    "visits": N_("visits"),
    "transfers": N_("transfers"),
    "inmates": N_("inmates"),
    "logbooks": N_("logbooks"),
    "facilities": N_("facilities"),
    "events": N_("reader events"),
    "zones": N_("zones"),
    "absences": N_("staff away (leave roster)"),
    "headcounts": N_("daily headcounts"),
    # run kinds and outcomes
    "rules": N_("rules"),
    "score": N_("scoring"),
    "persons": N_("identity linkage"),
    "ingest": N_("ingest"),
    "running": N_("running"),
    "ok": N_("ok"),
    "failed": N_("failed"),
    "partial": N_("partial"),
    # an upload's outcome (``IngestResult.status``; "nothing_stored": every row set aside)
    "stored": N_("stored"),
    "nothing_stored": N_("nothing stored"),
    # problems of a row (the quarantine's reason codes)
    "closed_before_opened": N_("closed before opened"),
    "ends_before_start": N_("back before away"),
    "duplicate_in_file": N_("duplicate in the file"),
    "conflicts_with_stored": N_("stored before with other values"),
    "exit_before_entry": N_("exit before entry"),
    "implausible_date": N_("implausible date"),
    "invalid_number": N_("invalid number"),
    "missing_required": N_("required field empty"),
    "negative_number": N_("negative number"),
    "nul_byte": N_("damaged line (NUL byte)"),
    "pages_reversed": N_("pages reversed"),
    "return_before_transfer": N_("return before transfer"),
    "unknown_facility": N_("unknown facility"),
    "unparseable_date": N_("unreadable date"),
    "wrong_field_count": N_("wrong number of fields"),
    # which way a reader saw someone go
    "in": N_("in"),
    "out": N_("out"),
    # what the reader answered; a zone's yes or no (strict)
    "granted": N_("granted"),
    "denied": N_("denied"),
    "yes": N_("yes"),
    "no": N_("no"),
    "paired": N_("entry and exit"),
    "no_exit": N_("entry with no exit"),
    "no_entry": N_("exit with no entry"),
    # how far a rule is trusted
    "stable": N_("stable"),
    "experimental": N_("experimental"),
    "deprecated": N_("deprecated"),
    # dashboard roles
    "admin": N_("administrator"),
    "auditor": N_("auditor"),
    "viewer": N_("viewer"),
    # review actions
    "status": N_("status"),
    "assign": N_("assignment"),
    "note": N_("note"),
    "suppress": N_("suppression"),
    "person_merge": N_("persons merged"),
    "person_split": N_("person split"),
    "reopen_on_new": N_("re-open on new occurrences"),
    "reword": N_("re-worded from the rule as it is now"),
    # the part a person plays in a row (identity linkage)
    "visitor": N_("visitor"),
    "escort": N_("escort or host"),
    "authoriser": N_("authoriser"),
    "badge_holder": N_("badge holder"),
    # what a suppression names
    "facility": N_("facility"),
    "person": N_("person"),
    "plate": N_("plate"),
    # custody of a logbook
    "in_custody": N_("in custody"),
    "missing": N_("missing"),
    "removed": N_("removed"),
    "destroyed": N_("destroyed"),
    # gang rank, security level, transfer reasons, facility kinds
    "leader": N_("leader"),
    "member": N_("member"),
    "maximum": N_("maximum"),
    "unknown": N_("unknown"),
    "medical": N_("medical"),
    "medical_return": N_("return from hospital"),
    "security": N_("security"),
    "court": N_("court"),
    "relocation": N_("relocation"),
    "hospital": N_("hospital"),
    "prison": N_("prison"),
}


# What a quarantined row is told, by its reason code: the English is stored with the row
# (``quarantine.reason``), the values beside it (``quarantine.reason_values``, JSON), so the
# row reads in any language; ``{field}`` is the field (its heading when translated).
REASONS: dict[str, str] = {
    "missing_required": N_("required field {field} is empty"),
    "invalid_number": N_("{field} '{value}' is not a whole number"),
    "negative_number": N_("{field} {value} is negative"),
    "unparseable_date": N_(
        "{field} '{value}' is not a date/time this tool can read "
        "(expected ISO 8601 or {order} order)"
    ),
    "implausible_date": N_(
        "{field} '{value}' reads as the year {year}, outside {first}-{last} "
        "(a transcription error?)"
    ),
    "unknown_facility": N_(
        "{field} '{value}' is not in the facilities list (by code or name as the list "
        "writes it: {known})"
    ),
    "exit_before_entry": N_("exit {value} is before entry {earlier}"),
    "return_before_transfer": N_("return {value} is before the transfer {earlier}"),
    "closed_before_opened": N_("closed {value} before it was opened {earlier}"),
    "pages_reversed": N_("last page {value} is before first page {earlier}"),
    "ends_before_start": N_("back {value} before away {earlier}"),
    "nul_byte": N_("the row contains a NUL byte (damaged file)"),
    "duplicate_in_file": N_("duplicate of an earlier row in this file (key {key})"),
    "conflicts_with_stored": N_(
        "record {key} was already stored from {file} row {row} with other values "
        "({fields}): a copy sent again with changes"
    ),
    "wrong_field_count": N_("row has {found} fields, the header has {expected}"),
}


# Field and column names as headings: the database's own names never reach a reader.
FIELDS: dict[str, str] = {
    "flag_id": N_("Flag"),
    "risk": N_("Risk"),
    "status": N_("Status"),
    "review_status": N_("Status"),
    "assignee": N_("Assigned to"),
    "severity": N_("Severity"),
    "category": N_("Category"),
    "rule_id": N_("Rule"),
    "facility": N_("Facility"),
    "period_start": N_("From"),
    "period_end": N_("To"),
    "explanation": N_("Explanation"),
    "source": N_("Found by"),
    "state": N_("State"),
    "kind": N_("Kind"),
    "record_id": N_("Record"),
    "record_key": N_("Record key"),
    "key_hash": N_("Record key hash"),
    "file": N_("File"),
    "row": N_("Row"),
    "logbook": N_("Book"),
    "page": N_("Page"),
    "page_side": N_("Side of the folio"),
    "line": N_("Line"),
    "sha256": N_("SHA-256"),
    "source_name": N_("File"),
    "source_row": N_("Row"),
    "source_sha256": N_("File SHA-256"),
    "source_sheet": N_("Sheet"),
    "checkpoint": N_("Checkpoint"),
    "entered_at": N_("Entered"),
    "exited_at": N_("Left"),
    "name": N_("Name"),
    "name_key": N_("Name (folded)"),
    "name_status": N_("Name written"),
    "id_type": N_("Document type"),
    "id_number": N_("Document"),
    "role": N_("Role"),
    "organization": N_("Organisation"),
    "escorted_by": N_("Escorted by"),
    "escorted_key": N_("Escort (folded)"),
    "host": N_("Person visited"),
    "host_key": N_("Person visited (folded)"),
    "inmate_id": N_("Inmate"),
    "purpose": N_("Purpose"),
    "vehicle_plate": N_("Plate"),
    "plate_key": N_("Plate (folded)"),
    "party_size": N_("Party size"),
    "party_id": N_("Party"),
    "authorized_by": N_("Authorised by"),
    "entered_precision": N_("Time known to"),
    "seq": N_("Entry"),
    "original_name": N_("File"),
    "uploaded_by": N_("Uploaded by"),
    "uploaded_at": N_("Uploaded at"),
    "format": N_("Format"),
    "encoding": N_("Encoding"),
    "delimiter": N_("Delimiter"),
    "mapping": N_("Mapping"),
    "rows_read": N_("Rows read"),
    "rows_stored": N_("Rows stored"),
    "rows_quarantined": N_("Rows quarantined"),
    "rows_duplicate": N_("Rows already stored"),
    "size": N_("Bytes"),
    "entry_hash": N_("Entry hash"),
    "prev_hash": N_("Previous entry hash"),
    "rows_digest": N_("Rows digest"),
    "run_id": N_("Run"),
    "triggered_by": N_("Started by"),
    "started_at": N_("Started"),
    "ended_at": N_("Ended"),
    "counts": N_("Counts"),
    "errors": N_("Errors"),
    "scope": N_("Scope"),
    "field": N_("Field"),
    "reason_code": N_("Problem"),
    "reason": N_("Reason"),
    "reason_values": N_("Values of the reason"),
    "example": N_("Example as written"),
    "raw": N_("Row as read"),
    "acted_at": N_("When"),
    "actor": N_("Who"),
    "action": N_("Action"),
    "old": N_("Before"),
    "new": N_("After"),
    "note": N_("Note"),
    "username": N_("User"),
    "job": N_("Job"),
    "when": N_("When"),
    "next run": N_("Next run"),
    "visits": N_("Visits"),
    "escorted_visits": N_("Visits they escorted or authorised"),
    "hosted_visits": N_("Visits received"),
    "total_risk": N_("Total risk"),
    "max_risk": N_("Highest risk"),
    "distinct_evidence": N_("Distinct evidence"),
    "ddl_sha256": N_("Schema SHA-256"),
    "readers_read": N_("Readers (reads)"),
    "evidence_days": N_("Days with evidence"),
    "evidence_places": N_("Places with evidence"),
    "high_risk_visits": N_("Visits of risk 0.5 or more"),
    "visits_with_rule_hits": N_("Visits with rule flags"),
    "rarest_visits": N_("Among the rarest 0.1%"),
    "mean_outlier_pct": N_("Mean outlier percentile"),
    "roles": N_("Roles"),
    "facilities": N_("Facilities"),
    "person": N_("Person"),
    "person_id": N_("Person id"),
    "escort_person_id": N_("Escort's person id"),
    "inmates": N_("Inmates visited"),
    "other_name": N_("Other name"),
    "hours_apart": N_("Hours apart"),
    "part": N_("Written as"),
    "mention_key": N_("Spelling"),
    "match_weight": N_("Match weight"),
    "match_probability": N_("Match probability"),
    "canonical": N_("Name's words"),
    "words": N_("Words"),
    "sounds": N_("Sounds"),
    "sounds_key": N_("How the name sounds"),
    "commonness": N_("How common the name is"),
    "first_seq": N_("First upload"),
    "row_count": N_("Rows written"),
    "linked_to": N_("Linked to"),
    "other_key": N_("Other spelling"),
    "accepted": N_("Linked"),
    "mentions": N_("Spellings"),
    "new_mentions": N_("New spellings"),
    "persons": N_("Persons"),
    "joined": N_("Links made"),
    "threshold": N_("Threshold"),
    "trained": N_("Training"),
    "others": N_("Kept apart from"),
    "acted_by": N_("By"),
    "spellings": N_("Spellings"),
    "documents": N_("Documents"),
    "badges": N_("Badges"),
    "plates": N_("Plates"),
    "official": N_("Official"),
    "inmate": N_("Inmate"),
    "gang": N_("Gang"),
    "rank": N_("Rank"),
    "transferred_at": N_("Transferred"),
    "from_facility": N_("From facility"),
    "to_facility": N_("To facility"),
    "approved_by": N_("Approved by"),
    "medical_approval": N_("Medical approval"),
    "returned_at": N_("Returned"),
    "opened_on": N_("Opened"),
    "starts_on": N_("Away from"),
    "counted_on": N_("Counted on"),
    "readers": N_("Readers"),
    "stored_file": N_("Stored from file"),
    "stored_row": N_("Stored from row"),
    "changed": N_("Values changed"),
    "reads": N_("Reads"),
    "unnamed_readers": N_("Readers not in the zones list"),
    "reader_key": N_("Reader (folded)"),
    "zone_key": N_("Zone (folded)"),
    "population": N_("Inmates counted"),
    "shift": N_("Shift"),
    "counted_by": N_("Counted by"),
    "counted_before": N_("Days counted in the four weeks before"),
    "written_before": N_("Of them, days with lines written"),
    "weekday_counted": N_("Of them, on the same weekday"),
    "weekday_written": N_("Of those, days with lines written"),
    "together": N_("Came in together with"),
    "ends_on": N_("Away until"),
    "closed_on": N_("Closed"),
    "first_page": N_("First page"),
    "last_page": N_("Last page"),
    "custody_status": N_("Custody"),
    "seen_at": N_("Seen at"),
    "badge": N_("Badge"),
    "reader": N_("Reader"),
    "zone": N_("Zone"),
    "zone_of": N_("Zone passed"),
    "inside": N_("Inside of"),
    "direction": N_("Direction"),
    "outcome": N_("Reader's answer"),
    "strict": N_("Badge every passage"),
    "source_system": N_("Source system"),
    "person_key": N_("Person (folded)"),
    "event_flags": N_("Flags on reader events"),
    "in_key": N_("Entry read"),
    "out_key": N_("Exit read"),
    "pairing": N_("Pairing"),
    "place": N_("Reader or checkpoint"),
    "event_occurrences": N_("Times on reader events"),
    "event_risk": N_("Risk from reader events"),
    "language": N_("Language"),
    # values the rules quote (the "values that made the rule fire" table)
    "book_after": N_("Book after"),
    "book_before": N_("Book before"),
    "book_facility": N_("Facility of the logbook"),
    "books": N_("Books"),
    "case": N_("Case"),
    "co_leaders": N_("Co-leaders there"),
    "companions": N_("Companions"),
    "context": N_("Meanwhile"),
    "days_away": N_("Days away"),
    "declared": N_("Declared"),
    "destination": N_("Destination"),
    "destination_kind": N_("Kind of destination"),
    "entries": N_("Entries"),
    "entry_time": N_("Time of entry"),
    "expected": N_("Entries expected"),
    "expected_staff": N_("Staff entries expected"),
    "expected_visitors": N_("Visitor entries expected"),
    "first_at": N_("First"),
    "last_at": N_("Last"),
    "gangs": N_("Gangs"),
    "holidays_in_gap": N_("Holidays in the gap"),
    "hours": N_("Hours"),
    "inmates_seen": N_("Inmates seen"),
    "inside_from": N_("Inside from"),
    "inside_until": N_("Inside until"),
    "leader_share": N_("Share of leaders"),
    "leaders": N_("Leaders"),
    "line_after": N_("Line after"),
    "line_before": N_("Line before"),
    "lines": N_("Lines"),
    "magnitude": N_("Entries it hides"),
    "matched_pct": N_("Lines read at the gate (%)"),
    "minors": N_("Minors stated"),
    "minutes": N_("Minutes"),
    "missing": N_("Missing"),
    "missing_books": N_("Missing books"),
    "missing_pages": N_("Missing pages"),
    "named_lines": N_("Named lines"),
    "names": N_("Names"),
    "night_visits": N_("Visits at night"),
    "observed": N_("Entries written"),
    "occurrences": N_("Occurrences"),
    "official_key": N_("Official (folded)"),
    "other_facility": N_("Other facility"),
    "other_reader": N_("Other reader"),
    "outer_read": N_("Read at the zone around it"),
    "outer_zone": N_("Zone around it"),
    "people": N_("People"),
    "plate": N_("Plate"),
    "problem": N_("Problem"),
    "reasons": N_("Reasons"),
    "returned": N_("Returned"),
    "rows": N_("Rows"),
    "silent": N_("Silent source"),
    "times": N_("Times"),
    "unnamed": N_("Without a name"),
    "where_": N_("Where"),
    "why": N_("Why"),
    "window": N_("Window"),
    "written": N_("Written"),
    "written_as": N_("Written as"),
    "body": N_("Content"),
    "config": N_("Settings"),
    "content_hash": N_("Content SHA-256"),
    "created_at": N_("Created at"),
    "created_by": N_("Created by"),
    "entity": N_("Applies to"),
    "entity_key": N_("Applies to (folded)"),
    "entity_kind": N_("Applies to a"),
    "evidence": N_("Evidence"),
    "factor": N_("Weight factor"),
    "features": N_("Features"),
    "fields": N_("Values"),
    "first_run": N_("First run"),
    "first_seen": N_("First seen"),
    "last_run": N_("Last run"),
    "last_seen": N_("Last seen"),
    "fit_from": N_("Fitted from"),
    "fit_to": N_("Fitted to"),
    "fit_rows": N_("Visits fitted"),
    "fitted_at": N_("Fitted at"),
    "happened_at": N_("Happened at"),
    "label": N_("Label"),
    "model": N_("Model"),
    "model_id": N_("Model"),
    "outlier_pct": N_("Outlier percentile"),
    "outlier_score": N_("Outlier score"),
    "record_ids": N_("Records"),
    "record_keys": N_("Record keys"),
    "reopen_on_new": N_("Re-open on new occurrences"),
    "risk_score": N_("Risk"),
    "role_hours": N_("Hours per role"),
    "rule_score": N_("Rule part of the risk"),
    "rules": N_("Rules"),
    "saved_at": N_("Saved at"),
    "saved_by": N_("Saved by"),
    "score": N_("Risk"),
    "security_level": N_("Security level"),
    "subject": N_("Subject"),
    "title": N_("Title"),
    "top_features": N_("Main reasons"),
    "until": N_("Until"),
    "updated_at": N_("Updated at"),
    "updated_by": N_("Updated by"),
    "upload_seq": N_("Upload"),
    "version": N_("Version"),
    "visiting_hours": N_("Visiting hours"),
    "watermark": N_("Up to upload"),
    "weight_factor": N_("Weight factor"),
    "confirmed": N_("Confirmed"),
    "dismissed": N_("Dismissed (false or benign)"),
    "since_run": N_("Since run"),
    "changed_at": N_("Changed at"),
    "weight_from": N_("From"),
    "weight_to": N_("To"),
    "not_returned": N_("Not returned"),
    "transfers": N_("Transfers"),
    "value": N_("Value"),
    "samples": N_("Sample values"),
    "column": N_("Column"),
    "wording": N_("Words as raised"),
    "rule_version": N_("Rule version (SHA-256)"),
    # what a scoring run counted
    "scored": N_("Visits scored"),
    "affected": N_("Visits whose risk was recomputed"),
    "model_flags": N_("Outlier flags"),
}


def field_name(name: str, lang: str) -> str:
    """A field's heading in ``lang`` (``period_start`` → ``Desde``); an unknown one with
    its underscores as spaces."""
    if name in FIELDS:
        return translate(lang, FIELDS[name])
    if name.endswith("_raw") and name[:-4] in FIELDS:  # the value as the file wrote it
        return translate(lang, "{field} as written").format(field=field_name(name[:-4], lang))
    return name.replace("_", " ").capitalize()


def reason_wording(code: str, field: str, values: str | None, stored: str, lang: str) -> str:
    """A quarantined row's reason in ``lang``, from its code and values; the stored English
    sentence in English, or when the row was quarantined before its values were kept."""
    template = REASONS.get(code)
    if lang == SOURCE or template is None or values is None:
        return stored
    filled = _Dashed({k: "—" if v is None else v for k, v in json.loads(values).items()})
    filled["field"] = field if field in ("*", "record_key") else field_name(field, lang)
    return translate(lang, template).format_map(filled)


class _Dashed(dict):
    """Values for a template, a dash for one a row set aside by an earlier release did not
    keep (a reason's wording may quote more than it did then)."""

    def __missing__(self, key: str) -> str:
        return "—"


def code(value: Any, lang: str) -> Any:
    """A coded value in words (``in_review`` → ``en revisión``); other values unchanged."""
    if isinstance(value, str) and value in CODES:
        return translate(lang, CODES[value])
    return value


def cited_page(item: dict, lang: str) -> Any:
    """The page an evidence item (``flags.evidence``) cites: its number, and "verso" (in
    ``lang``) when the line is on the back of that folio."""
    page = item.get("page")
    if page in (None, "") or item.get("page_side") != "verso":
        return page
    return f"{page} {code('verso', lang)}"


def words(value: str | None, lang: str) -> str | None:
    """A coded value in words, or an unknown code with its underscores as spaces."""
    if value is None:
        return None
    return translate(lang, CODES[value]) if value in CODES else value.replace("_", " ")


# --- the audit trail's values ---------------------------------------------------------

_SUPPRESSION = re.compile(
    r"^(?P<rule>\S+) for (?P<kind>facility|person|plate) (?P<entity>.*) "
    r"until (?P<until>\d{4}-\d{2}-\d{2})$"
)
_WITH_REASON = re.compile(r"^(?P<code>[a-z_]+) \((?P<reason>[a-z_]+)\)$")


def audit_value(action: str | None, value: str | None, lang: str, rule_title=None) -> str:
    """An audit row's "before" or "after" as a person reads it: a status in words (with its
    dismissal reason), a yes or no, a suppression as a sentence (``rule_title`` words a rule
    id); a user name or a note as written. (Rows keep what was recorded: ``True``/``False``
    from before yes and no were written, English sentences of suppressions.)"""
    if value is None or value == "":
        return ""
    if action == "reopen_on_new":
        value = {"True": "yes", "False": "no"}.get(value, value)
        return words(value, lang) or ""
    if action == "status":
        m = _WITH_REASON.match(value)
        if m:
            return f"{words(m['code'], lang)} ({words(m['reason'], lang)})"
        return words(value, lang) or ""
    if action == "suppress":
        m = _SUPPRESSION.match(value)
        if m:
            return translate(lang, "{rule}, for the {kind} {entity}, until {until}").format(
                rule=rule_title(m["rule"]) if rule_title else m["rule"],
                kind=words(m["kind"], lang),
                entity=m["entity"],
                until=moment(date.fromisoformat(m["until"]), lang),
            )
    return value


# --- shares ------------------------------------------------------------------------------


def share(fraction: float, lang: str = "en") -> str:
    """A small share as a person says it: "0.05%", "1 in 2,000" ("0,05 %", "1 de cada 2.000")."""
    if fraction <= 0:
        fraction = 0.0001
    if fraction >= 0.0001:
        figure = float(f"{100 * fraction:.2g}")
        shown = f"{figure:g}" if lang == "en" else number(figure, lang)
        return translate(lang, "{share}%").format(share=shown)
    n = round(1 / fraction)
    return translate(lang, "1 in {n}").format(n=f"{n:,}" if lang == "en" else number(n, lang))
