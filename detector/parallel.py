"""Work on a stream of batches in threads, results in order, memory bounded.

polars, NumPy and DuckDB release the GIL while they work, so two threads keep the two
cores of a small machine busy where one conversion or scoring alone keeps part of one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int = 2, name: str = "batches"
) -> Iterator[R]:
    """``fn`` of each item, computed by ``workers`` threads, yielded in the items' order.

    A reader thread draws the items (reading a file's next batch overlaps the work on
    earlier ones) and queues their jobs at most ``workers + 1`` ahead of the caller, so
    memory stays bounded whatever the stream's length. An exception, in ``fn`` or in
    drawing the items, is raised in the caller's thread at the item where it happened;
    when the caller stops early (an exception of its own, or closing the generator), no
    new job starts."""
    done = object()
    ahead: queue.Queue = queue.Queue(maxsize=workers + 1)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    with ThreadPoolExecutor(workers, thread_name_prefix=f"{name}-work") as pool:

        def read() -> None:
            try:
                for item in items:
                    if not put(pool.submit(fn, item)):
                        return
                put(done)
            except BaseException as exc:  # handed to the caller's thread
                put(exc)

        reader = threading.Thread(target=read, name=f"{name}-read", daemon=True)
        reader.start()
        try:
            while (item := ahead.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item.result()
        finally:
            stop.set()
            reader.join()
            pool.shutdown(cancel_futures=True)  # a failed caller wants no more results
