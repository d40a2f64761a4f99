"""The seal of an upload's stored rows: a digest of them sealed into its ledger entry, so
that ``detector verify`` catches a stored record edited, added or removed, even inside
the database (SECURITY.md, "What verify proves").

Two versions, told apart by the stored value:

- **v1** (a bare hexadecimal SHA-256; entries sealed before December 2026):
  ``ledger.rows_digest``, the SHA-256 of the ordered concatenation of each row's SHA-256
  over its values rendered as text. Rendering every value and one ordered aggregate over
  the whole upload ran single-threaded in DuckDB: 11 of 25 s of an ingest.
- **v2** (``"v2:" + hex``): the same rows, in the same order (source row, then record key),
  hashed in binary, column by column. Each sealed column (``store.sealed_columns``) feeds
  two SHA-256 streams: for integers, timestamps and dates, which rows are NULL (one byte a
  row) and the values as 64-bit integers; for text, each value's length in bytes as a
  32-bit integer (-1 for NULL) and the values' UTF-8 bytes. The seal is the SHA-256 of
  the version, the kind, the row count, the columns with their SQL types and every
  stream's digest. Lengths and NULL marks make the encoding unambiguous (no separator a
  value could contain), fixed-width numbers need no rendering, and the result
  does not depend on how rows are batched. It is computed from the Arrow batches as they
  stream into the ingest's INSERT (:class:`RowsSeal`), at the speed of SHA-256 itself,
  and recomputed by ``verify`` from the stored table (:func:`table_seal`).

A field a kind gained later (``store.LATE_FIELDS``) is sealed only when the upload holds a
value in it, so that an upload sealed before the field existed still verifies once its
table has the new, empty column.

A changed value changes its column's streams; an added or removed row changes the row
count and every stream. Where rows lie in the table does not matter (they are read in
source-row order), and a row's place in the file is one of its sealed values.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from typing import TYPE_CHECKING

import duckdb

from detector import lazy
from detector.store import LATE_FIELDS, kind_columns, sealed_columns

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
else:
    np = lazy.module("numpy")
    pa = lazy.module("pyarrow")

VERSION = "v2"
_FIXED = ("BIGINT", "TIMESTAMP", "DATE")
_BATCH_ROWS = 1 << 18  # rows fetched at a time when the seal is recomputed from a table


def sealed_types(kind: str) -> dict[str, str]:
    """Sealed column -> its SQL type (BIGINT, TIMESTAMP, DATE or VARCHAR), in order."""
    types = kind_columns(kind)
    return {c: types[c] for c in sealed_columns(kind)}


class RowsSeal:
    """The v2 seal of rows fed in order (source row, then record key), in batches of any size.

    ``ordered`` turns False when a batch is out of that order (a source row not above the
    one before): the seal is then not the table's and must be recomputed from it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.types = sealed_types(kind)
        self.streams = {
            (column, part): hashlib.sha256()
            for column, sql_type in self.types.items()
            for part in (
                ("null", "value", "length") if sql_type not in _FIXED else ("null", "value")
            )
        }
        self.late = {c: 0 for c in LATE_FIELDS.get(kind, ()) if c in self.types}
        self.rows = 0
        self.ordered = True
        self._last_row: int | None = None

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Feed the next rows (a batch holding at least the sealed columns)."""
        if batch.num_rows == 0:
            return
        self._check_order(batch.column("source_row"))
        self.rows += batch.num_rows
        for column, sql_type in self.types.items():
            values = batch.column(column)
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            if column in self.late:
                self.late[column] += len(values) - values.null_count
            self._feed(column, sql_type, values)

    def _check_order(self, source_row) -> None:
        if isinstance(source_row, pa.ChunkedArray):
            source_row = source_row.combine_chunks()
        if source_row.null_count:
            self.ordered = False
            return
        rows = source_row.to_numpy()
        if (self._last_row is not None and rows[0] <= self._last_row) or (
            len(rows) > 1 and not bool(np.all(rows[1:] > rows[:-1]))
        ):
            self.ordered = False
        self._last_row = int(rows[-1])

    def _feed(self, column: str, sql_type: str, values: pa.Array) -> None:
        if sql_type in _FIXED:
            nulls = values.is_null().to_numpy(zero_copy_only=False).view(np.uint8)
            self.streams[column, "null"].update(nulls)
            if sql_type == "DATE":
                values = values.cast(pa.int32())
            numbers = values.cast(pa.int64())
            if numbers.null_count:
                numbers = numbers.fill_null(0)
            self.streams[column, "value"].update(numbers.to_numpy().astype("<i8", copy=False))
            return
        text = values.cast(pa.large_string())
        offsets = np.frombuffer(text.buffers()[1], dtype="<i8")[
            text.offset : text.offset + len(text) + 1
        ]
        lengths = np.diff(offsets).astype("<i4")
        if text.null_count:
            lengths[text.is_null().to_numpy(zero_copy_only=False)] = -1
        self.streams[column, "length"].update(lengths)
        data = text.buffers()[2]
        if data is not None:
            if text.null_count:  # a NULL may hold bytes in Arrow: only the values count
                kept = text.fill_null("")
                data = kept.buffers()[2]
                offsets = np.frombuffer(kept.buffers()[1], dtype="<i8")[
                    kept.offset : kept.offset + len(kept) + 1
                ]
            self.streams[column, "value"].update(
                memoryview(data)[int(offsets[0]) : int(offsets[-1])]
            )

    def hexdigest(self) -> str:
        """The seal as stored in the ledger entry: ``"v2:" + hex``."""
        empty = {c for c, values in self.late.items() if not values}
        header = {
            "version": VERSION,
            "kind": self.kind,
            "rows": self.rows,
            "columns": [(c, t) for c, t in self.types.items() if c not in empty],
            "streams": {
                f"{c}.{part}": h.hexdigest()
                for (c, part), h in self.streams.items()
                if c not in empty
            },
        }
        payload = json.dumps(header, sort_keys=True, separators=(",", ":"))
        return f"{VERSION}:{hashlib.sha256(payload.encode()).hexdigest()}"


def table_seal(con: duckdb.DuckDBPyConnection, kind: str, seq: int) -> str:
    """The v2 seal of the rows upload ``seq`` has stored in ``kind``'s table, now."""
    seal = RowsSeal(kind)
    columns = ", ".join(seal.types)
    reader = con.sql(
        f"SELECT {columns} FROM {kind} WHERE upload_seq = $seq ORDER BY source_row, record_key",
        params={"seq": seq},
    ).to_arrow_reader(_BATCH_ROWS)
    for batch in reader:
        seal.add(batch)
    return seal.hexdigest()


class StreamingSeal:
    """A :class:`RowsSeal` fed by a thread of its own, so that hashing overlaps with the
    store's INSERT instead of holding up the Arrow stream that feeds it (hashlib and Arrow
    release the GIL). Batches are hashed in the order given; ``hexdigest`` waits for them."""

    _DONE = object()

    def __init__(self, kind: str, ahead: int = 4) -> None:
        self.seal = RowsSeal(kind)
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="ingest-seal", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (batch := self._queue.get()) is not self._DONE:
            if self._error is None:
                try:
                    self.seal.add(batch)
                except BaseException as exc:  # noqa: BLE001 - raised by hexdigest
                    self._error = exc

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        self._queue.put(batch)

    def close(self) -> None:
        """Wait for the batches given so far (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(self._DONE)
            self._thread.join()

    @property
    def ordered(self) -> bool:
        self.close()
        return self.seal.ordered

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        return self.seal.hexdigest()
