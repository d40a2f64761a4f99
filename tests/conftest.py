"""Shared fixtures: a real DuckDB file per test, generated demo logs, helpers to write files."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.generator import generate
from detector.store import Store

REPO = Path(__file__).resolve().parent.parent
REAL = Path(__file__).resolve().parent / "real"
WAVES = REAL / "whitehouse_waves_2022-02.csv"


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "db" / "detector.duckdb", wait=30)


@pytest.fixture(scope="session")
def demo_logs(tmp_path_factory) -> dict[str, Path]:
    """The demo generator's logs (seed 7, six months), written once per test session."""
    return generate(tmp_path_factory.mktemp("demo"), seed=7, months=6)


def write_csv(
    path: Path, header: list[str], rows: list[list], encoding="utf-8", delimiter=","
) -> Path:
    lines = [delimiter.join(header)] + [
        delimiter.join("" if c is None else str(c) for c in r) for r in rows
    ]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def rows(store: Store, sql: str, params=None) -> list[tuple]:
    with store.read() as con:
        return con.execute(sql, params or []).fetchall()
