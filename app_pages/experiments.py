"""Experiments: every run with its configuration and metrics; compare runs, download or delete them."""

from __future__ import annotations

import time

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.common import (STATE_STYLE, chart, empty_state, fmt_time, get_workspace, list_all_runs,
                              page_header, run_label, run_page, show_error, style_figure)
from recsys.train.launch import RunBusyError, delete_run, model_zip
from recsys.train.records import RunRecord

COMPARED = [("ndcg@20", "NDCG@20"), ("recall@20", "Recall@20")]


def short_label(run: RunRecord) -> str:
    when = time.strftime("%m-%d %H:%M", time.localtime(run.started)) if run.started else run.run_id[:13]
    return f"{run.model or '?'} · {run.dataset or '?'} · {when} ({run.run_id[-4:]})"


def runs_frame(runs: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for run in runs:
        config = run.config
        metrics = run.metrics or {}
        test = run.test_metrics
        history = (metrics.get("model") or {}).get("history") or {}
        best = run.best_baseline
        started, ended = run.started, run.ended
        fusion_model = run.model in ("fusion", "content")
        modalities = config.get("modalities") or []
        encoders = [e for e in (config.get("text_encoder") if "text" in modalities else None,
                                config.get("image_encoder") if "image" in modalities else None) if e]
        rows.append({
            "Started": fmt_time(started),
            "State": STATE_STYLE.get(run.state, STATE_STYLE["unknown"])[0],
            "Dataset": run.dataset,
            "Model": run.model,
            "NDCG@20": test.get("ndcg@20"),
            "Recall@20": test.get("recall@20"),
            "Best baseline (NDCG@20)": f"{best[0]} {best[1]:.4f}" if best and best[1] is not None else "–",
            "Modalities": ", ".join(modalities) if fusion_model else "–",
            "Fusion": config.get("fusion") if run.model == "fusion" else "–",
            "Protocol": (metrics.get("split") or {}).get("protocol") or config.get("protocol") or "–",
            "Encoders": ", ".join(encoders) if fusion_model and encoders else "–",
            "Epochs": f"{len(history.get('epochs') or [])} / {config.get('epochs')}"
            if run.model == "fusion" and history else "–",
            "Minutes": round((ended - started) / 60, 1) if started and ended else None,
            "NDCG@10": test.get("ndcg@10"),
            "Recall@10": test.get("recall@10"),
            "Run": run.run_id,
        })
    return pd.DataFrame(rows)


def comparison(runs: list[RunRecord]) -> None:
    with_metrics = [r for r in runs if r.has_test_metrics]
    st.markdown("#### :material/compare_arrows: Compare runs")
    if not with_metrics:
        empty_state("No run has test metrics yet — they appear when a training finishes.", icon=":material/hourglass_empty:")
        return
    labels = {r.run_id: short_label(r) for r in with_metrics}
    ids = list(labels)
    picked = st.multiselect("Runs", ids, default=ids[:3], key="exp_compare", format_func=labels.get,
                            help="The model of each run beside the baselines trained with it, on the test split.")
    if not picked:
        st.caption("Pick runs to compare.")
        return
    rows = []
    for run_id in picked:
        run = next(r for r in with_metrics if r.run_id == run_id)
        metrics = run.metrics
        entries = [(f"{metrics['model'].get('name', 'model')} (model)", metrics["model"])]
        entries += [(name, result) for name, result in (metrics.get("baselines") or {}).items()]
        for name, result in entries:
            for key, label in COMPARED:
                rows.append({"run": labels[run_id], "model": name, "metric": label,
                             "value": (result.get("test") or {}).get(key)})
    frame = pd.DataFrame(rows).dropna(subset=["value"])
    fig = px.bar(frame, x="run", y="value", color="model", barmode="group", facet_col="metric", text_auto=".3f",
                 color_discrete_sequence=["#4C6EF5", "#ADB5BD", "#FAB005", "#12B886", "#E64980", "#7950F2", "#868E96"],
                 labels={"value": "", "run": ""})
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_traces(textposition="outside", textfont_size=10)
    fig.update_yaxes(matches=None, showticklabels=True)
    style_figure(fig, height=400)
    fig.update_layout(legend=dict(orientation="v", x=1.01, xanchor="left", y=1, yanchor="top"), margin=dict(t=30))
    chart(fig, key="exp_compare_chart")

    configs = {labels[r]: next(x for x in with_metrics if x.run_id == r).config for r in picked}
    options = sorted({k for c in configs.values() for k in c})
    table = pd.DataFrame({label: [str(c.get(o, "–")) for o in options] for label, c in configs.items()}, index=options)
    differing = table.nunique(axis=1) > 1
    with st.expander(f"Configurations side by side ({int(differing.sum())} options differ)"):
        st.dataframe(table.style.apply(lambda row: ["background-color: #EDF2FF" if differing[row.name] else ""
                                                    for _ in row], axis=1), width="stretch")


def manage(runs: list[RunRecord]) -> None:
    st.markdown("#### :material/folder_managed: Download or delete a run")
    ids = [r.run_id for r in runs]
    if st.session_state.get("exp_run") not in ids:
        st.session_state.pop("exp_run", None)
    labels = {r.run_id: run_label(r) for r in runs}
    run_id = st.selectbox("Run", ids, key="exp_run", format_func=lambda i: f"{labels[i]} · {i}")
    run = runs[ids.index(run_id)]
    cols = st.columns([1, 1, 2], vertical_alignment="center")
    if run.has_model:
        cols[0].download_button("Download the model (.zip)", data=lambda: model_zip(run.path),
                                file_name=f"{run_id}-model.zip", mime="application/zip", icon=":material/download:",
                                key="exp_download", width="stretch")
    else:
        cols[0].caption("This run has no saved model to download.")
    busy = run.active
    if cols[1].button("Delete run", icon=":material/delete:", key="exp_delete", disabled=busy, width="stretch"):
        st.session_state["exp_confirm_delete"] = run_id
    if busy:
        cols[2].caption(":material/info: This run is still training: stop it on the Train page before deleting it.")
    if st.session_state.get("exp_confirm_delete") == run_id:
        with st.container(border=True):
            st.warning(f"Delete run **{run_id}** — its model, metrics and logs — for good?", icon=":material/delete:")
            confirm = st.columns([1, 1, 3])
            if confirm[0].button("Yes, delete it", type="primary", key="exp_delete_yes", width="stretch"):
                try:
                    delete_run(get_workspace(), run_id)
                except RunBusyError as exc:
                    st.session_state.pop("exp_confirm_delete", None)
                    st.error(f"**Not deleted**: {exc}.", icon=":material/block:")
                    return
                except Exception as exc:
                    show_error("The run could not be deleted", exc)
                    return
                st.session_state.pop("exp_confirm_delete", None)
                st.session_state["exp_deleted"] = run_id
                st.rerun()
            if confirm[1].button("Cancel", key="exp_delete_no", width="stretch"):
                st.session_state.pop("exp_confirm_delete", None)
                st.rerun()


def main() -> None:
    page_header("Experiments", "Every training run with its configuration and held-out test metrics, beside "
                               "the baselines trained with it.")
    deleted = st.session_state.pop("exp_deleted", None)
    if deleted:
        st.success(f"Deleted run {deleted}.", icon=":material/check_circle:")
    runs = list_all_runs()
    if not runs:
        empty_state("No runs yet — train a model on the Train page.", page="train", label="Train a model")
        return
    table = runs_frame(runs)
    number = st.column_config.NumberColumn(format="%.4f")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"NDCG@20": number, "Recall@20": number, "NDCG@10": number, "Recall@10": number,
                                "Minutes": st.column_config.NumberColumn("Minutes", format="%.1f"),
                                "Run": st.column_config.TextColumn("Run id")})
    comparison(runs)
    manage(runs)


run_page(main)
