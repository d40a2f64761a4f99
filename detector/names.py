"""Personal names as Spanish-speaking clerks write them: words, a Spanish phonetic key, and
how common a name is.

A name in a prison book is given names and surnames in either order ("Pérez López, Juan
Carlos"), with or without accents, titles ("Lic.", "Sub-insp.") and particles ("de", "del",
"vda. de"), second names and second surnames dropped, and letters a clerk hears alike
written either way (s/z/c, b/v, ll/y, a silent h). Identity linkage (``detector.identity``)
compares names by the words they are made of, in any order, and by how they sound.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

# Words that are not part of anyone's name: titles, ranks and posts written before or
# after it. Folded (upper case, no accents, no dots).
TITLES = frozenset(
    (
        "LIC", "LICDA", "LICDO", "LICENCIADO", "LICENCIADA", "DR", "DRA", "DOCTOR", "DOCTORA",
        "ING", "INGA", "INGENIERO", "INGENIERA", "ARQ", "SR", "SRA", "SRTA", "SENOR", "SENORA",
        "SENORITA", "DON", "DONA", "PROF", "PROFA", "PROFESOR", "PROFESORA", "MSC", "MTRO",
        "MTRA", "INSP", "SUBINSP", "SUB", "INSPECTOR", "SUBINSPECTOR", "INSPECTORA", "DIR",
        "DIRECTOR", "DIRECTORA", "GRAL", "GENERAL", "CAP", "CAPITAN", "SGTO", "SARGENTO", "AGTE",
        "AGENTE", "CABO", "CNEL", "CORONEL", "TTE", "TENIENTE", "COMISIONADO", "HNO", "HNA",
        "SOR", "FRAY", "PBRO", "PADRE", "MONS", "REF", "JEFE", "JEFA", "MEDICO", "MEDICA",
        "ABOGADO", "ABOGADA", "DEFENSOR", "DEFENSORA", "FISCAL", "JUEZ", "JUEZA",
    )
)  # fmt: skip
# Particles between the words of a name ("Hernández de Cruz", "del Carmen", "Pérez y
# López", "vda. de Martínez"): they carry nothing a clerk keeps consistently.
PARTICLES = frozenset(["DE", "DEL", "LA", "LAS", "LOS", "Y", "E", "VDA", "VIUDA", "VIUDO"])

_SPLIT = re.compile(r"[\s,;/\-–—]+")
_NOT_LETTER = re.compile(r"[^A-Z]")
_VOWEL = re.compile(r"[AEIOUY]")


def fold(text: str) -> str:
    """Upper case without accents (``Ñ`` becomes ``N``), as the stored name keys are."""
    text = unicodedata.normalize("NFKD", str(text))
    return "".join(c for c in text if not unicodedata.combining(c)).upper()


def words(name: str | None) -> list[str]:
    """The words of a name, in the order written: titles, particles, numbers ("ref.
    DM-004") and punctuation left out; a hyphenated double surname is two words. A name
    made only of titles keeps them (it is still what was written)."""
    if not name:
        return []
    raw = [w for w in _SPLIT.split(fold(name)) if w and not any(c.isdigit() for c in w)]
    cleaned = [_NOT_LETTER.sub("", w) for w in raw]
    # a run of consonants is an abbreviation ("DM" of "ref. DM-004"), not a name; one
    # letter is an initial and is kept
    cleaned = [w for w in cleaned if len(w) == 1 or _VOWEL.search(w)]
    kept = [w for w in cleaned if w not in TITLES and w not in PARTICLES]
    return kept or [w for w in cleaned if w not in PARTICLES]


# Spanish spelling -> sound, in order: what a clerk may write either way. Each pair is a
# regular expression over folded upper-case letters and its replacement.
_SOUNDS = (
    (r"CH", "0"),  # kept apart from C and H until the end
    (r"PH", "F"),
    (r"LL", "Y"),
    (r"QU(?=[EI])", "K"),
    (r"GU(?=[EI])", "1"),  # a hard g ("Guillermo"), kept apart from the soft one
    (r"C(?=[EI])", "S"),
    (r"G(?=[EI])", "J"),
    (r"[CQK]", "K"),
    (r"[ZX]", "S"),
    (r"[VW]", "B"),
    (r"H", ""),
    (r"Y(?![AEIOU])", "I"),  # a final or pre-consonant y is a vowel
    (r"N(?=[BP])", "M"),
    (r"(.)\1+", r"\1"),  # doubled letters (RR, SS, NN) are one sound
    (r"0", "CH"),
    (r"1", "G"),
)
_SOUND_RULES = tuple((re.compile(p), r) for p, r in _SOUNDS)


@functools.lru_cache(maxsize=1 << 16)  # names share their words: each is sounded once
def phonetic(word: str) -> str:
    """A Spanish phonetic key of one folded word: letters a Spanish speaker hears alike are
    one ("HERNANDEZ", "ERNANDES" and "HERNANDES" are ``ERNANDES``; "VELASQUEZ" and
    "BELAZQUES" are ``BELASKES``; "YANIRA"/"LLANIRA", "GIOVANNI"/"JIOBANI"). Not
    Soundex: vowels are kept, since Spanish vowels are written as they sound."""
    key = fold(word)
    for pattern, replacement in _SOUND_RULES:
        key = pattern.sub(replacement, key)
    return key


def turned(parts: list[str] | tuple[str, ...]) -> str:
    """The words in their first order among all the ways of turning them round: a name
    written surname first is the same name turned round ("PEREZ LOPEZ JUAN CARLOS" and
    "JUAN CARLOS PEREZ LOPEZ" are both ``CARLOS PEREZ LOPEZ JUAN``), while swapping two
    surnames ("JUAN LOPEZ PEREZ") is another name."""
    parts = list(parts)
    return min((" ".join(parts[i:] + parts[:i]) for i in range(len(parts))), default="")


@dataclass(frozen=True)
class Name:
    """A name reduced to what linkage compares: its words and their sounds in the order
    written, and each as one key whichever word was written first (``canonical``,
    ``sounds_key``): "Pérez López, Juan" and "Juan Pérez López" are one name."""

    words: tuple[str, ...]
    sounds: tuple[str, ...]

    @property
    def canonical(self) -> str:
        return turned(self.words)

    @property
    def sounds_key(self) -> str:
        return turned(self.sounds)


def parse(name: str | None) -> Name:
    ws = words(name)
    return Name(tuple(ws), tuple(phonetic(w) for w in ws))


# How common a name is where these prisons are: the share of people carrying each word,
# for the most frequent given names and surnames of El Salvador and its neighbours (civil
# registry and census tallies, rounded). Used as a floor under the term frequencies the
# store itself gives, so that a name everybody carries ("José Martínez") is weak evidence
# even in a store too small to show it. A word not listed is taken as rare.
COMMON_WORDS: dict[str, float] = {
    # given names (share of people with the word among their given names)
    "JOSE": 0.060, "MARIA": 0.080, "JUAN": 0.030, "CARLOS": 0.025, "LUIS": 0.020,
    "ANA": 0.025, "ANTONIO": 0.020, "JORGE": 0.012, "FRANCISCO": 0.012, "MANUEL": 0.012,
    "MIGUEL": 0.012, "ROSA": 0.015, "CARMEN": 0.015, "JESUS": 0.010, "MARTA": 0.008,
    "MARIO": 0.010, "OSCAR": 0.008, "ROBERTO": 0.008, "ERNESTO": 0.008, "ALEXANDER": 0.008,
    "ELIZABETH": 0.008, "GUADALUPE": 0.008, "SANTOS": 0.008, "PEDRO": 0.008, "JUANA": 0.006,
    "ISABEL": 0.008, "PATRICIA": 0.006, "SANDRA": 0.006, "CLAUDIA": 0.006, "WILLIAM": 0.006,
    "MAURICIO": 0.006, "RENE": 0.006, "JULIO": 0.006, "ALBERTO": 0.008, "ENRIQUE": 0.006,
    "RAFAEL": 0.006, "SALVADOR": 0.006, "ANGEL": 0.008, "EDWIN": 0.005, "NELSON": 0.005,
    # surnames (share of people with the word as one of their two surnames)
    "HERNANDEZ": 0.090, "MARTINEZ": 0.050, "LOPEZ": 0.050, "GARCIA": 0.040,
    "RODRIGUEZ": 0.035, "GONZALEZ": 0.030, "RIVERA": 0.030, "RAMIREZ": 0.030,
    "FLORES": 0.030, "PEREZ": 0.030, "CRUZ": 0.025, "GOMEZ": 0.020, "ALVARADO": 0.015,
    "DIAZ": 0.015, "ROMERO": 0.015, "REYES": 0.015, "MEJIA": 0.015, "CASTILLO": 0.012,
    "ORTIZ": 0.012, "GUEVARA": 0.012, "AGUILAR": 0.012, "MENJIVAR": 0.012, "ESCOBAR": 0.010,
    "SANCHEZ": 0.012, "MORALES": 0.012, "VASQUEZ": 0.012, "AYALA": 0.010, "PORTILLO": 0.010,
    "RIVAS": 0.010, "CASTRO": 0.010, "ORELLANA": 0.010, "MOLINA": 0.008, "GUARDADO": 0.006,
    "SOSA": 0.008, "RAMOS": 0.010, "MENDOZA": 0.010, "LEMUS": 0.006, "ARGUETA": 0.008,
    "CHAVEZ": 0.008, "FUENTES": 0.006, "CAMPOS": 0.008, "MIRANDA": 0.006, "SERRANO": 0.006,
}  # fmt: skip
RARE_WORD = 0.002  # the share taken for a word not listed


def commonness(name: Name) -> float:
    """The share of people expected to carry all these words, as if chosen independently
    (``JOSE MARTINEZ`` about 3 in 1,000; ``OSIRIS LUNA`` about 4 in a million). The
    lower bound on how often two different people share this name."""
    share = 1.0
    for word in name.words:
        share *= COMMON_WORDS.get(word, RARE_WORD)
    return share
