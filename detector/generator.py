"""Seeded synthetic prison logs of all five kinds, with planted anomalies and a truth file.

The data is fictional. Normal traffic follows each role's routine (staff shifts, family
visiting days, lawyers and contractors on weekdays, occasional officials); the planted
anomalies are listed in ``truth.json`` with the records, logbook ranges or periods
that show them, so that rules and scoring can be measured against them.
"""

from __future__ import annotations

import csv
import json
import random
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path

import holidays

FACILITIES = [
    # code, name, kind, security, visiting hours, gangs held, family visiting weekdays
    (
        "ZAC",
        "Centro Penal de Máxima Seguridad de Zacatecoluca",
        "centro penal",
        "máxima",
        "08:00-15:00",
        ("MS13", "B18S", "B18R"),
        (5,),
    ),
    ("IZA", "Centro Penal de Izalco", "centro penal", "alta", "08:00-15:00", ("B18S",), (3, 5, 6)),
    (
        "CIU",
        "Centro Penal de Ciudad Barrios",
        "centro penal",
        "alta",
        "08:00-15:00",
        ("MS13",),
        (3, 5, 6),
    ),
    (
        "QZT",
        "Centro Penal de Quezaltepeque",
        "centro penal",
        "media",
        "08:00-15:00",
        ("B18R",),
        (3, 5, 6),
    ),
    ("MAR", "Centro Penal La Esperanza", "centro penal", "media", "08:00-15:00", (), (3, 5, 6)),
    ("HRO", "Hospital Nacional Rosales", "hospital", "", "", (), ()),
]
SPANISH_LAYOUT = {"ZAC", "IZA", "CIU"}
# A prison hospital: a medical destination although its type says "centro penal".
PRISON_HOSPITAL = ("HPN", "Hospital Penitenciario Nacional", "centro penal", "media", "")
# Hours some facilities declare per role beside their visiting hours (others are learned).
ROLE_HOURS = {"ZAC": "police 00:00-24:00; contractor Mon-Fri 06:00-11:00"}
# Prisons where families and lawyers use their own gate, apart from staff.
VISITOR_GATE = {"ZAC": "Garita de Visitas", "IZA": "Garita de Visitas"}
LINES_PER_PAGE = 25
FIRST_NAMES = [
    "José",
    "María",
    "Juan",
    "Ana",
    "Carlos",
    "Rosa",
    "Luis",
    "Carmen",
    "Jorge",
    "Marta",
    "Miguel",
    "Sonia",
    "Mario",
    "Gloria",
    "Óscar",
    "Reina",
    "Julio",
    "Dolores",
    "René",
    "Xiomara",
    "Ernesto",
    "Blanca",
    "Wilfredo",
    "Iris",
    "Nelson",
    "Patricia",
    "Raúl",
    "Teresa",
    "Édgar",
    "Lorena",
]
SURNAMES = [
    "Hernández",
    "López",
    "Martínez",
    "González",
    "Pérez",
    "Rodríguez",
    "Flores",
    "Ramírez",
    "Cruz",
    "Rivera",
    "Mejía",
    "Ayala",
    "Romero",
    "Castillo",
    "Aguilar",
    "Guevara",
    "Portillo",
    "Argueta",
    "Orellana",
    "Quintanilla",
    "Chávez",
    "Alvarado",
    "Menjívar",
    "Rosales",
    "Serrano",
    "Zelaya",
    "Ventura",
    "Escobar",
    "Molina",
    "Peña",
]
PLACEHOLDERS = ["Acompañante", "N/I", "Encapuchado", "", "No identificado", "S/N"]
ROLE_ES = {
    "police": "Policía",
    "ngo": "ONG",
    "family": "Familiar",
    "lawyer": "Abogado",
    "official": "Funcionario",
    "staff": "Custodio",
    "contractor": "Contratista",
}
IDTYPE_ES = {
    "DUI": "DUI",
    "bar_card": "Carnet de abogado",
    "badge": "Carnet institucional",
    "passport": "Pasaporte",
    "": "",
}

VISIT_FIELDS = [
    "record_id",
    "facility",
    "checkpoint",
    "logbook",
    "page",
    "line",
    "entered_at",
    "exited_at",
    "name",
    "id_type",
    "id_number",
    "role",
    "organization",
    "escorted_by",
    "inmate_id",
    "purpose",
    "vehicle_plate",
    "party_size",
    "party_id",
]
SPANISH_HEADERS = [
    "Correlativo",
    "Centro Penal",
    "Garita",
    "Libro",
    "Folio",
    "Línea",
    "Fecha",
    "Hora Ingreso",
    "Fecha Salida",
    "Hora Salida",
    "Nombre",
    "Tipo Documento",
    "Documento",
    "Calidad",
    "Institución",
    "Autorizado por",
    "Interno",
    "Motivo",
    "Placa",
    "Personas",
    "Grupo",
]


def dui_check_digit(digits: str) -> int:
    """Check digit of a Salvadoran DUI: (10 - sum(d_i * w_i) mod 10) mod 10, w = 9..2."""
    total = sum(int(d) * w for d, w in zip(digits, range(9, 1, -1), strict=True))
    return (10 - total % 10) % 10


def make_dui(rng: random.Random, valid: bool = True) -> str:
    digits = f"{rng.randrange(10**8):08d}"
    check = dui_check_digit(digits)
    if not valid:
        check = (check + rng.randrange(1, 10)) % 10
    return f"{digits}-{check}"


@dataclass
class Person:
    name: str
    id_type: str
    id_number: str
    role: str
    organization: str = ""
    plate: str = ""


@dataclass(eq=False)
class Visit:
    facility: str
    entered_at: datetime
    exited_at: datetime | None
    person: Person
    checkpoint: str = "Garita Principal"
    inmate_id: str = ""
    purpose: str = ""
    escorted_by: str = ""
    party_size: int = 1
    party_id: str = ""
    vehicle_plate: str = ""
    name_override: str | None = None
    id_override: tuple[str, str] | None = None
    anomaly: str | None = None
    record_id: str = ""
    logbook: str = ""
    page: int = 0
    line: int = 0


@dataclass
class World:
    rng: random.Random
    start: date
    end: date
    visits: list[Visit] = field(default_factory=list)
    inmates: list[dict] = field(default_factory=list)
    transfers: list[dict] = field(default_factory=list)
    logbooks: list[dict] = field(default_factory=list)
    truth: list[dict] = field(default_factory=list)
    # The perimeter gate's reader events and the zones (with ``build_events``).
    events: list[dict] = field(default_factory=list)
    zones: list[dict] = field(default_factory=list)
    absences: list[dict] = field(default_factory=list)  # the personnel roster's leaves

    def person(self, role: str, organization: str = "") -> Person:
        rng = self.rng
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)} {rng.choice(SURNAMES)}"
        id_type = {"lawyer": "bar_card", "staff": "badge"}.get(role, "DUI")
        number = (
            make_dui(rng)
            if id_type == "DUI"
            else f"{'AB' if role == 'lawyer' else 'DGCP'}-{rng.randrange(10**5):05d}"
        )
        plate = (
            f"P{rng.randrange(100, 999)}-{rng.randrange(100, 999)}" if role == "contractor" else ""
        )
        return Person(name, id_type, number, role, organization, plate)

    def days(self):
        d = self.start
        while d < self.end:
            yield d
            d += timedelta(days=1)

    def plant(self, category: str, kind: str, description: str, **evidence) -> dict:
        item = {
            "id": f"A{len(self.truth) + 1:03d}",
            "category": category,
            "type": kind,
            "description": description,
            **evidence,
        }
        self.truth.append(item)
        return item


def _at(d: date, hour: float) -> datetime:
    return datetime.combine(d, time()) + timedelta(minutes=round(hour * 60))


# Family visits were suspended at every prison for three months (a regime change: a family
# visit then is out of place though nothing else is, and the visitors' gate falls silent).
SUSPENSION_DAYS = (105, 195)


def _suspended(w: World, d: date) -> bool:
    first, last = (w.start + timedelta(days=n) for n in SUSPENSION_DAYS)
    return first <= d < last


_SV_HOLIDAYS = holidays.country_holidays("SV")


def _holiday(d: date) -> bool:
    """El Salvador's public holidays (Holy Week included): families, lawyers and
    contractors stay away, staff shifts go on."""
    return d in _SV_HOLIDAYS


def build_world(
    seed: int = 7, start: date = date(2019, 6, 1), months: int = 6, possible_schedules: bool = False
) -> World:
    """Normal traffic for every facility, then the planted anomalies."""
    if months < 6:
        # removed books in the fourth and fifth months, a suspension from day 105...
        raise ValueError("the world needs at least 6 months to plant every anomaly")
    rng = random.Random(seed)
    end_month = start.month - 1 + months
    end = date(start.year + end_month // 12, end_month % 12 + 1, 1)
    w = World(rng, start, end)
    prisons = [f for f in FACILITIES if f[2] == "centro penal"]
    official_org = "Dirección General de Centros Penales"
    officials = [w.person("official", official_org) for _ in range(4)]
    lawyers = [w.person("lawyer", "Bufete privado") for _ in range(25)]
    contractors = [
        w.person(
            "contractor",
            rng.choice(["Alimentos S.A.", "Construcciones R&M", "Mantenimiento Total"]),
        )
        for _ in range(12)
    ]
    for code, _, _, _, _, gangs, family_days in prisons:
        inmates = []
        for n in range(1, 241):
            gang = gangs[n % len(gangs)] if gangs else ""
            leader = bool(gangs) and (n % 12 < 3 if code == "ZAC" else n % 60 == 0)
            inmates.append(
                {
                    "inmate_id": f"PDL-{code}-{n:04d}",
                    "name": w.person("other").name,
                    "gang": gang,
                    "rank": "leader" if leader else ("member" if gang else ""),
                    "facility": code,
                }
            )
        w.inmates.extend(inmates)
        relatives = {
            i["inmate_id"]: [w.person("family") for _ in range(rng.randint(1, 3))] for i in inmates
        }
        staff = [w.person("staff", "DGCP") for _ in range(30)]
        for d in w.days():
            for shift_hour, back in ((6.75, 19.0), (18.75, 31.0)):
                for s in rng.sample(staff, 8):
                    t = shift_hour + rng.uniform(0, 0.5)
                    w.visits.append(
                        Visit(
                            code, _at(d, t), _at(d, back + rng.uniform(0, 0.4)), s, purpose="Turno"
                        )
                    )
            if _holiday(d):
                continue
            gate = VISITOR_GATE.get(code, "Garita Principal")
            if d.weekday() in family_days and not _suspended(w, d):
                for inmate in rng.sample(inmates, 40):
                    rel = rng.choice(relatives[inmate["inmate_id"]])
                    t = rng.triangular(8.0, 13.5, 9.5)
                    # Look-alike: one adult named for a party with children (not hidden people).
                    minors = rng.randint(1, 2) if rng.random() < 0.05 else 0
                    w.visits.append(
                        Visit(
                            code,
                            _at(d, t),
                            _at(d, t + rng.uniform(0.5, 2.0)),
                            rel,
                            checkpoint=gate,
                            inmate_id=inmate["inmate_id"],
                            purpose=f"Visita familiar con {minors} menores"
                            if minors
                            else "Visita familiar",
                            party_size=1 + minors,
                        )
                    )
                if code in PARISH_VAN:
                    _parish_van(w, code, d, gate, inmates)
            if d.weekday() < 5:
                for _ in range(rng.randint(2, 5)):
                    t = rng.triangular(9.0, 14.5, 10.5)
                    w.visits.append(
                        Visit(
                            code,
                            _at(d, t),
                            _at(d, t + rng.uniform(0.5, 1.5)),
                            rng.choice(lawyers),
                            checkpoint=gate,
                            inmate_id=rng.choice(inmates)["inmate_id"],
                            purpose="Entrevista con cliente",
                        )
                    )
                for _ in range(rng.randint(1, 2)):
                    c = rng.choice(contractors)
                    # Look-alike: deliveries come early, before visiting hours, every day.
                    t = rng.triangular(6.25, 10.0, 6.9)
                    w.visits.append(
                        Visit(
                            code,
                            _at(d, t),
                            _at(d, t + rng.uniform(1.0, 3.0)),
                            c,
                            checkpoint="Acceso Vehicular",
                            vehicle_plate=c.plate,
                            purpose="Entrega de suministros",
                        )
                    )
                if rng.random() < 0.25:
                    t = rng.triangular(9.0, 13.5, 10.5)
                    w.visits.append(
                        Visit(
                            code,
                            _at(d, t),
                            _at(d, t + rng.uniform(1.0, 2.0)),
                            rng.choice(officials),
                            purpose="Inspección",
                        )
                    )
    _routine_outside_hours(w, prisons)
    _normal_transfers(w, prisons)
    _plant_visit_anomalies(w, officials)
    _plant_behaviour(w, officials)
    _plant_transfer_anomalies(w)
    if possible_schedules:
        _possible_schedules(w)
    _number_lines_and_plant_gaps(w)
    return w


def _possible_schedules(w: World) -> None:
    """Drop the routine visits that would put one person at two prisons within an hour.
    The pools of lawyers and contractors are drawn per prison and per day independently,
    so the books alone can hold a lawyer at two prisons minutes apart; a world with a gate
    stream beside its books (``build_events``) cannot, or its books would contradict its
    gates where nothing was planted. Planted visits are never dropped."""
    planted = {id(v) for t in w.truth for v in t.get("visits", [])}
    by_person: dict[int, list[Visit]] = {}
    for v in w.visits:
        if v.person.id_number:
            by_person.setdefault(id(v.person), []).append(v)
    dropped: set[int] = set()
    for visits in by_person.values():
        last = None
        for v in sorted(visits, key=lambda v: v.entered_at):
            busy_until = last and (last.exited_at or last.entered_at) + timedelta(hours=1)
            clash = last and v.facility != last.facility and v.entered_at < busy_until
            if clash and id(v) not in planted:
                dropped.add(id(v))
                continue
            if clash and id(last) not in planted:  # a planted visit keeps its place
                dropped.add(id(last))
            last = v
    w.visits = [v for v in w.visits if id(v) not in dropped]


# A parish minibus brings families to these prisons on visiting days: one plate, many
# named passengers arriving together (not one vehicle lent to several drivers).
PARISH_VAN = {"QZT": "M123-456", "MAR": "M654-321"}


def _parish_van(w: World, code: str, d: date, gate: str, inmates: list[dict]) -> None:
    rng = w.rng
    t = rng.uniform(8.0, 8.5)
    for k in range(rng.randint(5, 9)):
        w.visits.append(
            Visit(
                code,
                _at(d, t + k / 60),
                _at(d, t + 2.5),
                w.person("family"),
                checkpoint=gate,
                inmate_id=rng.choice(inmates)["inmate_id"],
                purpose="Visita familiar (transporte parroquial)",
                vehicle_plate=PARISH_VAN[code],
            )
        )


def _routine_outside_hours(w: World, prisons) -> None:
    """Harmless traffic real prisons have that naive rules flag: police bringing detainees
    at night, the sentence-enforcement judge every week (who interviews leaders too), the
    ombudsman's monthly inspection and the chaplain's Sunday mass."""
    rng = w.rng
    police = [w.person("police", "Policía Nacional Civil") for _ in range(10)]
    for p in police:
        p.id_type, p.id_number = "badge", f"PNC-{rng.randrange(10**5):05d}"
    for code, *_ in prisons:
        judge = w.person("official", "Juzgado de Vigilancia Penitenciaria")
        ombudsman = w.person("official", "Procuraduría para la Defensa de los Derechos Humanos")
        chaplain = w.person("other", "Pastoral Penitenciaria")
        inmates = [i for i in w.inmates if i["facility"] == code]
        for d in w.days():
            if rng.random() < 0.3:
                t = rng.choice([rng.uniform(20.0, 24.0), rng.uniform(0.0, 4.0)])
                w.visits.append(
                    Visit(
                        code,
                        _at(d, t),
                        _at(d, t + rng.uniform(0.3, 1.0)),
                        rng.choice(police),
                        purpose="Ingreso de detenido",
                    )
                )
            if d.weekday() == 1 and not _holiday(d):
                t = rng.uniform(9.0, 9.5)
                for k, inmate in enumerate(rng.sample(inmates, rng.randint(3, 5))):
                    w.visits.append(
                        Visit(
                            code,
                            _at(d, t + k * 0.5),
                            _at(d, t + k * 0.5 + 0.4),
                            judge,
                            inmate_id=inmate["inmate_id"],
                            purpose="Audiencia de vigilancia penitenciaria",
                        )
                    )
            if d.day == 10 and d.weekday() < 5:
                t = rng.uniform(9.0, 11.0)
                w.visits.append(
                    Visit(code, _at(d, t), _at(d, t + 3), ombudsman, purpose="Inspección")
                )
            if d.weekday() == 6:
                t = rng.uniform(7.5, 8.0)
                w.visits.append(
                    Visit(code, _at(d, t), _at(d, t + 1.5), chaplain, purpose="Misa dominical")
                )


def _normal_transfers(w: World, prisons) -> None:
    rng = w.rng
    codes = [p[0] for p in prisons]
    for n in range(80):
        inmate = rng.choice([i for i in w.inmates if i["rank"] != "leader"])
        day = w.start + timedelta(days=rng.randrange((w.end - w.start).days - 10))
        when = _at(day, rng.uniform(7, 16))
        if n % 3 == 0:
            hospital = "HRO" if n % 2 else PRISON_HOSPITAL[0]
            back = when + timedelta(days=rng.randint(1, 5))
            w.transfers.append(
                _transfer(
                    w,
                    inmate,
                    hospital,
                    when,
                    "Traslado médico",
                    f"Dr. {rng.choice(SURNAMES)}, Director Médico, ref. DM-{n:03d}",
                    back,
                )
            )
            if n % 2:
                # Look-alike: the return leg logged as a transfer of its own, with a
                # "medical" reason and no approval (it needs none).
                w.transfers.append(
                    _transfer(
                        w,
                        {**inmate, "facility": hospital},
                        inmate["facility"],
                        back,
                        "Retorno de hospital (alta médica)",
                        "",
                        None,
                    )
                )
        else:
            dest = rng.choice([c for c in codes if c != inmate["facility"]])
            w.transfers.append(
                _transfer(
                    w,
                    inmate,
                    dest,
                    when,
                    rng.choice(["Seguridad", "Audiencia judicial", "Reubicación"]),
                    "",
                    None,
                )
            )


def _transfer(
    w: World,
    inmate: dict,
    dest: str,
    when: datetime,
    reason: str,
    approval: str,
    returned: datetime | None,
) -> dict:
    rec = {
        "record_id": f"TR-{len(w.transfers) + 1:04d}",
        "inmate_id": inmate["inmate_id"],
        "from_facility": inmate["facility"],
        "to_facility": dest,
        "transferred_at": when,
        "reason": reason,
        "authorized_by": "Dirección General de Centros Penales",
        "medical_approval": approval,
        "returned_at": returned,
    }
    return rec


def _leaders(w: World, facility: str | None = None, gang: str | None = None) -> list[dict]:
    return [
        i
        for i in w.inmates
        if i["rank"] == "leader"
        and (facility is None or i["facility"] == facility)
        and (gang is None or i["gang"] == gang)
    ]


def _plant_visit_anomalies(w: World, officials: list[Person]) -> None:
    rng = w.rng
    director = Person(
        "Óscar Lemus Marroquín",
        "DUI",
        make_dui(rng),
        "official",
        "Dirección General de Centros Penales",
    )

    def some_day(weekday: int | None = None) -> date:
        while True:
            d = w.start + timedelta(days=rng.randrange((w.end - w.start).days))
            if not _holiday(d) and (weekday is None or d.weekday() == weekday):
                return d

    # The seed pattern: the director at night with masked, unidentified companions, meeting
    # leaders of rival gangs.
    for n, facility in enumerate(["ZAC", "ZAC", "CIU", "ZAC", "IZA"]):
        d = some_day()
        t = rng.uniform(20.5, 23.0)
        leaders = _leaders(w, facility)
        gangs = sorted({ld["gang"] for ld in leaders})
        met = [rng.choice(_leaders(w, facility, g)) for g in gangs[:2]]
        party = f"G-{facility}-{n + 1}"
        lead = Visit(
            facility,
            _at(d, t),
            _at(d, t + rng.uniform(1.0, 2.5)),
            director,
            inmate_id=met[0]["inmate_id"],
            purpose="Reunión",
            party_id=party,
            party_size=1,
            anomaly="official_night",
        )
        w.visits.append(lead)
        ids = [lead]
        for k in range(rng.randint(2, 3)):
            companion = Visit(
                facility,
                lead.entered_at + timedelta(minutes=k + 1),
                lead.exited_at,
                Person("", "", "", "other"),
                escorted_by=director.name,
                inmate_id=met[-1]["inmate_id"],
                party_id=party,
                name_override=rng.choice(PLACEHOLDERS),
                id_override=("", ""),
                anomaly="masked_companion",
            )
            w.visits.append(companion)
            ids.append(companion)
        w.plant(
            "unidentified_entrant",
            "masked_companions_of_official",
            f"{director.name} entered {facility} at night with {len(ids) - 1} unidentified "
            "companions",
            facility=facility,
            visits=ids,
        )
        w.plant(
            "visit_pattern",
            "official_at_night",
            f"{director.name} and his companions entered {facility} at night, long after the "
            "hours officials keep",
            facility=facility,
            visits=list(ids),
        )
        if len(gangs) > 1:
            w.plant(
                "visit_pattern",
                "official_meets_rival_leaders",
                f"{director.name} met leaders of {', '.join(gangs[:2])} at night",
                facility=facility,
                visits=[lead],
                inmates=[m["inmate_id"] for m in met],
            )
            # the second gang's leader is met on the same night in the same visit
            ids[-1].inmate_id = met[1]["inmate_id"]
    # Placeholders and blank names in ordinary family visits.
    for facility, placeholder in (("IZA", "N/I"), ("QZT", "NN"), ("MAR", "")):
        v = _pick(w, facility, "family")
        v.name_override, v.anomaly = placeholder, "placeholder_name"
        w.plant(
            "unidentified_entrant",
            "placeholder_name",
            f"family visitor written as '{placeholder}'",
            facility=facility,
            visits=[v],
        )
    for facility in ("CIU", "QZT", "MAR", "IZA", "ZAC"):
        v = _pick(w, facility, "family")
        v.id_override = ("DUI", make_dui(rng, valid=False))
        w.plant(
            "unidentified_entrant",
            "invalid_dui",
            "DUI with a wrong check digit",
            facility=facility,
            visits=[v],
        )
    for facility in ("IZA", "MAR", "QZT"):
        v = _pick(w, facility, "family")
        v.party_size = rng.randint(3, 5)
        w.plant(
            "unidentified_entrant",
            "party_larger_than_names",
            f"one named line stands for {v.party_size} people",
            facility=facility,
            visits=[v],
        )
    for facility in ("CIU", "QZT"):
        v = _pick(w, facility, "lawyer")
        v.id_override = ("", "")
        w.plant(
            "unidentified_entrant",
            "missing_document",
            "lawyer entered with no document",
            facility=facility,
            visits=[v],
        )
    # Out of hours, no exit, implausible stays.
    for facility in ("IZA", "CIU", "MAR", "QZT"):
        v = _pick(w, facility, "family")
        v.entered_at = v.entered_at.replace(hour=19, minute=rng.randrange(10, 50))
        v.exited_at = v.entered_at + timedelta(hours=1)
        w.plant(
            "visit_pattern",
            "outside_visiting_hours",
            "family visit at 19h",
            facility=facility,
            visits=[v],
        )
    for facility in ("CIU", "MAR", "QZT"):
        v = _pick(w, facility, "family")
        v.exited_at = None
        w.plant(
            "visit_pattern", "no_exit", "visitor never logged out", facility=facility, visits=[v]
        )
    for facility in ("IZA", "MAR"):
        v = _pick(w, facility, "lawyer")
        v.exited_at = v.entered_at + timedelta(hours=rng.uniform(13, 16))
        w.plant(
            "visit_pattern",
            "implausible_stay",
            "lawyer stayed over 13 hours",
            facility=facility,
            visits=[v],
        )
    # A daytime official meeting rival leaders at ZAC (two visits within a week).
    d = some_day(weekday=2)
    ms, b18 = _leaders(w, "ZAC", "MS13")[0], _leaders(w, "ZAC", "B18S")[0]
    pair = []
    for k, inmate in enumerate((ms, b18)):
        t = 10 + k * 2
        v = Visit(
            "ZAC",
            _at(d + timedelta(days=k * 2), t),
            _at(d + timedelta(days=k * 2), t + 1),
            officials[0],
            inmate_id=inmate["inmate_id"],
            purpose="Inspección",
        )
        w.visits.append(v)
        pair.append(v)
    w.plant(
        "visit_pattern",
        "official_meets_rival_leaders",
        f"{officials[0].name} met leaders of MS13 and B18S within a week",
        facility="ZAC",
        visits=pair,
        inmates=[ms["inmate_id"], b18["inmate_id"]],
    )
    # Vehicles: one plate under several people; a plate with nobody logged.
    d = some_day(weekday=1)
    plate = "P777-101"
    shared = []
    for k in range(3):
        person = w.person("contractor", "Transportes El Rápido")
        v = Visit(
            "MAR",
            _at(d + timedelta(days=k), 9 + k),
            _at(d + timedelta(days=k), 11 + k),
            person,
            checkpoint="Acceso Vehicular",
            vehicle_plate=plate,
            purpose="Entrega",
        )
        w.visits.append(v)
        shared.append(v)
    w.plant(
        "vehicle",
        "plate_many_drivers",
        f"plate {plate} logged under 3 different people",
        facility="MAR",
        visits=shared,
    )
    for facility in ("IZA", "QZT"):
        d = some_day(weekday=3)
        v = Visit(
            facility,
            _at(d, 10.5),
            _at(d, 11.5),
            Person("", "", "", "contractor"),
            checkpoint="Acceso Vehicular",
            vehicle_plate=f"P{rng.randrange(100, 999)}-000",
            name_override="",
            id_override=("", ""),
            purpose="Entrega",
        )
        w.visits.append(v)
        w.plant(
            "vehicle",
            "plate_without_person",
            "a vehicle entered with no person logged",
            facility=facility,
            visits=[v],
        )
        w.plant(
            "unidentified_entrant",
            "driver_not_identified",
            "whoever drove the vehicle in was not written down (no name, no document)",
            facility=facility,
            visits=[v],
        )


def _plant_behaviour(w: World, officials: list[Person]) -> None:
    """Visits that break no rule but are out of place in their context (for the scoring)."""
    rng = w.rng
    prisons = {f[0]: f for f in FACILITIES if f[2] == "centro penal"}

    def day_where(facility: str, ok) -> date:
        while True:
            d = w.start + timedelta(days=rng.randrange(7, (w.end - w.start).days - 7))
            if ok(d) and not _holiday(d) and not _suspended(w, d):
                return d

    def family(facility: str, d: date, inmate: str, stay: float = 1.0, hour=None) -> Visit:
        t = hour if hour is not None else rng.uniform(9.0, 12.0)
        v = Visit(
            facility,
            _at(d, t),
            _at(d, t + stay),
            w.person("family"),
            inmate_id=inmate,
            purpose="Visita familiar",
            anomaly="behaviour",
        )
        w.visits.append(v)
        return v

    def inmate_of(facility: str) -> str:
        return rng.choice([i for i in w.inmates if i["facility"] == facility])["inmate_id"]

    # A family visit on a weekday the prison never receives families.
    for facility in ("ZAC", "ZAC", "IZA", "CIU"):
        days = prisons[facility][6]
        d = day_where(facility, lambda d, days=days: d.weekday() not in days and d.weekday() < 5)
        v = family(facility, d, inmate_of(facility))
        w.plant(
            "visit_pattern",
            "family_visit_on_unusual_day",
            f"family visit at {facility} on a {d:%A}, when it receives no families",
            facility=facility,
            visits=[v],
            contextual=True,
        )
    # Family visits while family visits were suspended everywhere.
    first = w.start + timedelta(days=SUSPENSION_DAYS[0])
    for k, facility in enumerate(("QZT", "MAR", "IZA")):
        days = prisons[facility][6]
        d = first + timedelta(days=2 + k * 3)
        while d.weekday() not in days or _holiday(d):
            d += timedelta(days=1)
        v = family(facility, d, inmate_of(facility))
        w.plant(
            "visit_pattern",
            "family_visit_during_suspension",
            f"family visit at {facility} while family visits were suspended",
            facility=facility,
            visits=[v],
            contextual=True,
        )
    # A relative visiting leaders of rival gangs in three prisons within a month.
    for _ in range(2):
        relative = w.person("family")
        # a month with family visits at every prison, all of it inside the world
        start = day_where(
            "ZAC",
            lambda d: (
                d.weekday() == 5
                and d + timedelta(days=40) < w.end
                and not any(_suspended(w, d + timedelta(days=k)) for k in range(40))
            ),
        )
        trail = []
        for facility, gang in (("ZAC", "MS13"), ("IZA", "B18S"), ("QZT", "B18R")):
            d = start
            while d.weekday() not in prisons[facility][6] or _holiday(d) or _suspended(w, d):
                d += timedelta(days=1)
            start = d + timedelta(days=rng.randint(3, 8))
            leader = rng.choice(_leaders(w, facility, gang))["inmate_id"]
            t = rng.uniform(9.0, 12.0)
            v = Visit(
                facility,
                _at(d, t),
                _at(d, t + 1.0),
                relative,
                inmate_id=leader,
                purpose="Visita familiar",
                anomaly="behaviour",
            )
            w.visits.append(v)
            trail.append(v)
        w.plant(
            "visit_pattern",
            "relative_of_rival_leaders",
            f"{relative.name} visited leaders of three rival gangs in three prisons within a month",
            facility="ZAC",
            visits=trail,
            contextual=True,
        )
    # An official alone on a Sunday, within hours, with no stated purpose.
    for facility in ("QZT", "CIU"):
        d = day_where(facility, lambda d: d.weekday() == 6)
        t = rng.uniform(13.0, 14.5)
        v = Visit(
            facility, _at(d, t), _at(d, t + 1.5), officials[1], purpose="", anomaly="behaviour"
        )
        w.visits.append(v)
        w.plant(
            "visit_pattern",
            "official_alone_on_sunday",
            "official alone on a Sunday with no stated purpose",
            facility=facility,
            visits=[v],
            contextual=True,
        )
    # A twelve-hour "family" stay (twelve hours is every staff shift, absurd for family).
    for facility in ("MAR", "QZT"):
        days = prisons[facility][6]
        d = day_where(facility, lambda d, days=days: d.weekday() in days)
        v = family(facility, d, inmate_of(facility), stay=12.0, hour=8.2)
        w.plant(
            "visit_pattern",
            "twelve_hour_family_stay",
            "a family visit lasting 12 hours",
            facility=facility,
            visits=[v],
            contextual=True,
        )


def _pick(w: World, facility: str, role: str) -> Visit:
    while True:
        v = w.rng.choice(w.visits)
        if (
            v.facility == facility
            and v.person.role == role
            and v.anomaly is None
            and v.name_override is None
            and v.id_override is None
            and v.party_size == 1
            and v.exited_at is not None
            and not v.vehicle_plate  # a planted anomaly never lands on a look-alike
        ):
            v.anomaly = "planted"
            return v


def _plant_transfer_anomalies(w: World) -> None:
    rng = w.rng

    def when() -> datetime:
        return _at(
            w.start + timedelta(days=rng.randrange(20, (w.end - w.start).days - 40)),
            rng.uniform(8, 16),
        )

    # Leaders of MS13 at ZAC "for medical reasons" to CIU, which holds another MS13 leader.
    for leader in _leaders(w, "ZAC", "MS13")[1:4]:
        t = _transfer(w, leader, "CIU", when(), "Traslado médico", "", None)
        w.transfers.append(t)
        w.plant(
            "medical_transfer",
            "reunification",
            "gang leader moved for medical reasons, without approval, to a prison holding a "
            "co-leader of the same gang, never returned",
            facility="ZAC",
            transfers=[t["record_id"]],
        )
    for leader in _leaders(w, "ZAC", "B18R")[1:3]:
        t0 = when()
        t = _transfer(w, leader, "HRO", t0, "Consulta médica", "", t0 + timedelta(days=2))
        w.transfers.append(t)
        w.plant(
            "medical_transfer",
            "no_medical_approval",
            "medical transfer without approval",
            facility="ZAC",
            transfers=[t["record_id"]],
        )
    for leader in _leaders(w, "ZAC", "B18S")[1:3]:
        t = _transfer(
            w,
            leader,
            "HRO",
            when(),
            "Hospitalización",
            "Dra. Molina, Directora Médica, ref. DM-900",
            None,
        )
        w.transfers.append(t)
        w.plant(
            "medical_transfer",
            "no_return",
            "medical transfer with no return",
            facility="ZAC",
            transfers=[t["record_id"]],
        )


def _forget(w: World, gone_ids: set[int]) -> None:
    """Drop removed visits from the truth; an anomaly with no visit left is gone too."""
    kept = []
    for t in w.truth:
        if "visits" in t:
            t["visits"] = [v for v in t["visits"] if id(v) not in gone_ids]
            if not t["visits"]:
                continue
        kept.append(t)
    w.truth = kept


def _month_after(start: date, months: int) -> datetime:
    n = start.month - 1 + months
    return datetime(start.year + n // 12, n % 12 + 1, 1)


def _book_label(w: World, checkpoint: str, at: datetime) -> str:
    """One book a month per gate, labelled as real gates do: the main gate's books are
    numbered by month *within the year* ("07/2019": numbering restarts each January), the
    visitors' gate's carry a prefix ("GV-007"), the vehicle gate's are bare numbers."""
    month = (at.year - w.start.year) * 12 + at.month - w.start.month
    if checkpoint == "Garita Principal":
        return f"{at.month:02d}/{at.year}"
    if checkpoint == "Garita de Visitas":
        return f"GV-{month + 1:03d}"
    return str(500 + month + 1)


def _number_lines_and_plant_gaps(w: World) -> None:
    """Silent periods, then book/page/line numbers, then torn pages, removed books, back-dating."""
    rng = w.rng
    # Silent periods: days with nothing written while the prison ran (numbering continues).
    for facility, start_day in (("QZT", 40), ("IZA", 95)):
        begin = _at(w.start + timedelta(days=start_day), 0)
        end = begin + timedelta(days=3)
        dropped = [
            v
            for v in w.visits
            if v.facility == facility
            and begin <= v.entered_at < end
            and v.checkpoint == "Garita Principal"
            and v.anomaly is None
        ]
        dropped_ids = set(map(id, dropped))
        w.visits = [v for v in w.visits if id(v) not in dropped_ids]
        w.plant(
            "logbook_gap",
            "silent_period",
            f"nothing written at {facility} for 3 days",
            facility=facility,
            checkpoint="Garita Principal",
            period=[begin, end],
        )
    w.visits.sort(key=lambda v: (v.facility, v.checkpoint, v.entered_at))
    counters: dict[tuple, int] = {}
    books: dict[tuple, dict] = {}
    for v in w.visits:
        book = _book_label(w, v.checkpoint, v.entered_at)
        key = (v.facility, v.checkpoint, book)
        n = counters.get(key, 0)
        counters[key] = n + 1
        v.logbook, v.page, v.line = book, n // LINES_PER_PAGE + 1, n % LINES_PER_PAGE + 1
        if key not in books:
            books[key] = {
                "logbook": book,
                "facility": v.facility,
                "checkpoint": v.checkpoint,
                "opened_on": v.entered_at.date(),
                "closed_on": v.entered_at.date(),
                "first_page": 1,
                "last_page": 1,
                "status": "En custodia",
            }
        b = books[key]
        b["closed_on"] = max(b["closed_on"], v.entered_at.date())
        b["last_page"] = max(b["last_page"], v.page)
    # Torn-out pages.
    for facility, book_offset, first in (("CIU", 2, 30), ("MAR", 3, 25), ("ZAC", 1, 12)):
        book = _book_label(w, "Garita Principal", _month_after(w.start, book_offset))
        pages = (first, first + 2)
        gone = [
            v
            for v in w.visits
            if v.facility == facility
            and v.logbook == book
            and pages[0] <= v.page <= pages[1]
            and v.checkpoint == "Garita Principal"
        ]
        gone_ids = set(map(id, gone))
        w.visits = [v for v in w.visits if id(v) not in gone_ids]
        _forget(w, gone_ids)
        w.plant(
            "logbook_gap",
            "torn_out_pages",
            f"pages {pages[0]}-{pages[1]} of book {book} missing",
            facility=facility,
            checkpoint="Garita Principal",
            logbook=book,
            pages=list(pages),
            period=[min(v.entered_at for v in gone), max(v.entered_at for v in gone)],
        )
    # Removed books: one listed as removed in the register, one missing from the register too.
    for facility, book_offset, listed in (("IZA", 3, True), ("CIU", 4, False)):
        book = _book_label(w, "Garita Principal", _month_after(w.start, book_offset))
        key = (facility, "Garita Principal", book)
        gone = [v for v in w.visits if (v.facility, v.checkpoint, v.logbook) == key]
        gone_ids = set(map(id, gone))
        w.visits = [v for v in w.visits if id(v) not in gone_ids]
        _forget(w, gone_ids)
        if listed:
            books[key]["status"] = "Retirado"
        else:
            del books[key]
        w.plant(
            "logbook_gap",
            "removed_book",
            f"book {book} of {facility} removed",
            facility=facility,
            checkpoint="Garita Principal",
            logbook=book,
            period=[min(v.entered_at for v in gone), max(v.entered_at for v in gone)],
        )
    # Back-dated lines: written later with an earlier time than the line before.
    for facility in ("MAR", "QZT", "IZA"):
        candidates = [
            v
            for v in w.visits
            if v.facility == facility
            and v.anomaly is None
            and v.person.role == "family"
            and v.page > 5
        ]
        v = rng.choice(candidates)
        v.entered_at -= timedelta(days=3)
        if v.exited_at:
            v.exited_at -= timedelta(days=3)
        v.anomaly = "back_dated"
        w.plant(
            "logbook_gap",
            "out_of_order",
            "a line dated 3 days before the lines around it",
            facility=facility,
            checkpoint=v.checkpoint,
            logbook=v.logbook,
            pages=[v.page, v.page],
            visits=[v],
        )
    w.logbooks = list(books.values())
    # Record ids in logbook order.
    per: dict[str, int] = {}
    for v in w.visits:
        per[v.facility] = per.get(v.facility, 0) + 1
        v.record_id = f"{v.facility}-{per[v.facility]:06d}"


# --- the gate's reader events -------------------------------------------------------------

EVENT_FIELDS = [
    "marcacion_id", "centro", "fecha_hora", "nombre", "tarjeta", "documento", "placa",
    "lector", "sentido",
]  # fmt: skip
GATE, TURNSTILE, CAMERA = "Portón principal", "Torniquete 1", "Cámara de placas"


def build_events(w: World) -> None:
    """The perimeter gate's reader events beside the books: every named, documented visitor
    badges in before the book's line and out after the exit; staff also pass the building's
    turnstile. Planted, with their truth: escorts of the director seen only by the gate,
    an exit from the building with no entry (piggy-backing), the director's badge at two
    prisons twelve minutes apart, a lawyer who leaves without badging out again and again,
    a guard's card passed back over the turnstile for two more people, a guard's card read
    in the middle of their leave (with the personnel roster's absences). Look-alikes, not
    planted: readers missing a read now and then (entries and exits), a family that badges
    once for the whole party written in the book, the masked companions (no badge: the
    book's placeholders already tell), contractors and staff cars the visitors' book never
    records."""
    rng = random.Random(w.rng.random())
    events: list[dict] = []

    def read(facility, at, name, badge, reader, direction, plate="") -> dict:
        row = {"centro": facility, "fecha_hora": at, "nombre": name, "tarjeta": badge,
               "documento": "" if badge.startswith("PASE") else badge, "placa": plate,
               "lector": reader, "sentido": direction}  # fmt: skip
        events.append(row)
        return row

    # The plate camera reads every vehicle the book writes a plate for (deliveries, the
    # parish van, a relative's car), a few minutes before its line.
    for v in w.visits:
        if v.vehicle_plate:
            read(v.facility, v.entered_at - timedelta(minutes=rng.randint(1, 6)), "", "",
                 CAMERA, "Entrada", v.vehicle_plate)  # fmt: skip

    # A reader stream cannot put one person at two prisons at once; the generator's books
    # can (it does not schedule a visitor's day across prisons): a visit starting less than
    # an hour after the person's stay at another prison is not badged. Back-to-back shifts
    # at one prison are one stay.
    people: dict[tuple, list[Visit]] = {}
    badged_parties: set[str] = set()
    for v in w.visits:
        name = v.name_override if v.name_override is not None else v.person.name
        if not name or v.anomaly == "masked_companion" or v.name_override is not None:
            continue
        if v.party_id and v.person.role == "family":  # one badge for the family's party
            if v.party_id in badged_parties:
                continue
            badged_parties.add(v.party_id)
        people.setdefault((name, v.person.id_number), []).append(v)
    for (name, number), visits in people.items():
        stays: list[list] = []
        for v in sorted(visits, key=lambda v: v.entered_at):
            last = stays[-1] if stays else None
            end = last and (last[2] or last[1] + timedelta(hours=1))
            if last and v.facility == last[0] and v.entered_at <= end + timedelta(minutes=30):
                last[2] = max(end, v.exited_at or end)
                continue
            if last and v.facility != last[0] and v.entered_at < end + timedelta(hours=1):
                continue  # at another prison an hour ago: not badged
            stays.append([v.facility, v.entered_at, v.exited_at, v.person.role])
        badge = number or f"PASE-{zlib.crc32(name.encode()) % 10**6:06d}"  # a visitor pass
        for home, entered, exited, role in stays:
            if rng.random() >= 0.002:  # a reader misses an entry now and then too
                read(home, entered - timedelta(minutes=rng.randint(1, 8)), name, badge, GATE,
                     "Entrada")  # fmt: skip
            if role == "staff" and rng.random() >= 0.002:
                read(home, entered + timedelta(minutes=2), name, badge, TURNSTILE, "Entrada")
            if exited is None:
                continue
            if role == "staff":
                read(home, exited - timedelta(minutes=2), name, badge, TURNSTILE, "Salida")
            if rng.random() >= 0.002:  # a reader misses a read now and then
                read(home, exited + timedelta(minutes=rng.randint(1, 5)), name, badge, GATE,
                     "Salida")  # fmt: skip
    _regulars_not_in_the_book(w, rng, read)
    _plant_event_anomalies(w, rng, read)
    _leave_roster(w, rng, read)
    events.sort(key=lambda e: (e["fecha_hora"], e["centro"], e["tarjeta"]))
    for n, e in enumerate(events, 1):
        e["marcacion_id"] = f"EV-{n:06d}"
    w.events = events
    w.zones = [
        row
        for code, *_ in FACILITIES
        for row in (
            {"centro": code, "zona": "perimetro", "dentro_de": "", "lector": GATE},
            {"centro": code, "zona": "edificio", "dentro_de": "perimetro", "lector": TURNSTILE},
        )
    ]


def _regulars_not_in_the_book(w: World, rng: random.Random, read) -> None:
    """Look-alikes of unlogged entrants: at each prison two contractors (kitchen, works)
    badge in and out on weekdays and two staff cars come in, none of them ever written in
    the visitors' book (it records visitors and staff on duty, not them)."""
    for code, *_ in FACILITIES:
        people = [(f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}", f"CONT-{code}-{k}")
                  for k in range(2)]  # fmt: skip
        plates = [f"P-{rng.randrange(100000, 999999)}" for _ in range(2)]
        for d in w.days():
            if d.weekday() >= 5:
                continue
            for name, badge in people:
                if rng.random() < 0.1:  # a day off now and then
                    continue
                read(code, _at(d, 6.0 + rng.random() / 2), name, badge, GATE, "Entrada")
                read(code, _at(d, 14.5 + rng.random()), name, badge, GATE, "Salida")
            for plate in plates:
                if rng.random() < 0.9:
                    read(code, _at(d, 5.6 + rng.random() / 3), "", "", CAMERA, "Entrada", plate)


def _plant_event_anomalies(w: World, rng: random.Random, read) -> None:
    night = [v for v in w.visits if v.anomaly == "official_night"]
    director = night[0].person
    # Escorts of the director the gate read with visitor passes; the book has no line.
    for n, lead in enumerate(night[:3]):
        rows = [
            read(
                lead.facility,
                lead.entered_at - timedelta(minutes=3),
                f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}",
                f"PASE-{n}{k}",
                GATE,
                "Entrada",
            )  # fmt: skip
            for k in range(2)
        ]
        w.plant("access_events", "unlogged_escort",
                f"two escorts of {director.name} read at the {lead.facility} gate, not in the book",
                facility=lead.facility, events=rows)  # fmt: skip
    # The vehicle the escorts came in: read by the plate camera, in no line of the book.
    lead = night[1]
    row = read(lead.facility, lead.entered_at - timedelta(minutes=5), "", "", CAMERA,
               "Entrada", f"N-{rng.randrange(1000, 9999)}")  # fmt: skip
    w.plant("access_events", "unlogged_vehicle",
            f"a vehicle read at the {lead.facility} gate with {director.name}'s party, in no line",
            facility=lead.facility, events=[row])  # fmt: skip
    # Piggy-backing: out of the building at night, never badged into it.
    staff = next(v for v in w.visits if v.person.role == "staff" and v.facility == "IZA")
    day = staff.entered_at.date() + timedelta(days=3)
    row = read("IZA", _at(day, 22.5), staff.person.name, staff.person.id_number, TURNSTILE,
               "Salida")  # fmt: skip
    w.plant("access_events", "piggy_backing",
            f"{staff.person.name} left the IZA building at night with no entry read",
            facility="IZA", events=[row])  # fmt: skip
    # A guard's card passed back over the building's turnstile at night: it lets two more
    # people in, neither of them in the book.
    guard = next(v for v in w.visits if v.person.role == "staff" and v.facility == "ZAC")
    day = guard.entered_at.date() + timedelta(days=5)
    name, badge = guard.person.name, guard.person.id_number
    rows = [read("ZAC", _at(day, 20.9), name, badge, GATE, "Entrada")] + [
        read("ZAC", _at(day, 21.0) + timedelta(minutes=2 * k), name, badge, TURNSTILE, "Entrada")
        for k in range(3)
    ] + [read("ZAC", _at(day, 23.0), name, badge, TURNSTILE, "Salida"),
         read("ZAC", _at(day, 23.1), name, badge, GATE, "Salida")]  # fmt: skip
    w.plant("access_events", "card_passed_back",
            f"{name}'s card read into the ZAC building three times in four minutes at night",
            facility="ZAC", events=rows)  # fmt: skip
    # The director's badge at two prisons twelve minutes apart.
    lead = night[-1]
    first = read("ZAC", lead.entered_at - timedelta(hours=5), director.name,
                 director.id_number, GATE, "Entrada")  # fmt: skip
    second = read("IZA", lead.entered_at - timedelta(hours=5) + timedelta(minutes=12),
                  director.name, director.id_number, GATE, "Entrada")  # fmt: skip
    w.plant("access_events", "badge_two_places",
            f"{director.name}'s document read at ZAC and at IZA twelve minutes apart",
            facility="ZAC", events=[first, second])  # fmt: skip
    # A lawyer who leaves without badging out, again and again.
    lawyer_visits = [v for v in w.visits if v.person.role == "lawyer" and v.facility == "QZT"]
    lawyer = lawyer_visits[0].person
    start = lawyer_visits[0].entered_at.date()
    rows = [
        read(
            "QZT",
            _at(start + timedelta(days=k * 4 + 1), 9.0 + k / 10),
            lawyer.name,
            lawyer.id_number,
            GATE,
            "Entrada",
        )  # fmt: skip
        for k in range(4)
    ]
    w.plant("access_events", "exits_not_read",
            f"{lawyer.name} entered QZT four times in a fortnight with no exit read",
            facility="QZT", events=rows)  # fmt: skip


def _leave_roster(w: World, rng: random.Random, read) -> None:
    """The personnel roster's absences: guards on leave in a week or more between their
    shifts, and a few dismissed after their last one (no end date). Their reads the day
    before and the day after a leave are the look-alikes. Planted: one guard's card read
    at the gate in the middle of their leave."""
    days: dict[tuple, set] = {}
    for v in w.visits:
        if v.person.role == "staff" and v.anomaly is None:
            days.setdefault((v.person.name, v.person.id_number, v.facility), set()).add(
                v.entered_at.date()
            )
    end = max(v.entered_at for v in w.visits).date()
    for (name, number, home), seen in sorted(days.items()):
        seen = sorted(seen)
        away = [(a + timedelta(days=1), b - timedelta(days=1)) for a, b in pairwise(seen)
                if (b - a).days >= 7 and rng.random() < 0.3]  # fmt: skip
        if (end - seen[-1]).days >= 20 and rng.random() < 0.1:
            away.append((seen[-1] + timedelta(days=1), None))  # dismissed
        for starts, ends in away:
            reason = "despido" if ends is None else rng.choice(LEAVE_REASONS)
            w.absences.append({"nombre": name, "documento": number, "centro_penal": home,
                               "licencia_desde": starts, "licencia_hasta": ends or "",
                               "motivo_ausencia": reason})  # fmt: skip
    leave = next(a for a in w.absences if a["licencia_hasta"])
    middle = leave["licencia_desde"] + (leave["licencia_hasta"] - leave["licencia_desde"]) / 2
    row = read(leave["centro_penal"], _at(middle, 7.8), leave["nombre"], leave["documento"],
               GATE, "Entrada")  # fmt: skip
    w.plant("access_events", "read_while_away",
            f"{leave['nombre']}'s card read at the {leave['centro_penal']} gate on "
            f"{middle:%Y-%m-%d}, in the middle of their leave",
            facility=leave["centro_penal"], events=[row])  # fmt: skip


LEAVE_REASONS = ("vacaciones", "incapacidad", "licencia con goce", "permiso personal")


def _visit_row(v: Visit) -> dict:
    id_type, id_number = v.id_override or (v.person.id_type, v.person.id_number)
    name = v.name_override if v.name_override is not None else v.person.name
    return {
        "record_id": v.record_id,
        "facility": v.facility,
        "checkpoint": v.checkpoint,
        "logbook": v.logbook,
        "page": v.page,
        "line": v.line,
        "entered_at": v.entered_at,
        "exited_at": v.exited_at,
        "name": name,
        "id_type": id_type,
        "id_number": id_number,
        "role": v.person.role,
        "organization": v.person.organization,
        "escorted_by": v.escorted_by,
        "inmate_id": v.inmate_id,
        "purpose": v.purpose,
        "vehicle_plate": v.vehicle_plate,
        "party_size": v.party_size,
        "party_id": v.party_id,
    }


def _iso(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _write(
    path: Path, header: list[str], rows: list[list], encoding="utf-8", delimiter=","
) -> None:
    with path.open("w", encoding=encoding, newline="") as fh:
        out = csv.writer(fh, delimiter=delimiter)
        out.writerow(header)
        out.writerows(rows)


def write_world(w: World, out: Path) -> dict[str, Path]:
    """Write the five kinds: English layout for some, the Spanish export for others."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    files["facilities"] = out / "facilities.csv"
    _write(
        files["facilities"],
        ["facility", "name", "kind", "security_level", "visiting_hours", "role_hours"],
        [
            *([c, n, k, s, h, ROLE_HOURS.get(c, "")] for c, n, k, s, h, _, _ in FACILITIES),
            [*PRISON_HOSPITAL, ""],
        ],
    )
    files["inmates"] = out / "internos.csv"
    _write(
        files["inmates"],
        ["Interno", "Nombre", "Pandilla", "Rango", "Centro Penal"],
        [
            [
                i["inmate_id"],
                i["name"],
                i["gang"],
                {"leader": "Cabecilla", "member": "Miembro", "": ""}[i["rank"]],
                i["facility"],
            ]
            for i in w.inmates
        ],
        encoding="cp1252",
        delimiter=";",
    )
    files["logbooks"] = out / "libros.csv"
    _write(
        files["logbooks"],
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
        [
            [
                b["logbook"],
                b["facility"],
                b["checkpoint"],
                f"{b['opened_on']:%d/%m/%Y}",
                f"{b['closed_on']:%d/%m/%Y}",
                b["first_page"],
                b["last_page"],
                b["status"],
            ]
            for b in w.logbooks
        ],
        encoding="cp1252",
        delimiter=";",
    )
    files["transfers"] = out / "traslados.csv"
    _write(
        files["transfers"],
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
                t["record_id"],
                t["inmate_id"],
                t["from_facility"],
                t["to_facility"],
                f"{t['transferred_at']:%d/%m/%Y %H:%M}",
                t["reason"],
                t["authorized_by"],
                t["medical_approval"],
                f"{t['returned_at']:%d/%m/%Y %H:%M}" if t["returned_at"] else "",
            ]
            for t in w.transfers
        ],
        encoding="cp1252",
        delimiter=";",
    )
    for code, *_ in FACILITIES:
        rows = [_visit_row(v) for v in w.visits if v.facility == code]
        if not rows:
            continue
        if code in SPANISH_LAYOUT:
            path = out / f"visitas_{code}.csv"
            _write(
                path,
                SPANISH_HEADERS,
                [
                    [
                        r["record_id"],
                        r["facility"],
                        r["checkpoint"],
                        r["logbook"],
                        r["page"],
                        r["line"],
                        f"{r['entered_at']:%d/%m/%Y}",
                        f"{r['entered_at']:%H:%M}",
                        f"{r['exited_at']:%d/%m/%Y}" if r["exited_at"] else "",
                        f"{r['exited_at']:%H:%M}" if r["exited_at"] else "",
                        r["name"],
                        IDTYPE_ES[r["id_type"]],
                        r["id_number"],
                        ROLE_ES.get(r["role"], "Otro"),
                        r["organization"],
                        r["escorted_by"],
                        r["inmate_id"],
                        r["purpose"],
                        r["vehicle_plate"],
                        r["party_size"],
                        r["party_id"],
                    ]
                    for r in rows
                ],
                encoding="cp1252",
                delimiter=";",
            )
        else:
            path = out / f"visits_{code}.csv"
            _write(path, VISIT_FIELDS, [[_iso(r[f]) for f in VISIT_FIELDS] for r in rows])
        files[f"visits_{code}"] = path
    if w.events:
        files["events"] = out / "marcaciones.csv"
        _write(files["events"], EVENT_FIELDS,
               [[_iso(e[f]) for f in EVENT_FIELDS] for e in w.events])  # fmt: skip
        files["zones"] = out / "zonas.csv"
        fields = ["centro", "zona", "dentro_de", "lector"]
        _write(files["zones"], fields, [[z[f] for f in fields] for z in w.zones])
    if w.absences:
        files["absences"] = out / "ausencias_personal.csv"
        fields = list(w.absences[0])
        _write(files["absences"], fields, [[_iso(a[f]) for f in fields] for a in w.absences])
    truth = [
        {
            **t,
            "visits": [v.record_id for v in t.get("visits", [])],
            "events": [e["marcacion_id"] for e in t.get("events", [])],
        }
        for t in w.truth
    ]
    (out / "truth.json").write_text(
        json.dumps(truth, indent=1, default=_iso, ensure_ascii=False), encoding="utf-8"
    )
    files["truth"] = out / "truth.json"
    return files


def generate(
    out: str | Path, seed: int = 7, months: int = 6, events: bool = False
) -> dict[str, Path]:
    """Build and write a world; returns the written files by kind. With ``events``, the
    perimeter gate's reader events and the zones too (``build_events``)."""
    w = build_world(seed=seed, months=months, possible_schedules=events)
    if events:
        build_events(w)
    return write_world(w, Path(out))
