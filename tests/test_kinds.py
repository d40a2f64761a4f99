"""Every record kind of ``detector.schema.SPECS`` reaches every consumer (dbt's generic
test, applied to each kind): ingested, it is counted by `detector status`, sealed and
verified by `detector verify`, narrowed right by an incremental rule run (which then
equals a full run), cited as evidence in an export, and a stored row edited afterwards is
caught. A kind declared in one place cannot ship half-wired."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.schema import KINDS, SPECS, VOCABULARIES
from tests.conftest import rows, write_csv

runner = CliRunner()


def _value(spec, field, i: int) -> str:
    """A valid value of a field for row ``i`` (every datetime of a row the same moment, so
    no cross-field order is broken); every facility is "FAC", but in the facilities list,
    where a facility is a record."""
    if field.type == "int":
        return str(i + 1)
    if field.type == "datetime":
        return f"2020-01-{i + 6:02d} 10:{i:02d}"
    if field.type == "date":
        return f"2020-01-{i + 6:02d}"
    if field.type == "vocab":
        return next(iter(VOCABULARIES[field.vocab]))
    if field.name in spec.facility_fields or field.name == "facility":
        return f"FAC{i}" if spec.name == "facilities" else "FAC"
    return f"{field.name.upper()}-{i}"


def _file(folder: Path, kind: str, first: int, n: int) -> Path:
    """``n`` rows of a kind, with its canonical field names as headers."""
    spec = SPECS[kind]
    fields = [f for f in spec.fields if f.name not in ("inside",)]
    header = [f.name for f in fields]
    body = [[_value(spec, f, i) for f in fields] for i in range(first, first + n)]
    return write_csv(folder / f"{kind}_{first}.csv", header, body)


def _rule(folder: Path, kind: str) -> Path:
    """A rule that fires on every record of the kind, scoped by facility."""
    spec = SPECS[kind]
    body = f"""
        id: every-{kind.replace("_", "-")}
        title: Every record of {kind}
        description: Fires on each record, to follow a kind through every consumer.
        category: data_quality
        severity: low
        scope: facility
        query: SELECT record_key, {spec.facility} AS facility FROM {kind}
        explanation: "{{facility}}: a record"
        es:
          title: Cada registro
          description: Salta en cada registro.
          explanation: "{{facility}}: un registro"
        regression:
          - input: {{}}
            expect: []
        dont_match:
          - description: nothing stored
            input: {{}}
    """
    path = folder / "data_quality" / f"every_{kind}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return folder


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _said(result) -> str:
    """A command's output as one line (rich wraps it at the terminal's width)."""
    return " ".join(result.output.split())


@pytest.mark.lake
@pytest.mark.parametrize("kind", KINDS)
def test_a_kind_reaches_every_consumer(kind, tmp_path, store):
    db = store.url
    rules = _rule(tmp_path / "rules", kind)
    first = _file(tmp_path, kind, 0, 3)
    assert _cli("ingest", first, "--kind", kind, "--db", db).exit_code == 0
    assert rows(store, f"SELECT count(*) FROM {kind}") == [(3,)]

    # `detector status` counts it, by its facility
    status = json.loads(_cli("status", "--format", "json", "--db", db).output)
    assert status["totals"][kind] == 3
    facilities = {r["facility"] for r in status["by_facility"] if r["kind"] == kind}
    assert facilities == ({"FAC0", "FAC1", "FAC2"} if kind == "facilities" else {"FAC"})

    # sealed: `detector verify` is intact
    verified = _cli("verify", "--db", db)
    assert verified.exit_code == 0, verified.output

    # an incremental run over a second upload equals a full run
    only = ["--only", f"every-{kind}"]
    assert _cli("run", "--no-score", "--rules", rules, "--db", db).exit_code == 0
    second = _file(tmp_path, kind, 3, 2)
    assert _cli("ingest", second, "--kind", kind, "--db", db).exit_code == 0
    incremental = _cli("run", "--no-score", "--rules", rules, "--db", db)
    assert incremental.exit_code == 0, incremental.output
    flags = "SELECT flag_id FROM flags WHERE state = 'active' AND rule_id = ? ORDER BY 1"
    after_incremental = rows(store, flags, [f"every-{kind}"])
    assert len(after_incremental) == 5
    assert _cli("run", "--no-score", "--rules", rules, *only, "--db", db).exit_code == 0
    assert rows(store, flags, [f"every-{kind}"]) == after_incremental

    # an export cites its records: kind, file, row
    exported = json.loads(_cli("flags", "--format", "json", "--db", db).output)
    cited = [e for f in exported if f["rule_id"] == f"every-{kind}" for e in f["evidence"]]
    assert {(e["kind"], e["file"]) for e in cited} == {
        (kind, first.name),
        (kind, second.name),
    }
    assert all(e["row"] >= 2 for e in cited)

    # verify still intact after the runs; then a stored row edited is caught
    assert _cli("verify", "--db", db).exit_code == 0
    sealed = next(f.name for f in SPECS[kind].fields if f.type in ("text", "vocab"))
    with store.write() as con:
        con.execute(
            f"UPDATE {kind} SET {sealed} = 'edited' WHERE record_key = "
            f"(SELECT min(record_key) FROM {kind})"
        )
    tampered = _cli("verify", "--db", db)
    assert tampered.exit_code == 1
    assert "differ from those sealed at upload" in _said(tampered)


@pytest.mark.lake
@pytest.mark.parametrize("kind", KINDS)
def test_rows_outside_the_ledger_are_caught(kind, tmp_path, store):
    """A row of any kind that no ledger entry accounts for (no upload, or an upload the
    ledger does not hold) fails `detector verify`."""
    db = store.url
    assert _cli("ingest", _file(tmp_path, kind, 0, 2), "--kind", kind, "--db", db).exit_code == 0
    with store.write() as con:
        con.execute(f"INSERT INTO {kind} SELECT * REPLACE (NULL AS upload_seq) FROM {kind} LIMIT 1")
        con.execute(f"INSERT INTO {kind} SELECT * REPLACE (99 AS upload_seq) FROM {kind} LIMIT 1")
    result = _cli("verify", "--db", db)
    assert result.exit_code == 1
    assert f"1 {kind} row(s) belong to no upload" in _said(result)
    assert f"1 {kind} row(s) belong to upload 99" in _said(result)


def test_every_kind_is_declared_whole():
    """What every consumer needs is in each declaration: a facility to scope and count it
    by, and how its records are cited."""
    for kind in KINDS:
        spec = SPECS[kind]
        assert spec.evidence is not None, kind
        assert spec.facility, kind
