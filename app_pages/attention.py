"""Attention: how much weight the fusion model gives each modality, per user first, then across categories,
history lengths and items. The per-user weights are the gate the scores use (``user_modality_weights``)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import (
    MODALITY_COLOURS,
    MODALITY_NAMES,
    RunContext,
    chart,
    damaged_models_notice,
    empty_state,
    gallery,
    log_axis_ticks,
    md_text,
    model_runs,
    no_model_message,
    open_run,
    page_header,
    part_percent,
    run_label,
    run_page,
    run_picker,
    short_label,
    style_figure,
    usable_context,
)
from recsys.explain import (
    LEAN_MARGIN,
    NO_LEAN,
    SEGMENT_MODALITY,
    attention_by_category,
    ground_truth_comparison,
    has_attention,
    pca_2d,
    segment_recovery,
    top_items_attention,
    user_weights_frame,
    whole_percentages,
)
from recsys.train.report import model_name

TOP_K = 20
CATEGORY_ROWS = 15  # rows of the category heatmap: the groups most often in the users' lists
MAP_POINTS = 5000


@st.cache_data(show_spinner="Computing attention over every user's top items…", max_entries=4)
def attention_frame(run_dir: str, model_stamp: str, k: int, _ctx: RunContext) -> pd.DataFrame:
    return top_items_attention(_ctx.model, k=k, max_users=500, keep=_ctx.in_catalogue)


@st.cache_data(show_spinner="Reading every user's modality weights…", max_entries=4)
def weights_frame(run_dir: str, model_stamp: str, _ctx: RunContext) -> pd.DataFrame:
    return user_weights_frame(_ctx.model)


MAP_PALETTE = px.colors.qualitative.Bold[:10]  # its 11th is a grey, like the rest's
MAP_COLOURS = len(MAP_PALETTE) + 1  # with a grey for the rest
OTHER_COLOUR = "#CED4DA"


def map_legend_order(values: pd.Series) -> list[str]:
    counts = values.value_counts()
    return sorted(counts.index, key=lambda name: (str(name).startswith("other ("), -counts[name], str(name)))


BREADCRUMB = " > "  # "Home & Kitchen > Bakeware": a category path, its first level a coarser category


def map_labels(values: pd.Series, separator: str, keep: int | None = None) -> pd.Series:
    """An item's group on the map: the first label of the column's cell, "(none)" for a missing or empty one
    (an empty cell drawn as its own trace is named "" and has no legend entry). With more than ``keep`` values
    that are category paths ("Home & Kitchen > Bakeware"), their first level: a dozen colours tell a dozen
    departments apart, where 29 sub-categories would mostly end up in one grey "other"."""
    first = values.astype("string").str.split(separator, regex=False).str[0].str.strip()
    first = first.fillna("(none)").replace("", "(none)")
    if keep is not None and first.nunique() > keep and first.str.contains(BREADCRUMB, regex=False).mean() >= 0.8:
        first = first.str.split(BREADCRUMB, regex=False).str[0].str.strip()
    return first


@st.cache_data(show_spinner=False, max_entries=4)
def map_frame(run_dir: str, model_stamp: str, _ctx: RunContext) -> pd.DataFrame:
    coords = pca_2d(_ctx.vectors)
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "item_id": _ctx.model.item_ids})
    frame["title"] = [_ctx.title(i) for i in frame["item_id"]]
    column = _ctx.category_columns[0] if _ctx.category_columns else None
    if column:
        frame[column] = map_labels(_ctx.aligned[column], _ctx.data.separator, MAP_COLOURS).to_numpy()
    if _ctx.in_catalogue is not None:  # items a later import dropped: no longer part of the catalogue shown
        frame = frame[_ctx.in_catalogue]
    if len(frame) > MAP_POINTS:
        frame = frame.sample(MAP_POINTS, random_state=0)
    if column:
        frame[column] = largest_groups(frame[column], MAP_COLOURS)
    return frame


def largest_groups(values: pd.Series, keep: int) -> pd.Series:
    """The ``keep - 1`` most frequent values as they are and every other one as "other (N values)", when there
    are more than ``keep``: a palette has a dozen colours an eye tells apart, and 29 categories drawn from it
    repeat colours, so two categories would look like one."""
    counts = values.value_counts()
    if len(counts) <= keep:
        return values
    kept = set(counts.index[: keep - 1])
    return values.where(values.isin(kept), f"other ({len(counts) - len(kept)} values)")


def distribution(
    weights: pd.DataFrame,
    modalities: list[str],
    presence: np.ndarray | None = None,
    on_top_items: pd.DataFrame | None = None,
) -> None:
    """The users' weights per modality (metrics, a box plot); ``on_top_items``: the item-level weights over
    the users' top items (:func:`recsys.explain.top_items_attention`), whose means are said beside the users':
    the per-item factor moves them (a user's 45 % on behaviour was 6-17 % on their own top items), and a
    headline of even 25 % shares read as "balanced" where the items said otherwise."""
    cols = st.columns(len(modalities))
    for m, (col, modality) in enumerate(zip(cols, modalities)):
        col.metric(
            f"{MODALITY_NAMES.get(modality, modality)} — mean weight",
            f"{weights[modality].mean():.0%}",
            help="The mean over users of the weight the model gives this modality when it scores for them. "
            "It applies only to items that have the modality: on an item without it, the weight is spread over "
            "the item's other modalities. The weights carry what differs between users; how much a modality "
            "counts for everyone is in its expert's learned scale, so the means stay near an even split and "
            "the spread (the middle half of the users, below) is what tells users apart.",
        )
        low, high = np.percentile(weights[modality], [25, 75])
        col.caption(f"middle half of the users: {low:.0%}–{high:.0%}")
        if on_top_items is not None and modality in on_top_items.columns and len(on_top_items):
            # an item lacking the modality gives it no weight: 0, as in the category table below
            item_level = float(on_top_items[modality].fillna(0.0).mean())
            col.caption(f"on the users' top {TOP_K} items: {item_level:.0%} (per-item weights, below)")
        if presence is not None and presence.shape[0]:
            have, total = int(presence[:, m].sum()), presence.shape[0]
            # a user's weight on a modality few items have moves few scores: say how many it can reach
            what = {
                "behaviour": "were seen in training",
                # the Data page counts any attribute column; the model only those it gives weight
                "attributes": "have a value in an attribute column the model uses",
            }.get(modality, "have it")
            col.caption(f"{have:,} of {total:,} items {what} ({part_percent(have, total)})")
    spreads = [float(np.subtract(*np.percentile(weights[m], [75, 25]))) for m in modalities]
    if spreads and max(spreads) < 0.05 and "history_length" in weights.columns:
        # a sparse shop (a median of two items per user): every user near an even split reads as "nothing was
        # learned"; say what it means, and where the model's weighing shows instead
        median = float(np.nanmedian(weights["history_length"])) if len(weights) else 0.0
        st.info(
            f"Most users' weights sit close together: with a median history of {median:,.0f} item"
            f"{'' if median == 1 else 's'}, a user's own choices say too little to tell their tastes apart, so the "
            "model gives most users about the same weights and leans on what holds for everyone. What differs is "
            "how it weighs each *item* (the per-item weights on the users' top items, below): a modality counts "
            "more for items whose other signals are thin. Users' weights spread out as their histories grow.",
            icon=":material/info:",
        )
    long = weights.melt(id_vars=["user_id"], value_vars=modalities, var_name="modality", value_name="weight")
    fig = px.box(
        long,
        x="modality",
        y="weight",
        color="modality",
        points=False,
        category_orders={"modality": modalities},
        color_discrete_map=MODALITY_COLOURS,
        labels={"weight": "weight", "modality": ""},
    )
    fig.update_xaxes(ticktext=[MODALITY_NAMES.get(m, m) for m in modalities], tickvals=modalities)
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    style_figure(fig, height=340, legend=False, title=f"Each user's weight per modality ({len(weights):,} users)")
    chart(fig, key="att_distribution")


def dominant_groups(ctx: RunContext, weights: pd.DataFrame, modalities: list[str]) -> None:
    """Users grouped by the modality they lean to most (relative to other users), and those who lean to none
    (their weights all within a point of the average: most often users known by one item, whose history has
    no evidence to read); pick one to look at."""
    groups = [*modalities, NO_LEAN]
    names = {**{m: MODALITY_NAMES.get(m, m) for m in modalities}, NO_LEAN: "No clear lean"}
    counts = weights["dominant"].value_counts().reindex(groups, fill_value=0)
    if counts[NO_LEAN] == 0:
        groups = modalities
        counts = counts.reindex(groups)
    fig = px.bar(
        x=[names[g] for g in groups],
        y=counts.to_numpy(),
        color=groups,
        color_discrete_map={**MODALITY_COLOURS, NO_LEAN: "#ADB5BD"},
        labels={"x": "", "y": "users"},
        text=counts.to_numpy(),
    )
    style_figure(
        fig,
        height=300,
        legend=False,
        title="Users by the modality they lean to most (their weight minus the average user's)",
    )
    left, right = st.columns([3, 2])
    with left:
        chart(fig, key="att_dominant")
        if NO_LEAN in groups:
            st.caption(
                f"No clear lean: no weight is {100 * LEAN_MARGIN:g} percentage point or more above the average "
                "user's, or the weights are the population's: a user known by a single item has no evidence for "
                "the model to read."
            )
    with right:
        group = st.selectbox("Group", groups, key="att_group", format_func=names.__getitem__)
        members = weights[weights["dominant"] == group]
        # strongest lean first; the no-lean group by history length, longest first
        members = members.sort_values("history_length" if group == NO_LEAN else group, ascending=False)
        if members.empty:
            st.caption("No user leans to this modality.")
            return
        shown = members.head(200)
        user = st.selectbox(
            f"User ({len(members):,} in this group, "
            + ("longest history first)" if group == NO_LEAN else "strongest lean first)"),
            shown["user_id"].tolist(),
            key="att_group_user",
            format_func=ctx.user_option,
            on_change=_follow_group_user,
        )
        row = members[members["user_id"] == user].iloc[0]
        st.caption(" · ".join(f"{MODALITY_NAMES.get(m, m)} {row[m]:.0%}" for m in modalities))
        if st.button("Open this user's recommendations", key="att_open_user", icon=":material/arrow_forward:"):
            st.session_state["rec_user"] = user
            st.switch_page("app_pages/recommendations.py")
        # "One user" below starts on this user and follows a new pick here, but keeps a user chosen there
        st.session_state.setdefault("att_user", user)


def _follow_group_user() -> None:
    st.session_state["att_user"] = st.session_state.get("att_group_user")


def axis_labels(values: list[str], limit: int = 32) -> list[str]:
    """Short, distinct axis labels for ``values``: a category path's last level, at most ``limit`` characters (the
    long paths left the heatmap's cells a sliver of its half of the page); a value whose short label another
    shares keeps more of itself (its last two levels, else itself), since a chart's axis merges equal labels."""
    short = [short_label(v, limit) for v in values]
    labels = []
    for label, value in zip(short, values):
        if short.count(label) > 1:
            label = short_label(" › ".join(value.split(" > ")[-2:]), limit)
        labels.append(label)
    return [label if labels.count(label) == 1 else value for label, value in zip(labels, values)]


def category_heatmap(ctx: RunContext, frame: pd.DataFrame, modalities: list[str]) -> None:
    if not ctx.category_columns:
        st.caption("No categorical column to break attention down by.")
        return
    column = st.selectbox("Item column", ctx.category_columns, key="att_category_column")
    table = attention_by_category(
        frame,
        ctx.items_by_id,
        column,
        modalities,
        ctx.data.roles.get(column, "categorical"),
        ctx.data.separator,
        top=len(ctx.aligned),  # every group, so that the caption can say how many are left out
    )
    if table.empty:
        st.caption("No values to show.")
        return
    groups = len(table)
    table = table.head(CATEGORY_ROWS)
    values = table[modalities]
    full = [str(v) for v in values.index]
    shown = axis_labels(full)
    fig = px.imshow(
        values.to_numpy(),
        x=[MODALITY_NAMES.get(m, m) for m in modalities],
        y=shown,
        color_continuous_scale="Blues",
        zmin=0,
        zmax=float(np.nanmax(values.to_numpy())) or 1,
        aspect="auto",
    )
    # whole percentages by largest remainder, so each row's labels add up to 100 as the caption says
    labels = [[f"{p}%" for p in whole_percentages(row)] for row in values.to_numpy()]
    fig.update_traces(
        text=labels,
        texttemplate="%{text}",
        customdata=[[name] * len(modalities) for name in full],
        hovertemplate="%{customdata} · %{x}: %{z:.1%}<extra></extra>",
    )
    fig.update_coloraxes(showscale=False)
    style_figure(
        fig,
        height=max(300, 26 * len(values) + 80),
        legend=False,
        title=f"Mean attention by {column.replace('_', ' ')} and modality",
    )
    chart(fig, key="att_category_heatmap")
    st.caption(
        f"Each row adds up to 100 %: the mean attention weight of each modality over the users' top {TOP_K} "
        "items of that group (weights, not shares of the score: a modality's share also depends on how far its "
        "expert's score is from the user's average). An item without a picture (or text) gives it no weight, and "
        "counts 0 % there."
        + (
            f" The {len(table)} groups most often in those lists are shown, of the {groups} that appear in them."
            if groups > len(table)
            else ""
        )
    )


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
        fig.add_trace(
            go.Scatter(
                x=data["history_length"],
                y=data[modality],
                mode="markers",
                showlegend=False,
                marker=dict(color=MODALITY_COLOURS.get(modality), size=4, opacity=0.15),
                hoverinfo="skip",
            )
        )
    for modality in modalities:
        fig.add_trace(
            go.Scatter(
                x=centers,
                y=binned[modality],
                mode="lines+markers",
                name=MODALITY_NAMES.get(modality, modality),
                line=dict(color=MODALITY_COLOURS.get(modality), width=3),
                hovertemplate="history ≈ %{x:.0f} items: %{y:.1%}<extra></extra>",
            )
        )
    fig.update_xaxes(
        type="log", title="user's training history (items, log scale)", **log_axis_ticks(data["history_length"])
    )
    fig.update_yaxes(tickformat=".0%", title="mean weight")
    style_figure(fig, height=360, title="Weights vs. history length (dots: users, lines: binned means)")
    chart(fig, key="att_history")


def user_heatmap(ctx: RunContext, weights: pd.DataFrame, modalities: list[str]) -> None:
    users = weights["user_id"].tolist()
    if st.session_state.get("att_user") not in users:
        st.session_state.pop("att_user", None)
    cols = st.columns([2, 1])
    user = cols[0].selectbox("User", users, key="att_user", format_func=ctx.user_option)
    k = cols[1].slider("Top items", 5, TOP_K, 10, key="att_user_k")
    row = int(weights.loc[weights["user_id"] == user, "user_row"].iloc[0])
    rows = top_items_attention(ctx.model, k=k, users=[row], keep=ctx.in_catalogue)
    titles = [f"{r}. {ctx.title(i)}" for r, i in zip(rows["rank"], rows["item_id"])]
    # a long title is cut on the axis (with an ellipsis) and given whole on hover
    labels = [t if len(t) <= 48 else t[:47] + "…" for t in titles]
    fig = px.imshow(
        rows[modalities].to_numpy(dtype=float),
        x=[MODALITY_NAMES.get(m, m) for m in modalities],
        y=labels,
        color_continuous_scale="Blues",
        zmin=0,
        zmax=1,
        text_auto=".0%",
        aspect="auto",
    )
    fig.update_traces(
        # customdata is not escaped by chart() (it carries raw ids elsewhere): the titles are escaped here
        customdata=np.repeat(
            np.array([html.escape(t, quote=False) for t in titles], dtype=object)[:, None], len(modalities), axis=1
        ),
        hovertemplate="%{customdata} · %{x}: %{z:.1%}<extra></extra>",
    )
    fig.update_coloraxes(showscale=False)
    style_figure(
        fig,
        height=max(300, 28 * len(rows) + 80),
        legend=False,
        title=f"{user}'s weights on each of their top {len(rows)} items (blank: the item lacks it)",
    )
    chart(fig, key="att_user_heatmap")
    st.caption(
        "Per item, each content modality's weight is also scaled by how often the item was chosen, and an item "
        "lacking a modality spreads its weight over the others: so these can differ from the user's weights. "
        "These are the model's own top items (what the user has is left out); the Recommendations page's list can "
        "differ where it keeps one item per product or adds variety. " + tilt_sentence(ctx.model.popularity_tilt())
    )


def tilt_sentence(tilt: dict[str, float], negligible: float = 0.05) -> str:
    """What this run learned about popularity and the per-item weights, in words (the direction is learned,
    not assumed: a run can give content more weight on bestsellers or on the long tail)."""
    if not tilt:
        return ""

    def names(values: list[str]) -> str:
        words = [MODALITY_NAMES.get(m, m) for m in values]
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

    def weigh(values: list[str]) -> str:
        return f"{names(values)} weigh{'s' if len(values) == 1 else ''} more"

    more_popular = [m for m, slope in tilt.items() if slope > negligible]
    more_rare = [m for m, slope in tilt.items() if slope < -negligible]
    if more_popular and more_rare:
        return f"In this run {weigh(more_popular)} on often chosen items; {weigh(more_rare)} on rarely chosen ones."
    if more_popular:
        return f"In this run {weigh(more_popular)} on often chosen items (so Behaviour weighs less there)."
    if more_rare:
        return f"In this run {weigh(more_rare)} on rarely chosen items (so Behaviour weighs more on bestsellers)."
    return "In this run that factor is close to 1 for every item."


def segment_name(segment: str) -> str:
    """A demo segment by the modality it leans to, named as the rest of the page names it ("visual" users are
    the "Picture" segment)."""
    return MODALITY_NAMES.get(SEGMENT_MODALITY.get(segment, segment), segment)


def ground_truth(ctx: RunContext, weights: pd.DataFrame, modalities: list[str]) -> None:
    path = Path(ctx.data.root) / "ground_truth" / "users.csv"
    if not path.is_file():
        return
    st.markdown("#### :material/fact_check: Learned weights vs. the demo's true weights")
    truth = pd.read_csv(path, dtype={"user_id": str})
    recovery = segment_recovery(weights, truth, modalities)
    if not recovery.get("users"):
        st.caption("The ground-truth users do not overlap with this model's users.")
        return
    comparison = ground_truth_comparison(weights, truth, modalities)
    comparison["modality"] = comparison["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    comparison["segment"] = comparison["segment"].map(segment_name)
    st.caption(
        "Each demo user belongs to a segment that weights one modality most (the true weights come from "
        "the generator). Learned: the mean of those users' weights in the model — the weights its scores "
        "use. Matching shapes mean the model found what drives each segment."
    )
    # the figures in one row above the chart (beside a short caption they left a tall gap before it)
    found, per_segment, spearman = st.columns([1, 2, 2])
    with found:
        st.metric(
            "Segment found",
            f"{recovery['segment_accuracy']:.0%}",
            help="Share of users whose most-leaned-to modality (weight minus the average user's) is their "
            "planted segment's. Chance: 25 %.",
        )
    with per_segment:
        st.caption(
            "Per segment: "
            + ", ".join(f"{segment_name(k).lower()} {v:.0%}" for k, v in recovery["per_segment"].items())
        )
    with spearman:
        st.caption(
            "Rank correlation of learned and true weight over users: "
            + ", ".join(f"{MODALITY_NAMES.get(k, k).lower()} {v:.2f}" for k, v in recovery["spearman"].items())
        )
    long = comparison.melt(
        id_vars=["segment", "modality", "users"],
        value_vars=["learned", "true"],
        var_name="source",
        value_name="weight",
    )
    fig = px.bar(
        long,
        x="modality",
        y="weight",
        color="source",
        barmode="group",
        facet_col="segment",
        color_discrete_map={"learned": "#4C6EF5", "true": "#ADB5BD"},
        labels={"weight": "weight", "modality": ""},
        hover_data={"users": True},
    )
    fig.for_each_annotation(lambda a: a.update(text=f"<b>{a.text.split('=')[-1]}</b> segment", y=-0.16, yanchor="top"))
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    # the chart takes the page's width so the modality names fit level under their bars
    fig.update_xaxes(tickangle=0)
    style_figure(fig, height=380)
    fig.update_layout(margin=dict(b=60))
    chart(fig, key="att_ground_truth")


def embedding_map(ctx: RunContext) -> None:
    st.markdown("#### :material/scatter_plot: Item map")
    frame = map_frame(ctx.run_dir, str(ctx.stamp), ctx)
    column = ctx.category_columns[0] if ctx.category_columns else None
    source = (
        "its text, picture and attribute vectors and who interacted with it"
        if has_attention(ctx.model)
        else "the model's item vectors"
    )
    grouped = column is not None and frame[column].str.startswith("other (").any()
    coarse = column is not None and not frame[column].str.contains(BREADCRUMB, regex=False).any()
    coarse = coarse and bool(ctx.aligned[column].astype("string").str.contains(BREADCRUMB, regex=False).any())
    named = md_text(column) + (" (its first level)" if coarse else "") if column else ""
    st.caption(
        f"Each dot is an item, placed by the first two principal components of its vector ({source}); "
        "close items look alike to the model. Select points (click, box or lasso) to see their pictures."
        + (
            f" Coloured by {named}: its {MAP_COLOURS - 1} largest values, the rest in grey."
            if grouped
            else (f" Coloured by {named}." if column else "")
        )
    )
    fig = px.scatter(
        frame,
        x="x",
        y="y",
        color=column,
        hover_name="title",
        custom_data=["item_id"],
        color_discrete_sequence=MAP_PALETTE,
        # the largest groups first in the legend, the "other" group last and grey
        category_orders={column: map_legend_order(frame[column])} if column else None,
        color_discrete_map={name: OTHER_COLOUR for name in frame[column].unique() if name.startswith("other (")}
        if column
        else None,
        labels={"x": "component 1", "y": "component 2"},
    )
    fig.update_traces(marker=dict(size=7, opacity=0.8, line=dict(width=0)))
    style_figure(fig, height=520)
    event = chart(
        fig, key="att_map", on_select="rerun", selection_mode=("points", "box", "lasso"), config={"displaylogo": False}
    )
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
        st.caption(
            f"{len(selected)} item{'s' if len(selected) > 1 else ''} selected"
            + (" — showing 12" if len(selected) > 12 else "")
        )
        gallery(
            [
                {
                    "picture": ctx.picture(i),
                    "title": ctx.title(i),
                    "caption": ctx.attributes_line(i),
                }
                for i in selected[:12]
            ],
            per_row=6,
        )


def per_user_weight_runs(runs: list) -> list:
    """The runs whose model learns weights per user (fusion with attention), newest first as listed."""
    return [r for r in runs if r.model == "fusion" and r.fusion_option("fusion") in (None, "attention")]


def main() -> None:
    page_header(
        "Attention",
        "How much the fusion model listens to behaviour, text, pictures and attributes — for "
        "every user, category and item.",
    )
    damaged_models_notice()
    runs = model_runs()
    if not runs:
        empty_state(no_model_message("its attention weights"), page="train", label="Go to the Train page")
        return
    run = run_picker("Model", "att_run", runs, prefer=lambda r: r in per_user_weight_runs([r]))
    ctx = usable_context(run)
    if ctx is None:
        return
    model = ctx.model
    # a run with per-user weights to offer when this one has none: on the same dataset first
    learned = sorted(per_user_weight_runs(runs), key=lambda r: r.dataset != run.dataset) if run else []

    def open_learned() -> None:
        # a button label is Markdown: the dataset's name (underscores) is escaped
        if learned and st.button(f"Open {md_text(run_label(learned[0]))}", key="att_open_learned"):
            open_run(learned[0].run_id)
            st.rerun()

    if not has_attention(model):
        fusion = (getattr(model, "config", {}) or {}).get("fusion")
        what = (
            "fusion model with concat fusion (an MLP, no weights per modality)"
            if fusion == "concat"
            else f"{model_name(model.name)} model"
        )
        st.info(
            f"**Attention exists only for the fusion model** (attention, mean or item-gate fusion). This run "
            f"trained a {what}, so there are no modality weights to show. Pick a fusion run above, or train one "
            "on the Train page.",
            icon=":material/info:",
        )
        open_learned()
        st.page_link("app_pages/train.py", label="Train a fusion model", icon=":material/arrow_forward:")
        embedding_map(ctx)
        return
    if run is not None and run not in learned:  # mean or item-gate fusion: weights, but not per user
        fixed = (
            "item-gate fusion learns weights per item, the same for every user"
            if run.fusion_option("fusion") == "item_gate"
            else "mean fusion gives every user the same fixed weights (equal over what an item has)"
        )
        st.info(
            f"**No per-user weights in this run**: {fixed}. The per-user views below need a fusion run with "
            "attention (the default)" + (", such as the one this button opens." if learned else "."),
            icon=":material/info:",
        )
        open_learned()
    modalities = list(model.modalities)
    weights = weights_frame(ctx.run_dir, str(ctx.stamp), ctx)
    if weights.empty:
        empty_state("This model has no users to show weights for.")
        return
    st.caption(
        "A user's weights are what the model multiplies each modality's score by when it ranks items for "
        "that user: they come from how coherent the user's own history is in each modality, pulled toward "
        "the average user's for short histories. On each item, each content modality's weight is then "
        "scaled by a learned factor of how often the item was chosen, so an item's weights can differ from the "
        "user's; an item lacking a modality (no picture) spreads that weight over the modalities it has. "
        + tilt_sentence(model.popularity_tilt())
    )
    presence = model.item_presence() if hasattr(model, "item_presence") else None
    frame = attention_frame(ctx.run_dir, str(ctx.stamp), TOP_K, ctx)
    distribution(weights, modalities, presence, frame)
    dominant_groups(ctx, weights, modalities)
    ground_truth(ctx, weights, modalities)
    left, right = st.columns(2)
    with left:
        category_heatmap(ctx, frame, modalities)
    with right:
        history_length(weights, modalities)
    st.markdown("#### :material/person: One user")
    user_heatmap(ctx, weights, modalities)
    embedding_map(ctx)


run_page(main)
