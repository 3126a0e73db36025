"""The multimodal fusion recommender: a mixture of modality experts with a per-user gate.

For user ``u`` and item ``i``, one *expert* per modality ``m`` in (behaviour, text, image, attributes)
scores the item from the user's history in that modality alone:

* behaviour: EASE's closed-form item-item score ``x_u B`` (L2 chosen on validation), or sparse
  item-item neighbours for catalogues too large for a dense ``N x N`` matrix;
* text / image / attributes: the dot product of the item's vector with the sum of the user's history
  vectors in that modality (centred, L2-normalised features: MiniLM, EfficientNet, attribute one-hots).
  Items the behaviour expert does not score (nobody chose them, or beyond its cap) are ordered through a
  learned projection: a ridge map from the modality's vectors to the behaviour expert's item-item
  weights, fitted on the items it covers, predicts what the user's history says of them (CB2CF in closed
  form). They keep the cosine's values, so the projection reorders them among themselves (by what is
  chosen together, not only by likeness) without changing how they weigh against items with behaviour.

Each expert's scores are standardised per user over the items that have the modality (``z``; for
behaviour, those not in the user's history, so the expert ranks as EASE does however long the history) and
scaled by one learned constant per expert (``s_m``: how decisive its scores are). A user gate mixes them::

    g[u]         = softmax( (slope_c * coherence[u] + slope_b * choice[u]) * n_u / (n_u + kappa) )   [M]
    w[u, i, m]   = g[u, m] * r[i, m] * present[i, m] / sum_m' (same)                      (per item)
    v[u, i, m]   = s_m * z[u, i, m] * n_u / (n_u + c)                    (what expert m says of the item)
    score(u, i)  = sum_m w[u, i, m] * v[u, i, m]   (+ popularity prior p[u, i], with behaviour)
    share[u,i,m] = the Shapley value of m in that mixture (sum_m share[u, i, m] = score(u, i))

``evidence[u, m]`` is how well modality ``m`` fits the user's *own* history: for content, the mean
pairwise cosine of the history items (how coherent the history is in that space); for behaviour, the
leave-one-out AUC of the history items under the item-item score. ``choice[u, m]`` is the user's own
conditional-logit coefficient of content expert ``m``: the user's items taken as draws from a softmax
over the catalogue of ``sum_m beta_m x_m`` (each expert's leave-one-out score, plus popularity), fitted
per user by a few ridge-penalised Newton steps. Coherence alone credits every modality that agrees with
the history; the coefficients are partial, so when the category follows the description's topic, the
modality that explains the choices beyond the other gets the weight. Both are standardised over users.
Content modalities share each slope, so a user's content weights follow the order of the evidence; a
user with no evidence gets equal weights (short histories are pulled there by ``kappa``).
``r[i, m] = exp(rho_m * popularity_z(i))`` lets content count more for rarely chosen items (whose
co-occurrence scores are noise); ``rho_behaviour = 0``. ``n_u / (n_u + c)`` and the popularity prior
``c(n) = exp(a0) k / (k + n)`` make popularity lead for users with one or two items.

The gate's dozen parameters are learned by a cloze objective: for a sample of users, part of the
training history is hidden and predicted from the rest (softmax over the catalogue, each hidden item
weighted by the DCG discount of its current rank), the behaviour expert fitted *without* those users
(Woodbury update of EASE's inverse, so no user's signal comes from its own rows). 30 % of the cloze
users keep only 1-3 visible items so the gate learns what short histories are worth. Rounds end with
validation NDCG@20 (early stopping keeps the best); then a multiplier of the behaviour expert's scale
and the short-history boost are chosen on validation. Training is seconds to a minute, not many minutes.

Because ``g[u]`` is what the score uses, the weights the Attention page shows are the weights that
drive the ranking. An item lacking a modality is re-mixed over the ones it has, and the explanations'
shares are the Shapley values of that game: a coalition of modalities scores the item re-mixed over its
members (plus the prior with behaviour), so a share says what the score loses without the modality,
averaged over which others the item keeps, and the shares add up to the score exactly. (``w * v`` would
not do: a heavily weighted modality whose expert says less than the others' average raises the score
when it is removed, its weight going to them.) Variants for ablation: ``mean``
(equal weights), ``item_gate`` (weights from the item's popularity, the same for every user) and
``concat`` (an MLP over the experts' scores; no additive shares).

Layout: ``content`` (item content arrays, cosine neighbours, the cold-item projections), ``experts`` (the
per-modality expert scores and the evidence and choice coefficients the gate reads), ``gate`` (the
network and the one statement of the mixture), ``losses`` (the cloze objective's pieces), ``model``
(:class:`FusionRecommender`: fit in named steps, scoring, explanations, save and load). Importing the
package registers the model (``recsys.models.base`` imports it by name).
"""

from .content import (
    ContentArrays,
    binary_rows,
    centre,
    centred_unit_rows,
    cosine_neighbours,
)
from .experts import Experts, ExpertScoring, choice_coefficients
from .gate import ExpertGate
from .model import DEFAULTS, FusionRecommender, stop_requested_any

# the names these had when fusion was one module (tests and benchmarks import some of them)
_binary_rows = binary_rows
_centre = centre
_centred_unit_rows = centred_unit_rows
_choice_coefficients = choice_coefficients
_cosine_neighbours = cosine_neighbours

__all__ = [
    "DEFAULTS",
    "ContentArrays",
    "ExpertGate",
    "ExpertScoring",
    "Experts",
    "FusionRecommender",
    "binary_rows",
    "centre",
    "centred_unit_rows",
    "choice_coefficients",
    "cosine_neighbours",
    "stop_requested_any",
]
