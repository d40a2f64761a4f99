"""parallel.ordered_map: results in the items' order, errors where they happened, bounded."""

import threading
import time

import pytest

from detector.parallel import ordered_map


def test_results_come_in_the_items_order_whatever_finishes_first():
    def slow_for_even(i: int) -> int:
        time.sleep(0.02 if i % 2 == 0 else 0)
        return i * i

    assert list(ordered_map(slow_for_even, range(20))) == [i * i for i in range(20)]


def test_an_error_in_the_work_or_in_the_items_reaches_the_caller_in_order():
    def fails_at_five(i: int) -> int:
        if i == 5:
            raise ValueError("item 5")
        return i

    got = []
    with pytest.raises(ValueError, match="item 5"):
        for r in ordered_map(fails_at_five, range(10)):
            got.append(r)
    assert got == [0, 1, 2, 3, 4]

    def items():
        yield 1
        raise OSError("the file ended early")

    with pytest.raises(OSError, match="ended early"):
        list(ordered_map(lambda i: i, items()))


def test_it_reads_only_a_few_items_ahead_and_stops_when_the_caller_does():
    drawn = []
    lock = threading.Lock()

    def items():
        for i in range(1000):
            with lock:
                drawn.append(i)
            yield i

    stream = ordered_map(lambda i: i, items(), workers=2)
    assert next(stream) == 0
    time.sleep(0.3)  # the reader fills its queue, then waits
    with lock:
        assert len(drawn) <= 2 + 1 + 2  # queued, running, the one it holds
    stream.close()
    with lock:
        after_close = len(drawn)
    time.sleep(0.3)
    assert len(drawn) == after_close < 1000
