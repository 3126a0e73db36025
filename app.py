"""Multimodal recommender studio — Streamlit entry point.

Run with ``streamlit run app.py``. This file holds the navigation and the Home page; every other
page is a file in ``app_pages/``. Pages only lay out widgets and call into ``recsys``.
"""

from __future__ import annotations

import streamlit as st

from app_pages.common import (
    ASSETS,
    active_dataset,
    damaged_datasets_notice,
    dataset_names,
    earlier_import,
    ensure_demo,
    fmt_metric,
    fmt_time,
    get_workspace,
    list_all_runs,
    load_dataset_frames,
    md_text,
    metric_decimals,
    run_name,
    run_page,
    set_active_dataset,
    state_badge,
)
from recsys.train.report import model_name

QUICK_START = {"baselines": ["mostpop", "ease"]}  # otherwise the Train form's defaults: the same model


@st.cache_resource(show_spinner=False)
def _device_description() -> tuple[str, bool]:
    from recsys.device import describe_device, select_device

    device = select_device("auto")
    return describe_device(device), device.type != "cpu"


def home() -> None:
    st.title("Multimodal recommender studio")
    st.write(
        "Bring a catalog — items with titles, descriptions, pictures and attributes — and a log of who bought or "
        "rated what; the studio learns recommendations from all of it and measures them honestly against baselines. "
        "For every recommendation it shows *why*: which modality drove the score, which past items it resembles, "
        "and what they share."
    )
    workspace = get_workspace()
    if not workspace.list_datasets():
        with st.spinner("Preparing the built-in demo catalog (first start only, a few seconds)…"):
            ensure_demo()
    damaged_datasets_notice()
    datasets = dataset_names()  # the readable ones: a damaged dataset is named in the notice above
    active = active_dataset(datasets)
    runs = list_all_runs()

    cards = st.columns(3)
    with cards[0].container(border=True, height="stretch"):
        st.markdown("**:material/database: Active dataset**")
        if active:
            counts = load_dataset_frames(active).manifest.get("counts", {})
            st.subheader(active, anchor=False)
            st.caption(
                f"{counts.get('users', 0):,} users · {counts.get('items', 0):,} items · "
                f"{counts.get('interactions', 0):,} interactions · "
                f"{counts.get('items_with_image', 0):,} pictures"
            )
            st.page_link("app_pages/data.py", label="Explore or import data", icon=":material/arrow_forward:")
        else:
            st.write("No dataset yet.")
            st.page_link("app_pages/data.py", label="Import a catalog", icon=":material/arrow_forward:")
    with cards[1].container(border=True, height="stretch"):
        st.markdown("**:material/model_training: Latest run**")
        if runs:
            latest = runs[0]
            st.subheader(f"{run_name(latest)} on {latest.dataset or '?'}", anchor=False)
            state_badge(latest.state)
            test = latest.test_metrics
            best = latest.best_baseline
            line = f"Started {fmt_time(latest.started)}"
            # the model's NDCG@20 and the best baseline's at a precision that shows no gap rounding made
            decimals = metric_decimals(test.get("ndcg@20"), best[1]) if test and best else 3
            if test:
                line += (
                    f" · NDCG@20 **{fmt_metric(test.get('ndcg@20'), decimals)}** · Recall@20 "
                    f"{fmt_metric(test.get('recall@20'))}"
                )
            if best:
                line += f" · best baseline {model_name(best[0])} {fmt_metric(best[1], decimals)}"
            if test and latest.partial_folds:  # a stopped cross-validation: the mean of the folds it did
                line += f" · {latest.partial_folds} only"
            st.caption(line)
            if latest.state == "finished" and earlier_import(latest):
                st.caption(
                    f":material/history: Trained on an earlier import of {md_text(latest.dataset or '?')}: "
                    "train again to use the current data (what is for sale already follows it)."
                )
            finished = next((r for r in runs if r.state == "finished"), None)
            if not test and finished is not None and finished is not latest:
                # a stopped or failed run has no metrics: name the last one that has them
                ndcg = finished.test_metrics.get("ndcg@20")
                st.caption(
                    f"Last finished: {md_text(run_name(finished))} on {md_text(finished.dataset or '?')}, "
                    f"{fmt_time(finished.started)}" + (f" · NDCG@20 **{fmt_metric(ndcg)}**" if ndcg is not None else "")
                )
            st.page_link("app_pages/train.py", label="Follow or start training", icon=":material/arrow_forward:")
        else:
            st.write("No model trained yet — use the quick start below or the Train page.")
            st.page_link("app_pages/train.py", label="Train a model", icon=":material/arrow_forward:")
    with cards[2].container(border=True, height="stretch"):
        st.markdown("**:material/memory: Device**")
        description, accelerated = _device_description()
        st.subheader("GPU" if accelerated else "CPU", anchor=False)
        st.caption(
            f"{description} · "
            + (
                "training and feature extraction run on the GPU"
                if accelerated
                else "no GPU detected: training runs on the CPU (small catalogs train in minutes)"
            )
        )

    st.subheader("Quick start", anchor=False)
    with st.container(border=True):
        active_runs = [r for r in runs if r.active]
        own = active if active and active != "demo" else None  # the user's own data, once imported, comes first
        st.write(
            (
                f"One click trains the multimodal model on **{md_text(own)}**, the active dataset, or on the built-in "
                "demo catalog,"
                if own
                else "One click prepares the built-in demo catalog (if needed), makes it the active dataset and trains "
                "the multimodal model"
            )
            + " with the Train page's default settings beside two baselines, MostPop and EASE. It runs in the "
            "background: you can switch pages or close the tab meanwhile."
        )
        buttons = st.container(horizontal=True)
        clicked_own = own is not None and buttons.button(
            f"Train on {md_text(own)}",  # a name such as my_shop_2 is not Markdown emphasis
            type="primary",
            icon=":material/rocket_launch:",
            key="home_quick_start_own",
            disabled=bool(active_runs),
        )
        clicked = buttons.button(
            "Train on the demo catalog",
            type="secondary" if own else "primary",
            icon=":material/rocket_launch:",
            key="home_quick_start",
            disabled=bool(active_runs),
        )
        if clicked_own:
            from recsys.train.launch import start_run
            from recsys.train.run import RunConfig

            with st.spinner(f"Starting the training on {own}…"):
                run_id = start_run(workspace, RunConfig(dataset=own, **QUICK_START))
            st.session_state["home_started"] = run_id
            st.session_state["train_watch"] = run_id
            st.session_state["home_switched_from"] = None
            st.rerun()
        if active_runs and st.session_state.get("home_started") != active_runs[0].run_id:
            # (the run started here is confirmed below, with links)
            st.info(
                f"A training run is in progress ({md_text(active_runs[0].run_id)}): follow it on the Train page.",
                icon=":material/autorenew:",
            )
        if clicked:
            from recsys.train.launch import start_run
            from recsys.train.run import RunConfig

            with st.spinner("Preparing the demo catalog and starting the training…"):
                name = ensure_demo()
                run_id = start_run(workspace, RunConfig(dataset=name, **QUICK_START))
            st.session_state["home_started"] = run_id
            st.session_state["train_watch"] = run_id
            # the pages follow the run's dataset; say so when that replaces the user's own active dataset
            st.session_state["home_switched_from"] = active if active and active != name else None
            set_active_dataset(name)
            st.rerun()  # the cards above were drawn before the run existed: draw them again with it
        if st.session_state.get("home_started"):
            switched = st.session_state.get("home_switched_from")
            note = (
                f" The demo catalog is now the active dataset (it was “{md_text(switched)}”): choose yours again "
                "on the Data page."
                if switched
                else ""
            )
            st.success(
                f"Training started (run {st.session_state['home_started']}). Watch its progress on the Train "
                f"page; when it has finished, see what it recommends on the Recommendations page.{note}",
                icon=":material/check_circle:",
            )
            links = st.columns(2)
            links[0].page_link("app_pages/train.py", label="Watch the training", icon=":material/monitoring:")
            links[1].page_link("app_pages/recommendations.py", label="See recommendations", icon=":material/recommend:")

    st.subheader("What you can do here", anchor=False)
    # widths by label length: a page link does not wrap, and "Recommendations" was cut off in an equal fifth
    steps = st.columns([1, 1, 1.45, 1.05, 1.15])
    for col, (page, label, icon, text) in zip(
        steps,
        [
            (
                "app_pages/data.py",
                "Data",
                ":material/database:",
                "Import items, interactions and pictures; check roles and quality.",
            ),
            (
                "app_pages/train.py",
                "Train",
                ":material/model_training:",
                "Pick modalities, encoders and options; watch live curves.",
            ),
            (
                "app_pages/recommendations.py",
                "Recommendations",
                ":material/recommend:",
                "Top items for any user, each with a reason.",
            ),
            (
                "app_pages/attention.py",
                "Attention",
                ":material/visibility:",
                "How much each modality weighs, by user and category.",
            ),
            (
                "app_pages/experiments.py",
                "Experiments",
                ":material/science:",
                "Compare runs and baselines; download models.",
            ),
        ],
    ):
        with col.container(border=True, height="stretch"):
            st.page_link(page, label=label, icon=icon)
            st.caption(text)


def home_page() -> None:
    run_page(home)


def main() -> None:
    st.set_page_config(page_title="Recommender studio", page_icon=str(ASSETS / "icon.svg"), layout="wide")
    st.logo(str(ASSETS / "logo.svg"), icon_image=str(ASSETS / "icon.svg"), size="large")
    navigation = st.navigation(
        [
            st.Page(home_page, title="Home", icon=":material/home:", default=True),
            st.Page("app_pages/data.py", title="Data", icon=":material/database:"),
            st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
            st.Page("app_pages/recommendations.py", title="Recommendations", icon=":material/recommend:"),
            st.Page("app_pages/attention.py", title="Attention", icon=":material/visibility:"),
            st.Page("app_pages/experiments.py", title="Experiments", icon=":material/science:"),
        ]
    )
    navigation.run()


if __name__ == "__main__":
    main()
