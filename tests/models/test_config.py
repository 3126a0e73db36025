"""The typed configuration: model config dataclasses, RunConfig nesting, old config.json migration, CLI flags."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from recsys.models import get_model
from recsys.models.baselines import BPRMF, EASE, ItemKNN, LightGCN
from recsys.models.config import BASELINE_CONFIGS, EASEConfig, FusionConfig, ItemKNNConfig
from recsys.models.fusion import DEFAULTS
from recsys.train.records import nest_flat_options
from recsys.train.run import RunConfig

# a run's config.json as written before the model options were nested (flat fusion options)
FLAT_CONFIG = {
    "dataset": "shop",
    "model": "fusion",
    "modalities": ["behaviour", "text", "attributes"],
    "fusion": "mean",
    "loss": "bpr",
    "epochs": 7,
    "patience": 2,
    "lr": 0.01,
    "ease_l2": "500.0",
    "popularity_prior": False,
    "text_encoder": "tfidf",
    "image_encoder": "efficientnet-lite0",
    "protocol": "p1",
    "folds": 5,
    "cold_start": False,
    "k_core": 5,
    "seed": 11,
    "baselines": ["mostpop", "ease"],
    "final_model": True,
    "device": "cpu",
}


def test_every_option_has_a_type_a_default_and_help():
    for cls in (FusionConfig, *BASELINE_CONFIGS.values()):
        for item in dataclasses.fields(cls):
            assert item.metadata.get("help"), f"{cls.__name__}.{item.name} has no help"
    assert DEFAULTS == FusionConfig().to_dict()  # the fusion model's defaults are the dataclass's


def test_baseline_configs_have_the_constructors_defaults():
    for cls, config in ((ItemKNN, ItemKNNConfig), (EASE, EASEConfig)):
        signature = inspect.signature(cls.__init__).parameters
        model = cls()
        for item in dataclasses.fields(config):
            assert item.name in signature, f"{cls.__name__} takes no {item.name}"
            assert model.config[item.name] == config().to_dict()[item.name]
    for cls, name in ((BPRMF, "bpr"), (LightGCN, "lightgcn")):
        assert cls._defaults == BASELINE_CONFIGS[name]().to_dict()


def test_fusion_config_validates_choices():
    with pytest.raises(ValueError, match="fusion must be one of"):
        FusionConfig(fusion="nope")
    with pytest.raises(ValueError, match="unknown fusion options"):
        get_model("fusion", nope=1)
    with pytest.raises(ValueError, match="ease_l2 must be 'auto' or a positive number"):
        FusionConfig(ease_l2="-3")
    assert FusionConfig(modalities=["text", "behaviour"]).modalities == ["behaviour", "text"]
    with pytest.raises(ValueError, match="behaviour_prior must be one of"):
        FusionConfig(behaviour_prior="dense")


def test_a_retired_fusion_option_in_an_older_config_is_read_and_dropped():
    """Models and runs saved before behaviour_prior carry max_dense_items in their config.json: they still load."""
    config = FusionConfig.from_dict({"max_dense_items": 20_000, "epochs": 3})
    assert config.epochs == 3 and config.behaviour_prior == "ease" and "max_dense_items" not in config.to_dict()


def test_old_flat_config_json_migrates_into_the_nested_options():
    config = RunConfig.from_dict(FLAT_CONFIG)
    options = config.fusion_options
    assert (
        options.fusion,
        options.loss,
        options.epochs,
        options.patience,
        options.lr,
        options.ease_l2,
        options.popularity_prior,
    ) == ("mean", "bpr", 7, 2, 0.01, 500.0, False)
    # the run's own modalities, seed and device are the model's
    assert (options.modalities, options.seed, options.device) == (["behaviour", "text", "attributes"], 11, "cpu")
    assert config.model_options()["epochs"] == 7 and config.model_options("ease") == EASEConfig().to_dict()
    # what a run listing reads from an old folder is the nested form too
    assert nest_flat_options(FLAT_CONFIG)["fusion_options"]["epochs"] == 7
    assert "epochs" not in nest_flat_options(FLAT_CONFIG)
    with pytest.raises(ValueError, match="unknown run options"):
        RunConfig.from_dict({**FLAT_CONFIG, "no_such_option": 1})


def test_config_json_round_trip():
    config = RunConfig(
        dataset="shop",
        model="ease",
        baselines=["itemknn", "bpr"],
        fusion_options={"epochs": 3},
        ease_options={"l2": 500, "positive_only": True},
        itemknn_options={"k_neighbors": 20},
    )
    text = json.dumps({"run_id": "r", "config": config.to_dict()})
    loaded = RunConfig.from_dict(json.loads(text)["config"])
    assert loaded == config
    assert isinstance(loaded.ease_options, EASEConfig) and loaded.ease_options.l2 == 500.0
    assert loaded.model_options()["positive_only"] is True
    assert loaded.model_options("itemknn")["k_neighbors"] == 20


def test_cli_flag_for_a_baseline_hyperparameter_reaches_the_model():
    import recsys.train.commands  # noqa: F401  (registers the train command)
    from recsys.cli import build_parser
    from recsys.train.commands import _config_from_args

    args = build_parser().parse_args(
        [
            "train",
            "--model",
            "ease",
            "--ease.l2",
            "500",
            "--no-ease.positive-only",
            "--itemknn.k-neighbors",
            "20",
            "--epochs",
            "3",
            "--fusion.gate-l2",
            "0.01",
        ]
    )
    config = RunConfig.from_dict({"dataset": "shop", **_config_from_args(args)})
    model = get_model(config.model, **config.model_options())
    assert model.config["l2"] == 500.0 and model.config["positive_only"] is False
    assert get_model("itemknn", **config.model_options("itemknn")).config["k_neighbors"] == 20
    fusion = get_model("fusion", **config.model_options("fusion")).config
    assert fusion["epochs"] == 3 and fusion["gate_l2"] == 0.01  # the old flag and the nested one
