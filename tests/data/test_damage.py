"""One damaged file never takes everything down.

A dataset whose manifest.json, schema.json or a Parquet table is truncated is still listed, marked damaged
with the file named; loading it raises :class:`DatasetDamaged` (not a JSON or Arrow traceback); the command
line says so on stderr, exits 1 and, with --json, still prints one JSON object last. A run whose saved model
has a truncated file is not usable, and ``recommend`` names the file instead of a safetensors error.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys.cli import main
from recsys.workspace import DatasetDamaged, Workspace
from tests.conftest import DEMO_RUN as RUN, write_bundle


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def cli(capsys, *argv: str, workspace) -> tuple[int, str, str]:
    code = main([*argv, "--quiet", "--workspace", str(workspace.root)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def two_datasets(tmp_path) -> Workspace:
    """A workspace with datasets "good" and "shop" (tiny, no pictures)."""
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["red kettle", "blue boots", "green hose"]})
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["a", "b", "c", "a"]})
    bundle = write_bundle(tmp_path / "bundle", items, interactions)
    workspace = Workspace(tmp_path / "ws")
    assert workspace.import_bundle(bundle, name="good").ok
    assert workspace.import_bundle(bundle, name="shop").ok
    return workspace


DAMAGEABLE = ["manifest.json", "schema.json", "items.parquet", "interactions.parquet"]


@pytest.mark.parametrize("file", DAMAGEABLE)
def test_a_damaged_dataset_is_listed_as_damaged_and_refuses_to_load(two_datasets, file):
    truncate(two_datasets.datasets_dir / "shop" / file)
    infos = {info.name: info for info in two_datasets.list_datasets()}
    assert set(infos) == {"good", "shop"}
    assert infos["good"].damaged is None and infos["good"].counts["items"] == 3
    problem = infos["shop"].damaged
    assert problem.startswith(f"datasets/shop/{file} cannot be read")
    assert "python -m recsys import BUNDLE --name shop" in problem
    assert infos["shop"].to_dict()["damaged"] == problem
    with pytest.raises(DatasetDamaged, match=f"datasets/shop/{file}"):
        two_datasets.load_dataset("shop")
    assert len(two_datasets.load_dataset("good").items) == 3
    assert two_datasets.dataset_damage("shop") == problem and two_datasets.dataset_damage("good") is None


def test_a_table_damaged_past_its_footer_is_named_when_loaded(two_datasets):
    path = two_datasets.datasets_dir / "shop" / "items.parquet"
    data = bytearray(path.read_bytes())
    data[4 : len(data) // 2] = b"\0" * (len(data) // 2 - 4)  # the listing reads the footer only
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetDamaged, match=r"datasets/shop/items\.parquet"):
        two_datasets.load_dataset("shop")


def test_a_missing_table_is_named(two_datasets):
    (two_datasets.datasets_dir / "shop" / "interactions.parquet").unlink()
    [shop] = [i for i in two_datasets.list_datasets() if i.name == "shop"]
    assert shop.damaged.startswith("datasets/shop/interactions.parquet is missing")


def test_the_suggested_import_repairs_the_dataset(two_datasets, tmp_path):
    truncate(two_datasets.datasets_dir / "shop" / "items.parquet")
    assert two_datasets.import_bundle(tmp_path / "bundle", name="shop").ok
    assert all(info.damaged is None for info in two_datasets.list_datasets())


@pytest.mark.parametrize("file", ["manifest.json", "schema.json", "items.parquet"])
def test_the_command_line_names_a_damaged_dataset(two_datasets, file, capsys):
    truncate(two_datasets.datasets_dir / "shop" / file)
    code, out, _ = cli(capsys, "datasets", "--json", workspace=two_datasets)
    assert code == 0
    listed = {d["name"]: d for d in last_json(out)["datasets"]}
    assert listed["good"]["damaged"] is None
    assert listed["shop"]["damaged"].startswith(f"datasets/shop/{file}")
    for argv in (["features", "shop", "--modalities", "attributes"], ["train", "--data", "shop", "--model", "mostpop"]):
        code, out, err = cli(capsys, *argv, "--json", workspace=two_datasets)
        assert code == 1, argv
        assert err.startswith("error: dataset 'shop' is damaged") and f"datasets/shop/{file}" in err
        result = last_json(out)
        assert result["ok"] is False and f"datasets/shop/{file}" in result["error"]
    assert not any(two_datasets.runs_dir.iterdir())  # refused before a run folder was made


def test_importing_a_damaged_folder_fails_plainly(two_datasets, capsys):
    truncate(two_datasets.datasets_dir / "shop" / "items.parquet")
    code, out, err = cli(
        capsys, "import", str(two_datasets.datasets_dir / "shop"), "--name", "copy", "--json", workspace=two_datasets
    )
    assert code == 1 and "Traceback" not in err
    assert last_json(out)["ok"] is False
    assert not two_datasets.has_dataset("copy")


def test_an_unexpected_error_still_ends_with_one_json_object(two_datasets, capsys, monkeypatch):
    def explode(self):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(Workspace, "list_datasets", explode)
    code, out, err = cli(capsys, "datasets", "--json", workspace=two_datasets)
    assert code == 1 and "Traceback" in err and "ZeroDivisionError: boom" in err
    assert last_json(out) == {"command": "datasets", "ok": False, "error": "boom", "error_type": "ZeroDivisionError"}
    with pytest.raises(ZeroDivisionError):  # without --json a bug is the usual traceback
        main(["datasets", "--quiet", "--workspace", str(two_datasets.root)])


# ----------------------------------------------------------------------------- saved models


@pytest.fixture
def trained(demo_copy) -> Workspace:
    return Workspace(demo_copy)  # the session's demo run, copied: each test damages a file of it


def a_user(workspace: Workspace) -> str:
    return json.loads((workspace.run_path(RUN) / "model" / "ids.json").read_text())["user_ids"][0]


def test_a_whole_model_is_usable_and_recommends(trained, capsys):
    from recsys.train.run import list_runs

    [run] = list_runs(trained)
    assert run.usable and run.model_damaged is None
    code, out, err = cli(capsys, "recommend", RUN, "--user", a_user(trained), "--k", "3", "--json", workspace=trained)
    assert code == 0, err
    assert len(last_json(out)["recommendations"]) == 3


@pytest.mark.parametrize("file", ["weights.safetensors", "ids.json", "config.json"])
def test_a_damaged_model_is_not_usable_and_is_named(trained, file, capsys):
    from recsys.models import ModelDamaged
    from recsys.train.records import load_run_model
    from recsys.train.run import list_runs

    user = a_user(trained)
    truncate(trained.run_path(RUN) / "model" / file)
    named = f"runs/{RUN}/model/{file}"
    [run] = list_runs(trained)
    assert run.has_model and not run.usable
    assert run.model_damaged.startswith(f"{named} cannot be read")
    assert f"python -m recsys train --resume {RUN}" in run.model_damaged
    with pytest.raises(ModelDamaged, match=named):
        load_run_model(run.path)
    for argv in (["recommend", RUN, "--user", user], ["recommend-explained", RUN, "--user", user]):
        code, out, err = cli(capsys, *argv, "--json", workspace=trained)
        assert code == 1, argv
        assert err.startswith(f"error: {named} cannot be read") and "Traceback" not in err
        result = last_json(out)
        assert result["ok"] is False and named in result["error"]


def test_evaluate_names_a_damaged_metrics_file(trained, capsys):
    truncate(trained.run_path(RUN) / "metrics.json")
    code, out, err = cli(capsys, "evaluate", RUN, "--json", workspace=trained)
    assert code == 1 and f"runs/{RUN}/metrics.json cannot be read" in err
    assert last_json(out)["ok"] is False


def test_a_damaged_run_config_is_named_by_every_command_that_reads_it(trained, capsys):
    user = a_user(trained)
    truncate(trained.run_path(RUN) / "config.json")
    named = f"runs/{RUN}/config.json cannot be read"
    for argv in (["recommend", RUN, "--user", user], ["explain", RUN, "--user", user, "--item", "x"], ["serve", RUN]):
        code, out, err = cli(capsys, *argv, "--json", workspace=trained)
        assert code == 1, (argv, err)
        assert named in err and "Traceback" not in err, argv
        assert last_json(out)["ok"] is False
