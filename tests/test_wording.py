"""A finding keeps its words: editing a rule never changes an old flag, in any language;
only `detector reword` words old flags anew, and the audit trail records it."""

from __future__ import annotations

import textwrap

from typer.testing import CliRunner

from detector.cli import app
from detector.flags import FlagQuery, read_flags
from detector.store import Store
from detector.wording import flag_wording
from tests.conftest import rows, write_csv

runner = CliRunner()

RULE = """
    id: ana-was-here
    title: Ana was here
    description: A rule of an auditor's folder.
    category: data_quality
    severity: low
    scope: facility
    query: SELECT record_key, facility, name FROM visits WHERE name_key = 'ANA'
    explanation: "{name} entered {facility}"
    es:
      title: Ana estuvo aquí
      description: Regla de la carpeta de un auditor.
      explanation: "{name} entró a {facility}"
    regression:
      - input:
          visits:
            - {record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: "Ana"}
        expect:
          - {record_ids: [V1]}
    dont_match:
      - description: somebody else
        input:
          visits:
            - {record_id: V1, facility: ZAC, entered_at: "2019-06-01 10:00", name: "Anabel"}
"""


def _words(store: Store) -> dict[str, tuple[str, str]]:
    flag = read_flags(store, FlagQuery(rules=["ana-was-here"])).to_dicts()[0]
    return {lang: flag_wording(flag, lang) for lang in ("en", "es")}


def test_editing_a_rule_never_rewords_an_old_finding_and_reword_is_audited(tmp_path):
    folder = tmp_path / "rules" / "data_quality"
    folder.mkdir(parents=True)
    rule = folder / "ana.yml"
    rule.write_text(textwrap.dedent(RULE), encoding="utf-8")
    db = tmp_path / "d.duckdb"
    visits = write_csv(
        tmp_path / "v.csv",
        ["record_id", "facility", "entered_at", "name"],
        [["V1", "ZAC", "2019-06-01 10:00", "Ana"]],
    )
    run = ["run", "--no-score", "--rules", str(tmp_path / "rules"), "--db", str(db)]
    assert runner.invoke(app, ["ingest", str(visits), "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, run).exit_code == 0
    store = Store(db)
    raised = _words(store)
    assert raised == {
        "en": ("Ana was here", "Ana entered ZAC"),
        "es": ("Ana estuvo aquí", "Ana entró a ZAC"),
    }

    # The rule's words are edited; a full run hits the flag again with the same values.
    rule.write_text(
        textwrap.dedent(RULE)
        .replace("{name} entered {facility}", "{name} came into {facility}")
        .replace("{name} entró a {facility}", "{name} ingresó a {facility}"),
        encoding="utf-8",
    )
    assert runner.invoke(app, [*run, "--full"]).exit_code == 0
    assert _words(store) == raised

    # Only an explicit re-wording changes them, and each flag's is on the audit trail.
    result = runner.invoke(
        app,
        ["reword", "--rule", "ana-was-here", "--rules", str(tmp_path / "rules"),
         "--user", "ana.lopez", "--db", str(db)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 flag re-worded" in result.output
    assert _words(store) == {
        "en": ("Ana was here", "Ana came into ZAC"),
        "es": ("Ana estuvo aquí", "Ana ingresó a ZAC"),
    }
    [(actor, action)] = rows(store, "SELECT actor, action FROM review_log")
    assert (actor, action) == ("ana.lopez", "reword")
    assert runner.invoke(app, ["verify", "--db", str(db)]).exit_code == 0


def test_a_case_keyed_by_a_place_in_a_file_names_no_one():
    """A party whose first entrant has no name is keyed by that line's place in the file:
    the case's sentence said "(person a5707be47ef85d97:6, …)" (found by a new user)."""
    from detector.rulebook import load_rules
    from detector.wording import repeated

    rule = next(r for r in load_rules() if r.id == "visit-outside-visiting-hours")
    fields = {"person": "a5707be47ef85d97:6", "facility": "APA", "occurrences": 4,
              "window": "2020-03", "first_at": "2020-03-11 22:00", "last_at": "2020-03-11 22:03"}  # fmt: skip
    said = repeated(rule, fields, "en")
    assert said.startswith("Repeated 4 times in 2020-03 (facility APA), first")
    assert "a5707be47ef85d97" not in said
    assert "(persona JUAN PEREZ, centro APA)" in repeated(
        rule, fields | {"person": "JUAN PEREZ"}, "es"
    )
