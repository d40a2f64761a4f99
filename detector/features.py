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

from detector.store import Store


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    # How the value reads in an explanation; fields come from the context columns.
    template: str


FEATURES: tuple[Feature, ...] = (
    Feature(
        "weekday_rarity",
        "rarity of this weekday for the role at the facility",
        "{weekday}: {n_dow} of {n_role} {role} visits at {facility} are on a {weekday}",
    ),
    Feature(
        "hour_rarity",
        "rarity of this hour of day for the role at the facility",
        "{hour}h: {n_hour} of {n_timed} timed {role} visits at {facility} start at that hour",
    ),
    Feature(
        "volume_drop",
        "how far the role's visits that week (at the facility, or at all "
        "facilities) fall below the usual week, beyond halving",
        "{n_week} {role} visits at {facility} that week (usually {usual_week}); "
        "{n_gweek} at all facilities (usually {usual_gweek})",
    ),
    Feature(
        "stay_rarity",
        "how far the length of stay is from the role's usual stay",
        "stayed {stay_h} h; {role} visits usually last {usual_stay_h} h",
    ),
    Feature(
        "visitor_spread",
        "how unusual, for the role, the number of gangs, facilities "
        "and gang leaders the visitor saw within 30 days is",
        "the visitor saw {n_gangs} gangs, {n_prisons} facilities and {n_leaders} gang "
        "leaders within 30 days",
    ),
    Feature(
        "purpose_missing_rarity",
        "no purpose, for a role that usually states one",
        "no purpose stated, as in only {pct_no_purpose}% of {role} visits at {facility}",
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
CONTEXT = [
    "record_key",
    "record_id",
    "facility",
    "role",
    "weekday",
    "hour",
    "n_dow",
    "n_hour",
    "n_timed",
    "n_role",
    "n_week",
    "usual_week",
    "n_gweek",
    "usual_gweek",
    "stay_h",
    "usual_stay_h",
    "n_gangs",
    "n_prisons",
    "n_leaders",
    "gang",
    "escorted_by",
    "pct_no_purpose",
    "entered_at",
    "inmate_id",
    "official_key",
]

FEATURE_SQL = r"""
WITH officials AS (SELECT DISTINCT name_key FROM visits WHERE role = 'official' AND name_key <> ''),
v AS (
  SELECT v.record_key, v.record_id, v.facility, coalesce(v.role, 'other') AS role, v.entered_at,
         v.exited_at, v.inmate_id, v.escorted_by,
         v.entered_precision = 'minute' AS timed,
         isodow(v.entered_at) AS dow, hour(v.entered_at) AS hr,
         date_trunc('week', v.entered_at) AS wk,
         date_diff('minute', v.entered_at, v.exited_at) AS stay_min,
         CASE WHEN v.name_key <> '' AND regexp_matches(v.name_key, '[A-Z0-9]')
              THEN v.name_key || '|' || coalesce(v.id_number, '') END AS visitor,
         i.gang, coalesce(i.rank = 'leader', FALSE) AS leader,
         v.purpose IS NULL OR trim(v.purpose) = '' AS no_purpose,
         CASE WHEN v.role = 'official' THEN v.name_key
              WHEN v.escorted_key IN (SELECT name_key FROM officials) THEN v.escorted_key END
           AS official_key
  FROM visits v LEFT JOIN inmates_current i USING (inmate_id)),
role_n AS (SELECT facility, role, count(*) AS n FROM v GROUP BY ALL),
timed_n AS (SELECT facility, role, count(*) AS n FROM v WHERE timed GROUP BY ALL),
dow_n AS (SELECT facility, role, dow, count(*) AS n FROM v GROUP BY ALL),
hr_n AS (SELECT facility, role, hr, count(*) AS n FROM v WHERE timed GROUP BY ALL),
-- A week judges volume only when it lies wholly inside the days the data covers (at the
-- facility, or anywhere): the partial first and last weeks of a file are not collapses.
cover AS (SELECT facility, min(entered_at)::DATE AS d0, max(entered_at)::DATE + 1 AS d1
          FROM v GROUP BY ALL),
gcover AS (SELECT min(entered_at)::DATE AS d0, max(entered_at)::DATE + 1 AS d1 FROM v),
week_n AS (SELECT facility, role, wk, count(*) AS n,
                  any_value(wk >= c.d0 AND wk + INTERVAL 7 DAY <= c.d1) AS whole
           FROM v JOIN cover c USING (facility) GROUP BY facility, role, wk),
week_usual AS (SELECT facility, role,
                      coalesce(median(n) FILTER (WHERE whole), median(n)) AS usual
               FROM week_n GROUP BY ALL),
gweek_n AS (SELECT role, wk, count(*) AS n,
                   any_value(wk >= c.d0 AND wk + INTERVAL 7 DAY <= c.d1) AS whole
            FROM v, gcover c GROUP BY role, wk),
gweek_usual AS (SELECT role, coalesce(median(n) FILTER (WHERE whole), median(n)) AS usual
                FROM gweek_n GROUP BY ALL),
stay_med AS (SELECT role, median(ln(stay_min)) AS med FROM v WHERE stay_min > 0 GROUP BY ALL),
stay_usual AS (SELECT role, any_value(m.med) AS med, median(abs(ln(stay_min) - m.med)) AS mad
               FROM v JOIN stay_med m USING (role) WHERE stay_min > 0 GROUP BY ALL),
visitor_window AS (
  SELECT record_key,
         count(DISTINCT gang) OVER w AS gangs, count(DISTINCT facility) OVER w AS prisons,
         count(DISTINCT CASE WHEN leader THEN inmate_id END) OVER w AS leaders
  FROM v WHERE visitor IS NOT NULL AND inmate_id IS NOT NULL
  WINDOW w AS (PARTITION BY visitor ORDER BY entered_at
               RANGE BETWEEN INTERVAL 30 DAYS PRECEDING AND INTERVAL 30 DAYS FOLLOWING)),
purpose AS (SELECT facility, role, avg(no_purpose::INT) AS share FROM v GROUP BY ALL),
raw AS (
SELECT
  v.record_key, v.record_id, v.facility, v.role, v.entered_at, v.inmate_id, v.official_key,
  -ln((d.n + 1.0) / (r.n + 7)) AS weekday_rarity,
  CASE WHEN v.timed THEN -ln((hh.n + 1.0) / (t.n + 24)) ELSE 0 END AS hour_rarity,
  -- only drops beyond half the usual volume count: holidays are not suspensions
  greatest(0, CASE WHEN w.whole THEN ln((wu.usual + 1.0) / (w.n + 1.0)) - ln(2) ELSE 0 END,
              CASE WHEN g.whole THEN ln((gu.usual + 1.0) / (g.n + 1.0)) - ln(2) ELSE 0 END)
    AS volume_drop,
  CASE WHEN v.stay_min > 0
       THEN abs(ln(v.stay_min) - st.med) / greatest(st.mad, 0.1) ELSE 0 END AS stay_rarity,
  coalesce(vw.gangs, 0) AS n_gangs, coalesce(vw.prisons, 0) AS n_prisons,
  coalesce(vw.leaders, 0) AS n_leaders,
  CASE WHEN v.no_purpose THEN greatest(0, -ln(pu.share + 0.001)) ELSE 0 END
    AS purpose_missing_rarity,
  -- marginal columns for the baseline
  CASE WHEN v.timed THEN v.hr ELSE 12 END AS hour, v.dow AS weekday,
  coalesce(v.stay_min, -1) AS stay_min,
  (v.role = 'family')::INT AS role_family, (v.role = 'lawyer')::INT AS role_lawyer,
  (v.role = 'official')::INT AS role_official, (v.role = 'staff')::INT AS role_staff,
  (v.role = 'contractor')::INT AS role_contractor,
  -- context for explanations
  d.n AS n_dow, coalesce(hh.n, 0) AS n_hour, coalesce(t.n, 0) AS n_timed, r.n AS n_role, w.n AS n_week, wu.usual AS usual_week,
  g.n AS n_gweek, gu.usual AS usual_gweek, round(v.stay_min / 60.0, 1) AS stay_h,
  round(exp(st.med) / 60, 1) AS usual_stay_h, v.gang, v.escorted_by,
  round(100 * pu.share) AS pct_no_purpose
FROM v
JOIN role_n r USING (facility, role)
LEFT JOIN timed_n t USING (facility, role)
JOIN dow_n d USING (facility, role, dow)
LEFT JOIN hr_n hh USING (facility, role, hr)
JOIN week_n w USING (facility, role, wk)
JOIN week_usual wu USING (facility, role)
JOIN gweek_n g USING (role, wk)
JOIN gweek_usual gu USING (role)
LEFT JOIN stay_usual st USING (role)
LEFT JOIN visitor_window vw USING (record_key)
JOIN purpose pu USING (facility, role))
SELECT * FROM raw
"""

# What is usual depends on the role: a lawyer seeing leaders of three gangs in a month is
# routine, a relative doing so is not. Graded features become their surprise within the
# role, -ln(share of the role's visits with a value at least as high), and count only in
# the role's top 1% (surprise >= ln 100): ordinary variation then adds nothing, so a visit
# stands out by what is truly unusual about it, not by many small oddities. The shares come
# from per-role value counts joined back (cheap), not from sorting every visit.
SURPRISE_FLOOR = 100  # a value counts when at most 1 in this many visits of the role reach it
GRADED = ("weekday_rarity", "hour_rarity", "stay_rarity", "n_gangs", "n_prisons", "n_leaders")


def _surprise_sql(raw: Path) -> str:
    tails = ",\n".join(
        f"""
  t_{c} AS (
    SELECT role, v AS {c}_v, -ln(sum(n) OVER (PARTITION BY role ORDER BY v DESC)
                                 / sum(n) OVER (PARTITION BY role)) AS s
    FROM (SELECT role, round({c}, 3) AS v, count(*) AS n FROM raw GROUP BY ALL))"""
        for c in GRADED
    )
    joins = "\n".join(
        f"  JOIN t_{c} ON t_{c}.role = raw.role AND t_{c}.{c}_v = round(raw.{c}, 3)" for c in GRADED
    )

    def kept(c: str, when: str = "TRUE") -> str:
        return f"CASE WHEN {when} AND t_{c}.s >= ln({SURPRISE_FLOOR}) THEN t_{c}.s ELSE 0 END"

    return f"""
WITH raw AS (SELECT * FROM read_parquet('{raw}')),
{tails}
SELECT raw.* REPLACE ({kept("weekday_rarity")} AS weekday_rarity,
                      {kept("hour_rarity")} AS hour_rarity,
                      {kept("stay_rarity")} AS stay_rarity),
  -- seeing one gang, one prison or one leader is what visitors do: only more counts
  greatest({kept("n_gangs", "raw.n_gangs > 1")}, {kept("n_prisons", "raw.n_prisons > 1")},
           {kept("n_leaders", "raw.n_leaders > 1")}) AS visitor_spread
FROM raw
{joins}
"""


def build_features(store: Store, out: Path) -> int:
    """Write one row per stored visit (features, baseline columns, context) to ``out``.

    Returns the number of rows. The per-visit context is computed on a read-only
    connection to the store, the within-role surprises on a private in-memory one; both
    spill to disk when the data outgrows memory.
    """
    import duckdb

    from detector.store import MEMORY_LIMIT

    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_name(out.stem + ".raw.parquet")
    with store.read() as con:
        con.execute(f"COPY ({FEATURE_SQL}) TO '{raw}' (FORMAT parquet)")
    con = duckdb.connect(
        config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(out.parent / ".duckdb_tmp")}
    )
    try:
        con.execute(f"COPY ({_surprise_sql(raw)}) TO '{out}' (FORMAT parquet)")
        return con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
    finally:
        con.close()
        raw.unlink(missing_ok=True)
