"""Rule scopes: what new data a rule's hits can depend on, declared once.

An incremental rule run reads, for a rule of a scope, only the part of each table that the
new uploads touch, and resolves only the flags of that part that stopped firing. A scope
names, for any record kind, the keys a row of it touches (SQL over the kind's table): the
touched keys are those of the new uploads' rows, and each table is narrowed to its rows
with a touched key. The keys come from the kinds' declarations (``detector.schema``): a
kind with a facility is narrowed by the facility scope, one with a logbook by the logbook
scope, and so on, so a new kind is narrowed without being named here. A table a scope has
no key for reads nothing for it (``FALSE``).

``global`` is not here: such rules always read everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from detector.schema import KINDS, SPECS, KindSpec, sql_string

# The kinds an incremental run narrows: every kind but the reference ones (a roster, the
# facilities list), which every facility's checks read whole.
NARROWED = tuple(k for k in KINDS if not SPECS[k].context)

_IN = "(SELECT unnest($1::BIGINT[]))"


@dataclass(frozen=True)
class ScopeKind:
    name: str
    # The keys a row of a kind touches, as SQL over its table (none: not narrowed by this).
    keys: Callable[[KindSpec], tuple[str, ...]]
    # Condition on a stored flag (table ``flags``) meaning the touched keys cover it, so it
    # resolves when the narrowed run no longer returns it; None: its flags never resolve
    # (their records are fixed).
    covers: str | None = None
    sql_type: str = "VARCHAR"
    # A plain column of a kind whose value in a touched row is always one the new rows
    # hold in the same column (the logbook of a "facility|checkpoint|logbook" key): a
    # cheap test that lets a table be narrowed without building every row's key.
    hint: Callable[[KindSpec], str | None] = lambda spec: None
    # A condition on a kind's row that holds exactly when one of its keys is touched, and
    # costs less than computing the key of every row (None: test the keys). It may read
    # what ``aid`` built.
    narrow: Callable[[KindSpec], str | None] = lambda spec: None
    # SQL building, from the stored tables, a temporary table ``narrow`` reads (run before
    # the tables are narrowed for the scope's rules).
    aid: str | None = None
    # Whether a key's rows are stored together (an upload's rows, appended in one go): its
    # ``hint`` values written as literals let a scan skip every other row group, so the
    # touched part is read through a view instead of copied.
    stored_together: bool = False

    @property
    def touched(self) -> str:
        """SQL listing, one per row, the keys the uploads $1 (a BIGINT[] of upload seqs)
        touch."""
        if self.name == "record":
            return "SELECT unnest($1::BIGINT[])"
        parts = [
            f"SELECT {key} AS k FROM {kind} WHERE upload_seq IN {_IN}"
            for kind in NARROWED
            for key in self.keys(SPECS[kind])
        ]
        return (
            "SELECT DISTINCT k FROM (" + " UNION ALL ".join(parts) + ") WHERE coalesce(k, '') <> ''"
        )

    def table_filter(self, table: str, hinted: list | None = None) -> str:
        """The condition narrowing ``table`` to the touched keys (held in temp table
        ``scope_<name>``). ``hinted``: the values the new rows hold in the scope's
        ``hint`` column (``hint_sql``), tested first as literals, which the scan itself
        can apply (narrowing 10M visits to a few logbooks: 2.5 s to 0.05 s)."""
        keys = self.keys(SPECS[table]) if table in SPECS else ()
        if not keys:
            return "FALSE"
        exact = self.narrow(SPECS[table]) or " OR ".join(
            f"({key}) IN (SELECT value FROM scope_{self.name})" for key in keys
        )
        column = self.hint(SPECS[table])
        if column is None or hinted is None or not hinted or len(hinted) > MAX_HINTED:
            return exact
        literals = ", ".join(str(v) if isinstance(v, int) else sql_string(v) for v in hinted)
        return f"{column} IN ({literals}) AND ({exact})"

    @property
    def hint_sql(self) -> str | None:
        """SQL listing the values the new uploads' rows hold in the ``hint`` column (the
        uploads in temp table ``scope_record``); None without a hint."""
        parts = [
            f"SELECT {column} AS v FROM {kind} WHERE upload_seq IN (SELECT value FROM scope_record)"
            for kind in NARROWED
            if (column := self.hint(SPECS[kind])) is not None
        ]
        return f"SELECT DISTINCT v FROM ({' UNION ALL '.join(parts)})" if parts else None


MAX_HINTED = 1000  # beyond this many values the hint is left out


def _logbook(spec: KindSpec) -> tuple[str, ...]:
    """ "facility|checkpoint|logbook" of kinds that record a logbook."""
    if not spec.has("logbook"):
        return ()
    checkpoint = "coalesce(checkpoint, '')" if spec.has("checkpoint") else "''"
    return (f"{spec.facility} || '|' || {checkpoint} || '|' || logbook",)


def _document(column: str) -> str:
    """SQL: the document written in ``column`` as the visitor key compares it."""
    return f"upper(regexp_replace(coalesce({column}, ''), '[^0-9A-Za-z]', '', 'g'))"


# The person a line of a kind with documents and names is of, as the visitor rules key
# them: the document, its letters and digits only, else the folded name. A rule of the
# ``visitor`` scope computes its own key with this very text (tests/test_incremental.py
# holds them together).
VISITOR_KEY = f"coalesce(nullif({_document('id_number')}, ''), name_key)"


def _visitor(spec: KindSpec) -> tuple[str, ...]:
    """The person a row is of (``VISITOR_KEY``): kinds with a document and a name."""
    return (VISITOR_KEY,) if spec.has("id_number", "name_key") else ()


def _visitor_docs() -> str:
    """The temp table ``scope_visitor_docs``: each document as written in a kind with
    documents and names, and its part of the key (``''``: none, the name keys the row)."""
    parts = [
        f"SELECT DISTINCT id_number AS raw FROM {kind}"
        for kind in NARROWED
        if _visitor(SPECS[kind])
    ]
    return (
        f"CREATE OR REPLACE TEMP TABLE scope_visitor_docs AS SELECT raw, {_document('raw')} AS doc "
        f"FROM ({' UNION '.join(parts)}) WHERE raw IS NOT NULL"
    )


def _visitor_narrow(spec: KindSpec) -> str | None:
    """``VISITOR_KEY`` touched, with the documents' part looked up per document written
    (``scope_visitor_docs``): the expression over every row cost 2.2 s at 10M visits,
    which wrote 401,443 documents."""
    if not _visitor(spec):
        return None
    return (
        "id_number IN (SELECT raw FROM scope_visitor_docs "
        "WHERE doc IN (SELECT value FROM scope_visitor)) "
        "OR ((id_number IS NULL OR id_number IN "
        "(SELECT raw FROM scope_visitor_docs WHERE doc = '')) "
        "AND name_key IN (SELECT value FROM scope_visitor))"
    )


def _official(spec: KindSpec) -> tuple[str, ...]:
    """The official a row names: an official's own line, and the official escorting a
    visitor (kinds with a role and an escort)."""
    if not spec.has("role", "name_key", "escorted_key"):
        return ()
    return ("CASE WHEN role = 'official' THEN name_key END", "escorted_key")


SCOPES: dict[str, ScopeKind] = {
    "record": ScopeKind(
        "record",
        lambda spec: ("upload_seq",),
        sql_type="BIGINT",
        hint=lambda spec: "upload_seq",
        stored_together=True,
    ),
    "facility": ScopeKind(
        "facility",
        lambda spec: (spec.facility,),
        covers="flags.facility IN (SELECT value FROM scope_facility)",
    ),
    "logbook": ScopeKind(
        "logbook",
        _logbook,
        hint=lambda spec: "logbook" if spec.has("logbook") else None,
        covers="flags.facility || '|' || flags.logbook IN "
        "(SELECT split_part(value, '|', 1) || '|' || split_part(value, '|', 3) "
        "FROM scope_logbook)",
    ),
    "plate": ScopeKind(
        "plate",
        lambda spec: ("plate_key",) if spec.has("plate_key") else (),
        covers="json_extract_string(flags.fields, '$.plate_key') "
        "IN (SELECT value FROM scope_plate)",
    ),
    "official": ScopeKind(
        "official",
        _official,
        covers="json_extract_string(flags.fields, '$.official_key') "
        "IN (SELECT value FROM scope_official)",
    ),
    # a visitor's own pattern across visits (a hit names them as ``person``)
    "visitor": ScopeKind(
        "visitor",
        _visitor,
        covers="json_extract_string(flags.fields, '$.person') IN (SELECT value FROM scope_visitor)",
        narrow=_visitor_narrow,
        aid=_visitor_docs(),
    ),
}
# What a rule file may name as its scope.
SCOPE_NAMES = (*SCOPES, "global")
