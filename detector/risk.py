"""The risk formula: severity weights, the risk of a range flag, and a visit's risk as the
noisy-OR of its rule flags and its outlier part (SQL builders; the scores are written by
``detector.scoring``, rolled up by ``detector.rollup``).

Risk (one number per visit, 0..1) is a noisy-OR of independent evidence::

    rule_score    = 1 - prod(1 - w[severity])   over the rule flags the visit is in
    outlier_part  = 0.7 * percentile ** 200     (mid-rank percentile of the outlier score
                                                 in the fitted window: only the top ~1% count)
    risk_score    = 1 - (1 - rule_score) * (1 - outlier_part)

with w = informational 0.05, low 0.2, medium 0.4, high 0.6, critical 0.8, each times the
factor the rule's reviews earned (``detector.calibration``), capped at ``MAX_WEIGHT``. A
critical rule hit alone gives 0.8; a top-0.1% outlier alone about 0.57 (between a medium
and a high hit), a top-0.01% outlier about 0.69, a top-1% outlier only 0.09: a named rule
finding outranks a merely unusual visit unless the visit is among the rarest. Both
together give more than either. Every part is bounded and monotone, so the order of the
review queue is easy to defend.

A range flag (a gap, a silent period, a missing book) has no scored visits: its risk is its
severity's weight raised by its size, up to ``RANGE_SIZE_SHARE`` of the way to 1; half of
that at ``RANGE_SIZE_HALF`` "magnitude" (the entries the gap hides, as the rule counts).
"""

from __future__ import annotations

SEVERITIES = ("informational", "low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
# How much one hit of a severity weighs in a visit's risk.
SEVERITY_WEIGHT = {"informational": 0.05, "low": 0.2, "medium": 0.4, "high": 0.6, "critical": 0.8}
MAX_WEIGHT = 0.95  # no single piece of evidence makes a visit certain
OUTLIER_WEIGHT = 0.7  # the outlier part of a visit at the very top of the reference
OUTLIER_POWER = 200  # only the top ~1% of the reference count

RANGE_SIZE_SHARE = 0.3
RANGE_SIZE_HALF = 50.0


def severity_case(column: str = "severity") -> str:
    """SQL mapping a severity column to its weight."""
    whens = " ".join(f"WHEN '{s}' THEN {w}" for s, w in SEVERITY_WEIGHT.items())
    return f"(CASE {column} {whens} ELSE 0 END)"


def severity_rank(column: str = "severity") -> str:
    """SQL: a severity column's rank (informational 0 ... critical 4)."""
    whens = " ".join(f"WHEN '{s}' THEN {i}" for s, i in SEVERITY_RANK.items())
    return f"(CASE {column} {whens} ELSE -1 END)"


def weighted(severity_weight: str, rule_id: str) -> str:
    """SQL: a severity weight times its rule's factor (1 when it has none), capped."""
    return (
        f"least({MAX_WEIGHT}, {severity_weight} * coalesce((SELECT w.factor FROM rule_weights w "
        f"WHERE w.rule_id = {rule_id}), 1))"
    )


def range_risk(alias: str) -> str:
    """SQL: the queue risk of hits/flags ``alias`` when first stored. Record flags start at
    their severity's weight (scoring raises it from their visits); range flags get their
    severity's weight raised by their size and keep it. Weights carry the factor the
    rule's reviews earned (``detector.calibration``)."""
    m = (
        f"greatest(coalesce(try_cast(json_extract_string({alias}.fields, '$.magnitude') "
        "AS DOUBLE), 0), 0)"
    )
    w = weighted(severity_case(f"{alias}.severity"), f"{alias}.rule_id")
    return (
        f"(CASE WHEN {alias}.subject = 'range' "
        f"THEN 1 - (1 - {w}) * (1 - {RANGE_SIZE_SHARE} * {m} / ({m} + {RANGE_SIZE_HALF})) "
        f"ELSE {w} END)"
    )


def in_affected(column: str, every: bool = False) -> str:
    """SQL: whether ``column`` holds a visit of the temp table ``affected`` (the visits a
    scoring run wrote the risk of; with ``every``, a full run's, always true: every visit
    is, and there is no such table)."""
    return "TRUE" if every else f"{column} IN (SELECT record_key FROM affected)"


def rule_part(every: bool = False) -> str:
    """SQL: the rule part of the risk of the visits in the temp table ``affected`` (with
    ``every``, of every visit an active rule flag holds): the noisy-OR of the severity
    weights of their active rule flags, and which rules they are."""
    return f"""
    SELECT k AS record_key,
           1 - product(1 - {weighted(severity_case("f.severity"), "f.rule_id")}) AS rule_score,
           list(DISTINCT f.rule_id ORDER BY f.rule_id) AS rules
    FROM flags f, unnest(f.record_keys) u(k)
    WHERE f.state = 'active' AND f.source = 'rule' AND f.subject = 'records'
      AND {in_affected("k", every)}
    GROUP BY k"""


def visit_risk(rule_score: str, scores: str, model_rule: str) -> str:
    """SQL: the noisy-OR of a visit's rule part and its outlier part; the outlier part
    carries the factor the model's reviewed flags earned."""
    weight = weighted(str(OUTLIER_WEIGHT), f"'{model_rule}'")
    return f"1 - (1 - {rule_score}) * (1 - {weight} * pow({scores}.outlier_pct, {OUTLIER_POWER}))"
