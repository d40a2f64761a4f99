"""Upload: detect each file's kind and layout, review the mapping, ingest, then run checks."""

import shutil
import tempfile
from pathlib import Path

import polars as pl
import streamlit as st

from dashboard import data, session
from dashboard.labels import table
from dashboard.text import _, lang, ngettext, number, words
from detector.errors import FileError, said
from detector.export import neutralised
from detector.i18n import field_name
from detector.ingest import plan
from detector.mapping import (
    UserMapping,
    load_mapping,
    load_named,
    mapping_text,
    named_mappings,
)
from detector.schema import SPECS

st.title(_("Upload logs"))
if not session.can("upload"):
    st.warning(_("Your role can read the logs but not upload them."))
    st.stop()


def planned(path: Path, mapping: UserMapping):
    """``ingest.plan`` of an upload, kept in the session while the file and the mapping stay
    the same: every pick on this page reruns it, and planning a workbook opens it in its
    sandbox (half a second for a FOIA workbook of 3,000 rows), twice with the preview."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, repr(mapping))
    plans = st.session_state.setdefault("upload_plans", {})
    if key not in plans:
        if len(plans) >= 16:
            plans.clear()
        plans[key] = plan(path, None, mapping)
    return plans[key]


def _open_raised(runs: list[int]) -> None:
    """The review queue, filtered to the flags the upload raised."""
    from dashboard.filters import FILTER_KEYS

    st.session_state.update(FILTER_KEYS)
    st.session_state["f_runs"] = list(runs)


def show_results() -> None:
    """What the last ingest of this session stored, refused and quarantined, and the flags
    the checks that followed raised (with a way to them)."""
    found = st.session_state.get("upload_raised")
    if found and found.get("runs"):
        n = found["new"]
        if n:
            st.info(
                ngettext(
                    "The checks raised {n} new flag.", "The checks raised {n} new flags.", n
                ).format(n=number(n))
            )
            if st.button(
                ngettext("Review it in the queue", "Review them in the queue", n),
                key="open_raised", on_click=_open_raised, args=(found["runs"],),
            ):  # fmt: skip
                st.switch_page("views/1_Review_queue.py")
        else:
            st.info(_("The checks raised no new flag."))
    for n, r in enumerate(st.session_state.get("upload_results", [])):
        name = Path(r["path"]).name
        message = (
            said(r["source"] or name, r["template"], r["values"], lang())
            if r["template"]
            else f"{name}: {r['message']}"
        )
        if r["status"] == "failed":
            st.error(session.md(message if r["template"] else r["message"]))
        elif r["status"] == "duplicate":
            st.warning(session.md(message))
        else:
            st.success(
                ngettext(
                    "{file}: {stored} row stored, {quarantined} quarantined, {duplicate} "
                    "already stored · SHA-256 `{sha}`",
                    "{file}: {stored} rows stored, {quarantined} quarantined, {duplicate} "
                    "already stored · SHA-256 `{sha}`",
                    r["rows_stored"],
                ).format(
                    file=session.md(name),
                    stored=number(r["rows_stored"]),
                    quarantined=number(r["rows_quarantined"]),
                    duplicate=number(r["rows_duplicate"]),
                    sha=r["sha256"],
                )
            )
        if r["rows_quarantined"]:
            report = session.guarded(data.quarantine, session.store(), name, lang=lang())
            table(report.drop("raw"), key=f"reasons_{n}_{name}")
            st.download_button(
                _("Validation report of {file} (CSV)").format(file=name),
                neutralised(report).write_csv(),
                file_name=f"{Path(name).stem}-quarantine.csv",
                key=f"rep_{n}_{name}",
            )


def built_from(source) -> str:
    """How a field is read when it is more than one plain column, in words."""
    columns = [c for c in source.columns if c]
    if source.op == "value":
        return _('the constant "{value}"').format(value=source.value)
    if source.op == "first_of":
        return _("the first non-empty of {columns}").format(columns=", ".join(columns))
    if source.op in ("join", "datetime") and len(columns) > 1:
        return " + ".join(columns)
    return ""


def map_by_hand(i: int, name: str, path: Path, order: str):
    """A layout the synonyms do not know: the user says what the file holds and which
    column holds each field (every column listed with sample values, the date order shown
    on a value of the file), or uploads a mapping file. Returns (plan, mapping) once the
    required fields are mapped, else None."""
    st.markdown(
        _(
            "**Map this file's columns.** Say what the file holds and which column holds "
            "each field, or upload a mapping file (the one `detector ingest --mapping` reads)."
        )
    )
    mapping_file = st.file_uploader(
        _("Mapping file (TOML or YAML)"), type=["toml", "yaml", "yml"], key=f"mapfile_{i}_{name}"
    )
    if mapping_file is not None:
        kept = path.parent / data.safe_file_name(mapping_file.name)
        kept.write_bytes(mapping_file.getvalue())
        try:
            mapping = load_mapping(kept)
            return planned(path, mapping), mapping
        except FileError as exc:
            st.error(session.md(exc.said(lang())))
            return None
    kind = st.selectbox(_("The file holds"), list(SPECS), format_func=words, key=f"kind_{i}_{name}")
    samples = session.guarded(data.column_samples, path)
    st.caption(_("The file's columns, with a few values of each"))
    table(samples, key=f"samples_{i}_{name}")
    columns = ["", *samples["column"].to_list()]
    unmapped = _("(not in this file)")
    picked = {}
    fields = sorted(SPECS[kind].fields, key=lambda f: not f.required)
    # each picker starts from the column the ingest's synonyms would read the field from
    guessed = data.guessed_columns(kind, samples["column"].to_list())
    for f in fields:
        picked[f.name] = st.selectbox(
            field_name(f.name, lang()) + (" " + _("(required)") if f.required else ""),
            columns,
            index=columns.index(guessed.get(f.name, "")),
            format_func=lambda c: c or unmapped,
            key=f"pick_{i}_{name}_{kind}_{f.name}",
        )
    first_date = next(
        (picked[f.name] for f in fields if f.type == "datetime" and picked.get(f.name)), None
    )
    if first_date:
        values = samples.filter(samples["column"] == first_date)["samples"][0].split(" · ")
        if values and values[0]:
            readings = data.date_readings(values[0], lang())
            st.caption(
                _('"{value}" reads as: {readings} (the date order chosen above is {order})').format(
                    value=session.md(values[0]),
                    readings="; ".join(
                        f"{_(data.DATE_ORDERS[o])}: {session.md(r)}" for o, r in readings.items()
                    ),
                    order=_(data.DATE_ORDERS[order]),
                )
            )
    mapping = UserMapping(
        kind=kind, date_order=order, columns={k: v for k, v in picked.items() if v}
    )
    missing = [f for f in SPECS[kind].required if not picked.get(f)]
    if missing:
        st.info(
            _("Still to map: {fields}.").format(
                fields=", ".join(field_name(m, lang()) for m in missing)
            )
        )
        return None
    try:
        return planned(path, mapping), mapping
    except FileError as exc:
        st.error(session.md(exc.said(lang())))
        return None


files = st.file_uploader(
    _(
        "Visit logbooks, transfers, rosters, custody registers, facilities (CSV, XLSX, Parquet, JSON)"
    ),
    accept_multiple_files=True,
    # a new key after each ingest empties the box, so the copies are not made again
    key=f"uploads_{st.session_state.get('upload_round', 0)}",
)
if not files:
    st.caption(
        _(
            "Files are kept unchanged as evidence, with their SHA-256, and recognised if "
            "uploaded again."
        )
    )
    show_results()
    st.stop()

if "upload_dir" not in st.session_state:  # (setdefault would make a new folder every run)
    st.session_state["upload_dir"] = tempfile.mkdtemp(prefix="upload-")
workdir = Path(st.session_state["upload_dir"])
paths, mappings, labels = [], {}, {}
store = session.store()
saved_names = session.guarded(named_mappings, store)
for i, upload in enumerate(files):
    # Each file in its own folder under a safe name: two files may share a name, and a
    # name such as ".." must not reach the file system as a path.
    path = workdir / str(i) / data.safe_file_name(upload.name)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(upload.getvalue())
    paths.append(path)
    with st.expander(
        _("{file} — {size} bytes").format(
            file=session.md(upload.name), size=number(len(upload.getvalue()))
        ),
        expanded=True,
    ):
        saved_name = (
            st.selectbox(
                _("Saved mapping"), [None, *saved_names], key=f"saved_{i}_{upload.name}",
                format_func=lambda n: _("none: detect the columns") if n is None else n,
            )
            if saved_names
            else None
        )  # fmt: skip
        if saved_name:
            saved = session.guarded(load_named, store, saved_name)
            base, order = saved.mapping, saved.mapping.date_order
            labels[path] = saved.label
            st.caption(
                _("Read with the saved mapping {name}, version {version}.").format(
                    name=session.md(saved.name), version=saved.version
                )
            )
        else:
            order = st.selectbox(
                _("Date order"), list(data.DATE_ORDERS),
                format_func=lambda o: _(data.DATE_ORDERS[o]), key=f"order_{i}_{upload.name}",
            )  # fmt: skip
            base = UserMapping(date_order=order)
        try:
            p = planned(path, base)
        except FileError as exc:
            # said while the file is not yet mapped; gone once the columns are picked
            refused = st.empty()
            refused.warning(session.md(exc.said(lang())))
            picked = map_by_hand(i, upload.name, path, order)
            if picked is None:
                continue
            refused.empty()
            p, base = picked
        st.write(
            _(
                "Kind **{kind}** · format {format} · encoding {encoding} · delimiter {delimiter}"
            ).format(
                kind=session.md(words(p.kind)),
                format=p.table.format,
                encoding=session.md(p.table.encoding or "-"),
                delimiter=session.md(repr(p.table.delimiter)),
            )
        )
        headers = ["", *p.table.columns]
        current = {
            f.name: (
                p.sources[f.name].columns[0]
                if f.name in p.sources and p.sources[f.name].op == "column"
                else ""
            )
            for f in SPECS[p.kind].fields
        }
        # "as detected" says how a field is built when it is more than one column (a date
        # and a time, a name in parts); a plain column would only repeat the pick
        built = [built_from(p.sources[k]) if k in p.sources else "" for k in current]
        editor = {
            "field": [field_name(k, lang()) for k in current],
            "column": list(current.values()),
        }
        if any(built):
            editor["as detected"] = built
        edited = st.data_editor(
            pl.DataFrame(editor),
            column_config={
                "column": st.column_config.SelectboxColumn(_("Column"), options=headers),
                "field": st.column_config.TextColumn(_("Field"), disabled=True),
                "as detected": st.column_config.TextColumn(_("As detected"), disabled=True),
            },
            hide_index=True,
            key=f"map_{i}_{upload.name}",
        )
        chosen = dict(zip(current, edited["column"], strict=True))
        changed = {k: v for k, v in chosen.items() if v and v != current[k]}
        mappings[path] = base.model_copy(
            update={"kind": p.kind, "date_order": base.date_order,
                    "columns": {**base.columns, **changed}}
        )  # fmt: skip
        # Read with the named mapping as saved (the ledger cites it), unless changed since.
        named = st.session_state.get(f"named_{i}_{upload.name}")
        if named and named[1] == mapping_text(mappings[path]):
            labels[path] = named[0]
        keep, download = st.columns(2)
        with keep.form(f"name_{i}_{upload.name}", border=False):
            name = st.text_input(
                _("Save as a named mapping"), key=f"mapname_{i}_{upload.name}",
                help=_("Kept in the database with its SHA-256; usable with `detector ingest "
                       "--mapping NAME` and by the inbox (files in inbox/NAME/)."),
            )  # fmt: skip
            if st.form_submit_button(_("Save mapping")) and name.strip():
                try:
                    saved = data.save_mapping(
                        session.writer(), session.actor(), name, mappings[path]
                    )
                except FileError as exc:
                    st.error(session.md(exc.said(lang())))
                except PermissionError as exc:
                    st.error(session.md(exc))
                else:
                    st.session_state[f"named_{i}_{upload.name}"] = (
                        saved.label,
                        mapping_text(mappings[path]),
                    )
                    st.success(
                        _("Saved as {name}, version {version} (SHA-256 {sha}).").format(
                            name=session.md(saved.name), version=saved.version,
                            sha=saved.sha256[:16] + "…",
                        )
                    )  # fmt: skip
        download.download_button(
            _("Download this mapping (TOML)"),
            data.mapping_toml(p.kind, {k: v for k, v in chosen.items() if v}, order),
            file_name=f"{path.stem}.mapping.toml",
            key=f"save_{i}_{upload.name}",
        )
        st.caption(_("Preview: the first rows as they will be stored"))
        try:
            good, bad = data.canonical_preview(planned(path, mappings[path]), mappings[path])
        except FileError as exc:
            st.warning(session.md(exc.said(lang())))
        else:
            table(good, key=f"preview_{i}_{upload.name}")
            if bad.height:
                st.caption(
                    ngettext(
                        "{n} of these rows would go to quarantine: {reasons}",
                        "{n} of these rows would go to quarantine: {reasons}",
                        bad["source_row"].n_unique(),
                    ).format(
                        n=bad["source_row"].n_unique(),
                        reasons=", ".join(words(c) for c in bad["reason_code"].unique().sort()),
                    )
                )

if st.button(
    ngettext(
        "Ingest {n} file and run the checks", "Ingest {n} files and run the checks", len(paths)
    ).format(n=len(paths)),
    type="primary",
    key="ingest",
):
    bar = st.progress(0.0, text=_("ingesting…"))
    results, found = data.ingest_uploaded(
        session.writer(),
        session.actor(),
        paths,
        mappings,
        progress=lambda x, name: bar.progress(x, text=name),
        labels=labels,
    )
    bar.empty()
    st.session_state["upload_results"] = [r.as_dict() for r in results]
    st.session_state["upload_raised"] = found
    # The copies served their purpose: the evidence folder keeps the originals.
    shutil.rmtree(st.session_state.pop("upload_dir"), ignore_errors=True)
    st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1
    st.rerun()
