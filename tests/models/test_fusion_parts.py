"""The fusion model's numerical parts: the rank placement of the loss and evidence, the cloze loss, and the principal
reduction of wide content modalities."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.evaluate import one_standard_error_choice
from recsys.models.fusion.content import (
    centred_unit_rows,
    content_unit_rows,
    order_by_projection,
    principal_rows,
    reorder_top,
)
from recsys.models.fusion.losses import hidden_ranks, softmax_cloze_loss
from recsys.topk import argsort_rows, places_in_rows, sorted_rows


def test_one_standard_error_rule_keeps_the_smaller_change_unless_the_gain_is_beyond_noise():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    closeness = lambda scale: abs(np.log(scale))  # noqa: E731 (x1 is no change)
    # x4 is ahead by a hair that the users' noise swamps: x1 stays
    noisy = {1.0: base, 4.0: base + rng.normal(0.002, 0.2, 400)}
    means = {k: float(v.mean()) for k, v in noisy.items()}
    assert means[4.0] > means[1.0]
    assert one_standard_error_choice(noisy, means, closeness) == 1.0
    # x4 is ahead for nearly every user: taken
    clear = {1.0: base, 4.0: base + 0.05 + rng.normal(0, 0.01, 400)}
    means = {k: float(v.mean()) for k, v in clear.items()}
    assert one_standard_error_choice(clear, means, closeness) == 4.0

    # of several within the error, the closest to no change; the best itself when it is x1
    def centred_noise() -> np.ndarray:  # standard error of its mean ~0.01
        noise = rng.normal(0, 0.2, 400)
        return noise - noise.mean()

    close = {0.5: base + 0.005 + centred_noise(), 1.5: base + 0.003 + centred_noise(), 1.0: base}
    means = {k: float(v.mean()) for k, v in close.items()}
    assert max(means, key=means.get) != 1.0 and one_standard_error_choice(close, means, closeness) == 1.0
    # without noise any gain is real
    exact = {1.0: base, 2.5: base + 0.001}
    assert one_standard_error_choice(exact, {k: float(v.mean()) for k, v in exact.items()}, closeness) == 2.5


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """0-based rank of every entry within its row (highest = 0), ties by position: the permutation itself."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order))
    return out.float()


def test_places_in_rows_give_the_ranks_of_the_chosen_entries():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(16, 500, generator=generator)
    scores[:, :20] = float("-inf")  # masked items (the visible history) sit at the bottom
    chosen = (torch.rand(16, 500, generator=generator) < 0.05) & (torch.arange(500) >= 20)
    from_top = scores.shape[1] - places_in_rows(scores, chosen, "right")
    assert torch.equal(from_top * chosen, ranks(scores) * chosen)
    below = places_in_rows(scores, chosen, "left")
    assert torch.equal(below, (scores.shape[1] - 1 - ranks(scores)) * chosen)
    assert float(below[~chosen].abs().sum()) == 0.0


def test_places_in_rows_ties_share_the_best_rank():
    scores = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0]])
    chosen = torch.tensor([[1, 1, 1, 1, 0]])
    from_top = scores.shape[1] - places_in_rows(scores, chosen, "right")
    assert from_top.tolist() == [[0.0, 4.0, 0.0, 3.0, 5.0]]  # the unchosen entry is not placed
    rows, columns = torch.nonzero(chosen, as_tuple=True)
    assert hidden_ranks(scores, rows, scores[rows, columns]).tolist() == [0.0, 4.0, 0.0, 3.0]


@pytest.mark.parametrize("rank_weighted", [True, False])
def test_the_cloze_loss_on_hidden_entries_equals_the_dense_softmax_form(rank_weighted):
    """The loss reads only the hidden entries; it must equal, with its gradient, the plain dense form:
    log-softmax over the catalogue less the visible items, each hidden item weighted by the DCG discount
    of its rank (ties sharing the best), a mean over users (one without hidden items counts 0)."""
    generator = torch.Generator().manual_seed(3)
    scores = (3 * torch.randn(12, 400, generator=generator, dtype=torch.float64)).round(decimals=1)  # ties
    visible = torch.rand(12, 400, generator=generator) < 0.05
    hidden = ((torch.rand(12, 400, generator=generator) < 0.04) & ~visible).double()
    hidden[4] = 0.0
    sparse_form = scores.clone().requires_grad_()
    dense_form = scores.clone().requires_grad_()
    loss = softmax_cloze_loss(sparse_form, hidden, visible, rank_weighted)
    masked = dense_form.masked_fill(visible, float("-inf"))
    log_probs = torch.log_softmax(masked, dim=1)
    weight = hidden
    if rank_weighted:
        higher = (masked.unsqueeze(1) > masked.unsqueeze(2)).sum(2)  # entries strictly above each entry
        weight = hidden / torch.log2(higher.double() + 2.0)
    per_user = -(log_probs.masked_fill(hidden == 0, 0.0) * weight).sum(1) / weight.sum(1).clamp(min=1e-9)
    expected = per_user.mean()
    loss.backward()
    expected.backward()
    assert torch.allclose(loss, expected, atol=1e-12)
    assert torch.allclose(sparse_form.grad, dense_form.grad, atol=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_reorder_top_places_the_largest_values_on_the_chosen_entries_and_permutes_the_row(ties):
    generator = torch.Generator().manual_seed(7)
    values = torch.randn(6, 300, generator=generator)
    if ties:
        values = torch.round(values * 2) / 2
    by = torch.randn(6, 300, generator=generator)
    top = 25
    out = reorder_top(values, by, top)
    # the full ordering: the k-th best by ``by`` gets the k-th largest value
    full = torch.empty_like(values).scatter_(1, argsort_rows(by), sorted_rows(values))
    for row in range(len(values)):
        assert torch.equal(torch.sort(out[row]).values, torch.sort(values[row]).values)  # a permutation
        chosen = torch.topk(by[row], top).indices
        assert torch.equal(out[row, chosen], full[row, chosen])
        holders = set(torch.topk(values[row], top).indices.tolist())
        untouched = [i for i in range(300) if i not in holders and i not in set(chosen.tolist())]
        assert torch.equal(out[row, untouched], values[row, untouched])
        # the holders that lost their values take what is left over, in their own order
        displaced = torch.tensor(sorted(holders - set(chosen.tolist())), dtype=torch.long)
        before, after = values[row, displaced], out[row, displaced]
        higher = before.unsqueeze(1) > before.unsqueeze(0)  # i held a larger value than j ...
        assert bool((after.unsqueeze(1) >= after.unsqueeze(0))[higher].all())  # ... and still does


def test_order_by_projection_orders_the_untried_items_by_the_projection_at_the_top():
    generator = torch.Generator().manual_seed(3)
    n_items, dim = 1200, 8
    outside = torch.zeros(n_items, dtype=torch.bool)
    outside[200:] = True  # 1,000 items without behaviour
    raw = torch.randn(4, n_items, generator=generator)
    mapped = torch.randn(4, dim, generator=generator)
    vectors = torch.randn(dim, int(outside.sum()), generator=generator)
    mask = torch.ones(n_items, dtype=torch.bool)
    out = order_by_projection(raw, mapped, (torch.zeros(1), vectors), outside, mask, top=50)
    assert torch.equal(out[:, :200], raw[:, :200])  # the items with behaviour keep their scores
    projected = mapped @ vectors
    for row in range(4):
        best = torch.topk(projected[row], 50).indices + 200
        assert torch.equal(out[row, best], torch.topk(raw[row, 200:], 50).values)
    # few untried items: every one of them is ordered by the projection
    small = torch.zeros(n_items, dtype=torch.bool)
    small[-60:] = True
    out = order_by_projection(raw, mapped, (torch.zeros(1), vectors[:, -60:]), small, mask, top=50)
    order = torch.argsort(mapped @ vectors[:, -60:], dim=1)
    for row in range(4):
        assert torch.equal(out[row, -60:][order[row]], torch.sort(raw[row, -60:]).values)


def test_principal_rows_are_exact_when_the_modality_has_low_rank():
    rng = np.random.default_rng(0)
    low_rank = rng.standard_normal((300, 10)) @ rng.standard_normal((10, 1500))
    present = np.ones(300, bool)
    present[:15] = False  # items without the modality stay zero
    matrix = sp.csr_matrix(np.where(present[:, None], low_rank, 0.0).astype(np.float32))
    exact = centred_unit_rows(matrix.toarray(), present)
    reduced, _, _ = content_unit_rows(matrix, present, max_dim=32, seed=1)
    assert reduced.shape == (300, 32)
    assert np.allclose(reduced[~present], 0.0)
    assert np.allclose(reduced @ reduced.T, exact @ exact.T, atol=1e-3)


def test_dense_and_sparse_paths_find_the_same_principal_directions():
    """A dense modality of moderate width takes the exact covariance path, a sparse one the randomized
    sketch; on the same rows (a decaying spectrum, some items absent) both give the leading subspace of
    the centred, unit-length rows, and the same coordinates up to each direction's sign."""
    rng = np.random.default_rng(3)
    dense = (rng.standard_normal((400, 60)) * np.geomspace(10.0, 0.01, 60)) @ np.linalg.qr(
        rng.standard_normal((60, 60))
    )[0]
    present = np.ones(400, bool)
    present[::9] = False
    dense = np.where(present[:, None], dense, 0.0).astype(np.float32)
    exact, exact_basis, _ = principal_rows(dense, present, 12, seed=0)
    sketched, sketched_basis, _ = principal_rows(sp.csr_matrix(dense), present, 12, seed=0)
    centred = centred_unit_rows(dense, present)[present]
    truth = np.linalg.svd(centred, full_matrices=False)[2][:12].T  # [60, 12]
    for basis in (exact_basis, sketched_basis):
        assert np.allclose(basis @ basis.T, truth @ truth.T, atol=1e-3)  # the same subspace
    signs = np.sign((exact * sketched).sum(axis=0))
    assert np.allclose(exact, sketched * signs, atol=1e-3)
    assert np.allclose(exact[~present], 0.0)


def test_principal_rows_keep_the_themes_of_a_wide_sparse_modality():
    """Tag-like rows (a few of thousands of tags, each tag owned by one of 12 themes): reduced to 64
    coordinates, every item's nearest other item is still one of its own theme."""
    rng = np.random.default_rng(0)
    n, width, themes = 600, 3000, 12
    theme = rng.integers(0, themes, n)
    per_theme = width // themes
    rows = np.repeat(np.arange(n), 4)
    cols = np.concatenate([t * per_theme + rng.choice(per_theme, 4, replace=False) for t in theme])
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, width))
    present = np.ones(n, bool)
    reduced, _, _ = content_unit_rows(matrix, present, max_dim=64, seed=1)
    similarity = reduced @ reduced.T
    np.fill_diagonal(similarity, -np.inf)
    assert (theme[similarity.argmax(axis=1)] == theme).mean() > 0.95


def test_narrow_modalities_are_not_reduced():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((200, 40)).astype(np.float32)
    present = np.ones(200, bool)
    vectors, mean, basis = content_unit_rows(matrix, present, max_dim=64, seed=0)
    assert basis is None
    assert np.array_equal(vectors, centred_unit_rows(matrix, present))
    assert np.allclose(mean, matrix.mean(axis=0), atol=1e-6)
    coordinates, basis, _ = principal_rows(matrix, present, 8, seed=0)
    assert coordinates.shape == (200, 8) and basis.shape == (40, 8)


def test_the_factored_mix_equals_the_sum_of_the_shares():
    """Scoring takes the factored path (no [B, M, N] shares); explanations sum the shares: the same scores
    for every variant, with and without renormalisation."""
    from recsys.models.fusion.gate import ExpertGate

    generator = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, 50, generator=generator)
    present = torch.rand(50, 4, generator=generator) > 0.3
    popularity, popularity_z = torch.randn(50, generator=generator), torch.randn(50, generator=generator)
    length = torch.tensor([1.0, 2.0, 3.0, 8.0, 20.0, 60.0])
    gate = torch.softmax(torch.randn(6, 4, generator=generator), dim=1)
    for fusion in ("attention", "mean", "item_gate"):
        mixer = ExpertGate(4, fusion, has_behaviour=True)
        with torch.no_grad():
            mixer.item_popularity_weight.copy_(torch.tensor([0.0, 0.3, -0.2, 0.5]))
            mixer.bias.copy_(torch.tensor([0.5, -0.1, 0.2, 0.0]))
        for renormalise in (True, False):
            fast = mixer.mix(z, present, gate, popularity, length, popularity_z, renormalise)
            scores, weights, shares = mixer.mix(
                z, present, gate, popularity, length, popularity_z, renormalise, with_parts=True
            )
            torch.testing.assert_close(fast, scores, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(shares.sum(-1), scores, atol=1e-5, rtol=1e-5)
            assert float(weights[:, ~present].detach().abs().max()) == 0.0  # no weight on a modality an item lacks


def test_choice_model_over_sampled_alternatives_agrees_with_the_full_softmax(demo_template):
    """Above choice_alternatives items the users' conditional logits run over a fixed uniform sample of items
    plus the batch's history items; the coefficients stay close to the full-catalogue ones (IIA)."""
    from recsys.models import Recommender
    from recsys.workspace import Workspace
    from tests.conftest import DEMO_RUN

    model = Recommender.load(demo_template / "runs" / DEMO_RUN / "model")
    interactions = Workspace(demo_template).load_dataset("demo").interactions
    index = {item: i for i, item in enumerate(model.item_ids)}
    users = {user: u for u, user in enumerate(sorted(set(interactions["user_id"])))}
    history = sp.csr_matrix(
        (
            np.ones(len(interactions), np.float32),
            ([users[u] for u in interactions["user_id"]], [index[i] for i in interactions["item_id"]]),
        ),
        shape=(len(users), model.n_items),
    )
    history.data[:] = 1.0
    history = history[:80]
    full = model._expert_z(history, raw_evidence=True).evidence
    model.config["choice_alternatives"] = model.n_items // 2
    hist = torch.as_tensor(history.toarray() > 0)
    columns = model._choice_set(hist)
    assert columns is not None and len(columns) < model.n_items
    assert set(np.flatnonzero(hist.any(0).numpy())) <= set(columns.tolist())  # every chosen item is an alternative
    sampled = model._expert_z(history, raw_evidence=True).evidence
    m = len(model._modalities)
    for column in range(m, 2 * m):
        a, b = full[:, column].numpy(), sampled[:, column].numpy()
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() > 10:
            assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.9, column


def test_shares_are_the_shapley_values_of_masking_modalities():
    """The shares, checked against an independent computation: for every ordering of the modalities, the
    score change as each joins (the item re-mixed over the modalities present so far through ``mix`` itself,
    the popularity prior with behaviour), averaged over the orderings. A modality an item lacks gets 0."""
    from itertools import permutations

    from recsys.models.fusion.gate import ExpertGate

    generator = torch.Generator().manual_seed(1)
    z = torch.randn(3, 4, 40, generator=generator)
    present = torch.rand(40, 4, generator=generator) > 0.3
    popularity, popularity_z = torch.randn(40, generator=generator), torch.randn(40, generator=generator)
    length = torch.tensor([1.0, 5.0, 30.0])
    gate = torch.softmax(torch.randn(3, 4, generator=generator), dim=1)
    for fusion in ("attention", "mean", "item_gate"):
        mixer = ExpertGate(4, fusion, has_behaviour=True)
        with torch.no_grad():
            mixer.item_popularity_weight.copy_(torch.tensor([0.0, 0.3, -0.2, 0.5]))

        def coalition_score(members: tuple[int, ...], mixer: ExpertGate = mixer) -> torch.Tensor:
            held = torch.zeros(4, dtype=torch.bool)
            held[list(members)] = True
            shown = present & held
            prior = popularity if 0 in members else torch.zeros_like(popularity)
            return mixer.mix(z, shown, gate, prior, length, popularity_z, True)

        with torch.no_grad():
            _, _, shares = mixer.mix(z, present, gate, popularity, length, popularity_z, True, with_parts=True)
            expected = torch.zeros_like(shares)
            orderings = list(permutations(range(4)))
            for ordering in orderings:
                before = torch.zeros(3, 40)
                for position, modality in enumerate(ordering):
                    after = coalition_score(ordering[: position + 1])
                    expected[:, :, modality] += (after - before) / len(orderings)
                    before = after
        torch.testing.assert_close(shares, expected, atol=1e-5, rtol=1e-5)
        # null player: a content modality the item lacks gets 0 (behaviour keeps the popularity prior, which
        # masking behaviour removes even where the item has no behaviour scores)
        content_shares, content_present = shares[:, :, 1:], present[:, 1:]
        assert float(content_shares[:, ~content_present].abs().max()) < 1e-6


def _shop(loyal_to_category: bool, seed: int = 0):
    """200 items with a category (8 values) and a brand (8 values, independent of it); 300 users who each buy
    6 items: of one category when ``loyal_to_category``, else at random."""
    from recsys.models.fusion.content import ContentArrays

    rng = np.random.default_rng(seed)
    n_items, n_users = 200, 300
    category, brand = rng.integers(0, 8, n_items), rng.integers(0, 8, n_items)
    rows, cols = [], []
    for u in range(n_users):
        pool = np.flatnonzero(category == rng.integers(8)) if loyal_to_category else np.arange(n_items)
        chosen = rng.choice(pool, 6, replace=False)
        rows += [u] * 6
        cols += chosen.tolist()
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    cat_index = np.stack([category + 1, brand + 1 + 9], axis=1)  # 0 = missing; brand's values after category's
    content = ContentArrays(
        None, None, None, None, cat_index, 19, None, None, np.ones(n_items, bool),
        column_names={"categorical": ["category", "brand"], "multi_label": [], "numeric": []},
    )  # fmt: skip
    return content, train


def test_attribute_columns_are_weighted_by_how_much_histories_share_them():
    """A column users are loyal to keeps its weight; one they share only by chance (brand, drawn independently)
    gets 0; with no loyalty at all every column keeps the same weight. Chance is two *different* items drawn
    by popularity, so a column nobody is loyal to has a lift near 1, not below it."""
    from recsys.models.fusion.content import attribute_lifts, behaviour_block_weights

    content, train = _shop(loyal_to_category=True)
    blocks = content.attribute_blocks()
    assert [name for name, _ in blocks] == ["category", "brand"]
    weights = behaviour_block_weights([block for _, block in blocks], train)
    lifts, z_scores = attribute_lifts([block for _, block in blocks], train)
    assert lifts[0] > 3.0 and z_scores[0] > 4.0  # one category of 8: several times chance, far beyond the noise
    assert abs(lifts[1] - 1.0) < 0.1 and z_scores[1] < 2.0  # brand: chance, within the noise
    assert weights[0] == pytest.approx(1.0) and weights[1] == pytest.approx(0.0)
    # the weighted matrix: two items of one category and different brands are as close as can be
    matrix = content.attribute_matrix(weights)
    category = content.cat_index[:, 0]
    a, b = np.flatnonzero(category == category[0])[:2]
    rows = matrix[[a, b]].toarray()
    cosine = rows[0] @ rows[1] / np.linalg.norm(rows[0]) / np.linalg.norm(rows[1])
    assert cosine == pytest.approx(1.0, abs=1e-5)

    content, train = _shop(loyal_to_category=False)
    weights = behaviour_block_weights([block for _, block in content.attribute_blocks()], train)
    np.testing.assert_allclose(weights, [1.0, 1.0])


def test_equal_attribute_weighting_is_the_matrix_of_before():
    """``attribute_weighting="equal"`` (every weight 1) keeps the matrix the model always had: the categorical
    columns' IDF-weighted one-hots in one unit block; a weight scales a column's entries inside that block."""
    content, _ = _shop(loyal_to_category=True)
    n = len(content.attr_mask)
    onehot = np.zeros((n, content.n_cat), np.float32)
    for j in range(content.cat_index.shape[1]):
        onehot[np.arange(n), content.cat_index[:, j]] = 1.0
    df = onehot.sum(axis=0)
    before = onehot * np.where(df > 0, np.log((1 + n) / (1 + df)) + 1.0, 0.0)
    before /= np.linalg.norm(before, axis=1, keepdims=True)
    np.testing.assert_allclose(content.attribute_matrix().toarray(), before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(content.attribute_matrix([1.0, 1.0]).toarray(), before, rtol=1e-5, atol=1e-6)
    halved = content.attribute_matrix([1.0, 0.5]).toarray()
    brand_columns = np.unique(content.cat_index[:, 1])
    assert np.square(halved[:, brand_columns]).sum(axis=1).max() < np.square(before[:, brand_columns]).sum(axis=1).min()
    with pytest.raises(ValueError, match="attribute_weighting"):
        from recsys.models.fusion import FusionRecommender

        FusionRecommender(attribute_weighting="columns")


def test_a_modality_seen_on_few_history_items_has_its_evidence_trusted_less():
    """Two pictured items of eight decided a shop user's weights (77 % picture): a modality's evidence is
    trusted as n_m / (n_m + c) against the whole history's n / (n + c)."""
    from recsys.models.fusion.experts import (
        EVIDENCE_RELIABILITY_ITEMS as c,
        evidence_reliability,
        standardised_evidence,
    )

    counts = torch.tensor([[8.0, 8.0, 2.0, 8.0], [3.0, 3.0, 3.0, 0.0]])
    length = torch.tensor([8.0, 3.0])
    reliability = evidence_reliability(counts, length)
    assert torch.allclose(reliability[0, [0, 1, 3]], torch.ones(3))  # every item has it: as before
    assert reliability[0, 2] == pytest.approx((2 / (2 + c)) / (8 / (8 + c)))
    assert reliability[1, 3] == 0 and torch.allclose(reliability[1, :3], torch.ones(3))
    # standardised over users, then scaled per modality (both evidence blocks); no evidence stays 0
    raw = torch.tensor([[1.0, 1.0, 1.0, float("nan"), 2.0, 2.0, 2.0, 2.0]])
    stats = (torch.zeros(8), torch.full((8,), 2.0))
    out = standardised_evidence(raw, stats, reliability[:1])
    assert out[0, 3] == 0 and out[0, 2] == pytest.approx(0.5 * float(reliability[0, 2]))
    assert out[0, 6] == pytest.approx(float(reliability[0, 2])) and out[0, 0] == pytest.approx(0.5)
