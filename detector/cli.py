"""The `detector` command line: thin commands over the library, in its user's language
(``DETECTOR_LANGUAGE``: messages, tables and ``--help``, see ``detector.cli_i18n``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from detector.cli_i18n import SpokenGroup, _, ngettext, number, words
from detector.errors import DetectorError
from detector.i18n import N_

# Commands import what they use when they run: `detector --help` and a mistyped option
# answer at once instead of loading polars, DuckDB and PyOD first. Help texts are marked
# for the catalogue (N_) and worded in the user's language when the command line starts.

app = typer.Typer(
    cls=SpokenGroup,
    help=N_("Audit prison access logs: ingest, check, score and review."),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="DETECTOR_DB",
        help=N_(
            "DuckDB file (default ./data/detector.duckdb), or a shared DuckLake: "
            "'ducklake:postgres:dbname=… host=…' with its data folder in DETECTOR_DATA_PATH."
        ),
    ),
]


def _store(db: str | None):
    from detector.store import Store

    try:
        return Store(db)
    except DetectorError as exc:
        _fail(str(exc))


def _fail(message: str) -> None:
    err.print("[bold red]" + _("error:") + f"[/] {message}", highlight=False)
    raise typer.Exit(1)


def _said(exc: Exception) -> str:
    """An error in the user's language where it carries its catalogue entry."""
    said = getattr(exc, "said", None)
    return said(_lang()) if callable(said) else str(exc)


def _lang() -> str:
    from detector.cli_i18n import lang

    return lang()


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    return table


@app.command(
    help=N_(
        "Ingest log files into the database, keeping the originals as evidence.\n\n"
        "Bad rows go to quarantine with their reasons; the rest is stored. Exits non-zero "
        "only when a file could not be stored at all."
    )
)
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help=N_("Files or folders to ingest."), metavar=N_("FILES...")),
    ],
    kind: Annotated[
        str | None,
        typer.Option(
            help=N_("A record kind (see `detector status`); detected from headers if omitted.")
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            help=N_(
                "Mapping file (TOML or YAML), or the name of a mapping saved in the "
                "dashboard's upload page (see `detector mappings`)."
            )
        ),
    ] = None,
    user: Annotated[
        str | None, typer.Option(help=N_("Who uploads (default: the OS user)."))
    ] = None,
    then_run: Annotated[
        bool,
        typer.Option(
            "--run",
            help=N_(
                "Then run the rules over what changed and score the new visits (as the "
                "dashboard's upload does); `detector run` does it later for many ingests "
                "at once."
            ),
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    from detector import pipeline

    try:
        store = _store(db)
        from detector.mapping import resolve_mapping

        user_mapping, mapping_label = resolve_mapping(store, mapping)
    except DetectorError as exc:
        _fail(_said(exc))
    from detector.ingest import expand_paths

    files = expand_paths(paths)
    sources = [pipeline.Source(p, user_mapping, mapping_label, kind) for p in files]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(_("ingesting"), total=len(files))
        # A long file shows its rows read so far on its own line.
        rows = progress.add_task("", total=None, visible=False)

        def file_done(source, result) -> None:
            progress.advance(task)
            progress.update(rows, completed=0, visible=False)

        def rows_read(source, n: int) -> None:
            progress.update(
                rows,
                description="  " + _("{file}: rows").format(file=source.path.name),
                completed=n,
                visible=True,
            )

        steps = pipeline.Steps() if then_run else pipeline.INGEST_ONLY
        try:
            report = pipeline.run(store, sources, steps, user, on_file=file_done, on_rows=rows_read)
        except (DetectorError, ValueError) as exc:
            _fail(_said(exc))
    results = report.ingested
    table = _table(
        _("Ingest"), _("file"), _("kind"), _("status"), _("stored"), _("quarantined"),
        _("duplicates"), "sha256",
    )  # fmt: skip
    for r in results:
        table.add_row(
            Path(r.path).name,
            words(r.kind) if r.kind else "-",
            words("nothing_stored" if _nothing_stored(r) else r.status),
            number(r.rows_stored),
            number(r.rows_quarantined),
            number(r.rows_duplicate),
            r.sha256[:12],
        )
    console.print(table)
    failed = False
    for r in results:
        said = _result_message(r)
        if r.status in ("failed", "retry"):
            err.print("[red]" + _("error:") + f"[/] {said}", highlight=False)
            failed = True
        elif r.status == "duplicate":
            console.print(f"{Path(r.path).name}: {said}", highlight=False)
        if r.unread and r.status == "stored":
            console.print(
                "  "
                + _(
                    "{file}: columns not read (no field of a {kind} record goes by these "
                    "names; map them with --mapping if they hold one): {columns}"
                ).format(file=Path(r.path).name, kind=words(r.kind), columns=", ".join(r.unread)),
                highlight=False,
            )
        if r.unread_sheets and r.status == "stored":
            console.print(
                "  "
                + _(
                    '{file}: other sheets not read: {sheets}; a mapping with sheet = "*" '
                    'reads every sheet (with one same header), sheet = "<name>" one'
                ).format(
                    file=Path(r.path).name,
                    sheets=", ".join(
                        _("{sheet} (up to {rows} rows)").format(sheet=name, rows=rows - 1)
                        for name, rows in r.unread_sheets
                    ),
                ),
                highlight=False,
            )
        if r.rows_read_otherwise:
            console.print(
                "  "
                + _(
                    "{file}: {count} rows read otherwise than when these bytes were first "
                    "stored (ledger entry {entry}): the first reading is kept, a stored row is "
                    "never replaced; to read the file with this mapping, ingest it into a new "
                    "database"
                ).format(file=Path(r.path).name, count=r.rows_read_otherwise, entry=r.reading_of),
                highlight=False,
            )
        for row, field, reason in _reasons(store, r)[:5]:
            console.print(
                "  "
                + _("{file} row {row}, {field}: {reason}").format(
                    file=Path(r.path).name, row=row, field=_field(field), reason=reason
                ),
                highlight=False,
            )
        if r.rows_quarantined > 5:
            console.print(
                "  … "
                + ngettext(
                    "{n} more quarantined row (see `detector status` or the dashboard)",
                    "{n} more quarantined rows (see `detector status` or the dashboard)",
                    r.rows_quarantined - 5,
                ).format(n=number(r.rows_quarantined - 5))
            )
        if _nothing_stored(r):
            failed = True
    _print_steps(report)
    if failed:
        raise typer.Exit(1)


def _nothing_stored(r) -> bool:
    """An upload recorded (its file kept as evidence, its rows in the quarantine) of which
    no row was stored: said as such, not as "stored", and the command fails."""
    return r.status == "stored" and r.rows_stored == 0 and r.rows_duplicate == 0


def _reasons(store, r) -> list[tuple]:
    """The first rows an ingest set aside, each with why in the user's language (the English
    the ingest reports, or each row's reason worded from its code and values)."""
    if _lang() == "en" or not r.reasons or not r.sha256:
        return r.reasons
    from detector.i18n import reason_wording

    with store.read() as con:
        found = con.execute(
            "SELECT source_row, field, reason_code, reason_values, reason FROM quarantine "
            "WHERE source_sha256 = ? ORDER BY source_row, field LIMIT 5",
            [r.sha256],
        ).fetchall()
    return [(row, f, reason_wording(code, f, values, reason, _lang())) for row, f, code, values,
            reason in found] or r.reasons  # fmt: skip


def _result_message(r) -> str:
    """An ingest result's message in the user's language (its catalogue entry, if any)."""
    if getattr(r, "template", None):
        from detector.errors import said

        return said(r.source or Path(r.path).name, r.template, r.values, _lang())
    return r.message


def _field(name: str) -> str:
    from detector.i18n import field_name

    return name if _lang() == "en" else field_name(name, _lang())


def _print_steps(report) -> None:
    """What the linkage, the rules and the scoring of a pipeline run did."""
    from rich.markup import escape  # (an error's text may hold brackets)

    if report.persons is not None:
        _print_persons(report.persons)
    if report.persons_error:
        err.print(f"[red]{escape(report.linkage_failure(_lang()))}[/]", highlight=False)
    rules = report.rules
    if rules is not None:
        table = _table(
            _("Run {run}, {scope} ({seconds} s)").format(
                run=rules.run_id, scope=rules.scope, seconds=number(rules.seconds, 1)
            ),
            _("rule"), _("hits"), _("new"),
        )  # fmt: skip
        for rule_id, count in sorted(rules.counts.items()):
            table.add_row(rule_id, number(count), number(rules.new.get(rule_id, 0)))
        console.print(table)
        if rules.resolved:
            console.print(
                ngettext(
                    "{n} flag no longer fires: marked resolved by data",
                    "{n} flags no longer fire: marked resolved by data",
                    rules.resolved,
                ).format(n=number(rules.resolved))
            )
        for rule_id, error in rules.errors.items():
            err.print(
                "[red]" + _("rule {rule} failed:").format(rule=rule_id) + f"[/] {escape(error)}",
                highlight=False,
            )
    if report.scoring is not None:
        _print_score(report.scoring)


@app.command(
    help=N_(
        "Mappings saved by name (from the dashboard's upload page): each usable as "
        "`detector ingest --mapping NAME` and by the inbox (files in inbox/NAME/)."
    )
)
def mappings(
    show: Annotated[
        str | None, typer.Argument(help=N_("A name: print that mapping."), metavar=N_("NAME"))
    ] = None,
    db: DbOption = None,
) -> None:
    store = _store(db)
    if show:
        from detector.mapping import load_named, mapping_text

        try:
            saved = load_named(store, show)
        except DetectorError as exc:
            _fail(_said(exc))
        if saved is None:
            _fail(_("no mapping saved under the name {name}").format(name=repr(show)))
        typer.echo(f"# {saved.label}")
        typer.echo(mapping_text(saved.mapping), nl=False)
        return
    with store.read() as con:
        found = con.execute(
            "SELECT name, max(version), arg_max(kind, version), arg_max(sha256, version), "
            "arg_max(saved_by, version), max(saved_at) FROM mappings GROUP BY name ORDER BY name"
        ).fetchall()
    t = _table(
        _("Saved mappings"), _("name"), _("version"), _("kind"), "sha256", _("saved by"),
        _("saved at"),
    )  # fmt: skip
    for name, version, kind, sha, who, at in found:
        t.add_row(
            name, str(version), words(kind) if kind else "-", sha[:16] + "…", who or "",
            _moment(at),
        )  # fmt: skip
    console.print(t)


@app.command(help=N_("What is stored: rows per kind and facility, date ranges, quarantine counts."))
def status(
    format: Annotated[str, typer.Option("--format", help=N_("table or json"))] = "table",
    db: DbOption = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help=N_(
                "What a shared (DuckLake) store held then: a date (its end) or a date and "
                "time, local time unless an offset is given."
            ),
        ),
    ] = None,
) -> None:
    from detector import nopandas
    from detector.status import CURRENT_FORMAT, older_format, status_report

    try:
        with nopandas.refused():
            report = status_report(_store(db), _as_of(as_of) if as_of else None)
    except DetectorError as exc:
        _fail(str(exc))
    if format == "json":
        typer.echo(json.dumps(report, indent=1, default=str, ensure_ascii=False))
        return
    t = _table(
        _("Stored in {database}").format(database=report["database"]),
        _("kind"), _("facility"), _("rows"), _("from"), _("to"),
    )  # fmt: skip
    for row in report["by_facility"]:
        t.add_row(
            words(row["kind"]),
            row["facility"] or "-",
            number(row["rows"]),
            _moment(row["first"]),
            _moment(row["last"]),
        )
    console.print(t)
    q = _table(_("Quarantine"), _("file"), _("reason"), _("rows"))
    for row in report["quarantine"]:
        q.add_row(row["source_name"], words(row["reason_code"]), number(row["rows"]))
    console.print(q)
    console.print(_("uploads in ledger: {n}").format(n=number(report["uploads"])))
    if older_format(report["file_format"]):
        console.print(
            _(
                "file format: DuckDB {found}, older than the {current} new stores are written "
                "in, and slower to fill; the README (The database) says how to copy it into "
                "the newer one"
            ).format(found=report["file_format"], current=CURRENT_FORMAT)
        )
    if "as_of" in report:
        held = report["as_of"]
        console.print(
            _("as of {asked}: snapshot {snapshot}, committed {committed}").format(
                asked=f"{held['asked']:%Y-%m-%d %H:%M %Z}",
                snapshot=held["snapshot"],
                committed=f"{held['committed_at']:%Y-%m-%d %H:%M:%S %Z}",
            ),
            highlight=False,
        )


def _as_of(text: str):
    """A date (meaning its end) or a date and time, in local time unless it says its
    offset, as an aware datetime."""
    from datetime import datetime, timedelta

    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        _fail(
            _(
                "--as-of {text}: give a date (2026-03-31) or a date and time (2026-03-31 18:00)"
            ).format(text=repr(text))
        )
    if len(text.strip()) == 10:  # a date alone: everything committed on that day
        moment += timedelta(days=1, microseconds=-1)
    return moment if moment.tzinfo else moment.astimezone()


def _moment(value) -> str:
    """A date or time as the user's language writes it (as it was for English: ISO)."""
    if value is None or value == "":
        return ""
    if _lang() == "en":
        return str(value)[:16] if not isinstance(value, str) else value
    from detector.i18n import moment

    return moment(value if not isinstance(value, str) else value[:16], _lang())


@app.command(
    help=N_(
        "Re-hash every evidence file and the ledger chain; exit 1 on any mismatch.\n\n"
        "With --anchor, also check that the anchored ledger entry still has the hash it had "
        "then: a rewrite of the whole chain (every hash recomputed) shows only that way."
    )
)
def verify(
    db: DbOption = None,
    anchor: Annotated[
        Path | None,
        typer.Option(help=N_("An anchor written by `detector anchor` and kept off this machine.")),
    ] = None,
) -> None:
    store = _store(db)
    from detector import ledger

    result = ledger.verify(store)
    if anchor is not None:
        try:
            kept = json.loads(anchor.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            _fail(_("{file}: not an anchor file ({problem})").format(file=anchor, problem=exc))
        result.problems += ledger.verify_anchor(store, kept)
    from detector.i18n import said

    for problem in result.problems:
        err.print("[red]" + _("MISMATCH") + f"[/] {said(problem, _lang())}", highlight=False)
    for name in result.unreferenced:
        err.print(
            "[yellow]"
            + _("NOTE")
            + "[/] "
            + _(
                "evidence/{name} is named by no ledger entry (an upload that did not complete)"
            ).format(name=name),
            highlight=False,
        )
    if not result.ok:
        raise typer.Exit(1)
    console.print(
        ngettext(
            "ledger intact: {n} entry, evidence files match their hashes",
            "ledger intact: {n} entries, evidence files match their hashes",
            result.entries,
        ).format(n=number(result.entries))
    )
    if anchor is not None:
        console.print(
            _("the anchor of {taken} (entry {seq}) matches").format(
                taken=_moment(kept.get("taken_at")), seq=kept["seq"]
            )
        )


OutputOption = Annotated[Path | None, typer.Option(help=N_("File to write (default: stdout)."))]


@app.command(
    "anchor",
    help=N_(
        "Print (or write) the ledger's head hash, to be kept off this machine.\n\n"
        "Keep it where whoever runs this machine cannot change it; `detector verify --anchor "
        "FILE` later proves the ledger up to that entry was not rewritten."
    ),
)
def anchor_cmd(db: DbOption = None, output: OutputOption = None) -> None:
    from detector import ledger

    text = json.dumps(ledger.anchor(_store(db)), indent=1) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(
            _("anchor written to {file}: keep a copy off this machine").format(file=output)
        )


@app.command(
    help=N_(
        "Copy this store (ledger, evidence files, records, flags, reviews and their audit "
        "trail, runs, scores, models, saved mappings, dashboard users) into an empty shared "
        "store, then verify the copy as `detector verify` does; exit 1 on any difference."
    )
)
def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help=N_("The store to copy into: 'ducklake:postgres:dbname=… host=…' (empty)."),
        ),
    ],
    db: DbOption = None,
    data_path: Annotated[
        Path | None,
        typer.Option(help=N_("The lake's data folder (default $DETECTOR_DATA_PATH).")),
    ] = None,
) -> None:
    from detector.i18n import said
    from detector.migrate import migrate as copy_store
    from detector.store import Store

    source = _store(db)
    try:
        target = Store(to, data_path=data_path)
        result = copy_store(source, target, say=lambda line: console.print(line, highlight=False))
    except DetectorError as exc:
        _fail(_said(exc))
    for problem in result.problems:
        err.print("[red]" + _("MISMATCH") + f"[/] {said(problem, _lang())}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)
    console.print(
        _(
            "copied into {store}: {rows} rows, {evidence} evidence files; its ledger verifies "
            "(head entry {head})"
        ).format(
            store=target.name,
            rows=number(sum(result.rows.values())),
            evidence=number(result.evidence),
            head=ledger_head(target),
        ),
        highlight=False,
    )


def ledger_head(store) -> str:
    from detector import ledger

    head = ledger.anchor(store)
    return f"{head['seq']}, {head['entry_hash'][:16]}…"


RulesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        help=N_("Extra rules folder (repeatable); the built-in rules always run."),
    ),
]
ModelOption = Annotated[str, typer.Option(help=N_("ecod, iforest, copod, hbos or ensemble."))]
RefitOption = Annotated[
    bool,
    typer.Option(
        "--refit",
        help=N_("Fit a new scoring reference on the history window; re-score every visit."),
    ),
]
rules_app = typer.Typer(help=N_("List, explain and test the rules."), no_args_is_help=True)
app.add_typer(rules_app, name="rules")


@app.command(
    help=N_(
        "Run the rules over what changed (all with --full), then outlier scoring of the new "
        "visits against the kept reference (fitted on the first run, or with --refit)."
    )
)
def run(
    db: DbOption = None,
    rules: RulesOption = None,
    only: Annotated[
        list[str] | None, typer.Option(help=N_("Run only this rule id (repeatable)."))
    ] = None,
    score: Annotated[
        bool, typer.Option(help=N_("Also run outlier scoring (--no-score to skip)."))
    ] = True,
    model: ModelOption = "ecod",
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help=N_("Re-evaluate everything, not only what changed since the last run."),
        ),
    ] = False,
    refit: RefitOption = False,
) -> None:
    import duckdb

    from detector import pipeline

    steps = pipeline.Steps(
        score=score, full=full, refit=refit, model=model, rule_dirs=rules, only=only
    )
    try:
        report = pipeline.run(_store(db), [], steps)
    except (DetectorError, ValueError) as exc:
        _fail(_said(exc))
    except duckdb.Error as exc:  # e.g. out of memory: the run is recorded as failed
        _fail(
            _(
                "the run failed and is recorded as failed in the run history: {error} "
                "(DETECTOR_DUCKDB_MEMORY sets the memory limit)"
            ).format(error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        )
    _print_steps(report)
    if report.rules is not None and report.rules.errors:
        raise typer.Exit(1)


def _write_frame(frame, format: str, output: Path | None) -> None:
    import polars as pl

    from detector.export import neutralise

    if format == "json":
        text = json.dumps(frame.to_dicts(), indent=1, default=str, ensure_ascii=False)
    elif format == "csv":
        flat = frame.with_columns(
            pl.col(c).list.join("; ") for c, t in frame.schema.items() if t == pl.List(pl.String)
        ).with_columns(
            pl.col(c).map_elements(neutralise, return_dtype=pl.String)
            for c, t in frame.schema.items()
            if t == pl.String
        )
        text = flat.write_csv()
    else:
        _fail(_("unknown format {format}: use csv or json").format(format=repr(format)))
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)


def _print_score(scored) -> None:
    console.print(
        _(
            "scoring ({scope}): {rows} visits scored, model {model} fitted on {fit_rows}; "
            "{new} new outlier flags, {resolved} resolved ({seconds} s)"
        ).format(
            scope=scored.scope,
            rows=number(scored.rows),
            model=scored.model_id,
            fit_rows=number(scored.fit_rows),
            new=number(scored.flags_new),
            resolved=number(scored.flags_resolved),
            seconds=number(sum(scored.seconds.values()), 1),
        ),
        highlight=False,
    )


@app.command(
    "score",
    help=N_(
        "Outlier scoring alone. The fitted model and its feature context (the reference) are "
        "kept: a run scores the visits that are new since the last one (and those whose week "
        "or visitor they change) against it. Nothing is refitted unless asked (--refit, or "
        "the scheduler's scoring job) or no reference fits the chosen model yet."
    ),
)
def score_cmd(
    db: DbOption = None,
    model: ModelOption = "ecod",
    refit: RefitOption = False,
    full: Annotated[
        bool,
        typer.Option("--full", help=N_("Re-score every visit against the kept reference.")),
    ] = False,
) -> None:
    import duckdb

    from detector import pipeline

    steps = pipeline.Steps(rules=False, refit=refit, full=full, model=model)
    try:
        report = pipeline.run(_store(db), [], steps)
    except (DetectorError, ValueError, duckdb.Error) as exc:
        _fail(_said(exc).splitlines()[0])
    _print_score(report.scoring)


FormatOption = Annotated[str, typer.Option("--format", help=N_("csv or json"))]


@app.command(
    help=N_(
        "One row per scored visit: record_id, risk_score, outlier_score, top_features, evidence."
    )
)
def scores(
    format: FormatOption = "csv",
    output: OutputOption = None,
    top: Annotated[int | None, typer.Option(help=N_("Only the N riskiest visits."))] = None,
    db: DbOption = None,
) -> None:
    from detector.rollup import load_scores

    frame = load_scores(_store(db), top)
    if frame.is_empty():
        _fail(_("no scores yet: run `detector run` first"))
    _write_frame(frame, format, output)


@app.command(
    help=N_(
        "Risk rolled up per person or official (with the people they escorted; a person's "
        "flags on reader events count too), inmate or facility."
    )
)
def risk(
    by: Annotated[str, typer.Option(help=N_("person, official, inmate or facility"))] = "official",
    format: FormatOption = "csv",
    output: OutputOption = None,
    db: DbOption = None,
) -> None:
    from detector.rollup import rollup

    try:
        frame = rollup(_store(db), by)
    except ValueError as exc:
        _fail(str(exc))
    if frame.is_empty() and by == "person":
        _fail(_("nothing to roll up: no scored visits and no flags on reader events yet"))
    if frame.is_empty():
        _fail(_("no scores yet: run `detector run` first"))
    _write_frame(frame, format, output)


def _print_persons(linked) -> None:
    seconds = sum(linked.seconds.values())
    console.print(
        _(
            "Persons: {scope} ({seconds} s): {rows} rows, {mentions} spellings, {new} new, "
            "{persons} persons, {links} links"
        ).format(
            scope=words(linked.scope),
            seconds=number(seconds, 1),
            rows=number(linked.rows),
            mentions=number(linked.mentions),
            new=number(linked.new_mentions),
            persons=number(linked.persons),
            links=number(linked.joined),
        ),
        highlight=False,
    )


@app.command(
    help=N_(
        "Link the rows stored since the last linkage to persons (the rules and the scoring "
        "do this themselves first): every named row of every kind, against the kept linkage "
        "model; with --refit, a new model trained on the store and every row linked again."
    )
)
def persons(
    refit: Annotated[
        bool,
        typer.Option(
            "--refit",
            help=N_(
                "Train a new linkage model on the whole store and link every row again "
                "(the auditors' merges and splits still hold)."
            ),
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    from detector import identity

    try:
        linked = identity.link(_store(db), refit=refit)
    except DetectorError as exc:
        _fail(_said(exc))
    _print_persons(linked)


MonthsOption = Annotated[
    int,
    typer.Option(min=6, help=N_("Months of logs (at least 6: the planted story needs them).")),
]
SeedOption = Annotated[int, typer.Option(help=N_("Seed of the generated world."))]


@app.command(
    help=N_(
        "Generate a world, ingest it, run rules and scoring, and measure them against its "
        "truth.\n\n"
        "A flag counts as true only when it points at a planted anomaly of its own category. "
        "Prints recall/precision per category, the open review queue's precision at "
        "50/100/200, its share of true flags and flags per 10,000 visits, per rule; then the "
        "average precision and precision@k of the risk ranking of visits, next to a baseline "
        "(plain ECOD on marginal features) computed in the same run."
    )
)
def evaluate(
    seed: SeedOption = 7,
    months: MonthsOption = 6,
    model: ModelOption = "ecod",
    keep: Annotated[
        Path | None, typer.Option(help=N_("Keep the world and its database in this folder."))
    ] = None,
) -> None:
    import tempfile

    from detector.evaluate import evaluate_world

    with tempfile.TemporaryDirectory() as tmp:
        workdir = keep or Path(tmp)
        result = evaluate_world(workdir, seed, months, model)
    titles = (("rules", N_("Rules alone")), ("all_flags", N_("All flags (rules + model)")))
    for key, title in titles:
        t = _table(
            _(title), _("category"), _("planted"), _("found"), _("recall"), _("flags"),
            _("true"), _("precision"),
        )  # fmt: skip
        for q in result[key].values():
            t.add_row(
                words(q.category),
                number(q.planted),
                number(q.found),
                number(q.recall, 2),
                number(q.flags),
                number(q.true_flags),
                number(q.precision, 2),
            )
        console.print(t)
    q = result["queue"]
    t = _table(_("Open review queue (queue order)"), _("rule"), _("flags"), _("true"))
    for rule_id, (n, ok) in q.per_rule.items():
        t.add_row(rule_id, number(n), number(ok))
    console.print(t)
    console.print(
        _(
            "open flags {flags} for {visits} visits ({per_10k} per 10,000); true {true} "
            "(share {share}); {precision}"
        ).format(
            flags=number(q.flags),
            visits=number(q.visits),
            per_10k=number(q.per_10k, 1),
            true=number(q.true_flags),
            share=number(q.share_true, 2),
            precision=", ".join(
                _("precision@{k} {p}").format(k=k, p=number(p, 2))
                for k, p in q.precision_at.items()
            ),
        )
    )
    t = _table(
        _("Ranking of visits against planted anomalies"), _("ranking"), _("AP all"),
        _("AP contextual"), _("P@k all"), _("P@k contextual"),
    )  # fmt: skip
    for r in result["ranking"]:
        t.add_row(
            r.name,
            number(r.ap_all, 3),
            number(r.ap_contextual, 3),
            number(r.p_at_k_all, 3),
            number(r.p_at_k_contextual, 3),
        )
    console.print(t)


@app.command(help=N_("Export flags, one row or object per flag, with evidence and explanation."))
def flags(
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help=N_("csv, csv-semicolon (for a Spanish-locale Excel), xlsx or json"),
        ),
    ] = "csv",
    output: OutputOption = None,
    category: Annotated[str | None, typer.Option(help=N_("Only this category."))] = None,
    min_severity: Annotated[str | None, typer.Option(help=N_("informational…critical"))] = None,
    language: Annotated[
        str | None,
        typer.Option(
            help=N_(
                "es or en: titles, explanations and evidence places "
                "(default: $DETECTOR_LANGUAGE, else es)"
            )
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    from detector import i18n
    from detector.export import EXPORT_FORMATS, flags_bytes
    from detector.flags import FlagQuery, read_flags

    lang = language or i18n.default_language()
    if lang not in i18n.LANGUAGES:
        _fail(_("--language must be one of {values}").format(values=", ".join(i18n.LANGUAGES)))
    if format not in EXPORT_FORMATS:
        _fail(
            _("unknown format {format}: use {formats}").format(
                format=repr(format), formats=", ".join(EXPORT_FORMATS)
            )
        )
    if format == "xlsx" and output is None:
        _fail(_("xlsx needs --output FILE"))
    from detector.risk import SEVERITIES

    if min_severity and min_severity not in SEVERITIES:
        _fail(_("--min-severity must be one of {values}").format(values=", ".join(SEVERITIES)))
    query = FlagQuery(
        categories=[category] if category else [],
        min_severity=min_severity,
        include_suppressed=True,  # an export is the record: everything active
    )
    try:
        data = flags_bytes(read_flags(_store(db), query), format, lang)
    except (DetectorError, ValueError, KeyError) as exc:
        _fail(_said(exc))
    if output is not None:
        output.write_bytes(data)
    elif format == "json":
        typer.echo(data.decode("utf-8"), nl=False)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@app.command(
    help=N_(
        "Word stored findings anew from their rules as they are now.\n\n"
        "A finding keeps the words it was raised with: editing a rule file never changes an "
        "old one. After a rule's wording is corrected, this re-words its flags (in every "
        "language); each flag re-worded is written to the review audit trail with who asked."
    )
)
def reword(
    rule: Annotated[
        list[str] | None, typer.Option(help=N_("Only the flags of this rule id (repeatable)."))
    ] = None,
    rules: RulesOption = None,
    user: Annotated[str | None, typer.Option(help=N_("Who asks (default: the OS user)."))] = None,
    db: DbOption = None,
) -> None:
    import getpass

    from detector.auth import Actor
    from detector.flags import reword as reword_flags
    from detector.rulebook import load_rules

    try:
        loaded = {r.id: r for r in load_rules(rules)}
        changed = reword_flags(_store(db), Actor(user or getpass.getuser(), "admin"), loaded, rule)
    except (DetectorError, ValueError) as exc:
        _fail(_said(exc))
    console.print(
        ngettext(
            "{n} flag re-worded (each on the audit trail)",
            "{n} flags re-worded (each on the audit trail)",
            changed,
        ).format(n=number(changed))
    )


@rules_app.command("list", help=N_("Every rule with its category and severity."))
def rules_list(rules: RulesOption = None) -> None:
    from detector.rulebook import load_rules

    try:
        loaded = load_rules(rules)
    except DetectorError as exc:
        _fail(_said(exc))
    table = _table(
        ngettext("{n} rule", "{n} rules", len(loaded)).format(n=len(loaded)),
        "id", _("category"), _("severity"), _("title"),
    )  # fmt: skip
    for r in sorted(loaded, key=lambda r: (r.category, r.id)):
        table.add_row(r.id, words(r.category), words(r.severity), r.text(_lang()).title)
    console.print(table)


@rules_app.command("show", help=N_("A rule's description, parameters, false positives and query."))
def rules_show(
    rule_id: Annotated[
        str, typer.Argument(help=N_("The rule's id (see `detector rules list`)."), metavar="ID")
    ],
    rules: RulesOption = None,
) -> None:
    from detector.rulebook import load_rules

    match = [r for r in load_rules(rules) if r.id == rule_id]
    if not match:
        _fail(_("no rule with id {rule} (see `detector rules list`)").format(rule=repr(rule_id)))
    r = match[0]
    text = r.text(_lang())
    console.print(
        f"[bold]{r.id}[/] — {text.title}\n{words(r.category)}, {words(r.severity)}, "
        f"{words(r.status)}\n" + _("file: {path}").format(path=r.path) + f"\n\n{text.description}",
        highlight=False,
    )
    console.print(
        _("parameters: {values}").format(values=json.dumps(r.parameters, ensure_ascii=False)),
        highlight=False,
    )
    console.print(
        _("false positives: {items}").format(items="; ".join(text.falsepositives) or "-"),
        highlight=False,
    )
    console.print(r.query, highlight=False, markup=False)


@rules_app.command(
    "test",
    help=N_(
        "Run every rule's regression cases (the hits it must return) and its dont_match "
        "cases (look-alikes it must leave alone); exit 1 if any rule returns other hits."
    ),
)
def rules_test(
    rules: RulesOption = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule", help=N_("Test only this rule (its id; repeatable): while writing one.")
        ),
    ] = None,
) -> None:
    import tempfile

    from rich.markup import escape

    from detector.rulebook import load_rules
    from detector.rulecases import run_case

    try:
        loaded = load_rules(rules)
    except DetectorError as exc:
        _fail(_said(exc))
    if rule:
        unknown = sorted(set(rule) - {r.id for r in loaded})
        if unknown:
            _fail(_("no rule with the id {ids}").format(ids=", ".join(unknown)))
        loaded = [r for r in loaded if r.id in rule]
    failed = 0
    for r in loaded:
        cases = [(_("case {n}").format(n=i + 1), c) for i, c in enumerate(r.regression)] + [
            (_("dont_match {n} ({description})").format(n=i + 1, description=c.description), c)
            for i, c in enumerate(r.dont_match)
        ]
        for label, case in cases:
            with tempfile.TemporaryDirectory() as tmp:
                problems = run_case(r, case, Path(tmp))
            mark = "[green]" + _("ok") + "[/]" if not problems else "[red]" + _("FAIL") + "[/]"
            console.print(f"{mark} {escape(r.id)} {escape(label)}", highlight=False)
            for p in problems:
                console.print(f"    {p}", highlight=False, markup=False)
            failed += bool(problems)
    if failed:
        raise typer.Exit(1)


@app.command(
    help=N_("Write seeded synthetic logs of all five kinds, with planted anomalies and truth.json.")
)
def generate(
    out: Annotated[
        Path,
        typer.Argument(help=N_("Folder to write the synthetic logs into."), metavar=N_("FOLDER")),
    ],
    seed: SeedOption = 7,
    months: MonthsOption = 6,
    events: Annotated[
        bool,
        typer.Option(
            help=N_(
                "Also the perimeter gate's reader events and the zones, with planted access "
                "anomalies (marcaciones.csv, zonas.csv)."
            )
        ),
    ] = False,
) -> None:
    from detector.generator import generate as gen

    files = gen(out, seed=seed, months=months, events=events)
    console.print(
        ngettext("wrote {n} file to {folder}", "wrote {n} files to {folder}", len(files)).format(
            n=len(files), folder=out
        )
    )


PortOption = Annotated[int, typer.Option(help=N_("Port the dashboard listens on."))]
AddressOption = Annotated[str, typer.Option(help=N_("Interface to listen on."))]


@app.command(
    help=N_("The main job: build demo logs, ingest them, run the pipeline, start the dashboard.")
)
def demo(
    out: Annotated[Path, typer.Option(help=N_("Where to write the demo logs."))] = Path(
        "data/demo"
    ),
    db: DbOption = None,
    serve: Annotated[bool, typer.Option(help=N_("Start the dashboard afterwards."))] = True,
    port: PortOption = 8501,
    address: AddressOption = "localhost",
) -> None:
    from detector.demo import PortBusy, port_free, run_demo

    try:
        # a busy port is said before the demo's minutes of work, not after them
        if serve and not port_free(address, port):
            raise PortBusy(address, port)
        code = run_demo(_store(db), out, console, serve=serve, port=port, address=address)
    except DetectorError as exc:
        _fail(_said(exc))
    if code:
        raise typer.Exit(code)


users_app = typer.Typer(help=N_("Dashboard users."), no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command(
    "add",
    help=N_("Create a dashboard user (or reset their password); the password is printed once."),
)
def users_add(
    username: Annotated[
        str,
        typer.Argument(help=N_("The name the user logs in with."), metavar=N_("USERNAME")),
    ],
    role: Annotated[str, typer.Option(help=N_("admin, auditor or viewer"))] = "auditor",
    db: DbOption = None,
) -> None:
    from detector import auth

    try:
        password = auth.add_user(_store(db).users, username, role)
    except ValueError as exc:
        _fail(_said(exc))
    console.print(
        _("{user} ({role}): password [bold]{password}[/]").format(
            user=username, role=words(role), password=password
        ),
        highlight=False,
    )


@app.command(help=N_("Start the review dashboard on the database (login required)."))
def dashboard(
    db: DbOption = None, port: PortOption = 8501, address: AddressOption = "localhost"
) -> None:
    from detector.demo import serve_dashboard

    try:
        code = serve_dashboard(_store(db), console, port, address)
    except DetectorError as exc:
        _fail(_said(exc))
    if code:
        raise typer.Exit(code)


@app.command(
    help=N_(
        "Run scheduled jobs: inbox ingest + incremental rules, scoring, full runs, "
        "notifications.\n\n"
        "Long-lived (APScheduler, cron expressions from the config); never inside the "
        "dashboard. With --once each selected job runs one time, which is what a crontab line "
        "or a systemd timer calls."
    )
)
def schedule(
    config: Annotated[
        Path | None,
        typer.Option(
            help=N_("Schedule file (TOML); default $DETECTOR_SCHEDULE, else schedule.toml.")
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option(help=N_("Run the jobs once now and exit (for cron)."))
    ] = False,
    job: Annotated[list[str] | None, typer.Option(help=N_("Only this job (repeatable)."))] = None,
    db: DbOption = None,
) -> None:
    from detector.schedule import load_config, run_job, serve

    try:
        cfg = load_config(config)
    except DetectorError as exc:
        _fail(_said(exc))
    unknown = set(job or []) - set(cfg.jobs)
    if unknown:
        _fail(
            _("no job named {jobs} in {file}").format(
                jobs=", ".join(sorted(unknown)), file=config or _("the schedule file")
            )
        )
    store = _store(db)
    if once:
        results = [run_job(store, cfg, name) for name in (job or list(cfg.jobs))]
        if any("error" in r for r in results):
            raise typer.Exit(1)
        return
    serve(store, cfg, job)


if __name__ == "__main__":
    app()
