"""Multimodal recommender studio — Streamlit entry point.

Run with ``streamlit run app.py``. Pages only lay out widgets and call into ``recsys``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages.common import demo_dataset_name, get_workspace, load_dataset_frames


def home() -> None:
    st.title("Multimodal recommender studio")
    st.write(
        "Bring a catalog — items with text, pictures and attributes — and a log of who rated or bought what. "
        "The studio learns recommendations from all of it and shows you *why* each item was picked."
    )
    workspace = get_workspace()
    demo = demo_dataset_name()
    datasets = workspace.list_datasets()
    active = st.selectbox("Dataset", [info.name for info in datasets],
                          index=[info.name for info in datasets].index(demo), key="home_dataset")
    info = next(i for i in datasets if i.name == active)
    counts = info.counts
    cols = st.columns(4)
    cols[0].metric("Users", f"{counts.get('users', 0):,}")
    cols[1].metric("Items", f"{counts.get('items', 0):,}")
    cols[2].metric("Interactions", f"{counts.get('interactions', 0):,}")
    cols[3].metric("Items with a picture", f"{counts.get('items_with_image', 0):,}")

    items, _, schema, root = load_dataset_frames(active, info.manifest.get("imported_at", ""))
    image_column = next((c for c, r in schema["items"].items() if r == "image"), None)
    title_column = next((c for c, r in schema["items"].items() if r == "text"), "item_id")
    st.subheader("A few items")
    sample = items[items[image_column].astype(str) != ""].head(8) if image_column else items.head(8)
    grid = st.columns(4)
    for position, (_, row) in enumerate(sample.iterrows()):
        with grid[position % 4]:
            if image_column and row[image_column]:
                st.image(str(Path(root) / row[image_column]), width="stretch")
            st.caption(str(row[title_column]))


st.set_page_config(page_title="Recommender studio", page_icon="🧭", layout="wide")
navigation = st.navigation([st.Page(home, title="Home", icon="🏠", default=True)])
navigation.run()
