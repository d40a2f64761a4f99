"""Reading scores: one row per scored visit, and risk rolled up per person, official,
inmate or facility. Apart from ``detector.scoring`` so that reading (the dashboard, `detector
risk`, `detector scores`) does not load the models.
"""

from __future__ import annotations

import polars as pl

from detector.store import Store

# Whom risk is rolled up to: the SQL giving (record_key, the entity, its part in the visit)
# for each scored visit. The part is ``own`` (a person's or official's own visit, the visits
# to an inmate, at a facility), ``escort`` (visits of the people they escorted in or
# authorised) or ``host`` (visits paid to them). A person is who identity linkage says wrote
# the line (``persons``: one person across spellings, documents and badges; namesakes with
# different documents are two), a store never linked reads a person as their folded name
# (placeholders and blanks are no one). A person is credited with their own visits and
# those they escorted, and shown the visits they received; someone named only as an
# escort, authoriser or host (the official a public register says was visited) never came
# in by the log and is no person with visits. An official likewise.
_CAME_IN = "SELECT name_key FROM visits WHERE name_status = 'named'"
_LINKED_IN = "SELECT person_id FROM persons WHERE kind = 'visits' AND part = 'visitor'"
PERSON_VISITS = f"""
    SELECT record_key, person_id AS k, 'own' AS part FROM persons
    WHERE kind = 'visits' AND part = 'visitor'
    UNION ALL
    SELECT e.record_key, e.person_id, e.part FROM persons e
    LEFT JOIN persons v ON v.record_key = e.record_key AND v.part = 'visitor'
    WHERE e.kind = 'visits' AND e.part IN ('escort', 'host')
      AND e.person_id IS DISTINCT FROM v.person_id AND e.person_id IN ({_LINKED_IN})"""
ROLLUPS: dict[str, str] = {
    "official": """
        SELECT record_key, name_key AS k, 'own' AS part FROM visits WHERE role = 'official'
        UNION ALL
        SELECT record_key, escorted_key, 'escort' FROM visits
        WHERE coalesce(role, '') <> 'official'
          AND escorted_key IN (SELECT name_key FROM visits WHERE role = 'official')
        UNION ALL
        SELECT record_key, host_key, 'host' FROM visits
        WHERE host_key IN (SELECT name_key FROM visits WHERE role = 'official')""",
    "person": f"""
        SELECT * FROM ({PERSON_VISITS}) WHERE (SELECT count(*) FROM persons) > 0
        UNION ALL
        SELECT * FROM (
            SELECT record_key, name_key AS k, 'own' AS part FROM visits
            WHERE name_status = 'named'
            UNION ALL
            SELECT record_key, escorted_key, 'escort' FROM visits
            WHERE coalesce(escorted_key, '') <> '' AND escorted_key <> coalesce(name_key, '')
              AND escorted_key IN ({_CAME_IN})
            UNION ALL
            SELECT record_key, host_key, 'host' FROM visits
            WHERE coalesce(host_key, '') <> '' AND host_key <> coalesce(name_key, '')
              AND host_key IN ({_CAME_IN}))
        WHERE (SELECT count(*) FROM persons) = 0""",
    "inmate": "SELECT record_key, inmate_id AS k, 'own' AS part FROM visits",
    "facility": "SELECT record_key, facility AS k, 'own' AS part FROM visits",
}


def has_scores(con) -> bool:
    return bool(con.execute("SELECT count(*) FROM (SELECT 1 FROM scores LIMIT 1)").fetchall()[0][0])


def load_scores(store: Store, top: int | None = None) -> pl.DataFrame:
    """One row per scored visit of the latest scoring run, riskiest first."""
    with store.read() as con:
        if not has_scores(con):
            return pl.DataFrame()
        limit = f"LIMIT {int(top)}" if top else ""
        return con.sql(
            f"""
            SELECT coalesce(v.record_id, s.record_key) AS record_id, s.record_key, v.facility,
                   v.entered_at, v.name, v.role, s.risk_score, s.outlier_score, s.outlier_pct,
                   s.rule_score, s.rules, s.top_features, v.source_name, v.source_row,
                   v.logbook, v.page, v.line
            FROM scores s JOIN visits v USING (record_key)
            ORDER BY s.risk_score DESC, s.record_key {limit}"""
        ).pl()


# A person's reader events are credited to them too: the flags on their events (access
# rules, and the gate reads the logbook is silent about), by the person the event names
# (linked; in a store never linked, the folded name, else the badge or document:
# "Acompañante" on a pass names nobody).
EVENT_PEOPLE = """
    SELECT f.flag_id, any_value(f.rule_id) AS rule_id, any_value(f.score) AS risk,
           any_value(f.times) AS times, any_value(f.facility) AS facility,
           any_value(f.period_start::DATE) AS day,
           coalesce(p.person_id, CASE WHEN e.name_status = 'named' THEN e.name_key
                ELSE coalesce(e.badge, e.id_number, e.person_key) END) AS k
    FROM (SELECT flag_id, rule_id, score, facility, period_start,
                 unnest(record_keys) AS key,
                 greatest(coalesce(try_cast(json_extract_string(fields, '$.occurrences')
                                            AS INTEGER), 1), 1) AS times
          FROM flags WHERE state = 'active') f
    JOIN events e ON e.record_key = f.key
    LEFT JOIN persons p ON p.record_key = e.record_key AND p.kind = 'events'
    GROUP BY ALL"""

# Distinct evidence outranks repetition (as risk-based alerting weighs it): a person's risk
# is the sum, over each distinct piece of evidence (a rule, or the outlier model, that
# fired on their visits or reader events), of its strongest instance, which repeats raise
# by at most REPEAT_BONUS (a case seen n times: 1 + REPEAT_BONUS * (1 - 1/n)). Thirteen
# repeats of one routine case weigh 1.23 times one of them; two different rules weigh two.
REPEAT_BONUS = 0.25


def rollup(store: Store, by: str) -> pl.DataFrame:
    """Risk accumulated per official or person (with the people they escorted in), inmate
    or facility, riskiest first. Each part a person plays in a visit is counted apart:
    their own ``visits``, the ``escorted_visits`` of people they escorted or authorised
    (credited to them) and the ``hosted_visits`` paid to them (shown, not credited); a row
    also says which roles and facilities their visits carry. A person is shown by their
    commonest spelling (``person``) beside their id (``person_id``), and their flags on
    reader events (``event_flags``, how many times their cases happened in
    ``event_occurrences``) count too.

    ``total_risk`` weighs distinct evidence above repetition (``REPEAT_BONUS``): each rule
    that fired on their visits or events, and the outlier model where it put a visit among
    the rarest 0.1%, counts once, at its strongest, raised a little by its repeats. Why a
    row ranks where it does is in ``distinct_evidence`` (how many pieces), and in the days
    and places they were seen on (``evidence_days``, ``evidence_places``)."""
    if by not in ROLLUPS:
        raise ValueError(f"roll up by one of {', '.join(ROLLUPS)}")
    with store.read() as con:
        scored = has_scores(con)
        if not scored and by != "person":
            return pl.DataFrame()
        return con.sql(_rollup_sql(by)).pl()


def _rollup_sql(by: str) -> str:
    # The visits received (host) are shown, never credited: the risk of a visit is its
    # visitor's, and its escort's, not that of whom it was paid to.
    credited = "e.part <> 'host'"
    visits = f"""
        SELECT e.k, count(*) FILTER (WHERE e.part = 'own') AS visits,
               count(*) FILTER (WHERE e.part = 'escort') AS escorted_visits,
               count(*) FILTER (WHERE e.part = 'host') AS hosted_visits,
               count(*) FILTER (WHERE {credited} AND s.risk_score >= 0.5) AS high_risk_visits,
               count(*) FILTER (WHERE {credited} AND s.rule_score > 0) AS visits_with_rule_hits,
               count(*) FILTER (WHERE {credited} AND s.outlier_pct >= 0.999) AS rarest_visits,
               avg(s.outlier_pct) FILTER (WHERE {credited}) AS mean_outlier_pct,
               string_agg(DISTINCT v.role, ', ' ORDER BY v.role)
                 FILTER (WHERE e.part = 'own') AS roles,
               string_agg(DISTINCT v.facility, ', ' ORDER BY v.facility) AS facilities
        FROM ({ROLLUPS[by]}) e JOIN scores s USING (record_key)
        JOIN visits v USING (record_key)
        WHERE e.k IS NOT NULL AND e.k <> ''
        GROUP BY ALL"""
    # Each credited visit is evidence of what flagged it: its rules, else the model when
    # the visit is among the rarest, else nothing but its (small) risk ('usual').
    visit_units = f"""
        SELECT e.k, unnest(CASE WHEN len(s.rules) > 0 THEN s.rules
                                WHEN s.outlier_pct >= 0.999 THEN ['model']
                                ELSE ['usual'] END) AS evidence,
               s.risk_score AS risk, 1 AS times, v.facility, v.entered_at::DATE AS day
        FROM ({ROLLUPS[by]}) e JOIN scores s USING (record_key)
        JOIN visits v USING (record_key)
        WHERE e.k IS NOT NULL AND e.k <> '' AND {credited}"""
    # a person's flags on reader events, one row per flag (none for the other roll-ups)
    event_units = (
        "SELECT k, rule_id AS evidence, risk, times, facility, day "
        f"FROM ({EVENT_PEOPLE}) WHERE coalesce(k, '') <> ''"
        if by == "person"
        else "SELECT NULL::VARCHAR AS k, NULL::VARCHAR AS evidence, 0.0 AS risk, 1 AS times, "
        "NULL::VARCHAR AS facility, NULL::DATE AS day WHERE false"
    )
    events = """
        SELECT k, count(*) AS event_flags, sum(times)::BIGINT AS event_occurrences
        FROM u WHERE from_events GROUP BY k"""
    # every piece of evidence once (u), weighed per entity (w) and placed in time (seen)
    units = f"""
        SELECT *, false AS from_events FROM ({visit_units})
        UNION ALL SELECT *, true FROM ({event_units})"""
    weighed = f"""
        SELECT k, sum(top * (1 + {REPEAT_BONUS} * (1 - 1.0 / n))) AS total_risk,
               max(top) AS max_risk,
               count(*) FILTER (WHERE evidence <> 'usual') AS distinct_evidence,
               sum(top * (1 + {REPEAT_BONUS} * (1 - 1.0 / n))) FILTER (WHERE from_events)
                 AS event_risk
        FROM (SELECT k, evidence, max(risk) AS top, sum(times) AS n,
                     bool_or(from_events) AS from_events
              FROM u GROUP BY ALL)
        GROUP BY k"""
    seen = """
        SELECT k, count(DISTINCT day) AS evidence_days,
               count(DISTINCT facility) AS evidence_places
        FROM u WHERE evidence <> 'usual' GROUP BY k"""
    shown = (
        "coalesce(n.name, w.k) AS person, "
        "CASE WHEN n.person_id IS NOT NULL THEN w.k END AS person_id"
        if by == "person"
        else f"w.k AS {by}"
    )
    names = "LEFT JOIN person_names n ON n.person_id = w.k" if by == "person" else ""
    return f"""
        WITH v AS ({visits}), u AS ({units}), ev AS ({events}), w AS ({weighed}),
             seen AS ({seen})
        SELECT {shown}, coalesce(v.visits, 0) AS visits,
               coalesce(v.escorted_visits, 0) AS escorted_visits,
               coalesce(v.hosted_visits, 0) AS hosted_visits,
               round(w.total_risk, 3) AS total_risk, round(w.max_risk, 3) AS max_risk,
               w.distinct_evidence, coalesce(seen.evidence_days, 0) AS evidence_days,
               coalesce(seen.evidence_places, 0) AS evidence_places,
               coalesce(v.high_risk_visits, 0) AS high_risk_visits,
               coalesce(v.visits_with_rule_hits, 0) AS visits_with_rule_hits,
               coalesce(v.rarest_visits, 0) AS rarest_visits,
               round(v.mean_outlier_pct, 3) AS mean_outlier_pct,
               coalesce(ev.event_flags, 0) AS event_flags,
               coalesce(ev.event_occurrences, 0) AS event_occurrences,
               round(coalesce(w.event_risk, 0), 3) AS event_risk,
               v.roles, v.facilities
        FROM w LEFT JOIN v ON v.k = w.k LEFT JOIN ev ON ev.k = w.k
        LEFT JOIN seen ON seen.k = w.k {names}
        ORDER BY total_risk DESC, {by}"""
