"""Identity linkage (``detector.identity``): one person across the spellings clerks write,
and look-alikes kept apart. Each case is planted among ordinary visitors (so that the store
has the size and the namesakes a model is trained on): a person written surname first,
with a second surname dropped, without accents or with a one-letter slip is one person;
namesakes with different documents, a family sharing surnames and an inmate, and a common
name on a relative's lines and on a contractor's badge are not. The auditor's merges and
splits hold through later linkage and refits; the model is kept hashed and refused when
its files change."""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from detector import identity, names, pipeline
from detector.auth import Actor
from detector.generator import make_dui
from detector.review import history
from detector.rollup import rollup
from detector.store import Store
from tests.conftest import rows

VISITS = ["record_id", "facility", "entered_at", "exited_at", "name", "id_type", "id_number",
          "role", "inmate_id"]  # fmt: skip
EVENTS = ["record_id", "facility", "seen_at", "name", "badge", "id_number", "reader", "direction"]
GIVEN = ["Ana", "Blanca", "Carmen", "Delmy", "Elsa", "Fredy", "Gloria", "Héctor", "Iris",
         "Jorge", "Karla", "Luis", "Mario", "Nelson", "Óscar", "Patricia", "Reina", "Saúl",
         "Teresa", "Walter", "Xiomara", "Yanira", "Zoila", "Ever", "Dinora"]  # fmt: skip
SURNAMES = ["Alvarado", "Bonilla", "Cañas", "Durán", "Escalante", "Funes", "Galdámez",
            "Henríquez", "Iraheta", "Jovel", "Landaverde", "Mancía", "Navas", "Olmedo",
            "Pineda", "Quintanilla", "Recinos", "Sibrián", "Tobar", "Umaña", "Valle",
            "Zepeda", "Abarca", "Barahona", "Cornejo", "Deras"]  # fmt: skip
DAY = datetime(2019, 6, 3, 9, 0)
LINK_ONLY = pipeline.Steps(rules=False, score=False)


def write_csv(path: Path, header: list[str], lines: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *lines])  # names with commas are quoted
    return path


class World:
    """Visit lines and badge reads, written as files and run through the pipeline."""

    def __init__(self, seed: int = 3, crowd: int = 150):
        self.rng = random.Random(seed)
        self.visits: list[list] = []
        self.events: list[list] = []
        for k in range(crowd):  # ordinary visitors, each with their own document
            name = (
                f"{self.rng.choice(GIVEN)} {self.rng.choice(SURNAMES)} {self.rng.choice(SURNAMES)}"
            )
            doc = make_dui(self.rng)
            for n in range(self.rng.randint(1, 4)):
                self.visit(name, doc, f"I-{k % 60}", days=n * 7 + k % 5)

    def visit(
        self, name, doc="", inmate="", days=0, facility="ZAC", role="Familiar", hour=9,
        id_type="DUI",
    ):  # fmt: skip
        at = DAY + timedelta(days=days, hours=hour - 9)
        rid = f"V{len(self.visits) + 1}"
        self.visits.append([rid, facility, f"{at:%Y-%m-%d %H:%M}",
                            f"{at + timedelta(hours=1):%Y-%m-%d %H:%M}", name,
                            id_type if doc else "", doc, role, inmate])  # fmt: skip
        return rid

    def read(self, name, badge, days=0, hour=6, direction="Entrada", facility="ZAC"):
        at = DAY + timedelta(days=days, hours=hour - 9)
        rid = f"E{len(self.events) + 1}"
        self.events.append([rid, facility, f"{at:%Y-%m-%d %H:%M}", name, badge, "",
                            "Porton", direction])  # fmt: skip
        return rid

    def store(self, tmp_path, steps: pipeline.Steps = LINK_ONLY) -> Store:
        store = Store(tmp_path / "db" / "detector.duckdb", wait=30)
        files = [write_csv(tmp_path / "visits.csv", VISITS, self.visits)]
        if self.events:
            files.append(write_csv(tmp_path / "events.csv", EVENTS, self.events))
        pipeline.run(store, files, steps, user="test")
        return store


def person_of(store: Store, record_id: str) -> str:
    return rows(
        store,
        "SELECT p.person_id FROM persons p JOIN records r USING (record_key) "
        "WHERE r.record_id = ? AND p.part IN ('visitor', 'badge_holder')",
        [record_id],
    )[0][0]


def test_the_words_of_a_name_and_how_they_sound():
    first = names.parse("Juan Carlos Pérez López").canonical
    assert names.parse("Pérez López, Juan Carlos").canonical == first  # turned round
    assert names.parse("PEREZ LOPEZ JUAN CARLOS").canonical == first
    assert names.parse("Juan Carlos López Pérez").canonical != first  # surnames swapped
    assert names.parse("Lic. Carlos Ernesto Rivas Molina").words == (
        "CARLOS", "ERNESTO", "RIVAS", "MOLINA",
    )  # fmt: skip
    assert names.parse("Rosa Amelia Hernández de Cruz").words == (
        "ROSA", "AMELIA", "HERNANDEZ", "CRUZ",
    )  # fmt: skip
    assert names.parse("Dr. Ramos, Director Médico, ref. DM-004").words == ("RAMOS",)
    for a, b in [("Hernández", "Ernandes"), ("Velásquez", "Belazques"), ("Yanira", "Llanira"),
                 ("Giovanni", "Jiovani"), ("Zúniga", "Suniga"), ("Quintanilla", "Kintaniya"),
                 ("Héber", "Ever")]:  # fmt: skip
        assert names.phonetic(a) == names.phonetic(b), (a, b)
    for a, b in [("Mario", "María"), ("Guillermo", "Gilberto"), ("Rosa", "Rosas")]:
        assert names.phonetic(a) != names.phonetic(b), (a, b)
    common = names.commonness(names.parse("José Martínez"))
    assert common > 500 * names.commonness(names.parse("Osiris Luna"))


def test_spellings_of_one_person_are_one_person(tmp_path):
    w = World()
    doc = "04567890-3"
    same = [
        w.visit("Juan Carlos Pérez López", doc, "I-7", days=1),
        w.visit("PÉREZ LÓPEZ, JUAN CARLOS", doc, "I-7", days=8),  # surname first
        w.visit("Pérez López Juan Carlos", doc, "I-7", days=15),  # surname first, no comma
        w.visit("Juan Carlos Pérez", doc, "I-7", days=22),  # second surname dropped
        w.visit("Juan Carlos Perez Lopez", doc, "I-7", days=29),  # accents
        w.visit("Juan Carlso Pérez López", doc, "I-7", days=36),  # a slip
        w.visit("Juan Carlos Péres López", doc, "I-7", days=43),  # s for z
        w.visit("J. C. Pérez López", doc, "I-7", days=50),  # initials
    ]
    # without a document: the same inmate visited corroborates the name
    bare = [
        w.visit("Marta Alicia Zelaya Ventura", "", "I-9", days=2),
        w.visit("ZELAYA VENTURA, MARTA ALICIA", "", "I-9", days=9),
        w.visit("Marta Alicia Zelaya", "", "I-9", days=16),
    ]
    store = w.store(tmp_path)
    assert len({person_of(store, r) for r in same}) == 1
    assert len({person_of(store, r) for r in bare}) == 1
    weights = rows(
        store,
        "SELECT count(*) FILTER (WHERE match_weight IS NOT NULL) FROM persons WHERE person_id = ?",
        [person_of(store, same[0])],
    )
    assert weights[0][0] > 0  # the rows linked carry the weight of their link


def test_namesakes_with_different_documents_stay_two_people(tmp_path):
    w = World()
    a = [w.visit("Rosa María Ramírez", "01234567-8", "I-3", days=d) for d in (1, 8, 15)]
    b = [w.visit("Rosa María Ramírez", "09999999-9", "I-3", days=d) for d in (2, 9)]
    c = [w.visit("Rosa Maria Ramirez", "07777777-1", "I-30", days=4)]  # and accents aside
    store = w.store(tmp_path)
    people = [{person_of(store, r) for r in group} for group in (a, b, c)]
    assert all(len(p) == 1 for p in people)
    assert len(set.union(*people)) == 3


def test_drivers_under_one_name_with_documents_one_character_apart_stay_apart(tmp_path):
    """The benchmark world's 1,433 drivers, each written "Conductor N" with the document
    "AB-N" on a thousand lines, were one person: the name folds to CONDUCTOR for all and
    each document is one character from its neighbours', so joins chained them all. Each
    document written on many lines is its own person's; a document mistyped once still
    joins the person whose document it mistypes."""
    w = World()
    drivers = {n: [w.visit(f"Conductor {n}", f"AB-{n}", f"I-{n}", days=d, role="Contratista")
                   for d in range(0, 35, 7)] for n in range(18, 33)}  # fmt: skip
    own = [w.visit("Marta Lidia Orellana", "05551234-7", "I-9", days=d) for d in (1, 8, 15)]
    slip = w.visit("Marta Lidia Orellana", "05551284-7", "I-9", days=22)  # one digit wrong
    store = w.store(tmp_path)
    people = [{person_of(store, r) for r in visits} for visits in drivers.values()]
    assert all(len(p) == 1 for p in people)
    assert len(set.union(*people)) == len(drivers)
    assert {person_of(store, r) for r in [*own, slip]} == {person_of(store, own[0])}


def test_a_family_sharing_surnames_and_an_inmate_does_not_merge(tmp_path):
    w = World()
    family = [
        ("Carmen Argueta Martínez", ""),  # cousins: the same words, surnames swapped
        ("Carmen Martínez Argueta", "06060606-0"),
        ("Rosa Amelia Hernández de Cruz", "02345678-1"),  # the mother
        ("María Elena Cruz Hernández", "03456789-2"),  # her daughters
        ("Ana Gloria Cruz Hernández", ""),
        ("José Antonio Cruz Hernández", ""),  # her son, no document
    ]
    ids = [
        [w.visit(n, d, "I-11", days=k * 7 + j) for k in range(3)] for j, (n, d) in enumerate(family)
    ]
    store = w.store(tmp_path)
    people = [{person_of(store, r) for r in group} for group in ids]
    assert all(len(p) == 1 for p in people)
    assert len(set.union(*people)) == len(family)


def test_a_common_name_on_a_relatives_lines_and_a_contractors_badge_is_two_people(tmp_path):
    """Issue 24, item 10: a contractor's card read under "JOSE MARTINEZ" on many mornings
    was joined to the family visitor José Martínez, who inherited its flags and came first
    in risk --by person."""
    w = World(crowd=30)
    relative = [w.visit("José Martínez", "05555555-5", "I-4", days=d) for d in (5, 12, 19, 26)]
    reads = []
    for d in range(40):
        if (DAY + timedelta(days=d)).weekday() < 5:
            reads.append(w.read("JOSE MARTINEZ", "C-77", days=d, hour=6))
            w.read("JOSE MARTINEZ", "C-77", days=d, hour=14, direction="Salida")
    store = w.store(tmp_path, pipeline.Steps(score=True))
    visitor = person_of(store, relative[0])
    contractor = person_of(store, reads[0])
    assert visitor != contractor
    assert {person_of(store, r) for r in reads} == {contractor}
    # whatever the contractor's reads raised is theirs, not the relative's
    frame = rollup(store, "person")
    theirs = frame.filter(frame["person_id"] == contractor)
    mine = frame.filter(frame["person_id"] == visitor)
    assert theirs["event_flags"][0] > 0
    assert mine.height == 1 and mine["event_flags"][0] == 0


def test_a_document_under_two_names_is_found_and_its_spellings_are_not(tmp_path):
    w = World()
    doc = "04567890-3"
    lawyer = w.visit("Lic. Carlos Ernesto Rivas Molina", doc, "I-1", days=10, facility="MSZ")
    relative = w.visit("José Antonio Menjívar Solís", doc, "I-2", days=10, facility="QUE", hour=12)
    w.visit("RIVAS MOLINA, CARLOS ERNESTO", doc, "I-1", days=10, facility="QUE", hour=15)
    w.visit("Carlos Ernesto Rivas", doc, "I-1", days=11, facility="IZA")
    store = w.store(tmp_path, pipeline.Steps(score=False))
    found = rows(
        store,
        "SELECT record_ids FROM flags WHERE rule_id = 'unidentified-document-two-names'",
    )
    assert len(found) == 1
    assert {lawyer, relative} <= set(found[0][0])
    assert person_of(store, lawyer) != person_of(store, relative)


def test_a_credential_number_is_compared_as_a_badge_not_as_a_document(tmp_path):
    """A lawyer writing another bar-card number at each visit (clerks copy the number of
    whatever card is shown) is one person; two guards given one staff card number are two
    people, and no document finding: a card is not an identity document."""
    w = World()
    lawyer = [
        w.visit("Lic. Marta de los Ángeles García Orellana", str(4000 + 37 * n), f"I-{n}",
                days=n * 3, role="Abogado", id_type="Carnet de abogado")
        for n in range(6)
    ]  # fmt: skip
    guards = [
        w.visit(name, "DGCP-73568", "", days=d, role="Custodio", id_type="Carnet institucional")
        for d in (1, 2)
        for name in ("Juan Castillo Peña", "Patricia Cruz Guevara")
    ]
    store = w.store(tmp_path, pipeline.Steps(score=False))
    assert len({person_of(store, r) for r in lawyer}) == 1
    assert len({person_of(store, r) for r in guards}) == 2
    assert not rows(store, "SELECT 1 FROM flags WHERE rule_id = 'unidentified-document-two-names'")


def test_a_dui_written_as_clerks_and_spreadsheets_write_it_is_one_document(tmp_path):
    """One relative's DUI written five ways over five visits (as typed, with dots, with a
    space, without the leading zero Excel drops, as a float cell's text) is one document:
    one mention (it was five documents to linkage, which the name alone joined), one
    person, no document under two names."""
    w = World()
    body = "03418725"
    check = (10 - sum(int(d) * (9 - i) for i, d in enumerate(body)) % 10) % 10
    digits = f"{body}{check}"
    spellings = [f"{body}-{check}", f"{body[:2]}.{body[2:5]}.{body[5:]}-{check}",
                 f"{body[:4]} {body[4:]}-{check}", f"{body[1:]}-{check}", f"{digits}.0"]  # fmt: skip
    ids = [w.visit("Reina Iraheta Valle", s, "I-3", days=n * 7) for n, s in enumerate(spellings)]
    store = w.store(tmp_path, pipeline.Steps(score=False))
    assert len({person_of(store, r) for r in ids}) == 1
    keys = rows(
        store,
        "SELECT DISTINCT m.id_number FROM persons p JOIN person_mentions m USING (mention_key) "
        "JOIN records r USING (record_key) WHERE r.record_id IN (SELECT unnest(?))",
        [ids],
    )
    assert keys == [(digits,)]
    assert not rows(store, "SELECT 1 FROM flags WHERE rule_id = 'unidentified-document-two-names'")


def test_new_rows_are_matched_against_the_kept_model_not_relinked(tmp_path):
    w = World()
    first = w.visit("Xiomara Beatriz Landaverde Olmedo", "06666666-6", "I-5", days=3)
    store = w.store(tmp_path)
    model = rows(store, "SELECT model_id FROM person_models")
    before = person_of(store, first)
    more = [
        ["N1", "ZAC", "2019-09-01 10:00", "2019-09-01 11:00", "LANDAVERDE OLMEDO, XIOMARA",
         "DUI", "06666666-6", "Familiar", "I-5"],
        ["N2", "ZAC", "2019-09-02 10:00", "2019-09-02 11:00", "Xiomara Landaverde Olmedo",
         "DUI", "06666666-6", "Familiar", "I-5"],
        ["N3", "ZAC", "2019-09-02 10:00", "2019-09-02 11:00", "Yesenia Tobar Umaña",
         "DUI", "08888888-8", "Familiar", "I-6"],
    ]  # fmt: skip
    report = pipeline.run(
        store,
        [write_csv(tmp_path / "more.csv", VISITS, more)],
        pipeline.Steps(rules=False, score=False),
        user="test",
    )
    assert report.persons.scope.startswith("incremental")
    assert report.persons.new_mentions == 2  # N1 and N2 are one spelling (words in any order)
    assert rows(store, "SELECT model_id FROM person_models") == model
    assert person_of(store, "N1") == person_of(store, "N2") == before
    assert person_of(store, "N3") != before
    # the incremental result is what a full relink against a new model gives
    identity.link(store, refit=True)
    assert person_of(store, "N2") == person_of(store, first)


def test_a_data_folder_named_with_an_apostrophe_links_and_scores(tmp_path):
    """The scratch files of linkage and scoring lie beside the database: a folder such as
    "O'Brien" (a name, a case) is a path written into SQL, quoted, not an SQL error that
    leaves every row without a person."""
    from detector.scoring import score

    w = World()
    first = w.visit("Xiomara Beatriz Landaverde Olmedo", "06666666-6", "I-5", days=3)
    store = w.store(tmp_path / "O'Brien")
    assert "O'Brien" in str(store.scratch)
    assert person_of(store, first)
    more = [["N1", "ZAC", "2019-09-01 10:00", "2019-09-01 11:00", "LANDAVERDE OLMEDO, XIOMARA",
             "DUI", "06666666-6", "Familiar", "I-5"]]  # fmt: skip
    csv_more = write_csv(tmp_path / "more.csv", VISITS, more)
    report = pipeline.run(store, [csv_more], LINK_ONLY, user="test")
    assert report.persons.scope.startswith("incremental")
    assert person_of(store, "N1") == person_of(store, first)
    assert rows(store, "SELECT count(*) FROM runs WHERE status <> 'ok'") == [(0,)]
    fitted = score(store, workdir=store.scratch, refit=True)
    assert fitted.refit and fitted.rows == rows(store, "SELECT count(*) FROM visits")[0][0]
    again = score(store, workdir=store.scratch, full=True)  # against the kept reference
    assert not again.refit and again.rows == fitted.rows


def test_two_linkages_at_once_store_each_row_once(tmp_path, monkeypatch):
    """Two runs link the same new rows at once (the scheduler and an auditor's command, on
    one machine or on a shared store's two): the one that stores second finds the other's
    linkage there and is done again from it, instead of storing the rows' persons twice."""
    w = World()
    store = w.store(tmp_path)
    more = [["N1", "ZAC", "2019-09-01 10:00", "2019-09-01 11:00", "Yesenia Tobar Umaña",
             "DUI", "08888888-8", "Familiar", "I-6"]]  # fmt: skip
    pipeline.run(
        store, [write_csv(tmp_path / "more.csv", VISITS, more)], pipeline.Steps(link=False,
        rules=False, score=False), user="test",
    )  # fmt: skip
    real, calls = identity._link, []

    def overtaken_once(job):  # the other linkage stores while this one works
        calls.append(job.since)
        if len(calls) == 1:
            identity.link(store, triggered_by="other")
        return real(job)

    monkeypatch.setattr(identity, "_link", overtaken_once)
    report = identity.link(store)
    # this one, overtaken, stored nothing; done again it found the other had linked it all
    assert report.scope == "nothing new since the last linkage" and len(calls) == 2
    assert rows(store, "SELECT triggered_by FROM runs WHERE kind = 'persons' ORDER BY 1") == [
        ("cli",),
        ("other",),
    ]
    assert rows(
        store, "SELECT count(*) - count(DISTINCT (kind, record_key, part)) FROM persons"
    ) == [(0,)]
    assert rows(store, "SELECT count(*) FROM persons p JOIN records r USING (record_key) "
                "WHERE r.record_id = 'N1'") == [(1,)]  # fmt: skip


def test_an_auditors_merge_and_split_are_audited_and_survive_a_refit(tmp_path):
    w = World()
    a = w.visit("Walter Ernesto Sibrián", "01111111-1", "I-2", days=1)
    b = w.visit("Walter Sibrián Funes", "02222222-2", "I-8", days=2)  # another document
    c = w.visit("Iris Nohemy Deras Valle", "03333333-3", "I-8", days=3)
    c2 = w.visit("Iris Nohemy Deras", "03333333-3", "I-8", days=4)
    store = w.store(tmp_path)
    assert person_of(store, a) != person_of(store, b)
    auditor = Actor("ana", "auditor")
    merged = identity.merge(store, auditor, [person_of(store, a), person_of(store, b)], "same man")
    assert person_of(store, a) == person_of(store, b) == merged
    iris = person_of(store, c)
    assert person_of(store, c2) == iris
    keys = rows(
        store, "SELECT mention_key FROM persons p JOIN records r USING (record_key) "
        "WHERE r.record_id = ?", [c2],
    )[0]  # fmt: skip
    identity.split(store, auditor, iris, list(keys), "the daughter, not the mother")
    assert person_of(store, c) != person_of(store, c2)
    # each person's id names one of its own mentions (an incremental linkage counts the
    # persons by those), after merges and splits too
    roots = "SELECT count(*) FROM person_mentions WHERE person_id = 'P-' || mention_key"
    assert rows(store, roots) == rows(
        store, "SELECT count(DISTINCT person_id) FROM person_mentions"
    )
    trail = [(h["action"], h["actor"]) for h in history(store)]
    assert ("person_merge", "ana") in trail and ("person_split", "ana") in trail
    identity.link(store, refit=True)  # a new model: the auditor's decisions still hold
    assert person_of(store, a) == person_of(store, b)
    assert person_of(store, c) != person_of(store, c2)
    with pytest.raises(PermissionError):
        identity.merge(store, Actor("v", "viewer"), [person_of(store, a), person_of(store, c)])


def test_the_model_is_kept_hashed_and_refused_when_its_files_change(tmp_path):
    w = World()
    w.visit("Saúl Antonio Cañas", "04444444-4", "I-1")
    store = w.store(tmp_path)
    model, why = identity.load_model(store)
    assert model is not None and not why
    settings = json.loads((model.path / "splink.json").read_text())
    assert settings["comparisons"] and model.content_hash
    (model.path / "splink.json").write_text(json.dumps({**settings, "comparisons": []}))
    again, why = identity.load_model(store)
    assert again is None and "changed" in why
    report = identity.link(store)  # refused: a new model is trained, every row relinked
    assert report.trained and report.model_id != model.model_id


def test_a_link_is_explained_in_words_in_both_languages(tmp_path):
    w = World()
    w.visit("Gloria Patricia Escalante Navas", "05050505-0", "I-3", days=1)
    w.visit("Gloria Patricia Escalante", "05050505-0", "I-3", days=2)
    store = w.store(tmp_path)
    why = rows(store, "SELECT why FROM person_links WHERE accepted ORDER BY match_weight DESC")
    en = identity.explain_link(why[0][0], "en")
    es = identity.explain_link(why[0][0], "es")
    assert any("same document number" in line for line in en)
    assert any("second surname" in line for line in en)
    assert en[-1].startswith("In all") and "linked" in en[-1]
    assert any("mismo número de documento" in line for line in es)
    assert not any("_" in line for line in en + es)  # no level codes reach a reader


def _words(name: str) -> tuple[str, ...]:
    return tuple(sorted(names.words(name)))


@pytest.mark.slow
def test_books_written_surname_first_for_months_keep_each_person_once(demo_logs, tmp_path):
    """Issue 27: clerks change, and for three of the demo world's six months every visit
    book writes names surname first ("Pérez López Juan"). `risk --by person` still counts
    each person once (within 5% of the same world written one way), and the planted
    director still comes first."""
    import shutil

    from tests.conftest import demo_store
    from tests.worlds.reorder import surname_first

    clean = demo_store(tmp_path / "clean" / "d.duckdb", demo_logs)
    first, last = rows(clean, "SELECT min(entered_at)::DATE, max(entered_at)::DATE FROM visits")[0]
    middle = first + (last - first) / 2
    folder = tmp_path / "logs"
    folder.mkdir()
    files = []
    for key, path in demo_logs.items():
        if key != "truth":
            files.append(Path(shutil.copy2(path, folder / Path(path).name)))
    changed = surname_first(folder, middle, last + timedelta(days=1))
    assert changed > 5000
    store = Store(tmp_path / "turned" / "d.duckdb", wait=30)
    pipeline.run(store, files, pipeline.Steps(), user="test")
    before, after = rollup(clean, "person"), rollup(store, "person")
    assert abs(after.height - before.height) <= 0.05 * before.height, (
        before.height,
        after.height,
    )
    assert _words(after["person"][0]) == _words(before["person"][0]), (
        before["person"][:3].to_list(),
        after["person"][:3].to_list(),
    )


def test_name_variants_the_store_does_not_show_are_not_warned_about_on_the_console(
    tmp_path, caplog
):
    """Training where every pair sharing a document writes the name the same way, Splink
    finds no initials, dropped words or slips among them and warns of each such level on
    the console (in the middle of the demo's summary, as `detector demo` showed); such a
    level keeps its prior value, as the model intends, so that warning is kept from the
    console. Splink's other warnings are not."""
    import logging

    w = World()
    given = ["Ana", "Luis", "Rosa", "Juan", "Marta", "Pedro", "Elena", "Carlos"]
    surnames = ["Pérez", "López", "Zelaya", "Ventura", "Cruz", "Mejía", "Flores", "Reyes"]
    for i in range(16):  # 16 people, each written four ways: 96 pairs sharing a document
        g, s1, s2 = given[i % 8], surnames[i // 2], surnames[(i + 3) % 8]
        slips = [f"{g} {s1} {s2}", f"{g}h {s1} {s2}", f"{g} {s1}h {s2}", f"{g} {s1} {s2}h"]
        for k, name in enumerate(slips):  # a letter too many: no initials, no word dropped
            w.visit(name, f"0{i:07d}-{i % 9}", f"I-{i}", days=1 + 7 * k + i)
    store = w.store(tmp_path)
    em_log = logging.getLogger("splink.internals.expectation_maximisation")
    seen: list[str] = []

    def record(entry: logging.LogRecord) -> bool:
        seen.append(entry.getMessage())
        return True

    em_log.addFilter(record)
    try:
        with caplog.at_level(logging.WARNING):
            report = identity.link(store, refit=True)
    finally:
        em_log.removeFilter(record)
    model, _ = identity.load_model(store)
    assert report.trained and "EM" in model.trained["trained"], model.trained
    assert any("not observed in dataset" in m for m in seen), seen  # Splink did warn
    assert not [r for r in caplog.records if "not observed" in r.getMessage()]
    assert em_log.filters == []  # only while training
    em_log.warning("another warning")
    assert "another warning" in caplog.text


@pytest.mark.parametrize("seed", range(6))
def test_an_incremental_linkage_clusters_the_touched_part_as_clustering_everything_would(seed):
    """The incremental linkage clusters in Python only the mentions a join can reach and
    keeps every other known person in SQL: the persons must be those of clustering every
    mention (the known ones, the new ones, the pairs, the auditors' merges and splits)."""
    import duckdb
    import polars as pl

    rnd = random.Random(seed)
    docs = ["D1", "D1X", "D2", "D3", None, None, None]
    written = [1, 1, 2, identity.ESTABLISHED_ROWS, 40]  # typos, and established spellings
    old = [(f"m{i:03d}", rnd.choice(docs), rnd.randint(1, 3), rnd.choice(written))
           for i in range(120)]  # fmt: skip
    new = [(f"n{i:03d}", rnd.choice(docs), 4, rnd.choice(written)) for i in range(15)]
    keys_old, everyone = [k for k, *_ in old], old + new

    def edges(pool_a, pool_b, count):
        out = {}
        for _ in range(count):
            a, b = rnd.choice(pool_a), rnd.choice(pool_b)
            if a != b:
                out[tuple(sorted((a, b)))] = (rnd.uniform(-5, 12), rnd.choice([0, 1, 2]))
        return out

    before = edges(keys_old, keys_old, 150)
    known, _ = identity.cluster(old, [(a, b, w) for (a, b), (w, _) in before.items()], 3.0)
    scored = edges([k for k, *_ in new], [k for k, *_ in everyone], 25)
    merges = [rnd.sample(keys_old, 2)] if seed % 2 else []
    sides = {rnd.choice(keys_old): {(0, 0)}, new[0][0]: {(0, 1)}} if seed % 3 == 0 else {}
    pairs = [(a, b, -1e9 if g == 0 else w) for (a, b), (w, g) in scored.items()]
    threshold = identity.weight_of(identity.THRESHOLD)
    expected, _ = identity.cluster(everyone, pairs, threshold, merges, sides, known)

    con = duckdb.connect()
    frames = {
        "every_mention": pl.DataFrame(
            everyone, schema=["mention_key", "id_number", "first_seq", "row_count"], orient="row"
        ),
        "junk": pl.DataFrame({"id_number": ["D0"]}),  # (a document no mention holds)
        "known": pl.DataFrame(
            [(k, "P-" + p) for k, p in known.items()],
            schema=["mention_key", "person_id"],
            orient="row",
        ),
        "pairs": pl.DataFrame(
            [(a, b, w, g) for (a, b), (w, g) in scored.items()],
            schema={
                "a": pl.String,
                "b": pl.String,
                "match_weight": pl.Float64,
                "gamma_name": pl.Int64,
            },
            orient="row",
        ),  # fmt: skip
    }
    for name, frame in frames.items():
        con.register(f"{name}_frame", frame)
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
    model = identity.Model("m", {}, identity.THRESHOLD, {})
    report = identity.LinkReport("incremental")
    identity._clustered(con, model, report, merges, sides)
    got = dict(con.execute("SELECT mention_key, person_id FROM assigned").fetchall())
    assert got == {k: "P-" + p for k, p in expected.items()}
    assert report.persons == len(set(expected.values()))


def test_an_incremental_linkage_reads_only_the_known_mentions_the_new_ones_can_meet(
    demo_logs, tmp_path, monkeypatch
):
    """Issue 25: an incremental linkage reads from the store only the known mentions a
    blocking rule can pair with a new one (and their persons whole), and the junk documents
    and term frequencies for those values; its pairs, weights and persons are those of
    reading every known mention. The new rows: one prison's second half-year and another
    prison's whole book (officials and relatives seen before, and people never seen)."""
    import shutil

    zac = demo_logs["visits_ZAC"].read_bytes().splitlines(keepends=True)  # (Windows-1252)
    half = len(zac) // 2
    first = tmp_path / "in" / "visitas_ZAC_1.csv"
    first.parent.mkdir()
    first.write_bytes(b"".join(zac[:half]))
    later = tmp_path / "visitas_ZAC_2.csv"
    later.write_bytes(zac[0] + b"".join(zac[half:]))
    known = [first] + [
        p for k, p in demo_logs.items() if k not in ("truth", "visits_ZAC", "visits_MAR")
    ]
    near = Store(tmp_path / "near" / "d.duckdb")
    pipeline.run(near, known, LINK_ONLY, user="test")
    pipeline.run(near, [later, demo_logs["visits_MAR"]], pipeline.INGEST_ONLY, user="test")
    shutil.copytree(near.path.parent, tmp_path / "every")
    every = Store(tmp_path / "every" / "d.duckdb")

    read_near = identity.link(near)
    monkeypatch.setattr(identity, "READ_EVERY_KNOWN", True)
    read_every = identity.link(every)

    assert read_near.scope.startswith("incremental") and read_near.new_mentions > 1000
    assert read_near.known_read < read_every.known_read / 2, (read_near, read_every)
    for field in ("rows", "mentions", "new_mentions", "persons", "joined"):
        assert getattr(read_near, field) == getattr(read_every, field), field
    links = "SELECT mention_key, other_key, round(match_weight, 9), accepted, why FROM person_links"
    assert sorted(rows(near, links)) == sorted(rows(every, links))
    persons = "SELECT kind, record_key, part, person_id FROM persons ORDER BY ALL"
    assert rows(near, persons) == rows(every, persons)
    mentions = "SELECT * EXCLUDE (match_weight), round(match_weight, 9) FROM person_mentions"
    assert sorted(rows(near, mentions)) == sorted(rows(every, mentions))


def test_a_name_written_under_thousands_of_documents_is_not_paired_by_name(tmp_path, monkeypatch):
    """Issue 25: one name under more documents than CROWDED_NAME_MENTIONS (a form's default
    name, a flood) is no blocking key: 90,000 new mentions of one name paired each with
    every other ran linkage out of memory and stopped `detector run`. Its mentions are
    still linked through what they share (a document, an inmate and the name's sounds for
    one written without a document), in a first linkage and in an incremental one; other
    names are linked as before."""
    monkeypatch.setattr(identity, "CROWDED_NAME_MENTIONS", 25)
    w = World()
    docs = [make_dui(w.rng) for _ in range(30)]
    crowd = [w.visit("José Pérez", d, f"I-{k % 40}", days=k % 20) for k, d in enumerate(docs)]
    again = w.visit("José Pérez", docs[3], "I-3", days=40)  # the same document again
    bare = w.visit("JOSE PEREZ", "", "I-3", days=41)  # no document: met through the sounds
    spelt = [w.visit("Juan Carlos Pérez López", "04567890-3", "I-7", days=d) for d in (1, 8)]
    spelt.append(w.visit("PÉREZ LÓPEZ, JUAN CARLOS", "04567890-3", "I-7", days=15))
    store = w.store(tmp_path)

    report = rows(store, "SELECT counts FROM runs WHERE kind = 'persons'")
    assert json.loads(report[-1][0])["crowded_names"] == 1
    people = [person_of(store, r) for r in crowd]
    assert len(set(people)) == len(crowd)  # thirty namesakes, thirty people
    assert person_of(store, again) == people[3]
    paired = rows(
        store,
        "SELECT count(*) FROM person_links l JOIN person_mentions a USING (mention_key) "
        "JOIN person_mentions b ON b.mention_key = l.other_key "
        "WHERE a.canonical = b.canonical AND a.id_number <> b.id_number",
    )
    assert paired == [(0,)]  # no two namesakes linked, nor kept to explain a link
    # the mention without a document was compared with its namesakes (through the sounds)
    (compared,) = rows(
        store,
        "SELECT count(*) FROM person_links l JOIN persons p "
        "ON p.mention_key IN (l.mention_key, l.other_key) "
        "JOIN records r USING (record_key) WHERE r.record_id = ?",
        [bare],
    )[0]
    assert compared > 0
    assert len({person_of(store, r) for r in spelt}) == 1

    more = [[f"N{k}", "ZAC", "2019-09-01 10:00", "2019-09-01 11:00", "Jose Perez", "DUI",
             make_dui(w.rng), "Familiar", "I-1"] for k in range(10)]  # fmt: skip
    done = pipeline.run(
        store, [write_csv(tmp_path / "more.csv", VISITS, more)], LINK_ONLY, user="test"
    )
    assert done.persons.scope.startswith("incremental") and done.persons.crowded_names == 1
    assert len({person_of(store, f"N{k}") for k in range(10)}) == 10


def test_a_linkage_that_fails_is_said_in_one_line_and_the_rules_still_run(tmp_path, monkeypatch):
    """A linkage stopped by an error of Splink's own (a query out of memory) is recorded
    as failed and said in one line; the rules run on the persons as they were."""

    def out_of_memory(*args, **kwargs):
        raise RuntimeError(
            "Error executing the following sql for table `__splink__blocked_id_pairs`:\n"
            "CREATE TABLE x AS SELECT 1\n\nError was: Out of Memory Error: could not "
            "allocate block of size 256.0 KiB (1.8 GiB/1.8 GiB used)\n\nPossible solutions:"
        )

    monkeypatch.setattr(identity, "_predict", out_of_memory)
    w = World(crowd=60)
    store = Store(tmp_path / "db" / "detector.duckdb", wait=30)
    done = pipeline.run(
        store, [write_csv(tmp_path / "visits.csv", VISITS, w.visits)],
        pipeline.Steps(score=False), user="test",
    )  # fmt: skip
    said = "LinkageFailed: linkage failed: Out of Memory Error: could not allocate block"
    assert done.persons_error.startswith(said)
    # what `detector run` and `detector demo` print, in each language
    assert done.linkage_failure("en").startswith("linking rows to persons failed (")
    assert said in done.linkage_failure("en")
    assert done.linkage_failure("es").startswith("falló la vinculación de filas a personas")
    assert said in done.linkage_failure("es")
    failed = rows(store, "SELECT status, errors FROM runs WHERE kind = 'persons'")
    assert failed[-1][0] == "failed" and "linkage failed: Out of Memory" in failed[-1][1]
    assert done.rules is not None and not done.rules.errors
    assert rows(store, "SELECT count(*) FROM runs WHERE kind = 'rules' AND status = 'ok'") == [(1,)]
