"""Batch export: ``python -m recsys export RUN --k K --out FILE`` and the engine functions under it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys.batch import export_recommendations, recommend_batch, top_k_rows
from recsys.cli import main
from recsys.models.rerank import mmr_rerank
from recsys.train.records import load_run_model
from recsys.train.run import RunConfig, train_run
from recsys.workspace import Workspace

RUN = "ease-run"


@pytest.fixture(scope="module")
def trained(demo_template, tmp_path_factory):
    """The session's demo workspace, copied, with one EASE run added (no baselines: about a second on a CPU)."""
    root = tmp_path_factory.mktemp("export") / "ws"
    shutil.copytree(demo_template, root)
    train_run(Workspace(root), RunConfig(dataset="demo", model="ease", baselines=[], device="cpu"), run_id=RUN)
    return root


@pytest.fixture(scope="module")
def model(trained):
    return load_run_model(trained / "runs" / RUN)


def run_cli(trained, *argv) -> tuple[int, dict]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([*argv, "--workspace", str(trained), "--json", "--quiet"])
    return code, json.loads(buffer.getvalue().strip().splitlines()[-1])


def known(model, row: int) -> set[str]:
    return {str(model.item_ids[i]) for i in model.seen.indices[model.seen.indptr[row] : model.seen.indptr[row + 1]]}


def test_top_k_rows_is_the_ranking_of_recommend():
    rng = np.random.default_rng(0)
    for _ in range(500):
        m, k = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        scores = rng.integers(0, 4, size=(3, m)).astype(float)  # many ties
        scores[rng.random((3, m)) < 0.3] = -np.inf
        items, _ = top_k_rows(scores, k)
        for r in range(3):
            assert list(items[r][items[r] >= 0]) == list(mmr_rerank(scores[r], None, k, 0.0))


def test_export_matches_recommend_for_sampled_users(trained, model, tmp_path):
    out = tmp_path / "recs.parquet"
    code, result = run_cli(trained, "export", RUN, "--k", "10", "--out", str(out), "--chunk-size", "7")
    assert code == 0 and result["ok"] and result["users"] == model.n_users and result["rows"] == 10 * model.n_users
    assert result["chunks"] == -(-model.n_users // 7)
    table = pq.read_table(out)
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("user_id", "string"),
        ("rank", "int16"),
        ("item_id", "string"),
        ("score", "float"),
    ]
    assert pq.ParquetFile(out).num_row_groups == result["chunks"]
    frame = table.to_pandas()
    rng = np.random.default_rng(1)
    for user in rng.choice(model.user_ids, size=20, replace=False):
        mine = frame[frame["user_id"] == user].sort_values("rank")
        expected = model.recommend(user, k=10)
        assert list(mine["rank"]) == list(range(1, 11))
        assert list(mine["item_id"]) == [item for item, _ in expected]
        np.testing.assert_allclose(mine["score"], [s for _, s in expected], rtol=1e-5, atol=1e-6)
    # and the CLI's own recommend (variants allowed: export does not collapse them) for two users
    for user in model.user_ids[:2]:
        code, single = run_cli(trained, "recommend", RUN, "--user", str(user), "--k", "10", "--allow-variants")
        assert code == 0
        assert list(frame[frame["user_id"] == user]["item_id"]) == [r["item_id"] for r in single["recommendations"]]


def test_every_user_gets_k_rows_or_all_unknown_items_and_never_a_known_one(trained, model, tmp_path):
    out = tmp_path / "all.parquet"
    k = model.n_items + 10  # above the number of items: every user gets all the items they do not know
    code, result = run_cli(trained, "export", RUN, "--k", str(k), "--out", str(out))
    assert code == 0
    frame = pd.read_parquet(out)
    assert set(frame["user_id"]) == set(model.user_ids)
    for row, user in enumerate(model.user_ids):
        mine = frame[frame["user_id"] == user]
        seen = known(model, row)
        assert len(mine) == min(k, model.n_items - len(seen))
        assert list(mine["rank"]) == list(range(1, len(mine) + 1))
        assert not seen & set(mine["item_id"])
        assert mine["score"].is_monotonic_decreasing


def test_users_file_exports_only_those_users_in_file_order(trained, model, tmp_path):
    users = [str(u) for u in model.user_ids[[5, 2, 9]]]
    listing = tmp_path / "users.txt"
    listing.write_text("user_id\n" + "\n".join(users + [users[0], ""]) + "\n")
    out = tmp_path / "some.parquet"
    code, result = run_cli(trained, "export", RUN, "--k", "5", "--out", str(out), "--users-file", str(listing))
    assert code == 0 and result["users"] == 3
    frame = pd.read_parquet(out)
    assert list(dict.fromkeys(frame["user_id"])) == users and len(frame) == 15
    listing.write_text("nobody-here\n" + users[0] + "\n")
    code, result = run_cli(trained, "export", RUN, "--out", str(tmp_path / "x.parquet"), "--users-file", str(listing))
    assert code == 1 and not result["ok"] and "nobody-here" in result["error"]
    assert not (tmp_path / "x.parquet").exists()


def test_refusals_exit_1_with_a_json_error(trained, tmp_path):
    code, result = run_cli(trained, "export", "no-such-run", "--out", str(tmp_path / "r.parquet"))
    assert code == 1 and result["ok"] is False and "no run 'no-such-run'" in result["error"]
    code, result = run_cli(trained, "export", RUN, "--out", str(tmp_path))
    assert code == 1 and "is a folder" in result["error"]
    code, result = run_cli(trained, "export", RUN, "--out", str(tmp_path / "r.parquet"), "--shares")
    assert code == 1 and "--shares" in result["error"] and "ease" in result["error"]
    code, result = run_cli(trained, "export", RUN, "--out", str(tmp_path / "r.parquet"), "--k", "0")
    assert code == 1 and "--k" in result["error"]
    # a Parquet file named .xlsx opened in no spreadsheet: the formats there are are named instead
    code, result = run_cli(trained, "export", RUN, "--out", str(tmp_path / "recs.xlsx"))
    assert code == 1 and "Parquet (.parquet) or CSV (.csv), not .xlsx" in result["error"]
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob("*.xlsx"))


def test_chunk_size_does_not_change_the_contents(model, tmp_path):
    one = export_recommendations(model, tmp_path / "one.parquet", k=8, chunk_size=1)
    many = export_recommendations(model, tmp_path / "many.parquet", k=8, chunk_size=1000)
    assert (one.chunks, many.chunks) == (model.n_users, 1)
    assert pq.ParquetFile(one.path).num_row_groups == model.n_users
    pd.testing.assert_frame_equal(pd.read_parquet(one.path), pd.read_parquet(many.path))


def test_progress_reports_users_done(model, tmp_path):
    calls = []
    export_recommendations(model, tmp_path / "p.parquet", k=3, chunk_size=25, progress=lambda *a: calls.append(a))
    assert calls[0] == ("export", 0, model.n_users) and calls[-1] == ("export", model.n_users, model.n_users)
    assert [c[1] for c in calls] == sorted(c[1] for c in calls)


def test_a_failed_export_leaves_no_file_under_the_final_name(model, tmp_path, monkeypatch):
    import recsys.batch as batch

    out = tmp_path / "recs.parquet"
    written = []
    original = batch._ParquetSink.write

    def write_once(self, columns):
        if written:
            raise RuntimeError("killed mid-way")
        written.append(len(columns["user_id"]))
        original(self, columns)

    monkeypatch.setattr(batch._ParquetSink, "write", write_once)
    with pytest.raises(RuntimeError, match="killed mid-way"):
        export_recommendations(model, out, k=5, chunk_size=10)
    assert written and not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too
    out.write_bytes(b"the previous export")  # an older export under the name survives a failed one whole
    written.clear()
    with pytest.raises(RuntimeError):
        export_recommendations(model, out, k=5, chunk_size=10)
    assert out.read_bytes() == b"the previous export" and list(tmp_path.iterdir()) == [out]


def test_csv_output_is_spreadsheet_safe_and_equal_to_parquet(model, tmp_path):
    import copy

    tricky = copy.copy(model)
    tricky.item_ids = np.array(['=HYPERLINK("x")' if i == 0 else str(v) for i, v in enumerate(model.item_ids)])
    export_recommendations(tricky, tmp_path / "r.csv", k=model.n_items, chunk_size=16)
    export_recommendations(tricky, tmp_path / "r.parquet", k=model.n_items, chunk_size=16)
    text = pd.read_csv(tmp_path / "r.csv", dtype={"user_id": str, "item_id": str})
    parquet = pd.read_parquet(tmp_path / "r.parquet")
    assert '=HYPERLINK("x")' in set(parquet["item_id"])
    assert '\'=HYPERLINK("x")' in set(text["item_id"]) and '=HYPERLINK("x")' not in set(text["item_id"])
    assert len(text) == len(parquet) and list(text["rank"]) == list(parquet["rank"])


def test_recommend_batch_pads_rows_short_of_k(model):
    items, scores = recommend_batch(model, np.arange(model.n_users), k=model.n_items)
    assert items.shape == (model.n_users, model.n_items)
    for row in range(model.n_users):
        n_known = len(known(model, row))
        assert (items[row] >= 0).sum() == model.n_items - n_known
        assert np.isneginf(scores[row][items[row] < 0]).all()


def test_export_with_exposure_moves_the_group_toward_its_target(trained, model, tmp_path):
    from recsys.models.rerank import group_membership

    items = Workspace(trained).load_dataset("demo").items.drop_duplicates("item_id")
    aligned = items.set_index(items["item_id"].astype(str).to_numpy()).reindex(
        pd.Index([str(i) for i in model.item_ids])
    )
    plain_out = tmp_path / "plain.parquet"
    assert run_cli(trained, "export", RUN, "--k", "5", "--out", str(plain_out))[0] == 0
    plain = pd.read_parquet(plain_out)
    # the brand whose exported share is furthest from its catalogue share (its default target)
    brands = aligned["brand"].dropna().astype(str).unique().tolist()
    memberships = {b: group_membership(aligned, "brand", b) for b in brands}
    index = {str(i): n for n, i in enumerate(model.item_ids)}
    rows = plain["item_id"].map(index).to_numpy()

    def share(frame):
        return float(memberships[brand][frame["item_id"].map(index).to_numpy()].mean())

    brand = max(brands, key=lambda b: abs(memberships[b][rows].mean() - memberships[b].mean()))
    target = float(memberships[brand].mean())
    shares = {}
    for strength in ("0", "0.5", "1"):
        out = tmp_path / f"exposure-{strength}.parquet"
        code, result = run_cli(
            trained,
            "export",
            RUN,
            "--k",
            "5",
            "--out",
            str(out),
            "--chunk-size",
            "7",
            "--exposure-group",
            f"brand={brand}",
            "--exposure-strength",
            strength,
        )
        assert code == 0 and result["exposure"]["group"] == f"brand={brand}"
        frame = pd.read_parquet(out)
        assert result["exposure"]["target"] == pytest.approx(target)
        assert result["exposure"]["share"] == pytest.approx(share(frame))
        shares[strength] = share(frame)
        if strength == "0":  # strength 0 is the plain export
            pd.testing.assert_frame_equal(frame, plain)
        for _, mine in frame.groupby("user_id"):
            assert list(mine["rank"]) == list(range(1, len(mine) + 1)) and mine["item_id"].is_unique
    assert abs(shares["0.5"] - target) < abs(shares["0"] - target)
    assert abs(shares["1"] - target) <= abs(shares["0.5"] - target) + 1e-9
    assert abs(shares["1"] - target) <= 1.0 / (5 * model.n_users) + 1e-9  # the carry: within a slot overall
    code, result = run_cli(trained, "export", RUN, "--out", str(tmp_path / "x.parquet"), "--exposure-group", "brand")
    assert code != 0 and "COLUMN=VALUE" in result["error"]
