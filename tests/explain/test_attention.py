"""Which modality a user leans to, as the Attention page groups users."""

from __future__ import annotations

import numpy as np

from recsys.explain import LEAN_MARGIN, NO_LEAN, dominant_modality, leaning_modality

MODALITIES = ["behaviour", "text", "image", "attributes"]


def test_users_at_the_population_weights_lean_to_no_modality() -> None:
    # a sparse shop: most users known by one item get the population's 25 % each; the others pull each
    # modality's mean a little away from 25 %, and the plain arg-max sent every one-item user to "image"
    population = np.full((6, 4), 0.25)
    informed = np.array(
        [
            [0.55, 0.15, 0.15, 0.15],
            [0.15, 0.55, 0.15, 0.15],
            [0.20, 0.20, 0.20, 0.40],
            [0.30, 0.30, 0.10, 0.30],
        ]
    )
    weights = np.vstack([population, informed])
    assert set(dominant_modality(weights, MODALITIES)[:6]) == {"image"}  # what the page showed before
    # the margin alone is not enough here: these informed users move image's mean 4 points below 25 %
    assert set(leaning_modality(weights, MODALITIES)[:6]) == {"image"}
    leaning = leaning_modality(weights, MODALITIES, population=np.full(4, 0.25))
    assert list(leaning[:6]) == [NO_LEAN] * 6
    # the last user: 5 points above attributes' mean (25 %), 3 above behaviour's and text's (27 %)
    assert list(leaning[6:]) == ["behaviour", "text", "attributes", "attributes"]


def test_a_lean_just_above_the_margin_counts_and_one_below_does_not() -> None:
    mean = np.array([0.25, 0.25, 0.25, 0.25])
    above = mean + np.array([-LEAN_MARGIN * 1.5, LEAN_MARGIN * 1.5, 0.0, 0.0])
    below = mean + np.array([LEAN_MARGIN * 0.5, -LEAN_MARGIN * 0.5, 0.0, 0.0])
    # two mirrored users per case keep each modality's mean at 25 %
    weights = np.vstack([above, 2 * mean - above, below, 2 * mean - below])
    assert list(leaning_modality(weights, MODALITIES)) == ["text", "behaviour", NO_LEAN, NO_LEAN]
    assert len(leaning_modality(np.zeros((0, 4)), MODALITIES)) == 0


def test_top_items_attention_ranks_only_the_items_kept(demo_run) -> None:
    from recsys.explain import top_items_attention

    model = demo_run.model
    everything = top_items_attention(model, k=10, users=[0, 1, 2])
    # the items a later import dropped: here, every item any of these users had in the top 3
    dropped = np.zeros(model.n_items, dtype=bool)
    dropped[everything.loc[everything["rank"] <= 3, "item_index"].to_numpy()] = True
    kept = top_items_attention(model, k=10, users=[0, 1, 2], keep=~dropped)
    assert len(kept) == 30 and not dropped[kept["item_index"].to_numpy()].any()
    # the rest keep their order: each user's list is the old one without the dropped items, then new ones
    for user, old in everything.groupby("user_row"):
        new = kept[kept["user_row"] == user]["item_index"].tolist()
        survivors = [i for i in old["item_index"] if not dropped[i]]
        assert new[: len(survivors)] == survivors
    assert top_items_attention(model, k=10, users=[0], keep=np.zeros(model.n_items, dtype=bool)).empty
