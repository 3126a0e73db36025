"""Train: configure a run, start it in the background, watch it live, read its results.

Training runs in its own process (recsys.train.launch), so reruns, page switches, closed tabs and
other sessions never stop it; this page only polls the run folder.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from app_pages.common import (
    PRIMARY,
    chart,
    damaged_datasets_notice,
    dataset_names,
    dataset_picker,
    empty_state,
    fmt_duration,
    fmt_time,
    get_workspace,
    list_all_runs,
    load_dataset_frames,
    md_text,
    metric_column_config,
    page_header,
    privacy_retrain_panel,
    replaced_dataset_notice,
    run_label,
    run_page,
    show_error,
    state_badge,
    style_figure,
)
from recsys.modalities import MODALITY_NAMES
from recsys.models.config import BASELINE_CONFIGS, FusionConfig, field_default, field_types
from recsys.train.data import PROTOCOL_LABELS as ENGINE_PROTOCOL_LABELS
from recsys.train.launch import (
    ACTIVE_STATES,
    read_log_tail,
    resume_run,
    run_state,
    start_run,
    stop_run,
    summarize_progress,
)
from recsys.train.lock import RunRefused
from recsys.train.records import nest_flat_options, read_run_record, resume_refusal
from recsys.train.report import METRIC_COLUMNS, metrics_table
from recsys.train.run import SHARED_FUSION_OPTIONS, RunConfig, read_progress

FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
FUSION_FIELDS = {f.name: f for f in dataclasses.fields(FusionConfig)}
DEFAULTS = RunConfig()
FUSION_DEFAULTS = DEFAULTS.fusion_options
MODEL_NAMES = {
    "fusion": "Multimodal fusion",
    "mostpop": "MostPop (popularity)",
    "itemknn": "ItemKNN",
    "bpr": "BPR-MF",
    "ease": "EASE",
    "lightgcn": "LightGCN",
    "content": "Content only",
}
BASELINES = ["mostpop", "itemknn", "bpr", "ease", "lightgcn", "content"]
PROTOCOL_LABELS = {**ENGINE_PROTOCOL_LABELS, "auto": "auto (chosen for the data)"}
FUSION_NAMES = {
    "attention": "attention (per-user weights)",  # the name runs and Experiments use; help says the rest
    "concat": "concat + MLP",
    "mean": "mean (equal weights)",
    "item_gate": "item gate (same weights for every user)",
}
MODALITY_OPTIONS = ["behaviour", "text", "image", "attributes"]
STAGES = {
    "features": "Extracting item features",
    "features_sharded": "Assembling the features the processes encoded",
    "features_done": "Features ready",
    "preflight": "Checking what the protocol keeps",
    "split": "Splitting the data",
    "data": "Data ready",
    "fit": "Training",
    "resume": "Resuming from the last checkpoint",
    "evaluate_saved": "Resuming from the saved model: evaluation only",
    "baseline": "Training and evaluating baselines",
    "cold_start": "Evaluating on cold-start items",
    "final": "Refitting the final model on every interaction",
    "fold": "Cross-validation",
    "stopping": "Stopping after the current step…",
}


def helptext(name: str, fields: dict[str, dataclasses.Field] | None = None) -> str:
    """The option's one-line help from its dataclass field (RunConfig's, or ``fields``), with its default."""
    item = (fields or FIELDS)[name]
    return f"{item.metadata.get('help', '')} (default: {field_default(item)})"


@st.cache_data(ttl=120, show_spinner=False)
def encoder_options() -> dict[str, dict[str, list[str]]]:
    from recsys.features.registry import list_encoders

    out: dict[str, dict[str, list[str]]] = {}
    for modality in ("text", "image"):
        infos = list_encoders(modality)
        out[modality] = {
            "available": [e.name for e in infos if e.available],
            "missing": [e.name for e in infos if not e.available],
        }
    return out


@st.cache_resource(show_spinner=False)
def device_options() -> tuple[list[str], str]:
    import torch

    from recsys.device import describe_device, select_device

    options = ["auto", "cpu"]
    if torch.cuda.is_available():
        options.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        options.append("mps")
    return options, describe_device(select_device("auto"))


def dataset_modalities(name: str) -> list[str]:
    data = load_dataset_frames(name)
    roles = set(data.roles.values())
    found = ["behaviour"]
    if "text" in roles:
        found.append("text")
    if "image" in roles and data.manifest.get("counts", {}).get("items_with_image", 0) > 0:
        found.append("image")
    if roles & {"categorical", "multi_label", "numeric"}:
        found.append("attributes")
    return found


HANDLED = {
    "dataset",
    "model",
    "modalities",
    "final_model",
    "text_encoder",
    "image_encoder",
    "protocol",
    "cold_start",
    "k_core",
    "folds",
    "seed",
    "baselines",
    "device",
}
# the fusion options with a widget of their own above "Advanced model options"
FUSION_HANDLED = {"fusion", "loss", "epochs", "patience", "lr", "ease_l2", "popularity_prior", *SHARED_FUSION_OPTIONS}


ACRONYMS = {"ease": "EASE", "l2": "L2", "knn": "KNN", "bpr": "BPR", "lightgcn": "LightGCN"}


def generic_field(name: str, cls: type = RunConfig, prefix: str = "") -> Any:
    """A widget for an option of the config dataclass ``cls`` (RunConfig, FusionConfig, a baseline's), typed
    by its annotation, with the field's help text."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kind, default = field_types(cls)[name], field_default(fields[name])
    words = name.replace("_", " ").capitalize().split(" ")
    # a field may name its widget (metadata "label"): the fusion model's folds are not the protocol's folds
    label = fields[name].metadata.get("label") or " ".join(ACRONYMS.get(w.lower(), w) for w in words)
    key = f"train_opt_{prefix}{name}"
    help_text = helptext(name, fields)
    if typing.get_origin(kind) is typing.Literal:
        choices = list(typing.get_args(kind))
        return st.selectbox(label, choices, index=_index(choices, default), key=key, help=help_text)
    if kind is bool:
        return st.toggle(label, default, key=key, help=help_text)
    if kind is int:
        return int(st.number_input(label, value=default, step=1, key=key, help=help_text))
    if kind is float:
        return float(st.number_input(label, value=float(default), format="%.4g", key=key, help=help_text))
    if isinstance(default, list):
        text = st.text_input(label, " ".join(map(str, default)), key=key, help=help_text + " — separate by spaces")
        item_type = (typing.get_args(kind) or (str,))[0]
        return [item_type(v) for v in text.split()]
    return st.text_input(label, str(default), key=key, help=help_text).strip() or default


def model_option_fields(options: dict[str, Any], model: str, baselines: list[str]) -> None:
    """ "Advanced model options": every option of the fusion model without a widget above and every
    hyperparameter of the chosen baselines, generated from their config dataclasses (their help as help)."""
    groups = (
        [("fusion", FusionConfig, [n for n in FUSION_FIELDS if n not in FUSION_HANDLED])] if model == "fusion" else []
    )
    for name in dict.fromkeys([model, *baselines]):
        cls = BASELINE_CONFIGS.get(name)
        if cls is not None and dataclasses.fields(cls):
            groups.append((name, cls, [f.name for f in dataclasses.fields(cls)]))
    if not groups:
        return
    with st.expander("Advanced model options"):
        for name, cls, names in groups:
            st.caption(MODEL_NAMES.get(name, name))
            values = options.setdefault(f"{name}_options", {})
            row = st.columns(4)
            for position, option_name in enumerate(names):
                with row[position % 4]:
                    values[option_name] = generic_field(option_name, cls, prefix=f"{name}_")


def _index(options: list, value: Any) -> int:
    return options.index(value) if value in options else 0


# ----------------------------------------------------------------------------- the form


@st.cache_data(ttl=300, show_spinner="Checking what the evaluation protocol keeps…", max_entries=16)
def dataset_preflight(dataset: str, k_core: int, stamp: str) -> dict[str, Any]:
    from recsys.train.data import preflight

    bundle = get_workspace().load_dataset(dataset)
    return preflight(
        bundle.interactions,
        k_core=k_core,
        has_timestamp=bundle.schema.timestamp_column is not None,
        catalogue_items=len(bundle.items),
    )


def preflight_panel(dataset: str, protocol: str, k_core: int) -> bool:
    """What the chosen protocol keeps, before anything expensive runs; False when it keeps nothing."""
    from recsys.train.data import resolve_protocol

    try:
        stamp = str((get_workspace().dataset_path(dataset) / "manifest.json").stat().st_mtime)
    except Exception:
        stamp = ""
    check = dataset_preflight(dataset, k_core, stamp)
    try:
        chosen = resolve_protocol(protocol, check)
    except ValueError as exc:
        st.error(f"**This protocol cannot evaluate this dataset.** {exc}", icon=":material/block:")
        return False
    kept = check["protocols"]["p1" if chosen in ("p1", "temporal", "cold") else chosen]
    total = check["total"]
    label = PROTOCOL_LABELS.get(chosen, chosen)
    why = f" — chosen automatically: {check['reason']}" if protocol == "auto" else ""
    st.info(
        f"**Evaluation: {label}**{why}. The model trains on {kept['users']:,} of {total['users']:,} users and "
        f"{kept['items']:,} of {total['items']:,} items ({kept['interactions']:,} interactions); "
        f"{kept['evaluated_users']:,} users are evaluated.",
        icon=":material/fact_check:",
    )
    return True


def config_form() -> None:
    damaged_datasets_notice()
    if not dataset_names():
        empty_state(
            "No dataset yet — import one on the Data page (or use the quick start on Home) and come back "
            "to train a model on it.",
            page="data",
        )
        return
    with st.container(border=True):
        st.markdown("#### :material/tune: New training run")
        top = st.columns(3)
        with top[0]:
            dataset = dataset_picker("Dataset", "train_dataset", help=FIELDS["dataset"].metadata["help"])
        model = top[1].selectbox(
            "Model",
            list(MODEL_NAMES),
            key="train_model",
            help=helptext("model"),
            format_func=lambda m: MODEL_NAMES.get(m, m),
        )
        devices, detected = device_options()
        device = top[2].selectbox("Device", devices, key="train_device", help=helptext("device"))
        top[2].caption(f"Detected: {detected}")

        options: dict[str, Any] = {"dataset": dataset, "model": model, "device": device}
        fusion: dict[str, Any] = {}  # the fusion model's options (RunConfig.fusion_options)
        if model in ("fusion", "content"):
            available = dataset_modalities(dataset)
            missing = [m for m in MODALITY_OPTIONS if m not in available]
            modalities = st.pills(
                "Modalities",
                available,
                selection_mode="multi",
                default=available,
                key=f"train_modalities_{dataset}",
                help=helptext("modalities"),
                format_func=lambda m: MODALITY_NAMES[m],
            )
            if missing:
                st.caption(f"Not in this dataset: {', '.join(missing)}.")
            if not modalities:
                st.warning("Choose at least one modality.", icon=":material/warning:")
            options["modalities"] = list(modalities or [])
            encoders = encoder_options()
            row = st.columns(3)
            if model == "fusion":
                fusion["fusion"] = row[0].selectbox(
                    "Fusion",
                    list(FUSION_NAMES),
                    key="train_fusion",
                    format_func=FUSION_NAMES.get,
                    help=helptext("fusion", FUSION_FIELDS),
                )
            options["text_encoder"] = row[1].selectbox(
                "Text encoder",
                encoders["text"]["available"],
                key="train_text_encoder",
                help=helptext("text_encoder"),
                index=_index(encoders["text"]["available"], DEFAULTS.text_encoder),
                disabled="text" not in options["modalities"],
            )
            options["image_encoder"] = row[2].selectbox(
                "Image encoder",
                encoders["image"]["available"],
                key="train_image_encoder",
                help=helptext("image_encoder"),
                index=_index(encoders["image"]["available"], DEFAULTS.image_encoder),
                disabled="image" not in options["modalities"],
            )
            unavailable = encoders["text"]["missing"] + encoders["image"]["missing"]
            if unavailable:
                row[2].caption(
                    f"{len(unavailable)} more encoders need weights that are not on this machine.",
                    help="Not available offline: " + ", ".join(unavailable),
                )
        if model == "fusion":
            row = st.columns(5)
            fusion["epochs"] = row[0].number_input(
                "Rounds (at most)",
                1,
                2000,
                FUSION_DEFAULTS.epochs,
                key="train_epochs",
                help=helptext("epochs", FUSION_FIELDS),
            )
            fusion["lr"] = row[1].number_input(
                "Learning rate",
                1e-5,
                1.0,
                FUSION_DEFAULTS.lr,
                format="%.4f",
                step=0.001,
                key="train_lr",
                help=helptext("lr", FUSION_FIELDS),
            )
            fusion["ease_l2"] = (
                row[2]
                .text_input(
                    "Behaviour L2",
                    str(FUSION_DEFAULTS.ease_l2),
                    key="train_ease_l2",
                    help=helptext("ease_l2", FUSION_FIELDS),
                )
                .strip()
                or "auto"
            )
            fusion["loss"] = row[3].selectbox(
                "Loss",
                list(typing.get_args(field_types(FusionConfig)["loss"])),
                key="train_loss",
                help=helptext("loss", FUSION_FIELDS),
            )
            with row[4]:
                fusion["popularity_prior"] = st.toggle(
                    "Popularity prior",
                    FUSION_DEFAULTS.popularity_prior,
                    key="train_popularity_prior",
                    help=helptext("popularity_prior", FUSION_FIELDS),
                )
            with st.expander("More options"):
                row = st.columns(4)
                fusion["patience"] = row[0].number_input(
                    "Patience (rounds)",
                    1,
                    500,
                    FUSION_DEFAULTS.patience,
                    key="train_patience",
                    help=helptext("patience", FUSION_FIELDS),
                )
                options["folds"] = row[2].number_input(
                    "Folds (K-fold protocol)", 2, 20, DEFAULTS.folds, key="train_folds", help=helptext("folds")
                )
                options["seed"] = row[3].number_input(
                    "Seed", 0, 2**31 - 1, DEFAULTS.seed, key="train_seed", help=helptext("seed")
                )
                row = st.columns(4)
                options["protocol"] = row[0].selectbox(
                    "Evaluation protocol",
                    ["auto", "p1", "temporal", "sparse", "kfold"],
                    key="train_protocol",
                    help=helptext("protocol"),
                    format_func=lambda p: PROTOCOL_LABELS.get(p, p),
                )
                options["k_core"] = row[1].number_input(
                    "k-core", 1, 100, DEFAULTS.k_core, key="train_k_core", help=helptext("k_core")
                )
                with row[2]:
                    options["cold_start"] = st.toggle(
                        "Cold-start evaluation",
                        DEFAULTS.cold_start,
                        key="train_cold_start",
                        help=helptext("cold_start"),
                    )
                with row[3]:
                    options["final_model"] = st.toggle(
                        "Final model on all data",
                        DEFAULTS.final_model,
                        key="train_final_model",
                        help=helptext("final_model"),
                    )
                extra = [name for name in FIELDS if name not in HANDLED and not FIELDS[name].metadata.get("nested")]
                if extra:  # options added to RunConfig later appear here with their own help text
                    row = st.columns(4)
                    for position, name in enumerate(extra):
                        with row[position % 4]:
                            options[name] = generic_field(name)
        baseline_options = [b for b in BASELINES if b != model]
        options["baselines"] = st.multiselect(
            "Baselines trained beside it",
            baseline_options,
            default=[b for b in DEFAULTS.baselines if b != model],
            key=f"train_baselines_{model}",
            help=helptext("baselines"),
            format_func=lambda m: MODEL_NAMES.get(m, m),
        )
        options["fusion_options"] = fusion
        model_option_fields(options, model, options["baselines"])

        feasible = preflight_panel(
            dataset, options.get("protocol", DEFAULTS.protocol), int(options.get("k_core", DEFAULTS.k_core))
        )
        active = [r for r in list_all_runs() if r.active]
        cols = st.columns([1, 3], vertical_alignment="center")
        start = cols[0].button(
            "Start training",
            type="primary",
            icon=":material/play_arrow:",
            key="train_start",
            disabled=(model in ("fusion", "content") and not options.get("modalities")) or not feasible,
            width="stretch",
        )
        if active:
            cols[1].caption(
                f":material/info: {len(active)} run{'s are' if len(active) > 1 else ' is'} already "
                "training; another one will share the machine with it."
            )
        else:
            cols[1].caption("The run trains in the background: you can switch pages or close the tab.")
        if start:
            try:
                config = RunConfig(**options)
                run_id = start_run(get_workspace(), config)
            except Exception as exc:
                show_error("The training could not be started", exc)
                return
            st.session_state["train_watch"] = run_id
            st.session_state["app_run"] = run_id
            st.toast(f"Training started: {run_id}", icon=":material/rocket_launch:")


# ----------------------------------------------------------------------------- watching a run


def step_name(config: dict[str, Any]) -> str:
    """What one pass of the model's training is called: the fusion model's gate trains in rounds (its form
    field is "Rounds (at most)"), the embedding baselines in epochs."""
    return "round" if config.get("model", "fusion") == "fusion" else "epoch"


def _curves(summary: dict[str, Any], active: bool = False, unit: str = "epoch") -> None:
    epochs = summary["epochs"]
    if not epochs:
        return
    validated = any(e.get("valid_ndcg@20") is not None or e.get("valid_recall@20") is not None for e in epochs)
    x = [e.get("epoch", i) + 1 for i, e in enumerate(epochs)]
    left, right = st.columns(2)
    with left:
        fig = go.Figure(
            go.Scatter(
                x=x,
                y=[e.get("loss") for e in epochs],
                mode="lines+markers",
                line=dict(color=PRIMARY, width=2),
                name="training loss",
            )
        )
        fig.update_xaxes(title=unit, dtick=max(1, len(x) // 10))
        fig.update_yaxes(title="loss")
        style_figure(fig, height=280, title="Training loss", legend=False)
        chart(fig)
        if unit == "round":
            st.caption(
                "The experts (the item-item score, the content comparisons) are computed in closed form before "
                "the first round; the rounds train the gate's dozen parameters, so the loss moves little and "
                "validation, on the right, picks the round kept."
            )
    with right:
        if not validated:  # an empty chart with a legend (and an axis up to 4) says nothing
            st.caption(
                "No validation round has run yet."
                if active
                else "No validation round ran before the run ended: there are no validation figures to show."
            )
            return
        fig = go.Figure()
        for key, name, colour in (("valid_ndcg@20", "NDCG@20", PRIMARY), ("valid_recall@20", "Recall@20", "#12B886")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[e.get(key) for e in epochs],
                    mode="lines+markers",
                    name=name,
                    line=dict(color=colour, width=2),
                    connectgaps=True,  # BPR-MF validates every few epochs
                )
            )
        best = summary.get("best_epoch")
        if best is not None:
            fig.add_vline(x=best + 1, line_dash="dot", line_color="#868E96")
            kept = [e for i, e in enumerate(epochs) if e.get("epoch", i) == best]
            best_ndcg = kept[0].get("valid_ndcg@20") if kept else None
            if best_ndcg is not None:
                # the label sits on the kept round's own point, above it (a label at the axis ran into the lines)
                fig.add_trace(
                    go.Scatter(
                        x=[best + 1],
                        y=[best_ndcg],
                        mode="markers+text",
                        marker=dict(symbol="star", size=13, color=PRIMARY),
                        text=["best"],
                        textposition="top right",
                        cliponaxis=False,
                        showlegend=False,
                        hovertemplate="kept round %{x}: NDCG@20 %{y:.4f}<extra></extra>",
                    )
                )
        fig.update_xaxes(title=unit, dtick=max(1, len(x) // 10))
        fig.update_yaxes(title="validation")
        style_figure(fig, height=280, title="Validation metrics")
        chart(fig)


def _fusion_option(config: dict[str, Any], name: str) -> Any:
    """An option of the fusion model in a run's config dict (nested, or flat as older runs wrote it)."""
    options = nest_flat_options(config).get("fusion_options")
    return options.get(name) if isinstance(options, dict) else None


def _progress(summary: dict[str, Any], status: dict[str, Any], config: dict[str, Any]) -> None:
    stage = summary.get("stage")
    label = STAGES.get(stage or "", "Starting")
    if stage == "fit":
        label = f"Training {config.get('model', 'the model')}"
    elif stage == "baseline":
        label = "Training and evaluating baselines"
    if summary.get("fold") and stage not in ("final",):
        label += f" · cross-validation fold {summary['fold'][0]} of {summary['fold'][1]}"
    st.markdown(f"**{label}**")
    if summary.get("data") and stage not in ("features",):
        d = summary["data"]
        st.caption(
            f"{d.get('users', 0):,} users · {d.get('items', 0):,} items · {d.get('train', 0):,} training, "
            f"{d.get('valid', 0):,} validation and {d.get('test', 0):,} test interactions"
        )
    for name, (done, total) in summary["features"].items():
        if stage in ("features",) or done < total:
            kind = name.split(":", 1)[1]
            text = f"Features — {'pictures' if kind == 'image' else kind}: {done:,} of {total:,} items"
            rate = summary.get("feature_rates", {}).get(name)
            if rate and done < total and status.get("state") in ACTIVE_STATES:
                text += f" · {rate['items_per_second']:,.0f} items/s · about {fmt_duration(rate['eta_seconds'])} left"
            st.progress(min(1.0, done / max(total, 1)), text=text)
    if summary.get("max_epochs") or stage in ("fit", "resume"):
        max_epochs = summary.get("max_epochs") or _fusion_option(config, "epochs")
        done = min(summary["epoch"] + (1 if summary["steps"] else 0), max_epochs or 0)
        text = f"{step_name(config).capitalize()} {done} of {max_epochs}"
        if summary["steps"]:
            text += f" · step {summary['step']} of {summary['steps']}"
        if summary.get("eta_seconds") is not None and status.get("state") in ACTIVE_STATES and stage == "fit":
            text += f" · at most {fmt_duration(summary['eta_seconds'])} left (early stopping may end it sooner)"
        st.progress(summary["fraction"] if summary["fraction"] else 0.0, text=text)


def draw_run(run_dir: Path, status: dict[str, Any], config: dict[str, Any]) -> None:
    state = status.get("state", "unknown")
    events = read_progress(run_dir)
    summary = summarize_progress(events)
    if not summary["epochs"] and state not in ACTIVE_STATES:
        # BPR-MF and LightGCN report no epochs while they fit: their curves come from the saved history
        record = read_run_record(run_dir, status)
        summary["epochs"] = (record.model_history.get("epochs") or []) if record is not None else []
    head = st.columns([5, 1], vertical_alignment="center")
    with head[0]:
        state_badge(state)
        started = status.get("started")
        ended = status.get("ended")
        # a live run's clock runs on between its progress events (the first can be a minute of feature
        # extraction away); an ended one stops at its end (or its last event when the end was not written)
        now = time.time() if state in ACTIVE_STATES else None
        elapsed = (
            (ended or now or summary.get("last_time") or started or 0)
            - started
            - float(status.get("paused_seconds") or 0)
            if started
            else None
        )  # a resumed run: the time it sat stopped is not counted
        details = [f"started {fmt_time(started)}"]
        if status.get("resumed"):
            details.append(f"resumed {fmt_time(status['resumed'])}")
        if elapsed:
            details.append(f"{'took' if ended else 'running for'} {fmt_duration(elapsed)}")
        encoder_bits = []
        if config.get("model") in ("fusion", "content"):
            mods = config.get("modalities") or []
            if mods:  # a run still starting may not have written its configuration yet
                encoder_bits.append("modalities " + ", ".join(mods))
            if config.get("model") == "fusion" and _fusion_option(config, "fusion"):
                encoder_bits.append(f"{_fusion_option(config, 'fusion')} fusion")
            if "text" in mods:
                encoder_bits.append(f"text: {config.get('text_encoder')}")
            if "image" in mods:
                encoder_bits.append(f"pictures: {config.get('image_encoder')}")
        st.caption(" · ".join(details + encoder_bits))
    if state in ACTIVE_STATES:
        if head[1].button(
            "Stop",
            icon=":material/stop:",
            key=f"train_stop_{run_dir.name}",
            width="stretch",
            help="Stops within a few seconds: keeps the best model so far and a checkpoint to resume from.",
        ):
            if stop_run(run_dir):
                st.session_state.setdefault("train_stopping", set()).add(run_dir.name)
                st.toast(
                    "Stop requested: the trainer finishes the current step and keeps its best checkpoint.",
                    icon=":material/stop_circle:",
                )
            else:
                st.toast("The run is not training any more.", icon=":material/info:")
        if run_dir.name in st.session_state.get("train_stopping", set()):
            st.info(
                "Stopping: the trainer ends its current batch and keeps the best model so far.",
                icon=":material/hourglass_top:",
            )
    if state == "starting":
        st.info("Starting the training process (loading libraries)…", icon=":material/hourglass_top:")
    if state in ACTIVE_STATES or summary["epochs"]:
        if state in ACTIVE_STATES:
            _progress(summary, status, config)
            if summary["epochs"] and summary.get("stage") in ("baseline", "cold_start", "final"):
                # the heading names the stage now running; the curves below are of the fit that ended
                st.caption(
                    f"The curves below are the rounds of the {MODEL_NAMES.get(config.get('model'), 'model')} fit "
                    "that was validated (on the train split). "
                    + (
                        "The final refit on every interaction has no validation data: it keeps what validation "
                        "chose there (for the fusion model, the number of rounds and the calibration)."
                        if summary.get("stage") == "final"
                        else ""
                    )
                )
        _curves(summary, active=state in ACTIVE_STATES, unit=step_name(config))

    if state == "failed":
        show_error(
            "The training failed",
            status.get("error") or "the process ended with an error",
            details=status.get("traceback") or read_log_tail(run_dir, 40),
        )
    elif state in ("interrupted", "stopped"):
        has_model = (run_dir / "model" / "config.json").is_file()
        kept = (
            "The best model saved before that is kept and usable on the Recommendations page. "
            if has_model
            else "No model was saved before that. "
        )
        # a cross-validation keeps no checkpoint of its folds: it is started again, not resumed
        refusal = resume_refusal(config)
        if state == "interrupted":
            st.warning(
                "**Interrupted**: the training process ended without finishing (it was killed, or the "
                "machine restarted). "
                + kept
                + ("You can resume it from its last checkpoint." if refusal is None else ""),
                icon=":material/warning:",
            )
        else:
            best = summary.get("best_epoch")
            during = status.get("stopped_during")
            st.info(
                "**Stopped on request**"
                + (f" during {md_text(during)}. " if during else ". ")
                + (
                    kept
                    if best is None or not has_model
                    else f"The best model so far ({step_name(config)} {best + 1}) is kept and usable on the Recommendations page. "
                )
                + (
                    "It has not been evaluated: resume the run to continue training and evaluate it."
                    if not (run_dir / "metrics.json").is_file() and refusal is None
                    else ""
                ),
                icon=":material/stop_circle:",
            )
        if refusal is not None:
            st.caption(md_text(refusal[0].upper() + refusal[1:]) + ".")
        elif st.button("Resume training", icon=":material/replay:", key=f"train_resume_{run_dir.name}"):
            try:
                resume_run(get_workspace(), run_dir.name)
                st.toast("Resuming the run…", icon=":material/replay:")
                st.rerun()
            except RunRefused as exc:  # another process is training it (e.g. resumed from a second window)
                st.error(f"**Not resumed**: {md_text(exc)}.", icon=":material/block:")
            except Exception as exc:
                show_error("The run could not be resumed", exc)
    metrics_file = run_dir / "metrics.json"
    if state not in ACTIVE_STATES and metrics_file.is_file():
        import json

        try:
            metrics = json.loads(metrics_file.read_text())
            if not isinstance(metrics, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            st.warning(
                f"**The metrics of this run could not be read**: runs/{md_text(run_dir.name)}/metrics.json "
                f"({md_text(exc)}). Evaluate it again with `--resume {md_text(run_dir.name)} --force`, or "
                "delete the run.",
                icon=":material/broken_image:",
            )
            metrics = None
        table = metrics_table(metrics) if metrics else []
        if len(table):
            st.markdown("##### Test metrics against the baselines")
            record = read_run_record(run_dir, status)
            if record is not None:
                replaced_dataset_notice(
                    record, "These metrics were measured on the earlier data. Train again to use the current data."
                )
            split = metrics.get("split") or {}
            st.caption(
                f"Protocol {PROTOCOL_LABELS.get(split.get('protocol'), split.get('protocol') or 'P1')}: full "
                "ranking over all items, the user's training items masked"
                + (f"; {split.get('users', 0):,} users, {split.get('items', 0):,} items." if split else ".")
                + _evaluated_users_text(metrics)
                + (
                    " The model the app recommends with was then refitted on every interaction."
                    if metrics.get("final_model")
                    else ""
                )
            )
            st.dataframe(styled_metrics(table), hide_index=True, width="stretch", column_config=metric_column_config())
            st.caption(
                "Recall@20: the share of a user's held-out items found in their top 20. NDCG@20: the same, counting "
                "an item more the higher it is placed (1 = all of them at the top). Both averaged over users; "
                "higher is better. Fit time: each model's own training; the run's time above also counts the "
                "feature extraction, the evaluation and any refit."
                + (
                    " Each user has one held-out item under this protocol, so Recall@k equals Hit@k."
                    if split.get("protocol") == "sparse"
                    else ""
                )
            )
            if metrics.get("kfold"):
                cross_validation_tables(metrics)
            elif metrics.get("paired"):
                user_paired_tables(metrics)
            if state == "finished":
                st.page_link(
                    "app_pages/recommendations.py", label="See what it recommends", icon=":material/arrow_forward:"
                )
    from recsys.train.launch import log_path

    if log_path(run_dir).is_file():
        with st.expander("Process output"):
            st.code(read_log_tail(run_dir, 40) or "(nothing written yet)", language=None)


def _evaluated_users_text(metrics: dict[str, Any]) -> str:
    """How many users the test figures average over (those with a test item), and what that means when few."""
    model = metrics.get("model")
    evaluated = (model.get("test") or {}).get("n_users_evaluated") if isinstance(model, dict) else None
    if not isinstance(evaluated, int | float) or evaluated <= 0:
        return ""
    text = f" The test figures average over the {int(evaluated):,} users with a test item"
    if evaluated < 500:
        # a mean NDCG over a few hundred users moves by several percent from one split to another
        text += " (few: differences of a few percent between models are within the noise)"
    return text + "."


def user_paired_tables(metrics: dict[str, Any]) -> None:
    """The model minus each baseline on the same test users, with bootstrap intervals and a plain verdict."""
    from recsys.train.report import user_paired_table

    table = user_paired_table(metrics)
    if not len(table):
        return
    st.markdown("##### Is the difference real?")
    st.caption(
        "The model and each baseline ranked the same test users. The difference of their means, with its 95 % "
        "interval from 1,000 bootstrap resamples of those users: a difference is clear when the interval "
        "excludes 0. Otherwise another split could order the models the other way; the cross-validation "
        "protocol (k-fold), which tests on every interaction, separates them better."
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"Difference": st.column_config.NumberColumn(format="%+.4f")},
    )


def cross_validation_tables(metrics: dict[str, Any]) -> None:
    from recsys.train.report import fold_table, paired_table

    kfold = metrics["kfold"]
    st.markdown(f"##### Cross-validation: {kfold['completed']} of {kfold['folds']} folds")
    st.caption(
        f"Each fold tests on a different 1/{kfold['folds']} of every user's interactions; the model and the "
        "baselines are fitted on the same folds, so their differences are paired. A difference is clear when "
        "its 95 % interval (paired t over folds) excludes 0."
    )
    cols = st.columns([2, 3])
    cols[0].dataframe(
        fold_table(metrics),
        hide_index=True,
        width="stretch",
        column_config={
            c: st.column_config.NumberColumn(c, format="%.4f") for c in fold_table(metrics).columns if c != "Fold"
        },
    )
    paired = paired_table(metrics)
    if not len(paired):  # stopped after one fold: no fold-to-fold spread to judge a difference by
        cols[1].caption(
            "Whether the model differs from the baselines by more than the noise needs at least two folds; "
            "this run was stopped after one, so its figures are that fold's alone."
        )
        return
    cols[1].dataframe(
        paired,
        hide_index=True,
        width="stretch",
        column_config={"Mean difference": st.column_config.NumberColumn(format="%+.4f")},
    )


def styled_metrics(table):
    """Best test value of each metric in bold on a light background."""
    labels = [label for _, label in METRIC_COLUMNS if label in table.columns]
    test = table["Split"].str.startswith("test")

    def highlight(column):
        # at the precision shown: values that read the same are tied for best, and each is marked (0.70450
        # against 0.70446 both read 0.7045; marking one was a tie shown as a win)
        shown = column.astype(float).round(4)
        best = shown[test].max()
        return [
            "font-weight: 700; background-color: #EDF2FF" if is_test and value == best else ""
            for value, is_test in zip(shown, test)
        ]

    return table.style.apply(highlight, subset=labels).format(
        {label: "{:.4f}" for label in labels} | {"Fit time": "{:.1f} s"}, na_rep="–"
    )


@st.fragment(run_every=2.0)
def live_run(run_dir: str, config: dict[str, Any]) -> None:
    status = run_state(run_dir)
    if status.get("state") not in ACTIVE_STATES:
        st.rerun(scope="app")  # the run has ended: draw the final view
    config_file = Path(run_dir) / "config.json"
    if config_file.is_file():  # a run that was "starting" when the page drew has written its full config now
        import json

        try:
            config = json.loads(config_file.read_text())["config"]
        except (OSError, ValueError, KeyError):
            pass
    try:  # a fragment rerun does not pass through run_page: explain errors here too
        draw_run(Path(run_dir), status, config)
    except Exception as exc:
        show_error("The progress of this run could not be drawn", exc)


def monitor() -> None:
    st.markdown("#### :material/monitoring: Runs")
    runs = list_all_runs()
    if not runs:
        empty_state(
            "No training run yet — set one up above and press **Start training**.", icon=":material/model_training:"
        )
        return
    ids = [r.run_id for r in runs]
    if st.session_state.get("train_watch") not in ids:
        active = [r.run_id for r in runs if r.active]
        st.session_state["train_watch"] = active[0] if active else ids[0]
    # the run's state is the live badge below the picker (the label would keep the state it had when drawn)
    labels = {r.run_id: run_label(r, with_state=False) for r in runs}
    watch = st.selectbox("Run", ids, key="train_watch", format_func=lambda i: f"{labels[i]} · {i}")
    run = runs[ids.index(watch)]
    with st.container(border=True):
        if run.active:
            live_run(str(run.path), run.config)
        else:
            draw_run(run.path, run.status, run.config)


def main() -> None:
    page_header(
        "Train",
        "Choose what the model looks at and how it learns; it trains in the background and is "
        "evaluated against baselines under a protocol chosen for the data.",
    )
    privacy_retrain_panel("train")
    config_form()
    monitor()


run_page(main)
