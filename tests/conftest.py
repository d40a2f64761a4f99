"""Shared fixtures: a real DuckDB file per test, generated demo logs, helpers to write files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detector.generator import generate
from detector.store import Store

# The dashboard speaks Spanish unless configured otherwise; most tests read its English
# (and the dashboard servers they start inherit this). The Spanish walk sets "es" itself.
os.environ["DETECTOR_LANGUAGE"] = "en"

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


def demo_store(path: Path, demo_logs: dict[str, Path], scored: bool = True) -> Store:
    """A database of the demo world: every file ingested, the rules run, and the
    scoring too unless ``scored`` is False."""
    from detector.ingest import ingest_paths
    from detector.rules import run_rules
    from detector.scoring import score

    store = Store(path, wait=30)
    ingest_paths(store, [p for k, p in demo_logs.items() if k != "truth"], user="test")
    run_rules(store)
    if scored:
        score(store)
    return store


def tick_config(tmp_path: Path, inbox: Path) -> Path:
    """A schedule file with one `tick` job on ``inbox`` (for `detector schedule --once`)."""
    config = tmp_path / "s.toml"
    config.write_text(
        f'inbox = "{inbox}"\n'
        '[jobs.tick]\naction = "tick"\ncron = "*/15 * * * *"\n'
        f'[notify]\ndigest_dir = "{tmp_path / "digests"}"\n',
        encoding="utf-8",
    )
    return config
