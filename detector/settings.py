"""Every setting of the tool in one typed object, read from ``DETECTOR_*`` environment
variables (pydantic-settings): the CLI, the dashboard and the scheduler read them the same
way, through :func:`settings`. The README's "Settings" table lists them.

The object is built once per process for a given environment (a test that changes a
variable gets a fresh one), and nothing reads the environment at import time. pydantic is
loaded only when the object is first built: ``detector --help`` needs only the language
(:func:`language`), and loading pydantic first would double its start-up time.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

PREFIX = "DETECTOR_"
LANGUAGES = ("es", "en")


def normal_language(value: str | None) -> str:
    """``es`` or ``en`` from what was set ("EN", "es_SV"); Spanish for anything else."""
    lang = (value or "es").strip().lower()[:2]
    return lang if lang in LANGUAGES else "es"


def language() -> str:
    """``DETECTOR_LANGUAGE`` exactly as :func:`settings` reads it, without building the
    settings (the command line's help needs it before anything else is loaded)."""
    return normal_language(os.environ.get(PREFIX + "LANGUAGE"))


def __getattr__(name: str):
    """``Settings``, the settings' class, built on first use (PEP 562)."""
    if name == "Settings":
        return _model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pydantic():
    import pydantic

    return pydantic


@functools.cache
def _model():
    """The settings' class (pydantic-settings), defined when first needed."""
    from pydantic import AliasChoices, Field, field_validator
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Settings(BaseSettings):
        """The tool's settings; each field is the environment variable ``DETECTOR_<FIELD>``."""

        model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

        db: str = Field(
            "data/detector.duckdb",
            description="The store: a DuckDB file, or a shared DuckLake spelled as DuckLake's ATTACH "
            'spells it, `ducklake:postgres:dbname=detector host=… port=… user=…` (see "Deploying '
            'for several offices").',
        )
        data_path: str | None = Field(
            None,
            description="A DuckLake store's data folder (its Parquet files), on a filesystem every "
            "machine mounts at the same path; the evidence, kept models and dashboard users sit "
            "beside it.",
        )
        evidence_path: str | None = Field(
            None,
            description="The evidence folder (original files by SHA-256); default: `evidence/` "
            "beside the database file, or beside a lake's data folder.",
        )
        language: str = Field(
            "es", description="Language of the dashboard, exports and command line: es or en."
        )
        holidays: str = Field(
            "SV",
            description="Public-holiday calendars silences are judged against: ISO country "
            "codes, comma-separated, optionally with a subdivision (US-DC).",
        )
        users: Path | None = Field(
            None, description="The dashboard users file (default: users.yaml beside the database)."
        )
        schedule: Path = Field(
            Path("schedule.toml"), description="The schedule file of `detector schedule`."
        )
        lock_wait: float = Field(
            120, description="Seconds a writer waits for the database before giving up."
        )
        duckdb_memory: str = Field(
            "2GB", description="DuckDB's memory limit; past it, work spills to disk."
        )
        max_upload_mb: int = Field(200, description="Largest file the dashboard accepts, in MB.")
        xlsx_max_rows: int = Field(
            2_000_000, description="Rows a workbook may declare before it is refused."
        )
        max_columns: int = Field(
            500,
            validation_alias=AliasChoices("DETECTOR_MAX_COLUMNS", "DETECTOR_XLSX_MAX_COLUMNS"),
            description="Columns a file may have before it is refused.",
        )
        reader_memory_gb: float = Field(
            4, description="Memory cap, in GB, of the child process that opens a workbook."
        )
        reader_timeout: float = Field(
            600, description="Seconds the child process that opens a workbook may take."
        )
        idle_minutes: float = Field(
            30, description="Minutes of inactivity after which a dashboard session ends."
        )
        dashboard_wait: float = Field(
            20, description="Seconds a dashboard page waits for a busy database."
        )
        webhook_allow_private: bool = Field(
            False,
            description="Allow a notification webhook on a loopback, private or link-local "
            "address (set in the service's environment, never in the schedule file).",
        )
        pending_wait: float = Field(
            3,
            description="Seconds a review saved on a busy database is retried before it is queued.",
        )
        cache: Path | None = Field(
            None,
            description="Folder of the cache of parsed rule files and holiday calendars, keyed "
            "by the SHA-256 of what each entry was computed from (default: $XDG_CACHE_HOME/prison-access-detector, else "
            "~/.cache/prison-access-detector; `off` for none).",
        )

        @field_validator("language")
        @classmethod
        def _language(cls, value: str) -> str:
            return normal_language(value)

        @property
        def db_path(self) -> Path:
            return Path(self.db)

        @property
        def cache_folder(self) -> Path | None:
            """The cache folder (None: caching is off)."""
            if self.cache is not None:
                return None if str(self.cache) == "off" else self.cache
            base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
            return Path(base) / "prison-access-detector"

    return Settings


@functools.lru_cache(maxsize=8)
def _settings(environment: tuple[tuple[str, str], ...]):
    return _model()()


def settings():
    """The settings of this process's environment (built once for it)."""
    return _settings(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX))))


def table() -> list[tuple[str, str, str]]:
    """(variable, default, what it sets) for each setting: the README's table."""
    rows = []
    AliasChoices = _pydantic().AliasChoices  # noqa: N806
    for name, info in _model().model_fields.items():
        variable = (
            " or ".join(info.validation_alias.choices)
            if isinstance(info.validation_alias, AliasChoices)
            else PREFIX + name.upper()
        )
        rows.append((variable, "" if info.default is None else str(info.default), info.description))
    return rows
