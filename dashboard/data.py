"""All database access of the dashboard: parameterised queries only, one connection per call.

Pages call these helpers and never hold a connection across reruns: DuckDB lets one
process write at a time and then locks every other process out, so each call opens,
reads and closes. Actions go through detector.review / detector.ingest, which check the
actor's role on the server side.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import polars as pl

from detector.flags import QUEUE_COLUMNS, FlagQuery, count_flags, read_flags
from detector.i18n import CODES, N_, reason_wording
from detector.mapping import fold_text
from detector.risk import SEVERITIES
from detector.rulebook import categories
from detector.schema import KINDS, SPECS
from detector.store import Store


def queue(store: Store, flt: FlagQuery, page: int = 0, page_size: int = 50) -> pl.DataFrame:
    """One page of flags, riskiest first."""
    return read_flags(store, flt, QUEUE_COLUMNS, limit=page_size, offset=page * page_size)


def export_frame(store: Store, flt: FlagQuery) -> pl.DataFrame:
    """Every flag the filter shows, with the export columns, riskiest first."""
    return read_flags(store, flt)


def queue_counts(store: Store, flt: FlagQuery) -> dict[str, int]:
    return count_flags(store, flt, "category")


def filter_options(store: Store) -> dict[str, list[str]]:
    with store.read() as con:

        def col(sql: str) -> list[str]:
            return [r[0] for r in con.execute(sql).fetchall() if r[0] is not None]

        return {
            "rules": col("SELECT DISTINCT rule_id FROM flags ORDER BY 1"),
            "facilities": col("SELECT DISTINCT facility FROM flags ORDER BY 1"),
            "assignees": col("SELECT DISTINCT assignee FROM reviews ORDER BY 1"),
            "severities": list(SEVERITIES),
            "categories": categories(),
        }


def flag(store: Store, flag_id: str) -> dict | None:
    """One flag with its review (any state), its evidence and values decoded."""
    every = FlagQuery(
        flag_ids=[flag_id], include_resolved=True, include_suppressed=True, include_closed=True
    )
    rows = read_flags(store, every).rename({"review_status": "status"}).to_dicts()
    if not rows:
        return None
    out = rows[0]
    out["evidence"] = json.loads(out["evidence"] or "[]")
    out["fields"] = json.loads(out["fields"] or "{}")
    return out


def evidence_records(
    store: Store, record_keys: list[str], lang: str = "en"
) -> dict[str, pl.DataFrame]:
    """The original values of a flag's records, per kind, with where they came from (a
    quarantined row's reason said in ``lang``); a column empty for all of them (a field
    their files did not have) is left out."""
    out = {}
    with store.read() as con:
        for kind in (k for k in reversed(KINDS) if SPECS[k].evidence is not None):
            frame = con.sql(
                f"SELECT * EXCLUDE (upload_seq) FROM {kind} "
                "WHERE record_key IN (SELECT unnest($keys::VARCHAR[]))",
                params={"keys": record_keys},
            ).pl()
            if frame.height:  # the fields its files did not have are left out
                out[kind] = frame.select(c.name for c in frame if c.null_count() < c.len())
        q = con.sql(
            """SELECT source_name, source_row, field, reason_code, reason, raw, source_sha256,
                      reason_values
                       FROM quarantine
                       WHERE 'Q|' || source_sha256[:16] || ':' || source_row
                             IN (SELECT unnest($keys::VARCHAR[]))""",
            params={"keys": record_keys},
        ).pl()
        if q.height:
            out["quarantine"] = worded_reasons(q, lang)
    return out


# (the labels are shown through the catalogue: detector.i18n.N_ marks them for it)
RELATIONS = {
    N_("same person"): "v.name_key <> '' AND v.name_key = x.name_key",
    N_("same escort"): "v.escorted_key IS NOT NULL AND v.escorted_key = x.escorted_key",
    N_("same vehicle"): "coalesce(v.plate_key, '') <> '' AND v.plate_key = x.plate_key",
    N_("same inmate"): "v.inmate_id IS NOT NULL AND v.inmate_id = x.inmate_id",
    N_(
        "same day at the facility"
    ): "v.facility = x.facility AND v.entered_at::DATE = x.entered_at::DATE",
}


def related(store: Store, record_keys: list[str], limit: int = 200) -> dict[str, pl.DataFrame]:
    """Visits related to a flag's visits, by each relation."""
    out = {}
    with store.read() as con:
        for label, cond in RELATIONS.items():
            frame = con.sql(
                f"""
                SELECT DISTINCT v.record_id, v.facility, v.entered_at, v.name, v.role,
                       v.escorted_by, v.inmate_id, v.vehicle_plate, v.source_name, v.source_row
                FROM visits x JOIN visits v ON {cond} AND v.record_key <> x.record_key
                WHERE x.record_key IN (SELECT unnest($keys::VARCHAR[]))
                ORDER BY v.entered_at LIMIT {int(limit)}""",
                params={"keys": record_keys},
            ).pl()
            if frame.height:
                out[label] = frame
    return out


def person_timeline(store: Store, record_keys: list[str], hours: int = 24) -> pl.DataFrame:
    """The people of a flag's records (reader events and logbook lines), with every read
    of theirs and every logbook line of theirs within ``hours`` of the flag's records, in
    time order: what the gate saw beside what the book says."""
    with store.read() as con:
        return con.sql(
            f"""
            WITH mine AS (
                SELECT name_key, badge, id_number, seen_at AS moment
                FROM events WHERE record_key IN (SELECT unnest($keys::VARCHAR[]))
                UNION ALL
                SELECT name_key, NULL, id_number, entered_at FROM visits
                WHERE record_key IN (SELECT unnest($keys::VARCHAR[])) AND name_status = 'named'),
            span AS (SELECT min(moment) - INTERVAL {int(hours)} HOUR AS s,
                            max(moment) + INTERVAL {int(hours)} HOUR AS e FROM mine)
            SELECT e.seen_at AS happened_at, 'events' AS kind, e.facility,
                   e.reader AS place, e.direction, e.name, e.badge, e.source_name, e.source_row,
                   NULL AS logbook, NULL AS page, NULL AS line
            FROM events e, span
            WHERE e.seen_at BETWEEN span.s AND span.e
              AND (e.name_key IN (SELECT name_key FROM mine WHERE coalesce(name_key, '') <> '')
                   OR e.badge IN (SELECT badge FROM mine)
                   OR e.id_number IN (SELECT id_number FROM mine))
            UNION ALL
            SELECT v.entered_at, 'visits', v.facility, v.checkpoint, NULL, v.name, v.id_number,
                   v.source_name, v.source_row, v.logbook, v.page, v.line
            FROM visits v, span
            WHERE v.entered_at BETWEEN span.s AND span.e
              AND (v.name_key IN (SELECT name_key FROM mine WHERE coalesce(name_key, '') <> '')
                   OR v.id_number IN (SELECT badge FROM mine)
                   OR v.id_number IN (SELECT id_number FROM mine))
            ORDER BY 1, 2""",
            params={"keys": record_keys},
        ).pl()


def timeline(store: Store, facility: str | None, start, end, hours: int = 24) -> pl.DataFrame:
    """Entries at a facility around a period, for a short timeline."""
    if not facility or start is None:
        return pl.DataFrame()
    with store.read() as con:
        return con.sql(
            """
            SELECT entered_at, coalesce(role, 'other') AS role, coalesce(name, '(blank)') AS name,
                   record_id, checkpoint
            FROM visits WHERE facility = $f
              AND entered_at BETWEEN $s - to_hours($h) AND $e + to_hours($h)
            ORDER BY entered_at""",
            params={"f": facility, "s": start, "e": end or start, "h": hours},
        ).pl()


def review_log(store: Store, flag_id: str | None = None, lang: str = "en") -> pl.DataFrame:
    """The audit trail (one flag's, or all), newest first; "before" and "after" as a person
    reads them in ``lang`` (statuses and reasons in words, yes or no, suppressions as
    sentences naming the rule by its title)."""
    from detector.i18n import audit_value
    from detector.wording import rule_title, rules_by_id

    where, params = ("WHERE flag_id = $f", {"f": flag_id}) if flag_id else ("", {})
    with store.read() as con:
        frame = con.sql(
            f"SELECT acted_at, actor, action, old, new, note, flag_id FROM review_log "
            f"{where} ORDER BY acted_at DESC",
            params=params,
        ).pl()
    if not frame.height:
        return frame
    rules = rules_by_id()

    def title(rule: str) -> str:
        return rule_title(rule, lang, rules)

    return frame.with_columns(
        pl.Series(col, [audit_value(a, v, lang, title) for a, v in
                        zip(frame["action"], frame[col], strict=True)], pl.String)
        for col in ("old", "new")
    )  # fmt: skip


# --- overview ------------------------------------------------------------------------------


def flags_over_time(store: Store) -> pl.DataFrame:
    with store.read() as con:
        return con.sql("""SELECT date_trunc('week', period_start) AS week, facility, category,
                                 count(*) AS flags
                          FROM flags WHERE state = 'active' AND period_start IS NOT NULL
                          GROUP BY ALL ORDER BY 1""").pl()


WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def entries_heatmap(
    store: Store, facility: str | None = None, names: list[str] = WEEKDAY_NAMES
) -> pl.DataFrame:
    """Timed entries per facility, weekday (by name) and hour: every weekday and all 24
    hours, empty ones at 0, so that a silent night shows as silent instead of missing."""
    with store.read() as con:
        return con.sql(
            """WITH n AS (SELECT facility, isodow(entered_at) AS d, hour(entered_at) AS hour,
                                 count(*) AS entries
                          FROM visits WHERE entered_precision = 'minute'
                            AND ($f IS NULL OR facility = $f)
                          GROUP BY ALL),
               grid AS (SELECT f.facility, d.d, h.hour
                        FROM (SELECT DISTINCT facility FROM n) f, range(1, 8) d(d),
                             range(0, 24) h(hour))
               SELECT g.facility, $names[g.d] AS weekday, g.d AS weekday_number, g.hour,
                      coalesce(n.entries, 0) AS entries
               FROM grid g LEFT JOIN n USING (facility, d, hour)
               ORDER BY g.facility, g.d, g.hour""",
            params={"f": facility, "names": names},
        ).pl()


def logbook_coverage(store: Store) -> pl.DataFrame:
    """Per book: the period its written lines cover, its register status, and the gaps."""
    with store.read() as con:
        return con.sql("""
            SELECT facility, checkpoint, logbook, 'written' AS kind,
                   min(entered_at) AS start, max(entered_at) AS "end"
            FROM visits WHERE logbook IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT facility, checkpoint, logbook, 'register: ' || status, opened_on::TIMESTAMP,
                   closed_on::TIMESTAMP
            FROM logbooks WHERE status <> 'in_custody'
            UNION ALL
            SELECT facility, coalesce(json_extract_string(fields, '$.checkpoint'), ''),
                   coalesce(logbook, ''), 'gap: ' || rule_id, period_start, period_end
            FROM flags WHERE category = 'logbook_gap' AND state = 'active'
                         AND period_start IS NOT NULL AND period_end IS NOT NULL
            ORDER BY 1, 2, 5""").pl()


def coverage_kind(_):
    """How a coverage bar's kind reads ("written", "register: removed", "gap: <rule>")."""

    def shown(kind: str) -> str:
        if kind == "written":
            return _("written")
        what, _sep, value = kind.partition(": ")
        if what == "register":
            return _("register: {status}").format(status=_(CODES.get(value, value)))
        return _("gap: {rule}").format(rule=value)

    return shown


def risk_table(store: Store, by: str, top: int = 100) -> pl.DataFrame:
    """The ``top`` rows of the risk roll-up by ``by``; a person or an official named as
    written in the logs (the spelling written most often), not by the folded key the
    roll-up groups them by ("OSCAR LEMUS MARROQUIN")."""
    from detector.rollup import rollup

    frame = rollup(store, by).head(top)
    if by not in ("person", "official") or not frame.height:
        return frame
    with store.read() as con:
        names = con.sql(
            """SELECT k, mode(written) AS written FROM (
                   SELECT name_key AS k, name AS written FROM visits WHERE name_status = 'named'
                   UNION ALL
                   SELECT escorted_key, escorted_by FROM visits
                   WHERE coalesce(escorted_key, '') <> '')
               WHERE k IN (SELECT unnest($keys::VARCHAR[])) GROUP BY k""",
            params={"keys": frame[by].to_list()},
        ).pl()
    return (
        frame.join(names, left_on=by, right_on="k", how="left", maintain_order="left")
        .with_columns(pl.coalesce("written", by).alias(by))
        .drop("written")
    )


def transfers_between(store: Store) -> pl.DataFrame:
    with store.read() as con:
        return con.sql("""SELECT from_facility, to_facility, reason, count(*) AS transfers,
                                 count(*) FILTER (WHERE returned_at IS NULL) AS not_returned
                          FROM transfers GROUP BY ALL ORDER BY transfers DESC""").pl()


# --- evidence and runs ---------------------------------------------------------------------


def ledger(store: Store) -> pl.DataFrame:
    with store.read() as con:
        return con.sql("""SELECT seq, original_name, kind, uploaded_by, uploaded_at, rows_read,
                                 rows_stored, rows_quarantined, rows_duplicate, sha256, entry_hash
                          FROM uploads ORDER BY seq DESC""").pl()


def runs(store: Store, limit: int = 200, lang: str = "en") -> pl.DataFrame:
    """The run history; what each run counted and the errors it met as sentences in
    ``lang`` (a rules run: its hits and how many rules found something)."""
    with store.read() as con:
        frame = con.sql(f"""SELECT run_id, kind, triggered_by, status, started_at, ended_at,
                                   counts, errors
                            FROM runs ORDER BY run_id DESC LIMIT {int(limit)}""").pl()
    if not frame.height:
        return frame
    return frame.with_columns(
        pl.Series("counts", [run_counts(k, c, lang) for k, c in
                             zip(frame["kind"], frame["counts"], strict=True)], pl.String),
        pl.Series("errors", [run_errors(e, lang) for e in frame["errors"]], pl.String),
    )  # fmt: skip


def run_counts(kind: str | None, counts: str | None, lang: str) -> str:
    from detector.i18n import field_name, number, translate, translate_plural

    values = json.loads(counts or "{}")
    if not isinstance(values, dict) or not values:
        return ""
    if kind == "rules":  # one count per rule id
        hits = sum(v for v in values.values() if isinstance(v, (int, float)))
        found = sum(1 for v in values.values() if isinstance(v, (int, float)) and v)
        return translate_plural(
            lang,
            "{n} hit from {rules} of {of} rules",
            "{n} hits from {rules} of {of} rules",
            int(hits),
        ).format(n=number(hits, lang), rules=number(found, lang), of=number(len(values), lang))
    return "; ".join(
        f"{field_name(k, lang)}: {number(v, lang) if isinstance(v, (int, float)) else v}"
        for k, v in values.items()
    ) or translate(lang, "nothing")


def run_errors(errors: str | None, lang: str) -> str:
    from detector.wording import rule_title

    values = json.loads(errors or "{}")
    if isinstance(values, dict):
        return "; ".join(f"{rule_title(k, lang)}: {v}" for k, v in values.items())
    return str(values)


def weights(store: Store, lang: str = "en") -> tuple[pl.DataFrame, pl.DataFrame]:
    """The weight factors reviews earned (per rule) and the history of their changes, each
    rule by its title in ``lang``."""
    current, changes = _weights(store)
    titles = _rule_titles(lang)
    return tuple(
        frame.with_columns(pl.col("rule_id").replace(titles)) if frame.height else frame
        for frame in (current, changes)
    )


def _rule_titles(lang: str) -> dict[str, str]:
    from detector.wording import rule_title, rules_by_id

    rules = rules_by_id()
    return {r: rule_title(r, lang, rules) for r in [*rules, "outlier-ecod", "outlier-iforest",
                                                     "outlier-copod", "outlier-hbos",
                                                     "outlier-ensemble"]}  # fmt: skip


def _weights(store: Store) -> tuple[pl.DataFrame, pl.DataFrame]:
    with store.read() as con:
        current = con.sql(
            """SELECT rule_id, factor AS weight_factor, confirmed, dismissed,
                      run_id AS since_run, updated_at AS changed_at
               FROM rule_weights ORDER BY factor, rule_id"""
        ).pl()
        changes = con.sql(
            """SELECT run_id, rule_id, old AS weight_from, new AS weight_to, confirmed,
                      dismissed, changed_at
               FROM weight_changes ORDER BY run_id DESC, rule_id LIMIT 500"""
        ).pl()
    return current, changes


def quarantine(
    store: Store, source: str | None = None, limit: int = 1000, lang: str = "en"
) -> pl.DataFrame:
    """Quarantined rows (of one file, or all), each reason said in ``lang``."""
    with store.read() as con:
        frame = con.sql(
            f"""SELECT source_name, source_row, field, reason_code, reason, raw,
                       source_sha256, reason_values
                FROM quarantine WHERE $s IS NULL OR source_name = $s
                ORDER BY source_name, source_row LIMIT {int(limit)}""",
            params={"s": source},
        ).pl()
    return worded_reasons(frame, lang)


def worded_reasons(frame: pl.DataFrame, lang: str) -> pl.DataFrame:
    """Quarantine rows with ``reason`` in ``lang`` (from ``reason_code`` and
    ``reason_values``, which is then dropped)."""
    if "reason_values" not in frame.columns:
        return frame
    said = [
        reason_wording(c, f, v, r, lang)
        for c, f, v, r in frame.select("reason_code", "field", "reason_values", "reason").rows()
    ]
    return frame.with_columns(pl.Series("reason", said, pl.String)).drop("reason_values")


TOTALS = {"visits": N_("Visits"), "flags": N_("Flags"), "uploads": N_("Uploads"),
          "quarantined rows": N_("Quarantined rows")}  # fmt: skip


def totals(store: Store) -> dict[str, int]:
    """The overview's counts, by the keys of ``TOTALS`` (their headings)."""
    with store.read() as con:
        return dict(
            con.execute("""
            SELECT 'visits', count(*) FROM visits UNION ALL
            SELECT 'flags', count(*) FROM flags WHERE state = 'active' UNION ALL
            SELECT 'uploads', count(*) FROM uploads UNION ALL
            SELECT 'quarantined rows', count(DISTINCT (source_sha256, source_row))
              FROM quarantine""").fetchall()
        )


# --- actions (each checks the actor's role first) ------------------------------------------


def ingest_uploaded(
    store: Store, actor, paths: list, mappings: dict, progress=None, labels: dict | None = None
) -> list:
    """Ingest uploaded files as the logged-in user, then run rules and scoring (the
    pipeline: what the upload changed, against the kept scoring reference, as the
    scheduler's tick does).

    ``mappings`` maps a file's path (or name) to its UserMapping (or None for the
    built-in synonyms); ``labels`` to how the ledger names a saved mapping used.
    Returns the IngestResults and what the checks raised (:func:`raised`); rules and
    scoring run only when something was stored.
    """
    from detector import pipeline
    from detector.auth import require

    require(actor, "upload")
    sources = [
        pipeline.Source(
            path, mappings.get(path, mappings.get(path.name)), (labels or {}).get(path, "dashboard")
        )
        for path in paths
    ]
    done = []

    def file_done(source, result) -> None:
        done.append(source)
        if progress:
            progress(len(done) / len(sources), source.path.name)

    report = pipeline.run(
        store,
        sources,
        user=actor.username,
        triggered_by=f"upload:{actor.username}",
        on_file=file_done,
    )
    return report.ingested, raised(report)


def raised(report) -> dict:
    """The flags a pipeline run raised: how many are new, and the runs that first raised
    them (for the review queue's filter)."""
    runs, new = [], 0
    if report.rules is not None:
        runs.append(report.rules.run_id)
        new += sum(report.rules.new.values())
    if report.scoring is not None:
        runs.append(report.scoring.run_id)
        new += report.scoring.flags_new
    return {"runs": runs, "new": new}


def column_samples(path: Path, mapping=None, rows: int = 500, k: int = 3) -> pl.DataFrame:
    """Every column of a file with a few of its distinct values, for mapping it by hand."""
    from detector.formats import read_table
    from detector.mapping import UserMapping

    mapping = mapping or UserMapping()
    table = read_table(path, sheet=mapping.sheet, names=None if mapping.header else mapping.names)
    frame = next(table.batches(rows)).frame.head(rows)
    samples = []
    for column in table.columns:
        values = frame[column].drop_nulls().unique(maintain_order=True).head(k).to_list()
        samples.append(" · ".join(str(v) for v in values))
    return pl.DataFrame({"column": table.columns, "samples": samples})


def guessed_columns(kind: str, columns: list[str]) -> dict[str, str]:
    """For each field of ``kind``, the column of a file the ingest's synonyms would read it
    from, to start the upload page's pickers from: the kind's own synonyms first, then those
    any other kind knows for a field of the same name ("Sitio" is a facility for staff
    absences, so it is one for visits too). Each column is offered to one field only."""
    from detector.mapping import fold
    from detector.schema import SPECS

    folded = {fold(c): c for c in columns}
    taken: set[str] = set()
    out: dict[str, str] = {}
    others: dict[str, list[str]] = {}
    for spec in SPECS.values():
        for f in spec.fields:
            others.setdefault(f.name, []).extend(f.synonyms)
    for rounds in ("own", "others"):
        for f in SPECS[kind].fields:
            if f.name in out:
                continue
            synonyms = f.synonyms if rounds == "own" else others.get(f.name, [])
            for s in (f.name, *synonyms):
                column = folded.get(fold(s))
                if column is not None and column not in taken:
                    out[f.name] = column
                    taken.add(column)
                    break
    return out


DATE_ORDERS = {"dmy": N_("day/month/year"), "mdy": N_("month/day/year"),
               "ymd": N_("year/month/day")}  # fmt: skip


_READING = {"en": "d MMMM yyyy HH:mm", "es": "d 'de' MMMM 'de' yyyy HH:mm"}


def date_readings(value: str, lang: str = "en") -> dict[str, str]:
    """How a written date reads under each date order ("3/4/2019" is 3 April or 4 March),
    the month in words so that the two readings cannot be confused."""
    from babel.dates import format_datetime

    from detector import i18n
    from detector.dates import to_datetime

    out = {}
    for order in DATE_ORDERS:
        parsed = to_datetime(pl.Series([value], dtype=pl.String), order)[0]
        out[order] = (
            i18n.translate(lang, "not a date in this order")
            if parsed is None
            else format_datetime(parsed, _READING[i18n.known(lang)], locale=i18n.known(lang))
        )
    return out


def save_mapping(store: Store, actor, name: str, mapping):
    """Keep the mapping made on the upload page under a name (uploaders only)."""
    from detector.auth import require
    from detector.mapping import save_named

    require(actor, "upload")
    return save_named(store, name, mapping, actor.username)


def canonical_preview(p, mapping, rows: int = 20) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first rows of a planned file (``ingest.plan``) as they would be stored with
    ``mapping`` (the kind's fields, typed), and those of them that would go to quarantine,
    with the reasons."""
    from detector.ingest import Upload, canonical
    from detector.schema import SPECS

    batch = next(p.table.batches(rows))
    good, bad = canonical(batch, p, Upload(Path(p.table.name), mapping))
    shown = [f.name for f in SPECS[p.kind].fields if f.name in good.columns]
    return good.head(rows).select(shown), bad


def safe_file_name(name: str) -> str:
    """An uploaded file's name as a plain file name: no folders, never "." or ".."."""
    base = PurePosixPath(name.replace("\\", "/")).name.strip()
    return base if base not in ("", ".", "..") else "upload"


def mapping_toml(kind: str, columns: dict[str, str], date_order: str) -> str:
    """A mapping file for what the user chose on the upload page."""
    lines = [f'kind = "{kind}"', f'date_order = "{date_order}"', "", "[columns]"]
    lines += [
        f"{field} = {json.dumps(source, ensure_ascii=False)}"
        for field, source in columns.items()
        if source
    ]
    return "\n".join(lines) + "\n"


# --- a person (identity linkage) ---------------------------------------------------------


def find_persons(store: Store, text: str, limit: int = 50) -> pl.DataFrame:
    """Persons one of whose spellings, documents or badges contains ``text`` (accents and
    case aside), or whose id it is; the most written first."""
    needle = "%" + "".join(c for c in fold_text(text) if c.isalnum() or c == " ") + "%"
    with store.read() as con:
        return con.sql(
            """
            WITH hit AS (
                SELECT DISTINCT person_id FROM persons
                WHERE person_id = $id
                   OR upper(strip_accents(name)) LIKE $needle
                   OR regexp_replace(coalesce(id_number, '') || ' ' || coalesce(badge, ''),
                                     '[^A-Z0-9 ]', '', 'g') LIKE $needle)
            SELECT n.person_id, n.name AS person, n.rows,
                   string_agg(DISTINCT p.name, '; ' ORDER BY p.name) AS spellings
            FROM hit JOIN person_names n USING (person_id)
            JOIN persons p USING (person_id)
            GROUP BY ALL ORDER BY n.rows DESC, n.person_id LIMIT $limit""",
            params={"id": text.strip(), "needle": needle, "limit": limit},
        ).pl()


def person(store: Store, person_id: str, limit: int = 500) -> dict | None:
    """One person as linkage made them: their name, every spelling (with documents, badges
    and plates), their visits and reads, the flags on them, the links that joined their
    spellings and the closest links to other persons that were not made."""
    with store.read() as con:
        shown = con.execute(
            "SELECT name, rows FROM person_names WHERE person_id = ?", [person_id]
        ).fetchall()
        if not shown:
            return None

        def frame(sql: str) -> pl.DataFrame:
            given = {"p": person_id, "limit": limit}
            return con.sql(sql, params={k: v for k, v in given.items() if f"${k}" in sql}).pl()

        out = {"person_id": person_id, "name": shown[0][0], "rows": shown[0][1]}
        out["spellings"] = frame(
            """SELECT p.mention_key, any_value(p.name) AS name, m.id_number, m.badge,
                      count(*) AS rows, min(p.happened_at) AS first_seen,
                      max(p.happened_at) AS last_seen,
                      string_agg(DISTINCT p.facility, ', ' ORDER BY p.facility) AS facilities,
                      round(any_value(m.match_weight), 1) AS match_weight
               FROM persons p JOIN person_mentions m USING (mention_key)
               WHERE p.person_id = $p GROUP BY p.mention_key, m.id_number, m.badge
               ORDER BY rows DESC"""
        )
        for column, name in (
            ("id_number", "documents"),
            ("badge", "badges"),
            ("plate_key", "plates"),
        ):
            out[name] = frame(
                f"""SELECT {column}, count(*) AS rows, min(happened_at) AS first_seen,
                           max(happened_at) AS last_seen
                    FROM persons WHERE person_id = $p AND {column} IS NOT NULL
                    GROUP BY ALL ORDER BY rows DESC"""
            )
        out["visits"] = frame(
            """SELECT v.record_id, p.part, v.facility, v.entered_at, v.exited_at, v.name,
                      v.role, v.id_number, v.inmate_id, v.escorted_by, v.source_name,
                      v.source_row
               FROM persons p JOIN visits v USING (record_key)
               WHERE p.person_id = $p ORDER BY v.entered_at DESC LIMIT $limit"""
        )
        out["reads"] = frame(
            """SELECT e.record_id, e.facility, e.seen_at, e.name, e.badge, e.id_number,
                      e.reader, e.direction, e.source_name, e.source_row
               FROM persons p JOIN events e USING (record_key)
               WHERE p.person_id = $p ORDER BY e.seen_at DESC LIMIT $limit"""
        )
        ids = [
            r[0]
            for r in con.execute(
                """SELECT flag_id FROM flags
                   WHERE list_has_any(record_keys, (SELECT list(record_key) FROM persons
                                                    WHERE person_id = ?))""",
                [person_id],
            ).fetchall()
        ]
        pairs = """
            SELECT l.mention_key, l.other_key, round(l.match_weight, 1) AS match_weight,
                   l.accepted, l.why, a.person_id AS a_person, b.person_id AS b_person,
                   (SELECT any_value(name) FROM persons WHERE mention_key = l.mention_key)
                     AS name, (SELECT any_value(name) FROM persons
                               WHERE mention_key = l.other_key) AS other_name
            FROM person_links l
            JOIN person_mentions a ON a.mention_key = l.mention_key
            JOIN person_mentions b ON b.mention_key = l.other_key"""
        out["links"] = frame(
            f"SELECT * FROM ({pairs}) WHERE a_person = $p AND b_person = $p "
            "ORDER BY accepted DESC, match_weight DESC LIMIT 50"
        )
        out["apart"] = frame(
            f"SELECT * FROM ({pairs}) WHERE (a_person = $p) <> (b_person = $p) "
            "AND (a_person = $p OR b_person = $p) ORDER BY match_weight DESC LIMIT 10"
        )
    out["flags"] = read_flags(
        store,
        FlagQuery(flag_ids=ids, include_resolved=True, include_suppressed=True),
        QUEUE_COLUMNS,
    )
    return out
