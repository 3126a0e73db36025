"""Helpers shared by the pages: workspace access, cached engine calls and the studio's UI pieces.

No model code here: everything that computes goes through ``recsys``. Models are cached with
``st.cache_resource`` (keyed by run folder and the model's modification time), frames with
``st.cache_data``. Session keys are prefixed by page (``data_``, ``train_``, ``rec_``, ``att_``,
``exp_``, ``home_``); ``app_run`` is the shared one (the run in use). The active dataset is the
workspace's (``Workspace.active_dataset``), shared by every window.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from recsys.modalities import MODALITY_NAMES  # noqa: F401 (the pages import it from here)
from recsys.train.records import RunRecord
from recsys.train.report import METRIC_COLUMNS
from recsys.workspace import DEFAULT_ROOT, ENV_VAR, Workspace, ensure_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
PLACEHOLDER = str(ASSETS / "no-picture.png")

PAGES = {
    "home": "app.py",
    "data": "app_pages/data.py",
    "train": "app_pages/train.py",
    "recommendations": "app_pages/recommendations.py",
    "attention": "app_pages/attention.py",
    "experiments": "app_pages/experiments.py",
}

STATE_STYLE = {  # state -> (label, badge colour, material icon)
    "starting": ("Starting", "yellow", ":material/hourglass_top:"),
    "running": ("Running", "blue", ":material/autorenew:"),
    "finished": ("Finished", "green", ":material/check_circle:"),
    "stopped": ("Stopped", "orange", ":material/stop_circle:"),
    "failed": ("Failed", "red", ":material/error:"),
    "interrupted": ("Interrupted", "red", ":material/warning:"),
    "unknown": ("Unknown", "gray", ":material/help:"),
}
MODALITY_COLOURS = {"behaviour": "#4C6EF5", "text": "#12B886", "image": "#FAB005", "attributes": "#E64980"}


# ----------------------------------------------------------------------------- page frame


def run_page(body: Callable[[], None]) -> None:
    """Draw a page; any error is explained in words, with the details folded away (never a raw traceback)."""
    try:
        body()
    except Exception as exc:  # Streamlit's rerun/stop signals are BaseExceptions and pass through
        show_error("This page ran into a problem and could not be drawn completely", exc)


def show_error(headline: str, exc: BaseException | str, details: str | None = None) -> None:
    message = plain_error(exc)
    st.error(f"**{headline}.** {md_text(message)}", icon=":material/error:")
    trace = (
        details
        if details is not None
        else ("".join(traceback.format_exception(exc)) if isinstance(exc, BaseException) else "")
    )
    if trace:
        with st.expander("Technical details"):
            st.code(trace, language=None)


_MARKDOWN_INLINE = re.compile(r"([\\`*_{}\[\]<>|~$:])")
# GFM turns a bare URL, www. name or e-mail address into a link even when its characters are escaped (the
# autolink pass runs on the parsed text): an invisible word joiner after ``scheme:``, in ``www.`` and after
# ``@`` keeps it text that reads the same
_WORD_JOINER = "\u2060"
_AUTOLINK_LITERAL = re.compile(r"(?i)(\b(?:https?|ftp):(?=//)|\bwww(?=\.)|@)")
_ICON_CODE = re.compile(r"(?i):(?=material/|streamlit:)")


def md_text(value: Any) -> str:
    """Catalogue text for ``st.markdown``/``st.caption``: what Markdown would act on is escaped, so a title
    such as ``![x](http://host/p.png)`` shows as those characters (never as an image, a link, emphasis, an
    emoji shortcode or a heading); dots and parentheses mid-line stay as they are, and a bare URL or e-mail
    address gets an invisible word joiner (U+2060) so that it is not made a link."""
    text = _AUTOLINK_LITERAL.sub(r"\1" + _WORD_JOINER, str(value))
    # Streamlit draws ``:material/home:`` as an icon even with its colons escaped: a word joiner after the
    # first colon keeps the code as the characters it is
    text = _ICON_CODE.sub(":" + _WORD_JOINER, text)
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)
    text = re.sub(r"(?m)^(\s*)(\d+)\.", r"\1\2\\.", text)  # "1. " would start a list
    return re.sub(r"(?m)^(\s*)([#>+\-=])", r"\1\\\2", text)  # headings, quotes, bullets


def plain_error(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = text.strip() or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = "the machine ran out of memory"
    return text[0].upper() + text[1:] if text else text


def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


def empty_state(message: str, page: str | None = None, label: str | None = None, icon: str = ":material/info:") -> None:
    """A friendly "nothing here yet" box that says what to do next (with a link to the page)."""
    with st.container(border=True):
        st.markdown(f"{icon} {message}")
        if page:
            st.page_link(PAGES[page], label=label or f"Go to the {page.title()} page", icon=":material/arrow_forward:")


def state_badge(state: str) -> None:
    label, colour, icon = STATE_STYLE.get(state, STATE_STYLE["unknown"])
    st.badge(label, icon=icon, color=colour)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_time(stamp: float | None) -> str:
    if not stamp:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def fmt_metric(value: Any, decimals: int = 3) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not np.isfinite(value) else f"{value:.{decimals}f}"


def metric_decimals(a: Any, b: Any) -> int:
    """Decimals to show two metrics side by side with: 3, or 4 where rounding to 3 would draw a gap of 0.001
    between two values less than half that apart (0.70450 and 0.70446 read "0.705" against "0.704", a tie
    shown as a win)."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return 3
    if not (np.isfinite(a) and np.isfinite(b)):
        return 3
    return 4 if f"{a:.3f}" != f"{b:.3f}" and abs(a - b) < 0.0005 else 3


# ----------------------------------------------------------------------------- workspace


def workspace_root() -> str:
    return str(Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT).resolve())


@st.cache_resource(show_spinner=False)
def _workspace_at(root: str) -> Workspace:
    return Workspace(root)


def get_workspace() -> Workspace:
    """The workspace named by RECSYS_WORKSPACE (or ./workspace), one object per folder."""
    return _workspace_at(workspace_root())


def ensure_demo(progress: Callable[[str, int, int], None] | None = None) -> str:
    return ensure_demo_dataset(get_workspace(), progress=progress)


def dataset_names() -> list[str]:
    """The datasets whose files read: the ones pickers offer (see :func:`damaged_datasets_notice` for the rest)."""
    return [info.name for info in get_workspace().list_datasets() if not info.damaged]


def dataset_info(name: str):
    return next((info for info in get_workspace().list_datasets() if info.name == name), None)


def damaged_datasets_notice() -> None:
    """A warning per damaged dataset, naming the file and what to do; the other datasets work as usual."""
    for info in get_workspace().list_datasets():
        if info.damaged:
            st.warning(
                f"**Dataset {md_text(info.name)} cannot be used.** {md_text(info.damaged)}.",
                icon=":material/broken_image:",
            )


def damaged_models_notice() -> None:
    """A warning per ended run whose saved model has a file that cannot be read (such runs are not offered), and
    per run whose metrics.json cannot be read (it is listed without metrics)."""
    for run in list_all_runs():
        problem = run.model_damaged
        if problem:
            st.warning(
                f"**The model of run {md_text(run.run_id)} could not be loaded.** {md_text(problem)}.",
                icon=":material/broken_image:",
            )
        if run.metrics_damaged:
            st.warning(
                f"**The metrics of run {md_text(run.run_id)} could not be read.** {md_text(run.metrics_damaged)}.",
                icon=":material/broken_image:",
            )


def dataset_stamp(name: str) -> str:
    info = dataset_info(name)
    if info is None:
        return ""
    # a forget rewrites the dataset without a new import: its record changes the stamp too
    return f"{info.manifest.get('imported_at', '')}|{len(info.manifest.get('forgotten') or [])}"


@dataclass
class DatasetFrames:
    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    users: pd.DataFrame | None
    schema: dict[str, Any]
    root: str
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def roles(self) -> dict[str, str]:
        return self.schema.get("items", {})

    @property
    def separator(self) -> str:
        return self.schema.get("multi_label_separator") or "|"

    @property
    def rating_column(self) -> str | None:
        return next((c for c, r in self.schema.get("interactions", {}).items() if r == "rating"), None)

    @property
    def timestamp_column(self) -> str | None:
        return next((c for c, r in self.schema.get("interactions", {}).items() if r == "timestamp"), None)

    @property
    def image_column(self) -> str | None:
        return next((c for c, r in self.roles.items() if r == "image"), None)

    def units(self) -> dict[str, str]:
        """The items' numeric columns written with a currency sign, and the sign ({"preis": "€"})."""
        units = self.manifest.get("units")
        items = units.get("items") if isinstance(units, dict) else None
        return {str(c): str(u) for c, u in items.items() if u} if isinstance(items, dict) else {}

    def unit(self, column: str | None) -> str:
        """The currency sign the items' ``column`` was written with ("$"), found at import; "" for none."""
        return self.units().get(column, "") if column else ""

    def amount_style(self, column: str | None) -> str | None:
        """How the items' ``column`` writes its amounts when not as "$1,234.56" ("1.234,56 ¤"), else None."""
        styles = self.manifest.get("amount_styles")
        items = styles.get("items") if isinstance(styles, dict) else None
        style = items.get(column) if isinstance(items, dict) and column else None
        return str(style) if style else None


@st.cache_data(show_spinner="Reading the dataset…", max_entries=8)
def _load_frames(root: str, name: str, stamp: str) -> tuple:
    from recsys.data.schema import visible_users

    bundle = _workspace_at(root).load_dataset(name)
    manifest = json.loads((Path(bundle.root) / "manifest.json").read_text())
    # every page reads users from here: columns marked `ignore` are dropped once, for all of them
    users = visible_users(bundle.users, bundle.schema)
    return bundle.items, bundle.interactions, users, bundle.schema.to_dict(), str(bundle.root), manifest


def load_dataset_frames(name: str) -> DatasetFrames:
    """Items, interactions, users and roles of a stored dataset (cached per imported version)."""
    items, interactions, users, schema, root, manifest = _load_frames(workspace_root(), name, dataset_stamp(name))
    return DatasetFrames(name, items, interactions, users, schema, root, manifest)


def active_dataset(names: list[str] | None = None) -> str | None:
    """The workspace's active dataset (the last imported or chosen, in any window), else demo, else the first."""
    names = dataset_names() if names is None else names
    active = get_workspace().active_dataset()
    if active in names:
        return active
    return "demo" if "demo" in names else (names[0] if names else None)


def set_active_dataset(name: str) -> None:
    get_workspace().set_active_dataset(name)


def dataset_picker(label: str, key: str, names: list[str] | None = None, help: str | None = None) -> str | None:
    """A dataset selectbox on the workspace's active dataset; choosing another makes it the active one for
    every page and window."""
    names = dataset_names() if names is None else names
    if not names:
        return None
    active = active_dataset(names)
    follows = f"{key}__follows"
    if st.session_state.get(follows) != active or st.session_state.get(key) not in names:
        # the active dataset changed (an import, another page or another window): the picker follows it
        st.session_state[key] = active
        st.session_state[follows] = active
    choice = st.selectbox(label, names, key=key, help=help)
    if choice != active:
        set_active_dataset(choice)
        st.session_state[follows] = choice
    return choice


def user_option(user: str, items: int, description: str = "") -> str:
    """A user as the pickers list them: "U0001 · 12 items" ("1 item"), with what the users table says of who they
    are when it says something ("5800005970926 · Berlin · DE · 22 items")."""
    return f"{user}{f' · {description}' if description else ''} · {items:,} item{'s' if items != 1 else ''}"


_YES_NO = {"yes", "no", "true", "false", "0", "1", "y", "n"}


def describe_users(data: DatasetFrames, columns: int = 2) -> dict[str, str]:
    """User id -> up to ``columns`` values of the users table's categorical columns that say who they are (city,
    country, age band, segment first; never a yes/no such as "Accepts Email Marketing", never personal data,
    which the schema ignores), joined by " · ": a shop owner knows a customer only by an id otherwise."""
    from recsys.evaluate.fairness import who_they_are_first

    users = data.users
    roles = data.schema.get("users", {})
    if users is None or users.empty or "user_id" not in users.columns:
        return {}
    picked = []
    for column in who_they_are_first([c for c, r in roles.items() if r == "categorical" and c in users.columns]):
        values = users[column].astype("string").fillna("").str.strip()
        given = values[values != ""]
        if given.empty or set(given.str.lower().unique()) <= _YES_NO:
            continue
        picked.append(values)
        if len(picked) == columns:
            break
    if not picked:
        return {}
    joined = picked[0]
    for values in picked[1:]:
        joined = joined.str.cat(values, sep=" · ").str.strip(" ·").str.replace(r"( · )+", " · ", regex=True)
    ids = users["user_id"].astype(str)
    return {u: short_text(d, 40) for u, d in zip(ids, joined) if d}


def image_file(root: str | Path, value: Any) -> str:
    """The picture of an item (an absolute path), or the studio's "no picture" placeholder."""
    from recsys.data.bundle import safe_relative_path

    relative = safe_relative_path(value)
    if relative is not None:
        path = Path(root) / relative
        try:
            stat = path.stat()
        except OSError:
            return PLACEHOLDER
        if path.is_file() and _displayable(str(path), stat.st_mtime_ns, stat.st_size):
            return str(path)
    return PLACEHOLDER


@functools.lru_cache(maxsize=4096)
def _displayable(path: str, mtime_ns: int, size: int) -> bool:  # noqa: ARG001 - the cache key
    """Whether the browser may be sent this picture: its header reads and it is under the pixel cap. A dataset
    imported before the cap existed may hold a 12000x12000 PNG; st.image would decode it (~1 GB) on every
    page view. Reads the header only; cached by file identity."""
    from recsys.data.pictures import open_picture

    try:
        with open_picture(path):
            return True
    except Exception:  # noqa: BLE001 - over the cap (PictureTooLarge), or not a picture at all
        return False


# ----------------------------------------------------------------------------- runs


def list_all_runs() -> list[RunRecord]:
    """Every run of the workspace (newest first) with a fresh state, including runs that are still starting."""
    from recsys.train.launch import list_all_runs as list_workspace_runs

    return list_workspace_runs(get_workspace())


def forgotten_users(run: RunRecord, users: list[str]) -> set[str]:
    """Those of ``users`` (of ``run``'s model) forgotten from its dataset since it was trained (none for an
    unflagged run): the pages do not list them."""
    if not run.needs_retrain_for_privacy:
        return set()
    from recsys.privacy import forgotten_in

    return forgotten_in(run.path, get_workspace().root, users)


def privacy_retrain_panel(key: str) -> None:
    """The runs that still hold users forgotten from their dataset, each with a one-click **Retrain** (a new run
    with the same configuration, which excludes them). Shown on the Train and Experiments pages."""
    from recsys.train.launch import retrain_run

    flagged = [run for run in list_all_runs() if run.needs_retrain_for_privacy]
    if not flagged:
        return
    with st.container(border=True):
        st.markdown(
            f"#### :material/privacy_tip: {len(flagged)} run{'s' if len(flagged) > 1 else ''} must be retrained"
        )
        st.caption(
            "Users were forgotten from these runs' datasets after they were trained: their saved models "
            "still hold those people. Retrain each one (a new run with the same settings, without them), "
            "then delete the old run on the Experiments page."
        )
        for run in flagged:
            cols = st.columns([4, 1], vertical_alignment="center")
            replaced = run.retrained_as
            cols[0].markdown(
                f"**{md_text(run_label(run))}** · `{md_text(run.run_id)}` — holds "
                f"{run.forgotten_users:,} forgotten user{'s' if run.forgotten_users != 1 else ''}"
                + (f"; retrained as `{md_text(replaced[-1])}`" if replaced else "")
            )
            # once a replacement was started, a second click would train a duplicate: the label says so
            if cols[1].button(
                "Retrain again" if replaced else "Retrain",
                icon=":material/replay:",
                key=f"{key}_retrain_{run.run_id}",
                disabled=run.active,
                width="stretch",
                help=f"already retrained as {md_text(replaced[-1])}; delete this run once that one has finished"
                if replaced
                else None,
            ):
                try:
                    new_id = retrain_run(get_workspace(), run.run_id)
                except Exception as exc:
                    show_error("The retraining could not be started", exc)
                    return
                st.session_state["train_watch"] = new_id
                st.toast(f"Retraining started: {new_id}", icon=":material/rocket_launch:")
                st.rerun()


def model_runs() -> list[RunRecord]:
    """Runs with a usable model: ended (finished, stopped or interrupted) with a saved model folder."""
    return [run for run in list_all_runs() if run.usable]


def no_model_message(what: str) -> str:
    """What a page without a usable model says: a run in progress is named (the page fills when it ends)."""
    active = [run for run in list_all_runs() if run.active]
    if active:
        return (
            f"A model is training ({md_text(run_name(active[0]))} on {md_text(active[0].dataset or '?')}): "
            f"{what} appear here when it finishes. Follow it on the Train page."
        )
    return "No model trained yet — train one on the Train page (the quick start on Home takes a few minutes)."


def run_name(run: RunRecord) -> str:
    """A run's model as every page writes it: the tables' name (Fusion, EASE, MostPop) with the fusion variant
    when it is not the default one, "Fusion (mean)"."""
    from recsys.train.report import model_name

    base, _, variant = run.model_label.partition(" (")
    return model_name(base) + (f" ({variant}" if variant else "")


def run_label(run: RunRecord, with_state: bool = True) -> str:
    """How pickers name a run: model (with its fusion variant) on dataset, start, test NDCG@20, state
    (``with_state=False`` where the state is drawn live beside the picker: a label keeps what it said when
    the page drew it, so it would still say "starting" under a run that has finished)."""
    ndcg = run.test_metrics.get("ndcg@20")
    score = f" · NDCG@20 {ndcg:.3f}" if ndcg is not None else ""
    if score and run.partial_folds:
        score += f" ({run.partial_folds})"
    state_note = (
        ""
        if run.state == "finished" or not with_state
        else f" · {STATE_STYLE.get(run.state, STATE_STYLE['unknown'])[0].lower()}"
    )
    return f"{run_name(run)} on {run.dataset or '?'} · {fmt_time(run.started)}{score}{state_note}"


RUN_PICKER_KEY = "run_picker_"  # every run_picker widget's key: this, the page's key and a digest of the list


def open_run(run_id: str) -> None:
    """Make ``run_id`` the run every picker shows from the next rerun on (a picker otherwise keeps its own pick)."""
    st.session_state["app_run"] = run_id
    for key in [k for k in st.session_state if str(k).startswith(RUN_PICKER_KEY)]:
        del st.session_state[key]


def run_exists(run_id: str) -> bool:
    """Whether the workspace still has a folder for ``run_id`` (False for a name that is not a run id)."""
    try:
        return get_workspace().run_path(run_id).is_dir()
    except ValueError:
        return False


def run_picker(
    label: str, key: str, runs: list[RunRecord], prefer: Callable[[RunRecord], bool] | None = None
) -> RunRecord | None:
    """The run the page shows (shared by the pages: the one chosen last). ``prefer``: on a first visit, the
    runs this page is for (the Attention page's: those with per-user weights) come before the others."""
    if not runs:
        return None
    ids = [r.run_id for r in runs]
    preferred = st.session_state.get("app_run")
    if preferred is not None and preferred not in ids and not run_exists(preferred):  # deleted since (another
        # tab, the CLI); a run this page does not list (one still training) is not
        st.info(
            "The run you had open has been deleted: showing another one.",
            icon=":material/info:",
        )
    if preferred not in ids:
        # first visit: the newest finished run on the active dataset (a stopped one's figures may be partial),
        # else its newest run, else the newest run, said to be on another dataset
        active = get_workspace().active_dataset()
        on_active = [r for r in runs if r.dataset == active]
        if prefer is not None:  # stable: newest first within each group
            on_active = sorted(on_active, key=lambda r: not prefer(r))
        preferred = next((r.run_id for r in on_active if r.state == "finished"), None) or (
            on_active[0].run_id if on_active else ids[0]
        )
        if active and not on_active:
            st.info(
                f"No model has been trained on the active dataset “{md_text(active)}” yet: showing one trained on "
                f"“{md_text(runs[ids.index(preferred)].dataset or '?')}”. Train one on the Train page.",
                icon=":material/info:",
            )
    index = ids.index(preferred)
    labels = {r.run_id: run_label(r) for r in runs}
    # the widget is keyed by the list it offers: a browser tab keeps a select's shown value across reruns, so
    # after a run was deleted elsewhere it went on naming that run over another run's page. A new list is a
    # new widget, opened at the run chosen last (app_run), so a run added while a page is open changes nothing
    digest = hashlib.blake2b("\n".join(ids).encode(), digest_size=4).hexdigest()
    choice = st.selectbox(
        label, ids, index=index, key=f"{RUN_PICKER_KEY}{key}_{digest}", format_func=lambda i: labels[i]
    )
    st.session_state["app_run"] = choice
    return runs[ids.index(choice)]


def _model_stamp(run_dir: Path) -> float:
    weights = run_dir / "model" / "weights.safetensors"
    try:
        return weights.stat().st_mtime
    except OSError:
        return 0.0


class ModelUnavailable(RuntimeError):
    """A run's saved model cannot be used (incomplete, or from an incompatible version)."""


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _load_model(model_dir: str, stamp: float):
    from recsys.models import ModelDamaged, list_models
    from recsys.train.records import load_run_model

    list_models()  # registers every model class before loading one by name
    try:
        return load_run_model(Path(model_dir).parent)
    except ModelDamaged as exc:  # names the file and the command that retrains the run
        raise ModelUnavailable(str(exc)) from exc
    except FileNotFoundError as exc:
        raise ModelUnavailable(
            f"this run's model files are incomplete ({exc}); train it again on the Train page"
        ) from exc
    except Exception as exc:  # torch/safetensors errors: shape or key mismatches, damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(
            "this run's model could not be loaded — it was probably saved by an older version "
            f"of the studio ({first}). Train it again on the Train page, or pick another run"
        ) from exc


def label_separators(data: DatasetFrames) -> dict[str, str]:
    """The dataset's multi-label item columns and their separator (what ``item_caption`` lists apart)."""
    return {column: data.separator for column, role in data.roles.items() if role == "multi_label"}


def title_or_id(value: Any, item_id: Any) -> str:
    """An item's title as cards show it: its id when the title is missing or blank."""
    return value if isinstance(value, str) and value.strip() else str(item_id)


@dataclass
class RunContext:
    """A trained model with everything the pages need around it, built once per model version."""

    run_id: str
    run_dir: str
    stamp: float  # the model's modification time: keys caches derived from it
    model: Any
    data: DatasetFrames
    items_by_id: pd.DataFrame  # indexed by item id (string)
    aligned: pd.DataFrame  # items in the model's item order
    vectors: np.ndarray  # L2-normalised item vectors [n_items, d]
    variant_groups: np.ndarray  # near-duplicate groups (colour/size variants of one title) [n_items]
    title_column: str
    image_column: str | None
    price_column: str | None
    price_unit: str  # the price's currency sign as the file wrote it ("$"), or ""
    price_style: str | None  # how the file writes amounts when not as "$1,234.56" ("1.234,56 ¤")
    category_columns: list[str]  # the columns charts break down by (at most 200 values each)
    card_columns: list[str]  # the columns a card shows and the filters offer (a brand or an author included)
    maker_column: str | None  # who made the item (brand, author): beside the title in the item pickers
    user_options: list[str]  # user ids, most active first
    activity: dict[str, int]
    user_rows: dict[str, np.ndarray]  # user id -> row positions in data.interactions
    explain_context: Any  # recsys.explain.ExplainContext: labels, TF-IDF, bands, popularity, built once
    # the model's items still in the current import (None: all are): a later import can drop some, and those
    # are not recommended (recsys.train.records.follow_current_import, as the CLI and the HTTP API do)
    in_catalogue: np.ndarray | None = None
    gone_users: frozenset[str] = frozenset()  # the model's users the current import no longer has
    user_descriptions: dict[str, str] = field(default_factory=dict)  # user id -> "Berlin · DE" (describe_users)

    def user_option(self, user: str) -> str:
        """The user as the pickers list them, with who they are where the users table says so."""
        return user_option(user, int(self.activity.get(user, 0)), self.user_descriptions.get(user, ""))

    def title(self, item_id: str) -> str:
        if item_id in self.items_by_id.index and self.title_column in self.items_by_id.columns:
            return title_or_id(self.items_by_id.at[item_id, self.title_column], item_id)
        return str(item_id)

    def attributes_line(self, item_id: str) -> str:
        """The item's category, maker and price as a card shows them ("" for an item the catalogue lacks)."""
        if item_id not in self.items_by_id.index:
            return ""
        return item_caption(
            self.items_by_id.loc[item_id],
            self.card_columns,
            self.price_column,
            labels=label_separators(self.data),
            price_unit=self.price_unit,
            price_style=self.price_style,
        )

    def not_for_sale(self, item_id: str) -> bool:
        """Whether the catalogue as imported now marks the item as not for sale (a draft, archived, sold
        out): such an item is never recommended, but it stays in histories and in the visitor's picker."""
        marked = self.model.not_for_sale
        if marked is None:
            return False
        position = self.aligned.index.get_indexer([item_id])[0]
        return bool(position >= 0 and marked[position])

    def picture(self, item_id: str) -> str:
        if self.image_column and item_id in self.items_by_id.index:
            return image_file(self.data.root, self.items_by_id.at[item_id, self.image_column])
        return PLACEHOLDER


@st.cache_resource(show_spinner="Preparing the model's items…", max_entries=4)
def _run_context(run_dir: str, model_stamp: float, dataset: str, data_stamp: str, root: str) -> RunContext:
    from recsys.data import stats
    from recsys.explain import ExplainContext, item_vectors
    from recsys.models.rerank import variant_groups
    from recsys.train.records import follow_current_import, users_gone_from_dataset

    model = _load_model(str(Path(run_dir) / "model"), model_stamp)
    data = load_dataset_frames(dataset)
    items = data.items.copy()
    items["item_id"] = items["item_id"].astype(str)
    items_by_id = items.drop_duplicates("item_id").set_index("item_id", drop=False)
    aligned = items_by_id.reindex(pd.Index(model.item_ids, name="item_idx"))
    price = stats.price_column(items, data.roles, units=data.units())
    seen = model.seen
    counts = np.diff(seen.indptr) if seen is not None else np.zeros(model.n_users, int)
    order = np.argsort(-counts, kind="stable")
    users = [str(model.user_ids[i]) for i in order]
    title_column = stats.title_column(data.roles, items)
    titles = aligned[title_column] if title_column in aligned.columns else pd.Series([None] * len(aligned))
    return RunContext(
        # the engine's comparison of a run with its dataset as imported now, as the CLI and the HTTP API use it
        in_catalogue=follow_current_import(model, data),
        gone_users=frozenset(users_gone_from_dataset(model, data)),
        run_id=Path(run_dir).name,
        run_dir=str(run_dir),
        stamp=model_stamp,
        model=model,
        data=data,
        items_by_id=items_by_id,
        aligned=aligned,
        vectors=item_vectors(model),
        # one maker's article in several colours is one product; six vendors' "Everyday Hoodie" are six
        variant_groups=variant_groups(titles.tolist(), maker_values(aligned, stats.maker_column(items, data.roles))),
        title_column=title_column,
        image_column=data.image_column,
        price_column=price,
        price_unit=data.unit(price),
        price_style=data.amount_style(price),
        category_columns=stats.category_columns(items, data.roles)[:3],
        card_columns=stats.card_columns(items, data.roles, data.separator),
        maker_column=stats.maker_column(items, data.roles),
        user_options=users,
        user_descriptions=describe_users(data),
        activity={str(model.user_ids[i]): int(counts[i]) for i in range(len(counts))},
        user_rows=data.interactions.groupby(data.interactions["user_id"].astype(str)).indices,
        explain_context=ExplainContext(
            model,
            data.items,
            data.roles,
            separator=data.separator,
            interactions=data.interactions,
            rating_column=data.rating_column,
        ),
    )


def maker_values(aligned: pd.DataFrame, column: str | None) -> list[Any] | None:
    """Each item's maker (brand, vendor) in the model's item order, None without a maker column."""
    return aligned[column].tolist() if column and column in aligned.columns else None


def run_context(run: RunRecord) -> RunContext:
    """The cached :class:`RunContext` of a run (raises a plain error when its dataset is gone)."""
    run_dir = run.path
    dataset = run.dataset
    info = dataset_info(dataset) if dataset else None
    if info is not None and info.damaged:
        raise LookupError(f"the dataset '{dataset}' this run was trained on is damaged: {info.damaged}")
    if not dataset or dataset not in dataset_names():
        raise LookupError(
            f"the dataset '{dataset}' this run was trained on is no longer in the workspace; "
            "import it again on the Data page"
        )
    return _run_context(str(run_dir), _model_stamp(run_dir), dataset, dataset_stamp(dataset), workspace_root())


def usable_context(run: RunRecord) -> RunContext | None:
    """:func:`run_context`, or a plain warning (and None) when the run's model or dataset cannot be used."""
    try:
        context = run_context(run)
    except (ModelUnavailable, LookupError) as exc:
        st.warning(f"**This run cannot be shown.** {md_text(plain_error(exc))}.", icon=":material/warning:")
        st.page_link(PAGES["train"], label="Go to the Train page", icon=":material/arrow_forward:")
        return None
    dropped = 0 if context.in_catalogue is None else int((~context.in_catalogue).sum())
    replaced_dataset_notice(
        run,
        SHOWN_FROM_CURRENT_IMPORT
        + (
            f" {dropped:,} of the run's items are no longer in the catalogue: they are not recommended."
            if dropped
            else ""
        ),
    )
    return context


def part_percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a whole percentage that never reads 100 % while something is left out (398 of
    400 is ">99%") nor 0 % while something is in ("<1%")."""
    if whole <= 0:
        return "–"
    share = part / whole
    if 0 < share < 0.01:
        return "<1%"
    if 0.99 < share < 1:
        return ">99%"
    return f"{share:.0%}"


def import_time(stamp: str) -> str:
    """A dataset import's manifest time (ISO, UTC) as the pages write it: ``2026-12-02 15:04 UTC``."""
    return f"{stamp[:16].replace('T', ' ')} UTC"


SHOWN_FROM_CURRENT_IMPORT = (
    "Titles, pictures and attributes shown are the current import's, and so is what is for sale (an item it drops or "
    "marks as not for sale is not recommended); items and users added since are unknown to "
    "this model, and its test metrics were measured on the earlier data. Train again to use the new data."
)


def earlier_import(run: RunRecord) -> tuple[str, str] | None:
    """(the import the run trained on, the current one) when the run's dataset was imported again (same name)
    after the run trained on it; else None."""
    trained_on = run.dataset_imported_at
    current = get_workspace().dataset_imported_at(run.dataset) if run.dataset else None
    return (trained_on, current) if trained_on and current and current != trained_on else None


def replaced_dataset_notice(run: RunRecord, consequence: str = SHOWN_FROM_CURRENT_IMPORT) -> None:
    """Say so (and what it means here: ``consequence``) when the run's dataset was imported again (same name)
    after the run trained on it."""
    imports = earlier_import(run)
    if imports is None:
        return
    trained_on, current = imports
    st.info(
        f"**Dataset {md_text(run.dataset)} was imported again after this run trained on it** (the run used "
        f"the import of {import_time(trained_on)}; the current one is of {import_time(current)}). {consequence}",
        icon=":material/history:",
    )


@st.cache_resource(show_spinner="Ranking the test users' catalogue…", max_entries=4)
def _fairness_rankings(root: str, run_id: str, model_stamp: float, data_stamp: str, k: int):
    from recsys.evaluate.fairness import run_rankings

    return run_rankings(get_workspace(), run_id, k=k)


def fairness_rankings(run: RunRecord, k: int = 20):
    """The run's top-``k`` test lists (:func:`recsys.evaluate.fairness.run_rankings`), cached per model version
    (a refit on the train split can take a while: done once)."""
    dataset = run.dataset
    if not dataset or dataset not in dataset_names():
        raise LookupError(f"the dataset '{dataset}' this run was trained on is no longer in the workspace")
    return _fairness_rankings(workspace_root(), run.run_id, _model_stamp(run.path), dataset_stamp(dataset), k)


METRIC_HELP = {
    "recall": "share of each user's held-out items found in their top {k}, averaged over users (0 to 1)",
    "ndcg": "like Recall@{k}, but a held-out item counts more the higher it is placed: 1 = every held-out item "
    "at the very top, 0 = none in the top {k} (averaged over users)",
    "hit": "share of users with at least one held-out item in their top {k}",
}


def metric_column_config() -> dict[str, Any]:
    config = {
        label: st.column_config.NumberColumn(
            label, format="%.4f", help=METRIC_HELP[key.split("@")[0]].format(k=key.split("@")[1])
        )
        for key, label in METRIC_COLUMNS
    }
    config["Fit time"] = st.column_config.NumberColumn("Fit time", format="%.1f s")
    config["± NDCG@20"] = st.column_config.NumberColumn(
        "± NDCG@20", format="%.4f", help="standard deviation over folds"
    )
    return config


# ----------------------------------------------------------------------------- uploads


def digest(data: bytes | str) -> str:
    return hashlib.sha1(data if isinstance(data, bytes) else data.encode()).hexdigest()[:16]


def upload_limit_mb() -> int:
    try:
        return int(st.get_option("server.maxUploadSize"))
    except Exception:
        return 200


# ----------------------------------------------------------------------------- drawing items


def short_label(text: str, limit: int = 40) -> str:
    """A value as a card or a chart's axis shows it: a category path by its last level ("T-Shirts" for
    "Apparel & Accessories > Clothing > Shirts & Tops > T-Shirts"; it says the most, and alike everywhere), and
    at most ``limit`` characters."""
    if " > " in text:
        text = text.rsplit(" > ", 1)[1].strip() or text
    return text if len(text) <= limit else text[: limit - 2] + "…"


def _reads_alone(text: str) -> bool:
    """Whether an attribute value says what it is without its column's name: it holds a word of three or more
    letters, joining marks aside ("Garden", "Home & Kitchen", "Bolt&Co", "O'Neill"). Codes and numbers ("12",
    "A12", "cat_7", "SKU-0017", "XL") do not."""
    words = (word.translate(_JOINING_MARKS) for word in text.replace("|", " ").replace("·", " ").split())
    return any(len(word) >= 3 and word.isalpha() for word in words)


# marks that join the parts of a name ("Bolt&Co", "Smith-Jones", "O'Neill", "St."); an underscore or a digit
# makes a code
_JOINING_MARKS = str.maketrans("", "", "&'’.-+")


def item_caption(
    row: pd.Series | dict,
    columns: list[str],
    price_column: str | None = None,
    limit: int = 3,
    labels: dict[str, str] | None = None,
    price_unit: str = "",
    price_style: str | None = None,
) -> str:
    """A card's line of attributes: up to ``limit`` of ``columns`` and the price. A value that is a code or a
    number is named by its column ("store 12"), since "12" alone says nothing. ``labels``: the multi-label
    columns and their separator, whose labels are listed apart ("Action, Comedy"); any other value is shown
    whole, a "|" in it included, and a category path by its last level ("T-Shirts" for
    "Apparel & Accessories > Clothing > Shirts & Tops > T-Shirts"). ``price_unit``: the price's currency sign ("$1,592.24" instead of "price
    1,592.24"), written the file's way with ``price_style`` ("1.592,24 €")."""
    from recsys.data.stats import format_amount

    parts = []
    for column in columns[:limit]:
        value = row.get(column) if hasattr(row, "get") else None
        if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
            continue
        separator = (labels or {}).get(column)
        # one column's labels with commas, columns apart with "·": "Tom Tanaka, Ines Brown · Little, Brown"
        # (with "·" for both, two authors and a publisher read as three of a kind)
        text = ", ".join(v.strip() for v in str(value).split(separator) if v.strip()) if separator else str(value)
        text = short_label(text)
        parts.append(text if _reads_alone(text) else f"{str(column).replace('_', ' ')} {text}")
    if price_column:
        value = row.get(price_column)
        try:
            if value is not None and np.isfinite(float(value)):
                amount = format_amount(float(value), price_unit, price_style)
                # without a sign, the amount is named: "price 36.99" (a "Variant Price" column is still a price)
                named = "price" if re.search(r"price", price_column, re.I) else price_column.replace("_", " ")
                parts.append(amount if price_unit else f"{named} {amount}")
        except (TypeError, ValueError):
            pass
    return " · ".join(parts)


def gallery(entries: list[dict[str, Any]], per_row: int = 6) -> None:
    """Pictures with a title and a caption line, ``per_row`` to a row. Entries: picture, title, caption, and
    optionally details (the item's attributes, a line above the caption, as on the recommendation cards)."""
    for start in range(0, len(entries), per_row):
        cols = st.columns(per_row)
        for col, entry in zip(cols, entries[start : start + per_row]):
            with col:
                st.image(entry["picture"], width="stretch")
                st.markdown(f"**{md_text(short_text(entry['title'], 60))}**")
                if entry.get("details"):
                    st.caption(md_text(entry["details"]))
                if entry.get("caption"):
                    st.caption(md_text(entry["caption"]))


def short_text(text: Any, n: int) -> str:
    """``text`` cut to ``n`` characters with an ellipsis (a catalogue title can be a paragraph long)."""
    text = str(text)
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


# ----------------------------------------------------------------------------- charts

PRIMARY = "#4C6EF5"


def style_figure(fig, height: int = 320, legend: bool = True, title: str | None = None):
    """One look for every chart: white background, small margins, title top left, legend under the title."""
    top = (38 if title else 8) + (28 if legend else 0)
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin=dict(l=10, r=10, t=top, b=10),
        title=dict(text=title, x=0, xanchor="left", y=1.0, yanchor="top", pad=dict(t=8), font=dict(size=15))
        if title
        else None,
        showlegend=legend,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0, title=None),
        font=dict(size=12),
        hoverlabel=dict(bgcolor="white"),
    )
    return fig


def log_axis_ticks(values: Any) -> dict[str, Any]:
    """Tick options (``tickvals``, ``ticktext``) for a log axis over ``values``: powers of ten when they span
    two decades or more, otherwise 1-2-5 steps (a range inside one decade shows a single tick by default,
    and plotly's own 1-2-5 mode labels "2" and "5" without their decade)."""
    positive = np.asarray([v for v in np.ravel(np.asarray(values, dtype=float)) if np.isfinite(v) and v > 0])
    if len(positive) == 0:
        return {}
    low, high = float(positive.min()), float(positive.max())
    steps = (1,) if np.log10(high / low) >= 2 else (1, 2, 5)
    first, last = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    ticks = [m * 10.0**e for e in range(first, last + 1) for m in steps]
    inside = [t for t in ticks if low / 1.01 <= t <= high * 1.01]
    if len(inside) < 2:  # add the steps just outside a narrow range
        below = max([t for t in ticks if t <= low], default=ticks[0])
        above = min([t for t in ticks if t >= high], default=ticks[-1])
        inside = sorted({below, *inside, above})
    return {"tickvals": inside, "ticktext": [f"{t:,.0f}" if t >= 1 else f"{t:g}" for t in inside]}


# trace attributes that can carry catalogue values (titles, categories, group names) as labels
_CHART_TEXT_FIELDS = ("x", "y", "text", "hovertext", "labels", "name")


def _chart_text(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, (list, tuple, np.ndarray, pd.Series, pd.Index)) and any(isinstance(v, str) for v in value):
        return [html.escape(v, quote=False) if isinstance(v, str) else v for v in value]
    return value


def plain_chart_text(fig):
    """A copy of ``fig`` whose data labels are text. Plotly reads a few HTML tags in every label (``<a href>``,
    ``<b>``, ``<br>``), so a title such as ``<a href="http://...">`` would be a link in a chart; escaped
    (``&lt;``), plotly shows the characters themselves. Only the data is escaped (the page's own titles and
    annotations may use tags); ``customdata`` keeps the raw ids that selections hand back."""
    import plotly.graph_objects as go

    fig = go.Figure(fig)  # a copy: a cached figure must not be escaped twice
    for trace in fig.data:
        for attribute in _CHART_TEXT_FIELDS:
            value = trace[attribute] if attribute in trace else None
            if value is not None:
                trace[attribute] = _chart_text(value)
    return fig


def chart(fig, key: str | None = None, **kwargs):
    config = kwargs.pop("config", None) or (
        {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
        if not kwargs.get("on_select")
        else {"displaylogo": False}
    )
    return st.plotly_chart(plain_chart_text(fig), key=key, config=config, **kwargs)
