"""LEACE fit and apply (EleutherAI concept-erasure): the primitives the erasure stage and its held-out checks share.

``fit_eraser`` streams per-utterance states into a ``LeaceFitter`` and returns its frozen ``LeaceEraser``;
``apply_eraser`` applies one to an array of states.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_POSITIONS_PER_DIM = 10
"""LEACE estimates a D x D covariance: warn below this many fitting positions per dimension."""


def fit_eraser(
    states: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    *,
    affine: bool = False,
    n_utterances: int = 0,
) -> Any:
    """Fit a ``LeaceEraser`` on per-utterance states [P, D] and targets [P, k] (streamed into ``LeaceFitter``)."""
    import torch
    from concept_erasure import LeaceFitter

    d, k = states[0].shape[1], targets[0].shape[1]
    n = sum(len(x) for x in states)
    if n < MIN_POSITIONS_PER_DIM * d:
        mean_p = n / max(n_utterances or len(states), 1)
        need = MIN_POSITIONS_PER_DIM * d
        warnings.warn(
            f"LEACE fitted on {n} positions for {d} dimensions: want >= {need} positions "
            f"(about {math.ceil(need / max(mean_p, 1e-9))} utterances at {mean_p:.0f} positions each)",
            stacklevel=2,
        )
    fitter = LeaceFitter(d, k, affine=affine, dtype=torch.float32)
    for x, z in zip(states, targets, strict=True):
        fitter.update(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(z))
    return fitter.eraser


def apply_eraser(eraser: Any, states: np.ndarray) -> np.ndarray:
    """Erased copy of states [N, D] (float32)."""
    import torch

    with torch.no_grad():
        return eraser(torch.from_numpy(np.ascontiguousarray(states, dtype=np.float32))).numpy()
