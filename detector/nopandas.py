"""Work that binds DuckDB query parameters without DuckDB importing pandas for it.

DuckDB 1.5's Python client asks for ``pandas.NaT`` and ``pandas.NA`` to classify every
parameter that is not None ("is this value pandas' missing value?"), importing pandas for
it: 0.5-0.8 s of a short command such as ``detector status``. When nothing has imported
pandas, no value can be one of them, so the answer is known without it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _Refuse:
    """An import finder that refuses to import pandas while ``active``. A probe of whether
    pandas is installed (``importlib.util.find_spec``: polars asks it once, when it is
    first imported) is answered as usual, so that nothing concludes for good that pandas is
    missing."""

    active = 0

    def find_spec(self, name, path=None, target=None):
        if self.active and name == "pandas" and _importing():
            raise ModuleNotFoundError("pandas is not loaded in this block", name=name)
        return None


def _importing() -> bool:
    """Whether the finder was asked by the import statement's machinery (``import``,
    ``__import__``, a C extension's import), not by a probe."""
    caller = sys._getframe(3)  # find_spec <- _find_spec <- _find_and_load_unlocked
    return caller.f_code.co_name == "_find_and_load_unlocked"


_REFUSE = _Refuse()


@contextmanager
def refused() -> Iterator[None]:
    """Within this block, and only while pandas is not loaded, ``import pandas`` fails (a
    ModuleNotFoundError: DuckDB then answers "not pandas' missing value"). Use it around
    work that never needs pandas; afterwards DuckDB, polars and Arrow import it as usual
    when asked (each tries again). The refusal holds for the whole process while a block is
    open: a thread that imports pandas meanwhile gets the error too (the dashboard has
    pandas loaded before any block, which then does nothing)."""
    if "pandas" in sys.modules:
        yield
        return
    if _REFUSE not in sys.meta_path:
        sys.meta_path.insert(0, _REFUSE)
    _REFUSE.active += 1
    try:
        yield
    finally:
        _REFUSE.active -= 1
