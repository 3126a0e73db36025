"""The gate: the dozen learned parameters that mix the experts, and the mixture equation itself.

:meth:`ExpertGate.mix` is the one statement of the mixture (see the package docstring for the
equations): the scores, the per-item weights and the additive shares the explanations show all come
from it, so the shares add up to the score exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ExpertGate(nn.Module):
    """The few learned parameters: the gate, the popularity prior, a temperature (and the concat MLP)."""

    # buffers (register_buffer below): declared here, as nn.Module's attribute lookup types them loosely
    behaviour_scale: torch.Tensor
    short_history_boost: torch.Tensor
    popularity_floor: torch.Tensor

    def __init__(self, n_modalities: int, fusion: str, has_behaviour: bool):
        super().__init__()
        m = n_modalities
        self.fusion = fusion
        self.has_behaviour = has_behaviour
        # population weights = softmax(bias). Start from "trust behaviour" (about 0.8 of the weight when
        # there are four modalities): a strong collaborative ranking is the floor, and content has to
        # earn its weight on the cloze loss while validation NDCG watches (early stopping keeps the best)
        self.bias = nn.Parameter(torch.zeros(m))  # item_gate's population weights
        # how decisive each expert's standardised scores are (one constant per modality, shared by all
        # users). Global importance lives here, so the user weights below carry only what differs
        # between users; behaviour starts decisive, so the first ranking is close to EASE's
        scale = torch.zeros(m)
        if has_behaviour and m > 1:
            scale[0] = math.log(3.0)
        self.log_expert_scale = nn.Parameter(scale)
        # evidence -> logits through non-negative slopes: a modality's weight rises with how much more the
        # user's history coheres in it than other users' histories do, and with nothing else. The content
        # modalities share one slope (their evidence is the same statistic, on one scale), so the order
        # of a user's content weights is the order of the evidence; behaviour has its own. Slopes:
        # behaviour's evidence, content coherence, content choice coefficients
        self.slope_raw = nn.Parameter(torch.full((3,), math.log(math.expm1(1.0))))
        self.kappa_raw = nn.Parameter(torch.tensor(math.log(math.expm1(3.0))))  # shrinkage, in items
        # c(n) = exp(a0) * k / (k + n), k = softplus(a1): popularity counts for new users and fades as the
        # history grows (a history of 1-3 items says little; a long one says what the user likes)
        self.popularity_raw = nn.Parameter(torch.tensor([0.0, math.log(math.expm1(5.0))]))
        # how much a history of n items is worth against the population: the experts' scores are scaled
        # by n / (n + confidence), so for a user with one or two items the popularity prior leads
        self.confidence_raw = nn.Parameter(torch.tensor(math.log(math.expm1(1.0))))
        self.item_popularity_weight = nn.Parameter(torch.zeros(m))  # item_gate variant
        self.log_temperature = nn.Parameter(torch.tensor(0.0))
        self.mlp: nn.Sequential | None = (
            nn.Sequential(nn.Linear(2 * m, 16), nn.GELU(), nn.Linear(16, 1)) if fusion == "concat" else None
        )
        # chosen on validation after training (not learned): the cloze likelihood rewards content that
        # lifts long-tail items, validation NDCG@20 says how much of that the top of the list can take
        # (a scale of the behaviour expert's scores, so the users' weights keep their meaning)
        self.register_buffer("behaviour_scale", torch.tensor(1.0))
        # extra popularity for users known by one to three items, chosen on validation new-user NDCG@20
        self.register_buffer("short_history_boost", torch.tensor(0.0))
        # popularity every user keeps whatever the length of the history, chosen on validation NDCG@20: the
        # cloze fit lets popularity fade as a history grows, right where users' tastes stay close to the
        # bestsellers (a sparse shop), 0 where they do not
        self.register_buffer("popularity_floor", torch.tensor(0.0))

    def population(self) -> torch.Tensor:
        if self.fusion == "item_gate":
            return torch.softmax(self.bias, dim=0)
        m = self.bias.shape[0]
        return torch.full((m,), 1.0 / m, device=self.bias.device)

    def expert_scales(self) -> torch.Tensor:
        scales = torch.exp(self.log_expert_scale)
        if self.has_behaviour:
            scales = torch.cat([scales[:1] * self.behaviour_scale, scales[1:]])
        return scales

    def slopes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality slopes of the two evidence blocks (coherence, choice coefficient), each ``[M]``."""
        m = self.bias.shape[0]
        slopes = F.softplus(self.slope_raw)
        if self.has_behaviour:
            coherence = torch.cat([slopes[:1], slopes[1:2].expand(m - 1)])
            choice = torch.cat([torch.zeros_like(slopes[:1]), slopes[2:3].expand(m - 1)])
            return coherence, choice
        return slopes[1:2].expand(m), slopes[2:3].expand(m)

    def user_weights(self, evidence: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Gate ``[B, M]`` (rows sum to 1) from standardised evidence ``[B, 2M]`` and history lengths ``[B]``.

        ``attention``: ``softmax((slope_c * coherence + slope_b * choice) * n / (n + kappa))``, so a user
        with no or a short history sits near the population's weights and a long, consistent history
        decides them.
        """
        b, m = evidence.shape[0], self.bias.shape[0]
        if self.fusion == "mean":
            return torch.full((b, m), 1.0 / m, device=evidence.device)
        if self.fusion in ("item_gate", "concat"):
            return self.population().expand(b, m)
        shrink = (length / (length + F.softplus(self.kappa_raw))).unsqueeze(1)
        coherence, choice = self.slopes()
        logits = coherence * evidence[:, :m] + choice * evidence[:, m:]
        return torch.softmax(logits * shrink, dim=1)

    def popularity_weight(self, length: torch.Tensor) -> torch.Tensor:
        a0, a1 = self.popularity_raw
        k = F.softplus(a1)
        short = (2.0 / (1.0 + length)) ** 2  # 1 for one item, 0.44 for two, 0.25 for three, ~0 for long histories
        return torch.exp(a0) * k / (k + length) + self.popularity_floor + self.short_history_boost * short

    def mix(
        self,
        z: torch.Tensor,
        present: torch.Tensor,
        gate: torch.Tensor,
        popularity: torch.Tensor | None,
        length: torch.Tensor,
        item_popularity_z: torch.Tensor,
        renormalise: bool,
        with_parts: bool = False,
    ):
        """Scores ``[B, N]`` from standardised expert scores ``z [B, M, N]``, item presence ``[N, M]``.

        ``share[u, i, m] = w[u, i, m] * s_m * z[u, i, m] * n_u / (n_u + c)`` (``w``: :meth:`item_weights`),
        the popularity prior added to behaviour's share; ``score = sum_m share``. With ``with_parts``: also
        the per-item weights ``[B, N, M]`` and the shares ``[B, N, M]`` (what the explanations show).
        """
        presence = present.T.unsqueeze(0).float()  # [1, M, N]
        if self.fusion == "concat":
            features = torch.cat([z * presence, presence.expand_as(z)], dim=1).transpose(1, 2)  # [B, N, 2M]
            assert self.mlp is not None  # built whenever fusion == "concat"
            scores = self.mlp(features).squeeze(-1)
            if popularity is not None:
                scores = scores + self.popularity_weight(length).unsqueeze(1) * popularity.unsqueeze(0)
            return (scores, None, None) if with_parts else scores
        confidence = (length / (length + F.softplus(self.confidence_raw))).view(-1, 1, 1)
        prior = None
        if popularity is not None and self.has_behaviour:
            # every item, also one nobody chose (whose popularity is that of a count of 0): otherwise a
            # short history would lift the untried tail of a large catalogue over the bestsellers
            prior = self.popularity_weight(length).unsqueeze(1) * popularity.unsqueeze(0)  # [B, N]
        if not with_parts:
            # the same sum without building the [B, M, N] weights and shares: sum_m g f s z / d in one
            # batched product (scoring, the cloze steps and validation re-mixes take this path)
            user, factors, denominator = self.weight_factors(presence, gate, item_popularity_z, renormalise)
            scaled = z * (factors * self.expert_scales().view(-1, 1)).unsqueeze(0)  # [B, M, N]
            mixed = torch.bmm(user.expand(z.shape[0], -1).unsqueeze(1), scaled).squeeze(1)  # [B, N]
            if denominator is not None:
                mixed = mixed / denominator
            scores = mixed * confidence.view(-1, 1)
            return scores if prior is None else scores + prior
        weights = self.item_weights(presence, gate, item_popularity_z, renormalise).expand_as(z)
        values = z * (self.expert_scales().view(1, -1, 1) * confidence)  # what each expert says, [B, M, N]
        if renormalise:
            shares = shapley_shares(weights, values, presence.expand_as(z) > 0, prior, self.has_behaviour)
        else:  # nothing is re-spread when a modality is missing: the game is linear, its Shapley values w * v
            shares = weights * values
            if prior is not None:
                shares = torch.cat([shares[:, :1] + prior.unsqueeze(1), shares[:, 1:]], dim=1)
        scores = shares.sum(dim=1)
        return scores, weights.transpose(1, 2), shares.transpose(1, 2)

    def item_weights(
        self, presence: torch.Tensor, gate: torch.Tensor, item_popularity_z: torch.Tensor, renormalise: bool
    ) -> torch.Tensor:
        """``w[u, i, m]`` ``[B or 1, M, N]``: the user's gate ``[B, M]`` spread over the items present
        (``presence [1, M, N]``), per variant; ``renormalise`` re-spreads a missing modality's weight."""
        user, factors, denominator = self.weight_factors(presence, gate, item_popularity_z, renormalise)
        weights = user.unsqueeze(2) * factors.unsqueeze(0)
        return weights if denominator is None else weights / denominator.unsqueeze(1)

    def weight_factors(
        self, presence: torch.Tensor, gate: torch.Tensor, item_popularity_z: torch.Tensor, renormalise: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The per-item weights in factored form: ``w[u, m, i] = user[u, m] * factors[m, i] / denominator[u, i]``
        (``user [B or 1, M]``, ``factors [M, N]``, ``denominator [B or 1, N]`` or None for 1)."""
        present = presence[0]  # [M, N]
        if self.fusion == "item_gate":
            logits = self.bias.unsqueeze(1) + self.item_popularity_weight.unsqueeze(1) * item_popularity_z.unsqueeze(0)
            factors = torch.softmax(logits, dim=0) * present
            user = torch.ones(1, factors.shape[0], device=factors.device, dtype=factors.dtype)
            return user, factors, factors.sum(dim=0, keepdim=True).clamp(min=1e-12) if renormalise else None
        if self.fusion == "attention":
            # the user's weights, modulated by how much behaviour evidence the item has: a rarely chosen
            # item's co-occurrence score is noise, its description is not (one slope per modality, shared
            # by all users and items; behaviour's is 0 so the user's weights keep their meaning)
            item = torch.exp(self.item_popularity_weight.unsqueeze(1) * item_popularity_z.unsqueeze(0))  # [M, N]
            if self.has_behaviour:
                item = torch.cat([torch.ones_like(item[:1]), item[1:]])
            factors = item * present
            return gate, factors, (gate @ (factors if renormalise else item)).clamp(min=1e-12)
        return gate, present, (gate @ present).clamp(min=1e-12) if renormalise else None


def shapley_shares(
    weights: torch.Tensor,
    values: torch.Tensor,
    present: torch.Tensor,
    prior: torch.Tensor | None,
    has_behaviour: bool,
) -> torch.Tensor:
    """Each modality's Shapley value ``[B, M, N]`` in the game the model itself plays when modalities are
    missing: a coalition ``S`` scores ``sum_{m in S} w_m v_m / sum_{m in S} w_m`` (the item re-mixed over the
    modalities it keeps, as :meth:`ExpertGate.mix` does for an item that lacks one), plus the popularity
    prior when behaviour (index 0) is in ``S``; the empty coalition scores 0. The values add up to the
    score exactly (efficiency), a content modality the item lacks gets 0 (null player; behaviour keeps the
    prior), and a modality gets credit for what its removal would cost.

    Why not ``w_m v_m``: with renormalisation, removing a modality re-spreads its weight over the others,
    so a heavily weighted modality whose expert says less than the others' average *raises* the score
    when it is removed; ``w_m v_m`` would still call it the largest contribution (on the demo, 77 % of the
    items whose largest ``w_m v_m`` was text failed that masking test). ``2^M`` coalitions, ``M <= 4``."""
    m = weights.shape[1]
    # every coalition's score, one [B, N] slice each; coalition c holds modality j when bit j of c is set
    coalition_scores = []
    for coalition in range(1 << m):
        members = torch.tensor([(coalition >> j) & 1 for j in range(m)], dtype=torch.bool, device=weights.device)
        held = (present & members.view(1, -1, 1)).to(weights.dtype)
        total = (weights * held).sum(dim=1)
        mixed = (weights * values * held).sum(dim=1) / total.clamp(min=1e-12)
        mixed = torch.where(total > 0, mixed, torch.zeros_like(mixed))
        if prior is not None and has_behaviour and coalition & 1:
            mixed = mixed + prior
        coalition_scores.append(mixed)
    shares = torch.zeros_like(values)
    for j in range(m):
        for coalition in range(1 << m):
            if coalition >> j & 1:
                continue
            size = bin(coalition).count("1")
            # |S|! (M - |S| - 1)! / M!: the share of orderings in which j joins right after S
            coefficient = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            shares[:, j] += coefficient * (coalition_scores[coalition | 1 << j] - coalition_scores[coalition])
    return shares
