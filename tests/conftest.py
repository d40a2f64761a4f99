"""Shared fixtures: a real store per test (a DuckDB file, or a DuckLake), generated demo
logs, helpers to write files.

With ``DETECTOR_TEST_STORE=lake`` the ``store`` and ``new_store`` fixtures give DuckLake
stores instead of files: each its own PostgreSQL database on the server that
``DETECTOR_TEST_PG`` names (libpq keywords, default ``host=127.0.0.1 port=5432
user=postgres``; ``.ci/run`` starts one) and its own data folder. The tests marked
``lake`` are the ones written to run on either store (``pytest -m lake``).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from detector.generator import generate
from detector.store import Store

# Under pytest-xdist (scripts/test.sh runs two workers) each worker's temporary files, and
# those of the processes it starts (the dashboard's copies of uploads), go to a folder of
# its own: a test that checks what is left in the temporary folder sees only its own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _TMP = tempfile.mkdtemp(prefix=f"detector-tests-{os.environ['PYTEST_XDIST_WORKER']}-")
    atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
    os.environ["TMPDIR"] = _TMP
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again

# The dashboard speaks Spanish unless configured otherwise; most tests read its English
# (and the dashboard servers they start inherit this). The Spanish walk sets "es" itself.
os.environ["DETECTOR_LANGUAGE"] = "en"

REPO = Path(__file__).resolve().parent.parent
REAL = Path(__file__).resolve().parent / "real"
WAVES = REAL / "whitehouse_waves_2022-02.csv"


LAKE = os.environ.get("DETECTOR_TEST_STORE", "file") == "lake"
PG = os.environ.get("DETECTOR_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")


def pg_admin(sql: str) -> None:
    """One statement on the test server's ``postgres`` database (creating and dropping the
    lakes' catalog databases)."""
    import psycopg

    with psycopg.connect(f"{PG} dbname=postgres", autocommit=True) as con:
        con.execute(sql)


def lake_url(dbname: str) -> str:
    return f"ducklake:postgres:dbname={dbname} {PG}"


@functools.cache
def _lake_template() -> tuple[str, Path]:
    """An empty lake with this version's schema, made once per session: each test's lake is
    a copy of it (PostgreSQL copies the catalog database, the data folder is copied, and
    the catalog is pointed at the copy), instead of creating the schema again, which costs
    a second or two of every shared-store test."""
    dbname = f"detector_tmpl_{uuid.uuid4().hex[:16]}"
    data = Path(tempfile.mkdtemp(prefix="detector-lake-template-")) / "lake"
    pg_admin(f"CREATE DATABASE {dbname}")
    atexit.register(shutil.rmtree, data.parent, ignore_errors=True)
    atexit.register(pg_admin, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
    template = Store(lake_url(dbname), data_path=data)
    template.init()
    template.release()  # a template database must have no session open on it
    return dbname, data


def _copy_lake(dbname: str, data: Path) -> None:
    import psycopg

    template, template_data = _lake_template()
    pg_admin(f"CREATE DATABASE {dbname} TEMPLATE {template}")
    shutil.copytree(template_data, data)
    with psycopg.connect(f"{PG} dbname={dbname}", autocommit=True) as con:
        # DuckLake names every file relative to the data path it records here
        con.execute(
            "UPDATE ducklake_metadata SET value = %s WHERE key = 'data_path'",
            (str(data).rstrip("/") + "/",),
        )


@functools.cache
def _empty_file() -> Path:
    """An empty database file with this version's schema, made once per session."""
    folder = Path(tempfile.mkdtemp(prefix="detector-empty-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    Store(folder / "detector.duckdb").init()
    return folder / "detector.duckdb"


def empty_store(path: Path, wait: float = 30) -> Store:
    """A store at ``path`` holding no data yet: a copy of the session's empty database
    file (creating the schema again costs a quarter of a second for each of the hundreds
    of stores the tests make; the tests of making it make their own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_empty_file(), path)
    return Store(path, wait=wait)


@pytest.fixture
def new_store(tmp_path, monkeypatch) -> Iterator[Callable[..., Store]]:
    """Makes stores in ``tmp_path/<name>``: DuckDB files, or under DETECTOR_TEST_STORE=lake
    each a new DuckLake (a catalog database of its own, dropped afterwards). The last lake
    made is the one ``DETECTOR_DATA_PATH`` names, for commands given its URL as ``--db``."""
    lakes: list[tuple[Store, str]] = []

    def make(name: str = "db", wait: float = 30, lake: bool | None = None) -> Store:
        folder = tmp_path / name
        if not (LAKE if lake is None else lake):
            return empty_store(folder / "detector.duckdb", wait=wait)
        dbname = f"detector_test_{uuid.uuid4().hex[:16]}"
        data = folder / "lake"
        _copy_lake(dbname, data)
        monkeypatch.setenv("DETECTOR_DATA_PATH", str(data))
        store = Store(lake_url(dbname), wait=wait, data_path=data)
        lakes.append((store, dbname))
        return store

    yield make
    for store, dbname in lakes:
        store.release()
        pg_admin(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


@pytest.fixture
def store(new_store) -> Store:
    return new_store()


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


# The demo world's databases, built once per test session through the pipeline (one with
# its rules run, one scored as well) and copied for each test that asks for one.
_DEMO_TEMPLATES: dict[bool, Path] = {}


def _demo_template(demo_logs: dict[str, Path], scored: bool) -> Path:
    if scored not in _DEMO_TEMPLATES:
        from detector import pipeline

        folder = Path(tempfile.mkdtemp(prefix=f"demo-{'scored' if scored else 'rules'}-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        logs = [p for k, p in demo_logs.items() if k != "truth"]
        store = Store(folder / "detector.duckdb", wait=30)
        pipeline.run(store, logs, pipeline.Steps(score=scored), user="test")
        _DEMO_TEMPLATES[scored] = folder
    return _DEMO_TEMPLATES[scored]


def demo_store(path: Path, demo_logs: dict[str, Path], scored: bool = True) -> Store:
    """A database of the demo world at ``path``: every file ingested, the rules run, and
    the scoring too unless ``scored`` is False (a copy of the session's own, with its
    evidence files and scoring reference beside it)."""
    template = _demo_template(demo_logs, scored)
    path.parent.mkdir(parents=True, exist_ok=True)
    for item in template.iterdir():
        target = path if item.name == "detector.duckdb" else path.parent / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        elif not item.name.endswith((".lock", ".wal")):
            shutil.copy2(item, target)
    return Store(path, wait=30)


@dataclass
class CaseResults:
    """What a rule's cases gave: the problems of each regression case and of each
    dont_match case, and the stored values of the regression hits."""

    regression: list[list[str]]
    dont_match: list[list[str]]
    hits: list[dict]


@functools.cache
def rule_cases(rule_id: str) -> CaseResults:
    """Every case of a built-in rule, run once per test session through the real ingest
    (the rule tests and the Spanish tests both read them)."""
    from detector.rulebook import load_rules
    from detector.rulecases import run_case

    rule = next(r for r in load_rules() if r.id == rule_id)
    folder = Path(tempfile.mkdtemp(prefix=f"cases-{rule_id}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    hits: list[dict] = []

    def run(case, workdir: Path, out=None) -> list[str]:
        empty_store(workdir / "case.duckdb")  # the file run_case ingests into
        return run_case(rule, case, workdir, out)

    regression = [run(c, folder / f"case{i}", hits) for i, c in enumerate(rule.regression)]
    dont = [run(c, folder / f"dont{i}") for i, c in enumerate(rule.dont_match)]
    return CaseResults(regression, dont, hits)


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
