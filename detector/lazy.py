"""Heavy libraries imported when first used, so that a short command does not pay for them.

polars, pyarrow and numpy take 0.25-0.3 s to import on this project's 2-core machine:
most of a ``detector status`` and a third of a ``detector run`` that finds nothing new,
neither of which touches a frame. A module that needs one names it at its top as usual::

    if TYPE_CHECKING:
        import polars as pl
    else:
        pl = lazy.module("polars")

and the library is imported the first time an attribute of ``pl`` is read (``pl.col``,
``pl.DataFrame``), by the ordinary import statement's machinery, with nothing placed in
``sys.modules`` before then. (The standard library's ``importlib.util.LazyLoader``, which
the ``lazy_loader`` package wraps, puts a half-made module in ``sys.modules`` at once, so
that any library probing ``sys.modules`` for polars loads it, and it imports a
submodule's parents, pyarrow for ``pyarrow.parquet``, at once.)
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _Deferred:
    """Stands for the module ``name`` until an attribute is read; then imports it and
    keeps each attribute read, so that later reads are plain attribute look-ups."""

    def __init__(self, name: str) -> None:
        self.__dict__["_name"] = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}>"


def module(name: str) -> ModuleType:
    """The module ``name`` (``"polars"``, ``"pyarrow.parquet"``), imported when an
    attribute of it is first read."""
    return _Deferred(name)  # type: ignore[return-value]
