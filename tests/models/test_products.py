"""Sparse history rows times dense matrices (the item-item and item-vector products of scoring)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recsys.models.products import sparse_times


def test_sparse_times_equals_the_plain_product_in_the_dense_operands_kind_and_precision():
    rng = np.random.default_rng(0)
    rows = sp.random(40, 300, density=0.03, format="csr", random_state=1, dtype=np.float64)
    rows.data = rng.integers(1, 4, rows.nnz).astype(np.float64)  # weights, not only ones
    dense = rng.standard_normal((300, 25))
    expected = rows.toarray() @ dense

    single = sparse_times(rows, dense.astype(np.float32))
    assert isinstance(single, np.ndarray) and single.dtype == np.float32 and single.shape == (40, 25)
    np.testing.assert_allclose(single, expected, rtol=1e-5, atol=1e-4)

    double = sparse_times(rows, dense)
    assert double.dtype == np.float64
    np.testing.assert_allclose(double, expected, rtol=1e-12, atol=1e-12)

    tensor = sparse_times(rows, torch.from_numpy(dense.astype(np.float32)))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-5, atol=1e-4)

    # a column-major operand (LAPACK's output, a transpose) and rows without any entry
    np.testing.assert_allclose(sparse_times(rows, np.asfortranarray(dense)), expected, rtol=1e-12)
    empty = sp.csr_matrix((3, 300))
    assert np.array_equal(sparse_times(empty, dense), np.zeros((3, 25)))
