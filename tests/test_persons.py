"""Per-person baselines: a visitor's, an official's own history as context, and risk
rolled up per person. Each planted anomaly has a harmless look-alike beside it that must
stay quiet: a guard a little late on the usual shift, a guard who rotates shifts, an
official who always comes often, a relative who stays with their own gang."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.engine import run_rules
from detector.features import build_features
from detector.generator import make_dui
from detector.pipeline import ingest_files
from detector.rollup import rollup
from detector.scoring import ScoringConfig, load_reference, score
from detector.store import Store
from tests.conftest import rows, write_csv

HEADER = [
    "record_id", "facility", "checkpoint", "entered_at", "exited_at", "name", "id_type",
    "id_number", "role", "organization", "inmate_id", "purpose", "party_size",
]  # fmt: skip


def _weekly(first: datetime, weeks: int, step: int = 7) -> list[datetime]:
    return [first + timedelta(days=step * k) for k in range(weeks)]


@pytest.fixture(scope="module")
def world(demo_logs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("persons")
    store = Store(tmp / "db" / "detector.duckdb", wait=30)
    ingest_files(store, [p for k, p in demo_logs.items() if k != "truth"], user="test")

    def inmate(facility, gang, rank):
        return rows(
            store,
            "SELECT inmate_id FROM inmates WHERE facility = ? AND gang = ? AND rank = ? "
            "ORDER BY inmate_id LIMIT 1",
            [facility, gang, rank],
        )[0][0]

    rng = random.Random(5)
    lines, n = [], 0

    def visit(
        who, at, facility, checkpoint, role, inmate_id="", purpose="Visita familiar", hours=1
    ):
        nonlocal n
        n += 1
        name, doc = who
        lines.append(
            [f"P-{n:04d}", facility, checkpoint, f"{at:%Y-%m-%dT%H:%M}",
             f"{at + timedelta(hours=hours):%Y-%m-%dT%H:%M}", name, "DUI", doc, role,
             "Juzgado" if role == "official" else "", inmate_id, purpose, 1]
        )  # fmt: skip
        return f"P-{n:04d}"

    def person(name):
        return (name, make_dui(rng))

    planted, alike = {}, {}

    # A guard on the day shift (06:00, twelve hours) for six weeks, then a night shift at
    # 18:30 — when many guards arrive, but never this one.
    def shifts(who, first, days, hour):
        out = []
        for k in range(days):
            d = first + timedelta(days=k)
            if d.weekday() < 5:
                out.append(visit(who, d.replace(hour=hour), "IZA", "Garita Principal",
                                 "staff", purpose="Turno", hours=12))  # fmt: skip
        return out

    rosa = person("Rosa Turno Diurno")
    shifts(rosa, datetime(2019, 7, 1), 42, 6)
    planted["person_time_rarity"] = visit(
        rosa, datetime(2019, 8, 13, 18, 30), "IZA", "Garita Principal", "staff",
        purpose="Turno", hours=12,
    )  # fmt: skip
    # Look-alikes: the same day shift, a little late one morning, and back in after a shift
    # (a re-entry, as a real log's regulars show); a guard rotating shifts.
    elena = person("Elena Turno Diurno")
    shifts(elena, datetime(2019, 7, 1), 42, 6)
    alike["person_time_rarity"] = [
        visit(elena, datetime(2019, 8, 13, 7, 45), "IZA", "Garita Principal", "staff",
              purpose="Turno", hours=12)
    ]  # fmt: skip
    elena_back = visit(  # out after her shift, back in the same evening
        elena, datetime(2019, 8, 9, 18, 30), "IZA", "Garita Principal", "staff",
        purpose="Turno",
    )  # fmt: skip
    alike["person_time_rarity"].append(elena_back)
    julia = person("Julia Turno Rotativo")
    for week in range(6):
        shifts(julia, datetime(2019, 7, 1) + timedelta(days=7 * week), 7, 6 if week % 2 else 18)
    alike["person_time_rarity"].append(
        visit(julia, datetime(2019, 8, 13, 18, 30), "IZA", "Garita Principal", "staff",
              purpose="Turno", hours=12)
    )  # fmt: skip

    # A relative of an MS13 member, then a B18R leader; the look-alike sees an MS13 leader.
    member, ms_leader = inmate("ZAC", "MS13", "member"), inmate("ZAC", "MS13", "leader")
    rival = inmate("ZAC", "B18R", "leader")
    carmen, lidia = person("Carmen Fiel Pandilla"), person("Lidia Misma Pandilla")
    for at in _weekly(datetime(2019, 6, 8, 10, 0), 8):
        visit(carmen, at, "ZAC", "Garita de Visitas", "family", member)
        visit(lidia, at + timedelta(minutes=20), "ZAC", "Garita de Visitas", "family", member)
    planted["gang_switch"] = visit(
        carmen, datetime(2019, 8, 10, 10, 0), "ZAC", "Garita de Visitas", "family", rival
    )
    alike["gang_switch"] = [
        visit(lidia, datetime(2019, 8, 10, 10, 20), "ZAC", "Garita de Visitas", "family",
              ms_leader)
    ]  # fmt: skip

    # An official once a month, then seven times in ten days; the look-alike comes weekly.
    ramiro, teodoro = person("Ramiro Oleada Funcionario"), person("Teodoro Constante Funcionario")
    meeting = "Reunión de coordinación"
    for at in _weekly(datetime(2019, 6, 4, 10, 0), 4, step=28):
        visit(ramiro, at, "IZA", "Garita Principal", "official", purpose=meeting)
    burst = [datetime(2019, 10, 14, 10, 0) + timedelta(days=d) for d in (0, 1, 2, 3, 7, 8, 9)]
    planted["official_surge"] = [
        visit(ramiro, at, "IZA", "Garita Principal", "official", purpose=meeting) for at in burst
    ]
    alike["official_surge"] = [
        visit(teodoro, at, "IZA", "Garita Principal", "official", purpose=meeting)
        for at in _weekly(datetime(2019, 6, 5, 10, 0), 24)
    ]
    extra = write_csv(tmp / "visits_persons.csv", HEADER, lines)
    ingest_files(store, [extra], user="test")
    run_rules(store)
    score(store)
    return store, planted, alike


def _scored(store, record_ids):
    ids = [record_ids] if isinstance(record_ids, str) else record_ids
    return {
        rid: (pct, {f["feature"]: f["value"] for f in json.loads(top)})
        for rid, pct, top in rows(
            store,
            "SELECT v.record_id, s.outlier_pct, s.top_features FROM scores s "
            "JOIN visits v USING (record_key) WHERE v.record_id IN (SELECT unnest(?))",
            [ids],
        )
    }


@pytest.fixture(scope="module")
def features(world, tmp_path_factory):
    """Every visit's features against the kept reference, by record id."""
    import polars as pl

    store = world[0]
    reference, why = load_reference(store, ScoringConfig())
    assert reference is not None, why
    out = tmp_path_factory.mktemp("features") / "f.parquet"
    build_features(store, out, reference.path)
    return {r["record_id"]: r for r in pl.read_parquet(out).to_dicts()}


@pytest.mark.parametrize("feature", ["person_time_rarity", "gang_switch", "official_surge"])
def test_a_persons_own_history_makes_the_planted_visit_stand_out(world, features, feature):
    store, planted, alike = world
    got = _scored(store, planted[feature])
    assert any(
        pct >= 0.99 and top.get(feature, 0) > 0 and features[rid][feature] > 0
        for rid, (pct, top) in got.items()
    ), got
    for rid in alike[feature]:  # the look-alike's own history says nothing odd
        assert features[rid][feature] == 0, (feature, rid, features[rid])


def test_risk_by_person_ranks_the_planted_people_above_their_look_alikes(world):
    store, _, _ = world
    frame = rollup(store, "person")
    assert frame.columns[0] == "person" and frame["total_risk"].is_sorted(descending=True)
    rank = {p: i for i, p in enumerate(frame["person"].to_list())}
    for planted, alike in (
        ("ROSA TURNO DIURNO", "ELENA TURNO DIURNO"),
        ("ROSA TURNO DIURNO", "JULIA TURNO ROTATIVO"),
        ("CARMEN FIEL PANDILLA", "LIDIA MISMA PANDILLA"),
        ("RAMIRO OLEADA FUNCIONARIO", "TEODORO CONSTANTE FUNCIONARIO"),
    ):
        assert rank[planted] < rank[alike], (planted, alike)
    people = set(frame["person"].to_list())
    assert not people & {"N/I", "ACOMPANANTE", ""}  # placeholders are no one
    out = CliRunner().invoke(
        app, ["risk", "--by", "person", "--format", "json", "--db", str(store.path)]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["person"]
