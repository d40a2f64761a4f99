"""Measure flags against the generator's truth file: recall and precision per category."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from detector.store import Store


@dataclass
class Quality:
    category: str
    planted: int
    found: int
    flags: int
    true_flags: int

    @property
    def recall(self) -> float:
        return self.found / self.planted if self.planted else 1.0

    @property
    def precision(self) -> float:
        return self.true_flags / self.flags if self.flags else 1.0


def _ts(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def hits(flag: dict, item: dict) -> bool:
    """Whether a flag points at a planted anomaly.

    It does when they share a record (visit or transfer id), or, for ranges, when they
    are at the same facility and the flag's logbook or period overlaps the planted one.
    """
    ids = set(flag["record_ids"] or [])
    if ids & set(item.get("visits", []) + item.get("transfers", [])):
        return True
    facility = item.get("facility")
    if not facility or facility not in (flag["facility"] or ""):
        return False
    if item.get("logbook") and flag["logbook"] == item["logbook"]:
        return True
    period = item.get("period")
    if period and flag["period_start"] and item["category"] == "logbook_gap":
        start, end = _ts(period[0]), _ts(period[1])
        f_start, f_end = flag["period_start"], flag["period_end"] or flag["period_start"]
        return f_start <= end and f_end >= start
    return False


def rule_quality(store: Store, truth_path: Path, source: str | None = "rule") -> dict[str, Quality]:
    """Recall (planted anomalies of a category hit by a flag of that category) and
    precision (flags of a category that point at any planted anomaly) per category."""
    every = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    # Contextual anomalies are for the scoring: named rules are not expected to find them
    # (a rule flag that does still counts as a true flag).
    truth = [t for t in every if source != "rule" or not t.get("contextual")]
    with store.read() as con:
        cur = con.execute(
            "SELECT category, record_ids, facility, logbook, period_start, "
            "period_end FROM flags WHERE state = 'active' AND source = ?",
            [source],
        )
        names = [d[0] for d in cur.description]
        flags = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    out = {}
    for category in sorted({t["category"] for t in truth} | {f["category"] for f in flags}):
        planted = [t for t in truth if t["category"] == category]
        mine = [f for f in flags if f["category"] == category]
        out[category] = Quality(
            category,
            len(planted),
            sum(any(hits(f, t) for f in mine) for t in planted),
            len(mine),
            sum(any(hits(f, t) for t in truth) for f in mine),
        )
    return out
