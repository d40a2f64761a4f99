"""The canonical record kinds: their fields, header synonyms and value vocabularies."""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("facilities", "inmates", "logbooks", "transfers", "visits")
# Reference kinds first, so that one ingest of a whole folder can check visits against them.
INGEST_ORDER = {kind: i for i, kind in enumerate(KINDS)}


@dataclass(frozen=True)
class Field:
    """One canonical column.

    ``type`` is one of ``text``, ``int``, ``datetime``, ``date``, ``time`` or ``vocab``
    (a text whose values are mapped onto ``vocab`` in a ``<name>`` column while the
    original stays in ``<name>_raw``).
    """

    name: str
    type: str = "text"
    required: bool = False
    synonyms: tuple[str, ...] = ()
    vocab: str | None = None


@dataclass(frozen=True)
class Composite:
    """A canonical datetime that may instead be built from a date column plus a time column."""

    target: str
    date: tuple[str, ...]
    time: tuple[str, ...]
    # For exits: the date column of another composite to fall back on when this one has none.
    fallback_date_of: str | None = None


@dataclass(frozen=True)
class KindSpec:
    name: str
    fields: tuple[Field, ...]
    composites: tuple[Composite, ...] = ()
    # A name may instead be joined from these (first names, last names) columns.
    name_parts: tuple[tuple[str, ...], ...] = ()
    # Fields that identify one record when the source has no record_id.
    natural_key: tuple[str, ...] = ()
    # Headers that point strongly to this kind when detecting it.
    signature: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]


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
        ),
        "lawyer": ("lawyer", "abogado", "abogada", "defensor", "defensora", "attorney"),
        "official": (
            "official",
            "funcionario",
            "funcionaria",
            "director",
            "directora",
            "autoridad",
            "government",
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
            "salud",
            "consulta",
            "hospital",
            "hospitalizacion",
            "health",
            "emergencia",
        ),
        "security": ("security", "seguridad"),
        "court": ("court", "audiencia", "judicial", "tribunal", "juzgado"),
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
}

# How a visit's name reads (the ``name_status`` column): "named", "blank" (nothing, or only
# punctuation), "placeholder" (a word written instead of a name) or "redacted" (a marker the
# publisher wrote where it withheld the name: a legal withholding, not a missing entry).
# Words are matched on the folded name key (upper case, no accents); a mapping file adds
# its own with ``placeholders = [...]`` and ``redactions = [...]``.
NAME_PLACEHOLDERS = (
    "N/A", "N/I", "NI", "NN", "S/N", "SN", "X", "XX", "XXX", "DESCONOCIDO", "DESCONOCIDA",
    "ACOMPANANTE", "ENCAPUCHADO", "ENCAPUCHADA", "NO IDENTIFICADO", "NO IDENTIFICADA",
    "SIN NOMBRE", "UNKNOWN", "ESCOLTA", "INVITADO", "INVITADA", "PERSONA", "VISITANTE",
    "GUEST", "ESCORT", "NONE", "NAME UNKNOWN",
)  # fmt: skip
# A placeholder followed by a number or a "de/del ..." tail is one too ("Acompañante 2").
PLACEHOLDER_TAIL = r"^\S+ (\d+|DE .*|DEL .*)$"
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
    ),
}  # fmt: skip
# A "visit" file whose median stay is longer than this holds custody records, not visits.
MAX_MEDIAN_STAY_DAYS = 3

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
                synonyms=("name", "full_name", "visitor", "nombre", "nombre_completo", "visitante"),
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
                synonyms=("role", "visitor_type", "calidad", "tipo_visitante"),
            ),
            Field(
                "organization",
                synonyms=("organization", "institution", "institucion", "dependencia"),
            ),
            Field(
                "escorted_by",
                synonyms=(
                    "escorted_by",
                    "authorized_by",
                    "host",
                    "autorizado_por",
                    "acompanado_por",
                ),
            ),
            Field(
                "inmate_id",
                synonyms=("inmate_id", "inmate", "interno", "privado_de_libertad", "id_interno"),
            ),
            Field("purpose", synonyms=("purpose", "reason", "motivo")),
            Field("vehicle_plate", synonyms=("vehicle_plate", "plate", "placa", "vehiculo")),
            Field(
                "party_size",
                "int",
                synonyms=("party_size", "people", "total_people", "personas", "num_personas"),
            ),
            Field("party_id", synonyms=("party_id", "group_id", "appointment_id", "grupo", "cita")),
        ),
        composites=(
            Composite(
                "entered_at",
                date=("date", "entry_date", "fecha", "fecha_ingreso"),
                time=("time_in", "entry_hour", "hora_ingreso", "hora_entrada"),
            ),
            Composite(
                "exited_at",
                date=("exit_date", "fecha_salida"),
                time=("time_out", "exit_hour", "hora_salida"),
                fallback_date_of="entered_at",
            ),
        ),
        name_parts=(
            ("first_name", "first_names", "nombres", "nombre_s"),
            ("last_name", "last_names", "apellidos", "apellido"),
        ),
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
            ),
            Field(
                "returned_at", "datetime", synonyms=("returned_at", "return_date", "fecha_retorno")
            ),
        ),
        natural_key=("inmate_id", "from_facility", "to_facility", "transferred_at"),
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
        signature=("security_level", "nivel_seguridad", "visiting_hours", "horario_visitas"),
    ),
}


def name_status_sql(key: str = "name_key") -> str:
    """The built-in ``name_status`` classification as a SQL expression over a folded name
    key: fills the column for rows stored before it existed (see ``store.MIGRATIONS``).
    ``mapping.name_status`` is the same classification at ingest, with a source's additions.
    """
    token = "(" + "|".join(REDACTION_TOKENS) + ")"
    only_tokens = rf"^{token}([\s,;/-]+{token})*$"
    words = ", ".join("'" + w.replace("'", "''") + "'" for w in NAME_PLACEHOLDERS)
    k = f"coalesce({key}, '')"
    return (
        f"CASE WHEN regexp_matches({k}, '{only_tokens}') THEN 'redacted' "
        f"WHEN {k} = '' OR NOT regexp_matches({k}, '[A-Z0-9]') THEN 'blank' "
        f"WHEN {k} IN ({words}) OR (split_part({k}, ' ', 1) IN ({words}) "
        f"AND regexp_matches({k}, '{PLACEHOLDER_TAIL}')) THEN 'placeholder' "
        "ELSE 'named' END"
    )
