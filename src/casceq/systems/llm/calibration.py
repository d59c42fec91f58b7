"""Per-label calibration of label scores: fit on items outside the evaluated set, then apply.

Tiny backbones put most of their mass on one label whatever the input (ASSETS.md, docs/backbones.md).
Contextual calibration (Zhao et al. 2021, "Calibrate before use") divides each label's probability by the mean
probability the model gives it on inputs that carry no evidence; in log space that subtracts a per-label offset
``log mean_x p(label | x)``. Two sources of those inputs:

- ``content_free``: "N/A", "" and "[MASK]" read through the very same prompt (and shots). Costs 3 forward
  passes, needs no data, and can never see an evaluated item; but on the bundled tiny models it sometimes
  over-corrects (docs/backbones.md: Gemma zero-shot SST-2 0.75 -> 0.60, SmolLM2 4-shot 0.60 -> 0.59).
- ``heldout``: real items from another part of the dataset, never evaluated ones, read as gold text (Batch
  Calibration, Zhou et al. 2024, uses the same estimator on unlabeled inputs). **The default**: in every
  measured setting it was the best or within noise of the best.

Shape follows LEACE's fitter/eraser: ``CalibrationFitter.update([N, C])`` accumulates, ``.calibrator`` is a
frozen dataclass applied to ``[N, C]`` scores. Offsets are centred, so ``scores - offsets`` keeps the scale;
subtracting them from raw log-likelihoods gives the same argmax as from log-softmaxed ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from casceq.systems.base import LLMBackend
from casceq.tasks import load_examples, sample_rank
from casceq.tasks.base import Task
from casceq.types import Example

CONTENT_FREE: tuple[str, ...] = ("N/A", "", "[MASK]")
Method = Literal["none", "content_free", "heldout"]
DEFAULT_METHOD: Method = "heldout"


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax over the C labels of [N, C] scores."""
    s = np.asarray(scores, dtype=np.float64)
    m = s.max(axis=1, keepdims=True)
    return s - m - np.log(np.exp(s - m).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Calibrator:
    """Per-label offsets subtracted from [N, C] label scores.

    Attributes:
        labels: The C labels, in score-column order.
        offsets: [C] centred log mean probabilities of each label on the fitting inputs.
        method: ``"content_free"``, ``"heldout"`` or ``"none"``.
        n: Number of fitting inputs.
    """

    labels: tuple[str, ...]
    offsets: np.ndarray = field(compare=False)
    method: str = "none"
    n: int = 0

    @classmethod
    def identity(cls, labels: Sequence[str]) -> Calibrator:
        """Return a calibrator that changes nothing (zero offsets)."""
        return cls(tuple(labels), np.zeros(len(labels)), "none", 0)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated [N, C] scores: ``log_softmax(scores) - offsets`` (argmax = the calibrated prediction)."""
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != len(self.offsets):
            raise ValueError(f"expected scores [N, {len(self.offsets)}], got {s.shape}")
        return log_softmax(s) - self.offsets[None, :]

    def predict(self, scores: np.ndarray) -> list[str]:
        """Return the calibrated label of each of N rows."""
        return [self.labels[i] for i in self(scores).argmax(axis=1)]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready record (labels, offsets, method, n)."""
        return {
            "labels": list(self.labels),
            "offsets": self.offsets.tolist(),
            "method": self.method,
            "n": self.n,
        }


class CalibrationFitter:
    """Accumulates label probabilities of fitting inputs; ``.calibrator`` freezes them into offsets.

    Args:
        labels: The C labels, in score-column order.
        method: Recorded in the calibrator (``"content_free"`` or ``"heldout"``).
    """

    def __init__(self, labels: Sequence[str], method: str = "heldout") -> None:
        self.labels = tuple(labels)
        self.method = method
        self.prob_sum = np.zeros(len(self.labels))
        self.n = 0
        self._cached: Calibrator | None = None

    def update(self, scores: np.ndarray) -> CalibrationFitter:
        """Add [N, C] label scores (log-likelihoods) of N fitting inputs."""
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != len(self.labels):
            raise ValueError(f"expected scores [N, {len(self.labels)}], got {s.shape}")
        self.prob_sum += np.exp(log_softmax(s)).sum(axis=0)
        self.n += s.shape[0]
        self._cached = None
        return self

    @property
    def calibrator(self) -> Calibrator:
        """The frozen calibrator of everything seen so far."""
        if self.n == 0:
            raise ValueError("CalibrationFitter: no scores were added")
        if self._cached is None:
            off = np.log(np.maximum(self.prob_sum / self.n, 1e-300))
            self._cached = Calibrator(self.labels, off - off.mean(), self.method, self.n)
        return self._cached


def content_free_prompts(
    task: Task, examples: Sequence[Example] = (), texts: Iterable[str] = CONTENT_FREE
) -> list[str]:
    """Prompts with content-free inputs; multiple-choice tasks pair each text with the choices of ``examples``.

    A CSQA prompt without choices would ask a different question, so its content-free inputs keep real choice
    lists (from non-evaluated items) and blank only the question.
    """
    texts = list(texts)
    if any(ex.choices for ex in examples):
        return [task.prompt(t, ex) for ex in examples for t in texts]
    return [task.prompt(t) for t in texts]


def heldout_examples(
    task: Task,
    exclude_ids: Iterable[str],
    n: int = 64,
    seed: int = 0,
    shots: Iterable[tuple[str, str]] = (),
    split: str | None = None,
    data_dir: str | None = None,
) -> list[Example]:
    """Pick n items for ``heldout`` calibration: never evaluated, never a shot.

    Taken from the end of the seeded ranking (``casceq.tasks.sample_rank``) whose start is the run's subsample,
    skipping ``exclude_ids`` and any item whose prompt is one of ``shots``; from the evaluated ``split`` and
    ``data_dir`` (RAVDESS ``test``: offsets are fitted on the held-out actors, never a model's training actors).
    """
    excluded = set(exclude_ids)
    shot_prompts = {p for p, _ in shots}
    pool = sorted(
        load_examples(task.name, split=split, data_dir=data_dir),
        key=lambda ex: sample_rank(ex.id, seed),
        reverse=True,
    )
    keep = [ex for ex in pool if ex.id not in excluded and task.prompt(ex.text, ex) not in shot_prompts]
    return keep[:n]


def fit_calibrator(
    llm: LLMBackend,
    task: Task,
    method: Method = DEFAULT_METHOD,
    *,
    heldout: Sequence[Example] = (),
    **score_kwargs: Any,
) -> Calibrator:
    """Fit a calibrator for ``task``'s labels on ``llm``.

    Args:
        llm: The back end (with the same prompt settings as the evaluation).
        task: A classification task.
        method: ``"content_free"``, ``"heldout"`` or ``"none"``.
        heldout: Items outside the evaluated set: the fitting inputs for ``"heldout"``, and the choice lists
            of content-free prompts for multiple-choice tasks.
        **score_kwargs: Passed to ``llm.score_options`` (e.g. ``shots=`` of ``HFCausalLM``).
    """
    method = method.replace("-", "_")  # type: ignore[assignment]  # the run config spells "content-free"
    if method == "none":
        return Calibrator.identity(task.labels)
    if method == "content_free":
        prompts = content_free_prompts(task, heldout[:5])
    elif method == "heldout":
        if not heldout:
            raise ValueError("heldout calibration needs held-out examples")
        prompts = [task.prompt(ex.text, ex) for ex in heldout]
    else:
        raise ValueError(f"unknown calibration method {method!r}")
    scores = llm.score_options(prompts, [list(task.labels)] * len(prompts), **score_kwargs)
    return CalibrationFitter(task.labels, method).update(scores).calibrator
