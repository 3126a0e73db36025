"""Helpers shared by the pages: workspace access and cached engine calls. No model code here."""

from __future__ import annotations

import streamlit as st

from recsys.workspace import Workspace, ensure_demo_dataset


@st.cache_resource(show_spinner=False)
def get_workspace() -> Workspace:
    return Workspace()


@st.cache_resource(show_spinner="Preparing the built-in demo catalog (first start only)…")
def demo_dataset_name() -> str:
    return ensure_demo_dataset(get_workspace())


@st.cache_data(show_spinner=False)
def load_dataset_frames(name: str, imported_at: str):
    """Items and interactions of a dataset; ``imported_at`` keys the cache to the stored version."""
    bundle = get_workspace().load_dataset(name)
    return bundle.items, bundle.interactions, bundle.schema.to_dict(), str(bundle.root)
