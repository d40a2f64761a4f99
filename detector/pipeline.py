"""The one pipeline: ingest files -> run the rules over what changed -> score the visits.

The command line (`detector ingest --run`, `detector run`, `detector demo`), the
dashboard's upload page, the scheduler's jobs, `detector evaluate` and the tests all call
:func:`run`; none of them sequences the steps itself. What a call does is its
:class:`Steps`; what happened is its :class:`PipelineReport`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from detector import i18n, nopandas, runs
from detector.engine import RunReport, run_rules
from detector.errors import DetectorError
from detector.i18n import N_
from detector.store import Store

# Each step's module is imported when a run takes that step: a run with nothing new (the
# scheduler's every tick) loads neither the readers of files nor Splink, nor PyOD.
if TYPE_CHECKING:
    from detector.identity import LinkReport
    from detector.ingest import IngestResult
    from detector.mapping import UserMapping
    from detector.scoring import ScoreReport


@dataclass
class Source:
    """One file to ingest, and how to read it (no mapping: the built-in synonyms)."""

    path: Path
    mapping: UserMapping | None = None
    mapping_name: str | None = None  # how the ledger names the mapping ("saved:waves v2")
    kind: str | None = None
    # Refuse a symbolic link, FIFO or device in the file's place (files others write:
    # the inbox), reading the bytes through the file opened without following links.
    regular_only: bool = False


@dataclass
class Steps:
    """What a pipeline run does after ingesting its files.

    ``full`` re-evaluates every rule over everything (else only what changed since the last
    run) and re-scores every visit; ``refit`` fits a new scoring reference first. With
    files to ingest, the rules and the scoring run only when one of them entered the
    ledger. Before the rules, the rows stored since the last linkage are linked to persons
    (``detector.identity``): rules and scoring read who a row is from there."""

    link: bool = True
    rules: bool = True
    score: bool = True
    full: bool = False
    refit: bool = False
    model: str = "ecod"
    # Run the rules and the scoring even when none of the files stored rows (the
    # scheduler: something else may have arrived since the last run).
    even_if_nothing_stored: bool = False
    rule_dirs: list[Path] | None = None
    only: list[str] | None = None  # rule ids to run (a full run of those alone)


LINKAGE_FAILED = N_(
    "linking rows to persons failed (recorded as failed in the run history; the rules "
    "read the persons as they were): {error}"
)

# Ingest alone, as `detector ingest` does unless asked to run the rest.
INGEST_ONLY = Steps(link=False, rules=False, score=False)


@dataclass
class PipelineReport:
    ingested: list[IngestResult] = field(default_factory=list)
    persons: LinkReport | None = None
    persons_error: str | None = None  # why linkage failed (recorded as a failed run)
    rules: RunReport | None = None
    scoring: ScoreReport | None = None

    @property
    def stored(self) -> int:
        return sum(r.rows_stored for r in self.ingested if r.status == "stored")

    def linkage_failure(self, lang: str) -> str | None:
        """Why linking the new rows to persons failed, said in ``lang`` for the console
        (None when it did not fail)."""
        if not self.persons_error:
            return None
        return i18n.translate(lang, LINKAGE_FAILED).format(error=self.persons_error)

    @property
    def new_uploads(self) -> int:
        """Files taken into the ledger (with rows stored, or only quarantined: the
        quarantine is evidence the rules read too)."""
        return sum(r.status == "stored" for r in self.ingested)

    @property
    def failed(self) -> list[IngestResult]:
        return [r for r in self.ingested if r.status in ("failed", "retry")]


def run(
    store: Store,
    sources: list[Source | Path] = (),
    steps: Steps | None = None,
    user: str | None = None,
    triggered_by: str = "cli",
    on_file: Callable[[Source, IngestResult], None] | None = None,
    on_rows: Callable[[Source, int], None] | None = None,
) -> PipelineReport:
    """Ingest ``sources`` (reference kinds first), then run ``steps``.

    ``on_file(source, result)`` is called as each file is done (the inbox moves it then),
    ``on_rows(source, rows)`` as its batches are read. A file the store stayed too busy to
    take is reported with status ``retry`` and left for the next attempt.
    """
    steps = steps or Steps()
    report = PipelineReport()
    for source in _in_order([s if isinstance(s, Source) else Source(Path(s)) for s in sources]):
        report.ingested.append(result := _ingest(store, source, user, on_rows))
        if on_file:
            on_file(source, result)
    if sources and not report.new_uploads and not steps.even_if_nothing_stored:
        return report  # nothing new: nothing to re-evaluate
    with nopandas.refused():  # (DuckDB 1.5.5 would import pandas to bind a parameter)
        linking = steps.link and runs.pending(store, "persons")
    if linking:
        from detector import identity

        try:
            with nopandas.refused():  # Splink's DuckDB backend needs no pandas either
                report.persons = identity.link(store, triggered_by=triggered_by)
        except (DetectorError, duckdb.Error, OSError) as exc:
            # Recorded as failed in the run history; the rules and the scoring still run,
            # reading the persons as they were (the next run links what this one could not).
            report.persons_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    with nopandas.refused():  # the rules and the scoring never need pandas
        if steps.rules:
            report.rules = run_rules(
                store, steps.rule_dirs, steps.only, triggered_by=triggered_by, full=steps.full
            )
        if steps.score:
            from detector.scoring import ScoringConfig, score

            report.scoring = score(
                store,
                ScoringConfig(model=steps.model),
                triggered_by=triggered_by,
                refit=steps.refit,
                full=steps.full,
            )
    return report


def _ingest(
    store: Store, source: Source, user: str | None, on_rows: Callable | None
) -> IngestResult:
    from detector.ingest import IngestResult, ingest_file, shown_name

    rows = (lambda n: on_rows(source, n)) if on_rows else None
    name = shown_name(source.path.name)
    try:
        return ingest_file(
            store,
            source.path,
            source.kind,
            source.mapping,
            user,
            source.mapping_name,
            rows,
            regular_only=source.regular_only,
        )
    except DetectorError as exc:  # e.g. the store stayed busy: the file is left as it is
        return IngestResult(path=name, status="retry", message=str(exc))
    except Exception as exc:  # noqa: BLE001 - one file never stops the others (nor a tick)
        traceback.print_exc()
        message = f"{name}: could not be ingested ({type(exc).__name__}: {exc})"
        return IngestResult(path=name, status="failed", message=message)


def _in_order(sources: list[Source]) -> list[Source]:
    """Facilities, rosters and the other reference kinds before the logs checked against
    them (``ingest.reference_first``)."""
    from detector.ingest import reference_first

    by_path = {}
    for s in sources:
        by_path.setdefault(s.path, []).append(s)
    ordered = reference_first(
        [s.path for s in sources],
        kind_of=lambda p: (by_path[p][0].kind, by_path[p][0].mapping),
    )
    return [by_path[p].pop(0) for p in ordered]


def ingest_files(
    store: Store,
    paths: list[Path],
    kind: str | None = None,
    mapping: UserMapping | None = None,
    user: str | None = None,
    mapping_name: str | None = None,
) -> list[IngestResult]:
    """Ingest files and the supported files of folders, all read alike, and nothing else
    (the pipeline with ``INGEST_ONLY``); what became of each."""
    from detector.ingest import expand_paths

    sources = [Source(p, mapping, mapping_name, kind) for p in expand_paths(paths)]
    return run(store, sources, INGEST_ONLY, user).ingested
