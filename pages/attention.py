"""Attention: how much weight the fusion model gives each modality, across users, categories and items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pages.common import (MODALITY_COLOURS, MODALITY_NAMES, RunContext, chart, empty_state, gallery, item_caption,
                          model_runs, page_header, run_page, usable_context, run_picker, style_figure)
from recsys.explain import (attention_by_category, attention_long, ground_truth_comparison, has_attention, pca_2d,
                            top_items_attention, user_attention_summary)

TOP_K = 20
MAP_POINTS = 5000


@st.cache_data(show_spinner="Computing attention over every user's top items…", max_entries=4)
def attention_frame(run_dir: str, model_stamp: str, k: int, _ctx: RunContext) -> pd.DataFrame:
    return top_items_attention(_ctx.model, k=k, max_users=2000)


@st.cache_data(show_spinner=False, max_entries=4)
def map_frame(run_dir: str, model_stamp: str, _ctx: RunContext) -> pd.DataFrame:
    coords = pca_2d(_ctx.vectors)
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "item_id": _ctx.model.item_ids})
    frame["title"] = [_ctx.title(i) for i in frame["item_id"]]
    column = _ctx.category_columns[0] if _ctx.category_columns else None
    if column:
        frame[column] = _ctx.aligned[column].astype("string").fillna("(none)").str.split(
            _ctx.data.separator, regex=False).str[0].to_numpy()
    if len(frame) > MAP_POINTS:
        frame = frame.sample(MAP_POINTS, random_state=0)
    return frame


def distribution(long: pd.DataFrame, modalities: list[str]) -> None:
    means = long.groupby("modality")["weight"].mean()
    cols = st.columns(len(modalities))
    for col, modality in zip(cols, modalities):
        col.metric(f"{MODALITY_NAMES.get(modality, modality)} — mean attention", f"{means.get(modality, 0):.0%}")
    fig = px.box(long, x="modality", y="weight", color="modality", points=False,
                 category_orders={"modality": modalities}, color_discrete_map=MODALITY_COLOURS,
                 labels={"weight": "attention weight", "modality": ""})
    fig.update_xaxes(ticktext=[MODALITY_NAMES.get(m, m) for m in modalities], tickvals=modalities)
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    style_figure(fig, height=340, legend=False,
                 title=f"Attention per modality over every user's top-{TOP_K} items")
    chart(fig, key="att_distribution")


def category_heatmap(ctx: RunContext, frame: pd.DataFrame, modalities: list[str]) -> None:
    if not ctx.category_columns:
        st.caption("No categorical column to break attention down by.")
        return
    column = st.selectbox("Item column", ctx.category_columns, key="att_category_column")
    table = attention_by_category(frame, ctx.items_by_id, column, modalities, ctx.data.roles.get(column, "categorical"),
                                  ctx.data.separator, top=15)
    if table.empty:
        st.caption("No values to show.")
        return
    values = table[modalities]
    fig = px.imshow(values.to_numpy(), x=[MODALITY_NAMES.get(m, m) for m in modalities], y=list(values.index),
                    color_continuous_scale="Blues", zmin=0, zmax=float(np.nanmax(values.to_numpy())) or 1,
                    text_auto=".0%", aspect="auto")
    fig.update_traces(hovertemplate="%{y} · %{x}: %{z:.1%}<extra></extra>")
    fig.update_coloraxes(showscale=False)
    style_figure(fig, height=max(300, 26 * len(values) + 80), legend=False,
                 title=f"Mean attention by {column.replace('_', ' ')} and modality")
    chart(fig, key="att_category_heatmap")


def history_length(summary: pd.DataFrame, modalities: list[str]) -> None:
    data = summary.dropna(subset=["history_length"])
    if data["history_length"].nunique() < 3:
        st.caption("Too few distinct history lengths to compare.")
        return
    bins = pd.qcut(data["history_length"], q=min(8, data["history_length"].nunique()), duplicates="drop")
    grouped = data.groupby(bins, observed=True)
    binned = grouped[modalities].mean()
    centers = grouped["history_length"].median().to_numpy()
    fig = go.Figure()
    for modality in modalities:
        fig.add_trace(go.Scatter(x=data["history_length"], y=data[modality], mode="markers", showlegend=False,
                                 marker=dict(color=MODALITY_COLOURS.get(modality), size=4, opacity=0.15),
                                 hoverinfo="skip"))
    for modality in modalities:
        fig.add_trace(go.Scatter(x=centers, y=binned[modality], mode="lines+markers",
                                 name=MODALITY_NAMES.get(modality, modality),
                                 line=dict(color=MODALITY_COLOURS.get(modality), width=3),
                                 hovertemplate="history ≈ %{x:.0f} items: %{y:.1%}<extra></extra>"))
    fig.update_xaxes(type="log", dtick=1, title="user's training history (items, log scale)")
    fig.update_yaxes(tickformat=".0%", title="mean attention")
    style_figure(fig, height=360, title="Attention vs. history length (dots: users, lines: binned means)")
    chart(fig, key="att_history")


def user_heatmap(ctx: RunContext, frame: pd.DataFrame, modalities: list[str]) -> None:
    users = list(dict.fromkeys(frame["user_id"]))
    if st.session_state.get("att_user") not in users:
        st.session_state.pop("att_user", None)
    cols = st.columns([2, 1])
    user = cols[0].selectbox("User", users, key="att_user",
                             format_func=lambda u: f"{u} · {ctx.activity.get(u, 0)} items")
    k = cols[1].slider("Top items", 5, TOP_K, 10, key="att_user_k")
    rows = frame[frame["user_id"] == user].sort_values("rank").head(k)
    labels = [f"{r}. {ctx.title(i)[:48]}" for r, i in zip(rows["rank"], rows["item_id"])]
    fig = px.imshow(rows[modalities].to_numpy(dtype=float), x=[MODALITY_NAMES.get(m, m) for m in modalities],
                    y=labels, color_continuous_scale="Blues", zmin=0, zmax=1, text_auto=".0%", aspect="auto")
    fig.update_traces(hovertemplate="%{y} · %{x}: %{z:.1%}<extra></extra>")
    fig.update_coloraxes(showscale=False)
    style_figure(fig, height=max(300, 28 * len(rows) + 80), legend=False,
                 title=f"Attention over {user}'s top {len(rows)} items (blank: the item lacks that modality)")
    chart(fig, key="att_user_heatmap")


def ground_truth(ctx: RunContext, summary: pd.DataFrame, modalities: list[str]) -> None:
    path = Path(ctx.data.root) / "ground_truth" / "users.csv"
    if not path.is_file():
        return
    st.markdown("#### :material/fact_check: Learned attention vs. the demo's true weights")
    truth = pd.read_csv(path, dtype={"user_id": str})
    comparison = ground_truth_comparison(summary, truth, modalities)
    if comparison.empty:
        st.caption("The ground-truth users do not overlap with this model's users.")
        return
    st.caption("Each demo user belongs to a segment that weights one modality most (the true weights, from the "
               "generator). Learned: the model's mean attention over those users' top items, rescaled to sum to 1. "
               "Matching shapes mean the model found what drives each segment.")
    long = comparison.melt(id_vars=["segment", "modality", "users"], value_vars=["learned", "true"],
                           var_name="source", value_name="weight")
    long["modality"] = long["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    fig = px.bar(long, x="modality", y="weight", color="source", barmode="group", facet_col="segment",
                 color_discrete_map={"learned": "#4C6EF5", "true": "#ADB5BD"},
                 labels={"weight": "weight", "modality": ""}, hover_data={"users": True})
    fig.for_each_annotation(lambda a: a.update(text=f"<b>{a.text.split('=')[-1]}</b> segment", y=-0.16,
                                               yanchor="top"))
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    style_figure(fig, height=380)
    fig.update_layout(margin=dict(b=60))
    chart(fig, key="att_ground_truth")


def embedding_map(ctx: RunContext) -> None:
    st.markdown("#### :material/scatter_plot: Item map")
    frame = map_frame(ctx.run_dir, str(ctx.stamp), ctx)
    column = ctx.category_columns[0] if ctx.category_columns else None
    source = "the mean of its modality tokens" if hasattr(ctx.model, "_eval_tokens") else \
        "who interacted with it (SVD of the training interactions)"
    st.caption(f"Each dot is an item, placed by the first two principal components of its vector ({source}); "
               "close items look alike to the model. Select points (click, box or lasso) to see their pictures.")
    fig = px.scatter(frame, x="x", y="y", color=column, hover_name="title", custom_data=["item_id"],
                     color_discrete_sequence=px.colors.qualitative.Set2 + px.colors.qualitative.Pastel,
                     labels={"x": "component 1", "y": "component 2"})
    fig.update_traces(marker=dict(size=7, opacity=0.8, line=dict(width=0)))
    style_figure(fig, height=520)
    event = st.plotly_chart(fig, key="att_map", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            config={"displaylogo": False})
    points = []
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        points = (event or {}).get("selection", {}).get("points", [])
    selected = []
    for point in points or []:
        data = point.get("customdata")
        if data:
            selected.append(str(data[0] if isinstance(data, (list, tuple)) else data))
    if selected:
        selected = list(dict.fromkeys(selected))
        st.caption(f"{len(selected)} item{'s' if len(selected) > 1 else ''} selected"
                   + (" — showing 12" if len(selected) > 12 else ""))
        gallery([{"picture": ctx.picture(i), "title": ctx.title(i),
                  "caption": item_caption(ctx.items_by_id.loc[i], ctx.category_columns, ctx.price_column)
                  if i in ctx.items_by_id.index else ""} for i in selected[:12]], per_row=6)


def main() -> None:
    page_header("Attention", "How much the fusion model listens to behaviour, text, pictures and attributes — for "
                             "every user, category and item.")
    runs = model_runs()
    if not runs:
        empty_state("No model trained yet — train one on the Train page.", page="train", label="Train a model")
        return
    run = run_picker("Model", "att_run", runs)
    ctx = usable_context(run)
    if ctx is None:
        return
    model = ctx.model
    if not has_attention(model):
        fusion = (getattr(model, "config", {}) or {}).get("fusion")
        what = "fusion model with concat fusion (an MLP, no weights per modality)" if fusion == "concat" else \
            f"{model.name} baseline"
        st.info(f"**Attention exists only for the fusion model** (attention, mean or item-gate fusion). This run "
                f"trained a {what}, so there are no modality weights to show. Pick a fusion run above, or train one "
                "on the Train page.", icon=":material/info:")
        st.page_link("pages/train.py", label="Train a fusion model", icon=":material/arrow_forward:")
        embedding_map(ctx)
        return
    modalities = list(model.modalities)
    frame = attention_frame(ctx.run_dir, str(ctx.stamp), TOP_K, ctx)
    if frame.empty:
        empty_state("This model has no users to compute attention for.")
        return
    long = attention_long(frame, modalities)
    users = frame["user_id"].nunique()
    st.caption(f"Computed over the top-{TOP_K} recommendations of {users:,} users"
               f"{' (a sample)' if users < model.n_users else ''}; a modality an item lacks is left out.")
    distribution(long, modalities)
    left, right = st.columns(2)
    summary = user_attention_summary(frame, model, modalities)
    with left:
        category_heatmap(ctx, frame, modalities)
    with right:
        history_length(summary, modalities)
    st.markdown("#### :material/person: One user")
    user_heatmap(ctx, frame, modalities)
    ground_truth(ctx, summary, modalities)
    embedding_map(ctx)


run_page(main)
