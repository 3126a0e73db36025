"""Recommendations: a user's history and their top-K items, each with the evidence behind it; or, for a new
visitor known only by a few items picked here, what the model recommends from them at once (no retraining)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import (
    MODALITY_COLOURS,
    MODALITY_NAMES,
    RunContext,
    chart,
    damaged_models_notice,
    empty_state,
    forgotten_users,
    gallery,
    label_separators,
    md_text,
    model_runs,
    no_model_message,
    page_header,
    run_page,
    run_picker,
    short_text,
    show_error,
    style_figure,
    usable_context,
)
from recsys.explain import explain
from recsys.explain.coldstart import recommend_for_history
from recsys.explain.explainer import NEW_VISITOR
from recsys.models.rerank import filter_mask, group_membership

MAX_USER_OPTIONS = 5000
MAX_ITEM_OPTIONS = 5000  # the new visitor's item picker lists the most chosen items first
MAX_LIKED = 20
KNOWN_USER_MODE, VISITOR_MODE = "A user in the data", "A new visitor"
# a card's title is cut at this many characters (about four lines of a five-card row)
CARD_TITLE_CHARACTERS = 90


def stars(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(value):
        return ""
    if value > 5:
        return f"rating {value:g}"
    # halves round up (round() rounds them to even: 4.5 and 3.5 both showed four stars, 2.5 two), and a rating
    # that is not whole is also written out
    full = int(np.floor(max(value, 0) + 0.5))
    return "★" * full + "☆" * (5 - full) + ("" if float(value).is_integer() else f" {value:g}")


def history_sort(ctx: RunContext) -> tuple[str | None, str | None]:
    """The rating and the timestamp column a history is sorted by (best rated, then latest, first)."""
    data = ctx.data
    stamp = next((c for c, r in data.schema.get("interactions", {}).items() if r == "timestamp"), None)
    return data.rating_column, stamp


def user_history(ctx: RunContext, user: str) -> pd.DataFrame:
    data = ctx.data
    rows = ctx.user_rows.get(user)
    if rows is None:
        return data.interactions.head(0)
    history = data.interactions.iloc[rows]
    order = [column for column in history_sort(ctx) if column]
    return history.sort_values(order, ascending=False) if order else history


def history_order(ctx: RunContext) -> str:
    """How :func:`user_history` orders a history, for the caption above it ("" when it keeps the file's order)."""
    rating, stamp = history_sort(ctx)
    if rating:
        return ", best rated first" + (" (then latest)" if stamp else "")
    return ", latest first" if stamp else ""


def whole_history_table(ctx: RunContext, distinct: pd.DataFrame, times: pd.Series) -> None:
    """Every item of a history (``distinct``: one row per item, in the history's order): title, id, rating, how
    many times. A table, not Markdown; the cells go through spreadsheet_safe, as its download button exports."""
    from recsys.export import spreadsheet_safe

    ids = distinct["item_id"].astype(str)
    frame = pd.DataFrame({"Title": [ctx.title(i) for i in ids], "Item": ids.to_numpy()})
    if ctx.data.rating_column:
        frame["Rating"] = distinct[ctx.data.rating_column].to_numpy()
    frame["Times"] = [int(times.get(i, 1)) for i in ids]
    st.dataframe(spreadsheet_safe(frame), hide_index=True, width="stretch")


def modality_chart(explanation: dict) -> go.Figure | None:
    """Two panels per modality: its attention weight, and its contribution to the score (can be negative)."""
    from plotly.subplots import make_subplots

    rows = explanation.get("modalities") or []
    if not explanation.get("has_attention") or not rows:
        return None
    rows = rows[::-1]
    names = [MODALITY_NAMES.get(m["modality"], m["modality"]) + ("" if m["present"] else " (missing)") for m in rows]
    colours = [MODALITY_COLOURS.get(m["modality"], "#868E96") for m in rows]
    attention = [m["attention"] for m in rows]
    shares = [m["share"] for m in rows]
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.08,
        subplot_titles=("attention weight", "contribution to the score"),
    )
    fig.add_trace(
        go.Bar(
            y=names,
            x=attention,
            orientation="h",
            marker_color=colours,
            # whole percentages that add up to 100 (rounded one by one, 33.5/33.5/33 would read 101 %)
            # popularity is added by history length, not by the gate: no weight to show
            text=[
                f"{m.get('attention_pct', round(100 * m['attention']))}%" if m.get("weighted", True) else "no weight"
                for m in rows
            ],
            textposition="outside",
            textangle=0,  # a narrow bar's label stays level beside it (auto would turn it sideways inside)
            cliponaxis=False,
            hovertemplate="%{y}: attention %{x:.1%}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.update_xaxes(tickformat=".0%", range=[0, 1.15], tickvals=[0, 0.5, 1], row=1, col=1)
    fig.add_trace(
        go.Bar(
            y=names,
            x=shares,
            orientation="h",
            marker_color=["#4C6EF5" if v >= 0 else "#FA5252" for v in shares],
            text=[f"{v:+.2f}" if abs(v) >= 0.005 else "0" for v in shares],
            textposition="auto",
            textangle=0,
            cliponaxis=False,
            hovertemplate="%{y}: %{x:+.3f} of the score<extra></extra>",
        ),
        row=1,
        col=2,
    )
    low, high = min(0.0, min(shares)), max(0.0, max(shares))
    pad = 0.1 * (high - low or 1.0)
    fig.update_xaxes(range=[low - pad, high + pad], zeroline=True, zerolinecolor="#868E96", row=1, col=2)
    fig.update_annotations(font_size=12)
    style_figure(fig, height=60 + 40 * len(rows), legend=False)
    fig.update_layout(margin=dict(t=30))
    return fig


MODALITY_WORDS = {"attributes": "attributes", "text": "words", "image": "picture's looks"}


def evidence_lines(explanation: dict) -> list[str]:
    """The shared evidence of an explanation, one short line each; evidence of a modality whose part of the score
    is not positive says so (a shared "Scarf" beside an attributes bar of -1.81 read as a contradiction)."""
    evidence = explanation.get("evidence") or {}
    against = {
        part["modality"]
        for part in explanation.get("modalities") or []
        if isinstance(part.get("share"), int | float) and part["share"] <= 0 and part.get("present", True)
    }
    # a visitor has no history: what they like is the items picked for them
    visitor = explanation.get("user_id") == NEW_VISITOR
    said: set[str] = set()

    def lowered(modality: str) -> str:
        # said once per modality, on its first line: three lines each ending the same way read as a stutter
        if modality not in against or modality in said:
            return ""
        said.add(modality)
        return f" (though its {MODALITY_WORDS[modality]} lower its score overall)"

    lines = []
    for label in evidence.get("labels") or []:
        shared = label.get("shared_values") or []
        if shared:
            values = ", ".join(f"“{md_text(v)}”" for v in shared[:3])
            others = label.get("shared_with") or []
            also = (
                f"“{md_text(others[0])}”" + (f" and {len(others) - 1} more" if len(others) > 1 else "")
                if others
                else ""
            )
            lines.append(
                f"**{md_text(label['column_label'])}** {values}"
                + (f" — also on {also}" if also else "")
                + lowered("attributes")
            )
        else:
            top = (label.get("history_counts") or [{}])[0]
            if top.get("count"):
                lines.append(
                    f"**{md_text(label['column_label'])}** “{md_text(top['value'])}” — {top['count']} of the "
                    f"{label['history_size']} {'liked items' if visitor else 'items in the history'}"
                    + lowered("attributes")
                )
    words = evidence.get("words") or []
    if words:
        lines.append(
            "**words** "
            + ", ".join(f"“{md_text(w['word'])}”" for w in words[:5])
            + " — also in the texts above"
            + lowered("text")
        )
    price = evidence.get("price") or {}
    # shared evidence only: a band none of the history is in says nothing about why (it stays in the JSON)
    if price.get("band") and price.get("history_share_pct", 0) > 0:
        lines.append(
            f"**price band** {md_text(price['band'])} — {price.get('history_share_pct', 0)}% of the "
            f"{'liked items are' if visitor else 'history is'} in it" + lowered("attributes")
        )
    visual = evidence.get("visual") or {}
    if visual.get("percentile") is not None:
        lines.append(
            f"**picture** looks like “{md_text(visual['title'])}” (closer than {visual['percentile']}% of the "
            "catalogue)" + lowered("image")
        )
    popularity = evidence.get("popularity") or {}
    if popularity:
        lines.append(
            "**popularity** no one has chosen it yet"
            if popularity.get("new_item")
            else f"**popularity** chosen by {popularity.get('count', 0):,} "
            f"user{'' if popularity.get('count', 0) == 1 else 's'}: more popular than "
            f"{popularity.get('percentile', 0)}% of the catalogue"
        )
    return lines


def explanation_body(ctx: RunContext, explanation: dict) -> None:
    if explanation.get("error") is not None:
        show_error("The explanation could not be computed", explanation["error"])
        return
    st.markdown(md_text(explanation["sentence"]))
    visitor = explanation.get("user_id") == NEW_VISITOR
    fig = modality_chart(explanation)
    if fig is not None:
        # the chart first, in a line; how to read it in detail at the end, for whoever wants it
        chart(fig, width=560, config={"displayModeBar": False})
        st.caption(
            f"How much each modality weighs for this {'visitor' if visitor else 'user'} and item (left; 100 % in "
            f"all) and what each adds to the score (right; {explanation['score']:.2f} in total, a red bar counts "
            "against the item). More under “Reading the chart” below."
        )
    else:
        st.caption(
            f"This model ({explanation.get('model')}) has no modality attention: the evidence comes from the "
            "user's history."
        )
    history = explanation.get("history") or []
    if history:
        st.markdown("**The liked items behind it**" if visitor else "**The history items behind it**")
        st.caption(
            f"“adds”: how much lower the score would be without that one item among the "
            f"{'liked items' if visitor else 'history'}. Each item is taken out on its own, so the amounts "
            "overlap and need not add up to the total."
            + (
                " The model counts every interaction as interest, whatever its rating, so an item the user rated "
                "low can still add to the score; the sentence above names only items they did not rate low."
                if any(item.get("rated_low") for item in history)
                else ""
            )
        )
        cols = st.columns(3)
        for col, item in zip(cols, history):
            with col:
                st.image(ctx.picture(item["item_id"]), width=96)
                rating = f" · {stars(item['rating'])}" if item.get("rating") is not None else ""
                low = " (rated low)" if item.get("rated_low") else ""
                named = md_text(item["title"]) + (
                    f" ({md_text(item['item_id'])})" if str(item["title"]) != str(item["item_id"]) else ""
                )
                st.caption(f"{named} · adds {item['contribution']:+.2f}{rating}{low}")
    lines = evidence_lines(explanation)
    if lines:
        st.markdown("**Shared evidence**")
        st.markdown("\n".join(f"- {line}" for line in lines))
    if fig is not None:
        st.markdown("**Reading the chart**")
        st.caption(
            (
                "The weights (left) are the visitor's, read from the items picked for them"
                if visitor
                else "The weights (left) are the user's own (the Attention page's)"
            )
            + ", adjusted for the item by how often it was chosen — a rarely chosen item's co-occurrence score says"
            " little, so for it the model leans on the modalities that hold up (a learned adjustment, the same "
            "for every user). What each modality adds (right) is what the score loses without it, averaged over "
            "which other modalities the item keeps (its Shapley value). The percentages in the sentence above are"
            " of the right-hand side: each modality's part of the positive contributions. A large weight is not a"
            " large push: the weight multiplies how this item scores in that modality against the user's other "
            "candidates, so a heavily weighted modality in which the item is below average counts against it."
            + (
                " Popularity is not a modality: the model adds it to every user's scores, more for a short "
                "history, and no attention weight scales it."
                if any(not m.get("weighted", True) for m in explanation.get("modalities") or [])
                else ""
            )
        )


def ranked_items(
    ctx: RunContext,
    user: str | None,
    k: int,
    diversity: float,
    exclude_seen: bool,
    mask: np.ndarray | None,
    one_per_product: bool = True,
    exposure: tuple[np.ndarray, float, float] | None = None,
    liked: list[str] | None = None,
) -> list[tuple[str, float]]:
    """Top-``k`` (item_id, score) from the engine: seen items and filters masked, at most one variant of a
    product (``one_per_product``), MMR at ``diversity``, then ``exposure = (membership, target, strength)``
    (the engine's exposure-aware re-ranking of this one list). Items a later import of the dataset dropped are
    never recommended. With ``liked``: for a new visitor known by those items (``user`` None), through the
    model's new-user path; ``exclude_seen`` then hides the liked items."""
    if ctx.in_catalogue is not None:
        mask = ctx.in_catalogue if mask is None else mask & ctx.in_catalogue
    if liked is not None:
        return recommend_for_history(
            ctx.model,
            liked,
            k=k,
            exclude=None if exclude_seen else [],
            filters=mask,
            diversity=diversity,
            item_vectors=ctx.vectors,
            groups=ctx.variant_groups if one_per_product else None,
            exposure=exposure,
        )
    assert user is not None, "a known user, or the visitor's liked items"
    return ctx.model.recommend(
        user,
        k=k,
        exclude_seen=exclude_seen,
        filters=mask,
        diversity=diversity,
        item_vectors=ctx.vectors,
        groups=ctx.variant_groups if one_per_product else None,
        exposure=exposure,
    )


def group_columns(ctx: RunContext) -> list[str]:
    """Item columns that group items (categorical or multi-label), present in the catalogue."""
    return [c for c, r in ctx.data.roles.items() if r in ("categorical", "multi_label") and c in ctx.aligned.columns]


def group_values(ctx: RunContext, column: str) -> list[str]:
    """The column's values (labels, for a multi-label column) over the model's items, most frequent first."""
    values = ctx.aligned[column].astype("string").fillna("")
    if ctx.data.roles.get(column) == "multi_label":
        values = values.str.split(ctx.data.separator, regex=False).explode().str.strip()
    return values[values != ""].value_counts().index.tolist()


def exposure_controls(ctx: RunContext) -> dict | None:
    """The "Exposure" expander: an item group, the strength and the target share (default: the group's share
    of the catalogue). None when the catalogue has no group column; strength 0 is off."""
    columns = group_columns(ctx)
    if not columns:
        return None
    with st.expander("Exposure", icon=":material/balance:"):
        row = st.columns([1, 2, 1, 1], vertical_alignment="bottom")
        column = row[0].selectbox(
            "Item column", columns, key="rec_exposure_column", format_func=lambda c: c.replace("_", " ").capitalize()
        )
        values = group_values(ctx, column)
        if not values:
            st.caption("This column has no values in the catalogue.")
            return None
        value = row[1].selectbox(
            "Group",
            values,
            key=f"rec_exposure_value_{column}",
            format_func=lambda v: v if len(v) <= 80 else v[:79] + "…",
        )
        membership = group_membership(
            ctx.aligned, column, value, ctx.data.roles.get(column) == "multi_label", ctx.data.separator
        )
        share = float(membership.mean())
        strength = row[2].slider(
            "Strength",
            0.0,
            1.0,
            0.0,
            0.05,
            key="rec_exposure_strength",
            help="Moves the group's share of the list toward the target: 0 = off (pure "
            "relevance), 1 = follow the target as closely as the candidates allow.",
        )
        target = row[3].number_input(
            "Target share",
            0.0,
            1.0,
            round(share, 4),
            0.01,
            format="%.3f",
            key=f"rec_exposure_target_{column}_{value}",
            help="The wanted share of the list; by default the group's share of the catalogue.",
        )
        st.caption(
            f"“{md_text(value)}” is {share:.1%} of the catalogue ({md_text(column)}); target "
            f"{target:.1%} of the list. A single list is balanced to whole places: a target below half a "
            "place per list is met only over many users (batch export)."
        )
    return {
        "column": column,
        "value": value,
        "membership": membership,
        "target": float(target),
        "strength": float(strength),
        "catalogue_share": share,
    }


def close_explanations_on_a_new_list(signature: tuple) -> None:
    """Another list (run, user or visitor, items): the "Why this?" popovers opened on the last one close."""
    if st.session_state.get("rec_signature") != signature:
        for key in [key for key in st.session_state if str(key).startswith("rec_why_")]:
            del st.session_state[key]
        st.session_state["rec_signature"] = signature


def explanation_cache() -> dict:
    """This session's explanations, keyed by (run, model version, user, item)."""
    return st.session_state.setdefault("rec_explained", {})


def explained(
    ctx: RunContext, user: str | None, item_id: str, cache: dict | None = None, liked: tuple[str, ...] | None = None
) -> dict:
    """The engine's explanation of (user, item), computed once per session and model; with ``liked``, of the
    item for a new visitor known by those items (``user`` is then None). ``cache``: the session's
    :func:`explanation_cache`, taken beforehand by code that runs outside the page's script (the CSV download
    is built in the server's thread, where the session state cannot be read)."""
    cache = explanation_cache() if cache is None else cache
    key = (ctx.run_dir, ctx.stamp, user, item_id, liked)
    if key not in cache:
        if len(cache) > 100:
            cache.clear()
        try:
            cache[key] = explain(ctx.model, user, item_id, context=ctx.explain_context, visitor_history=liked).to_dict()
        except Exception as exc:  # the card stays; its "Why this?" says what went wrong
            cache[key] = {"error": exc}
    return cache[key]


def card(
    ctx: RunContext, user: str | None, rank: int, item_id: str, score: float, liked: tuple[str, ...] | None = None
) -> None:
    with st.container(border=True, height="stretch"):
        st.image(ctx.picture(item_id), width="stretch")
        # a title a paragraph long would stretch every card of its row: cut, whole in the tooltip (as text)
        title = ctx.title(item_id)
        shown = short_text(title, CARD_TITLE_CHARACTERS)
        st.markdown(f"**{rank}. {md_text(shown)}**", help=md_text(title) if shown != title else None)
        caption = ctx.attributes_line(item_id)
        st.caption(md_text(caption or item_id))
        # the id tells apart items that share a title (variants, re-listings) and matches the CSV and the CLI
        st.caption(f"{md_text(item_id)} · score {score:.3f}" if caption else f"score {score:.3f}")
        if liked is not None and item_id in liked:  # "Hide liked items" off: the visitor's own pick, said so
            st.caption(":material/favorite: one of the visitor's liked items")
        # cards of a row share one height: the button sits at the bottom whatever the title's length (the
        # fragment holds the button alone: around the whole card, its own box kept the card from stretching)
        st.space("stretch")
        why_this(ctx, user, rank, item_id, liked)


# a fragment: opening a card's "Why this?" reruns that button alone, not the page's scoring and filters
@st.fragment
def why_this(ctx: RunContext, user: str | None, rank: int, item_id: str, liked: tuple[str, ...] | None) -> None:
    # the explanation is computed only when its popover opens: the list itself stays fast
    with st.popover(
        "Why this?", icon=":material/lightbulb:", width="stretch", key=f"rec_why_{rank}", on_change="rerun"
    ) as popover:
        if popover.open:
            explanation_body(ctx, explained(ctx, user, item_id, liked=liked))


def csv_export(
    ctx: RunContext,
    user: str | None,
    ranked: list[tuple[str, float]],
    cache: dict,
    liked: tuple[str, ...] | None = None,
) -> bytes:
    """The list with attributes, each modality's weight and contribution to the score, and the explanation
    sentence (computed on download, in the server's thread: no Streamlit call in here; ``cache`` is the
    session's :func:`explanation_cache`)."""
    rows = []
    for rank, (item_id, score) in enumerate(ranked, start=1):
        explanation = explained(ctx, user, item_id, cache, liked)
        row = {"rank": rank, "item_id": item_id, "title": ctx.title(item_id), "score": round(score, 5)}
        for column in ctx.card_columns + ([ctx.price_column] if ctx.price_column else []):
            row[column] = ctx.items_by_id[column].get(item_id, "")
        for part in explanation.get("modalities") or []:
            # the weight the user's gate gives the modality for this item (0-1), and its part of the score
            # (the parts add up to the score; negative when the modality counts against the item)
            row[f"{part['modality']} weight"] = round(part["attention"], 4)
            row[f"{part['modality']} contribution"] = round(part["share"], 4)
        row["why"] = explanation.get("sentence", "")
        rows.append(row)
    from recsys.export import csv_bytes

    return csv_bytes(pd.DataFrame(rows))


def filters(ctx: RunContext) -> tuple[dict, dict, bool]:
    """The category selections, the price range (only when narrowed) and whether items without a price stay."""
    selections: dict[str, list[str]] = {}
    ranges: dict[str, tuple[float, float]] = {}
    keep_unpriced = False
    columns = ctx.card_columns
    if not columns and not ctx.price_column:
        return selections, ranges, keep_unpriced
    cols = st.columns(len(columns) + (1 if ctx.price_column else 0))
    for col, column in zip(cols, columns):
        values = ctx.items_by_id[column].astype("string").fillna("")
        if ctx.data.roles.get(column) == "multi_label":
            values = values.str.split(ctx.data.separator, regex=False).explode().str.strip()
        options = values[values != ""].value_counts().index.tolist()
        selections[column] = col.multiselect(
            column.replace("_", " ").capitalize(), options, key=f"rec_filter_{column}", placeholder="any"
        )
    if ctx.price_column:
        all_prices = pd.to_numeric(ctx.items_by_id[ctx.price_column], errors="coerce")
        prices = all_prices.dropna()
        if len(prices) and prices.min() < prices.max():
            steps = price_steps(prices.to_numpy())
            low, high = steps[0], steps[-1]
            unit = ctx.price_unit
            chosen = cols[-1].select_slider(
                ctx.price_column.replace("_", " ").capitalize(),
                options=steps,
                value=(low, high),
                format_func=lambda value: price_label(value, unit, ctx.price_style),
                key=f"rec_price_{ctx.run_id}",
                help="Round steps: 1-2-5 (10, 20, 50, 100, ...) when prices spread over orders of magnitude, "
                "even ones (10, 20, 30, ...) otherwise.",
            )
            if chosen != (low, high):
                ranges[ctx.price_column] = chosen
                unpriced = int(all_prices.isna().sum())
                if unpriced:  # a range says nothing about them: the user decides, and sees how many are at stake
                    keep_unpriced = cols[-1].checkbox(
                        f"Also items without a price ({unpriced:,})",
                        False,
                        key=f"rec_unpriced_{ctx.run_id}",
                        help="The price range hides every item whose price is missing; tick to keep them.",
                    )
    return selections, ranges, keep_unpriced


def price_steps(prices: np.ndarray) -> list[float]:
    """The price filter's stops for a catalogue's ``prices``: the lowest and highest (rounded out to whole
    units) and the 1-2-5 series between them (..., 10, 20, 50, 100, ...). A linear slider over $10-1,754
    left a $50-100 range a few pixels wide; prices spread over orders of magnitude, and so do these stops.
    The series starts above the smallest positive price (a free item does not start it at cents), and a
    stop within a fifth of either end is left out (no "9, 10" at the start). A narrow range gets even steps."""
    prices = np.asarray(prices, dtype=np.float64)
    low, high = float(np.floor(prices.min())), float(np.ceil(prices.max()))
    if high <= low:
        high = low + 1.0
    positive = prices[prices > 0]
    smallest = float(positive.min()) if len(positive) else 1.0
    stops = {low, high}
    magnitude = 10.0 ** np.floor(np.log10(smallest))
    while magnitude <= high:
        for digit in (1.0, 2.0, 5.0):
            value = round(digit * magnitude, 2)
            if max(low * 1.2, smallest) < value and value * 1.2 < high:
                stops.add(value)
        magnitude *= 10.0
    # a narrow range (12-14), or one within less than two orders of magnitude (4-180: the 1-2-5 stops left nothing
    # between 100 and 180): even steps of a round size instead, at most 20 of them
    if len(stops) < 6 or high < 50 * smallest:
        step = next(d * 10.0**e for e in range(-2, 12) for d in (1.0, 2.0, 5.0) if (high - low) / (d * 10.0**e) <= 20)
        start = np.floor(low / step) * step + step  # multiples of the step: 10, 20, 30 (not 14, 24)
        stops = {low, high} | {float(round(v, 2)) for v in np.arange(start, high, step)}
    return sorted(stops)


def price_label(value: float, sign: str = "", style: str | None = None) -> str:
    """A price stop as the slider shows it: whole units without decimals, others with cents; with the
    currency sign, the file's way ("$1,299", "1.299 €")."""
    from recsys.data.stats import format_amount

    return format_amount(value, sign, style, decimals=0 if float(value).is_integer() else 2)


def list_heading(asked: int, found: int) -> str:
    """ "Top 10", or "Top 5 (of 10 asked: only 5 items pass the filters)" when fewer came back; none: "Top 10"
    above the empty state, which says why."""
    if 0 < found < asked:
        passes = "items pass" if found != 1 else "item passes"
        return f"Top {found} (of {asked} asked: only {found} {passes} the filters)"
    return f"Top {asked}"


def list_controls(
    ctx: RunContext, visitor: bool = False
) -> tuple[int, float, bool, bool, np.ndarray | None, dict | None]:
    """The list's controls (how many, diversity, hide the history, one per product, filters, exposure):
    ``(k, diversity, exclude_history, one_per_product, keep-mask or None, exposure or None)``."""
    with st.container(border=True):
        row = st.columns([1, 2, 1, 1], vertical_alignment="center")
        k = row[0].slider("How many", 5, 40, 10, 5, key="rec_k")
        diversity = row[1].slider(
            "Diversity",
            0.0,
            1.0,
            0.0,
            0.05,
            key="rec_diversity",
            help="Re-ranks the list for variety (maximal marginal relevance over item vectors): "
            "0 = pure relevance, higher = fewer look-alikes.",
        )
        exclude_seen = row[2].toggle(
            "Hide liked items" if visitor else "Hide seen items",
            True,
            key="rec_exclude_seen",
            help="Leave out the items the visitor likes."
            if visitor
            else "Leave out the items already in the user's history.",
        )
        one_per_product = row[3].toggle(
            "One per product",
            True,
            key="rec_one_per_product",
            help="Near-duplicate guard: at most one item per product title (colour and "
            "size variants of one article count as one; the best-scored stays). With the items "
            + ("the visitor likes" if visitor else "already seen")
            + " hidden, their other versions stay out too.",
        )
        selections, ranges, keep_unpriced = filters(ctx)
        exposure = exposure_controls(ctx)
    mask = None
    if any(selections.values()) or ranges:
        price = None
        if ranges:
            column, (low, high) = next(iter(ranges.items()))
            price = (column, low, high)
        multi = [c for c, r in ctx.data.roles.items() if r == "multi_label"]
        mask = filter_mask(
            ctx.aligned,
            categories=selections,
            price=price,
            multi_label_columns=multi,
            separator=ctx.data.separator,
            keep_unpriced=keep_unpriced,
        )
    return k, diversity, exclude_seen, one_per_product, mask, exposure


def cards(
    ctx: RunContext,
    user: str | None,
    ranked: list[tuple[str, float]],
    file_name: str,
    liked: tuple[str, ...] | None = None,
    reranked: bool = False,
) -> None:
    """The list as rows of cards, each with its "Why this?", and the list as a CSV download. ``reranked``: the
    order also weighs variety or an exposure target (a lower score can come first)."""
    whom = "user" if liked is None else "visitor"
    order = (
        f"the model's score for this {whom}; the order also weighs the re-ranking above, so a lower score can "
        "come first."
        if reranked
        else f"what ranks it for this {whom}: higher comes first."
    )
    off_sale = int((~ctx.model.for_sale()).sum())
    st.caption(
        f"Each card's score is {order} Scores compare the items of one list; they are not probabilities and do "
        "not compare across users or models."
        + (
            f" {off_sale:,} {'item' if off_sale == 1 else 'items'} the catalogue marks as not for sale (drafts, "
            f"archived, sold out) {'is' if off_sale == 1 else 'are'} never offered."
            if off_sale
            else ""
        )
    )
    per_row = 5
    for start in range(0, len(ranked), per_row):
        cols = st.columns(per_row)
        for offset, (col, (item_id, score)) in enumerate(zip(cols, ranked[start : start + per_row])):
            with col:
                card(ctx, user, start + offset + 1, item_id, score, liked)
    cache = explanation_cache()  # taken now: the CSV is built outside this script, when the button is clicked
    st.download_button(
        "Download this list (CSV)",
        lambda: csv_export(ctx, user, ranked, cache, liked),
        file_name=file_name,
        mime="text/csv",
        icon=":material/download:",
        key="rec_download",
        help="With each item's modality shares and explanation (computed now, which takes a moment).",
    )


def item_options(ctx: RunContext, picked: list[str]) -> list[str]:
    """The new visitor's item picker: the catalogue's items most chosen first (the ones a visitor is likeliest
    to know), at most ``MAX_ITEM_OPTIONS``, and the items already picked."""
    counts = np.asarray(ctx.explain_context.counts)
    order = np.argsort(-counts, kind="stable")
    if ctx.in_catalogue is not None:
        order = order[ctx.in_catalogue[order]]
    ids = [str(ctx.model.item_ids[i]) for i in order[:MAX_ITEM_OPTIONS]]
    listed = set(ids)
    return [i for i in picked if i not in listed] + ids


def item_label(ctx: RunContext, item_id: str) -> str:
    """ "Title · maker · id" (the picker searches its labels: typing an author's or a brand's name finds their
    items); the maker is left out where the item has none."""
    title = ctx.title(item_id)
    label = short_text(title, 80)
    if ctx.not_for_sale(item_id):
        # a visitor may well like a product the shop has since archived or sold out: it stays pickable (it
        # says what they like), marked so it is not taken for something the list could offer
        label += " (not for sale)"
    maker = ctx.maker_column
    value = ctx.items_by_id.at[item_id, maker] if maker and item_id in ctx.items_by_id.index else None
    if value is not None and not pd.isna(value) and str(value).strip():
        separator = label_separators(ctx.data).get(maker)
        names = [v.strip() for v in str(value).split(separator)] if separator else [str(value).strip()]
        label += f" · {short_text(', '.join(n for n in names if n), 40)}"
    return label if title == item_id else f"{label} · {item_id}"


def reranking_notes(ctx: RunContext, ranked: list[tuple[str, float]], diversity: float, exposure: dict | None) -> bool:
    """Say how the list was re-ranked (variety, an exposure target and the share it reached); True if it was."""
    if diversity > 0:
        st.caption(f"Re-ranked for variety (diversity {diversity:.2f}).")
    steer = exposure is not None and exposure["strength"] > 0
    if exposure is not None and steer and ranked:
        positions = ctx.aligned.index.get_indexer([item_id for item_id, _ in ranked])
        in_list = float(exposure["membership"][positions[positions >= 0]].sum() / len(ranked))
        st.caption(
            f"Exposure: “{md_text(exposure['value'])}” ({md_text(exposure['column'])}) is {in_list:.1%} of "
            f"this list — target {exposure['target']:.1%} (catalogue share {exposure['catalogue_share']:.1%}, "
            f"strength {exposure['strength']:.2f})."
        )
    return diversity > 0 or steer


def popularity_note(ctx: RunContext, liked: list[str], ranked: list[tuple[str, float]]) -> None:
    """For a visitor whose list is mostly popularity (a history of one or two items, which the model trusts
    little): say so, or the same bestsellers on every visitor's list look like the page ignoring the picks."""
    from recsys.explain.coldstart import popularity_share

    share = popularity_share(ctx.model, liked, [item for item, _ in ranked], [score for _, score in ranked])
    if share is not None and share >= 0.5:
        n = len(liked)
        st.caption(
            f"Popularity makes up {share:.0%} of these scores: the model trusts a history of {n} item"
            f"{'s' if n != 1 else ''} little, and leans on what most people choose. Each liked item adds its own "
            "evidence (“Why this?”); pick more to see the list follow them."
        )


def visitor_page(ctx: RunContext) -> None:
    """Recommendations for a visitor the model has never seen, from the items picked for them."""
    if "rec_liked" not in st.session_state and st.session_state.get("rec_liked_kept"):
        st.session_state["rec_liked"] = st.session_state["rec_liked_kept"]
    known = set(str(i) for i in ctx.model.item_ids)
    picked = [i for i in st.session_state.get("rec_liked", []) if i in known]
    st.session_state["rec_liked"] = picked  # a pick from another run's catalogue is dropped, not kept silently
    liked = st.multiselect(
        "Items the visitor likes",
        item_options(ctx, picked),
        key="rec_liked",
        format_func=lambda i: item_label(ctx, i),
        max_selections=MAX_LIKED,
        placeholder=(
            f"Type to search the catalogue by title, {ctx.maker_column.replace('_', ' ').lower()} or id"
            if ctx.maker_column
            else "Type to search the catalogue by title or id"
        ),
        select_all=False,
        help=f"Up to {MAX_LIKED} items; the most chosen items are listed first.",
    )
    st.session_state["rec_liked_kept"] = list(liked)
    k, diversity, exclude_liked, one_per_product, mask, exposure = list_controls(ctx, visitor=True)
    if not liked:
        empty_state(
            "Pick one or more items the visitor likes: the model recommends from them at once, without retraining.",
            icon=":material/person_add:",
        )
        return
    liked_tuple = tuple(liked)
    steer = exposure is not None and exposure["strength"] > 0
    ranked = ranked_items(
        ctx,
        None,
        k,
        diversity,
        exclude_liked,
        mask,
        one_per_product,
        (exposure["membership"], exposure["target"], exposure["strength"]) if steer else None,
        liked=list(liked),
    )
    close_explanations_on_a_new_list((ctx.run_dir, liked_tuple, tuple(ranked)))
    st.markdown(f"#### :material/person_add: The visitor likes {len(liked)} item{'s' if len(liked) != 1 else ''}")
    gallery(
        [
            {
                "picture": ctx.picture(i),
                "title": ctx.title(i),
                "details": ctx.attributes_line(i),
                "caption": " · ".join(
                    p for p in (i if ctx.title(i) != i else "", "not for sale" if ctx.not_for_sale(i) else "") if p
                ),
            }
            for i in liked
        ],
        per_row=6,
    )
    st.markdown(f"#### :material/recommend: {list_heading(k, len(ranked))} for the visitor")
    if not ranked:
        empty_state(
            "No item passes these filters for this visitor — widen the filters above.",
            icon=":material/filter_alt_off:",
        )
        return
    st.caption("Scored through the model's new-user path: the same model, given only these items as a history.")
    reranked = reranking_notes(ctx, ranked, diversity, exposure)
    popularity_note(ctx, list(liked), ranked)
    cards(ctx, None, ranked, "recommendations-new-visitor.csv", liked_tuple, reranked=reranked)


def main() -> None:
    page_header("Recommendations", "What a trained model recommends to each user — and why.")
    damaged_models_notice()
    runs = model_runs()
    if not runs:
        empty_state(no_model_message("its recommendations"), page="train", label="Go to the Train page")
        return
    # the model's label is long (model, dataset, time, NDCG@20): its own wide column, the mode beside it
    top = st.columns([5, 3], vertical_alignment="bottom")
    with top[0]:
        run = run_picker("Model", "rec_run", runs)
    ctx = usable_context(run)
    if ctx is None:
        return
    # Streamlit drops a widget's value when another page is shown: the mode chosen comes back with the page
    # (the value goes in through the session state alone, never also as a default: Streamlit warns at both)
    if "rec_mode" not in st.session_state:
        st.session_state["rec_mode"] = st.session_state.get("rec_mode_kept") or KNOWN_USER_MODE
    mode = top[1].segmented_control(
        "Recommend for",
        [KNOWN_USER_MODE, VISITOR_MODE],
        required=True,
        key="rec_mode",
        help="A new visitor is known only by the items you pick for them: the model recommends from those at "
        "once, through the same path as the `recommend-new` command (no retraining).",
    )
    st.session_state["rec_mode_kept"] = mode
    if mode == VISITOR_MODE:
        visitor_page(ctx)
        return
    forgotten = forgotten_users(run, list(ctx.activity))
    if forgotten:
        st.warning(
            f"This run was trained before {len(forgotten)} user(s) were forgotten from its dataset: they are "
            "not listed here, but the model still holds them until the run is retrained (Experiments page).",
            icon=":material/privacy_tip:",
        )
    gone = set(ctx.gone_users) - forgotten
    if gone:
        st.caption(
            f"{len(gone):,} of this run's users are no longer in the dataset (imported again since): they are "
            "not listed."
        )
    forgotten = forgotten | gone
    options = [u for u in ctx.user_options if u not in forgotten][:MAX_USER_OPTIONS]
    # Streamlit drops a widget's value when another page is shown: the user chosen comes back with the page
    if "rec_user" not in st.session_state and st.session_state.get("rec_user_kept") is not None:
        st.session_state["rec_user"] = st.session_state["rec_user_kept"]
    if st.session_state.get("rec_user") not in ctx.activity or st.session_state.get("rec_user") in forgotten:
        st.session_state.pop("rec_user", None)
    elif st.session_state["rec_user"] not in options:
        options = [st.session_state["rec_user"], *options]
    user = st.columns([5, 3])[0].selectbox(
        "User",
        options,
        key="rec_user",
        format_func=ctx.user_option,
        help="Type to search. Users are listed most active first; the count is their training items.",
    )
    st.session_state["rec_user_kept"] = user
    k, diversity, exclude_seen, one_per_product, mask, exposure = list_controls(ctx)
    steer = exposure is not None and exposure["strength"] > 0
    ranked = ranked_items(
        ctx,
        user,
        k,
        diversity,
        exclude_seen,
        mask,
        one_per_product,
        (exposure["membership"], exposure["target"], exposure["strength"]) if steer else None,
    )
    close_explanations_on_a_new_list((ctx.run_dir, user, tuple(ranked)))

    history = user_history(ctx, user)
    st.markdown(f"#### :material/history: History of {md_text(user)}")
    rating = ctx.data.rating_column
    times = history["item_id"].astype(str).value_counts()
    # one card per item (its best-rated, latest interaction first): a repeat purchase took a second slot
    one_per_item = history.drop_duplicates("item_id")
    shown = one_per_item.head(12)
    distinct = len(one_per_item)
    st.caption(
        f"{len(history):,} interaction{'s' if len(history) != 1 else ''}"
        # the picker counts distinct items: say so when the same item was chosen more than once
        + (f" with {distinct:,} different item{'s' if distinct != 1 else ''}" if distinct != len(history) else "")
        + history_order(ctx)
        + (f" — showing {len(shown)}" if distinct > len(shown) else "")
        # the user picker counts what the model was trained on: say so when the current import differs (a
        # dataset imported again, or a run trained on a split)
        + (
            f". The model was trained on {known:,} item{'s' if known != 1 else ''} of this user."
            if (known := int(ctx.activity.get(user, 0))) != distinct
            else ""
        )
    )
    entries = []
    for item_id, value in zip(shown["item_id"].astype(str), shown[rating] if rating else [None] * len(shown)):
        title = ctx.title(item_id)
        # the id, as on the recommendation cards: it tells apart items that share a title
        repeated = int(times.get(item_id, 1))
        parts = (
            item_id if title != item_id else "",
            stars(value) if rating else "",
            f"×{repeated}" if repeated > 1 else "",
            "not for sale" if ctx.not_for_sale(item_id) else "",
        )
        entries.append(
            {
                "picture": ctx.picture(item_id),
                "title": title,
                # the same attributes as the recommendation cards below: the two read side by side
                "details": ctx.attributes_line(item_id),
                "caption": " · ".join(p for p in parts if p),
            }
        )
    gallery(entries, per_row=6)
    if distinct > len(shown):  # the cards show the first dozen; the whole history is one click away, as text
        with st.expander(f"All {distinct:,} items of this history"):
            whole_history_table(ctx, one_per_item, times)

    st.markdown(f"#### :material/recommend: {list_heading(k, len(ranked))} for {md_text(user)}")
    reranked = reranking_notes(ctx, ranked, diversity, exposure)
    if not ranked:
        empty_state(
            "No item passes these filters for this user — widen the filters above.", icon=":material/filter_alt_off:"
        )
        return
    cards(ctx, user, ranked, f"recommendations-{user}.csv", reranked=reranked)


run_page(main)
