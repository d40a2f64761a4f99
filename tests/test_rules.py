"""Rule files: schema, regression cases, custom folders, parameters bound not formatted."""

from __future__ import annotations

import textwrap
from datetime import date

import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.rulebook import (
    BUILTIN_RULES,
    RuleError,
    categories,
    load_rule,
    load_rules,
    rule_files,
)
from detector.rulecases import run_case
from tests.conftest import rule_cases

RULES = load_rules()


def test_every_rule_file_is_valid():
    offenders = []
    for path in rule_files():
        try:
            load_rule(path)
        except RuleError as exc:
            offenders.append(str(exc))
    assert offenders == []


def test_catalogue_covers_every_category_and_required_rule():
    ids = {r.id for r in RULES}
    assert {r.category for r in RULES} == set(categories())
    assert {
        "unidentified-placeholder-name",
        "unidentified-missing-document",
        "unidentified-invalid-dui",
        "unidentified-party-larger-than-names",
        "unidentified-companions-of-official",
        "logbook-page-sequence-gap",
        "logbook-series-gap",
        "logbook-not-in-custody",
        "logbook-silent-period",
        "logbook-entries-out-of-order",
        "medical-transfer-without-approval",
        "medical-transfer-to-non-medical-facility",
        "medical-transfer-no-return",
        "medical-transfer-gang-reunification",
        "visit-outside-visiting-hours",
        "visit-official-meets-rival-leaders",
        "visit-no-exit-or-implausible-stay",
        "visit-exit-before-entry",
        "vehicle-plate-many-people",
        "vehicle-plate-without-person",
    } <= ids


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_regression_cases(rule):
    assert rule.regression, f"{rule.path} has no regression case"
    for problems in rule_cases(rule.id).regression:
        assert problems == []


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_leaves_its_look_alikes_alone(rule):
    """Sigma's dont_match: each rule carries the harmless traffic it must not flag."""
    assert rule.dont_match, f"{rule.path} has no dont_match case"
    for case, problems in zip(rule.dont_match, rule_cases(rule.id).dont_match, strict=True):
        assert problems == [], case.description


def _write_rule(folder, body: str, category="data_quality", name="r.yml"):
    target = folder / category
    target.mkdir(parents=True, exist_ok=True)
    (target / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return target / name


GOOD = """
    id: my-custom-rule
    title: Visits by a named person
    description: Custom rule from an auditor's folder.
    category: data_quality
    severity: low
    parameters: {who: "ANA"}
    query: SELECT record_key, facility FROM visits WHERE name_key = $who
    explanation: "{facility}: Ana was here"
    es:
      title: Visitas de una persona con nombre
      description: Regla propia de la carpeta de un auditor.
      explanation: "{facility}: Ana estuvo aquí"
    regression:
      - input:
          visits:
            - {record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: "Ana"}
            - {record_id: V2, facility: ZAC, entered_at: "2019-06-01 10:00", name: "Ana'; DROP TABLE visits; --"}
        expect:
          - {record_ids: [V1]}
    dont_match:
      - description: somebody else
        input:
          visits:
            - {record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: "Anabel"}
"""


def test_custom_rules_folder_runs_without_python(tmp_path):
    _write_rule(tmp_path / "mine", GOOD)
    rules = load_rules([tmp_path / "mine"])
    custom = [r for r in rules if r.id == "my-custom-rule"]
    assert len(rules) == len(RULES) + 1 and custom
    assert run_case(custom[0], custom[0].regression[0], tmp_path / "case") == []
    # (every built-in rule's cases run in this file's own tests, one rule at a time)
    result = CliRunner().invoke(
        app, ["rules", "test", "--rules", str(tmp_path / "mine"), "--rule", "my-custom-rule"]
    )
    assert result.exit_code == 0, result.output
    assert "ok my-custom-rule case 1" in result.output
    assert "unidentified-placeholder-name" not in result.output
    unknown = CliRunner().invoke(app, ["rules", "test", "--rule", "no-such-rule"])
    assert unknown.exit_code == 1 and "no-such-rule" in unknown.output


@pytest.mark.parametrize(
    "change,message",
    [
        (("severity: low", "severity: huge"), "field 'severity'"),
        (("category: data_quality", "category: nonsense"), "field 'category'"),
        (("    regression:", "    regression_missing:"), "field 'regression'"),
        (("query: SELECT", "query: DELETE FROM visits; SELECT"), "field 'query'"),
        # Spanish beside the English: none, or one quoting a field the English does not
        (("    es:", "    es_missing:"), "field 'es'"),
        (("Ana estuvo aquí", "{visitor} estuvo aquí"), "es.explanation quotes visitor"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path, change, message):
    path = _write_rule(tmp_path, GOOD.replace(*change))
    with pytest.raises(RuleError) as exc:
        load_rule(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_rule_without_a_case_fails(tmp_path):
    body = GOOD[: GOOD.index("    regression:")] + "    regression: []\n"
    with pytest.raises(RuleError, match="regression"):
        load_rule(_write_rule(tmp_path, body))


def test_rule_without_a_dont_match_case_fails(tmp_path):
    body = GOOD[: GOOD.index("    dont_match:")]
    with pytest.raises(RuleError, match="dont_match"):
        load_rule(_write_rule(tmp_path, body))


def test_duplicate_rule_id_is_refused(tmp_path):
    _write_rule(tmp_path / "a", GOOD, name="one.yml")
    _write_rule(tmp_path / "a", GOOD, name="two.yml")
    with pytest.raises(RuleError, match="already used"):
        load_rules([tmp_path / "a"])


def test_builtin_rules_live_in_their_category_folders():
    for path in rule_files():
        assert path.parent.parent == BUILTIN_RULES


def test_parsed_rules_are_cached_by_content_hash_and_a_tampered_entry_is_held_to_the_schema(
    tmp_path, monkeypatch
):
    """A rule file's parsed YAML is kept, keyed by the file's SHA-256, for the next process;
    an entry is validated like the file (a query edited into a DELETE is refused), is used
    only for the bytes it names, and is not read from a folder others can write."""
    import hashlib
    import json

    import yaml

    from detector import rulebook

    monkeypatch.setenv("DETECTOR_CACHE", str(tmp_path / "cache"))
    path = _write_rule(tmp_path, GOOD)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    first = load_rule(path)
    entry = tmp_path / "cache" / "rules" / f"{sha}.json"
    assert json.loads(entry.read_text())["sha256"] == sha

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again")

    rulebook._PARSED.clear()  # as a new process
    monkeypatch.setattr(yaml, "load", no_parsing)
    assert load_rule(path) == first

    cached = json.loads(entry.read_text())
    cached["data"]["query"] = "DELETE FROM visits"
    entry.write_text(json.dumps(cached))
    rulebook._PARSED.clear()
    with pytest.raises(RuleError, match="field 'query'"):
        load_rule(path)

    monkeypatch.undo()
    monkeypatch.setenv("DETECTOR_CACHE", str(tmp_path / "cache"))
    cached["sha256"] = "0" * 64  # an entry naming other bytes is not used
    entry.write_text(json.dumps(cached))
    rulebook._PARSED.clear()
    assert load_rule(path) == first
    cached = json.loads(entry.read_text())
    cached["data"]["query"] = "DELETE FROM visits"
    entry.write_text(json.dumps(cached))
    entry.chmod(0o666)  # writable by others: not read (parsed from the file instead)
    rulebook._PARSED.clear()
    assert load_rule(path) == first


def test_holiday_calendars_are_cached_and_an_entry_others_can_write_is_not_read(
    tmp_path, monkeypatch
):
    """Issue 25: a rule run's public holidays come from the user's cache after the first
    (the library's import and calendars were a tenth of a second of every run), the same
    days and names; an entry another user could write is not read."""
    import holidays

    from detector.engine import holidays_of

    monkeypatch.setenv("DETECTOR_CACHE", str(tmp_path / "cache"))
    first = holidays_of(["SV"], 2019, 2020)
    assert (date(2019, 9, 15), "Independence Day", "SV") in first

    def no_calendar(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(holidays, "country_holidays", no_calendar)
    assert holidays_of(["SV"], 2019, 2020) == first
    with pytest.raises(AssertionError, match="computed again"):  # other years: not cached
        holidays_of(["SV"], 2019, 2021)
    (entry,) = (tmp_path / "cache" / "holidays").glob("*.json")
    entry.chmod(0o666)
    with pytest.raises(AssertionError, match="computed again"):
        holidays_of(["SV"], 2019, 2020)


GROUPED = """
    id: my-grouped-rule
    title: Lines of a person
    description: A grouped rule over fixed rows.
    category: data_quality
    severity: low
    group: {by: [person], window: month}
    query: |
      SELECT * FROM (VALUES
        (['K1'], NULL, 'ANA', TIMESTAMP '2019-06-03 10:00', NULL::TIMESTAMP, NULL, 'ZAC'),
        (['K2', NULL], NULL, 'ANA', TIMESTAMP '2019-06-03 10:00', NULL, NULL, 'IZA'),
        (['K3'], NULL, 'ANA', TIMESTAMP '2019-06-20 09:00', TIMESTAMP '2019-06-21 09:00', 'high', 'ZAC'),
        (NULL, 'K4', 'ANA', TIMESTAMP '2019-07-01 08:00', NULL, NULL, 'ZAC'),
        (['K5'], NULL, 'BEA', NULL, NULL, NULL, 'ZAC'),
        (['K6'], NULL, 'BEA', NULL, NULL, 'medium', 'ZAC'),
        (['K7'], NULL, NULL, TIMESTAMP '2019-06-05 10:00', NULL, NULL, 'QZT'))
        t(record_keys, record_key, person, period_start, period_end, severity, facility)
    explanation: "{person} at {facility}"
    es:
      title: Líneas de una persona
      description: Una regla agrupada sobre filas fijas.
      explanation: "{person} en {facility}"
    regression:
      - input:
          visits:
            - {record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: "Ana"}
        expect: []
    dont_match:
      - description: nothing
        input:
          visits:
            - {record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: "Ana"}
"""


def test_grouped_rule_cases_summed_by_duckdb_are_those_read_row_by_row(tmp_path, monkeypatch):
    """Past SUMMED_ROWS a grouped rule's rows are summed per case by DuckDB and only each
    case's earliest rows are read: the cases are those read row by row (two rows at the
    earliest moment, an undated case, a list of records with a blank, a row keyed by
    record_key alone, a graver severity later in the month)."""
    import duckdb

    from detector import engine

    _write_rule(tmp_path / "mine", GROUPED)
    rule = next(r for r in load_rules([tmp_path / "mine"]) if r.id == "my-grouped-rule")
    con = duckdb.connect()
    one_by_one = engine.evaluate(con, rule)
    monkeypatch.setattr(engine, "SUMMED_ROWS", 0)
    sums, real = [], engine._summed
    monkeypatch.setattr(engine, "_summed", lambda *a: sums.append(real(*a)) or sums[-1])
    summed = engine.evaluate(con, rule)
    assert sums == [True]  # (summed by DuckDB, not read one by one after all)
    assert summed == one_by_one
    june = next(h for h in summed if h.fields["window"] == "2019-06" and h.record_keys[0] == "K1")
    assert june.record_keys == ["K1", "K2", "K3"] and june.fields["occurrences"] == 3
    assert june.severity == "high" and june.period_end.day == 21
    assert {h.fields["window"] for h in summed} == {"2019-06", "2019-07", "undated"}
    undated = next(h for h in summed if h.fields["window"] == "undated")
    assert undated.severity == "medium" and undated.record_keys == ["K5", "K6"]
