"""Contextual features per visit: how usual a visit is for its role, place, time and people.

Most suspicious visits are not extreme on any single column; they are out of place in
their context. Each feature below measures that against the visit's own context (its
role at its facility, its week, its visitor's and inmate's history), so that the same
twelve-hour stay is ordinary for staff and absurd for family. Features are computed in
DuckDB, written to a Parquet file and read back in batches: the work stays out of core.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detector.i18n import N_
from detector.schema import sql_string
from detector.store import Store, private_con


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    # How the value reads in an explanation; fields come from the context columns.
    template: str


FEATURES: tuple[Feature, ...] = (
    Feature(
        "weekday_rarity",
        N_("rarity of this weekday for the role at the facility"),
        N_(
            "{Role_plural} seldom come to {facility} on a {weekday}: {n_dow} of the "
            "{n_role} {role} visits there in the reference period"
        ),
    ),
    Feature(
        "hour_rarity",
        N_("rarity of this hour of day for the role at the facility"),
        N_(
            "{Role_plural} seldom arrive at {facility} at {hour}:00: {n_hour} of the {n_timed} "
            "timed {role} visits there in the reference period"
        ),
    ),
    Feature(
        "volume_drop",
        N_(
            "how far the role's visits that week (at the facility, or at all "
            "facilities) fall below the usual week, beyond halving"
        ),
        N_(
            "The {role} visits that week were far fewer than usual: {n_week} at {facility} "
            "(a usual week has {usual_week}), {n_gweek} at all facilities (usually {usual_gweek})"
        ),
    ),
    Feature(
        "stay_rarity",
        N_("how far the length of stay is from the role's usual stay"),
        N_(
            "The visit lasted {stay_h} hours; {role} visits usually last about {usual_stay_h} hours"
        ),
    ),
    Feature(
        "visitor_spread",
        N_(
            "how unusual, for the role, the number of gangs, facilities "
            "and gang leaders the visitor saw within 30 days is"
        ),
        N_(
            "Within 30 days this visitor saw inmates of {n_gangs} gangs, at {n_prisons} "
            "facilities, {n_leaders} of them gang leaders: few {role} visitors do"
        ),
    ),
    Feature(
        "person_time_rarity",
        N_(
            "for a visitor who keeps a set time of day (four in five visits within two hours of "
            "one hour), a visit six hours or more away from it: how much rarer that time is for "
            "them than for their role there"
        ),
        N_(
            "This visitor keeps to one time of day: {habit_n} of their {n_person} visits in the "
            "reference period came within two hours of {habit_hour}:00, {near_person} near "
            "{hour}:00, when {role} visits there are usual"
        ),
    ),
    Feature(
        "gang_switch",
        N_("a visit to a gang leader of a gang the visitor's own earlier visits did not go to"),
        N_(
            "This visit is to a {gang} leader; {n_same_gang} of the visitor's {n_person_gang} "
            "visits to gang members in the reference period went to {gang}"
        ),
    ),
    Feature(
        "official_surge",
        N_(
            "how far an official's visits to this facility around this one exceed the "
            "official's usual rate there"
        ),
        N_(
            "This official came to {facility} {n_official_near} times within 15 days either "
            "side; usually about {usual_official_month} times a month"
        ),
    ),
    Feature(
        "purpose_missing_rarity",
        N_("no purpose, for a role that usually states one"),
        N_("No purpose was written, as in only {pct_no_purpose}% of {role} visits at {facility}"),
    ),
)
FEATURE_NAMES = [f.name for f in FEATURES]
# Left out of the model on purpose: evidence a rule already counts. An unnamed entrant, a
# companion of an official, a party larger than its names, a missing exit and an official
# with a gang leader each have their rule; as model features they made the noisy-OR in
# ``scoring`` count the same fact twice (the rule's weight, then an outlier score driven by
# the same column), and they supplied most of the outlier queue's false flags. The model
# keeps what no rule states: context (hours, weekdays, volume, stays, spread, purpose).
RULE_RESTATED = (
    "unnamed",
    "escorted_by_official",
    "party_excess",
    "missing_exit",
    "official_with_leader",
)
# The plain baseline the evaluation compares against: marginal columns only.
MARGINAL = [
    "hour",
    "weekday",
    "stay_min",
    "role_family",
    "role_lawyer",
    "role_official",
    "role_staff",
    "role_contractor",
]


# --- the reference: what "usual" means, fixed when the model is fitted ----------------------
#
# A visit is judged against a reference: per role and facility, the weekdays, hours,
# weekly volumes, stays and stated purposes of the visits in the fitted window, and per
# role the distribution of each graded feature (its tail, for the surprise below). The
# reference is computed once, when the model is fitted, and kept with it as Parquet files;
# later visits are judged against the same reference, so that a visit's features (and
# score) do not move because unrelated visits arrived. What a visit's own neighbourhood
# says (how many visits its week had, what its visitor did within 30 days) is read from
# the stored visits around it.

# A person, as the features know them: who identity linkage says the visitor is (one
# person across spellings; namesakes with different documents are two), read from the
# visit's ``persons`` row joined as ``{p}`` (``VISITOR_JOIN``); a visit never linked, a
# written name (not a placeholder, a blank or a redaction) with its document as written.
VISITOR_SQL = (
    "CASE WHEN {v}name_status = 'named' THEN coalesce({p}person_id, "
    "{v}name_key || '|' || coalesce({v}id_number, '')) END"
)
VISITOR_JOIN = "LEFT JOIN persons {p} ON {p}.record_key = {v}record_key AND {p}.part = 'visitor'"

# A visit's moment, ties broken by its record key's 64-bit hash, as one number: the least
# of a visitor's day is their first arrival (a minimum of (time, key) pairs cost 4.1-4.3 s
# of the table at 10M visits, of these numbers 3.2 s; visits at the same moment are
# equally first, and two keys share a hash with odds of 1 in 2^64).
_ARRIVAL = "epoch_us(v.entered_at)::HUGEINT * 18446744073709551616 + hash(v.record_key)::HUGEINT"

# The visits, with the columns every feature needs. ``{where}`` restricts the rows read,
# ``{described}`` is the columns of theirs that ``DESCRIBED`` reads (``VISITS_DESCRIBED``) or
# none.
VISITS_SQL = f"""
SELECT v.record_key, v.upload_seq, v.facility, coalesce(v.role, 'other') AS role,
       v.entered_at, v.inmate_id,{{described}}
       v.entered_precision = 'minute' AS timed,
       isodow(v.entered_at) AS dow, hour(v.entered_at) AS hr,
       date_trunc('week', v.entered_at) AS wk,
       date_diff('minute', v.entered_at, v.exited_at) AS stay_min,
       {VISITOR_SQL.format(v="v.", p="pp.")} AS visitor,
       -- the person's first arrival that day (a habit is about arrivals, not re-entries):
       -- the earliest (``_ARRIVAL``) of its visitor's visits that day, found by
       -- a grouped minimum (a window over every visit sorted whole rows: 9 of 21 s at 1M)
       -- per hash of the visitor and day (grouped and joined on the visitor's text, 9.3-11.3
       -- s of the table at 10M visits, against 7.7-8.1; two of 400,000 people share a
       -- 64-bit hash with odds of about 1 in 200 million, and it then matters only on a
       -- day both came)
       {_ARRIVAL} = fd.first AS first_of_day,
       i.gang, coalesce(i.rank = 'leader', FALSE) AS leader,
       -- no purpose written: NULL (not known) for a visit of an upload that writes no
       -- purpose at all (a book or an export without that column is one fact of the file,
       -- not each visit's; the documents rule treats a file without documents alike)
       CASE WHEN v.upload_seq IN (SELECT DISTINCT upload_seq FROM visits
                                  WHERE trim(coalesce(purpose, '')) <> '')
            THEN v.purpose IS NULL OR trim(v.purpose) = '' END AS no_purpose
FROM visits v LEFT JOIN inmates_current i USING (inmate_id)
{VISITOR_JOIN.format(v="v.", p="pp")}
LEFT JOIN (SELECT hash({VISITOR_SQL.format(v="v.", p="pp.")}) AS visitor, v.entered_at::DATE AS day,
                  min({_ARRIVAL}) AS first
           FROM visits v {VISITOR_JOIN.format(v="v.", p="pp")}
           WHERE {{where}} AND {VISITOR_SQL.format(v="v.", p="pp.")} IS NOT NULL GROUP BY ALL) fd
  ON fd.visitor = hash({VISITOR_SQL.format(v="v.", p="pp.")}) AND fd.day = v.entered_at::DATE
WHERE {{where}}
"""

# A week judges volume only when it lies wholly inside the days the data covers (at the
# facility, or anywhere): the partial first and last weeks of a file are not collapses.
WEEKS_SQL = """
cover AS (SELECT facility, min(entered_at)::DATE AS d0, max(entered_at)::DATE + 1 AS d1
          FROM {covered} GROUP BY ALL),
gcover AS (SELECT min(entered_at)::DATE AS d0, max(entered_at)::DATE + 1 AS d1 FROM {covered}),
week_n AS (SELECT facility, role, wk, count(*) AS n,
                  any_value(wk >= c.d0 AND wk + INTERVAL 7 DAY <= c.d1) AS whole
           FROM v JOIN cover c USING (facility) GROUP BY facility, role, wk),
gweek_n AS (SELECT role, wk, count(*) AS n,
                   any_value(wk >= c.d0 AND wk + INTERVAL 7 DAY <= c.d1) AS whole
            FROM v, gcover c GROUP BY role, wk)"""


# "Near an hour of the day": within this many hours of it, either way, round the clock (a
# person's habit, their visits near a visit's hour, their role's there).
NEAR_HOURS = 2


def _person_sql() -> str:
    """SQL: one row per person of the reference, all the raw query reads of them in one
    join (four joins of every visit, one of them after grouping every visit's person and
    hour, were a fifth of its CPU at 10M visits):

    - ``n``: their timed first arrivals of a day (``person_slot``);
    - ``habit_n``: the most of those within two hours (either way, round the clock) of an
      hour they came at, ``habit_hr`` that hour (the earliest of hours as near) and
      ``top_share`` its share of ``n``;
    - ``around``: for each hour of the day (item ``hr + 1``), how many of those came within
      two hours of it (NULL: none);
    - ``gangs``: their visits to inmates of a gang (``person_gang``).

    Each person's 24 hourly counts are one list, each hour's neighbourhood a sum of five of
    its items (pairing each of a person's hours with each other, 3.2 s at 10M visits; this,
    1.5 s). The list is made from the person's slots gathered as one list and looked up by
    hour (a sum filtered by hour for each of the 24 made the table 2.6 s at 10M visits;
    this, 1.6-1.8 s, the same file); the counts are BIGINTs, the sums given out HUGEINTs
    as that way made them (the reference's files keep their types)."""
    sums = [
        " + ".join(f"c[{(h + d) % 24 + 1}]" for d in range(-NEAR_HOURS, NEAR_HOURS + 1))
        for h in range(24)
    ]
    near = ", ".join(f"CASE WHEN c[{h + 1}] > 0 THEN {sum_} END" for h, sum_ in enumerate(sums))
    around = ", ".join(f"nullif({sum_}, 0)" for sum_ in sums)
    return f"""
        SELECT visitor, h.n, h.top_share, h.habit_hr, h.habit_n, h.around, g.gangs
        FROM (SELECT visitor, n, list_max(near) / n AS top_share,
                     (list_position(near, list_max(near)) - 1)::BIGINT AS habit_hr,
                     list_max(near)::HUGEINT AS habit_n, around::HUGEINT[] AS around
              FROM (SELECT visitor, n, [{near}] AS near, [{around}] AS around
                    FROM (SELECT visitor, n,
                                 list_transform(range(24), lambda h: coalesce(
                                   slots[list_position(hours, h)].n, 0)) AS c
                          FROM (SELECT *, list_transform(slots, lambda x: x.hr) AS hours
                                FROM (SELECT visitor, sum(n)::BIGINT AS n,
                                             list({{'hr': hr, 'n': n}}) AS slots
                                      FROM ref_person_slot GROUP BY visitor))))) h
        FULL JOIN (SELECT visitor, sum(n) AS gangs FROM ref_person_gang GROUP BY ALL) g
          USING (visitor)"""


# Each table of the reference, computed from the fitted window's visits (``v``); a table
# may read those before it as ``ref_<name>`` (their files, already written: a person's
# counts are summed from their slots, not counted again from every visit).
REFERENCE_TABLES: dict[str, str] = {
    # which stored visits the reference holds: those stored up to this upload, in the window
    "meta": "SELECT (SELECT coalesce(max(seq), 0) FROM uploads) AS seq, min(entered_at) AS d0,"
    " max(entered_at) AS d1 FROM v",
    "role_n": "SELECT facility, role, count(*) AS n FROM v GROUP BY ALL",
    "timed_n": "SELECT facility, role, count(*) AS n FROM v WHERE timed GROUP BY ALL",
    "dow_n": "SELECT facility, role, dow, count(*) AS n FROM v GROUP BY ALL",
    "hr_n": "SELECT facility, role, hr, count(*) AS n FROM v WHERE timed GROUP BY ALL",
    "week_usual": "SELECT facility, role, coalesce(median(n) FILTER (WHERE whole), median(n))"
    " AS usual FROM week_n GROUP BY ALL",
    "gweek_usual": "SELECT role, coalesce(median(n) FILTER (WHERE whole), median(n)) AS usual"
    " FROM gweek_n GROUP BY ALL",
    "stay_usual": """
        SELECT role, any_value(m.med) AS med, median(abs(ln(stay_min) - m.med)) AS mad
        FROM v JOIN (SELECT role, median(ln(stay_min)) AS med FROM v WHERE stay_min > 0
                     GROUP BY ALL) m USING (role)
        WHERE stay_min > 0 GROUP BY ALL""",
    # (the share of the visits of uploads that write purposes: ``no_purpose`` is NULL for
    # the others)
    "purpose": "SELECT facility, role, avg(no_purpose::INT) AS share FROM v GROUP BY ALL",
    # Each person's own habits (a person is the visitor of ``VISITOR_SQL``: their linked
    # person, or a visit never linked, its name with its document as written).
    "person_slot": "SELECT visitor, hr, count(*) AS n FROM v "
    "WHERE visitor IS NOT NULL AND timed AND first_of_day GROUP BY ALL",
    "person_gang": "SELECT visitor, gang, count(*) AS n FROM v "
    "WHERE visitor IS NOT NULL AND gang IS NOT NULL GROUP BY ALL",
    # how many visits, how set a habit (the largest share of their visits within two hours
    # of one hour of the day they came at; 1.0: always the same time), how many near each
    # hour, how many to gangs (``_person_sql``)
    "person": _person_sql(),
    "official_rate": """
        SELECT visitor, facility, count(*) AS n,
               greatest(30, date_diff('day', any_value(s.d0), any_value(s.d1))) AS days
        FROM v, (SELECT min(entered_at) AS d0, max(entered_at) AS d1 FROM v) s
        WHERE visitor IS NOT NULL AND role = 'official' GROUP BY ALL""",
}

# One row per target visit: its raw features against the reference ({ref} names the
# reference's files), its neighbourhood read from ``v`` (the visits around the targets).
RAW_SQL = r"""
WITH v AS NOT MATERIALIZED (SELECT * FROM {table}),
{weeks},
{visitor_window},
official_window AS (
  SELECT record_key, count(*) OVER w AS n
  FROM v WHERE visitor IS NOT NULL AND role = 'official'
  WINDOW w AS (PARTITION BY visitor, facility ORDER BY entered_at
               RANGE BETWEEN INTERVAL 15 DAYS PRECEDING AND INTERVAL 15 DAYS FOLLOWING)),
-- in_ref: the visit is one of the reference's own (stored when it was fitted, inside its
-- window); a person's habits are then judged without it (leave one out). Read three
-- times, it is not materialised: a copy of its whole rows (every column of every target)
-- cost 12 of 51 s of the query at 10M visits; the table is scanned again instead. A visit
-- of no facility or no date has no week: it has no row here (nor features)
t AS NOT MATERIALIZED (SELECT v.*, v.upload_seq <= m.seq AND v.entered_at BETWEEN m.d0 AND m.d1 AS in_ref
      FROM v, {ref}meta m WHERE {targets} AND v.facility IS NOT NULL AND v.wk IS NOT NULL),
-- the visits near an hour of the day (within NEAR_HOURS) per role there and hour (a
-- person's are their ``around``): looked up by those keys (summed per visit and joined
-- back by record key, they were a twentieth of the query at 10M)
role_near AS (
  SELECT h.facility, h.role, x.hr, sum(h.n) AS near
  FROM {ref}hr_n h, range(24) x(hr)
  WHERE least(abs(h.hr - x.hr), 24 - abs(h.hr - x.hr)) <= {near_hours} GROUP BY ALL)
SELECT
  t.record_key, t.facility, t.role, t.entered_at,{described}
  -- a facility and role the reference has not seen has no usual to depart from: unknown
  -- is not rare (the run says so; a refit includes them)
  CASE WHEN r.n IS NOT NULL THEN -ln((coalesce(d.n, 0) + 1.0) / (r.n + 7)) ELSE 0 END
    AS weekday_rarity,
  CASE WHEN t.timed AND tn.n IS NOT NULL THEN -ln((coalesce(hh.n, 0) + 1.0) / (tn.n + 24))
       ELSE 0 END AS hour_rarity,
  -- only drops beyond half the usual volume count: holidays are not suspensions
  greatest(0,
    CASE WHEN w.whole AND wu.usual IS NOT NULL
         THEN ln((wu.usual + 1.0) / (w.n + 1.0)) - ln(2) ELSE 0 END,
    CASE WHEN g.whole AND gu.usual IS NOT NULL
         THEN ln((gu.usual + 1.0) / (g.n + 1.0)) - ln(2) ELSE 0 END) AS volume_drop,
  CASE WHEN t.stay_min > 0 AND st.med IS NOT NULL
       THEN abs(ln(t.stay_min) - st.med) / greatest(st.mad, 0.1) ELSE 0 END AS stay_rarity,
  coalesce(vw.gangs, 0) AS n_gangs, coalesce(vw.prisons, 0) AS n_prisons,
  coalesce(vw.leaders, 0) AS n_leaders,
  -- the person's own habits: only for a person with a history to speak of
  -- a departure from a set time of day (first arrivals of a day; going out and back in
  -- is no departure): four in five of the person's arrivals fall within
  -- two hours of one hour, this one is six hours or more away from it (another part of
  -- the day, not a late morning), at most one in ten came near it, and this time is ten
  -- times rarer for them than for their role there (a lawyer who seldom comes at 14:00
  -- where lawyers seldom do is the role's rarity, counted already; a relative changing
  -- days at the usual hour is nothing); the value is how much rarer (ln of the ratio)
  CASE WHEN t.timed AND t.first_of_day AND p.n - t.in_ref::INT >= 6 AND p.top_share >= 0.8
        AND least(abs(t.hr - p.habit_hr), 24 - abs(t.hr - p.habit_hr)) >= 6
        AND coalesce(p.around[t.hr + 1], 0) - t.in_ref::INT <= 0.1 * (p.n - t.in_ref::INT)
        AND ln((coalesce(rnear.near, 0) - t.in_ref::INT + 1.0) / (coalesce(tn.n, 0) + 1))
            - ln((coalesce(p.around[t.hr + 1], 0) - t.in_ref::INT + 0.5) / (p.n - t.in_ref::INT + 1))
            >= ln(10)
       THEN ln((coalesce(rnear.near, 0) - t.in_ref::INT + 1.0) / (coalesce(tn.n, 0) + 1))
            - ln((coalesce(p.around[t.hr + 1], 0) - t.in_ref::INT + 0.5) / (p.n - t.in_ref::INT + 1))
       ELSE 0 END AS person_time_rarity,
  -- a leader of a gang none of the visitor's earlier visits (three or more) went to; the
  -- longer the history, the stronger
  CASE WHEN t.leader AND p.gangs - t.in_ref::INT >= 3 AND coalesce(pg.n, 0) - t.in_ref::INT <= 0
       THEN ln(p.gangs - t.in_ref::INT + 1) ELSE 0 END AS gang_switch,
  -- four or more visits around this one, four times the official's usual rate there or
  -- more (at a facility the reference knows); the value is ln of the ratio
  CASE WHEN t.role = 'official' AND r.n IS NOT NULL AND coalesce(ow.n, 1) >= 4
        AND (coalesce(ow.n, 1) + 1.0) / (coalesce(orate.usual, 0) + 1) >= 4
       THEN ln((coalesce(ow.n, 1) + 1.0) / (coalesce(orate.usual, 0) + 1))
       ELSE 0 END AS official_surge,
  CASE WHEN t.no_purpose THEN greatest(0, -ln(coalesce(pu.share, 1) + 0.001)) ELSE 0 END
    AS purpose_missing_rarity,
  -- context for explanations (the hour and weekday are the baseline's marginal columns too)
  CASE WHEN t.timed THEN t.hr ELSE 12 END AS hour, t.dow AS weekday,
  coalesce(d.n, 0) AS n_dow, coalesce(hh.n, 0) AS n_hour, coalesce(tn.n, 0) AS n_timed,
  coalesce(r.n, 0) AS n_role, w.n AS n_week, wu.usual AS usual_week,
  g.n AS n_gweek, gu.usual AS usual_gweek, round(t.stay_min / 60.0, 1) AS stay_h,
  round(exp(st.med) / 60, 1) AS usual_stay_h, t.gang,
  round(100 * pu.share) AS pct_no_purpose,
  coalesce(p.n - t.in_ref::INT, 0) AS n_person,
  coalesce(p.around[CASE WHEN t.timed THEN t.hr + 1 END] - t.in_ref::INT, 0) AS near_person,
  p.habit_hr AS habit_hour, p.habit_n,
  coalesce(pg.n - t.in_ref::INT, 0) AS n_same_gang,
  coalesce(p.gangs - t.in_ref::INT, 0) AS n_person_gang,
  coalesce(ow.n, 0) AS n_official_near,
  round(coalesce(orate.usual, 0), 1) AS usual_official_month
FROM t
LEFT JOIN {ref}role_n r USING (facility, role)
LEFT JOIN {ref}timed_n tn USING (facility, role)
LEFT JOIN {ref}dow_n d USING (facility, role, dow)
LEFT JOIN {ref}hr_n hh USING (facility, role, hr)
-- every target's week is counted (the targets are visits of v): left joins, so that
-- DuckDB does not guess the targets few (as it did past two inner joins: 14 rows of 10M)
-- and build a hash table of every target's whole row to join the visitor's counts to it
-- (an external join past the memory limit at 10M visits: 85 s instead of 46 s)
LEFT JOIN week_n w USING (facility, role, wk)
LEFT JOIN {ref}week_usual wu USING (facility, role)
LEFT JOIN gweek_n g USING (role, wk)
LEFT JOIN {ref}gweek_usual gu USING (role)
LEFT JOIN {ref}stay_usual st USING (role)
LEFT JOIN visitor_window vw USING (record_key)
LEFT JOIN {ref}purpose pu USING (facility, role)
LEFT JOIN {ref}person p ON p.visitor = t.visitor
-- (an untimed visit's hour is no key: NULL, so that the joins stay hash joins)
LEFT JOIN role_near rnear
  ON rnear.facility = t.facility AND rnear.role = t.role
 AND rnear.hr = CASE WHEN t.timed AND t.visitor IS NOT NULL THEN t.hr END
LEFT JOIN {ref}person_gang pg ON pg.visitor = t.visitor AND pg.gang = t.gang
LEFT JOIN official_window ow ON ow.record_key = t.record_key
LEFT JOIN (
  -- the official's usual visits there per 30 days, the visits around this one left out
  SELECT t.record_key, greatest(0, r.n - CASE WHEN t.in_ref THEN coalesce(ow.n, 1) ELSE 0 END)
           * 30.0 / greatest(30, r.days - CASE WHEN t.in_ref THEN 30 ELSE 0 END) AS usual
  FROM t JOIN {ref}official_rate r ON r.visitor = t.visitor AND r.facility = t.facility
  LEFT JOIN official_window ow ON ow.record_key = t.record_key) orate
  ON orate.record_key = t.record_key
"""

# What a visit's row says of it besides its features, written only where a features file is
# read as a description of the visits (``build_features``: the evaluation's baseline, a
# look at the features): the scoring reads its features, their context and the record key
# (38 of 46 columns), and writing the other eight for every visit cost 1.5-2.5 of 25 s of
# the reference's raw query at 10M visits. With the hour and weekday, the context's, these
# are the baseline's marginal columns (``MARGINAL``).
DESCRIBED = """
  t.record_id, t.inmate_id, t.escorted_by, coalesce(t.stay_min, -1) AS stay_min,
  (t.role = 'family')::INT AS role_family, (t.role = 'lawyer')::INT AS role_lawyer,
  (t.role = 'official')::INT AS role_official, (t.role = 'staff')::INT AS role_staff,
  (t.role = 'contractor')::INT AS role_contractor,"""

# What is usual depends on the role: a lawyer seeing leaders of three gangs in a month is
# routine, a relative doing so is not. Graded features become their surprise within the
# role, -ln(share of the role's reference visits with a value at least as high), and count
# only in the role's top 1% (surprise >= ln 100): ordinary variation then adds nothing, so
# a visit stands out by what is truly unusual about it, not by many small oddities. The
# shares are the reference's per-role tails (value counts, cheap). A value beyond the
# reference's highest counts as its rarest, not rarer: when a fifth prison's logs arrive,
# every lawyer who visits all five is beyond a reference that knew four, and that is the
# data's coverage growing, not five thousand anomalies.
SURPRISE_FLOOR = 100  # a value counts when at most 1 in this many visits of the role reach it
GRADED = (
    "weekday_rarity",
    "hour_rarity",
    "stay_rarity",
    "n_gangs",
    "n_prisons",
    "n_leaders",
)


def tail_sql(raw: str, column: str) -> str:
    """The reference tail of one graded feature: per role and value, the surprise of
    reaching it (``-ln`` of the share of the role's visits at or above it)."""
    return f"""
    SELECT role, v, -ln(sum(n) OVER (PARTITION BY role ORDER BY v DESC)
                        / sum(n) OVER (PARTITION BY role)) AS s
    FROM (SELECT role, round({column}, 3) AS v, count(*) AS n FROM {raw} GROUP BY ALL)"""


def _surprise_sql(raw: str, ref: str) -> str:
    """The finished features of the raw ones in ``raw`` (a relation: a query in
    parentheses, or ``read_parquet(...)``), graded ones as surprises against the
    reference's tails.

    The surprise of a value is its role's tail at the smallest value at or above it (an
    ASOF join), else the role's largest surprise (a value beyond the reference's highest
    counts as its rarest), else 0. It is looked up once per distinct (column, role,
    value), and each row then finds its own by a hash join: an ASOF join per graded
    column over the whole rows sorted them six times (26 of 36 s of a scoring at 1M)."""
    tails = " UNION ALL ".join(f"SELECT '{c}' AS c, role, v, s FROM {ref}tail_{c}" for c in GRADED)
    values = " UNION ALL ".join(
        f"SELECT DISTINCT '{c}' AS c, role, round({c}, 3) AS x FROM raw" for c in GRADED
    )
    joins = "\n".join(
        f"LEFT JOIN look s_{c} ON s_{c}.c = '{c}' AND s_{c}.role IS NOT DISTINCT FROM raw.role "
        f"AND s_{c}.x IS NOT DISTINCT FROM round(raw.{c}, 3)"
        for c in GRADED
    )

    def kept(c: str, when: str = "TRUE") -> str:
        return f"CASE WHEN {when} AND s_{c}.s >= ln({SURPRISE_FLOOR}) THEN s_{c}.s ELSE 0 END"

    return f"""
WITH raw AS NOT MATERIALIZED (SELECT * FROM {raw}),
tails AS ({tails}),
tops AS (SELECT c, role, max(s) AS top FROM tails GROUP BY ALL),
look AS (
  SELECT l.c, l.role, l.x, coalesce(t.s, tp.top, 0) AS s
  FROM ({values}) l
  ASOF LEFT JOIN tails t ON t.c = l.c AND t.role = l.role AND l.x <= t.v
  LEFT JOIN tops tp ON tp.c = l.c AND tp.role = l.role)
SELECT raw.* REPLACE ({kept("weekday_rarity")} AS weekday_rarity,
                  {kept("hour_rarity")} AS hour_rarity,
                  {kept("stay_rarity")} AS stay_rarity),
  -- seeing one gang, one prison or one leader is what visitors do: only more counts
  greatest({kept("n_gangs", "raw.n_gangs > 1")}, {kept("n_prisons", "raw.n_prisons > 1")},
           {kept("n_leaders", "raw.n_leaders > 1")}) AS visitor_spread
FROM raw
{joins}
"""


def copy_unordered(con, sql: str, out: Path) -> None:
    """``COPY (sql) TO out`` as Parquet, its rows in whatever order DuckDB makes them.

    Nothing reads a features file by position (the fit sample is picked by record key,
    scores are stored by it); keeping the order made DuckDB hold finished rows of the raw
    features until the rows before them were written: at 10M visits its buffers of rows
    took 1.6 GB of memory and 1.9 GB of spill, against 0.5 and 0.2 GB unordered."""
    con.execute("SET preserve_insertion_order = false")
    try:
        con.execute(f"COPY ({sql}) TO {sql_string(out)} (FORMAT parquet)")
    finally:
        con.execute("RESET preserve_insertion_order")


# The name prefix of the temporary views over a reference's files (``_ref_view``).
REF_PREFIX = "ref_"


def _ref_views(con, ref: Path, tails: bool = True) -> str:
    """Temporary views over a reference's Parquet files; returns their name prefix."""
    for name in [*REFERENCE_TABLES, *(f"tail_{c}" for c in GRADED if tails)]:
        _ref_view(con, ref, name)
    return REF_PREFIX


def _ref_view(con, ref: Path, name: str) -> None:
    """The temporary view ``ref_<name>`` over the reference's file ``name``."""
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {REF_PREFIX}{name} AS "
        f"SELECT * FROM read_parquet({sql_string(ref / f'{name}.parquet')})"
    )


def build_reference(
    store: Store, ref: Path, window: tuple | None = None, raw: Path | None = None
) -> int:
    """Compute the reference from the visits in ``window`` (``(from, to)`` timestamps,
    ``None``: all) into Parquet files in ``ref``; returns the number of visits it holds.

    The context tables come first; the raw features of the window's visits against them
    give the per-role tails of the graded features. With ``raw``, the window's raw features
    are kept there (the finished ones are read from them, ``finished``: computing them once
    serves both the tails and the fit)."""
    ref.mkdir(parents=True, exist_ok=True)
    where = (
        "TRUE"
        if window is None
        else f"v.entered_at BETWEEN TIMESTAMP '{window[0]}' AND TIMESTAMP '{window[1]}'"
    )
    kept = raw is not None
    raw = raw if kept else ref / ".raw.parquet"
    with store.read() as con:
        table = _visits_table(con, "ref_v", where)
        weeks = WEEKS_SQL.format(covered="v")
        for name, sql in REFERENCE_TABLES.items():
            con.execute(
                f"COPY (WITH v AS (SELECT * FROM {table}), {weeks} {sql}) "
                f"TO {sql_string(ref / f'{name}.parquet')} (FORMAT parquet)"
            )
            _ref_view(con, ref, name)  # for the tables after it, and the raw query
        prefix = REF_PREFIX
        # the days the window covers, read from the stored visits (computed from the CTE
        # ``v``, DuckDB planned the week joins the wrong way round: 46 s instead of 30 s at 10M)
        covered = f"(SELECT v.facility, v.entered_at FROM visits v WHERE {where})"
        copy_unordered(con, _raw_sql(con, prefix, table, "TRUE", covered=covered), raw)
        con.execute(f"DROP TABLE {table}")
    con = private_con(ref)
    try:
        for c in GRADED:
            con.execute(
                f"COPY ({tail_sql(f'read_parquet({sql_string(raw)})', c)}) "
                f"TO {sql_string(ref / f'tail_{c}.parquet')} (FORMAT parquet)"
            )
        return _count(con, raw)
    finally:
        con.close()
        if not kept:
            raw.unlink(missing_ok=True)


def _count(con, path: Path) -> int:
    return con.execute(f"SELECT count(*) FROM read_parquet({sql_string(path)})").fetchall()[0][0]


def _surprise_into(con, ref: Path, raw: Path, out: Path) -> int:
    """The finished features of ``raw`` (graded ones as surprises) into ``out``."""
    copy_unordered(con, finished(con, ref, raw), out)
    return _count(con, out)


# (for ``finished``'s connection: each join builds its hash table on its right side)
_KEEP_SIDES = "SET disabled_optimizers = 'build_side_probe_side'"


def finished(
    con,
    ref: Path,
    raw: Path,
    sample: tuple[int, int] | None = None,
    span: tuple[int, int] | None = None,
) -> str:
    """The query of the finished features (graded ones as surprises against the reference
    ``ref``) of the raw features in the Parquet file ``raw``, on ``con``; with ``sample``
    (rows, seed), of the rows whose record keys hash lowest under the seed, in that order
    (the same rows and order whatever order the file holds them in); with ``span``
    (first, end), of the file's rows from ``first`` to ``end`` (excluded) alone (the row
    groups outside them are not read).

    Every join of the query looks a small table up from the file's rows, so ``con`` is set
    never to swap a join's sides (``_KEEP_SIDES``): DuckDB built one join's hash table on
    the file's 10M rows instead of the tails' few thousand when the file had fewer columns
    (the finished features of 10M visits read 1.5 s slower, their scoring 3.5 s)."""
    con.execute(_KEEP_SIDES)
    prefix = _ref_views(con, ref)
    src = f"read_parquet({sql_string(raw)})"
    if span is not None:
        first, end = (int(x) for x in span)
        src = (
            f"(SELECT * EXCLUDE (file_row_number) FROM read_parquet({sql_string(raw)}, "
            f"file_row_number = true) WHERE file_row_number >= {first} "
            f"AND file_row_number < {end})"
        )
    if sample is None:
        return _surprise_sql(src, prefix)
    rows, seed = (int(x) for x in sample)
    order = f"hash(record_key, {seed}), record_key"
    # the keys first (a top-N of one column), then their rows: a top-N of whole rows
    # carried every column of every row through it (15 s at 10M visits)
    picked = (
        f"(SELECT * FROM {src} WHERE record_key IN "
        f"(SELECT record_key FROM {src} ORDER BY {order} LIMIT {rows}))"
    )
    return f"SELECT * FROM ({_surprise_sql(picked, prefix)}) ORDER BY {order} LIMIT {rows}"


# The visits' own columns ``DESCRIBED`` reads (the features read none of them).
VISITS_DESCRIBED = " v.record_id, v.escorted_by,"


def _visits_table(con, name: str, where: str, described: bool = False) -> str:
    """The visits of ``VISITS_SQL`` that match ``where`` (with ``described``, with the
    columns ``DESCRIBED`` reads), as a temporary table ``name`` on ``con`` (the raw query
    reads it eight times: scanning a table reads only the columns each part needs, a
    materialised CTE copied whole rows, 13 s of a fit at 10M). A scratch DuckDB file
    instead (held compressed, out of DuckDB's memory) took 3-8 s more to write at 10M
    visits and left the raw query's time as it was."""
    sql = VISITS_SQL.format(where=where, described=VISITS_DESCRIBED if described else "")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
    return name


# The gangs, prisons and leaders a visitor saw within 30 days of each visit are counted
# from bit sets: each value of the visits' is given a bit, the columns' bits one after
# the other (BITS to a set, in as many sets as they take), a visit's window ORs its
# visits' sets and a column's count is the bits set in its own part of them. A windowed OR
# is a segment tree; count(DISTINCT) over a range frame was 41 of 60 s of the reference's
# features at 10M visits, and one tree per column instead of one for all (3 gangs, 5
# prisons and 100 leaders share one set) 12 of 25 s of the raw query's CPU, against 8.
# A column of more than MAX_SETS sets is counted with count(DISTINCT) (the same numbers).
BITS = 126
MAX_SETS = 16
_VISITOR_ROWS = "visitor IS NOT NULL AND inmate_id IS NOT NULL"
_COUNTED = {
    "gangs": "gang",
    "prisons": "facility",
    "leaders": "CASE WHEN leader THEN inmate_id END",
}


def _mask(low: int, high: int, k: int) -> str:
    """The bits ``low`` to ``high`` (excluded) of all sets that lie in set ``k``, as a
    HUGEINT mask of that set ('0' when none do)."""
    b0, b1 = max(low, k * BITS) - k * BITS, min(high, (k + 1) * BITS) - k * BITS
    return f"'{((1 << (b1 - b0)) - 1) << b0 if b1 > b0 else 0}'::HUGEINT"


def visitor_window_sql(con, table: str) -> str:
    """The ``visitor_window`` CTE of ``RAW_SQL`` for the visits of ``table``: per visit of
    a known visitor to an inmate, the distinct gangs, prisons and leaders of their visits
    within 30 days either side. Each counted value's bit number (over all the columns'
    bits) is written to a temporary table ``visitor_<name>_ix`` on ``con``."""
    joins, distinct, parts, bit = [], [], {}, 0
    for name, expr in _COUNTED.items():
        index = f"visitor_{name}_ix"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {index} AS "
            f"SELECT value, (row_number() OVER (ORDER BY value) - 1 + {bit}) AS ix FROM "
            f"(SELECT DISTINCT {expr} AS value FROM {table} WHERE {_VISITOR_ROWS}) "
            "WHERE value IS NOT NULL"
        )
        n = con.execute(f"SELECT count(*) FROM {index}").fetchall()[0][0]
        if -(-n // BITS) > MAX_SETS:
            distinct.append(f"count(DISTINCT {expr}) OVER w AS {name}")
            continue
        joins.append(f"LEFT JOIN {index} ON {index}.value = {expr}")
        parts[name] = (index, bit, bit + n)
        bit += n
    sets = [
        " | ".join(
            f"CASE WHEN {index}.ix // {BITS} = {k} "
            f"THEN 1::HUGEINT << ({index}.ix % {BITS})::HUGEINT ELSE 0::HUGEINT END"
            for index, low, high in parts.values()
            if low < (k + 1) * BITS and high > k * BITS
        )
        for k in range(-(-bit // BITS))
    ]
    counts = [
        " + ".join(
            f"bit_count(s{k} & {_mask(low, high, k)})::BIGINT"
            for k in range(low // BITS, -(-high // BITS))
        )
        or "0"
        for _, low, high in parts.values()
    ]
    windowed = [f"bit_or({s}) OVER w AS s{k}" for k, s in enumerate(sets)] + distinct
    outer = [f"{c} AS {name}" for c, name in zip(counts, parts, strict=True)]
    outer += [name for name in _COUNTED if name not in parts]
    return f"""visitor_window AS (
  SELECT record_key, {", ".join(outer)}
  FROM (
    SELECT {", ".join(["record_key", *windowed])}
    FROM v {" ".join(joins)} WHERE {_VISITOR_ROWS}
    WINDOW w AS (PARTITION BY visitor ORDER BY entered_at
                 RANGE BETWEEN INTERVAL 30 DAYS PRECEDING AND INTERVAL 30 DAYS FOLLOWING)))"""


def _raw_sql(
    con, prefix: str, table: str, targets: str, covered: str = "visits", described: bool = False
) -> str:
    """The raw features of the visits of ``table`` (see ``_visits_table``) that match
    ``targets``, judged against the reference views named ``prefix``; with ``described``,
    the visits' own columns of ``DESCRIBED`` too."""
    return RAW_SQL.format(
        described=DESCRIBED if described else "",
        visitor_window=visitor_window_sql(con, table),
        table=table,
        weeks=WEEKS_SQL.format(covered=covered),
        targets=targets,
        ref=prefix,
        near_hours=NEAR_HOURS,
    )


def build_raw(
    store: Store,
    raw: Path,
    ref: Path,
    neighbourhood: str = "TRUE",
    targets: str = "TRUE",
    described: bool = False,
) -> int:
    """Write the raw features of the target visits against the reference ``ref`` to
    ``raw`` (what ``finished`` reads); returns the number of rows. ``targets`` is an SQL
    condition on the visits to write (on the read connection: it may name temporary
    tables made there), ``neighbourhood`` one on the visits around them that their weeks
    and visitors' 30-day windows need (``TRUE``: all); ``described`` as ``_raw_sql``."""
    raw.parent.mkdir(parents=True, exist_ok=True)
    with store.read() as con:
        table = _visits_table(con, "feat_v", neighbourhood, described=described)
        prefix = _ref_views(con, ref, tails=False)
        copy_unordered(con, _raw_sql(con, prefix, table, targets, described=described), raw)
        con.execute(f"DROP TABLE {table}")
        return _count(con, raw)


def build_features(
    store: Store,
    out: Path,
    ref: Path | None = None,
    neighbourhood: str = "TRUE",
    targets: str = "TRUE",
) -> int:
    """Write one row per target visit (features, context, the visit's own columns of
    ``DESCRIBED``: the baseline's among them) to ``out``.

    ``ref`` is the reference to judge the visits against (``None``: one computed from all
    stored visits, for a one-off look such as the evaluation's baseline); ``targets`` and
    ``neighbourhood`` are as ``build_raw`` takes them. Returns the number of rows. The
    neighbourhood is computed on a read-only connection to the store, the within-role
    surprises on a private one; both spill to disk when the data outgrows memory.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    if ref is None:
        ref = out.with_name(out.stem + ".reference")
        build_reference(store, ref)
    raw = out.with_name(out.stem + ".raw.parquet")
    try:
        build_raw(store, raw, ref, neighbourhood, targets, described=True)
        con = private_con(out.parent)
        try:
            return _surprise_into(con, ref, raw, out)
        finally:
            con.close()
    finally:
        raw.unlink(missing_ok=True)
