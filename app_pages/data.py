"""Data: import a catalog (upload, bundle zip, demo, folder), check its column roles and its
validation report, then explore what it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import (
    PRIMARY,
    chart,
    damaged_datasets_notice,
    dataset_info,
    dataset_names,
    dataset_picker,
    dataset_stamp,
    digest,
    empty_state,
    ensure_demo,
    gallery,
    get_workspace,
    image_file,
    item_caption,
    label_separators,
    load_dataset_frames,
    log_axis_ticks,
    md_text,
    page_header,
    run_page,
    set_active_dataset,
    show_error,
    style_figure,
    title_or_id,
    upload_limit_mb,
    workspace_root,
)
from recsys.data import stats
from recsys.data.report import replacement_losses, used_columns
from recsys.data.schema import ROLES, Schema
from recsys.data.upload import UploadError, assemble_bundle_zip, zip_entry_examples

SOURCES = ["Upload files", "Upload a .zip bundle", "Built-in demo catalog", "Folder on disk"]
TABLE_TYPES = ["csv", "parquet", "jsonl", "ndjson"]
# the table boxes also take the files people drop there by mistake, so the engine's message can say what they
# are and where they go (the uploader's own refusal says only that the type is not allowed)
UPLOAD_TYPES = [*TABLE_TYPES, "zip", "xlsx", "xls", "json", "tsv"]
ROLE_HELP = (
    "id: identifier · text: titles, descriptions · categorical: one label (brand) · multi_label: "
    "several labels joined by '|' or ';' (genres, co-authors) · numeric: numbers (price) · image: picture path · timestamp · "
    "rating · ignore: not used"
)


# ----------------------------------------------------------------------------- import


def _session_cache(name: str) -> dict:
    return st.session_state.setdefault(name, {})


def _preview(key: str, source: Any) -> tuple[dict[str, pd.DataFrame], dict | None, list[str]]:
    cache = _session_cache("data_preview_cache")
    if key not in cache:
        cache.clear()  # keep one source's tables at a time
        cache[key] = stats.read_bundle_tables(source)
    return cache[key]


def _validate(key: str, source: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """The validation report of ``source`` with role ``overrides`` (cached per source and overrides)."""
    from recsys.data.bundle import discard_bundle, load_bundle

    cache = _session_cache("data_validation_cache")
    cache_key = f"{key}:{json.dumps(overrides, sort_keys=True)}"
    if cache_key not in cache:
        if len(cache) > 8:
            cache.clear()
        with st.spinner("Checking the bundle…"):
            try:
                result = load_bundle(source, schema=overrides or None)
            except Exception as exc:  # a bug, not bad data: say so plainly
                return {
                    "ok": False,
                    "errors": [
                        {
                            "message": f"the bundle could not be checked: {exc}",
                            "file": None,
                            "column": None,
                            "rows": [],
                            "code": "internal",
                        }
                    ],
                    "warnings": [],
                    "counts": {},
                }
            report = result.report.to_dict()
            if result.ok:  # what each evaluation protocol would keep: known before anything trains
                from recsys.train.data import preflight

                bundle = result.bundle
                report["columns"] = used_columns(bundle.schema.to_dict())
                report["protocols"] = preflight(
                    bundle.interactions,
                    catalogue_items=len(bundle.items),
                    has_timestamp=bundle.schema.timestamp_column is not None,
                )
                nothing = evaluation_warning(report["protocols"])
                if nothing is not None:  # it imports, but training would be refused: say so before the import
                    report["warnings"] = [*report.get("warnings", []), nothing]
            discard_bundle(result.bundle)
        cache[cache_key] = report
    return cache[cache_key]


def evaluation_warning(check: dict[str, Any]) -> dict[str, Any] | None:
    """The report's warning when the default protocol keeps no user to test on
    (:func:`recsys.train.data.default_protocol_problem`); None when it keeps some."""
    from recsys.train.data import default_protocol_problem

    problem = default_protocol_problem(check)
    return None if problem is None else {"code": "nothing_to_evaluate", "file": "interactions", "message": problem}


def read_schema(dataset_dir: Path) -> dict[str, Any]:
    """A stored dataset's ``schema.json`` (empty when it cannot be read: the loss check then has no columns)."""
    try:
        return Schema.read(Path(dataset_dir) / "schema.json").to_dict()
    except (OSError, ValueError):  # SchemaError is a ValueError
        return {}


def escaped_columns(columns: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
    """``used_columns`` with each name escaped for Markdown (compared escaped on both sides, so alike)."""
    return None if columns is None else {table: [md_text(c) for c in names] for table, names in columns.items()}


def _issue_text(issue: dict[str, Any]) -> str:
    code = lambda name: "`" + str(name).replace("`", "'") + "`"  # noqa: E731  (a code span shows text as is)
    where = " · ".join(
        part
        for part in (
            code(issue["file"]) if issue.get("file") else None,
            f"column {code(issue['column'])}" if issue.get("column") else None,
        )
        if part
    )
    rows = issue.get("rows") or []
    example = ""
    if rows:
        shown = ", ".join(str(r) for r in rows[:6])
        numbers = all(isinstance(r, int) for r in rows)
        # row numbers count as a spreadsheet does (the header is row 1; a quoted multi-line text is one row)
        if len(rows) == 1:
            example = f" — {'row' if numbers else 'entry'} {shown}"
        else:
            example = f" — e.g. {'rows' if numbers else 'entries'} {shown}"
    message = md_text(issue["message"][0].upper() + issue["message"][1:])
    return f"{'**' + where + '**: ' if where else ''}{message}{md_text(example)}."


def _draw_protocols(check: dict[str, Any]) -> None:
    """What each evaluation protocol keeps of this bundle, and which one training will use by default."""
    from recsys.train.data import PROTOCOL_LABELS as names

    st.info(
        f"**Evaluation: {names.get(check['auto'], check['auto'])}** will be chosen automatically — "
        f"{check['reason']}. Median {check['median_interactions_per_user']:g} interactions per user.",
        icon=":material/fact_check:",
    )
    rows = [
        {
            "Protocol": names.get(p, p),
            "Users": k["users"],
            "Items": k["items"],
            "Interactions": k["interactions"],
            "Users evaluated": k["evaluated_users"],
        }
        for p, k in check["protocols"].items()
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _draw_report(
    report: dict[str, Any], hint_entries: list[str] | None = None, pictures_uploaded: bool | None = None
) -> None:
    errors, warnings = report.get("errors", []), report.get("warnings", [])
    if errors:
        st.error(
            f"**{len(errors)} problem{'s' if len(errors) > 1 else ''} block{'' if len(errors) > 1 else 's'} "
            f"the import.** Fix {'them' if len(errors) > 1 else 'it'} in your files (or change a column's role "
            "above) and try again.",
            icon=":material/block:",
        )
        for issue in errors:
            st.markdown(f":red[:material/error:] {_issue_text(issue)}")
    if warnings:
        with st.expander(
            f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}"
            # with a blocking problem above, the import cannot go ahead whatever the warnings say
            + (" as well" if errors else " — the import can go ahead"),
            expanded=not errors,
            icon=":material/warning:",
        ):
            found = int((report.get("counts") or {}).get("items_with_image") or 0)  # pictures that were found
            for issue in warnings:
                st.markdown(f":orange[:material/warning:] {_issue_text(issue)}")
                if issue.get("code") == "missing_images" and found:
                    # some pictures were found, so the paths have the right form: these files are just absent
                    st.caption(
                        f"{found:,} other pictures were found at the paths the items table names, so the paths "
                        "have the right form: the files of the rows listed are not in the bundle."
                    )
                elif issue.get("code") == "missing_images" and pictures_uploaded is False:
                    # separate files without the pictures .zip: nothing is wrong with the paths
                    st.caption(
                        "No pictures .zip was uploaded: add it beside the tables (its paths matching the picture "
                        "column) to import the pictures; without it the items import with no picture."
                    )
                elif issue.get("code") == "missing_images" and hint_entries:
                    st.caption(
                        "Pictures are looked up at the paths the items table names, relative to the bundle "
                        f"(e.g. `images/42.jpg`). Your pictures zip holds paths like "
                        f"{', '.join(f'`{e}`' for e in hint_entries)}."
                    )
    if not errors and not warnings:
        st.success("No problems found: the bundle is ready to import.", icon=":material/check_circle:")
    for issue in report.get("notes", []):  # what the import will do, not a problem (a column used as an id)
        st.caption(f":material/info: {_issue_text(issue)}")
    counts = report.get("counts") or {}
    if counts:
        cols = st.columns(4)
        for col, (label, key) in zip(
            cols,
            [
                ("Users", "users"),
                ("Items", "items"),
                ("Interactions", "interactions"),
                ("Items with a picture", "items_with_image"),
            ],
        ):
            col.metric(label, f"{counts.get(key, 0):,}")


def _column_mapping(tables: dict[str, Any], schema_json: dict[str, Any] | None, key: str) -> dict[str, dict[str, str]]:
    """Which column is the item id / user id of each table (a file may call them article_id, customer_id…):
    returns only the choices that differ from what the studio found."""
    found = stats.id_columns(tables, schema_json)
    needs_attention = any(column is None or column != name for ids in found.values() for name, column in ids.items())
    changes: dict[str, dict[str, str]] = {}
    with st.expander("Column mapping: which columns are the ids", expanded=needs_attention):
        st.caption(
            "The studio needs an item id in the items table and a user id and an item id in the interactions. "
            "When the files name them otherwise (article_id, customer_id…), choose them here; "
            "the choice is kept in the dataset's schema.json."
        )
        cols = st.columns(sum(len(ids) for ids in found.values()) or 1)
        position = 0
        for table, ids in found.items():
            options = ["—", *[str(c) for c in tables[table].columns]]
            for name, column in ids.items():
                current = column or "—"
                choice = cols[position].selectbox(
                    f"{table}: {name}", options, index=options.index(current), key=f"data_map_{key}_{table}_{name}"
                )
                position += 1
                if choice != current:
                    if column and column != name:
                        changes.setdefault(table, {})[column] = ""  # the earlier choice no longer holds
                    if choice != "—":
                        changes.setdefault(table, {})[choice] = name
    return changes


def _review_and_import(
    source: Any,
    key: str,
    default_name: str,
    hint_entries: list[str] | None = None,
    pictures_uploaded: bool | None = None,
) -> None:
    imported_as = _session_cache("data_imported_sources").get(key)
    if imported_as is not None:
        # the files are still in the uploader after an import: say what became of them instead of offering
        # the same review (and a "replaces it" import) again; one click brings the review back
        cols = st.columns([3, 1], vertical_alignment="center")
        cols[0].caption(f":material/check_circle: These files were imported as **{md_text(imported_as)}**.")
        if cols[1].button("Review them again", key=f"data_review_again_{key}", width="stretch"):
            _session_cache("data_imported_sources").pop(key, None)
            st.rerun()
        return
    tables, schema_json, problems = _preview(key, source)
    if not tables:
        st.error(
            "**The bundle could not be read.** "
            + md_text(sentence_case("; ".join(problems) or "no items or interactions table found"))
            + ". Nothing was imported.",
            icon=":material/error:",
        )
        return
    base = stats.role_table(tables, schema_json)
    st.markdown("##### Column roles")
    st.caption(
        "Each column's role was inferred from its name and values (the reason is shown). Change a role "
        "if it is wrong: the bundle is checked again at once."
    )
    edited = st.data_editor(
        base,
        key=f"data_roles_{key}",
        hide_index=True,
        width="stretch",
        # every column in view (the default box shows ten rows: a bundle's interactions columns were below its
        # fold); a very wide file scrolls within thirty rows
        height="content" if len(base) <= 30 else 31 * 35 + 3,
        disabled=["table", "column", "reason", "example"],
        column_config={
            "table": st.column_config.TextColumn("Table", width="small"),
            "column": st.column_config.TextColumn("Column"),
            "role": st.column_config.SelectboxColumn("Role", options=list(ROLES), required=True, help=ROLE_HELP),
            "reason": st.column_config.TextColumn("Why this role", width="large"),
            "example": st.column_config.TextColumn("Example value", width="medium"),
        },
    )
    overrides = stats.roles_from_table(edited, base)
    if overrides:
        changed = ", ".join(f"{c} → {r}" for t in overrides.values() for c, r in t.items())
        st.caption(f":material/edit: Your changes: {md_text(changed)}")
    mapping = _column_mapping(tables, schema_json, key)
    if mapping:
        overrides["columns"] = mapping

    st.markdown("##### Validation")
    report = _validate(key, source, overrides)
    _draw_report(report, hint_entries, pictures_uploaded)
    if report.get("protocols"):
        _draw_protocols(report["protocols"])

    from recsys.workspace import InvalidName, dataset_name, validate_name

    pseudonymise = st.checkbox(
        "Pseudonymise user ids",
        key=f"data_pseudonymise_{key}",
        help="Store each user id as a keyed hash (u_ + 16 hex digits) made with this workspace's secret key: the "
        "same person gets the same pseudonym in every import here, and the raw ids are never written. "
        "Columns of the users and interactions tables whose role is ignore are not stored at all. "
        "`python -m recsys forget` still takes the raw id.",
    )
    if pseudonymise:
        # only the ids are hashed: say which other user columns are stored as they are, and how to drop them
        described = edited[(edited["table"] == "users") & ~edited["role"].isin(["id", "ignore"])]["column"]
        if len(described):
            st.caption(
                ":material/info: Only the user ids are pseudonymised; these user columns are stored as they "
                f"are: {md_text(', '.join(map(str, described)))}. A column whose role is ignore (set it above) "
                "is not stored."
            )
    # what an import under the name typed below would replace and lose: above the name and the button
    replacing = st.container()
    cols = st.columns([2, 1], vertical_alignment="bottom")
    # the suggestion is derived from the file name and always valid ("My Shop (2)" -> my-shop-2); what is typed
    # is checked as typed, never silently renamed
    name = cols[0].text_input(
        "Dataset name",
        value=dataset_name(default_name),
        key=f"data_name_{key}",
        help="Letters, digits, '.', '_' and '-' (no leading dot, at most 100 characters).",
    )
    final = name.strip()
    try:
        validate_name("dataset name", final)
        name_error = None
    except InvalidName as exc:
        name_error = str(exc)
    if name_error:
        cols[1].button(
            "Import dataset",
            type="primary",
            icon=":material/download:",
            key=f"data_import_{key}",
            disabled=True,
            width="stretch",
        )
        st.error(f"**Choose another name**: {md_text(name_error)}.", icon=":material/edit:")
        return
    confirmed = True
    if get_workspace().has_dataset(final):  # a damaged one too: the import replaces it
        current = dataset_info(final)
        losses = replacement_losses(
            current.counts if current else {},
            report.get("counts") or {},
            # column names are the catalogue's text and go into the warning's Markdown: escaped here
            escaped_columns(used_columns(read_schema(current.path))) if current else None,
            escaped_columns(report.get("columns")),
        )
        if losses:
            pictures_lost = any(loss.startswith("pictures") for loss in losses)
            replacing.warning(
                f"**Importing replaces the dataset {md_text(final)}, and this bundle has less**: "
                + "; ".join(losses)  # numbers, fixed words and escaped column names
                + "."
                + (
                    " Upload the pictures .zip too (or check that its paths match the picture column) to keep them."
                    if pictures_lost
                    else ""
                )
                + " Choose another name to keep both.",
                icon=":material/warning:",
            )
            # the button waits for this: a smaller bundle never replaces a dataset by a single click
            confirmed = replacing.checkbox(
                f"Replace {md_text(final)} with this smaller bundle", key=f"data_replace_{key}_{final}", value=False
            )
        else:
            replacing.caption(
                f":material/info: A dataset named **{md_text(final)}** exists; importing replaces it only if this bundle "
                "has no errors."
            )
    clicked = cols[1].button(
        "Import dataset",
        type="primary",
        icon=":material/download:",
        key=f"data_import_{key}",
        disabled=not report.get("ok") or not confirmed,
        help=None if confirmed else "Tick the box above to replace the existing dataset with this bundle.",
        width="stretch",
    )
    if clicked:
        workspace = get_workspace()
        bar = st.progress(0.0, text="Importing…")

        def progress(stage: str, done: int, total: int) -> None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"Importing: {stage} {done:,}/{total:,}")

        try:
            result = workspace.import_bundle(
                source, name=final, schema=overrides or None, progress=progress, pseudonymise=pseudonymise
            )
        except Exception as exc:
            bar.empty()
            show_error("The import failed; nothing in the workspace changed", exc)
            return
        bar.empty()
        if result.ok:
            st.session_state["data_dataset"] = result.name
            st.session_state["data_imported"] = result.name
            _session_cache("data_imported_sources")[key] = result.name
            _session_cache("data_validation_cache").clear()
            st.rerun()
        else:
            previous = (
                "the dataset already stored under that name is unchanged"
                if get_workspace().has_dataset(final)
                else "nothing was added to the workspace"
            )
            st.error(f"**The import was refused**: {previous}.", icon=":material/block:")
            _draw_report(result.report.to_dict(), hint_entries, pictures_uploaded)


def sentence_case(text: str) -> str:
    """``text`` with its first letter capitalised (the engine's messages start lower case, as clauses)."""
    return text[:1].upper() + text[1:]


def _uploads() -> None:
    limit = upload_limit_mb()
    st.caption(
        f"Tables as CSV (UTF-8; comma-, semicolon- or tab-separated, .tsv too), Parquet or JSON Lines (a "
        f"spreadsheet or other file is taken only to say how to convert it); a shop's own exports (Shopify, "
        f"WooCommerce) as they come; pictures as one .zip whose paths (or file names, for pictures named by web "
        f"address) match the items' picture column (e.g. `images/42.jpg`). A whole bundle in one .zip goes under **Upload a .zip "
        f"bundle** above. **Up to {limit:,} MB per file**: a larger file is refused "
        "(it shows a red mark) — import it from **Folder on disk** instead, or raise `server.maxUploadSize` "
        "in `.streamlit/config.toml`."
    )
    left, right = st.columns(2)
    items = left.file_uploader(
        "Items (required)",
        type=UPLOAD_TYPES,
        key="data_items_file",
        help="`item_id` plus any columns: title, description, category, brand, price, image_file…",
    )
    interactions = right.file_uploader(
        "Interactions (required)",
        type=UPLOAD_TYPES,
        key="data_interactions_file",
        help="`user_id`, `item_id`; optional `rating`, `timestamp`.",
    )
    users = left.file_uploader(
        "Users (optional)", type=UPLOAD_TYPES, key="data_users_file", help="`user_id` plus attributes."
    )
    images = right.file_uploader(
        "Pictures (.zip, optional)",
        type=["zip"],
        key="data_images_file",
        help="The pictures named in the items table, at the same relative paths.",
    )
    zipped = [f.name for f in (items, interactions, users) if f is not None and f.name.lower().endswith(".zip")]
    if zipped and not (items and interactions):  # the error below names it too, once both tables are given
        st.warning(
            f"{md_text(zipped[0])} is a .zip in a table's box: a whole bundle in one .zip goes under **Upload a "
            ".zip bundle** above; pictures go in the **Pictures** box.",
            icon=":material/folder_zip:",
        )
    if not items or not interactions:
        empty_state(
            "Upload at least an **items** file and an **interactions** file to check them here.",
            icon=":material/upload_file:",
        )
        return
    files = {"items": items, "interactions": interactions, **({"users": users} if users else {})}
    ids = "|".join(f"{t}:{f.file_id}" for t, f in files.items()) + (f"|images:{images.file_id}" if images else "")
    cache = _session_cache("data_assembled")
    if ids not in cache:
        cache.clear()
        try:
            cache[ids] = assemble_bundle_zip(
                {t: (f.name, f.getvalue()) for t, f in files.items()}, images.getvalue() if images else None
            )
        except UploadError as exc:
            where = (
                " A whole bundle in one .zip goes under **Upload a .zip bundle** above; pictures go in the "
                "**Pictures** box."
                if any(f.name.lower().endswith(".zip") for f in files.values())
                else ""
            )
            st.error(
                f"**These files cannot be imported**: {md_text(exc)}. Nothing was imported.{where}",
                icon=":material/error:",
            )
            return
    data = cache[ids]
    hint = zip_entry_examples(images.getvalue()) if images else None
    name = Path(items.name).stem.replace("items", "").strip("-_ ") or "my-catalog"
    _review_and_import(data, digest(ids), name, hint, pictures_uploaded=images is not None)


def _zip_bundle() -> None:
    limit = upload_limit_mb()
    st.caption(
        "One .zip holding `items.*`, `interactions.*`, optionally `users.*`, `schema.json` and the pictures "
        f"folder (a single top-level folder inside the zip is fine). **Up to {limit:,} MB**: a larger file is "
        "refused (it shows a red mark) — import it from **Folder on disk** instead, or raise "
        "`server.maxUploadSize` in `.streamlit/config.toml`."
    )
    bundle = st.file_uploader("Bundle (.zip)", type=["zip"], key="data_bundle_file")
    if not bundle:
        empty_state("Upload a bundle .zip to check it here.", icon=":material/folder_zip:")
        return
    _review_and_import(bundle.getvalue(), digest(bundle.file_id), Path(bundle.name).stem)


def _demo() -> None:
    st.write(
        "A generated catalog of 800 products (titles, descriptions, categories, brands, prices, tags and "
        "pictures) and 1,000 shoppers with 30,000 ratings. Its users follow known tastes — some look at "
        "pictures, some read descriptions, some follow brands and prices, some follow the crowd — so the "
        "Attention page can compare what the model learned with the truth."
    )
    exists = "demo" in dataset_names()
    if exists:
        st.success(
            "The demo catalog is in the workspace as **demo**: explore it in the Explore tab.",
            icon=":material/check_circle:",
        )
    if st.button(
        "Import the demo catalog", type="primary", icon=":material/download:", key="data_demo_import", disabled=exists
    ):
        with st.spinner("Generating and importing the demo catalog…"):
            name = ensure_demo()
        set_active_dataset(name)
        st.session_state["data_dataset"] = name
        st.session_state["data_imported"] = name
        st.rerun()


def _folder() -> None:
    st.caption("A bundle folder or .zip file on the machine that runs the studio (e.g. one of the shared datasets).")
    path = st.text_input("Path", key="data_folder_path", placeholder="/data/my-catalog or /data/my-catalog.zip")
    if not path.strip():
        empty_state("Type the path of a bundle folder or .zip to check it here.", icon=":material/folder_open:")
        return
    folder = Path(path.strip()).expanduser()
    if not folder.exists():
        st.error(
            f"**`{folder}` does not exist** on this machine. Check the path and try again.", icon=":material/error:"
        )
        return
    if not (folder.is_dir() or folder.suffix.lower() == ".zip"):
        st.error("**A bundle is a folder or a .zip file.** This path is neither.", icon=":material/error:")
        return
    stamp = folder.stat().st_mtime
    _review_and_import(str(folder), digest(f"{folder.resolve()}:{stamp}"), folder.stem)


def import_section() -> None:
    imported = st.session_state.pop("data_imported", None)
    if imported:
        st.success(
            f"Imported **{imported}**. Explore it in the Explore tab, then train a model on the Train page.",
            icon=":material/check_circle:",
        )
        st.page_link("app_pages/train.py", label="Train a model on it", icon=":material/arrow_forward:")
    source = st.segmented_control(
        "Where is your catalog?", SOURCES, default=SOURCES[0], key="data_source", required=True
    )
    {
        "Upload files": _uploads,
        "Upload a .zip bundle": _zip_bundle,
        "Built-in demo catalog": _demo,
        "Folder on disk": _folder,
    }[source or SOURCES[0]]()


# ----------------------------------------------------------------------------- explore


@st.cache_data(show_spinner="Computing statistics…", max_entries=8)
def dataset_statistics(root: str, name: str, stamp: str) -> dict[str, Any]:
    data = load_dataset_frames(name)
    roles = data.roles
    categories = stats.category_columns(data.items, roles)
    return {
        "overview": stats.overview(data.items, data.interactions, data.users, data.rating_column),
        "items_curve": stats.long_tail_curve(data.interactions, "item"),
        "users_curve": stats.long_tail_curve(data.interactions, "user"),
        "ratings": stats.rating_distribution(data.interactions, data.rating_column),
        "over_time": stats.activity_over_time(data.interactions, data.timestamp_column),
        "coverage": stats.modality_coverage(data.items, roles, data.root),
        "categories": categories,
        "card_columns": stats.card_columns(data.items, roles, data.separator),
        "title": stats.title_column(roles, data.items),
        "price": stats.price_column(data.items, roles, units=data.units()),
    }


def explore_section() -> None:
    name = dataset_picker("Dataset", "data_dataset")
    if not name:
        empty_state("No dataset yet — import one in the **Import** tab, or pick the built-in demo catalog there.")
        return
    info = dataset_info(name)
    data = load_dataset_frames(name)
    summary = dataset_statistics(workspace_root(), name, dataset_stamp(name))
    ov = summary["overview"]
    origin = str(info.manifest.get("source", "?"))
    origin = (
        "the built-in demo generator"
        if "recsys-demo-" in origin
        else ("an upload" if origin == "upload" else f"`{origin}`")
    )
    st.caption(f"Imported {info.manifest.get('imported_at', '?').replace('T', ' ').rstrip('Z')} UTC from {origin}")
    cols = st.columns(6)
    cols[0].metric("Users", f"{ov['users']:,}")
    cols[1].metric("Items", f"{ov['items']:,}")
    cols[2].metric("Interactions", f"{ov['interactions']:,}")
    cols[3].metric(
        "Density",
        f"{ov['density']:.2%}",
        help=f"Sparsity {ov['sparsity']:.2%}: the share of user × item pairs without an interaction.",
    )
    cols[4].metric("Median items per user", f"{ov['median_per_user']:,.0f}")
    cols[5].metric(
        "Median users per item",
        f"{ov['median_per_item']:,.0f}",
        help="Over the whole catalogue: an item nobody has chosen yet counts as 0.",
    )

    left, right = st.columns(2)
    with left:
        curve = summary["items_curve"]
        fig = go.Figure(
            go.Scatter(
                x=curve["rank"],
                y=curve["count"],
                mode="lines",
                line=dict(color=PRIMARY, width=2),
                fill="tozeroy",
                fillcolor="rgba(76,110,245,0.12)",
                hovertemplate="item rank %{x}<br>%{y} users<extra></extra>",
            )
        )
        fig.update_yaxes(type="log", title="users per item (log)", **log_axis_ticks(curve["count"]))
        fig.update_xaxes(title="items, most popular first")
        style_figure(
            fig,
            title=f"Interactions per item — the 20 % most popular items take {ov['top20_item_share']:.0%}",
            legend=False,
        )
        chart(fig, key="data_items_curve")
        with_interactions = int(curve["rank"].max()) if len(curve) else 0
        if ov["items"] > with_interactions:
            idle = ov["items"] - with_interactions
            st.caption(
                f"{idle:,} of {ov['items']:,} items {'has' if idle == 1 else 'have'} no interaction yet and "
                f"{'is' if idle == 1 else 'are'} not on the curve (a log axis has no 0); the model still scores "
                f"{'it' if idle == 1 else 'them'} from {'its' if idle == 1 else 'their'} content."
            )
    with right:
        curve = summary["users_curve"]
        fig = go.Figure(
            go.Scatter(
                x=curve["rank"],
                y=curve["count"],
                mode="lines",
                line=dict(color="#12B886", width=2),
                fill="tozeroy",
                fillcolor="rgba(18,184,134,0.12)",
                hovertemplate="user rank %{x}<br>%{y} items<extra></extra>",
            )
        )
        fig.update_yaxes(type="log", title="items per user (log)", **log_axis_ticks(curve["count"]))
        fig.update_xaxes(title="users, most active first")
        style_figure(
            fig,
            title=f"Interactions per user — median {ov['median_per_user']:,.0f}, most active {ov['max_per_user']:,}",
            legend=False,
        )
        chart(fig, key="data_users_curve")

    left, right = st.columns(2)
    with left:
        ratings = summary["ratings"]
        if len(ratings):
            fig = px.bar(
                ratings,
                # whole stars as 1..5, not 1.0..5.0 (ratings are stored as floats)
                x=ratings["rating"].map(lambda v: f"{v:g}" if isinstance(v, float) else str(v)),
                y="count",
                color_discrete_sequence=[PRIMARY],
                hover_data={"share": ":.1%"},
            )
            fig.update_xaxes(title="rating", type="category")
            fig.update_yaxes(title="interactions")
            style_figure(fig, title=f"Ratings — mean {ov.get('mean_rating') or 0:.2f}", legend=False)
            chart(fig, key="data_ratings")
        else:
            with st.container(border=True):
                st.markdown("**Ratings**")
                st.caption(
                    "This dataset has no rating column: every interaction counts as a positive (implicit feedback)."
                )
    with right:
        coverage = summary["coverage"]
        if len(coverage):
            frame = coverage.iloc[::-1]
            colours = [PRIMARY if kind == "modality" else "#ADB5BD" for kind in frame["kind"]]
            labels = [
                f"{n} ({r})" if k == "column" else f"{n.upper()}"
                for n, r, k in zip(frame["name"], frame["role"], frame["kind"])
            ]
            fig = go.Figure(
                go.Bar(
                    x=frame["share"],
                    y=labels,
                    orientation="h",
                    marker_color=colours,
                    text=[f"{s:.0%}" for s in frame["share"]],
                    textposition="outside",
                    hovertemplate="%{y}: %{x:.1%} of items<extra></extra>",
                )
            )
            fig.update_xaxes(range=[0, 1.15], tickformat=".0%", title="share of items")
            style_figure(
                fig,
                height=max(260, 28 * len(frame) + 60),
                title="Modality coverage — share of items with each modality and column",
                legend=False,
            )
            chart(fig, key="data_coverage")

    over_time = summary["over_time"]
    if len(over_time):
        # the dates as imported (day-first exports included): a wrong reading shows here, not only in the split
        period = over_time.attrs.get("period", "period")
        first, last = over_time.attrs["first"], over_time.attrs["last"]
        fig = go.Figure(
            go.Bar(
                x=over_time["start"],
                y=over_time["interactions"],
                customdata=over_time["users"],
                marker_color=PRIMARY,
                hovertemplate=f"{period} of %{{x|%Y-%m-%d}}<br>%{{y:,}} interactions<br>%{{customdata:,}} users"
                "<extra></extra>",
            )
        )
        fig.update_yaxes(title=f"interactions per {period}")
        fig.update_xaxes(title=None)
        style_figure(
            fig,
            height=280,
            title=f"Interactions over time — {first:%Y-%m-%d} to {last:%Y-%m-%d}, per {period}",
            legend=False,
        )
        chart(fig, key="data_over_time")
        undated = ov["interactions"] - int(over_time["interactions"].sum())
        if undated > 0:
            st.caption(f"{undated:,} interactions have no date and are not on the chart.")

    categories = summary["categories"]
    if categories:
        column = st.selectbox("Break the catalog down by", categories, key="data_category_column")
        breakdown = stats.category_breakdown(
            data.items, column, data.roles.get(column, "categorical"), data.separator, data.interactions
        )
        breakdown = breakdown.iloc[::-1]
        from plotly.subplots import make_subplots

        fig = make_subplots(
            rows=1,
            cols=2,
            shared_yaxes=True,
            horizontal_spacing=0.03,
            subplot_titles=("items", "interactions with them"),
        )
        fig.add_trace(
            go.Bar(
                y=breakdown["value"],
                x=breakdown["items"],
                orientation="h",
                marker_color=PRIMARY,
                hovertemplate="%{y}: %{x:,} items<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                y=breakdown["value"],
                x=breakdown["interactions"],
                orientation="h",
                marker_color="#FAB005",
                hovertemplate="%{y}: %{x:,} interactions<extra></extra>",
            ),
            row=1,
            col=2,
        )
        style_figure(fig, height=max(300, 26 * len(breakdown) + 90), legend=False)
        fig.update_layout(margin=dict(t=40))
        chart(fig, key="data_categories")

    st.markdown("##### A look at the catalog")
    seed = st.session_state.get("data_gallery_seed", 0)
    sample = stats.sample_items(
        data.items, data.roles, data.root, n=12, seed=seed, category=categories[0] if categories else None
    )
    caption_columns = summary["card_columns"][:2]
    gallery(
        [
            {
                "picture": image_file(data.root, row.get(data.image_column))
                if data.image_column
                else image_file("", None),
                "title": title_or_id(row.get(summary["title"]), row["item_id"]),
                "caption": item_caption(
                    row,
                    caption_columns,
                    summary["price"],
                    labels=label_separators(data),
                    price_unit=data.unit(summary["price"]),
                    price_style=data.amount_style(summary["price"]),
                ),
            }
            for _, row in sample.iterrows()
        ]
    )
    if st.button("Show other items", icon=":material/shuffle:", key="data_gallery_shuffle"):
        st.session_state["data_gallery_seed"] = seed + 1
        st.rerun()

    with st.expander("Column roles and import warnings"):
        roles = pd.DataFrame(
            [
                {
                    "table": table,
                    "column": column,
                    "role": role,
                    "why": (info.manifest.get("reasons", {}).get(table, {}) or {}).get(column, ""),
                }
                for table in ("items", "interactions", "users")
                for column, role in (data.schema.get(table) or {}).items()
            ]
        )
        st.dataframe(roles, hide_index=True, width="stretch")
        warnings = info.manifest.get("warnings") or []
        if warnings:
            st.markdown("**Warnings at import**")
            for warning in warnings:
                st.caption(md_text(str(warning).removeprefix("[warning] ")))


def main() -> None:
    page_header(
        "Data",
        "Import a catalog — items with text, pictures and attributes, and who interacted with what "
        "— check it, and see what it holds.",
    )
    damaged_datasets_notice()
    has_data = bool(dataset_names())
    labels = [":material/insights: Explore", ":material/upload: Import"]
    tabs = st.tabs(labels if has_data else labels[::-1])
    explore_tab, import_tab = (tabs[0], tabs[1]) if has_data else (tabs[1], tabs[0])
    with import_tab:
        import_section()
    with explore_tab:
        explore_section()


run_page(main)
