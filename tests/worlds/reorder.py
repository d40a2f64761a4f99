"""A generated world whose books, for a span of time, write every name surname first.

Clerks change: one year's books write "Pérez López Juan" where the others write "Juan
Pérez López". ``surname_first(folder, start, end)`` rewrites the visit files that
``detector generate`` wrote (both its layouts) in place: each line entered in
[start, end) gets its name's first word (the given name) moved to the end. Identity
linkage must still see one person across the two spellings.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path

# (encoding, delimiter, name column, date column, how the date is written) per layout
LAYOUTS = {
    "visits_": ("utf-8", ",", "name", "entered_at", "%Y-%m-%dT%H:%M:%S"),
    "visitas_": ("cp1252", ";", "Nombre", "Fecha", "%d/%m/%Y"),
}


def reordered(name: str) -> str:
    """ "Juan Pérez López" -> "Pérez López Juan"; a one-word name stays."""
    words = name.split()
    return " ".join(words[1:] + words[:1]) if len(words) > 1 else name


def surname_first(folder: Path, start: date, end: date) -> int:
    """Rewrite the names of the lines entered in [start, end) surname first; how many."""
    changed = 0
    for path in sorted(Path(folder).glob("visit*.csv")):
        prefix = next(p for p in LAYOUTS if path.name.startswith(p))
        encoding, delimiter, name_col, date_col, fmt = LAYOUTS[prefix]
        text = path.read_text(encoding=encoding)
        rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
        if not rows:
            continue
        header = list(rows[0])
        date_header = next(h for h in header if h.strip() == date_col)
        for row in rows:
            raw = row[date_header].strip()
            if not raw:
                continue
            day = datetime.strptime(raw[: len(datetime(2000, 1, 1).strftime(fmt))], fmt).date()
            if start <= day < end and row[name_col]:
                row[name_col] = reordered(row[name_col])
                changed += 1
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=header, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(out.getvalue(), encoding=encoding, newline="")
    return changed
