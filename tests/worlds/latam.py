"""A Salvadoran prison system over a year, transcribed as five prisons' clerks would, with
the mission's anomalies planted among the harmless situations real prisons have.

Written apart from ``detector/generator.py`` and the rules: its layouts come from the
README (what a user reads) and from how Central American prisons keep their books. The
story follows El Salvador in 2019-2020: the director of prisons leads masked, unlogged
people into the maximum-security prison at night to meet gang leaders, leaders are moved
"for medical reasons" to prisons holding co-leaders, and entry books go missing.

``write_world(out)`` writes the CSV files, ``truth.json`` (the planted anomalies, by the
record ids written in the files) and ``lookalikes.json`` (the harmless situations planted
beside them), and returns their paths.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

START = date(2019, 3, 1)

MALE = (
    "José",
    "Juan",
    "Carlos",
    "Luis",
    "Mario",
    "Jorge",
    "Francisco",
    "Manuel",
    "Miguel",
    "Ángel",
    "Óscar",
    "Roberto",
    "René",
    "Nelson",
    "Edwin",
    "Wilfredo",
    "Ever",
    "Kevin",
    "Jonathan",
    "Douglas",
    "Walter",
    "Julio",
    "Saúl",
    "Marvin",
    "Ernesto",
    "Rafael",
    "Salvador",
    "Santos",
    "Héctor",
    "Fredy",
    "William",
    "Alexander",
    "Antonio",
    "Mauricio",
)
FEMALE = (
    "María",
    "Ana",
    "Rosa",
    "Marta",
    "Gloria",
    "Sandra",
    "Carmen",
    "Blanca",
    "Reina",
    "Delmy",
    "Yesenia",
    "Karla",
    "Claudia",
    "Patricia",
    "Elsa",
    "Dinora",
    "Evelyn",
    "Sonia",
    "Cecilia",
    "Lorena",
    "Silvia",
    "Morena",
    "Xiomara",
    "Glenda",
    "Iris",
    "Yanira",
    "Roxana",
    "Guadalupe",
    "Esperanza",
    "Jacqueline",
    "Marleny",
    "Ruth",
    "Beatriz",
    "Elena",
)
SECOND_MALE = (
    "Antonio",
    "Alberto",
    "Ernesto",
    "Alexander",
    "Enrique",
    "Armando",
    "de Jesús",
    "Vladimir",
    "Orlando",
    "Adalberto",
)
SECOND_FEMALE = (
    "Elizabeth",
    "Beatriz",
    "Guadalupe",
    "del Carmen",
    "Isabel",
    "Margarita",
    "Alicia",
    "Esperanza",
    "Amelia",
    "de los Ángeles",
    "Yamileth",
)
SURNAMES = (
    "Hernández",
    "López",
    "Martínez",
    "García",
    "Rodríguez",
    "Pérez",
    "Flores",
    "Rivas",
    "Ramírez",
    "Cruz",
    "Mejía",
    "Portillo",
    "Guevara",
    "Orellana",
    "Alvarado",
    "Castro",
    "Romero",
    "Henríquez",
    "Ayala",
    "Menjívar",
    "Argueta",
    "Amaya",
    "Rivera",
    "Chávez",
    "Méndez",
    "Molina",
    "Sánchez",
    "Cañas",
    "Escobar",
    "Landaverde",
    "Quintanilla",
    "Velásquez",
    "Bonilla",
    "Aguilar",
    "Zelaya",
    "Villalta",
    "Cornejo",
    "Lemus",
    "Granados",
    "Serrano",
    "Fuentes",
    "Campos",
    "Navarro",
    "Miranda",
    "Recinos",
    "Sorto",
    "Umaña",
)

FACILITIES = {
    # code: name, kind, security, visiting hours, hours per role
    "MSZ": (
        "Centro Penal de Máxima Seguridad de Zacatecoluca",
        "Centro Penal",
        "Máxima",
        "08:00-12:00,13:00-16:00",
        "lawyer Mon-Fri 08:00-16:00; police 00:00-24:00; contractor 05:00-09:00; "
        "official 08:00-17:00",
    ),
    "IZA": ("Centro Penal de Izalco", "Centro Penal", "Alta", "08:00-15:00", ""),
    "CHA": ("Centro Penal de Chalatenango", "Centro Penal", "Media", "08:00-14:00", ""),
    "QUE": ("Centro Penal de Quezaltepeque", "Centro Penal", "Media", "08:00-15:00", ""),
    "CBA": ("Centro Penal de Ciudad Barrios", "Centro Penal", "Alta", "08:00-15:00", ""),
    "HNR": ("Hospital Nacional Rosales", "Hospital", "", "", ""),
    "HSZ": ("Hospital Nacional Santa Teresa, Zacatecoluca", "Hospital", "", "", ""),
    "CJIM": ("Centro Judicial Isidro Menéndez", "Centro judicial", "", "", ""),
}
PRISONS = ("MSZ", "IZA", "CHA", "QUE", "CBA")

# Family visiting weekdays (Mon=0), inmates held, closing hour, family lines a year.
FAMILY = {
    "IZA": ((3, 4, 5, 6), 1200, 15, 9500),
    "CHA": ((2, 5, 6), 900, 14, 6500),
    "QUE": ((1, 3, 5, 6), 700, 15, 6500),
    "CBA": ((2, 4, 5, 6), 1500, 15, 7000),
}
GANGS = {
    "MSZ": (("MS-13", 0.45), ("Barrio 18 Sureños", 0.3), ("Barrio 18 Revolucionarios", 0.25)),
    "IZA": (("Barrio 18 Sureños", 0.65), ("Barrio 18 Revolucionarios", 0.35)),
    "CHA": (("Barrio 18 Revolucionarios", 0.8), ("Ninguna", 0.2)),
    "QUE": (("Ninguna", 0.8), ("Mao Mao", 0.2)),
    "CBA": (("MS-13", 1.0),),
}
# Books: lines per folio, folios per book, label style, new book each January.
BOOKS = {
    ("MSZ", ""): (10, 20, "LCI-MSZ-{:03d}", 31, False),
    ("IZA", ""): (15, 100, "Libro {}", 21, False),
    ("CHA", "Garita de Visitas"): (20, 100, "CHA-V-{:02d}", 4, False),
    ("CHA", "Garita de Personal"): (20, 100, "CHA-P-{:02d}", 2, False),
    ("QUE", ""): (20, 100, "{:02d}/{}", 2, True),
    ("CBA", ""): (20, 50, "L-{}-{:03d}", 9, True),
}

HOLY_WEEK = (date(2019, 4, 15), date(2019, 4, 21))
SPECIAL_DAYS = {
    date(2019, 5, 10): "Día de la Madre",
    date(2019, 6, 17): "Día del Padre",
    date(2019, 12, 24): "Nochebuena",
    date(2019, 12, 25): "Navidad",
    date(2019, 12, 31): "Fin de año",
}
ICRC_WEEK = {
    date(2019, 8, 19): "MSZ",
    date(2019, 8, 20): "IZA",
    date(2019, 8, 21): "CHA",
    date(2019, 8, 22): "QUE",
    date(2019, 8, 23): "CBA",
}
FUMIGATION = (date(2019, 7, 18), date(2019, 7, 19))  # Quezaltepeque closed
OUTAGE_DAY = date(2019, 10, 15)  # Quezaltepeque: the book kept on loose sheets
QUE_SILENT = (date(2019, 11, 12), date(2019, 11, 21))  # nothing written, prison running
CHA_SHIFT_CHANGE = date(2019, 9, 1)  # guards: 8-hour shifts, then 24 on / 48 off
DIRECTOR = ("Rolando", "Mena Ayala")
DIRECTOR_DUI = None  # set per world (a valid DUI)


def dui_check(digits: str) -> int:
    """The check digit of a Salvadoran DUI: weights 9..2 on the eight digits."""
    total = sum(int(d) * w for d, w in zip(digits, range(9, 1, -1), strict=False))
    return (10 - total % 10) % 10


def dui(rng: random.Random) -> str:
    digits = f"{rng.randrange(0, 10**8):08d}"
    return f"{digits}-{dui_check(digits)}"


def bad_dui(rng: random.Random) -> str:
    digits = f"{rng.randrange(0, 10**8):08d}"
    return f"{digits}-{(dui_check(digits) + rng.randrange(1, 10)) % 10}"


@dataclass
class Person:
    given: str
    sur: str
    doc: str
    doc_type: str = "DUI"
    female: bool = True

    @property
    def full(self) -> str:
        return f"{self.given} {self.sur}"


@dataclass
class Visit:
    fac: str
    t_in: datetime
    t_out: datetime | None
    person: Person | None
    calidad: str
    inmate: str = ""
    inst: str = ""
    escort: str = ""
    plate: str = ""
    party: int = 1
    motivo: str = ""
    cita: str = ""
    checkpoint: str = ""
    name_written: str | None = None  # what the clerk wrote instead of the person's name
    doc_written: str | None = None
    tags: set = field(default_factory=set)
    write_at: datetime | None = None  # when the line was written: its place in the book
    rid: str = ""
    book: str = ""
    folio: int = 0
    line: int = 0
    time_written: str | None = None  # an entry time written other than to the minute
    minors: int = 0  # minors counted in the party (no line, no document of their own)


@dataclass
class Transfer:
    register: str  # "medical" or "general"
    inmate: str
    origin: str
    dest: str
    at: datetime
    motivo: str
    by: str
    approval: str
    returned: datetime | None = None
    tags: set = field(default_factory=set)
    rid: str = ""


@dataclass
class Event:
    at: datetime
    reader: str
    direction: str
    badge: str = ""
    given: str = ""
    sur: str = ""
    doc: str = ""
    result: str = "Acceso concedido"
    plate: str = ""
    tags: set = field(default_factory=set)
    rid: str = ""


def at(d: date, h: float) -> datetime:
    """A datetime on ``d`` at ``h`` hours (fractions are minutes)."""
    return datetime.combine(d, time()) + timedelta(minutes=round(h * 60))


class World:
    def __init__(self, seed: int, months: int):
        self.rng = random.Random(seed)
        y, m = divmod(START.month - 1 + months, 12)
        self.end = date(START.year + y, m + 1, 1) - timedelta(days=1)
        self.days = [START + timedelta(n) for n in range((self.end - START).days + 1)]
        self.visits: list[Visit] = []
        self.transfers: list[Transfer] = []
        self.events: list[Event] = []
        self.absences: list[dict] = []
        self.inmates: dict[str, dict] = {}  # id -> name, gang, rank, facility
        self.by_fac: dict[str, list[str]] = {p: [] for p in PRISONS}
        self.truth: list[dict] = []
        self.looks: list[dict] = []
        self.register: list[dict] = []
        self.used_docs: set[str] = set()
        self.plates: set[str] = set()

    # ---- people -------------------------------------------------------------------
    def doc(self) -> str:
        while True:
            d = dui(self.rng)
            if d not in self.used_docs:
                self.used_docs.add(d)
                return d

    def person(self, female: bool | None = None, sur: str | None = None) -> Person:
        r = self.rng
        if female is None:
            female = r.random() < 0.7
        given = r.choice(FEMALE if female else MALE)
        if r.random() < 0.6:
            given += " " + r.choice(SECOND_FEMALE if female else SECOND_MALE)
        sur = sur or f"{r.choice(SURNAMES)} {r.choice(SURNAMES)}"
        return Person(given, sur, self.doc(), female=female)

    def plate(self, prefix: str = "P") -> str:
        while True:
            p = f"{prefix} {self.rng.randrange(100, 999)}-{self.rng.randrange(100, 999)}"
            if p not in self.plates:
                self.plates.add(p)
                return p

    def in_window(self, d: date) -> bool:
        return START <= d <= self.end

    # ---- the roster ---------------------------------------------------------------
    def build_inmates(self) -> None:
        r = self.rng
        sizes = {"MSZ": 320, **{p: FAMILY[p][1] for p in FAMILY}}
        n = 0
        for fac in PRISONS:
            for _ in range(sizes[fac]):
                n += 1
                gang = r.choices(*zip(*GANGS[fac], strict=False))[0]
                if gang == "Ninguna":
                    rank = "N/A"
                elif fac == "MSZ":
                    rank = r.choices(
                        ("Ranflero", "Palabrero", "Corredor de programa", "Homeboy"),
                        (0.1, 0.45, 0.15, 0.3),
                    )[0]
                else:
                    rank = r.choices(
                        ("Palabrero", "Corredor de programa", "Homeboy", "Soldado", "Chequeo"),
                        (0.03, 0.02, 0.45, 0.4, 0.1),
                    )[0]
                iid = f"EXP-{10000 + n * 7:06d}"
                p = self.person(female=False)
                self.inmates[iid] = dict(name=p.full, gang=gang, rank=rank, fac=fac, sur=p.sur)
                self.by_fac[fac].append(iid)
        # Enough leaders of each gang where the story needs them.
        for fac, rank, k in (
            ("MSZ", "Ranflero", 4),
            ("IZA", "Palabrero", 5),
            ("CBA", "Palabrero", 6),
        ):
            for gang, _ in GANGS[fac]:
                have = self.leaders(fac, gang, (rank,))
                rest = [
                    i
                    for i in self.by_fac[fac]
                    if self.inmates[i]["gang"] == gang
                    and self.inmates[i]["rank"] in ("Homeboy", "Soldado")
                ]
                for iid in rest[: max(0, k - len(have))]:
                    self.inmates[iid]["rank"] = rank

    def leaders(self, fac: str, gang: str, ranks=("Ranflero", "Palabrero")) -> list[str]:
        return [
            i
            for i in self.by_fac[fac]
            if self.inmates[i]["gang"] == gang and self.inmates[i]["rank"] in ranks
        ]

    def set_inmate(self, iid: str, **kw) -> str:
        self.inmates[iid].update(kw)
        if "sur" in kw:
            self.inmates[iid]["name"] = f"{self.inmates[iid]['name'].split()[0]} {kw['sur']}"
        return iid

    # ---- routine traffic ----------------------------------------------------------
    def add(self, v: Visit) -> Visit:
        self.visits.append(v)
        return v

    def family(self) -> None:
        r = self.rng
        weeks = len(self.days) / 7
        self.visitors: dict[str, list[Person]] = {}
        for fac, (vdays, _, close, target) in FAMILY.items():
            visited = [i for i in self.by_fac[fac] if r.random() < 0.78]
            for iid in visited:
                k = r.choices((1, 2, 3), (0.5, 0.35, 0.15))[0]
                sur = self.inmates[iid]["sur"]
                people = []
                for j in range(k):
                    # the mother carries the inmate's second surname as her first
                    mother_sur = sur.split()[-1] + " " + r.choice(SURNAMES)
                    people.append(
                        self.person(female=r.random() < 0.85, sur=mother_sur if j == 0 else None)
                    )
                self.visitors[iid] = people
            p = target / (len(visited) * weeks * 1.35)
            day_of = {i: r.choice(vdays) for i in visited}
            for d in self.days:
                if HOLY_WEEK[0] <= d <= HOLY_WEEK[1] or (fac == "QUE" and d in FUMIGATION):
                    continue
                special = SPECIAL_DAYS.get(d)
                for iid in visited:
                    if special:
                        if r.random() > (0.3 if "Madre" in special else 0.15):
                            continue
                    elif d.weekday() != day_of[iid] or r.random() > p:
                        continue
                    self.family_party(fac, d, iid, close, special)

    def family_party(self, fac, d, iid, close, special, people=None, tags=()):
        r = self.rng
        people = people or self.visitors[iid]
        come = people[: r.choices((1, 2), (0.72, 0.28))[0]] if len(people) > 1 else people
        minors = r.choices((0, 1, 2, 3, 4), (0.55, 0.2, 0.13, 0.08, 0.04))[0]
        if special:
            minors = r.choices((0, 1, 2, 3, 4, 5), (0.2, 0.2, 0.25, 0.15, 0.12, 0.08))[0]
        last = (close + 2 if special else close) - 1.3
        h = min((7.0 if special else 7.9) + abs(r.gauss(0, 1.5)), last)
        t_in = at(d, h)
        stay = timedelta(minutes=r.randint(80, 230))
        t_out = min(t_in + stay, at(d, close + (2 if special else 0) + r.random() * 0.2))
        cita = f"C-{d:%y%m%d}-{r.randrange(1, 400):03d}" if fac == "CBA" else ""
        tag = {"special_visiting_day"} if special else set()
        tag |= set(tags)
        out = []
        for j, pers in enumerate(come):
            cal = (
                "Familiar"
                if r.random() < 0.6
                else r.choice(
                    ("Madre", "Esposa", "Hermana", "Conviviente", "Hija")
                    if pers.female
                    else ("Hermano", "Padre", "Hijo", "Tío")
                )
            )
            party = 1 + (minors if j == 0 and fac != "CBA" else 0)
            v = self.add(
                Visit(
                    fac,
                    t_in + timedelta(minutes=j),
                    t_out,
                    pers,
                    cal,
                    iid,
                    party=party,
                    cita=cita,
                    tags=set(tag),
                    motivo="Visita familiar",
                )
            )
            v.minors = minors if j == 0 and fac != "CBA" else 0
            if not special and t_in.hour < 8:
                v.tags.add("gate_opens_minutes_early")
            if v.minors:
                v.tags.add("minors_counted_in_party")
            out.append(v)
        if fac == "CBA":  # minors written on their own lines, without a document
            for _ in range(minors):
                girl = r.random() < 0.5
                kid = Person(
                    r.choice(FEMALE if girl else MALE),
                    come[0].sur.split()[0] + " " + r.choice(SURNAMES),
                    "",
                    "",
                    girl,
                )
                out.append(
                    self.add(
                        Visit(
                            fac,
                            t_in + timedelta(minutes=1),
                            t_out,
                            kid,
                            "Familiar (menor)",
                            iid,
                            cita=cita,
                            tags=set(tag) | {"minors_without_document"},
                            doc_written="",
                        )
                    )
                )
        return out

    def professionals(self) -> None:
        r = self.rng
        self.lawyers: dict[str, list[tuple[Person, list[str], int]]] = {}
        for fac, n in (("MSZ", 10), ("IZA", 12), ("CHA", 8), ("QUE", 10), ("CBA", 14)):
            law = []
            for _ in range(n):
                pers = self.person(female=r.random() < 0.45)
                pers.given = ("Lic. " if r.random() < 0.5 else "") + pers.given
                clients = r.sample(self.by_fac[fac], r.randint(3, 12))
                law.append((pers, clients, r.randrange(0, 5)))
            self.lawyers[fac] = law
            for d in self.days:
                if d.weekday() > 4:
                    continue
                for pers, clients, wd in law:
                    if d.weekday() != wd or r.random() > 0.45:
                        continue
                    t_in = at(d, r.uniform(8.2, 14.8))
                    t_out = t_in + timedelta(minutes=r.randint(25, 100))
                    cal = "Abogada" if pers.given.split()[-1] in FEMALE else "Abogado"
                    self.add(
                        Visit(
                            fac, t_in, t_out, pers, cal, r.choice(clients), motivo="Asesoría legal"
                        )
                    )
        # A defence lawyer of MS-13 clique members: one line per client, same entry.
        pers = self.person(female=False)
        pers.given = "Lic. " + pers.given
        ms = [i for i in self.by_fac["CBA"] if self.inmates[i]["rank"] in ("Homeboy", "Soldado")]
        clients = r.sample(ms, 30)
        for d in self.days:
            if d.weekday() == 1 and r.random() < 0.5:
                t_in = at(d, r.uniform(8.5, 10))
                t_out = t_in + timedelta(minutes=r.randint(150, 280))
                for iid in r.sample(clients, r.randint(6, 10)):
                    self.add(
                        Visit(
                            "CBA",
                            t_in,
                            t_out,
                            pers,
                            "Abogado",
                            iid,
                            motivo="Entrevista con defendido",
                            tags={"lawyer_many_clients_one_gang"},
                        )
                    )

    def officials(self) -> None:
        r = self.rng
        inspectors = [self.person(female=r.random() < 0.4) for _ in range(5)]
        for d in self.days:
            if d.weekday() > 4:
                continue
            for pers in inspectors:
                if r.random() < 0.05:
                    fac = r.choice(PRISONS)
                    t_in = at(d, r.uniform(9, 14.5))
                    iid = r.choice(self.by_fac[fac]) if r.random() < 0.3 else ""
                    self.add(
                        Visit(
                            fac,
                            t_in,
                            t_in + timedelta(minutes=r.randint(40, 150)),
                            pers,
                            "Funcionario",
                            iid,
                            inst="DGCP",
                            motivo="Inspección" if not iid else "Entrevista",
                        )
                    )
        # The director's daytime inspections, with two named bodyguards he escorts in.
        self.director = Person(*DIRECTOR, self.doc(), female=False)
        guards = [self.person(female=False) for _ in range(2)]
        self.director_guards = guards
        for month_start in sorted({d.replace(day=1) for d in self.days}):
            for fac, off in zip(PRISONS, r.sample(range(2, 26), len(PRISONS)), strict=False):
                d = month_start + timedelta(off)
                if not self.in_window(d) or d.weekday() > 4:
                    continue
                t_in = at(d, r.uniform(9.5, 11))
                t_out = t_in + timedelta(minutes=r.randint(60, 150))
                self.add(
                    Visit(
                        fac,
                        t_in,
                        t_out,
                        self.director,
                        "Funcionario",
                        inst="DGCP",
                        motivo="Inspección",
                        plate="N 10-234",
                        tags={"director_daytime_inspection"},
                    )
                )
                for g in guards:
                    self.add(
                        Visit(
                            fac,
                            t_in + timedelta(minutes=1),
                            t_out,
                            g,
                            "Funcionario",
                            inst="DGCP - Seguridad",
                            escort=self.director.full,
                            motivo="Seguridad del director",
                            tags={"director_daytime_inspection"},
                        )
                    )
        # The ombudsman (PDDH): monthly, interviews inmates, at MSZ leaders of every gang.
        pddh = [self.person() for _ in range(2)]
        for month_start in sorted({d.replace(day=1) for d in self.days}):
            for fac, off in zip(PRISONS, r.sample(range(3, 24), len(PRISONS)), strict=False):
                d = month_start + timedelta(off)
                if not self.in_window(d) or d.weekday() > 4:
                    continue
                if fac == "MSZ":
                    ids = [r.choice(self.leaders("MSZ", g)) for g, _ in GANGS["MSZ"]]
                else:
                    ids = r.sample(self.by_fac[fac], 3)
                for k, iid in enumerate(ids):
                    t_in = at(d, 9 + 1.1 * k)
                    for pers in pddh:
                        tags = {"ombudsman_interviews_rival_leaders"} if fac == "MSZ" else set()
                        self.add(
                            Visit(
                                fac,
                                t_in,
                                t_in + timedelta(minutes=55),
                                pers,
                                "Funcionario",
                                iid,
                                inst="PDDH",
                                motivo="Verificación de condiciones",
                                tags=tags,
                            )
                        )

    def judges(self) -> None:
        """Hearings held inside MSZ every second and fourth Tuesday, leaders of both gangs."""
        r = self.rng
        judge = self.person(female=True)
        judge.given = "Licda. " + judge.given
        clerk, fiscal, defensor = self.person(), self.person(), self.person()
        for d in self.days:
            if d.weekday() != 1 or (d.day - 1) // 7 not in (1, 3):
                continue
            heard = [r.choice(self.leaders("MSZ", g)) for g, _ in GANGS["MSZ"]]
            heard += r.sample(self.by_fac["MSZ"], 2)
            t0 = at(d, r.uniform(8.5, 9))
            end = t0 + timedelta(minutes=60 * len(heard) + 20)
            tag = {"judicial_hearings_inside"}
            for k, iid in enumerate(heard):
                self.add(
                    Visit(
                        "MSZ",
                        t0 + timedelta(minutes=60 * k),
                        end,
                        judge,
                        "Funcionario judicial",
                        iid,
                        inst="Juzgado Especializado de Sentencia",
                        motivo="Audiencia",
                        plate="N 7-881" if k == 0 else "",
                        tags=set(tag),
                    )
                )
            for pers, cal, inst in (
                (clerk, "Funcionario judicial", "Juzgado Especializado"),
                (fiscal, "Funcionario", "FGR"),
                (defensor, "Defensor Público", "PGR"),
            ):
                self.add(
                    Visit(
                        "MSZ",
                        t0 + timedelta(minutes=2),
                        end,
                        pers,
                        cal,
                        inst=inst,
                        motivo="Audiencia",
                        tags=set(tag),
                    )
                )

    def services(self) -> None:
        """Dawn food deliveries, police bringing detainees, chaplains, doctors."""
        r = self.rng
        for fac in PRISONS:
            drivers = [self.person(female=False) for _ in range(3)]
            truck = self.plate("C")
            agents = [self.person(female=r.random() < 0.2) for _ in range(8)]
            patrol = [self.plate("N") for _ in range(2)]
            chaplains = [self.person() for _ in range(3)]
            doctor, nurse = self.person(), self.person(female=True)
            for d in self.days:
                if fac == "QUE" and d in FUMIGATION:
                    continue
                t_in = at(d, r.uniform(5.3, 6.4))
                drv = r.choice(drivers)
                self.add(
                    Visit(
                        fac,
                        t_in,
                        t_in + timedelta(minutes=r.randint(25, 55)),
                        drv,
                        "Proveedor",
                        inst="Alimentos Cuscatlán S.A. de C.V.",
                        plate=truck,
                        motivo="Entrega de alimentos",
                        tags={"dawn_delivery"},
                    )
                )
                intake = 0.1 if fac == "MSZ" else 0.25
                if r.random() < intake:
                    # police at any hour: new detainees, or escorts to court
                    h = r.choice((r.uniform(0, 24), r.uniform(4.5, 6.5)))
                    t_in = at(d, h)
                    t_out = t_in + timedelta(minutes=r.randint(20, 70))
                    pl = r.choice(patrol)
                    for a in r.sample(agents, r.randint(2, 3)):
                        self.add(
                            Visit(
                                fac,
                                t_in,
                                t_out,
                                a,
                                "Policía (PNC)",
                                inst="PNC",
                                plate=pl,
                                motivo="Ingreso de detenidos"
                                if fac != "MSZ"
                                else "Custodia a audiencia",
                                tags={"police_patrol_rotating_crews"}
                                | ({"police_at_night"} if h < 6 or h > 20 else set()),
                            )
                        )
                        pl = ""
                if d.weekday() == 6 and fac != "MSZ":
                    t_in = at(d, r.uniform(8.3, 9))
                    for c in r.sample(chaplains, r.randint(1, 3)):
                        self.add(
                            Visit(
                                fac,
                                t_in,
                                t_in + timedelta(minutes=r.randint(100, 160)),
                                c,
                                "Religioso",
                                inst="Pastoral Penitenciaria",
                                motivo="Misa dominical",
                            )
                        )
                if d.weekday() == 2:
                    t_in = at(d, r.uniform(8, 9))
                    for pers in (doctor, nurse):
                        self.add(
                            Visit(
                                fac,
                                t_in,
                                t_in + timedelta(minutes=r.randint(180, 300)),
                                pers,
                                "Personal de salud",
                                inst="MINSAL",
                                motivo="Consulta general",
                            )
                        )

    def cha_staff(self) -> None:
        """Chalatenango's personnel gate: 8-hour shifts, then 24 on / 48 off from
        September (the look-alike: a change of regime in one book)."""
        r = self.rng
        crews8 = [[self.person(female=r.random() < 0.2) for _ in range(5)] for _ in range(4)]
        crews24 = [[self.person(female=r.random() < 0.2) for _ in range(8)] for _ in range(3)]
        # The same guards stay: the 24-hour crews are the 8-hour ones regrouped.
        pool = [p for c in crews8 for p in c]
        crews24 = [pool[i * 6 : (i + 1) * 6] + crews24[i][:2] for i in range(3)]
        for d in self.days:
            n = (d - START).days
            if d < CHA_SHIFT_CHANGE:
                week = n // 7
                for shift, start in enumerate((6, 14, 22)):
                    crew = crews8[(week + shift) % 4]
                    for g in crew:
                        t_in = at(d, start - r.uniform(0.1, 0.4))
                        t_out = at(d, start + 8 + r.uniform(0, 0.3))
                        self.add(
                            Visit(
                                "CHA",
                                t_in,
                                t_out,
                                g,
                                "Custodio",
                                inst="DGCP",
                                checkpoint="Garita de Personal",
                                tags={"shift_pattern_change"},
                            )
                        )
            else:
                crew = crews24[n % 3]
                for g in crew:
                    t_in = at(d, 7 - r.uniform(0.1, 0.5))
                    t_out = at(d + timedelta(1), 7 + r.uniform(0, 0.4))
                    self.add(
                        Visit(
                            "CHA",
                            t_in,
                            t_out,
                            g,
                            "Custodio",
                            inst="DGCP",
                            checkpoint="Garita de Personal",
                            tags={"shift_pattern_change"},
                        )
                    )

    def icrc(self) -> None:
        r = self.rng
        team = [
            Person("Lukas", "Meier", "X4471982", "Pasaporte", False),
            Person("Sophie", "Dubois", "18FV20477", "Pasaporte"),
            Person("Andrea", "Rossi", "YA2209381", "Pasaporte"),
            Person("Martin", "Keller", "X5530127", "Pasaporte", False),
            self.person(female=True),
        ]
        for d, fac in ICRC_WEEK.items():
            if not self.in_window(d):
                continue
            t_in = at(d, 6.75 + r.uniform(0, 0.2))
            t_out = at(d, 19.3 + r.uniform(0, 0.4))
            if fac == "MSZ":
                heard = [r.choice(self.leaders("MSZ", g)) for g, _ in GANGS["MSZ"]]
            else:
                heard = [""] * 3
            for k, pers in enumerate(team):
                self.add(
                    Visit(
                        fac,
                        t_in + timedelta(minutes=k),
                        t_out,
                        pers,
                        "CICR",
                        heard[k % len(heard)],
                        inst="Comité Internacional de la Cruz Roja",
                        plate="P 611-402" if k == 0 else "",
                        party=1,
                        motivo="Visita humanitaria",
                        tags={"humanitarian_delegation"},
                    )
                )

    # ---- look-alikes that need particular people ------------------------------------
    def plant_lookalike_people(self) -> None:
        r = self.rng
        # A mother whose two sons lead rival gangs' cliques at two prisons.
        ms = self.leaders("CBA", "MS-13", ("Palabrero",))[0]
        b18 = self.leaders("IZA", "Barrio 18 Sureños", ("Palabrero",))[0]
        self.set_inmate(ms, sur="Cruz Hernández")
        self.set_inmate(b18, sur="Cruz Hernández")
        mother = Person("Rosa Amelia", "Hernández de Cruz", self.doc())
        for iid, fac, wd in ((ms, "CBA", 2), (b18, "IZA", 5)):  # Wednesdays, Saturdays
            vdays, _, close, _ = FAMILY[fac]
            for d in self.days:
                if (
                    d.weekday() == wd
                    and r.random() < 0.33
                    and not (HOLY_WEEK[0] <= d <= HOLY_WEEK[1])
                ):
                    self.family_party(
                        fac, d, iid, close, None, people=[mother], tags={"family_in_rival_gangs"}
                    )
        # Common names: different people, different documents.
        for given, sur in (("José", "Martínez"), ("María", "Hernández"), ("Juan", "López")):
            for fac in ("IZA", "QUE", "CBA", "CHA"):
                for _ in range(2):
                    pers = Person(given, sur, self.doc(), female=given == "María")
                    iid = r.choice(self.by_fac[fac])
                    vdays, _, close, _ = FAMILY[fac]
                    for d in r.sample([d for d in self.days if d.weekday() in vdays], 4):
                        if HOLY_WEEK[0] <= d <= HOLY_WEEK[1] or d in FUMIGATION:
                            continue
                        self.family_party(
                            fac, d, iid, close, None, people=[pers], tags={"common_names"}
                        )
        # Families with passports or foreign identity cards (inmates from Honduras,
        # Guatemala): a DNI or DPI is not a DUI.
        foreign = [
            Person("Dilcia Marisol", "Zúniga Paz", "0801-1979-04417", "DNI Honduras"),
            Person("Olga Leticia", "Ixcot Tzul", "2456 78901 0101", "DPI Guatemala"),
            Person("Brenda", "Pineda Castro", "G12887341", "Pasaporte"),
            Person("Martha Lidia", "Cárcamo", "0501-1985-11230", "DNI Honduras"),
        ]
        for k, pers in enumerate(foreign):
            fac = ("IZA", "QUE", "CBA", "QUE")[k]
            iid = r.choice(self.by_fac[fac])
            vdays, _, close, _ = FAMILY[fac]
            for d in self.days:
                if (
                    d.weekday() == vdays[0]
                    and r.random() < 0.2
                    and d not in FUMIGATION
                    and not (HOLY_WEEK[0] <= d <= HOLY_WEEK[1])
                ):
                    self.family_party(
                        fac, d, iid, close, None, people=[pers], tags={"foreign_documents"}
                    )
        # A family's car: the father brings it on Saturday, the daughter on Sunday.
        fac = "IZA"
        car = self.plate()
        iid = r.choice(self.by_fac[fac])
        dad, daughter = self.person(female=False), self.person(female=True)
        for d in self.days:
            if (
                d.weekday() in (5, 6)
                and r.random() < 0.3
                and not (HOLY_WEEK[0] <= d <= HOLY_WEEK[1])
            ):
                who = dad if d.weekday() == 5 else daughter
                for v in self.family_party(
                    fac, d, iid, 15, None, people=[who], tags={"family_car_shared"}
                ):
                    v.plate = car
        # A parish minibus bringing families to Chalatenango on Sundays.
        bus = self.plate("MB")
        for d in self.days:
            if d.weekday() == 6 and d.day <= 7:
                t_in = at(d, 8.1)
                for iid in r.sample(self.by_fac["CHA"], 10):
                    pers = self.person(female=True)
                    self.add(
                        Visit(
                            "CHA",
                            t_in + timedelta(minutes=r.randint(0, 6)),
                            at(d, 13.5),
                            pers,
                            "Familiar",
                            iid,
                            plate=bus,
                            party=r.randint(1, 3),
                            motivo="Visita familiar",
                            checkpoint="Garita de Visitas",
                            tags={"parish_minibus"},
                        )
                    )

    # ---- the anomalies ------------------------------------------------------------
    def anomaly(
        self,
        category,
        visits=(),
        transfers=(),
        events=(),
        facility=None,
        logbook=None,
        period=None,
        description="",
        tag=None,
    ):
        item = dict(
            category=category,
            visits=list(visits),
            transfers=list(transfers),
            events=list(events),
            facility=facility,
            logbook=logbook,
            period=period,
            description=description,
            _tag=tag,
        )
        self.truth.append(item)
        return item

    def director_nights(self) -> None:
        """The director at night with people nobody identified, meeting gang leaders."""
        r = self.rng
        d_ms = self.leaders("MSZ", "MS-13", ("Ranflero",))
        d_18s = self.leaders("MSZ", "Barrio 18 Sureños", ("Ranflero",))
        d_18r = self.leaders("MSZ", "Barrio 18 Revolucionarios", ("Ranflero",))
        i_18s = self.leaders("IZA", "Barrio 18 Sureños", ("Palabrero",))[1]
        dpl = "N 10-234"
        self.escort_plates = ("P 908-115", "P 908-116")
        self.nights = []  # (date, facility, start hour, companions) for the gate's reads

        def line(fac, t, iid, **kw):
            kw.setdefault("inst", "DGCP")
            kw.setdefault("motivo", "Reunión")
            return self.add(
                Visit(
                    fac,
                    t,
                    t + timedelta(minutes=kw.pop("stay", 95)),
                    self.director,
                    "Funcionario",
                    iid,
                    **kw,
                )
            )

        def companions(fac, t, n, names, docs, escort, tag, stay=95):
            out = []
            for k in range(n):
                v = self.add(
                    Visit(
                        fac,
                        t + timedelta(minutes=1),
                        t + timedelta(minutes=stay),
                        None,
                        r.choice(("", "Acompañante", "Funcionario")),
                        inst="",
                        escort=escort,
                        tags={tag},
                    )
                )
                v.name_written = names[k]
                v.doc_written = docs[k]
                out.append(v)
            return out

        # Round 1: MSZ on a Tuesday night, Izalco two nights later.
        d1, d1b = date(2019, 7, 9), date(2019, 7, 11)
        if self.in_window(d1b):
            t = at(d1, 21.7)
            line("MSZ", t, d_ms[0], plate=dpl, party=4, escort="", tags={"A01", "VP1"})
            companions(
                "MSZ",
                t,
                3,
                ["Acompañante 1", "Acompañante 2", "Acompañante 3"],
                ["", "", ""],
                "Rolando Mena Ayala",
                "A01",
            )
            self.anomaly(
                "unidentified_entrant",
                facility="MSZ",
                tag="A01",
                description="The director of prisons enters Zacatecoluca at 21:42 with "
                "three companions written only as 'Acompañante 1-3', no document, "
                "escorted by him",
            )
            self.nights.append((d1, t, 3))
            t2 = at(d1b, 22.25)
            line("IZA", t2, i_18s, plate=dpl, party=3, tags={"A03", "VP1"})
            for v in companions(
                "IZA", t2, 2, ["Encapuchado", "ENCAPUCHADO"], ["", ""], "Dir. Gral. Mena", "A03"
            ):
                v.calidad = ""
            self.anomaly(
                "unidentified_entrant",
                facility="IZA",
                tag="A03",
                description="The director at Izalco at 22:15 with two masked men "
                "written 'Encapuchado', no document",
            )
            self.anomaly(
                "visit_pattern",
                facility="MSZ",
                tag="VP1",
                description="The director meets an MS-13 ranflero at Zacatecoluca "
                "(Tue 21:42) and a Barrio 18 Sureños palabrero at Izalco two nights "
                "later (22:15): an official meeting leaders of rival gangs at night "
                "within a week",
            )
        # Round 2: one night, both gangs; the book names him alone for a party of four.
        d2 = date(2019, 8, 7)
        if self.in_window(d2):
            t = at(d2, 21.15)
            line("MSZ", t, d_ms[1 % len(d_ms)], plate=dpl, party=4, tags={"A02", "VP2"})
            line("MSZ", t + timedelta(minutes=70), d_18s[0], party=4, stay=60, tags={"A02", "VP2"})
            self.anomaly(
                "unidentified_entrant",
                facility="MSZ",
                tag="A02",
                description="The director's line says 4 people; only his name is "
                "written (three people entered unnamed)",
            )
            self.anomaly(
                "visit_pattern",
                facility="MSZ",
                tag="VP2",
                description="The director meets an MS-13 and a Barrio 18 Sureños "
                "ranflero the same night at Zacatecoluca",
            )
            self.nights.append((d2, t, 3))
        # Rounds with the book later removed: only the gate saw them (see events).
        for d in (date(2019, 10, 22), date(2019, 11, 12)):
            if self.in_window(d):
                self.nights.append((d, at(d, r.uniform(21, 22.5)), 3))
        # Round 3: two nights four days apart, names with impossible documents.
        d3, d3b = date(2020, 1, 17), date(2020, 1, 21)
        if self.in_window(d3b):
            t = at(d3, 22.5)
            line("MSZ", t, d_ms[2 % len(d_ms)], plate=dpl, party=3, escort="", tags={"A04", "VP3"})
            comp = companions(
                "MSZ",
                t,
                2,
                ["Carlos Pérez", "Juan López"],
                [bad_dui(r), "00000000-1"],
                "Dir. Gral. R. Mena",
                "A04",
            )
            for v in comp:
                v.calidad = "Funcionario"
            self.anomaly(
                "unidentified_entrant",
                facility="MSZ",
                tag="A04",
                description="Two companions of the director with generic names "
                "and DUIs that fail the check digit",
            )
            t = at(d3b, 21.9)
            line("MSZ", t, d_18r[0], plate=dpl, party=3, tags={"A05", "VP3"})
            companions("MSZ", t, 2, ["N/I", "N/I"], ["", ""], "Dir. Gral. R. Mena", "A05")
            self.anomaly(
                "unidentified_entrant",
                facility="MSZ",
                tag="A05",
                description="Two companions of the director written 'N/I'",
            )
            self.anomaly(
                "visit_pattern",
                facility="MSZ",
                tag="VP3",
                description="The director meets an MS-13 ranflero (Fri 22:30) and "
                "a Barrio 18 Revolucionarios ranflero (Tue 21:54) at night",
            )
            self.nights += [(d3, at(d3, 22.5), 2), (d3b, at(d3b, 21.9), 2)]
        # Round 4: blank lines.
        d4 = date(2020, 2, 11)
        if self.in_window(d4):
            t = at(d4, 20.85)
            line("MSZ", t, d_ms[0], plate=dpl, party=3, tags={"A06", "VP4"})
            line("MSZ", t + timedelta(minutes=50), d_18s[0], stay=45, tags={"A06", "VP4"})
            companions("MSZ", t, 2, ["", "-"], ["", ""], "", "A06")
            self.anomaly(
                "unidentified_entrant",
                facility="MSZ",
                tag="A06",
                description="Two lines with no name at all right after the director's night line",
            )
            self.anomaly(
                "visit_pattern",
                facility="MSZ",
                tag="VP4",
                description="The director meets MS-13 and Barrio 18 Sureños "
                "ranfleros at 20:51 and 21:41",
            )
            self.nights.append((d4, t, 2))

    def other_visit_anomalies(self) -> None:
        r = self.rng
        # A visitor with a forged DUI (check digit wrong) seeing a Barrio 18 leader.
        lead = self.leaders("IZA", "Barrio 18 Revolucionarios", ("Palabrero",))[0]
        forged = Person("Karla Yamileth", "Sosa Guardado", bad_dui(r))
        for d in (date(2019, 5, 24), date(2019, 6, 14), date(2019, 7, 5)):
            if self.in_window(d):
                for v in self.family_party(
                    "IZA", d, lead, 15, None, people=[forged], tags={"U_FORGED"}
                ):
                    if v.person is forged:
                        v.calidad = "Esposa"
        self.anomaly(
            "unidentified_entrant",
            facility="IZA",
            tag="U_FORGED",
            description="A 'wife' of a Barrio 18 palabrero visits three times with a "
            "DUI whose check digit is wrong",
        )
        # A vice-ministry official at Izalco at night: one name, a party of six.
        d = date(2019, 9, 26)
        if self.in_window(d):
            vm = self.person(female=False)
            vm.given = "Lic. " + vm.given
            lead = self.leaders("IZA", "Barrio 18 Sureños", ("Palabrero",))[3]
            t = at(d, 22.67)
            self.add(
                Visit(
                    "IZA",
                    t,
                    t + timedelta(minutes=80),
                    vm,
                    "Funcionario",
                    lead,
                    inst="Ministerio de Justicia y Seguridad",
                    party=6,
                    motivo="Reunión de coordinación",
                    tags={"U_VM", "VP_VM"},
                )
            )
            self.anomaly(
                "unidentified_entrant",
                facility="IZA",
                tag="U_VM",
                description="An official of the ministry enters Izalco at "
                "22:40 with five people nobody named (party of 6, one line)",
            )
            self.anomaly(
                "visit_pattern",
                facility="IZA",
                tag="VP_VM",
                description="The same official meets a Barrio 18 Sureños palabrero at 22:40, "
                "far outside officials' hours",
            )
        # One DUI, two names, two prisons, three and a half hours apart.
        d = date(2019, 6, 13)
        if self.in_window(d):
            shared = self.doc()
            a = Person("Lic. Carlos Ernesto", "Rivas Molina", shared, female=False)
            b = Person("José Antonio", "Menjívar Solís", shared, female=False)
            t = at(d, 8.85)
            self.add(
                Visit(
                    "MSZ",
                    t,
                    t + timedelta(minutes=55),
                    a,
                    "Abogado",
                    self.leaders("MSZ", "MS-13")[3],
                    motivo="Asesoría legal",
                    tags={"U_DUI2"},
                )
            )
            self.dui_twice = (a, t)
            self.add(
                Visit(
                    "QUE",
                    at(d, 12.35),
                    at(d, 14.2),
                    b,
                    "Familiar",
                    r.choice(self.by_fac["QUE"]),
                    party=1,
                    motivo="Visita familiar",
                    tags={"U_DUI2"},
                )
            )
            self.anomaly(
                "unidentified_entrant",
                facility="MSZ",
                tag="U_DUI2",
                description="DUI used by 'Lic. Carlos Ernesto Rivas Molina' at "
                "Zacatecoluca at 08:51 and by 'José Antonio Menjívar Solís' at "
                "Quezaltepeque at 12:21 the same day",
            )
        # A messenger: a 'relative' of leaders of rival gangs, none of her name.
        ms = self.leaders("CBA", "MS-13", ("Palabrero",))[2]
        b18 = self.leaders("IZA", "Barrio 18 Sureños", ("Palabrero",))[2]
        sandra = Person("Sandra Elizabeth", "Portillo Guevara", self.doc())
        for d, iid, fac, cal in (
            (date(2019, 4, 26), ms, "CBA", "Esposa"),
            (date(2019, 5, 2), b18, "IZA", "Hermana"),
            (date(2019, 5, 17), ms, "CBA", "Esposa"),
            (date(2019, 5, 23), b18, "IZA", "Hermana"),
            (date(2019, 6, 7), ms, "CBA", "Esposa"),
            (date(2019, 6, 13), b18, "IZA", "Conviviente"),
        ):
            if self.in_window(d):
                for v in self.family_party(fac, d, iid, 15, None, people=[sandra], tags={"VP_MSG"}):
                    if v.person is sandra:
                        v.calidad = cal
        self.anomaly(
            "visit_pattern",
            facility="CBA",
            tag="VP_MSG",
            description="Sandra Elizabeth Portillo Guevara visits an MS-13 palabrero "
            "at Ciudad Barrios ('esposa') and a Barrio 18 Sureños palabrero at "
            "Izalco ('hermana', 'conviviente') alternately for two months",
        )
        # A lawyer at 23:15 with the MS-13 leader at Ciudad Barrios.
        d = date(2019, 10, 16)
        if self.in_window(d):
            pers, clients, _ = self.lawyers["CBA"][0]
            lead = self.leaders("CBA", "MS-13", ("Palabrero",))[1]
            t = at(d, 23.25)
            self.add(
                Visit(
                    "CBA",
                    t,
                    t + timedelta(minutes=40),
                    pers,
                    "Abogado",
                    lead,
                    motivo="Asesoría legal",
                    tags={"VP_LAW"},
                )
            )
            self.anomaly(
                "visit_pattern",
                facility="CBA",
                tag="VP_LAW",
                description="A lawyer enters Ciudad Barrios at 23:15 to see an MS-13 palabrero",
            )
        # Vehicles: one plate, four lone drivers within a week; a vehicle nobody is named in.
        plate = "P 512-487"
        for d, h in (
            (date(2020, 1, 9), 9.1),
            (date(2020, 1, 10), 8.4),
            (date(2020, 1, 11), 10.2),
            (date(2020, 1, 12), 8.9),
        ):
            if self.in_window(d):
                pers = self.person()
                iid = r.choice(self.by_fac["IZA"])
                t = at(d, h)
                self.add(
                    Visit(
                        "IZA",
                        t,
                        t + timedelta(minutes=90),
                        pers,
                        "Familiar",
                        iid,
                        plate=plate,
                        motivo="Visita familiar",
                        tags={"VE_PLATE"},
                    )
                )
        self.anomaly(
            "vehicle",
            facility="IZA",
            tag="VE_PLATE",
            description="Plate P 512-487 brings a different lone 'relative' to "
            "Izalco on four consecutive days",
        )
        d = date(2019, 8, 30)
        if self.in_window(d):
            t = at(d, 19.67)
            v = self.add(
                Visit(
                    "QUE",
                    t,
                    t + timedelta(minutes=35),
                    None,
                    "",
                    plate="P 771-203",
                    tags={"VE_NOBODY"},
                )
            )
            v.name_written, v.doc_written = "", ""
            self.anomaly(
                "vehicle",
                facility="QUE",
                tag="VE_NOBODY",
                description="A vehicle written at 19:40 with nobody named in it",
            )

    def outage_and_fumigation(self) -> None:
        """Quezaltepeque: a day written afterwards in one block; two closed days with a
        clerk's note line."""
        r = self.rng
        block = [
            v
            for v in self.visits
            if v.fac == "QUE"
            and v.t_in.date() == OUTAGE_DAY
            and 9 <= v.t_in.hour < 13
            and not v.tags
        ]
        r.shuffle(block)
        for k, v in enumerate(block):
            v.write_at = at(OUTAGE_DAY, 13.75) + timedelta(seconds=k)
            v.time_written = f"{v.t_in.hour}:00"  # rounded: written from memory
            v.t_out = None
            v.tags.add("power_outage_block")
        d = FUMIGATION[0]
        if self.in_window(d):
            note = self.add(
                Visit("QUE", at(d, 7.5), None, None, "NOVEDAD", tags={"fumigation_closure"})
            )
            note.name_written = "SE SUSPENDE INGRESO DE VISITAS POR FUMIGACION (2 DIAS)"
            note.doc_written = ""

    # ---- books --------------------------------------------------------------------
    def books(self) -> None:
        """Write every line into its book: lines per folio, folios per book, new books
        mid-day when one fills up, and each January where the prison restarts its series."""
        # Nothing written at Quezaltepeque for ten days while it ran.
        self.visits = [
            v
            for v in self.visits
            if not (v.fac == "QUE" and QUE_SILENT[0] <= v.t_in.date() <= QUE_SILENT[1])
        ]
        if self.in_window(QUE_SILENT[1]):
            self.anomaly(
                "logbook_gap",
                facility="QUE",
                logbook=None,
                period=[QUE_SILENT[0].isoformat(), QUE_SILENT[1].isoformat()],
                description="Quezaltepeque's book has nothing written for ten days "
                "(six visiting days) while the prison ran; the folios run on",
            )
        for v in self.visits:
            if v.fac == "CHA" and not v.checkpoint:
                v.checkpoint = "Garita de Visitas"
        self.book_of: dict[tuple, list[dict]] = {}
        for (fac, cp), (lines, folios, style, first, yearly) in BOOKS.items():
            rows = sorted(
                (
                    v
                    for v in self.visits
                    if v.fac == fac and (v.checkpoint or "") == (cp if fac == "CHA" else "")
                ),
                key=lambda v: v.write_at or v.t_in,
            )
            if fac == "CHA":
                for v in rows:
                    v.checkpoint = cp
            books, num, year = [], first, None
            cur = None
            for v in rows:
                w = v.write_at or v.t_in
                if cur is None or cur["n"] >= lines * folios or (yearly and w.year != year):
                    if cur is not None:
                        cur["closed"] = (cur["lines"][-1].write_at or cur["lines"][-1].t_in).date()
                        num = 1 if (yearly and w.year != year) else num + 1
                    year = w.year
                    label = (
                        style.format(num, w.year)
                        if "{}" in style and style.startswith("{")
                        else style.format(w.year, num)
                        if style.startswith("L-")
                        else style.format(num)
                    )
                    cur = dict(
                        label=label,
                        fac=fac,
                        cp=cp,
                        opened=w.date(),
                        closed=None,
                        n=0,
                        lines=[],
                        per=lines,
                        folios=folios,
                    )
                    books.append(cur)
                v.book = cur["label"]
                v.folio = cur["n"] // lines + 1
                v.line = cur["n"] % lines + 1
                cur["n"] += 1
                cur["lines"].append(v)
            self.book_of[(fac, cp)] = books

    def book_anomalies(self) -> None:
        def containing(fac, cp, d):
            for b in self.book_of[(fac, cp)]:
                if b["lines"][0].t_in.date() <= d <= b["lines"][-1].t_in.date():
                    return b
            raise LookupError((fac, d))

        def planted(lines):  # planted tags are upper case, look-alikes' lower case
            return [v for v in lines if any(t[0].isupper() for t in v.tags)]

        def drop(lines):
            gone = set(map(id, lines))
            self.visits = [v for v in self.visits if id(v) not in gone]
            return (
                min(v.t_in for v in lines).date().isoformat(),
                max(v.t_in for v in lines).date().isoformat(),
            )

        self.book_status: dict[tuple, str] = {}
        self.unregistered: set[tuple] = set()
        # Zacatecoluca: the book of October-November 2019, removed ("retirado").
        if self.in_window(date(2019, 12, 15)):
            b = containing("MSZ", "", date(2019, 11, 1))
            assert not planted(b["lines"]), b["label"]
            self.book_status[("MSZ", b["label"])] = "Retirado"
            period = drop(b["lines"])
            self.anomaly(
                "logbook_gap",
                facility="MSZ",
                logbook=b["label"],
                period=list(period),
                description=f"Zacatecoluca's entry book {b['label']} is registered "
                "'Retirado': none of its lines reached the files",
            )
        # Izalco: a book missing from the series and from the register.
        if self.in_window(date(2019, 10, 31)):
            b = containing("IZA", "", date(2019, 10, 20))
            assert not planted(b["lines"]), b["label"]
            self.unregistered.add(("IZA", b["label"]))
            period = drop(b["lines"])
            self.anomaly(
                "logbook_gap",
                facility="IZA",
                logbook=b["label"],
                period=list(period),
                description=f"Izalco's {b['label']} is missing from the files and "
                "from the register: the series jumps over it",
            )
        # Ciudad Barrios: a book registered as lost ("extraviado").
        if self.in_window(date(2019, 12, 20)):
            b = containing("CBA", "", date(2019, 12, 5))
            assert not planted(b["lines"]), b["label"]
            self.book_status[("CBA", b["label"])] = "Extraviado"
            period = drop(b["lines"])
            self.anomaly(
                "logbook_gap",
                facility="CBA",
                logbook=b["label"],
                period=list(period),
                description=f"Ciudad Barrios' book {b['label']} registered "
                "'Extraviado'; its lines are absent",
            )
        # Chalatenango: folios 57 to 60 torn out of a visitors' book.
        books = [b for b in self.book_of[("CHA", "Garita de Visitas")] if b["n"] >= 61 * 20]
        if books:
            b = books[min(1, len(books) - 1)]
            torn = [v for v in b["lines"] if 57 <= v.folio <= 60]
            assert not planted(torn), b["label"]
            period = drop(torn)
            self.anomaly(
                "logbook_gap",
                facility="CHA",
                logbook=b["label"],
                period=list(period),
                description=f"Folios 57-60 of {b['label']} (Chalatenango's visitors' "
                "gate) torn out: 80 lines missing inside the book",
            )

    def number(self) -> None:
        """Record ids, as the transcription numbered the lines it had."""
        style = {
            "MSZ": "Z{:06d}",
            "IZA": "IZ-{:05d}",
            "CHA": "CH{:05d}",
            "QUE": "Q-{:05d}",
            "CBA": "CB{:06d}",
        }
        for fac in PRISONS:
            rows = sorted(
                (v for v in self.visits if v.fac == fac),
                key=lambda v: (v.write_at or v.t_in, v.book, v.folio, v.line),
            )
            for n, v in enumerate(rows, 1):
                v.rid = style[fac].format(n)

    # ---- transfers ----------------------------------------------------------------
    def build_transfers(self) -> None:
        r = self.rng
        approvals = (
            "Sí",
            "SI",
            "Sí",
            "Memo DGCP-UM-{:04d}/{}",
            "Dr. R. Arévalo (Director Médico)",
            "Aprobado - Memo UM-{:04d}/{}",
        )
        reasons = (
            "Consulta médica especializada",
            "Emergencia médica",
            "Cirugía programada",
            "Hospitalización por neumonía",
            "Consulta de cardiología",
        )
        for fac in PRISONS:
            for d in self.days:
                if r.random() > (0.05 if fac == "MSZ" else 0.09):
                    continue
                iid = r.choice(self.by_fac[fac])
                dest = "HSZ" if fac == "MSZ" and r.random() < 0.6 else "HNR"
                t = at(d, r.uniform(6, 15))
                ap = r.choice(approvals)
                ap = ap.format(r.randrange(1, 999), t.year) if "{" in ap else ap
                back = t + timedelta(hours=r.choice((5, 8, 30, 72, 120, 240)))
                tr = Transfer(
                    "medical",
                    iid,
                    fac,
                    dest,
                    t,
                    r.choice(reasons),
                    "Unidad Médica DGCP",
                    ap,
                    returned=back if r.random() < 0.5 else None,
                    tags={"hospital_round_trip"}
                    | ({"approvals_as_memo"} if ap not in ("Sí", "SI") else set()),
                )
                self.transfers.append(tr)
                if back.date() <= self.end:
                    self.transfers.append(
                        Transfer(
                            "medical",
                            iid,
                            dest,
                            fac,
                            back,
                            r.choice(
                                (
                                    "Retorno de hospital",
                                    "Alta médica",
                                    "Retorno al centro penal, alta hospitalaria",
                                )
                            ),
                            "Unidad Médica DGCP",
                            "",
                            tags={"hospital_round_trip"},
                        )
                    )
        # A leader's consultation, approved, back the same day.
        lead = self.leaders("MSZ", "MS-13", ("Ranflero",))[0]
        t = at(date(2019, 4, 9), 7.5)
        self.transfers += [
            Transfer(
                "medical",
                lead,
                "MSZ",
                "HSZ",
                t,
                "Consulta médica especializada",
                "Unidad Médica DGCP",
                "Memo DGCP-UM-0211/2019",
                tags={"leader_medical_approved"},
            ),
            Transfer(
                "medical",
                lead,
                "HSZ",
                "MSZ",
                t + timedelta(hours=6),
                "Retorno de hospital",
                "Unidad Médica DGCP",
                "",
                tags={"leader_medical_approved"},
            ),
        ]
        # General register: security relocations, court hearings and their returns.
        for d in self.days:
            for _ in range(r.choice((0, 0, 1, 1, 2))):
                a, b = r.sample(("IZA", "CHA", "QUE", "CBA"), 2)
                iid = r.choice(self.by_fac[a])
                mot = r.choice(
                    (
                        "Reubicación por hacinamiento",
                        "Medidas de seguridad",
                        "Reubicación por seguridad del interno",
                    )
                )
                self.transfers.append(
                    Transfer(
                        "general",
                        iid,
                        a,
                        b,
                        at(d, r.uniform(5, 10)),
                        mot,
                        "Dirección General",
                        "N/A",
                    )
                )
            if d.weekday() < 5 and r.random() < 0.3:
                a = r.choice(("IZA", "CHA", "QUE", "CBA"))
                iid = r.choice(self.by_fac[a])
                t = at(d, r.uniform(5, 7))
                self.transfers += [
                    Transfer(
                        "general",
                        iid,
                        a,
                        "CJIM",
                        t,
                        "Audiencia judicial",
                        "Juzgado de Instrucción",
                        "N/A",
                    ),
                    Transfer(
                        "general",
                        iid,
                        "CJIM",
                        a,
                        t + timedelta(hours=9),
                        "Retorno de audiencia",
                        "Juzgado de Instrucción",
                        "N/A",
                    ),
                ]
        # A leader moved for security to a prison holding co-leaders (not medical).
        lead = self.leaders("MSZ", "MS-13", ("Palabrero",))[0]
        self.transfers.append(
            Transfer(
                "general",
                lead,
                "MSZ",
                "CBA",
                at(date(2019, 8, 28), 5.5),
                "Medidas de seguridad",
                "Dirección General",
                "N/A",
                tags={"leader_security_transfer"},
            )
        )
        # The planted ones.
        ms = self.leaders("MSZ", "MS-13", ("Ranflero",))
        b18 = self.leaders("MSZ", "Barrio 18 Sureños", ("Ranflero",))
        plan = (
            (
                "M1",
                "general",
                ms[-1],
                "MSZ",
                "CBA",
                date(2019, 10, 3),
                "Traslado por razones médicas",
                "",
                "an MS-13 ranflero moved from Zacatecoluca to Ciudad Barrios 'for medical "
                "reasons', no medical approval, no return; Ciudad Barrios holds MS-13 leaders",
            ),
            (
                "M2",
                "general",
                b18[-1],
                "MSZ",
                "IZA",
                date(2019, 12, 12),
                "Tratamiento médico",
                "",
                "a Barrio 18 Sureños ranflero moved to Izalco (a prison holding Barrio 18 "
                "Sureños palabreros) for 'tratamiento médico', no approval, never returned",
            ),
            (
                "M3",
                "medical",
                self.leaders("CBA", "MS-13", ("Palabrero",))[3],
                "CBA",
                "HNR",
                date(2020, 1, 20),
                "Emergencia médica",
                "Pendiente",
                "an MS-13 palabrero sent to the Rosales hospital as an emergency; approval "
                "'Pendiente' and no return in the following five weeks",
            ),
        )
        for tag, reg, iid, a, b, d, mot, ap, desc in plan:
            if self.in_window(d):
                self.transfers.append(
                    Transfer(reg, iid, a, b, at(d, 4.75), mot, "Dirección General", ap, tags={tag})
                )
                self.anomaly("medical_transfer", facility=a, tag=tag, description=desc)
        self.transfers.sort(key=lambda t: t.at)
        n = {"medical": 0, "general": 0}
        for t in self.transfers:
            n[t.register] += 1
            t.rid = (
                f"TM-{n['medical']:04d}"
                if t.register == "medical"
                else f"TG-{t.at:%y}-{n['general']:04d}"
            )

    # ---- the perimeter gate at Zacatecoluca -----------------------------------------
    def gate(self) -> None:
        r = self.rng
        E = self.events
        missed: set[str] = set()
        ENT, SAL, SEC, VEH = (
            "Garita Principal Entrada",
            "Garita Principal Salida",
            "Sector Máxima",
            "Portón Vehicular",
        )

        def read(t, reader, direction, who=None, badge="", tags=(), plate="", name=None):
            g, s, doc = ("", "", "")
            if who is not None:
                g, s, doc = who.given.upper(), who.sur.upper(), who.doc
            if name is not None:
                g, s = name
            planted = any(t[0].isupper() or t == "guard_leave_edges" for t in tags)
            if r.random() < 1 / 400 and not planted:  # the reader missed it
                missed.add(badge or plate)
                return None
            if (badge or plate) in missed:
                missed.discard(badge or plate)
                tags = set(tags) | {"reader_missed_read"}
            if r.random() < 1 / 600 and not plate and not planted:  # refused, then retried
                E.append(
                    Event(
                        t - timedelta(seconds=r.randint(5, 25)),
                        reader,
                        direction,
                        badge,
                        g,
                        s,
                        doc,
                        "Acceso denegado",
                    )
                )
            ev = Event(t, reader, direction, badge, g, s, doc, plate=plate, tags=set(tags))
            E.append(ev)
            return ev

        # Guards: three crews, 24 hours on, 48 off; a few leaves each.
        crews = [[self.person(female=r.random() < 0.15) for _ in range(16)] for _ in range(3)]
        badge = {}
        for c, crew in enumerate(crews):
            for k, g in enumerate(crew):
                badge[id(g)] = f"G-{c + 1}{k + 1:02d}"
        away: dict[int, list[tuple[date, date]]] = {}
        leave_rows = []
        for crew in crews:
            for g in r.sample(crew, 6):
                s = START + timedelta(r.randrange(20, len(self.days) - 40))
                e = s + timedelta(r.choice((4, 9, 14)))
                away.setdefault(id(g), []).append((s, e))
                leave_rows.append(
                    (
                        g,
                        s,
                        e,
                        r.choice(
                            ("Vacaciones", "Incapacidad médica", "Licencia con goce de sueldo")
                        ),
                    )
                )
        # The planted one: a guard's card read in the middle of his leave.
        ever = crews[1][3]
        ever.given, ever.sur = "Ever Alexander", "Ramos Cruz"
        leave = (date(2019, 11, 1), date(2019, 11, 15))
        away[id(ever)] = [leave]
        leave_rows = [x for x in leave_rows if x[0] is not ever]
        leave_rows.append((ever, *leave, "Vacaciones"))
        self.absences = [
            dict(g=g, s=s, e=e, why=why, badge=badge[id(g)]) for g, s, e, why in leave_rows
        ]
        staff_cars = {id(g): self.plate() for crew in crews for g in crew[:5]}
        for n, d in enumerate(self.days):
            crew = crews[n % 3]
            for k, g in enumerate(crew):
                spans = away.get(id(g), [])
                if any(s <= d <= e for s, e in spans):
                    continue
                b = badge[id(g)]
                t_in = at(d, 6.6 + r.uniform(0, 0.35))
                t_out = at(d + timedelta(1), 7.05 + r.uniform(0, 0.4))
                tags = set()
                if any(s == d + timedelta(1) for s, e in spans):
                    tags = {"guard_leave_edges"}  # leaves the morning his leave begins
                tags |= {"staff_on_24h_shifts"}
                read(t_in, ENT, "Entrada", g, b, tags=tags - {"guard_leave_edges"})
                if id(g) in staff_cars:
                    read(
                        t_in - timedelta(minutes=2),
                        VEH,
                        "Entrada",
                        plate=staff_cars[id(g)],
                        tags={"staff_on_24h_shifts"},
                    )
                if k < 7:
                    t2 = tags - {"guard_leave_edges"}
                    read(t_in + timedelta(minutes=r.randint(8, 20)), SEC, "Entrada", g, b, t2)
                    read(t_out - timedelta(minutes=r.randint(10, 25)), SEC, "Salida", g, b, t2)
                read(t_out, SAL, "Salida", g, b, tags=tags)
                if id(g) in staff_cars:
                    read(
                        t_out + timedelta(minutes=2),
                        VEH,
                        "Salida",
                        plate=staff_cars[id(g)],
                        tags={"staff_on_24h_shifts"},
                    )
        mid = date(2019, 11, 8)
        if self.in_window(mid):
            b = badge[id(ever)]
            t = at(mid, 23.67)
            for reader, dirn, m in (
                (ENT, "Entrada", 0),
                (SEC, "Entrada", 8),
                (SEC, "Salida", 110),
                (SAL, "Salida", 118),
            ):
                read(t + timedelta(minutes=m), reader, dirn, ever, b, tags={"E_LEAVE"})
            self.anomaly(
                "access_events",
                facility="MSZ",
                tag="E_LEAVE",
                description="Guard Ever Alexander Ramos Cruz's card opens the perimeter "
                "and the maximum-security sector at 23:40 in the middle of his "
                "vacation (1-15 Nov)",
            )
        # Administrative staff, Monday to Friday.
        admin = [self.person() for _ in range(10)]
        for k, p in enumerate(admin):
            badge[id(p)] = f"A-{k + 1:03d}"
        admin_cars = {id(p): self.plate() for p in admin[:6]}
        for d in self.days:
            if d.weekday() > 4:
                continue
            for p in admin:
                if r.random() < 0.04:
                    continue
                t_in, t_out = at(d, r.uniform(7.6, 8.1)), at(d, r.uniform(16, 16.5))
                office = {"admin_staff_weekdays"}
                read(t_in, ENT, "Entrada", p, badge[id(p)], office)
                read(t_out, SAL, "Salida", p, badge[id(p)], office)
                if id(p) in admin_cars:
                    car = admin_cars[id(p)]
                    read(t_in - timedelta(minutes=1), VEH, "Entrada", plate=car, tags=office)
                    read(t_out + timedelta(minutes=1), VEH, "Salida", plate=car, tags=office)
        # Every visitor the book writes gets a pass at the gate (the book's later fate
        # does not change what the gate read).
        # A person written on several lines of one stay (a judge per hearing, the director
        # per leader) passes the gate once.
        stays: dict[int, list[list]] = {}
        for v in sorted(
            (v for v in self.visits if v.fac == "MSZ" and v.person is not None),
            key=lambda v: v.t_in,
        ):
            t_out = v.t_out or v.t_in + timedelta(minutes=60)
            tags = {t for t in v.tags if t == "U_DUI2" or t.islower()}
            own = stays.setdefault(id(v.person), [])
            if own and v.t_in <= own[-1][2]:
                last = own[-1]
                last[2] = max(last[2], t_out)
                last[3] = last[3] or bool(v.inmate)
                last[4] |= tags
                last[5] = last[5] or v.plate
            else:
                own.append([v.person, v.t_in, t_out, bool(v.inmate), tags, v.plate])
        passes_back: dict[str, datetime] = {}
        visits_in_order = sorted((x for own in stays.values() for x in own), key=lambda x: x[1])
        for who, t_in, t_out, inner, tags, plate in visits_in_order:
            if who is self.director:
                b = "DG-0001"
            else:  # the desk hands out a pass nobody holds
                free = [
                    f"V-{k:02d}"
                    for k in range(1, 27)
                    if passes_back.get(f"V-{k:02d}", datetime.min) < t_in
                ]
                b = r.choice(free)
                passes_back[b] = t_out + timedelta(minutes=5)
            read(t_in + timedelta(minutes=r.randint(1, 4)), ENT, "Entrada", who, b, tags)
            if inner:
                read(t_in + timedelta(minutes=r.randint(8, 15)), SEC, "Entrada", who, b, tags)
                read(t_out - timedelta(minutes=r.randint(5, 12)), SEC, "Salida", who, b, tags)
            read(t_out + timedelta(minutes=r.randint(0, 3)), SAL, "Salida", who, b, tags)
            if plate:
                read(t_in - timedelta(minutes=2), VEH, "Entrada", plate=plate, tags=tags)
                read(t_out + timedelta(minutes=4), VEH, "Salida", plate=plate, tags=tags)
        # The director's nights: his convoy and companions on "INVITADO" passes.
        for k, (d, t, n) in enumerate(self.nights):
            tag = f"E_NIGHT{k + 1}"
            stay = timedelta(minutes=95)
            for j in range(n):
                who = ("INVITADO", "DE DIRECCIÓN GENERAL")
                b = f"V-{27 + j}"
                read(t + timedelta(minutes=3), ENT, "Entrada", None, b, {tag}, name=who)
                read(t + timedelta(minutes=12), SEC, "Entrada", None, b, {tag}, name=who)
                read(t + stay - timedelta(minutes=8), SEC, "Salida", None, b, {tag}, name=who)
                read(t + stay + timedelta(minutes=2), SAL, "Salida", None, b, {tag}, name=who)
            for p in self.escort_plates:
                read(t - timedelta(minutes=2), VEH, "Entrada", plate=p, tags={tag})
                read(t + stay + timedelta(minutes=5), VEH, "Salida", plate=p, tags={tag})
            book_kept = d not in (date(2019, 10, 22), date(2019, 11, 12))
            if not book_kept:  # the director himself: only the gate remembers
                for reader, dirn, dt in (
                    (VEH, "Entrada", -2),
                    (ENT, "Entrada", 2),
                    (SEC, "Entrada", 11),
                    (SEC, "Salida", 88),
                    (SAL, "Salida", 97),
                    (VEH, "Salida", 100),
                ):
                    if reader == VEH:
                        read(t + timedelta(minutes=dt), reader, dirn, plate="N 10-234", tags={tag})
                    else:
                        read(
                            t + timedelta(minutes=dt), reader, dirn, self.director, "DG-0001", {tag}
                        )
            self.anomaly(
                "access_events",
                facility="MSZ",
                tag=tag,
                description=f"{d}: the director's night at Zacatecoluca as the gate saw "
                f"it: {n} passes issued as 'INVITADO DE DIRECCIÓN GENERAL' through the "
                "perimeter and into the maximum-security sector, two escort vehicles "
                "the book never writes"
                + ("" if book_kept else "; the entry book of these weeks was removed"),
            )
        E.sort(key=lambda e: (e.at, e.reader))
        for n, e in enumerate(E, 1):
            e.rid = f"EV-{n:07d}" if not e.plate else f"LP-{n:07d}"

    # ---- assembling truth -----------------------------------------------------------
    def resolve(self) -> None:
        for item in self.truth:
            tag = item.pop("_tag")
            if tag:
                vs = [v for v in self.visits if tag in v.tags]
                item["visits"] = [v.rid for v in vs]
                item["transfers"] = [t.rid for t in self.transfers if tag in t.tags]
                item["events"] = [e.rid for e in self.events if tag in e.tags]
                if vs and item["period"] is None:
                    item["period"] = [
                        min(v.t_in for v in vs).isoformat(),
                        max(v.t_in for v in vs).isoformat(),
                    ]
                ts = [t for t in self.transfers if tag in t.tags]
                if ts and item["period"] is None:
                    item["period"] = [ts[0].at.isoformat(), ts[-1].at.isoformat()]
                es = [e for e in self.events if tag in e.tags]
                if es and item["period"] is None:
                    item["period"] = [es[0].at.isoformat(), es[-1].at.isoformat()]
        self.truth = [
            t
            for t in self.truth
            if t["visits"] or t["transfers"] or t["events"] or t["category"] == "logbook_gap"
        ]
        for n, t in enumerate(self.truth, 1):
            t["id"] = f"T{n:02d}"

    def lookalike_classes(self) -> None:
        desc = {
            "special_visiting_day": "Mother's Day, Father's Day, Christmas Eve, Christmas and "
            "New Year's Eve: every family prison opens to parties of up to six, minors "
            "counted on the adult's line, hours extended to 16:00-17:00",
            "humanitarian_delegation": "The ICRC tours the five prisons in one week (one a "
            "day), arriving 06:45 and leaving after 19:15; four members with passports "
            "(written in Zacatecoluca's DUI column), interviews with leaders of every gang",
            "shift_pattern_change": "Chalatenango's personnel gate: 8-hour shifts of five "
            "guards until August, then 24 hours on / 48 off in crews of eight",
            "surname_first_names": "Chalatenango writes every name 'SURNAMES, Given names' in "
            "capitals",
            "approvals_as_memo": "Medical approvals written as memo numbers or the medical "
            "director's name instead of 'Sí'",
            "judicial_hearings_inside": "A sentencing judge holds hearings inside Zacatecoluca "
            "every second and fourth Tuesday with leaders of MS-13 and both Barrio 18 "
            "factions, with a clerk, a prosecutor and a public defender",
            "ombudsman_interviews_rival_leaders": "The ombudsman's (PDDH) two delegates "
            "interview leaders of the three gangs at Zacatecoluca each month, by day",
            "lawyer_many_clients_one_gang": "A defence lawyer sees six to ten MS-13 clients "
            "per Tuesday at Ciudad Barrios, one line per client",
            "family_in_rival_gangs": "A mother (Hernández de Cruz) visits her two sons, "
            "palabreros of MS-13 (Ciudad Barrios) and Barrio 18 Sureños (Izalco), all year",
            "hospital_round_trip": "Consultations at the Rosales and Santa Teresa hospitals, "
            "the return logged as its own transfer ('Retorno de hospital', 'Alta médica')",
            "leader_medical_approved": "An MS-13 ranflero to the hospital with a memo, back "
            "six hours later",
            "leader_security_transfer": "An MS-13 palabrero moved to Ciudad Barrios for "
            "security (not medical)",
            "logbook_changeover_midday": "Books closed when full and the next opened the same "
            "day, mid-morning",
            "power_outage_block": "Quezaltepeque, 15 Oct 2019: the morning written afterwards "
            "from loose sheets, in one block, times rounded to the hour, no exits",
            "common_names": "José Martínez, María Hernández, Juan López: different people "
            "with different DUIs at four prisons",
            "fumigation_closure": "Quezaltepeque closed 18-19 July 2019 for fumigation; the "
            "clerk's note written as a line of the book",
            "holy_week_suspension": "Family visits suspended at every prison in Holy Week "
            "(15-21 April 2019)",
            "foreign_documents": "Families from Honduras and Guatemala with a DNI, a DPI or a "
            "passport",
            "yearly_book_restart": "Quezaltepeque and Ciudad Barrios open book 1 each January",
            "dawn_delivery": "The food supplier's truck at 05:20-06:25 every day",
            "police_at_night": "Police bringing detainees at night",
            "minors_without_document": "Ciudad Barrios writes minors on their own lines "
            "with no document",
            "director_daytime_inspection": "The director's monthly daytime inspections with "
            "two named bodyguards he escorts in",
            "family_car_shared": "A family's car brought by the father on Saturdays and the "
            "daughter on Sundays",
            "parish_minibus": "A parish minibus brings ten families to Chalatenango on the "
            "first Sunday of each month",
            "dui_without_hyphen": "One of Quezaltepeque's clerks writes DUIs without the hyphen",
            "guard_leave_edges": "A guard on 24-hour shifts read leaving the morning his "
            "leave begins",
            "authorized_by_duty_chief": "Zacatecoluca writes the chief on duty in 'Autorizado "
            "por' for lawyers, suppliers, police and doctors",
            "gate_opens_minutes_early": "Families let in a few minutes before 08:00 on an "
            "ordinary visiting day",
            "police_patrol_rotating_crews": "A prison's two police patrol cars, written on "
            "the line of whichever agent drove, different agents each time",
            "admin_staff_weekdays": "Zacatecoluca's office staff and their cars, Monday to "
            "Friday, badging at the gate, never in the visitors' book",
            "minors_counted_in_party": "Minors entering with an adult are counted in the "
            "adult's party (Personas) and never written on a line of their own (Izalco adds "
            "a num_menores column, Quezaltepeque a remark 'Ingresa con 2 menor(es)')",
            "staff_on_24h_shifts": "Zacatecoluca's guards, 24 hours on and 48 off, badge at "
            "the gate and are never written in the visitors' book",
            "reader_missed_read": "The read after one a reader missed (one in 400)",
            "book_still_open": "The last book of each series is still open at the end of the "
            "period (no closing date, folios unwritten)",
        }
        by_class: dict[str, dict] = {}
        for k in desc:
            by_class[k] = {
                "class": k,
                "visits": [],
                "transfers": [],
                "events": [],
                "description": desc[k],
            }
        for v in self.visits:
            for t in v.tags & set(desc):
                by_class[t]["visits"].append(v.rid)
        for t in self.transfers:
            for c in t.tags & set(desc):
                by_class[c]["transfers"].append(t.rid)
        for e in self.events:
            for c in e.tags & set(desc):
                by_class[c]["events"].append(e.rid)
        # Range look-alikes: where and when.
        by_class["holy_week_suspension"]["period"] = [d.isoformat() for d in HOLY_WEEK]
        by_class["fumigation_closure"].update(
            facility="QUE", period=[d.isoformat() for d in FUMIGATION]
        )
        by_class["shift_pattern_change"].update(
            facility="CHA",
            logbook=None,
            # the change, and the four weeks a judge of recent patterns needs to learn it
            period=[CHA_SHIFT_CHANGE.isoformat(), (CHA_SHIFT_CHANGE + timedelta(28)).isoformat()],
        )
        # A special day on a weekday without visits teaches that weekday visits for weeks.
        by_class["special_visiting_day"]["periods"] = [
            [(d + timedelta(7 * k)).isoformat()] * 2
            for d in SPECIAL_DAYS
            for k in range(1, 5)
            if self.in_window(d)
        ]
        changes, opens, restarts = [], [], []
        present = set(map(id, self.visits))
        for (fac, cp), books in self.book_of.items():
            for a, b in zip(books, books[1:], strict=False):
                entry = {"facility": fac, "logbook": b["label"], "date": b["opened"].isoformat()}
                if a["closed"] == b["opened"] and b["label"] != a["label"]:
                    changes.append(entry | {"previous": a["label"]})
                if b["opened"].year != a["opened"].year and BOOKS[(fac, cp)][4]:
                    restarts.append(entry)
            opens.append({"facility": fac, "logbook": books[-1]["label"]})
            by_class["logbook_changeover_midday"]["visits"] += [
                b["lines"][0].rid
                for a, b in zip(books, books[1:], strict=False)
                if id(b["lines"][0]) in present and a["closed"] == b["opened"]
            ]
        by_class["logbook_changeover_midday"]["books"] = changes
        by_class["yearly_book_restart"]["books"] = restarts
        by_class["book_still_open"]["books"] = opens
        self.looks = [
            c
            for c in by_class.values()
            if c["visits"] or c["transfers"] or c["events"] or c.get("books") or c.get("period")
        ]


# ---- writers: one layout per prison, as its clerks transcribe -------------------------
def _csv(path: Path, header: list[str], rows, delimiter=",", encoding="utf-8") -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def _hm(t: datetime | None) -> str:
    return "" if t is None else f"{t:%H:%M}"


def _ampm(t: datetime | None) -> str:
    if t is None:
        return ""
    h = t.hour % 12 or 12
    return f"{h}:{t:%M} {'a.m.' if t.hour < 12 else 'p.m.'}"


def _name(v: Visit, style: str) -> str:
    if v.name_written is not None:
        return v.name_written
    p = v.person
    if style == "surname_first":
        return f"{p.sur.upper()}, {p.given.upper()}"
    if style == "upper":
        return p.full.upper()
    return p.full


def _doc(v: Visit) -> str:
    return v.doc_written if v.doc_written is not None else (v.person.doc if v.person else "")


def write_visits(w: World, out: Path) -> dict[str, Path]:
    r = random.Random(w.rng.random())
    paths = {}
    by = {f: sorted((v for v in w.visits if v.fac == f), key=lambda v: v.rid) for f in PRISONS}
    # Zacatecoluca: ';', Windows-1252, split date and times, a 'DUI' column for everyone.
    # Its clerks write who authorised each entry: the chief on duty, for the routine.
    chiefs = ("Sub-insp. Walter Ayala", "Sub-insp. Nelson Rivas", "Insp. Marta Cornejo")
    for v in by["MSZ"]:
        if not v.escort and v.calidad in (
            "Abogado",
            "Abogada",
            "Proveedor",
            "Policía (PNC)",
            "Personal de salud",
        ):
            v.escort = chiefs[(v.t_in.date() - START).days % 3]
            v.tags.add("authorized_by_duty_chief")
    rows = [
        [
            v.rid,
            "MSZ",
            v.book,
            v.folio,
            v.line,
            f"{v.t_in:%d/%m/%Y}",
            _hm(v.t_in),
            _hm(v.t_out),
            _name(v, "title"),
            _doc(v),
            v.calidad,
            v.inst,
            v.inmate,
            v.escort,
            v.plate,
            v.party,
            v.motivo,
        ]
        for v in by["MSZ"]
    ]
    paths["visits_MSZ"] = _csv(
        out / "libro_ingresos_MSZ.csv",
        [
            "Correlativo",
            "Centro Penal",
            "Libro",
            "Folio",
            "Línea",
            "Fecha",
            "Hora Ingreso",
            "Hora Salida",
            "Nombre",
            "DUI",
            "Calidad",
            "Institución",
            "Interno",
            "Autorizado por",
            "Placa",
            "Personas",
            "Motivo",
        ],
        rows,
        ";",
        "cp1252",
    )
    # Izalco: ',', UTF-8 with BOM, given names and surnames apart, document type.
    rows = []
    for v in by["IZA"]:
        if v.name_written is not None:
            nombres, apellidos = v.name_written, ""
        else:
            nombres, apellidos = v.person.given, v.person.sur
        doc = _doc(v)
        dtype = "" if not doc else (v.person.doc_type if v.person else "DUI")
        if v.calidad.startswith("Abogad") and r.random() < 0.7:
            dtype, doc = "Carnet de abogado", f"{r.randrange(2000, 19999)}"
        t_out = v.t_out
        rows.append(
            [
                v.rid,
                "IZA",
                v.book,
                v.folio,
                v.line,
                f"{v.t_in:%d/%m/%Y}",
                _hm(v.t_in),
                "" if t_out is None else f"{t_out:%d/%m/%Y}",
                _hm(t_out),
                nombres,
                apellidos,
                dtype,
                doc,
                v.calidad,
                v.inst,
                v.inmate,
                v.escort,
                v.party,
                v.minors,
                v.plate,
                v.motivo,
            ]
        )
    paths["visits_IZA"] = _csv(
        out / "registro_visitas_izalco.csv",
        [
            "id_registro",
            "centro_penal",
            "libro_registro",
            "pagina",
            "renglon",
            "fecha_ingreso",
            "hora_entrada",
            "fecha_salida",
            "hora_salida",
            "nombres",
            "apellidos",
            "tipo_documento",
            "numero_documento",
            "tipo_visitante",
            "institucion",
            "id_interno",
            "acompanado_por",
            "num_personas",
            "num_menores",
            "placa",
            "motivo",
        ],
        rows,
        ",",
        "utf-8-sig",
    )
    # Chalatenango: Excel's "Unicode text" (UTF-16, tabs), two gates, two-digit years,
    # names surname first; an exit date because the guards' shifts end the next day.
    rows = [
        [
            v.rid,
            "CHA",
            v.checkpoint,
            v.book,
            v.folio,
            v.line,
            f"{v.t_in:%d/%m/%y}",
            f"{v.t_in.hour}:{v.t_in:%M}",
            "" if v.t_out is None else f"{v.t_out:%d/%m/%y}",
            "" if v.t_out is None else f"{v.t_out.hour}:{v.t_out:%M}",
            _name(v, "surname_first"),
            _doc(v),
            v.calidad.upper(),
            v.inmate,
            v.party,
            v.plate,
        ]
        for v in by["CHA"]
    ]
    for v in by["CHA"]:
        if v.name_written is None:
            v.tags.add("surname_first_names")
    paths["visits_CHA"] = _csv(
        out / "visitas_chalatenango.txt",
        [
            "CORRELATIVO",
            "CENTRO PENAL",
            "GARITA",
            "LIBRO",
            "FOLIO",
            "RENGLON",
            "FECHA",
            "HORA_ENTRADA",
            "FECHA_SALIDA",
            "HORA_SALIDA",
            "VISITANTE",
            "DOCUMENTO",
            "CALIDAD",
            "INTERNO",
            "PERSONAS",
            "PLACA",
        ],
        rows,
        "\t",
        "utf-16",
    )
    # Quezaltepeque: '|', 12-hour clock, day and month unpadded, DUIs with or without hyphen.
    rows = []
    for v in by["QUE"]:
        doc = _doc(v)
        dtype = v.person.doc_type if v.person and doc else ""
        if dtype == "DUI" and r.random() < 0.3:
            doc = doc.replace("-", "")
            v.tags.add("dui_without_hyphen")
        t_in = _ampm(v.t_in)
        if v.time_written:  # rounded to the hour
            t_in = _ampm(v.t_in.replace(minute=0))
        rows.append(
            [
                v.rid,
                "QUE",
                v.book,
                v.folio,
                v.line,
                f"{v.t_in.day}/{v.t_in.month}/{v.t_in.year}",
                t_in,
                _ampm(v.t_out),
                _name(v, "title"),
                doc,
                dtype,
                v.calidad,
                v.inmate,
                v.escort,
                v.plate,
                v.party,
                f"Ingresa con {v.minors} menor(es) de edad" if v.minors else "",
            ]
        )
    paths["visits_QUE"] = _csv(
        out / "libro_visitas_quezaltepeque.csv",
        [
            "Correlativo",
            "Centro Penal",
            "Libro",
            "Folio",
            "Linea",
            "Fecha",
            "Hora ingreso",
            "Hora salida",
            "Nombre completo",
            "Documento",
            "Tipo documento",
            "Calidad",
            "Privado de libertad",
            "Autorizado por",
            "Placa",
            "Personas",
            "Observaciones",
        ],
        rows,
        "|",
    )
    # Ciudad Barrios: ISO date-times, capitals, appointments (cita), no party size.
    rows = [
        [
            v.rid,
            "CBA",
            v.book,
            v.folio,
            v.line,
            f"{v.t_in:%Y-%m-%d %H:%M}",
            "" if v.t_out is None else f"{v.t_out:%Y-%m-%d %H:%M}",
            _name(v, "upper"),
            _doc(v),
            v.calidad.upper(),
            v.inmate,
            v.motivo,
            v.cita,
            v.plate,
        ]
        for v in by["CBA"]
    ]
    paths["visits_CBA"] = _csv(
        out / "ingresos_ciudad_barrios.csv",
        [
            "correlativo",
            "centro_penal",
            "libro",
            "folio",
            "linea",
            "fecha_hora_ingreso",
            "fecha_hora_salida",
            "visitante",
            "dui",
            "calidad",
            "interno",
            "motivo",
            "cita",
            "placa",
        ],
        rows,
    )
    return paths


def write_world(out: Path, seed: int = 11, months: int = 12) -> dict[str, Path]:
    """Write the world's CSV files, ``truth.json`` and ``lookalikes.json`` into ``out``.

    Returns the paths written, by name, with ``"truth"`` and ``"lookalikes"``.
    """
    root = Path(out)
    out = root / "logs"  # what a user ingests; the answers stay beside it
    out.mkdir(parents=True, exist_ok=True)
    w = World(seed, months)
    w.build_inmates()
    w.plant_lookalike_people()
    w.family()
    w.professionals()
    w.officials()
    w.judges()
    w.services()
    w.cha_staff()
    w.icrc()
    w.director_nights()
    w.other_visit_anomalies()
    w.outage_and_fumigation()
    w.books()
    w.number()
    w.gate()  # before the books' losses: the gate read what the removed book wrote
    w.book_anomalies()
    w.number()
    w.build_transfers()
    paths = write_visits(w, out)
    w.resolve()
    w.lookalike_classes()

    paths["facilities"] = _csv(
        out / "centros.csv",
        ["Código", "Nombre", "Tipo", "Nivel Seguridad", "Horario Visitas", "Horario por calidad"],
        [[c, *v] for c, v in FACILITIES.items()],
        ";",
        "cp1252",
    )
    paths["inmates"] = _csv(
        out / "censo_internos.csv",
        ["Interno", "Nombre", "Pandilla", "Rango", "Centro Penal"],
        [[i, x["name"], x["gang"], x["rank"], x["fac"]] for i, x in w.inmates.items()],
    )
    reg = []
    for (fac, cp), books in w.book_of.items():
        lines, folios = BOOKS[(fac, cp)][:2]
        for k, b in enumerate(books):
            if (fac, b["label"]) in w.unregistered:
                continue
            last = k == len(books) - 1
            status = w.book_status.get((fac, b["label"]), "En uso" if last else "Archivado")
            reg.append(
                [
                    b["label"],
                    fac,
                    cp or "Garita Principal",
                    f"{b['opened']:%d/%m/%Y}",
                    "" if last or b["closed"] is None else f"{b['closed']:%d/%m/%Y}",
                    1,
                    folios,
                    status,
                ]
            )
    paths["logbooks"] = _csv(
        out / "registro_libros.csv",
        [
            "Libro",
            "Centro Penal",
            "Garita",
            "Fecha Apertura",
            "Fecha Cierre",
            "Folio Inicial",
            "Folio Final",
            "Estado",
        ],
        reg,
        ";",
        "cp1252",
    )
    med = [t for t in w.transfers if t.register == "medical"]
    gen = [t for t in w.transfers if t.register == "general"]
    paths["transfers_medical"] = _csv(
        out / "traslados_unidad_medica.csv",
        [
            "Correlativo",
            "Interno",
            "Centro Origen",
            "Centro Destino",
            "Fecha Traslado",
            "Motivo",
            "Autorizado por",
            "Visto Bueno Médico",
            "Fecha Retorno",
        ],
        [
            [
                t.rid,
                t.inmate,
                t.origin,
                t.dest,
                f"{t.at:%d/%m/%Y %H:%M}",
                t.motivo,
                t.by,
                t.approval,
                "" if t.returned is None else f"{t.returned:%d/%m/%Y}",
            ]
            for t in med
        ],
        ";",
        "cp1252",
    )
    paths["transfers_general"] = _csv(
        out / "traslados_centros.csv",
        [
            "correlativo",
            "id_interno",
            "origen",
            "destino",
            "fecha_traslado",
            "motivo",
            "autorizado_por",
            "aprobacion_medica",
        ],
        [
            [t.rid, t.inmate, t.origin, t.dest, f"{t.at:%Y-%m-%d}", t.motivo, t.by, t.approval]
            for t in gen
        ],
    )
    # The gate at Zacatecoluca: the access-control export, the plate camera, zones, leaves.
    people = [e for e in w.events if not e.plate]
    paths["events_badges"] = _csv(
        out / "marcaciones_MSZ.csv",
        [
            "ID",
            "Centro",
            "Fecha",
            "Hora",
            "No. Tarjeta",
            "Nombre",
            "Apellido",
            "No. Personal",
            "Nombre del dispositivo",
            "Estado de E/S",
            "Descripción del evento",
        ],
        [
            [
                e.rid,
                "MSZ",
                f"{e.at:%d/%m/%Y}",
                f"{e.at:%H:%M:%S}",
                e.badge,
                e.given,
                e.sur,
                e.doc,
                e.reader,
                e.direction,
                e.result,
            ]
            for e in people
        ],
    )
    paths["events_plates"] = _csv(
        out / "lecturas_placas_MSZ.csv",
        ["correlativo", "centro_penal", "fecha_hora", "placa", "lector", "sentido"],
        [
            [e.rid, "MSZ", f"{e.at:%Y-%m-%d %H:%M:%S}", e.plate, e.reader, e.direction.upper()]
            for e in w.events
            if e.plate
        ],
        ";",
    )
    paths["zones"] = _csv(
        out / "zonas_MSZ.csv",
        ["Centro", "Zona", "Dentro de", "Lector", "Estricta"],
        [
            ["MSZ", "Perímetro", "", "Garita Principal Entrada", "No"],
            ["MSZ", "Perímetro", "", "Garita Principal Salida", "No"],
            ["MSZ", "Perímetro", "", "Portón Vehicular", "No"],
            ["MSZ", "Sector de Máxima", "Perímetro", "Sector Máxima", "Sí"],
        ],
    )
    paths["absences"] = _csv(
        out / "licencias_personal_MSZ.csv",
        [
            "Correlativo",
            "Empleado",
            "Tarjeta",
            "DUI",
            "Centro",
            "Licencia desde",
            "Licencia hasta",
            "Motivo ausencia",
        ],
        [
            [
                f"LIC-{n:03d}",
                a["g"].full,
                a["badge"],
                a["g"].doc,
                "MSZ",
                f"{a['s']:%d/%m/%Y}",
                f"{a['e']:%d/%m/%Y}",
                a["why"],
            ]
            for n, a in enumerate(w.absences, 1)
        ],
        ";",
    )

    paths["truth"] = root / "truth.json"
    paths["truth"].write_text(json.dumps(w.truth, ensure_ascii=False, indent=1))
    paths["lookalikes"] = root / "lookalikes.json"
    paths["lookalikes"].write_text(json.dumps(w.looks, ensure_ascii=False, indent=1))
    return paths


if __name__ == "__main__":
    import sys

    written = write_world(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:]))
    for name, path in written.items():
        print(f"{name}: {path}")
