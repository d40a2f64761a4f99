"""What a reader must not meet in a language's text: words of the other language, the
tool's internal words (None, False, snake_case names, rule ids), dates and numbers written
the other language's way, and sentences glued from pieces ("el/los", "fila(s)", "(id —)").
The Spanish and English page walks, the rule texts and the command line use these."""

from __future__ import annotations

import functools
import re


def _vocabulary(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that are English and not Spanish: none may be left in the Spanish interface
# (identifiers such as rule ids, file names and codes are skipped: they hold a "-", "_"
# or "."; names in the data are Spanish in the demo world).
ENGLISH = _vocabulary(
    """
    the and of to in is are was were be been it its this that these those with without for
    from by on at or not none all any every each which who what when where why how yet only
    also than then there here more most less first last new open opened close closed save
    saved load loading upload uploaded uploads file files flag flags rule rules risk review
    reviews queue status search filter filters clear include select selected export page
    pages book books line lines row rows column columns field fields required mapping map
    date dates order week weeks hour hours day days entries entry visit visits visitor
    visitors person persons people official officials inmate inmates facility facilities
    transfer transfers evidence ledger run runs schedule schedules user users username
    password role roles log login logout signed assigned assign assignee note notes reason
    confirmed dismissed suppressed suppress until named reads read kind holds drag drop
    browse limit per choose options option nothing empty please click show shown hide found
    missing removed model score scores scoring outlier explanation period overview timeline
    related same history action actions weights verify intact preview try again busy
    database expired idle minutes seconds deploy running stop settings rerun print record
    records source state category severity high low medium critical informational
    quarantine quarantined stored duplicate already english yes rarest reference usual
    usually seldom lasted between within
    false true benign out scored affected independence holidays holiday leader leaders
    entered unknown party minors hits usage arguments commands help message exit default
    argument such mismatch fail
    """
)

# Spanish words of the interface (not of the demo world's data, which is Spanish in every
# language: names, places, raw values): none may be left in the English interface.
SPANISH = _vocabulary(
    """
    hallazgo hallazgos revisión cola guardar guardado guardada cargar carga cargas archivo
    archivos fila filas folio folios línea líneas estado motivo nota asignar asignado
    suprimir hasta desde según cuando donde porque para una este esta evidencia ejecución
    ejecuciones panorama usuario contraseña idioma riesgo regla reglas internos
    semana horas días ninguno ninguna cuarentena descartado confirmado nuevo nueva salida
    fecha tipo campo columna asignación elegir cerrar sesión iniciar personas entró anotado
    registro también sí
    """
)

ISO_DATE = re.compile(r"(?<![\w-])\d{4}-\d{2}-\d{2}(?![\w-])")
SNAKE = re.compile(r"(?<![\w./\\-])[a-z]+(?:_[a-z0-9]+)+(?![\w./\\-])")
INTERNAL = re.compile(r"\b(None|False|True|NaN|null|ECOD|IFOREST|COPOD|HBOS)\b")
GLUED = re.compile(
    r"\b\w+/\w+\(\w+\)|\(s\)|\(es\)|\b(el|la|lo)/(los|las)\b|\ba el\b|\(a\)"
    r"|\(\s*\w*\s*—\s*\)|(?:^|[.:;]\s)—\s|\"\"|«»"
    # one said as many ("solo 1 tienen nombre"), a time said twice ("a las 21:48 el
    # 11/10/2019 21:48"), a word repeated in brackets ('"Retirado" (retirado)'), a subject
    # given a gender it may not have ("Patricia Escobar ... fue leído")
    r"|\b(?:solo |de )?1 (?:\w+ )?(?:tienen|entraron|fueron|son|están|pudieron)\b"
    r"|\ba las (?P<time>\d{1,2}:\d{2}) el \d{2}/\d{2}/\d{4} (?P=time)\b"
    r"|[\"«](?P<word>\w+)[\"»] \((?i:(?P=word))\)"
    r"|\bfue leíd[oa]\b"
)
NUMBER = re.compile(r"(?<![\w.,/:])\d+(?:[.,]\d+)+(?![\w.,/:]|[.,]\d)")


@functools.cache
def rule_ids() -> frozenset[str]:
    from detector.rulebook import load_rules

    return frozenset(r.id for r in load_rules())


def words(text: str, vocabulary: frozenset[str]) -> list[str]:
    """The words of ``vocabulary`` in a text, identifiers (with "-", "_", ".", "/", "@" or a
    digit) left out."""
    found = []
    for token in text.split():
        if any(c in token for c in "-_./@") or any(c.isdigit() for c in token):
            continue
        word = "".join(c for c in token if c.isalpha()).lower()
        if word in vocabulary:
            found.append(word)
    return sorted(set(found))


def english_words(text: str) -> list[str]:
    return words(text, ENGLISH)


def _english_number(figure: str) -> bool:
    """A figure written the English way in Spanish text: a dot before decimals ("12.0",
    "4.636": Spanish groups four digits only from 10.000 on) or a comma between thousands."""
    if "," in figure and "." not in figure:
        # "1,234" (a Spanish "1,5" or "0,987" is fine)
        return bool(re.fullmatch(r"[1-9]\d{0,2}(,\d{3})+", figure))
    if "." in figure and "," not in figure:
        return not re.fullmatch(r"\d{2,3}(\.\d{3})+|\d(\.\d{3}){2,}", figure)
    return figure.index(",") < figure.index(".")  # "1,234.5"


def spanish_leftovers(text: str) -> list[str]:
    """Everything in a Spanish text that is not Spanish for its reader."""
    found = [f"english: {w}" for w in english_words(text)]
    found += [f"internal: {m}" for m in sorted(set(INTERNAL.findall(text)))]
    found += [f"snake_case: {m}" for m in sorted(set(SNAKE.findall(text)))]
    found += [f"ISO date: {m}" for m in sorted(set(ISO_DATE.findall(text)))]
    found += [
        f"English number: {m}" for m in sorted(set(NUMBER.findall(text))) if _english_number(m)
    ]
    found += [f"glued: {m.group(0)}" for m in GLUED.finditer(text)]
    found += [
        f"rule id: {r}" for r in sorted(rule_ids()) if re.search(rf"(?<![\w-]){r}(?![\w-])", text)
    ]
    return found


def english_leftovers(text: str) -> list[str]:
    """Everything in an English text that is Spanish, internal or glued."""
    found = [f"spanish: {w}" for w in words(text, SPANISH)]
    found += [f"internal: {m}" for m in sorted(set(INTERNAL.findall(text)))]
    found += [f"snake_case: {m}" for m in sorted(set(SNAKE.findall(text)))]
    return found
