import json

import numpy as np
import pandas as pd
import pytest

from recsys.features import AttributeFeatures, build_attribute_features

ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d", "e", "f"],
        "brand": ["Acme", "Zeta", "Acme", None, "Beta", "Zeta"],
        "genres": ["Action|Comedy", " Comedy | Drama ", "", None, "Action|Rare", "Comedy|Comedy"],
        "price": [10.0, 20.0, None, 40.0, 1000.0, 30.0],
        "year": ["1999", "2001", "abc", "2005", "2010", "2011"],
        "title": ["x", "y", "z", "w", "v", "u"],
    }
)
ROLES = {
    "item_id": "id",
    "brand": "categorical",
    "genres": "multi-label",
    "price": "numeric",
    "year": "numeric",
    "title": "text",
}


def test_categorical_vocab_order_and_unknown():
    feats = build_attribute_features(ITEMS, ROLES)
    # frequency descending, then value
    assert feats.categorical_vocab["brand"] == ["Acme", "Zeta", "Beta"]
    assert feats.categorical["brand"].tolist() == [1, 2, 1, 0, 3, 2]
    assert feats.categorical["brand"].dtype == np.int64
    rare = build_attribute_features(ITEMS, ROLES, min_count=2)
    assert rare.categorical_vocab["brand"] == ["Acme", "Zeta"]
    assert rare.categorical["brand"].tolist() == [1, 2, 1, 0, 0, 2]  # Beta is rare -> unknown
    assert rare.cardinalities["brand"] == 3


def test_multi_label_multi_hot():
    feats = build_attribute_features(ITEMS, ROLES, min_count=2)
    assert feats.multi_label_vocab["genres"] == ["Comedy", "Action"]  # Drama, Rare appear once
    m = feats.multi_label["genres"]
    assert m.shape == (6, 3) and m.format == "csr"
    dense = m.toarray()
    assert dense.tolist() == [
        [0, 1, 1],  # Action|Comedy
        [1, 1, 0],  # Comedy + rare Drama (stripped values)
        [0, 0, 0],
        [0, 0, 0],
        [1, 0, 1],  # Action + rare
        [0, 1, 0],  # duplicates collapse
    ]


def test_numeric_normalised_with_missing_indicator_and_buckets():
    feats = build_attribute_features(ITEMS, ROLES, n_buckets=4)
    assert feats.numeric_columns == ["price", "year"]
    assert feats.numeric.dtype == np.float32 and feats.numeric.shape == (6, 2)
    assert feats.numeric_missing[:, 0].tolist() == [False, False, True, False, False, False]
    assert feats.numeric_missing[:, 1].tolist() == [False, False, True, False, False, False]
    assert feats.numeric[2].tolist() == [0.0, 0.0]
    assert np.isfinite(feats.numeric).all()
    assert np.abs(feats.numeric).max() <= 5.0  # the 1000 outlier is clipped
    price = feats.numeric[:, 0]
    assert price[0] < price[1] < price[5] < price[3] < price[4]
    buckets = feats.numeric_buckets[:, 0]
    assert buckets[2] == 0 and buckets[[0, 1, 3, 4, 5]].min() >= 1
    assert buckets[0] <= buckets[1] <= buckets[5] <= buckets[3] <= buckets[4]
    assert buckets.max() <= feats.n_numeric_buckets["price"] - 1


def test_encode_new_uses_the_same_vocabularies():
    feats = build_attribute_features(ITEMS, ROLES)
    new = pd.DataFrame(
        {
            "item_id": ["n1", "n2"],
            "brand": ["Zeta", "Brand new"],
            "genres": ["Drama|Unheard", None],
            "price": [20.0, None],
        }
    )  # no 'year' column
    enc = feats.encode_new(new)
    assert enc.categorical["brand"].tolist() == [2, 0]
    dense = enc.multi_label["genres"].toarray()
    drama = feats.multi_label_vocab["genres"].index("Drama") + 1
    assert dense[0, drama] == 1 and dense[0, 0] == 1 and dense[1].sum() == 0
    assert enc.numeric[0, 0] == pytest.approx(feats.numeric[1, 0])
    assert enc.numeric_missing.tolist() == [[False, True], [True, True]]


def test_arrays_round_trip_without_pickle(tmp_path):
    feats = build_attribute_features(ITEMS, ROLES)
    arrays, meta = feats.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    text = json.dumps(meta)  # JSON-able
    np.savez(tmp_path / "attrs.npz", **arrays)
    with np.load(tmp_path / "attrs.npz", allow_pickle=False) as data:
        loaded = AttributeFeatures.from_arrays({k: data[k] for k in data.files}, json.loads(text))
    assert loaded.categorical_vocab == feats.categorical_vocab
    assert (loaded.multi_label["genres"] != feats.multi_label["genres"]).nnz == 0
    assert np.array_equal(loaded.numeric, feats.numeric)
    assert np.array_equal(loaded.encode_new(ITEMS).categorical["brand"], feats.categorical["brand"])


def test_unknown_role_or_column_is_rejected():
    with pytest.raises(ValueError, match="unknown role"):
        build_attribute_features(ITEMS, {"brand": "colour"})
    with pytest.raises(ValueError, match="not in the items table"):
        build_attribute_features(ITEMS, {"nope": "categorical"})
