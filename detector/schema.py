"""The canonical record kinds: their fields, header synonyms and value vocabularies."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Field:
    """One canonical column.

    ``type`` is one of ``text``, ``int``, ``datetime``, ``date``, ``time`` or ``vocab``
    (a text whose values are mapped onto ``vocab`` in a ``<name>`` column while the
    original stays in ``<name>_raw``). ``none_words`` are what people write in a text
    field where there is nothing ("Pendiente", "N/A", "-" for an approval): such a value is
    no value, and the text as written stays in ``<name>_raw``.
    """

    name: str
    type: str = "text"
    required: bool = False
    synonyms: tuple[str, ...] = ()
    vocab: str | None = None
    none_words: tuple[str, ...] = ()

    @property
    def keeps_raw(self) -> bool:
        """Whether the text as written is kept beside the value, in ``<name>_raw``."""
        return self.type in ("vocab", "datetime", "date") or bool(self.none_words)


@dataclass(frozen=True)
class Composite:
    """A canonical datetime that may instead be built from a date column plus a time column."""

    target: str
    date: tuple[str, ...]
    time: tuple[str, ...]
    # For exits: the date column of another composite to fall back on when this one has none.
    fallback_date_of: str | None = None


@dataclass(frozen=True)
class Order:
    """A cross-field check: the value of ``later`` may not come before that of
    ``earlier``; a row where it does goes to the quarantine as ``code`` (its sentence is
    ``detector.i18n.REASONS[code]``), unless ``stored``: then the row is stored as written
    and a rule reports the order (a visit's exit written before its entry: the entry is
    evidence all the same, and the other rules judge it)."""

    later: str
    earlier: str
    code: str
    stored: bool = False


@dataclass(frozen=True)
class Evidence:
    """How a kind's records appear in the ``records`` view, the evidence index every flag
    cites: SQL expressions over the kind's table for each column of the view."""

    record_id: str
    facility: str
    logbook: str = "NULL"
    page: str = "NULL"
    line: str = "NULL"
    happened_at: str = "NULL"
    label: str = "NULL"
    # "verso": the page is the back of folio ``page`` (a book written on both sides)
    page_side: str = "NULL"


@dataclass(frozen=True)
class Mention:
    """A person a kind's rows name, in one part (a visit's visitor, its escort, a
    transfer's authoriser, a badge's holder, a roster's absent employee): the columns that
    say who, as identity linkage (``detector.identity``) reads them. ``name`` is the
    folded name column (``None``: ``written`` is folded when read), ``status`` its
    ``name_status`` column (``None``: classified when read); the others are columns or
    ``None``."""

    part: str
    written: str
    name: str | None = None
    status: str | None = None
    document: str | None = None
    document_type: str | None = None
    badge: str | None = None
    inmate: str | None = None
    plate: str | None = None


@dataclass(frozen=True)
class View:
    """A view a kind brings, what rules read its records through."""

    sql: str  # "CREATE OR REPLACE VIEW name AS …"
    # Whether a rule run computes its rows once, into a temporary table shadowing it, when
    # two rules or more read it (``engine._computed_views``): a window over every row is
    # worth it; a filter of its table costs less read by each rule than copied.
    computed: bool = True

    @property
    def name(self) -> str:
        return self.sql.split(" VIEW ", 1)[1].split()[0]


@dataclass(frozen=True)
class KindSpec:
    """One record kind, declared once: its fields and header synonyms, the columns derived
    at ingest and their checks, how a record is keyed, and how it is cited as evidence.
    The store's table, the ingest, the ``records`` view and the rule schema read it from
    here, so a new kind is one entry of ``SPECS``."""

    name: str
    fields: tuple[Field, ...]
    composites: tuple[Composite, ...] = ()
    # A name may instead be joined from these (first names, last names) columns.
    name_parts: tuple[tuple[str, ...], ...] = ()
    # Fields that identify one record when the source has no record_id (none: its place
    # in the file does).
    natural_key: tuple[str, ...] = ()
    # With the record_id the source gives: the fields that make it unique ("V|ZAC|812").
    own_key: tuple[str, ...] = ()
    # A natural-key field naming a person: when the publisher withheld it, the row is
    # keyed by its place in the file (two withheld placements are two records).
    person_key: str | None = None
    # Headers that point strongly to this kind when detecting it.
    signature: tuple[str, ...] = ()
    # Reference data every facility's checks read (a roster, the facilities list): an
    # upload of it makes the next rule run a full one; it is ingested before the rest.
    context: bool = False
    # Derived at ingest beside the originals: column -> SQL type, and how each is made.
    derived: dict[str, str] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)  # a name folded: key column -> field
    plates: dict[str, str] = field(default_factory=dict)  # a plate folded: key column -> field
    name_status_of: str | None = None  # classify this field's name (placeholder, redacted...)
    precision: dict[str, str] = field(default_factory=dict)  # column -> datetime field
    # Who a row is: the first of these present (a badge, a document, a folded name); a
    # tuple stands for all its fields together ("C-100|ana perez"), present when all are.
    person: dict[str, tuple[str | tuple[str, ...], ...]] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)  # field -> value when empty
    orders: tuple[Order, ...] = ()
    # Fields checked against the facilities list when there is one.
    facility_fields: tuple[str, ...] = ()
    # (entered, exited): a file whose median stay is days long is refused as custody data.
    stays: tuple[str, str] | None = None
    # The field giving the instant a record happened (a visit's entry, a read, a transfer):
    # what an incremental run narrows a rule's look-back by. None for records that span a
    # time (a logbook's custody, a leave) or have none (a roster, the facilities list).
    moment: str | None = None
    # How the kind's records are cited as evidence (the ``records`` view): every kind has one.
    evidence: Evidence | None = None
    # Views the kind brings (a later one may read an earlier one), created with its table:
    # what rules read it through.
    views: tuple[View, ...] = ()
    # (group, child, parent): records that nest within their group (a zone inside another
    # of its facility); an upload that would make the nesting circular is refused.
    nesting: tuple[str, str, str] | None = None
    # The people its rows name, each a part they play (``detector.identity`` links them).
    people: tuple[Mention, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def key_prefix(self) -> str:
        return self.name[0].upper()

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    @property
    def facility(self) -> str:
        """SQL over the kind's table: the facility a record belongs to (a transfer's origin)."""
        return self.evidence.facility

    @property
    def happened_at(self) -> str | None:
        """SQL over the kind's table: when a record happened or began, if it has a time."""
        return None if self.evidence.happened_at == "NULL" else self.evidence.happened_at

    def has(self, *names: str) -> bool:
        """Whether the kind's table has all these columns (fields or derived columns)."""
        columns = {f.name for f in self.fields} | set(self.derived)
        return all(n in columns for n in names)


# Vocabularies: canonical value -> folded words that mean it (matched as whole words or
# phrases inside the folded raw value, in this order, so "traslado medico" -> medical).
VOCABULARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "role": {
        "family": (
            "family",
            "familiar",
            "familia",
            "madre",
            "padre",
            "esposa",
            "esposo",
            "hijo",
            "hija",
            "hermano",
            "hermana",
            "conviviente",
            "relative",
            "abuela",
            "abuelo",
            "tia",
            "tio",
            "prima",
            "primo",
            "sobrina",
            "sobrino",
            "nieta",
            "nieto",
            "suegra",
            "suegro",
            "cunada",
            "cunado",
            "companera",
            "companero",
            "conyuge",
            "pareja",
            "novia",
            "novio",
            # a conjugal visit is a relative's (a spouse's, a partner's)
            "intima",
            "conyugal",
            "mother",
            "father",
            "wife",
            "husband",
            "spouse",
            "partner",
            "daughter",
            "sister",
            "brother",
        ),
        "lawyer": (
            "lawyer",
            "abogado",
            "abogada",
            "defensor",
            "defensora",
            "attorney",
            "defender",
            # El Salvador's public defenders (Procuraduría General de la República)
            "procurador",
            "procuradora",
            "pgr",
        ),
        "official": (
            "official",
            "funcionario",
            "funcionaria",
            "director",
            "directora",
            "autoridad",
            "government",
            "fiscal",
            "fgr",
            "juez",
            "jueza",
            "magistrado",
            "magistrada",
            "inspector",
            "inspectora",
            "prosecutor",
            "judge",
            "ombudsman",
        ),
        "staff": (
            "staff",
            "custodio",
            "custodia",
            "personal",
            "empleado",
            "empleada",
            "guard",
            "employee",
        ),
        "contractor": ("contractor", "contratista", "proveedor", "proveedora", "supplier"),
        "ngo": ("ngo", "ong", "organismo", "cicr", "red cross"),
        "police": ("police", "policia", "pnc"),
        "other": ("other", "otro", "otra"),
    },
    "id_type": {
        "DUI": ("dui",),
        "DNI": ("dni", "dni/le", "libreta electoral", "documento nacional de identidad"),
        "passport": ("passport", "pasaporte"),
        "badge": ("badge", "carnet institucional", "gafete", "credencial"),
        "bar_card": ("bar card", "bar_card", "carnet de abogado", "tarjeta de abogado"),
        "other": ("other", "otro"),
    },
    "reason": {
        # Before "medical": the way back from a hospital is logged as a transfer too, often
        # with a medical wording ("retorno de hospital, alta médica"); it needs no approval.
        "medical_return": (
            "medical_return",
            "retorno",
            "regreso",
            "alta medica",
            "alta hospitalaria",
            "return",
            "discharge",
            "discharged",
        ),
        "medical": (
            "medical",
            "medico",
            "medica",
            "medicos",
            "medicas",
            "salud",
            "consulta",
            "hospital",
            "hospitalizacion",
            "health",
            "emergencia",
            "cirugia",
            "quirurgico",
            "quirurgica",
            "surgery",
            "dialisis",
            "quimioterapia",
            "especialista",
            # the treatment or the specialty, as transfer orders name them ("Hemodiálisis",
            # "Tratamiento oncológico"): a transfer so written is a medical one
            "hemodialisis",
            "radioterapia",
            "oncologia",
            "oncologico",
            "oncologica",
            "cardiologia",
            "nefrologia",
            "neurologia",
            "traumatologia",
            "ortopedia",
            "oftalmologia",
            "odontologia",
            "odontologico",
            "ginecologia",
            "urologia",
            "psiquiatria",
            "psiquiatrico",
            "psiquiatrica",
            "hospitalario",
            "hospitalaria",
            "quirofano",
            "operacion quirurgica",
            "intervencion quirurgica",
            "urgencias",
            "dialysis",
            "hemodialysis",
            "chemotherapy",
            "radiotherapy",
            "oncology",
            "psychiatric",
            "surgical",
        ),
        "security": ("security", "seguridad"),
        "court": ("court", "audiencia", "audiencias", "judicial", "tribunal", "juzgado", "hearing"),
        "relocation": ("relocation", "reubicacion", "hacinamiento"),
        "other": ("other", "otro"),
    },
    "rank": {
        "leader": ("leader", "lider", "cabecilla", "palabrero", "ranflero"),
        "member": ("member", "miembro", "homeboy", "soldado"),
        "none": ("none", "ninguno", "no aplica", "n/a"),
    },
    "status": {
        "in_custody": ("in_custody", "in custody", "en custodia", "custodia", "archivado"),
        "missing": ("missing", "extraviado", "faltante", "perdido"),
        "removed": ("removed", "retirado", "sustraido", "decomisado"),
        "destroyed": ("destroyed", "destruido"),
    },
    # Hospital first: real lists name prison hospitals as both ("Bellevue Hospital Prison
    # Ward", "Augusta State Medical Prison", "Hospital Psiquiátrico Correccional").
    "facility_kind": {
        "hospital": (
            "hospital",
            "clinica",
            "clinic",
            "infirmary",
            "enfermeria",
            "medical center",
            "medical facility",
            "medical prison",
            "health care facility",
            "psychiatric",
            "psychiatry",
            "psiquiatrico",
            "prison ward",
            "security ward",
            "centro medico",
        ),
        "prison": (
            "prison",
            "centro penal",
            "centro_penal",
            "penal",
            "carcel",
            "penitenciaria",
            "penitentiary",
            "correctional",
            "correction",
            "corrections",
            "detention",
            "jail",
            "jails",
            "prisons",
            "security facility",
            "reformatory",
        ),
        "other": ("other", "otro"),
    },
    "security_level": {
        "maximum": ("maximum", "maxima"),
        # US "close" custody sits between medium and maximum
        "high": ("high", "alta", "close"),
        "medium": ("medium", "media"),
        "low": ("low", "baja", "minimum", "minima"),
    },
    # Which way a reader saw someone go (badge readers, turnstiles, gate registers).
    "direction": {
        "in": ("in", "entrada", "entry", "enter", "ingreso", "ingresa", "entra", "ent", "e", "i"),
        "out": ("out", "salida", "exit", "egreso", "sale", "sal", "leave", "s", "o"),
    },
    # A yes or a no, as people write them.
    "yes_no": {
        "yes": ("yes", "y", "si", "s", "true", "1", "x", "strict", "estricta", "estricto"),
        "no": ("no", "n", "false", "0"),
    },
    # Whether the reader let the person through (checked in this order: "no autorizado" is
    # a refusal). A refused read is kept as evidence (the card was there) but is no passage.
    "outcome": {
        "denied": (
            "denied",
            "denegado",
            "denegada",
            "rechazado",
            "rechazada",
            "refused",
            "rejected",
            "invalid",
            "invalido",
            "invalida",
            "no autorizado",
            "no autorizada",
            "unauthorized",
            "not authorized",
            "failed",
            "fallido",
            "fallida",
            "bloqueado",
            "blocked",
            "no registrada",
            "no registrado",
            "unregistered",
            "expirada",
            "expirado",
            "expired",
            "antipassback",
            "anti passback",
            "fuera de horario",
        ),
        "granted": (
            "granted",
            "concedido",
            "concedida",
            "permitido",
            "permitida",
            "autorizado",
            "autorizada",
            "valid",
            "valido",
            "valida",
            "aceptado",
            "aceptada",
            "ok",
            "allowed",
        ),
    },  # fmt: skip
}

# Words that settle a value before the vocabulary above is read, where a word of an earlier
# entry would otherwise win: a return from a court hearing is a court transfer, not the way
# back from a hospital ("retorno" alone is read as a medical return).
VOCABULARY_FIRST: dict[str, dict[str, tuple[str, ...]]] = {
    # the human rights ombudsman's staff (PDDH) are officials, not public defenders
    "role": {
        "official": ("derechos humanos", "pddh", "human rights"),
    },
    # a reader set to read both ways ("Entrada/Salida") says nothing of which way one went
    "direction": {
        "unknown": (
            "entrada/salida",
            "entrada - salida",
            "entrada y salida",
            "entrada o salida",
            "e/s",
            "in/out",
            "in - out",
            "in or out",
            "i/o",
        ),
    },
    "reason": {
        "court": (
            "retorno de audiencia",
            "regreso de audiencia",
            "retorno de juzgado",
            "regreso de juzgado",
            "retorno del juzgado",
            "regreso del juzgado",
            "retorno de tribunal",
            "retorno del tribunal",
            "regreso del tribunal",
            "return from court",
            "court return",
            "return from hearing",
        ),
    },
}

# What a vocabulary column holds when the raw value is empty, and when it is not recognised.
VOCAB_DEFAULTS: dict[str, tuple[str | None, str | None]] = {
    "role": (None, "other"),
    "id_type": (None, "other"),
    "reason": (None, "other"),
    "rank": ("none", "member"),
    "status": ("in_custody", "other"),
    "facility_kind": (None, "other"),
    "security_level": (None, None),
    "direction": ("unknown", "unknown"),
    "outcome": ("granted", "unknown"),  # an export without the column lists passages
    "yes_no": ("no", "no"),
}

# How a visit's name reads (the ``name_status`` column): "named", "blank" (nothing, or only
# punctuation), "placeholder" (a word written instead of a name) or "redacted" (a marker the
# publisher wrote where it withheld the name: a legal withholding, not a missing entry); and
# "not_recorded" on every row of a file that has no name column at all (one case for the
# file, not a missing name on each line).
# Words are matched on the folded name key (upper case, no accents); a mapping file adds
# its own with ``placeholders = [...]`` and ``redactions = [...]``.
NAME_PLACEHOLDERS = (
    "N/A", "N/I", "NI", "NN", "S/N", "SN", "X", "XX", "XXX", "DESCONOCIDO", "DESCONOCIDA",
    "ACOMPANANTE", "ENCAPUCHADO", "ENCAPUCHADA", "NO IDENTIFICADO", "NO IDENTIFICADA",
    "SIN NOMBRE", "UNKNOWN", "ESCOLTA", "INVITADO", "INVITADA", "PERSONA", "VISITANTE",
    "GUEST", "ESCORT", "NONE", "NAME UNKNOWN",
    "ANONIMO", "ANONIMA", "PERSONA NO IDENTIFICADA", "PERSONA NO IDENTIFICADO",
    "SIN IDENTIFICAR", "ILEGIBLE", "NO LEGIBLE", "SIN DATOS", "NO INDICA", "NO SE INDICA",
    "NO REGISTRA", "NO PROPORCIONA", "NO DIO NOMBRE", "NULL", "NAN", "0", "00",
    "ANONYMOUS", "ILLEGIBLE", "UNIDENTIFIED", "NO NAME", "NOT GIVEN", "NOT PROVIDED",
    "FIRMA ILEGIBLE", "NOMBRE ILEGIBLE", "NO SE ENTIENDE", "NO SE LEE", "VISITA", "FAMILIAR",
    "PARTICULAR",
)  # fmt: skip
# A placeholder followed by a number, a "de/del ..." tail or a remark in brackets is one
# too ("Acompañante 2", "Acompañante (menor)").
PLACEHOLDER_TAIL = r"^\S+ (\d+|DE .*|DEL .*|\(.*\))$"
# A name key is also compared with its letters and digits alone, as are the placeholders:
# "N.I.", "N. N." and "[ILEGIBLE]" are "NI", "NN" and "ILEGIBLE".
NOT_ALNUM = "[^A-Z0-9]"


def bare_placeholders(words) -> list[str]:
    """``words`` (folded placeholders) with their letters and digits alone."""
    return sorted({re.sub(NOT_ALNUM, "", w) for w in words} - {""})


# Redaction markers, as whole tokens: FOIA exemption codes ((b)(6), (b)(7)(C), (b)(7)(c )), [REDACTED],
# WITHHELD, runs of four or more X, asterisks or black squares, and the Spanish forms.
REDACTION_TOKENS = (
    r"\(B\)\s*(\(\s*\d+\s*\))+(\(\s*[A-Z]\s*\))?",  # also "(b)(7)(c )", as ICE types it
    r"\[?REDACTED\]?",
    r"\[?REDACTADO\]?",
    r"\[?WITHHELD\]?",
    r"X{4,}",
    r"\*{2,}",
    r"█+",
    r"\[?TESTADO\]?",
    r"DATO PROTEGIDO",
    r"\[?RESERVADO\]?",
    r"\[?CONFIDENCIAL\]?",
)

# Layouts that look like visit logs but are not: a daily custody snapshot (one row per
# person held, per day, with admission and discharge dates, as prison systems publish
# them) read as visits would turn every admission into a "visit" years long.
CUSTODY_SNAPSHOT = {
    "admission": (
        "admitted_dt", "admission_date", "admitted", "latest_admission_date",
        "booking_date", "book_date", "fecha_ingreso_penal", "fecha_de_ingreso_al_penal",
        "fecha_reclusion", "fecha_detencion",
    ),
    "custody": (
        "discharged_dt", "discharge_date", "release_date", "custody_level", "inmate_status_code",
        "download_date", "snapshot_date", "as_of_date", "bond_amount", "top_charge",
        "offense", "fecha_egreso", "fecha_libertad", "situacion_juridica",
        "primary_charge", "charge", "charges", "charge_status", "bond_type", "bond_status",
        "docket_number", "delito", "cargo_penal",
    ),
    # The day a count or list of everyone held was taken (one row per person per day).
    "count": (
        "count_date", "snapshot_date", "as_of_date", "download_date", "census_date",
        "fecha_conteo", "fecha_corte", "fecha_censo",
    ),
    # A booking number: the custody a row belongs to, not a visit.
    "booking": ("book_id", "booking_id", "booking_number", "book_number", "booking_no"),
}  # fmt: skip
# What is written in an approval column where there is no approval (matched on the whole
# value, folded: "No. 12/2019" is a memo number, "No" is a no); a value of punctuation alone
# ("-", "--", "?") is none too.
NO_APPROVAL = (
    "pendiente", "pending", "en tramite", "por confirmar", "sin aprobacion",
    "sin visto bueno", "no aprobado", "no aprobada", "denegado", "denegada", "rechazado",
    "rechazada", "no", "n/a", "na", "n/d", "nd", "no aplica", "ninguno", "ninguna",
    "none", "sin", "s/n", "not approved", "denied",
)  # fmt: skip
# A document column whose header names the document (a visitors' book with a "DUI" column and
# no column of document types): the type of every document written in it.
TYPED_DOCUMENTS = {
    "dui": "DUI", "numero_dui": "DUI", "no_dui": "DUI", "dni": "DNI", "numero_dni": "DNI",
    "pasaporte": "passport", "passport": "passport", "numero_pasaporte": "passport",
}  # fmt: skip
# The shape of a document of each type such a column gives: a value of another shape is
# another document written there (a foreign visitor's DNI or passport in the DUI column),
# whose type is left unknown rather than judged as a bad DUI. (A DUI's shape is its
# spellings and check digit: ``ingest._dui_shaped``.)
DOCUMENT_SHAPES = {
    "DNI": r"^\s*\d{8}\s*$",
    "passport": r"^\s*[A-Za-z0-9]{5,12}\s*$",
}
# A document written with its type in the same cell ("DNI 09272448", "DNI/LE: 0927",
# "Pasaporte N° X123"): the type's word, then the number.
DOCUMENT_PREFIX = (
    r"(?i)^\s*(DNI(?:\s*/\s*LE)?|D\.\s?N\.\s?I\.?|DUI|D\.\s?U\.\s?I\.?|PASAPORTE|PASSPORT"
    r"|C\.?\s?E\.?|CARNET DE EXTRANJER[IÍ]A)\s*[:#.\-]?\s*(?:N[º°O]\.?\s*)?"
    r"(\d[\d .\-/]*[\dA-Z]?|[A-Z]{1,3}\d[\d\-]*)\s*$"
)
# A page written as the side of a folio: handwritten books number each sheet and write on
# both sides ("folio 12", "12 vta.": vuelta, the back; "12v", "12 vto", "12 r", "12 fte"):
# the page is the folio's number, and a back side is told in ``page_side`` ("verso").
FOLIO_SIDE = (
    r"(?i)^\s*(?:f(?:olio|o|\.)?\s*)?(\d+)\s*(?:(v|vta|vto|vuelta|vuelto|verso)|(r|fte|frente|recto))"
    r"\.?\s*$"
)
# A "visit" file whose median stay is longer than this holds custody records, not visits.
MAX_MEDIAN_STAY_DAYS = 3
# Visits last hours, a shift a day, back-to-back shifts two and a half at most: when a
# quarter of the stays run past two days, or one in ten past a week, the rows are custody
# (a booking register whose median stay is a day or so still has that long tail).
LONG_STAY_QUARTILE_DAYS = 2
WEEK_STAY_SHARE = 0.10

# Two reads of one person at one reader, the same way, this close are one passage (a
# reader reading a card twice, a merged export listing a read twice; the one-badge rule
# judges bursts beyond the same window).
BOUNCE_SECONDS = 10

_PASSING = (
    "person_key IS NOT NULL AND direction IN ('in', 'out') AND outcome IS DISTINCT FROM 'denied'"
)
# The repeats ``passages`` leaves out: reads repeating the one before them at the same
# reader, the same way, within BOUNCE_SECONDS, each as a 64-bit hash of its record key (one
# per stored row: the ingest stores a key once). The reads are put in one order by a hash
# of facility, person and reader, then time, and the window carries fixed-width values
# only: fixed-width keys and payload sort faster than texts (10M reads: the window 3.0 ->
# 1.5 s; carrying every column of every read took twice as long again). Only two people
# whose hashes collide (odds about n^2 / 2^65 for n people and readers: 1 in 37 million for
# a million) could share an order, and then only reads of theirs within BOUNCE_SECONDS of
# each other could be taken for a repeat; only a read whose key's hash equals a repeat's
# (odds about r * n / 2^64 for r repeats among n reads) could be left out with it.
# A rule run computes it once into a temporary table (``engine._computed_views``), which
# ``passages`` then reads in its place.
PASSAGE_REPEATS = f"""CREATE OR REPLACE VIEW passage_repeats AS
SELECT key_hash FROM (
    SELECT key_hash, seen_at, outward, at_reader,
           lag(seen_at) OVER w AS previous_at, lag(outward) OVER w AS previous_way,
           lag(at_reader) OVER w AS previous_reader
    FROM (SELECT hash(record_key) AS key_hash, seen_at, direction = 'out' AS outward,
                 upload_seq, source_row,
                 hash(facility, person_key, coalesce(reader_key, '')) AS at_reader
          FROM events WHERE {_PASSING})
    WINDOW w AS (ORDER BY at_reader, seen_at, outward, upload_seq, source_row))
WHERE previous_reader = at_reader AND previous_way = outward
  AND seen_at - previous_at <= INTERVAL {BOUNCE_SECONDS} SECOND"""

# A person's passages through zones: reads of someone going in or out that the reader did
# not refuse, each with the zone it passes (``zone_of``: the read's zone, else its reader's
# zone in the zones list, else the reader itself; matched to the zones list folded, and
# named as the list names it), the repeats (``passage_repeats``) left out. What pairing
# and the zone rules read. A filter of the reads: a rule run lets each rule read it rather
# than copying its rows (10M reads: the computed views 10.5-11.0 -> 8.2-8.4 s, the copy of
# 14 columns of every read gone).
PASSAGES = f"""CREATE OR REPLACE VIEW passages AS
WITH readers AS (SELECT facility, reader_key, min(zone) AS zone FROM zones
                 WHERE reader_key IS NOT NULL GROUP BY ALL),
     named AS (SELECT facility, zone_key, min(zone) AS zone FROM zones GROUP BY ALL)
SELECT e.*, coalesce(n.zone, e.zone, r.zone, e.reader, '') AS zone_of
FROM events e
ANTI JOIN passage_repeats p ON p.key_hash = hash(e.record_key)
LEFT JOIN readers r ON r.facility = e.facility AND r.reader_key = e.reader_key
LEFT JOIN named n ON n.facility = e.facility AND n.zone_key = e.zone_key
WHERE {_PASSING}"""

# Passages paired into stays: per person and zone, each "in" with the next passage when
# that is an "out"; the unmatched ends are kept: an entry whose next passage is another
# entry (or nothing) has no exit, an exit whose previous passage is another exit (or
# nothing) no entry. Reads at one moment are ordered entries first, then as the file
# listed them (not by their record keys' text: "EV-100" sorts before "EV-99"). One pass
# over the window's rows: read three times (one for each kind of stay), it was
# materialised whole (10M reads: 12 s -> 9 s). A person's passages through a zone are
# partitioned by a 64-bit hash of facility, zone and person, as ``passage_repeats``
# orders reads (10M reads: 5.0 -> 4.5 s; the odds of two sharing a partition as there).
EVENT_STAYS = """CREATE OR REPLACE VIEW event_stays AS
WITH ev AS (
    SELECT record_key, facility, zone_of AS zone, person_key, name_key, id_number, seen_at,
           direction, upload_seq, source_row
    FROM passages),
seq AS (
    SELECT *, lead(direction) OVER w AS next_dir, lead(seen_at) OVER w AS next_at,
           lead(record_key) OVER w AS next_key, lag(direction) OVER w AS prev_dir
    FROM ev WINDOW w AS (PARTITION BY hash(facility, zone, person_key)
                         ORDER BY seen_at, direction, upload_seq, source_row))
SELECT facility, zone, person_key, name_key, id_number,
       CASE WHEN direction = 'in' THEN seen_at END AS entered_at,
       CASE WHEN direction = 'out' THEN seen_at WHEN next_dir = 'out' THEN next_at END
         AS exited_at,
       CASE WHEN direction = 'in' THEN record_key END AS in_key,
       CASE WHEN direction = 'out' THEN record_key WHEN next_dir = 'out' THEN next_key END
         AS out_key,
       CASE WHEN direction = 'out' THEN 'no_entry' WHEN next_dir = 'out' THEN 'paired'
            ELSE 'no_exit' END AS pairing
FROM seq
-- every entry (paired with the exit after it, or not); an exit with no entry before it
WHERE direction = 'in' OR coalesce(prev_dir, 'out') = 'out'"""

# A name given as given names and surnames: joined, in this order (a "name" column beside a
# surname column holds the given names).
NAME_PARTS = (
    ("first_name", "first_names", "nombres", "nombre_s"),
    ("last_name", "last_names", "apellidos", "apellido", "surname"),
)

# Headers that name the first day away (a leave's start): only a personnel roster has them.
_AWAY_FROM = (
    "starts_on",
    "away_from",
    "absent_from",
    "leave_from",
    "leave_start",
    "ausente_desde",
    "licencia_desde",
    "fecha_inicio_licencia",
)

_PROVENANCE = "Every stored row also carries source_sha256, source_name and source_row."

SPECS: dict[str, KindSpec] = {
    "visits": KindSpec(
        name="visits",
        fields=(
            Field(
                "record_id", synonyms=("record_id", "id", "entry_id", "correlativo", "id_registro")
            ),
            Field(
                "facility",
                required=True,
                synonyms=("facility", "prison", "site", "centro_penal", "centro", "penal"),
            ),
            Field("checkpoint", synonyms=("checkpoint", "gate", "post", "puesto", "garita")),
            Field("logbook", synonyms=("logbook", "book", "libro", "libro_registro")),
            Field("page", "int", synonyms=("page", "pagina", "folio")),
            Field("line", "int", synonyms=("line", "linea", "renglon")),
            Field(
                "entered_at",
                "datetime",
                required=True,
                synonyms=("entered_at", "entry_time", "time_in", "ingreso", "fecha_hora_ingreso"),
            ),
            Field(
                "exited_at",
                "datetime",
                synonyms=("exited_at", "exit_time", "time_out", "salida", "fecha_hora_salida"),
            ),
            Field(
                "name",
                synonyms=(
                    "name",
                    "full_name",
                    "visitor",
                    "nombre",
                    "nombre_completo",
                    "visitante",
                    "nombre_visitante",
                    "visitor_name",
                    "nombres_apellidos",
                    "nombre_apellido",
                    "nombre_apellidos",
                ),
            ),
            Field(
                "id_number",
                synonyms=(
                    "id_number",
                    "document",
                    "document_number",
                    "dui",
                    "documento",
                    "numero_documento",
                ),
            ),
            Field(
                "id_type",
                "vocab",
                vocab="id_type",
                synonyms=("id_type", "document_type", "tipo_documento"),
            ),
            Field(
                "role",
                "vocab",
                vocab="role",
                synonyms=(
                    "role",
                    "rol",
                    "visitor_type",
                    "calidad",
                    "tipo_visitante",
                    "tipo_visita",
                    "parentesco",
                    "relacion",
                    "relationship",
                ),
            ),
            Field(
                "organization",
                synonyms=("organization", "institution", "institucion", "dependencia"),
            ),
            Field(
                "escorted_by",
                synonyms=("escorted_by", "authorized_by", "autorizado_por", "acompanado_por"),
            ),
            # The person visited (the official a public register names, a host inside):
            # not someone who came in, nor anyone who brought the visitor in.
            Field(
                "host",
                synonyms=(
                    "host",
                    "visited",
                    "person_visited",
                    "official_visited",
                    "persona_visitada",
                    "funcionario_visitado",
                    "empleado_visitado",
                    "empleado_publico",
                    "servidor_publico",
                    "a_quien_visita",
                ),
            ),
            Field(
                "inmate_id",
                synonyms=(
                    "inmate_id",
                    "inmate",
                    "interno",
                    "privado_de_libertad",
                    "id_interno",
                    "interno_visitado",
                    # as a women's prison writes them
                    "interna",
                    "interna_visitada",
                    "privada_de_libertad",
                    "privada_libertad",
                    "reclusa",
                    "pdl_visitada",
                    "inmate_visited",
                    "pdl",
                    "pdl_visitado",
                    "privado_libertad",
                    "recluso",
                ),
            ),
            # (a book's "Observaciones" holds what the visit was for or the clerk's note,
            # as its purpose column does; read as the purpose when no column names one)
            Field(
                "purpose",
                synonyms=(
                    "purpose",
                    "reason",
                    "motivo",
                    "motivo_visita",
                    "observaciones",
                    "observacion",
                    "obs",
                    "notas",
                    "comentarios",
                ),
            ),
            Field("vehicle_plate", synonyms=("vehicle_plate", "plate", "placa", "vehiculo")),
            Field(
                "party_size",
                "int",
                synonyms=("party_size", "people", "total_people", "personas", "num_personas"),
            ),
            Field("party_id", synonyms=("party_id", "group_id", "appointment_id", "grupo", "cita")),
            # Minors in the party (children are seldom named, nor do they carry a document).
            Field(
                "minors",
                "int",
                synonyms=(
                    "minors",
                    "children",
                    "num_minors",
                    "menores",
                    "num_menores",
                    "numero_menores",
                    "menores_de_edad",
                    "ninos",
                    "num_ninos",
                ),
            ),
        ),
        composites=(
            Composite(
                "entered_at",
                date=("date", "entry_date", "fecha", "fecha_ingreso"),
                time=(
                    "time_in",
                    "entry_hour",
                    "hora_ingreso",
                    "hora_entrada",
                    # as forms abbreviate them ("Hora Ent.", "H. entrada", "Hra. ingreso")
                    "hora_ent",
                    "hora_ing",
                    "h_entrada",
                    "h_ingreso",
                    "hra_entrada",
                    "hra_ingreso",
                    "hora_llegada",
                ),
            ),
            Composite(
                "exited_at",
                date=("exit_date", "fecha_salida"),
                time=(
                    "time_out",
                    "exit_hour",
                    "hora_salida",
                    "hora_sal",
                    "h_salida",
                    "hra_salida",
                    "hora_retiro",
                ),
                fallback_date_of="entered_at",
            ),
        ),
        name_parts=NAME_PARTS,
        own_key=("facility", "record_id"),
        derived={
            "entered_precision": "VARCHAR",
            "page_side": "VARCHAR",  # "verso": the back of the folio ``page`` (FOLIO_SIDE)
            "name_key": "VARCHAR",
            "escorted_key": "VARCHAR",
            "plate_key": "VARCHAR",
            "name_status": "VARCHAR",
            "host_key": "VARCHAR",
        },
        folded={"name_key": "name", "escorted_key": "escorted_by", "host_key": "host"},
        plates={"plate_key": "vehicle_plate"},
        name_status_of="name",
        precision={"entered_precision": "entered_at"},
        defaults={"party_size": 1},
        orders=(Order("exited_at", "entered_at", "exit_before_entry", stored=True),),
        facility_fields=("facility",),
        stays=("entered_at", "exited_at"),
        moment="entered_at",
        evidence=Evidence(
            "record_id",
            "facility",
            "logbook",
            "page",
            "line",
            "entered_at",
            "name",
            page_side="page_side",
        ),
        people=(
            Mention(
                "visitor",
                "name",
                "name_key",
                "name_status",
                "id_number",
                "id_type",
                inmate="inmate_id",
                plate="plate_key",
            ),
            Mention("escort", "escorted_by", "escorted_key"),
            # the person visited, as a public register writes (an official, a clerk)
            Mention("host", "host", "host_key"),
        ),  # fmt: skip
        signature=(
            "entered_at",
            "visitor",
            "visitante",
            "hora_ingreso",
            "hora_entrada",
            "time_in",
            "entry_time",
            "checkpoint",
            "garita",
            "party_size",
            "escorted_by",
            "autorizado_por",
            "fecha_ingreso",
            "logbook",
            "libro",
            "page",
            "folio",
        ),
    ),
    "transfers": KindSpec(
        name="transfers",
        fields=(
            Field("record_id", synonyms=("record_id", "id", "transfer_id", "correlativo")),
            Field(
                "inmate_id",
                required=True,
                synonyms=("inmate_id", "inmate", "interno", "id_interno"),
            ),
            Field(
                "from_facility",
                required=True,
                synonyms=("from_facility", "from", "origin", "centro_origen", "origen"),
            ),
            Field(
                "to_facility",
                required=True,
                synonyms=("to_facility", "to", "destination", "centro_destino", "destino"),
            ),
            Field(
                "transferred_at",
                "datetime",
                required=True,
                synonyms=("transferred_at", "transfer_date", "fecha_traslado", "date", "fecha"),
            ),
            Field("reason", "vocab", vocab="reason", synonyms=("reason", "motivo")),
            Field("authorized_by", synonyms=("authorized_by", "autorizado_por")),
            Field(
                "medical_approval",
                synonyms=("medical_approval", "aprobacion_medica", "visto_bueno_medico"),
                none_words=NO_APPROVAL,
            ),
            Field(
                "returned_at", "datetime", synonyms=("returned_at", "return_date", "fecha_retorno")
            ),
        ),
        natural_key=("inmate_id", "from_facility", "to_facility", "transferred_at"),
        own_key=("from_facility", "record_id"),
        person_key="inmate_id",
        moment="transferred_at",
        orders=(Order("returned_at", "transferred_at", "return_before_transfer"),),
        facility_fields=("from_facility", "to_facility"),
        evidence=Evidence(
            "record_id", "from_facility", happened_at="transferred_at", label="inmate_id"
        ),
        people=(Mention("authoriser", "authorized_by", inmate="inmate_id"),),
        signature=(
            "from_facility",
            "to_facility",
            "centro_origen",
            "centro_destino",
            "origen",
            "destino",
            "transfer_date",
            "fecha_traslado",
            "medical_approval",
            "aprobacion_medica",
            "visto_bueno_medico",
            "fecha_retorno",
            "return_date",
        ),
    ),
    "inmates": KindSpec(
        name="inmates",
        fields=(
            Field(
                "inmate_id", required=True, synonyms=("inmate_id", "interno", "id_interno", "id")
            ),
            Field("name", synonyms=("name", "nombre", "full_name", "nombre_completo")),
            Field("gang", synonyms=("gang", "pandilla", "estructura")),
            Field("rank", "vocab", vocab="rank", synonyms=("rank", "rango")),
            Field("facility", synonyms=("facility", "centro_penal", "centro", "prison")),
        ),
        natural_key=("inmate_id", "facility", "gang", "rank_raw", "name"),
        person_key="inmate_id",
        context=True,
        derived={"name_key": "VARCHAR"},
        folded={"name_key": "name"},
        facility_fields=("facility",),
        evidence=Evidence("inmate_id", "facility", label="name"),
        signature=("gang", "pandilla", "estructura", "rank", "rango"),
    ),
    "logbooks": KindSpec(
        name="logbooks",
        fields=(
            Field("logbook", required=True, synonyms=("logbook", "libro", "book")),
            Field(
                "facility", required=True, synonyms=("facility", "centro_penal", "centro", "prison")
            ),
            Field("checkpoint", synonyms=("checkpoint", "garita", "puesto", "gate")),
            Field("opened_on", "date", synonyms=("opened_on", "fecha_apertura", "opened")),
            Field("closed_on", "date", synonyms=("closed_on", "fecha_cierre", "closed")),
            Field("first_page", "int", synonyms=("first_page", "primera_pagina", "folio_inicial")),
            Field("last_page", "int", synonyms=("last_page", "ultima_pagina", "folio_final")),
            Field("status", "vocab", vocab="status", synonyms=("status", "estado")),
        ),
        natural_key=("facility", "checkpoint", "logbook"),
        orders=(
            Order("closed_on", "opened_on", "closed_before_opened"),
            Order("last_page", "first_page", "pages_reversed"),
        ),
        facility_fields=("facility",),
        evidence=Evidence(
            "logbook",
            "facility",
            "logbook",
            "first_page",
            happened_at="opened_on::TIMESTAMP",
            label="checkpoint",
        ),
        signature=(
            "opened_on",
            "closed_on",
            "fecha_apertura",
            "fecha_cierre",
            "first_page",
            "last_page",
            "folio_inicial",
            "folio_final",
        ),
    ),
    # Reader and turnstile events (badge systems, gate registers, plate cameras): one row
    # per time someone (or a vehicle) was seen at a reader, going in or out.
    "events": KindSpec(
        name="events",
        fields=(
            Field(
                "record_id", synonyms=("record_id", "event_id", "id", "marcacion_id", "correlativo")
            ),
            Field(
                "seen_at",
                "datetime",
                required=True,
                synonyms=(
                    "at",
                    "seen_at",
                    "time",
                    "timestamp",
                    "datetime",
                    "event_time",
                    "fecha_hora",
                    "marcacion",
                    "hora_marcacion",
                    "date_time",
                ),
            ),
            Field(
                "facility",
                required=True,
                synonyms=(
                    "facility",
                    "site",
                    "sitio",
                    "centro_penal",
                    "centro",
                    "prison",
                    "building",
                ),
            ),
            Field(
                "name",
                synonyms=("name", "nombre", "person", "persona", "employee", "empleado", "titular"),
            ),
            Field(
                "badge",
                synonyms=(
                    "badge",
                    "badge_id",
                    "card",
                    "card_id",
                    "card_no",
                    "card_number",
                    "tarjeta",
                    "no_tarjeta",
                    "numero_de_tarjeta",
                    "numero_tarjeta",
                    "gafete",
                    "credencial",
                    "carnet",
                ),
            ),
            Field(
                "id_number",
                synonyms=(
                    "id_number",
                    "documento",
                    "dui",
                    "document",
                    "personnel_no",
                    "no_personal",
                    "employee_id",
                    "id_empleado",
                    "codigo_empleado",
                ),
            ),  # fmt: skip
            Field(
                "reader",
                synonyms=(
                    "reader",
                    "lector",
                    "door",
                    "puerta",
                    "torniquete",
                    "turnstile",
                    "device",
                    "device_name",
                    "dispositivo",
                    "nombre_del_dispositivo",
                    "event_point",
                    "punto_de_evento",
                    "door_name",
                    "nombre_puerta",
                    "gate",
                ),
            ),
            Field("zone", synonyms=("zone", "zona", "area", "sector")),
            Field(
                "direction",
                "vocab",
                vocab="direction",
                synonyms=(
                    "direction",
                    "direccion",
                    "sentido",
                    "in_out",
                    "i_o_status",
                    "in_out_status",
                    "entrada_salida",
                    "estado_de_e_s",
                    "e_s",
                    "tipo_marcacion",
                    # a time clock's export (ZKTeco: "Estado" / "Punch State", "Entrada")
                    "estado",
                    "marcacion",
                    "punch_state",
                    "state",
                    "check_type",
                ),
            ),
            Field(
                "outcome",
                "vocab",
                vocab="outcome",
                synonyms=(
                    "outcome",
                    "result",
                    "resultado",
                    "access_result",
                    "resultado_acceso",
                    "event_type",
                    "tipo_evento",
                    "evento",
                    "estado_acceso",
                    "event_description",
                    "descripcion_del_evento",
                    "descripcion_evento",
                ),
            ),
            Field("vehicle_plate", synonyms=("vehicle_plate", "plate", "placa", "matricula")),
            Field("source_system", synonyms=("source_system", "system", "sistema", "fuente")),
        ),
        composites=(Composite("seen_at", ("date", "fecha"), ("hour", "hora")),),
        name_parts=NAME_PARTS,
        natural_key=(
            "facility",
            "reader",
            "seen_at",
            "badge",
            "name",
            "direction_raw",
            "outcome_raw",
        ),  # fmt: skip
        own_key=("facility", "record_id"),
        signature=(
            "reader",
            "lector",
            "torniquete",
            "turnstile",
            "badge",
            "tarjeta",
            "gafete",
            "direction",
            "direccion",
            "sentido",
            "marcacion",
        ),
        derived={
            "name_key": "VARCHAR",
            "plate_key": "VARCHAR",
            "person_key": "VARCHAR",
            "name_status": "VARCHAR",
            "reader_key": "VARCHAR",
            "zone_key": "VARCHAR",
        },
        # Readers and zones are matched to the zones list folded, as people write them
        # ("PROX-IN-BUILDING", "Perimetro" and "perímetro" are one).
        folded={"name_key": "name", "reader_key": "reader", "zone_key": "zone"},
        plates={"plate_key": "vehicle_plate"},
        name_status_of="name",  # "Acompañante" on a visitor pass names nobody
        # A badge and the name it was read under are one person: a visitor badge handed
        # back and issued to the next visitor (the White House's WAVES reuses one within
        # the hour) is two people, while a badge lent or cloned still reads its holder's name.
        person={"person_key": (("badge", "name_key"), "badge", "id_number", "name_key")},
        facility_fields=("facility",),
        moment="seen_at",
        evidence=Evidence(
            "coalesce(record_id, reader)",
            "facility",
            happened_at="seen_at",
            label="coalesce(name, badge, vehicle_plate, reader)",
        ),
        views=(View(PASSAGE_REPEATS), View(PASSAGES, computed=False), View(EVENT_STAYS)),
        people=(
            Mention(
                "badge_holder",
                "name",
                "name_key",
                "name_status",
                "id_number",
                badge="badge",
                plate="plate_key",
            ),
        ),  # fmt: skip
    ),
    # The zones of a facility, nested (perimeter ⊃ building ⊃ maximum-security wing), and
    # the readers in each: what the event rules read "inside" and "further in" by.
    "zones": KindSpec(
        name="zones",
        fields=(
            Field(
                "facility",
                required=True,
                synonyms=("facility", "site", "sitio", "centro_penal", "centro"),
            ),
            Field("zone", required=True, synonyms=("zone", "zona", "area", "sector")),
            Field(
                "inside",
                synonyms=("inside", "parent", "within", "dentro_de", "zona_padre", "padre"),
            ),
            Field(
                "reader", synonyms=("reader", "lector", "door", "puerta", "torniquete", "turnstile")
            ),
            # Everyone must badge in and out of it, one by one (a classified area, the
            # maximum-security wing): a single exit never read coming in is a finding there.
            Field(
                "strict",
                "vocab",
                vocab="yes_no",
                synonyms=("strict", "estricta", "control_estricto", "badge_every_passage"),
            ),
        ),
        natural_key=("facility", "zone", "reader"),
        signature=("inside", "parent", "dentro_de", "zona_padre"),
        context=True,
        derived={"reader_key": "VARCHAR", "zone_key": "VARCHAR"},
        folded={"reader_key": "reader", "zone_key": "zone"},
        facility_fields=("facility",),
        evidence=Evidence("zone", "facility", label="coalesce(reader, inside)"),
        nesting=("facility", "zone", "inside"),
    ),
    # Staff away by the personnel roster (leave, sick leave, suspension, dismissal): a
    # badge read while its holder is away was used by someone else, or the roster is wrong.
    "absences": KindSpec(
        name="absences",
        fields=(
            Field("record_id", synonyms=("record_id", "id", "correlativo")),
            Field(
                "name",
                synonyms=("name", "nombre", "employee", "empleado", "servidor", "agente"),
            ),
            Field("badge", synonyms=("badge", "badge_id", "card", "tarjeta", "gafete", "carnet")),
            Field("id_number", synonyms=("id_number", "documento", "dui", "document")),
            Field("facility", synonyms=("facility", "centro_penal", "centro", "site", "sitio")),
            Field(
                "starts_on",
                "date",
                required=True,
                synonyms=(*_AWAY_FROM, "desde"),
            ),
            Field(
                "ends_on",
                "date",
                synonyms=(
                    "ends_on",
                    "away_until",
                    "absent_until",
                    "leave_until",
                    "leave_end",
                    "ausente_hasta",
                    "licencia_hasta",
                    "fecha_fin_licencia",
                    "hasta",
                ),
            ),
            Field(
                "reason",
                synonyms=("reason", "leave_type", "motivo", "motivo_ausencia", "tipo_licencia"),
            ),
        ),
        name_parts=NAME_PARTS,
        natural_key=("name", "badge", "id_number", "starts_on"),
        own_key=("record_id",),
        signature=(*_AWAY_FROM, "ends_on", "motivo_ausencia", "tipo_licencia"),
        context=True,
        derived={"name_key": "VARCHAR", "person_key": "VARCHAR"},
        folded={"name_key": "name"},
        person={"person_key": ("badge", "id_number", "name_key")},
        orders=(Order("ends_on", "starts_on", "ends_before_start"),),
        facility_fields=("facility",),
        evidence=Evidence(
            "coalesce(record_id, badge, id_number)",
            "facility",
            happened_at="starts_on::TIMESTAMP",
            label="name",
        ),
        people=(Mention("staff", "name", "name_key", document="id_number", badge="badge"),),
    ),
    # The daily headcount register (conteo / recuento de internos): the prison counted its
    # inmates that day, so it was running and staffed, whatever its books say.
    "headcounts": KindSpec(
        name="headcounts",
        fields=(
            Field(
                "facility",
                required=True,
                synonyms=("facility", "centro_penal", "centro", "penal", "prison", "site"),
            ),
            Field(
                "counted_on",
                "date",
                required=True,
                synonyms=("counted_on", "count_date", "fecha_conteo", "fecha_recuento", "fecha"),
            ),
            Field(
                "population",
                "int",
                required=True,
                synonyms=(
                    "population",
                    "count",
                    "poblacion",
                    "total_internos",
                    "internos_presentes",
                    "conteo",
                    "recuento",
                ),
            ),
            Field("shift", synonyms=("shift", "turno")),
            Field("counted_by", synonyms=("counted_by", "contado_por", "responsable")),
        ),
        natural_key=("facility", "counted_on", "shift"),
        signature=("population", "poblacion", "total_internos", "fecha_conteo", "recuento"),
        facility_fields=("facility",),
        moment="counted_on",
        evidence=Evidence(
            "strftime(counted_on, '%Y-%m-%d') || coalesce(' ' || shift, '')",
            "facility",
            happened_at="counted_on::TIMESTAMP",
            label="population::VARCHAR",
        ),
    ),
    "facilities": KindSpec(
        name="facilities",
        fields=(
            Field("facility", required=True, synonyms=("facility", "code", "codigo")),
            Field("name", synonyms=("name", "nombre")),
            Field("kind", "vocab", vocab="facility_kind", synonyms=("kind", "tipo", "type")),
            Field(
                "security_level",
                "vocab",
                vocab="security_level",
                synonyms=("security_level", "nivel_seguridad", "seguridad"),
            ),
            Field("visiting_hours", synonyms=("visiting_hours", "horario_visitas", "horario")),
            # Hours per role beside the visiting hours, e.g.
            # "police 00:00-24:00; contractor Mon-Fri 06:00-11:00; lawyer 08:00-17:00".
            Field(
                "role_hours",
                synonyms=("role_hours", "horario_por_calidad", "horarios_especiales"),
            ),
        ),
        natural_key=("facility",),
        context=True,
        signature=("security_level", "nivel_seguridad", "visiting_hours", "horario_visitas"),
        evidence=Evidence("facility", "facility", label="name"),
    ),
}


# Every kind, in ingest order: reference kinds first (the facilities list, then the
# roster), so that one ingest of a whole folder can check the rest against them.
KINDS = tuple(sorted(SPECS, key=lambda k: (not SPECS[k].context, k != "facilities", k)))
INGEST_ORDER = {kind: i for i, kind in enumerate(KINDS)}


def fold_sql(expr: str) -> str:
    """A text folded in SQL as ``mapping.fold_values`` folds it at ingest (accents and
    case aside, single spaces): to fill a folded column for rows stored before it existed."""
    return f"nullif(trim(regexp_replace(upper(strip_accents({expr})), '\\s+', ' ', 'g')), '')"


def sql_string(text: object) -> str:
    """``text`` as an SQL string literal (its single quotes doubled): for values and paths
    written into SQL, where a parameter cannot go (a file a COPY or read_parquet names)."""
    return "'" + str(text).replace("'", "''") + "'"


def name_status_sql(key: str = "name_key") -> str:
    """The built-in ``name_status`` classification as a SQL expression over a folded name
    key: fills the column for rows stored before it existed (see ``store.MIGRATIONS``).
    ``mapping.name_status`` is the same classification at ingest, with a source's additions.
    """
    token = "(" + "|".join(REDACTION_TOKENS) + ")"
    only_tokens = rf"^{token}([\s,;/-]+{token})*$"
    words = ", ".join(sql_string(w) for w in NAME_PLACEHOLDERS)
    bare = ", ".join(sql_string(w) for w in bare_placeholders(NAME_PLACEHOLDERS))
    k = f"coalesce({key}, '')"
    return (
        f"CASE WHEN regexp_matches({k}, '{only_tokens}') THEN 'redacted' "
        f"WHEN {k} = '' OR NOT regexp_matches({k}, '[A-Z0-9]') THEN 'blank' "
        f"WHEN {k} IN ({words}) OR (split_part({k}, ' ', 1) IN ({words}) "
        f"AND regexp_matches({k}, '{PLACEHOLDER_TAIL}')) "
        f"OR regexp_replace({k}, '{NOT_ALNUM}', '', 'g') IN ({bare}) THEN 'placeholder' "
        "ELSE 'named' END"
    )
