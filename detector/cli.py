"""The `detector` command line: thin commands over the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from detector.errors import DetectorError

# Commands import what they use when they run: `detector --help` and a mistyped option
# answer at once instead of loading polars, DuckDB and PyOD first.

app = typer.Typer(
    help="Audit prison access logs: ingest, check, score and review.",
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
        help="DuckDB file (default ./data/detector.duckdb), or a shared DuckLake: "
        "'ducklake:postgres:dbname=… host=…' with its data folder in DETECTOR_DATA_PATH.",
    ),
]


def _store(db: str | None):
    from detector.store import Store

    try:
        return Store(db)
    except DetectorError as exc:
        _fail(str(exc))


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    kind: Annotated[
        str | None,
        typer.Option(
            help="A record kind (see `detector status`); detected from headers if omitted."
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            help="Mapping file (TOML or YAML), or the name of a mapping saved in the "
            "dashboard's upload page (see `detector mappings`)."
        ),
    ] = None,
    user: Annotated[str | None, typer.Option(help="Who uploads (default: the OS user).")] = None,
    then_run: Annotated[
        bool,
        typer.Option(
            "--run",
            help="Then run the rules over what changed and score the new visits (as the "
            "dashboard's upload does); `detector run` does it later for many ingests at once.",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Ingest log files into the database, keeping the originals as evidence.

    Bad rows go to quarantine with their reasons; the rest is stored. Exits non-zero
    only when a file could not be stored at all.
    """
    from detector import pipeline

    try:
        store = _store(db)
        from detector.mapping import resolve_mapping

        user_mapping, mapping_label = resolve_mapping(store, mapping)
    except DetectorError as exc:
        _fail(str(exc))
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
        task = progress.add_task("ingesting", total=len(files))
        # A long file shows its rows read so far on its own line.
        rows = progress.add_task("", total=None, visible=False)

        def file_done(source, result) -> None:
            progress.advance(task)
            progress.update(rows, completed=0, visible=False)

        def rows_read(source, n: int) -> None:
            progress.update(
                rows, description=f"  {source.path.name}: rows", completed=n, visible=True
            )

        steps = pipeline.Steps() if then_run else pipeline.INGEST_ONLY
        try:
            report = pipeline.run(store, sources, steps, user, on_file=file_done, on_rows=rows_read)
        except (DetectorError, ValueError) as exc:
            _fail(str(exc))
    results = report.ingested
    table = Table(title="Ingest")
    for col in ("file", "kind", "status", "stored", "quarantined", "duplicates", "sha256"):
        table.add_column(col)
    for r in results:
        table.add_row(
            Path(r.path).name,
            r.kind or "-",
            r.status,
            str(r.rows_stored),
            str(r.rows_quarantined),
            str(r.rows_duplicate),
            r.sha256[:12],
        )
    console.print(table)
    failed = False
    for r in results:
        if r.status in ("failed", "retry"):
            err.print(f"[red]error:[/] {r.message}", highlight=False)
            failed = True
        elif r.status == "duplicate":
            console.print(f"{Path(r.path).name}: {r.message}", highlight=False)
        for row, field, reason in r.reasons[:5]:
            console.print(f"  {Path(r.path).name} row {row}, {field}: {reason}", highlight=False)
        if r.rows_quarantined > 5:
            console.print(
                f"  … {r.rows_quarantined - 5} more quarantined rows "
                "(see `detector status` or the dashboard)"
            )
        if r.status == "stored" and r.rows_stored == 0 and r.rows_duplicate == 0:
            failed = True
    _print_steps(report)
    if failed:
        raise typer.Exit(1)


def _print_steps(report) -> None:
    """What the linkage, the rules and the scoring of a pipeline run did."""
    if report.persons is not None:
        _print_persons(report.persons)
    if report.persons_error:
        err.print(
            f"[red]linking rows to persons failed[/] (recorded as failed in the run history; "
            f"the rules read the persons as they were): {report.persons_error}",
            highlight=False,
        )
    rules = report.rules
    if rules is not None:
        table = Table(title=f"Run {rules.run_id}, {rules.scope} ({rules.seconds:.1f} s)")
        for col in ("rule", "hits", "new"):
            table.add_column(col)
        for rule_id, count in sorted(rules.counts.items()):
            table.add_row(rule_id, str(count), str(rules.new.get(rule_id, 0)))
        console.print(table)
        if rules.resolved:
            console.print(f"{rules.resolved} flags no longer fire: marked resolved by data")
        for rule_id, error in rules.errors.items():
            err.print(f"[red]rule {rule_id} failed:[/] {error}", highlight=False)
    if report.scoring is not None:
        _print_score(report.scoring)


@app.command()
def mappings(
    show: Annotated[str | None, typer.Argument(help="A name: print that mapping.")] = None,
    db: DbOption = None,
) -> None:
    """Mappings saved by name (from the dashboard's upload page): each usable as
    `detector ingest --mapping NAME` and by the inbox (files in inbox/NAME/)."""
    store = _store(db)
    if show:
        from detector.mapping import load_named, mapping_text

        try:
            saved = load_named(store, show)
        except DetectorError as exc:
            _fail(str(exc))
        if saved is None:
            _fail(f"no mapping saved under the name {show!r}")
        typer.echo(f"# {saved.label}")
        typer.echo(mapping_text(saved.mapping), nl=False)
        return
    with store.read() as con:
        found = con.execute(
            "SELECT name, max(version), arg_max(kind, version), arg_max(sha256, version), "
            "arg_max(saved_by, version), max(saved_at) FROM mappings GROUP BY name ORDER BY name"
        ).fetchall()
    t = Table(title="Saved mappings")
    for col in ("name", "version", "kind", "sha256", "saved by", "saved at"):
        t.add_column(col)
    for name, version, kind, sha, who, at in found:
        t.add_row(name, str(version), kind or "-", sha[:16] + "…", who or "", str(at)[:16])
    console.print(t)


@app.command()
def status(
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    db: DbOption = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="What a shared (DuckLake) store held then: a date (its end) or a date and "
            "time, local time unless an offset is given.",
        ),
    ] = None,
) -> None:
    """What is stored: rows per kind and facility, date ranges, quarantine counts."""
    from detector.status import status_report

    try:
        report = status_report(_store(db), _moment(as_of) if as_of else None)
    except DetectorError as exc:
        _fail(str(exc))
    if format == "json":
        typer.echo(json.dumps(report, indent=1, default=str, ensure_ascii=False))
        return
    t = Table(title=f"Stored in {report['database']}")
    for col in ("kind", "facility", "rows", "from", "to"):
        t.add_column(col)
    for row in report["by_facility"]:
        t.add_row(
            row["kind"],
            row["facility"] or "-",
            str(row["rows"]),
            str(row["first"] or ""),
            str(row["last"] or ""),
        )
    console.print(t)
    q = Table(title="Quarantine")
    for col in ("file", "reason", "rows"):
        q.add_column(col)
    for row in report["quarantine"]:
        q.add_row(row["source_name"], row["reason_code"], str(row["rows"]))
    console.print(q)
    console.print(f"uploads in ledger: {report['uploads']}")
    if "as_of" in report:
        held = report["as_of"]
        console.print(
            f"as of {held['asked']:%Y-%m-%d %H:%M %Z}: snapshot {held['snapshot']}, "
            f"committed {held['committed_at']:%Y-%m-%d %H:%M:%S %Z}",
            highlight=False,
        )


def _moment(text: str):
    """A date (meaning its end) or a date and time, in local time unless it says its
    offset, as an aware datetime."""
    from datetime import datetime, timedelta

    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        _fail(f"--as-of {text!r}: give a date (2026-03-31) or a date and time (2026-03-31 18:00)")
    if len(text.strip()) == 10:  # a date alone: everything committed on that day
        moment += timedelta(days=1, microseconds=-1)
    return moment if moment.tzinfo else moment.astimezone()


@app.command()
def verify(
    db: DbOption = None,
    anchor: Annotated[
        Path | None,
        typer.Option(help="An anchor written by `detector anchor` and kept off this machine."),
    ] = None,
) -> None:
    """Re-hash every evidence file and the ledger chain; exit 1 on any mismatch.

    With --anchor, also check that the anchored ledger entry still has the hash it had
    then: a rewrite of the whole chain (every hash recomputed) shows only that way."""
    store = _store(db)
    from detector import ledger

    result = ledger.verify(store)
    if anchor is not None:
        try:
            kept = json.loads(anchor.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            _fail(f"{anchor}: not an anchor file ({exc})")
        result.problems += ledger.verify_anchor(store, kept)
    for problem in result.problems:
        err.print(f"[red]MISMATCH[/] {problem}", highlight=False)
    for name in result.unreferenced:
        err.print(
            f"[yellow]NOTE[/] evidence/{name} is named by no ledger entry "
            "(an upload that did not complete)",
            highlight=False,
        )
    if not result.ok:
        raise typer.Exit(1)
    console.print(f"ledger intact: {result.entries} entries, evidence files match their hashes")
    if anchor is not None:
        console.print(f"the anchor of {kept.get('taken_at')} (entry {kept['seq']}) matches")


@app.command("anchor")
def anchor_cmd(
    db: DbOption = None,
    output: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
) -> None:
    """Print (or write) the ledger's head hash, to be kept off this machine.

    Keep it where whoever runs this machine cannot change it; `detector verify --anchor
    FILE` later proves the ledger up to that entry was not rewritten."""
    from detector import ledger

    text = json.dumps(ledger.anchor(_store(db)), indent=1) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"anchor written to {output}: keep a copy off this machine")


@app.command()
def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to", help="The store to copy into: 'ducklake:postgres:dbname=… host=…' (empty)."
        ),
    ],
    db: DbOption = None,
    data_path: Annotated[
        Path | None,
        typer.Option(help="The lake's data folder (default $DETECTOR_DATA_PATH)."),
    ] = None,
) -> None:
    """Copy this store (ledger, evidence files, records, flags, reviews and their audit
    trail, runs, scores, models, saved mappings, dashboard users) into an empty shared
    store, then verify the copy as `detector verify` does; exit 1 on any difference."""
    from detector.migrate import migrate as copy_store
    from detector.store import Store

    source = _store(db)
    try:
        target = Store(to, data_path=data_path)
        result = copy_store(source, target, say=lambda line: console.print(line, highlight=False))
    except DetectorError as exc:
        _fail(str(exc))
    for problem in result.problems:
        err.print(f"[red]MISMATCH[/] {problem}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)
    console.print(
        f"copied into {target.name}: {sum(result.rows.values())} rows, {result.evidence} "
        f"evidence files; its ledger verifies (head entry {ledger_head(target)})",
        highlight=False,
    )


def ledger_head(store) -> str:
    from detector import ledger

    head = ledger.anchor(store)
    return f"{head['seq']}, {head['entry_hash'][:16]}…"


RulesOption = Annotated[
    list[Path] | None,
    typer.Option("--rules", help="Extra rules folder (repeatable); the built-in rules always run."),
]
ModelOption = Annotated[str, typer.Option(help="ecod, iforest, copod, hbos or ensemble.")]
RefitOption = Annotated[
    bool,
    typer.Option(
        "--refit", help="Fit a new scoring reference on the history window; re-score every visit."
    ),
]
rules_app = typer.Typer(help="List, explain and test the rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


@app.command()
def run(
    db: DbOption = None,
    rules: RulesOption = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only this rule id (repeatable).")
    ] = None,
    score: Annotated[
        bool, typer.Option(help="Also run outlier scoring (--no-score to skip).")
    ] = True,
    model: ModelOption = "ecod",
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Re-evaluate everything, not only what changed since the last run."
        ),
    ] = False,
    refit: RefitOption = False,
) -> None:
    """Run the rules over what changed (all with --full), then outlier scoring of the new
    visits against the kept reference (fitted on the first run, or with --refit)."""
    import duckdb

    from detector import pipeline

    steps = pipeline.Steps(
        score=score, full=full, refit=refit, model=model, rule_dirs=rules, only=only
    )
    try:
        report = pipeline.run(_store(db), [], steps)
    except (DetectorError, ValueError) as exc:
        _fail(str(exc))
    except duckdb.Error as exc:  # e.g. out of memory: the run is recorded as failed
        _fail(
            f"the run failed and is recorded as failed in the run history: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]} (DETECTOR_DUCKDB_MEMORY "
            "sets the memory limit)"
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
        _fail(f"unknown format {format!r}: use csv or json")
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)


def _print_score(scored) -> None:
    console.print(
        f"scoring ({scored.scope}): {scored.rows:,} visits scored, model "
        f"{scored.model_id} fitted on {scored.fit_rows:,}; {scored.flags_new} new outlier "
        f"flags, {scored.flags_resolved} resolved ({sum(scored.seconds.values()):.1f} s)",
        highlight=False,
    )


@app.command("score")
def score_cmd(
    db: DbOption = None,
    model: ModelOption = "ecod",
    refit: RefitOption = False,
    full: Annotated[
        bool, typer.Option("--full", help="Re-score every visit against the kept reference.")
    ] = False,
) -> None:
    """Outlier scoring alone. The fitted model and its feature context (the reference) are
    kept: a run scores the visits that are new since the last one (and those whose week or
    visitor they change) against it. Nothing is refitted unless asked (--refit, or the
    scheduler's scoring job) or no reference fits the chosen model yet."""
    import duckdb

    from detector import pipeline

    steps = pipeline.Steps(rules=False, refit=refit, full=full, model=model)
    try:
        report = pipeline.run(_store(db), [], steps)
    except (DetectorError, ValueError, duckdb.Error) as exc:
        _fail(str(exc).splitlines()[0])
    _print_score(report.scoring)


@app.command()
def scores(
    format: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    output: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    top: Annotated[int | None, typer.Option(help="Only the N riskiest visits.")] = None,
    db: DbOption = None,
) -> None:
    """One row per scored visit: record_id, risk_score, outlier_score, top_features, evidence."""
    from detector.rollup import load_scores

    frame = load_scores(_store(db), top)
    if frame.is_empty():
        _fail("no scores yet: run `detector run` first")
    _write_frame(frame, format, output)


@app.command()
def risk(
    by: Annotated[str, typer.Option(help="person, official, inmate or facility")] = "official",
    format: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    output: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    db: DbOption = None,
) -> None:
    """Risk rolled up per person or official (with the people they escorted; a person's
    flags on reader events count too), inmate or facility."""
    from detector.rollup import rollup

    try:
        frame = rollup(_store(db), by)
    except ValueError as exc:
        _fail(str(exc))
    if frame.is_empty() and by == "person":
        _fail("nothing to roll up: no scored visits and no flags on reader events yet")
    if frame.is_empty():
        _fail("no scores yet: run `detector run` first")
    _write_frame(frame, format, output)


def _print_persons(linked) -> None:
    seconds = sum(linked.seconds.values())
    console.print(
        f"Persons: {linked.scope} ({seconds:.1f} s): {linked.rows:,} rows, "
        f"{linked.mentions:,} spellings, {linked.new_mentions:,} new, "
        f"{linked.persons:,} persons, {linked.joined:,} links",
        highlight=False,
    )


@app.command()
def persons(
    refit: Annotated[
        bool,
        typer.Option(
            "--refit",
            help="Train a new linkage model on the whole store and link every row again "
            "(the auditors' merges and splits still hold).",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Link the rows stored since the last linkage to persons (the rules and the scoring
    do this themselves first): every named row of every kind, against the kept linkage
    model; with --refit, a new model trained on the store and every row linked again."""
    from detector import identity

    try:
        linked = identity.link(_store(db), refit=refit)
    except DetectorError as exc:
        _fail(str(exc))
    _print_persons(linked)


@app.command()
def evaluate(
    seed: int = 7,
    months: Annotated[
        int, typer.Option(min=6, help="Months of logs (at least 6: the planted story needs them).")
    ] = 6,
    model: Annotated[str, typer.Option(help="ecod, iforest, copod, hbos or ensemble.")] = "ecod",
    keep: Annotated[
        Path | None, typer.Option(help="Keep the world and its database in this folder.")
    ] = None,
) -> None:
    """Generate a world, ingest it, run rules and scoring, and measure them against its truth.

    A flag counts as true only when it points at a planted anomaly of its own category.
    Prints recall/precision per category, the open review queue's precision at 50/100/200,
    its share of true flags and flags per 10,000 visits, per rule; then the average
    precision and precision@k of the risk ranking of visits, next to a baseline (plain
    ECOD on marginal features) computed in the same run.
    """
    import tempfile

    from detector.evaluate import evaluate_world

    with tempfile.TemporaryDirectory() as tmp:
        workdir = keep or Path(tmp)
        result = evaluate_world(workdir, seed, months, model)
    for key, title in (("rules", "Rules alone"), ("all_flags", "All flags (rules + model)")):
        t = Table(title=title)
        for col in ("category", "planted", "found", "recall", "flags", "true", "precision"):
            t.add_column(col)
        for q in result[key].values():
            t.add_row(
                q.category,
                str(q.planted),
                str(q.found),
                f"{q.recall:.2f}",
                str(q.flags),
                str(q.true_flags),
                f"{q.precision:.2f}",
            )
        console.print(t)
    q = result["queue"]
    t = Table(title="Open review queue (queue order)")
    for col in ("rule", "flags", "true"):
        t.add_column(col)
    for rule_id, (n, ok) in q.per_rule.items():
        t.add_row(rule_id, str(n), str(ok))
    console.print(t)
    console.print(
        f"open flags {q.flags} for {q.visits} visits ({q.per_10k:.1f} per 10,000); "
        f"true {q.true_flags} (share {q.share_true:.2f}); "
        + ", ".join(f"precision@{k} {p:.2f}" for k, p in q.precision_at.items())
    )
    t = Table(title="Ranking of visits against planted anomalies")
    for col in ("ranking", "AP all", "AP contextual", "P@k all", "P@k contextual"):
        t.add_column(col)
    for r in result["ranking"]:
        t.add_row(
            r.name,
            f"{r.ap_all:.3f}",
            f"{r.ap_contextual:.3f}",
            f"{r.p_at_k_all:.3f}",
            f"{r.p_at_k_contextual:.3f}",
        )
    console.print(t)


@app.command()
def flags(
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="csv, csv-semicolon (for a Spanish-locale Excel), xlsx or json",
        ),
    ] = "csv",
    output: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    min_severity: Annotated[str | None, typer.Option(help="informational…critical")] = None,
    language: Annotated[
        str | None,
        typer.Option(
            help="es or en: titles, explanations and evidence places "
            "(default: $DETECTOR_LANGUAGE, else es)"
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Export flags, one row or object per flag, with evidence and explanation."""
    from detector import i18n
    from detector.export import EXPORT_FORMATS, flags_bytes
    from detector.flags import FlagQuery, read_flags

    lang = language or i18n.default_language()
    if lang not in i18n.LANGUAGES:
        _fail(f"--language must be one of {', '.join(i18n.LANGUAGES)}")
    if format not in EXPORT_FORMATS:
        _fail(f"unknown format {format!r}: use {', '.join(EXPORT_FORMATS)}")
    if format == "xlsx" and output is None:
        _fail("xlsx needs --output FILE")
    from detector.risk import SEVERITIES

    if min_severity and min_severity not in SEVERITIES:
        _fail(f"--min-severity must be one of {', '.join(SEVERITIES)}")
    query = FlagQuery(
        categories=[category] if category else [],
        min_severity=min_severity,
        include_suppressed=True,  # an export is the record: everything active
    )
    try:
        data = flags_bytes(read_flags(_store(db), query), format, lang)
    except (DetectorError, ValueError, KeyError) as exc:
        _fail(str(exc))
    if output is not None:
        output.write_bytes(data)
    elif format == "json":
        typer.echo(data.decode("utf-8"), nl=False)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@app.command()
def reword(
    rule: Annotated[
        list[str] | None, typer.Option(help="Only the flags of this rule id (repeatable).")
    ] = None,
    rules: RulesOption = None,
    user: Annotated[str | None, typer.Option(help="Who asks (default: the OS user).")] = None,
    db: DbOption = None,
) -> None:
    """Word stored findings anew from their rules as they are now.

    A finding keeps the words it was raised with: editing a rule file never changes an old
    one. After a rule's wording is corrected, this re-words its flags (in every language);
    each flag re-worded is written to the review audit trail with who asked."""
    import getpass

    from detector.auth import Actor
    from detector.flags import reword as reword_flags
    from detector.rulebook import load_rules

    try:
        loaded = {r.id: r for r in load_rules(rules)}
        changed = reword_flags(_store(db), Actor(user or getpass.getuser(), "admin"), loaded, rule)
    except (DetectorError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"{changed} flags re-worded (each on the audit trail)")


@rules_app.command("list")
def rules_list(rules: RulesOption = None) -> None:
    """Every rule with its category and severity."""
    from detector.rulebook import load_rules

    try:
        loaded = load_rules(rules)
    except DetectorError as exc:
        _fail(str(exc))
    table = Table(title=f"{len(loaded)} rules")
    for col in ("id", "category", "severity", "title"):
        table.add_column(col)
    for r in sorted(loaded, key=lambda r: (r.category, r.id)):
        table.add_row(r.id, r.category, r.severity, r.title)
    console.print(table)


@rules_app.command("show")
def rules_show(rule_id: str, rules: RulesOption = None) -> None:
    """A rule's description, parameters, false positives and query."""
    from detector.rulebook import load_rules

    match = [r for r in load_rules(rules) if r.id == rule_id]
    if not match:
        _fail(f"no rule with id {rule_id!r} (see `detector rules list`)")
    r = match[0]
    console.print(
        f"[bold]{r.id}[/] — {r.title}\n{r.category}, {r.severity}, {r.status}\n"
        f"file: {r.path}\n\n{r.description}",
        highlight=False,
    )
    console.print(f"parameters: {json.dumps(r.parameters, ensure_ascii=False)}", highlight=False)
    console.print(f"false positives: {'; '.join(r.falsepositives) or '-'}", highlight=False)
    console.print(r.query, highlight=False, markup=False)


@rules_app.command("test")
def rules_test(rules: RulesOption = None) -> None:
    """Run every rule's regression cases (the hits it must return) and its dont_match
    cases (look-alikes it must leave alone); exit 1 if any rule returns other hits."""
    import tempfile

    from rich.markup import escape

    from detector.rulebook import load_rules
    from detector.rulecases import run_case

    try:
        loaded = load_rules(rules)
    except DetectorError as exc:
        _fail(str(exc))
    failed = 0
    for r in loaded:
        cases = [(f"case {i + 1}", c) for i, c in enumerate(r.regression)] + [
            (f"dont_match {i + 1} ({c.description})", c) for i, c in enumerate(r.dont_match)
        ]
        for label, case in cases:
            with tempfile.TemporaryDirectory() as tmp:
                problems = run_case(r, case, Path(tmp))
            mark = "[green]ok[/]" if not problems else "[red]FAIL[/]"
            console.print(f"{mark} {escape(r.id)} {escape(label)}", highlight=False)
            for p in problems:
                console.print(f"    {p}", highlight=False, markup=False)
            failed += bool(problems)
    if failed:
        raise typer.Exit(1)


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic logs into.")],
    seed: int = 7,
    months: Annotated[
        int, typer.Option(min=6, help="Months of logs (at least 6: the planted story needs them).")
    ] = 6,
    events: Annotated[
        bool,
        typer.Option(
            help="Also the perimeter gate's reader events and the zones, with planted access "
            "anomalies (marcaciones.csv, zonas.csv)."
        ),
    ] = False,
) -> None:
    """Write seeded synthetic logs of all five kinds, with planted anomalies and truth.json."""
    from detector.generator import generate as gen

    files = gen(out, seed=seed, months=months, events=events)
    console.print(f"wrote {len(files)} files to {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the demo logs.")] = Path("data/demo"),
    db: DbOption = None,
    serve: Annotated[bool, typer.Option(help="Start the dashboard afterwards.")] = True,
) -> None:
    """The main job: build demo logs, ingest them, run the pipeline, start the dashboard."""
    from detector.demo import run_demo

    try:
        run_demo(_store(db), out, console, serve=serve)
    except DetectorError as exc:
        _fail(str(exc))


users_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin, auditor or viewer")] = "auditor",
    db: DbOption = None,
) -> None:
    """Create a dashboard user (or reset their password); the password is printed once."""
    from detector import auth

    try:
        password = auth.add_user(_store(db).users, username, role)
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"{username} ({role}): password [bold]{password}[/]", highlight=False)


@app.command()
def dashboard(
    db: DbOption = None,
    port: int = 8501,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "localhost",
) -> None:
    """Start the review dashboard on the database (login required)."""
    from detector.demo import serve_dashboard

    serve_dashboard(_store(db), console, port, address)


@app.command()
def schedule(
    config: Annotated[
        Path | None,
        typer.Option(help="Schedule file (TOML); default $DETECTOR_SCHEDULE, else schedule.toml."),
    ] = None,
    once: Annotated[bool, typer.Option(help="Run the jobs once now and exit (for cron).")] = False,
    job: Annotated[list[str] | None, typer.Option(help="Only this job (repeatable).")] = None,
    db: DbOption = None,
) -> None:
    """Run scheduled jobs: inbox ingest + incremental rules, scoring, full runs, notifications.

    Long-lived (APScheduler, cron expressions from the config); never inside the dashboard.
    With --once each selected job runs one time, which is what a crontab line or a systemd
    timer calls.
    """
    from detector.schedule import load_config, run_job, serve

    try:
        cfg = load_config(config)
    except DetectorError as exc:
        _fail(str(exc))
    unknown = set(job or []) - set(cfg.jobs)
    if unknown:
        _fail(f"no job named {', '.join(sorted(unknown))} in {config or 'the schedule file'}")
    store = _store(db)
    if once:
        results = [run_job(store, cfg, name) for name in (job or list(cfg.jobs))]
        if any("error" in r for r in results):
            raise typer.Exit(1)
        return
    serve(store, cfg, job)


if __name__ == "__main__":
    app()
