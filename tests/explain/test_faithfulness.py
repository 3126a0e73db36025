"""Masking the modality with the largest share lowers the score more than masking the smallest."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.explain.faithfulness import faithfulness_check, masked_scores, recommended_pairs

pytestmark = pytest.mark.slow


def test_faithfulness_rate_on_the_demo_catalog(demo_run):
    result = faithfulness_check(demo_run.model, k=10, max_users=None)
    assert result["pairs"] >= 1000
    assert result["rate"] >= 0.8, result
    assert result["mean_drop_largest"] > result["mean_drop_smallest"]


def test_masking_nothing_changes_nothing(demo_run):
    model = demo_run.model
    pairs = recommended_pairs(model, k=3, users=[0, 1])
    items = [item for user, item in pairs if user == 0]
    base, masked = masked_scores(model, 0, items, np.zeros((len(items), len(model.modalities)), dtype=bool))
    assert np.allclose(base, masked)
    parts = model.explain_scores(0, items)
    assert np.allclose(base, parts["score"], atol=1e-5)


def test_models_without_shares_are_refused(demo_run):
    from recsys.models import get_model
    from recsys.train.data import prepare_data

    model = get_model("mostpop").fit(prepare_data(demo_run.bundle.interactions).data)
    with pytest.raises(ValueError, match="no modality shares"):
        faithfulness_check(model)
