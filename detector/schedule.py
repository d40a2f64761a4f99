"""Scheduled runs: pick up new logs from an inbox, run the rules, notify; in its own process.

APScheduler 3 runs the jobs of a TOML config (cron expressions, one instance of a job at a
time, missed runs coalesced). Never start it inside Streamlit: every session would start
another scheduler. Equivalent system-scheduler lines are in the README.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import tomllib
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detector import pipeline
from detector.errors import DetectorError, FileError
from detector.formats import SUFFIXES
from detector.ingest import IngestResult, shown_name
from detector.mapping import named_mappings, reserved_name, resolve_mapping
from detector.notify import NotifyConfig, send
from detector.pipeline import INGEST_ONLY, Source, Steps
from detector.runs import RUN_WRITERS, next_run
from detector.settings import settings
from detector.store import Store

# A file is taken from the inbox when nobody has written to it for QUIET_SECONDS, or when
# two looks at least SETTLE_SECONDS apart (in this tick and an earlier one) saw the same
# size and modification time. A writer that stalls mid-row is thus not cut short; one
# that may stall longer should write "name.csv.part" and rename it when done (files
# with other suffixes are never taken).
SETTLE_SECONDS = 5
QUIET_SECONDS = 60
LOOKS_FILE = ".inbox-looks.json"
# Beside a file moved to failed/: why. A moved file's name gets a stamp before it
# ("20261204T101500Z_"), "-1", "-2"... when that name is taken, and must leave room for
# this suffix too: ``_free_name`` cuts it to fit.
_REASON = ".reason.txt"


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["tick", "score", "full"] = "tick"
    cron: str | None = None  # five fields, as in crontab
    every_seconds: float | None = None  # alternative to cron (tests, tight loops)
    misfire_grace_seconds: int = 300

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        """A cron that APScheduler cannot read is refused here, before it is saved, not
        when the scheduler or the Admin page next reads the file."""
        if value is None:
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a crontab expression of five fields (minute hour "
                f'day-of-month month day-of-week, e.g. "*/15 * * * *"): {exc}'
            ) from exc
        return value

    @model_validator(mode="after")
    def _when(self) -> Job:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("give a job either cron or every_seconds (one of them)")
        if self.every_seconds is not None and self.every_seconds <= 0:
            raise ValueError("every_seconds must be more than 0")
        return self


class ScheduleConfig(BaseModel):
    """schedule.toml."""

    model_config = ConfigDict(extra="forbid")
    inbox: str = "logs/inbox"
    timezone: str = "UTC"
    jobs: dict[str, Job] = Field(
        default_factory=lambda: {
            "ingest_and_rules": Job(action="tick", cron="*/15 * * * *"),
            "nightly_scoring": Job(action="score", cron="30 2 * * *"),
            "weekly_full_run": Job(action="full", cron="0 3 * * 0"),
        }
    )
    notify: NotifyConfig = Field(default_factory=NotifyConfig)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (e.g. America/El_Salvador)") from exc
        return value


def load_config(path: Path | None = None) -> ScheduleConfig:
    """The schedule file (``$DETECTOR_SCHEDULE``, else ``schedule.toml``), or the defaults
    when there is none."""
    path = Path(path or settings().schedule)
    if not path.exists():
        return ScheduleConfig()
    try:
        return ScheduleConfig.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise DetectorError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise DetectorError(f"{path}: {config_error(exc)}") from exc


def config_error(exc: ValidationError) -> str:
    """A schedule's validation errors as a person reads them: where, then why."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'schedule'}: "
        f"{e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


class Inbox:
    """The inbox folder of scheduled runs: the settled files to ingest (a file in a
    subfolder named as a saved mapping, ``inbox/waves/``, is read with it), each moved to
    processed/ or failed/ (+ reason) once its ingest committed, so that a crash leaves it
    in the inbox to be picked up by the next tick. No file stops the tick: one that cannot
    be read, or whose ingest raises anything but a busy store, goes to failed/ with its
    reason; one the store was too busy to take stays for the next tick."""

    def __init__(self, store: Store, folder: Path):
        self.store, self.folder = store, folder
        self.processed, self.failed = folder / "processed", folder / "failed"
        self.outcomes: list[dict] = []

    def sources(self) -> list[Source]:
        """The settled files, with the saved mapping each is read with (regular files
        only: see :func:`inbox_files`)."""
        for folder in (self.folder, self.processed, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        # A file in inbox/NAME/ is read with the mapping saved as NAME (the upload page's).
        saved = set(named_mappings(self.store))
        out = []
        for path in settled_files(self.folder, inbox_files(self.folder, saved)):
            try:
                mapping, label = (
                    resolve_mapping(self.store, path.parent.name)
                    if path.parent != self.folder
                    else (None, None)
                )
            except DetectorError as exc:  # e.g. a saved mapping refused: left for next tick
                name = shown_name(path.name)
                self.outcomes.append({"file": name, "status": "retry", "message": str(exc)})
                continue
            out.append(Source(path, mapping, label, regular_only=True))
        return out

    def done(self, source: Source, result: IngestResult) -> None:
        """Move an ingested file out of the inbox and note what became of it."""
        path, name = source.path, shown_name(source.path.name)
        outcome = {"file": name, "status": result.status, "message": result.message}
        if result.status == "retry":
            self.outcomes.append(outcome)
            return
        outcome.update(stored=result.rows_stored, quarantined=result.rows_quarantined)
        folder = self.failed if result.status == "failed" else self.processed
        try:
            target = _free_name(folder, path.name)
            shutil.move(str(path), target)
            outcome["moved_to"] = shown_name(str(target))
            if result.status == "failed":
                _write_reason(target.with_name(target.name + _REASON), result.message)
        except OSError as exc:  # it stays in the inbox; the next tick tries again
            outcome["move_error"] = f"could not move it to {folder.name}/: {exc}"
        self.outcomes.append(outcome)


def process_inbox(store: Store, inbox: Path) -> list[dict]:
    """Ingest the inbox's settled files (nothing else); what became of each."""
    box = Inbox(store, inbox)
    pipeline.run(store, box.sources(), INGEST_ONLY, user="scheduler", on_file=box.done)
    return box.outcomes


def inbox_files(inbox: Path, saved: set[str]) -> list[Path]:
    """The inbox's candidate files: regular files (never a symbolic link, FIFO or device:
    ``lstat``) with a readable suffix, not hidden, at the top or in a real folder named as
    a saved mapping; the inbox's own processed/ and failed/ are never such a folder."""
    found = []
    for entry in _entries(inbox):
        if entry.is_dir(follow_symlinks=False):
            if entry.name in saved and not reserved_name(entry.name):
                found.extend(Path(e.path) for e in _entries(entry.path) if _takeable(e))
        elif _takeable(entry):
            found.append(Path(entry.path))
    return sorted(found)


def _entries(folder) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return [e for e in it if not e.name.startswith(".")]


def _takeable(entry: os.DirEntry) -> bool:
    return entry.is_file(follow_symlinks=False) and Path(entry.name).suffix.lower() in SUFFIXES


def _free_name(folder: Path, name: str) -> Path:
    """A name in ``folder`` for a file arriving as ``name``: a UTC stamp before it, cut
    (keeping its suffix) so that it and its ".reason.txt" fit the file system's limit on a
    name (a 240-byte name with the stamp did not), and numbered if already taken."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    stem, suffix = os.path.splitext(name)
    if len(os.fsencode(suffix)) > 16:  # no suffix the inbox takes is this long
        stem, suffix = name, ""
    stamp = _stamp()
    for n in range(1000):
        tail = f"-{n}" if n else ""
        room = limit - len(os.fsencode(f"{stamp}_{tail}{suffix}{_REASON}"))
        cut = stem
        while len(os.fsencode(cut)) > room:
            cut = cut[:-1]
        target = folder / f"{stamp}_{cut}{tail}{suffix}"
        if not any(os.path.lexists(p) for p in (target, f"{target}{_REASON}")):
            return target
    raise OSError(f"no free name in {folder} for {shown_name(name)}")


def _write_reason(path: Path, message: str) -> None:
    """The reason a file failed, for the owner alone (it may quote the file's content)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(message + "\n")


def settled_files(inbox: Path, candidates: list[Path]) -> list[Path]:
    """The candidates nobody is still writing: quiet for QUIET_SECONDS, or unchanged (size
    and modification time) since a look at least SETTLE_SECONDS ago. Each look is kept in
    ``inbox/.inbox-looks.json``, so that separate ``schedule --once`` processes share them."""
    looks_path = inbox / LOOKS_FILE
    try:
        before = json.loads(looks_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = {}
    now = time.time()
    looks, ready = {}, []
    for path in candidates:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        seen = [st.st_size, st.st_mtime_ns]
        last = before.get(path.name)
        first_seen = last[2] if last and last[:2] == seen else now
        looks[path.name] = [*seen, first_seen]
        if now - st.st_mtime >= QUIET_SECONDS or (
            now - first_seen >= SETTLE_SECONDS and now - st.st_mtime >= SETTLE_SECONDS
        ):
            ready.append(path)
    tmp = looks_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(looks), encoding="utf-8")
    tmp.replace(looks_path)
    return ready


# What each action of a job runs through the pipeline (a tick adds the inbox's files).
ACTIONS = {
    # what changed, and the new visits scored against the kept reference
    "tick": Steps(full=False, even_if_nothing_stored=True),
    # everything re-evaluated and re-scored
    "full": Steps(full=True),
    # the scoring reference refitted on the history window, every visit re-scored
    "score": Steps(rules=False, refit=True),
}


def run_job(store: Store, config: ScheduleConfig, name: str) -> dict:
    """One execution of a job; a failure is recorded as a failed run and raised no further."""
    job = config.jobs[name]
    summary: dict = {"job": name, "action": job.action}
    try:
        by = f"schedule:{name}"
        box = Inbox(store, Path(config.inbox))
        sources = box.sources() if job.action == "tick" else []
        report = pipeline.run(
            store, sources, ACTIONS[job.action], "scheduler", triggered_by=by, on_file=box.done
        )
        if job.action == "tick":
            summary["inbox"] = box.outcomes
        if report.persons_error:
            summary["persons_error"] = report.persons_error
        if report.scoring is not None:
            summary["score"] = report.scoring.scope
        if report.rules is not None:
            summary.update(
                run_id=report.rules.run_id,
                scope=report.rules.scope,
                errors=report.rules.errors,
                new_flags=sum(report.rules.new.values()),
            )
            summary["notify"] = send(config.notify, store, report.rules.run_id)
    except (Exception, FileError) as exc:  # noqa: BLE001 — a tick must never kill the scheduler
        summary["error"] = f"{type(exc).__name__}: {exc}"
        _record_failure(store, name, summary["error"], traceback.format_exc())
    print(json.dumps(summary, default=str), flush=True)
    return summary


def _record_failure(store: Store, name: str, error: str, trace: str) -> None:
    try:
        with store.write(RUN_WRITERS) as con:
            run_id = next_run(con, "schedule", f"schedule:{name}", "failed")
            con.execute(
                "UPDATE runs SET ended_at = started_at, status = 'failed', errors = ? "
                "WHERE run_id = ?",
                [json.dumps({"error": error, "trace": trace[-4000:]}), run_id],
            )
    except Exception as exc:  # noqa: BLE001 — the database itself may be what failed
        print(f"could not record the failed run: {exc}", file=sys.stderr, flush=True)


def next_fire(job: Job, timezone: str) -> str:
    """When a job runs next, as the scheduler computes it."""
    if not job.cron:
        return f"every {job.every_seconds:g} s"
    when = next_fire_time(job, timezone)
    return when.strftime("%Y-%m-%d %H:%M %Z") if when else "never"


def next_fire_time(job: Job, timezone: str) -> datetime | None:
    """The moment a cron job runs next, in the schedule's time zone (None for an interval
    job, or a cron that never fires again)."""
    from apscheduler.triggers.cron import CronTrigger

    if not job.cron:
        return None
    trigger = CronTrigger.from_crontab(job.cron, timezone=timezone)
    return trigger.get_next_fire_time(None, datetime.now(UTC))


def serve(store: Store, config: ScheduleConfig, only: list[str] | None = None) -> None:
    """Run the jobs on their schedule until interrupted (Ctrl-C, SIGTERM)."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    scheduler = BlockingScheduler(timezone=config.timezone)
    for name, job in config.jobs.items():
        if only and name not in only:
            continue
        trigger = (
            IntervalTrigger(seconds=job.every_seconds)
            if job.every_seconds
            else CronTrigger.from_crontab(job.cron, timezone=config.timezone)
        )
        scheduler.add_job(
            run_job,
            trigger,
            args=[store, config, name],
            id=name,
            name=name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=job.misfire_grace_seconds,
        )
    print(f"scheduler started: {', '.join(j.id for j in scheduler.get_jobs())}", flush=True)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()
