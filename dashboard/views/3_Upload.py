"""Upload: detect each file's kind and layout, review the mapping, ingest, then run checks."""

import shutil
import tempfile
from pathlib import Path

import polars as pl
import streamlit as st

from dashboard import data, session
from dashboard.labels import readable
from detector.errors import FileError
from detector.export import neutralised
from detector.ingest import plan
from detector.mapping import UserMapping, load_mapping
from detector.schema import SPECS

st.title("Upload logs")
if not session.can("upload"):
    st.warning("Your role can read the logs but not upload them.")
    st.stop()


def show_results() -> None:
    """What the last ingest of this session stored, refused and quarantined."""
    for n, r in enumerate(st.session_state.get("upload_results", [])):
        name = Path(r["path"]).name
        if r["status"] == "failed":
            st.error(session.md(r["message"]))
        elif r["status"] == "duplicate":
            st.warning(session.md(f"{name}: {r['message']}"))
        else:
            st.success(
                f"{session.md(name)}: {r['rows_stored']:,} rows stored, {r['rows_quarantined']:,} "
                f"quarantined, {r['rows_duplicate']:,} already stored · SHA-256 "
                f"`{r['sha256']}`"
            )
        if r["rows_quarantined"]:
            report = session.guarded(data.quarantine, session.store(), name)
            st.dataframe(
                readable(report.drop("raw")),
                hide_index=True,
                width="stretch",
                key=f"reasons_{n}_{name}",
            )
            st.download_button(
                f"Validation report of {name} (CSV)",
                neutralised(report).write_csv(),
                file_name=f"{Path(name).stem}-quarantine.csv",
                key=f"rep_{n}_{name}",
            )


def map_by_hand(i: int, name: str, path: Path, order: str):
    """A layout the synonyms do not know: the user says what the file holds and which
    column holds each field (every column listed with sample values, the date order shown
    on a value of the file), or uploads a mapping file. Returns (plan, mapping) once the
    required fields are mapped, else None."""
    st.markdown(
        "**Map this file's columns.** Say what the file holds and which column holds each "
        "field, or upload a mapping file (the one `detector ingest --mapping` reads)."
    )
    mapping_file = st.file_uploader(
        "Mapping file (TOML or YAML)", type=["toml", "yaml", "yml"], key=f"mapfile_{i}_{name}"
    )
    if mapping_file is not None:
        kept = path.parent / data.safe_file_name(mapping_file.name)
        kept.write_bytes(mapping_file.getvalue())
        try:
            mapping = load_mapping(kept)
            return plan(path, None, mapping), mapping
        except (FileError, ValueError) as exc:
            st.error(session.md(f"{mapping_file.name}: {exc}"))
            return None
    kind = st.selectbox("The file holds", list(SPECS), key=f"kind_{i}_{name}")
    samples = session.guarded(data.column_samples, path)
    st.caption("The file's columns, with a few values of each")
    st.dataframe(readable(samples), hide_index=True, width="stretch", key=f"samples_{i}_{name}")
    columns = ["", *samples["column"].to_list()]
    picked = {}
    fields = sorted(SPECS[kind].fields, key=lambda f: not f.required)
    for f in fields:
        picked[f.name] = st.selectbox(
            f"{f.name.replace('_', ' ').capitalize()}" + (" (required)" if f.required else ""),
            columns,
            key=f"pick_{i}_{name}_{kind}_{f.name}",
        )
    first_date = next(
        (picked[f.name] for f in fields if f.type == "datetime" and picked.get(f.name)), None
    )
    if first_date:
        values = samples.filter(samples["column"] == first_date)["samples"][0].split(" · ")
        if values and values[0]:
            readings = data.date_readings(values[0])
            st.caption(
                f'"{session.md(values[0])}" reads as: '
                + "; ".join(f"{o}: {session.md(r)}" for o, r in readings.items())
                + f" (the date order chosen above is {order})"
            )
    mapping = UserMapping(
        kind=kind, date_order=order, columns={k: v for k, v in picked.items() if v}
    )
    missing = [f for f in SPECS[kind].required if not picked.get(f)]
    if missing:
        st.info(f"Still to map: {', '.join(m.replace('_', ' ') for m in missing)}.")
        return None
    try:
        return plan(path, None, mapping), mapping
    except FileError as exc:
        st.error(session.md(exc))
        return None


files = st.file_uploader(
    "Visit logbooks, transfers, rosters, custody registers, facilities (CSV, XLSX, Parquet, JSON)",
    accept_multiple_files=True,
    # a new key after each ingest empties the box, so the copies are not made again
    key=f"uploads_{st.session_state.get('upload_round', 0)}",
)
if not files:
    st.caption(
        "Files are kept unchanged as evidence, with their SHA-256, and recognised if "
        "uploaded again."
    )
    show_results()
    st.stop()

if "upload_dir" not in st.session_state:  # (setdefault would make a new folder every run)
    st.session_state["upload_dir"] = tempfile.mkdtemp(prefix="upload-")
workdir = Path(st.session_state["upload_dir"])
paths, mappings = [], {}
for i, upload in enumerate(files):
    # Each file in its own folder under a safe name: two files may share a name, and a
    # name such as ".." must not reach the file system as a path.
    path = workdir / str(i) / data.safe_file_name(upload.name)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(upload.getvalue())
    paths.append(path)
    with st.expander(
        f"{session.md(upload.name)} — {len(upload.getvalue()):,} bytes", expanded=True
    ):
        order = st.selectbox("Date order", ["dmy", "mdy", "ymd"], key=f"order_{i}_{upload.name}")
        base = UserMapping(date_order=order)
        try:
            p = plan(path, None, base)
        except FileError as exc:
            st.warning(session.md(exc))
            picked = map_by_hand(i, upload.name, path, order)
            if picked is None:
                continue
            p, base = picked
        st.write(
            f"Kind **{p.kind}** · format {p.table.format} · encoding "
            f"{session.md(p.table.encoding or '-')} · delimiter {session.md(repr(p.table.delimiter))}"
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
        edited = st.data_editor(
            pl.DataFrame(
                {
                    "field": list(current),
                    "column": list(current.values()),
                    "as detected": [
                        p.sources[k].describe() if k in p.sources else "" for k in current
                    ],
                }
            ),
            column_config={
                "column": st.column_config.SelectboxColumn(options=headers),
                "field": st.column_config.TextColumn(disabled=True),
                "as detected": st.column_config.TextColumn(disabled=True),
            },
            hide_index=True,
            key=f"map_{i}_{upload.name}",
        )
        chosen = dict(zip(edited["field"], edited["column"], strict=True))
        changed = {k: v for k, v in chosen.items() if v and v != current[k]}
        mappings[path] = base.model_copy(
            update={"kind": p.kind, "date_order": base.date_order,
                    "columns": {**base.columns, **changed}}
        )  # fmt: skip
        st.download_button(
            "Save this mapping (TOML)",
            data.mapping_toml(p.kind, {k: v for k, v in chosen.items() if v}, order),
            file_name=f"{path.stem}.mapping.toml",
            key=f"save_{i}_{upload.name}",
        )
        st.caption("Preview (first 20 rows as read)")
        st.dataframe(
            next(p.table.batches(20)).frame.head(20),
            hide_index=True,
            width="stretch",
            key=f"preview_{i}_{upload.name}",
        )

if st.button(f"Ingest {len(paths)} file(s) and run the checks", type="primary", key="ingest"):
    bar = st.progress(0.0, text="ingesting…")
    results = data.ingest_uploaded(
        session.writer(),
        session.actor(),
        paths,
        mappings,
        progress=lambda x, name: bar.progress(x, text=name),
    )
    bar.empty()
    st.session_state["upload_results"] = [r.as_dict() for r in results]
    # The copies served their purpose: the evidence folder keeps the originals.
    shutil.rmtree(st.session_state.pop("upload_dir"), ignore_errors=True)
    st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1
    st.rerun()
