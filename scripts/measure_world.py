"""Measure the tool on the independent world (tests/worlds/latam.py) through the commands a
user runs: ingest, run, flags, risk. Prints recall per planted category, the open queue's
precision, every false flag's rule and the look-alike it sits on, the ingest figures and
how long each command took.

    .venv/bin/python scripts/measure_world.py [--seed 11] [--months 12] [--out DIR]

A flag is true when it shares a record id with a planted anomaly of its own category, or,
for a range flag (a logbook gap, or a flag citing no record), when it overlaps a planted
anomaly of its category at the same facility (and logbook, when both name one) in time.
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.worlds.latam import write_world  # noqa: E402

DETECTOR = ROOT / ".venv" / "bin" / "detector"
CATEGORIES = (
    "unidentified_entrant",
    "logbook_gap",
    "medical_transfer",
    "visit_pattern",
    "vehicle",
    "access_events",
)
ENCODINGS = {".txt": "utf-16"}
# Who the planted anomalies are about, as a folded name.
PLANTED_PEOPLE = (
    "ROLANDO MENA AYALA",
    "SANDRA ELIZABETH PORTILLO GUEVARA",
    "KARLA YAMILETH SOSA GUARDADO",
    "EVER ALEXANDER RAMOS CRUZ",
    "CARLOS ERNESTO RIVAS MOLINA",
    "JOSE ANTONIO MENJIVAR SOLIS",
)


def fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()


def command(args: list[str], timings: dict, label: str) -> subprocess.CompletedProcess:
    """Run one detector command as a user would, timing it; stop on failure."""
    env = {**os.environ, "COLUMNS": "220", "DETECTOR_LANGUAGE": "en"}
    start = time.perf_counter()
    done = subprocess.run([str(DETECTOR), *args], capture_output=True, text=True, env=env)
    timings[label] = time.perf_counter() - start
    if done.returncode != 0 and label != "ingest":
        sys.exit(f"{label} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def parse_day(text: str | None, end: bool = False) -> datetime | None:
    if not text:
        return None
    text = str(text).replace("T", " ")
    if len(text) == 10:
        text += " 23:59:59" if end else " 00:00:00"
    return datetime.fromisoformat(text[:19])


def overlaps(a0, a1, b0, b1) -> bool:
    if None in (a0, b0):
        return False
    return a0 <= (b1 or b0) and b0 <= (a1 or a0)


def file_rows(logs: Path) -> dict[tuple[str, int], str]:
    """(file name, row as a spreadsheet counts it) -> the record id written in it, so that
    a flag on quarantined rows can be placed on the world's records."""
    rows = {}
    for path in logs.iterdir():
        raw = path.read_bytes()
        try:
            text = raw.decode(ENCODINGS.get(path.suffix, "utf-8-sig"))
        except UnicodeDecodeError:
            text = raw.decode("cp1252")
        header = text.split("\n", 1)[0]
        delimiter = max(",;|\t", key=header.count)
        for n, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1):
            if n > 1 and row:
                rows[(path.name, n)] = row[0]
    return rows


def flag_records(flag: dict, rows: dict) -> tuple[set[str], set[str]]:
    """The world's record ids a flag cites, and the logbook labels it names."""
    ids, books = set(), set()
    for ev in flag.get("evidence") or []:
        if ev.get("kind") == "logbooks":
            books.add(ev.get("record_id"))
        elif ev.get("kind") == "quarantine":
            rid = rows.get((ev.get("file"), ev.get("row")))
            if rid:
                ids.add(rid)
        elif ev.get("record_id"):
            ids.add(ev["record_id"])
    ids |= set(flag.get("record_ids") or []) - books
    if flag.get("logbook"):
        books.add(flag["logbook"])
    return ids, books


def record_ids(item: dict) -> set[str]:
    """The record ids a planted anomaly or a look-alike class lists (built once per item)."""
    if "_ids" not in item:
        item["_ids"] = (
            set(item.get("visits", []))
            | set(item.get("transfers", []))
            | set(item.get("events", []))
        )
    return item["_ids"]


def is_range(flag: dict, ids: set[str]) -> bool:
    return flag["category"] == "logbook_gap" or not ids


def range_match(flag: dict, books: set[str], item: dict) -> bool:
    """A range flag over a planted range: same facility, the same book when both name one,
    and periods that overlap."""
    fac = item.get("facility")
    if not fac or fac not in {f.strip() for f in (flag.get("facility") or "").split(",")}:
        return False
    if item.get("logbook") and books and item["logbook"] not in books:
        return False
    period = item.get("period") or [None, None]
    f0, f1 = parse_day(flag.get("period_start")), parse_day(flag.get("period_end"), True)
    t0, t1 = parse_day(period[0]), parse_day(period[1], True)
    if item.get("logbook") and item["logbook"] in books:
        return True
    return overlaps(f0, f1, t0, t1)


def lookalike_of(flag: dict, ids: set[str], books: set[str], looks: list[dict]) -> list[str]:
    """The look-alike classes a flag sits on, the most specific (smallest) class first. A
    range flag's records only anchor the range, so a range is placed by where and when."""
    hits = []
    ranged = flag["category"] == "logbook_gap"
    for look in looks:
        shared = 0 if ranged else len(ids & record_ids(look))
        if not shared and is_range(flag, ids):
            fac = look.get("facility")
            facs = {f.strip() for f in (flag.get("facility") or "").split(",")}
            periods = look.get("periods", []) + ([look["period"]] if look.get("period") else [])
            f0 = parse_day(flag.get("period_start"))
            f1 = parse_day(flag.get("period_end"), True)
            for period in periods if (not fac or fac in facs) else ():
                if overlaps(f0, f1, parse_day(period[0]), parse_day(period[1], True)):
                    shared = 1
            for b in look.get("books", []):
                if b["logbook"] in books and b["facility"] in facs:
                    shared = 1
        if shared:
            size = len(record_ids(look)) + len(look.get("books", [])) or 10**6
            hits.append((size, look["class"]))
    return [c for _, c in sorted(hits)]


def ingest_table(stdout: str) -> list[list[str]]:
    """The rows of the ingest command's table (file, kind, status, stored, quarantined,
    duplicates)."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) >= 6 and cells[3].isdigit():
            rows.append(cells[:6])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--out", type=Path, help="folder for the world and the database")
    ap.add_argument("--list-false", action="store_true", help="print every false flag")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="world2-"))
    if out.exists():
        shutil.rmtree(out)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    paths = write_world(out / "world", seed=args.seed, months=args.months)
    timings["write_world"] = time.perf_counter() - start
    logs = paths["visits_MSZ"].parent
    truth = json.loads(paths["truth"].read_text())
    looks = json.loads(paths["lookalikes"].read_text())
    db = out / "audit.duckdb"

    ing = command(["ingest", str(logs), "--db", str(db), "--user", "measure"], timings, "ingest")
    command(["run", "--db", str(db)], timings, "run")
    flags_path, risk_path = out / "flags.json", out / "risk_person.json"
    command(
        [
            "flags",
            "--format",
            "json",
            "--language",
            "en",
            "--db",
            str(db),
            "--output",
            str(flags_path),
        ],
        timings,
        "flags",
    )
    command(
        ["risk", "--by", "person", "--format", "json", "--db", str(db), "--output", str(risk_path)],
        timings,
        "risk",
    )
    status = json.loads(
        subprocess.run(
            [str(DETECTOR), "status", "--format", "json", "--db", str(db)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    flags = json.loads(flags_path.read_text())
    risk = json.loads(risk_path.read_text())
    rows = file_rows(logs)

    # ---- ingest --------------------------------------------------------------------
    print(f"world: seed {args.seed}, {args.months} months, in {out}")
    print("\n== Ingest (per file)")
    table = ingest_table(ing.stdout)
    for file, kind, st, stored, quar, dup in table:
        print(f"  {file:34} {kind:11} {st:8} stored {stored:>6}  quarantined {quar:>4}  dup {dup}")
    for q in status.get("quarantine", []):
        print(f"  quarantine: {q['source_name']}: {q['rows']} rows, {q['reason_code']}")
    for line in (ing.stdout + ing.stderr).splitlines():
        if line.startswith("error") or "refused" in line:
            print("  " + line.strip())
    visits = sum(int(r[3]) for r in table if r[1] == "visits")
    print(f"  visits stored: {visits:,}")

    # ---- matching ----------------------------------------------------------------------
    open_flags = [
        f
        for f in flags
        if f.get("state") == "active" and f.get("review_status") not in ("confirmed", "dismissed")
    ]
    found: dict[str, set[str]] = collections.defaultdict(set)  # truth id -> rules
    touched: dict[str, set[str]] = collections.defaultdict(set)
    verdicts = []
    for f in open_flags:
        ids, books = flag_records(f, rows)
        true_for, other = [], []
        for item in truth:
            by_record = bool(ids & record_ids(item)) and (
                f["category"] != "logbook_gap" or item["category"] == "logbook_gap"
            )
            by_range = (
                is_range(f, ids)
                and (item["category"] == "logbook_gap" or not record_ids(item))
                and range_match(f, books, item)
            )
            if by_record or by_range:
                if item["category"] == f["category"]:
                    true_for.append(item["id"])
                    found[item["id"]].add(f["rule_id"])
                else:
                    other.append(item)
                touched[item["id"]].add(f["rule_id"])
        reads = [ev.get("kind") for ev in f.get("evidence") or []]
        if not true_for and not other and reads and set(reads) == {"events"}:
            # a gate read whose line was in a book that went missing
            other = [
                t for t in truth if t["category"] == "logbook_gap" and range_match(f, set(), t)
            ]
        verdicts.append((f, bool(true_for), ids, books, other))

    print("\n== Recall per category (planted anomalies found by a flag of their own category)")
    for cat in CATEGORIES:
        items = [t for t in truth if t["category"] == cat]
        hit = [t for t in items if t["id"] in found]
        print(f"  {cat:22} {len(hit)}/{len(items)}")
    print("\n  per planted anomaly (rules of its category that found it | other flags on it):")
    for t in truth:
        own = ", ".join(sorted(found.get(t["id"], ()))) or "-"
        rest = ", ".join(sorted(touched.get(t["id"], set()) - found.get(t["id"], set())))
        print(
            f"  {t['id']} {t['category']:20} {t['facility']:4} {own}"
            + (f" | {rest}" if rest else "")
        )
        print(f"       {t['description'][:150]}")

    n_open = len(open_flags)
    n_true = sum(1 for v in verdicts if v[1])
    print("\n== Open queue")
    print(
        f"  open flags: {n_open:,}  (rule {sum(f['source'] == 'rule' for f in open_flags):,}, "
        f"model {sum(f['source'] != 'rule' for f in open_flags):,})"
    )
    print(f"  per 10,000 visits: {n_open / visits * 10000:,.1f}")
    print(f"  true: {n_true:,}  share true: {n_true / max(n_open, 1):.3f}")
    ranked = sorted(open_flags, key=lambda f: -(f.get("risk") or 0))
    true_ids = {v[0]["flag_id"] for v in verdicts if v[1]}
    for k in (50, 100, 200):
        top = ranked[:k]
        print(
            f"  precision at {k}: {sum(f['flag_id'] in true_ids for f in top) / max(len(top), 1):.2f}"
        )

    print("\n== Flags per rule (open / true)")
    per_rule = collections.Counter(f["rule_id"] for f in open_flags)
    true_rule = collections.Counter(v[0]["rule_id"] for v in verdicts if v[1])
    for rule, n in per_rule.most_common():
        print(f"  {rule:45} {n:>6} {true_rule[rule]:>5}")

    print("\n== False flags by rule and the look-alike they sit on")
    groups: dict[tuple[str, str], list] = collections.defaultdict(list)
    for f, ok, ids, books, other in verdicts:
        if ok:
            continue
        classes = lookalike_of(f, ids, books, looks)
        if other:
            where = "on planted " + "/".join(sorted({o["category"] for o in other}))
        elif classes:
            where = classes[0]
        else:
            where = "(none)"
        groups[(f["rule_id"], where)].append((f, classes))
    for (rule, where), fs in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        also = collections.Counter(c for _, cs in fs for c in cs[1:])
        extra = f"  (also: {', '.join(f'{c} {n}' for c, n in also.most_common(3))})" if also else ""
        print(f"  {rule:45} {where:36} {len(fs):>6}{extra}")
    print("\n  examples of false flags on no look-alike:")
    for (rule, where), fs in sorted(groups.items()):
        if where == "(none)":
            for f, _ in fs[:2]:
                print(f"   - {rule}: {f['explanation'][:230]}")
    with (out / "false_flags.tsv").open("w") as fh:
        fh.write("rule\tcategory\tfacility\tlookalikes\trecords\texplanation\n")
        for (rule, where), fs in groups.items():
            for f, classes in fs:
                recs = ",".join(sorted(filter(None, flag_records(f, rows)[0])))[:200]
                fh.write(
                    f"{rule}\t{f['category']}\t{f.get('facility')}\t{where}|"
                    f"{','.join(classes)}\t{recs}\t{f['explanation']}\n"
                )
    print(f"  every false flag: {out / 'false_flags.tsv'}")
    if args.list_false:
        for (rule, where), fs in groups.items():
            for f, _ in fs:
                print(f"   {rule} [{where}] {f['explanation'][:200]}")

    print("\n== risk --by person (top 15)")
    for r in risk[:15]:
        print(
            f"  {r['person'][:38]:38} {r.get('roles') or '':12} {r.get('facilities') or '':10} "
            f"total {r['total_risk']:7.2f} max {r['max_risk']:.2f} visits {r['visits']:>4} "
            f"events {r.get('event_flags', 0)}"
        )

    print(f"\n  where the people of the planted anomalies rank (of {len(risk)} people):")
    for who in PLANTED_PEOPLE:
        rank = next((n for n, r in enumerate(risk, 1) if who in fold(r["person"])), None)
        row = risk[rank - 1] if rank else None
        print(
            f"  {who:36} "
            + (
                f"#{rank} total {row['total_risk']:.2f} max {row['max_risk']:.2f}"
                if row
                else "not listed"
            )
        )

    print("\n== Time per command (s)")
    for label, seconds in timings.items():
        print(f"  {label:12} {seconds:7.1f}")


if __name__ == "__main__":
    main()
