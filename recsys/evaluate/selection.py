"""Choosing a setting on validation without chasing its noise."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def one_standard_error_choice(
    per_user: dict[float, np.ndarray], means: dict[float, float], closeness: Callable[[float], float]
) -> float:
    """The value to take from a validation table: of those whose mean is within one standard error of the
    best's (the paired difference over the same users), the one ``closeness`` ranks first (smallest change)."""
    best = max(means, key=lambda value: (means[value], -closeness(value)))
    within = []
    for value, scores in per_user.items():
        difference = per_user[best] - scores
        difference = difference[np.isfinite(difference)]
        error = float(difference.std(ddof=1) / math.sqrt(len(difference))) if len(difference) > 1 else 0.0
        if means[best] - means[value] <= error + 1e-12:
            within.append(value)
    return min(within, key=lambda value: (closeness(value), -means[value]))
