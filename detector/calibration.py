"""Learning from the auditors' decisions: review outcomes recalibrate each rule's weight.

A rule's flags that reviewers keep dismissing as false or benign should weigh less in the
risk score, and the flags of a rule they keep confirming more. Each rule (and the outlier
model, whose rule id is ``outlier-<model>``) gets a factor on its weight, from a small
explainable model with a prior:

    precision  = (confirmed + STRENGTH * PRIOR) / (confirmed + dismissed + STRENGTH)
    factor     = precision / PRIOR, clipped to FACTOR_BOUNDS

``dismissed`` counts only the reasons that speak against the rule (``false_positive``,
``benign``); a duplicate or a data error says nothing about it. This is the posterior mean
of a Beta prior worth STRENGTH reviews at PRIOR (the weights as set stand for an even
chance), i.e. an intercept-only logistic fit per rule with its prior, in closed form.
Below MIN_REVIEWS decided flags the prior stands (factor 1). Worked example: ten flags of
a high rule (weight 0.6) all dismissed as benign give precision (0 + 2) / (10 + 4) = 0.14,
factor 0.29, weight 0.17: below an untouched medium rule (0.4). Ten confirmed give 0.86,
factor 1.71, weight 0.95 at most.

The factor multiplies the rule's severity weight in the risk formula (``detector.risk``).
Factors are recomputed at each scoring run; a change is recorded in ``weight_changes``
(run, counts, old → new), the visits and flags of the rule re-weighed, and shown on the
Admin page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

PRIOR = 0.5
STRENGTH = 4.0
MIN_REVIEWS = 5
FACTOR_BOUNDS = (0.1, 2.0)
AGAINST = ("false_positive", "benign")


@dataclass(frozen=True)
class Change:
    rule_id: str
    old: float
    new: float
    confirmed: int
    dismissed: int


def factor(confirmed: int, dismissed: int) -> float:
    """The weight factor a rule earns from its reviews (1 below MIN_REVIEWS)."""
    if confirmed + dismissed < MIN_REVIEWS:
        return 1.0
    precision = (confirmed + STRENGTH * PRIOR) / (confirmed + dismissed + STRENGTH)
    low, high = FACTOR_BOUNDS
    return round(min(high, max(low, precision / PRIOR)), 3)


def pending(con) -> list[Change]:
    """The factors the reviews call for that differ from the stored ones (read-only)."""
    counts = con.execute(
        """
        SELECT f.rule_id,
               count(*) FILTER (WHERE r.status = 'confirmed') AS confirmed,
               count(*) FILTER (WHERE r.status = 'dismissed'
                                  AND r.reason IN (SELECT unnest(?::VARCHAR[]))) AS dismissed
        FROM reviews r JOIN flags f USING (flag_id) GROUP BY ALL""",
        [list(AGAINST)],
    ).fetchall()
    stored = dict(con.execute("SELECT rule_id, factor FROM rule_weights").fetchall())
    reviewed = {rule: (c, d) for rule, c, d in counts}
    changes = []
    for rule in sorted(set(reviewed) | set(stored)):
        c, d = reviewed.get(rule, (0, 0))
        old, new = stored.get(rule, 1.0), factor(c, d)
        if abs(new - old) > 1e-9:
            changes.append(Change(rule, old, new, c, d))
    return changes


def apply(con, run_id: int, changes: list[Change]) -> None:
    """Store the new factors and record each change with the run that made it."""
    now = datetime.now(UTC).replace(tzinfo=None)
    for ch in changes:
        # a MERGE, not INSERT OR REPLACE: a shared (DuckLake) store has no primary keys
        con.execute(
            "MERGE INTO rule_weights USING (SELECT ? AS rule_id, ? AS factor, ? AS confirmed, "
            "? AS dismissed, ? AS run_id, ? AS updated_at) AS new "
            "ON rule_weights.rule_id = new.rule_id WHEN MATCHED THEN UPDATE SET "
            "factor = new.factor, confirmed = new.confirmed, dismissed = new.dismissed, "
            "run_id = new.run_id, updated_at = new.updated_at "
            "WHEN NOT MATCHED THEN INSERT BY NAME",
            [ch.rule_id, ch.new, ch.confirmed, ch.dismissed, run_id, now],
        )
        con.execute(
            "INSERT INTO weight_changes VALUES (?, ?, ?, ?, ?, ?, ?)",
            [run_id, ch.rule_id, ch.old, ch.new, ch.confirmed, ch.dismissed, now],
        )
