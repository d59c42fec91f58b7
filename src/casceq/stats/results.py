"""Typed results of ``casceq compare`` and their JSON form.

The JSON written by ``casceq compare --json`` has these top-level keys, each a list of rows::

    accuracy            {system, task, condition, n, n_items, n_clips, accuracy, ci}
    pairs               {a, b, task, condition, n, n_items, n_clips, kappa, kappa_ci, both_wrong, same_wrong,
                         overlap, overlap_ci, overlap_chance, overlap_ratio, overlap_p, a_right_b_wrong,
                         a_wrong_b_right, mcnemar_p, q_value, matched}
    backbone_confound   {speech_llm, backbone, task, condition, n_items, n_clips, matched, mismatched,
                         mismatched_backbone, kappa_matched, kappa_mismatched, delta_kappa, delta_ci}
    invalid             {system, task, condition, n_invalid, share, n_items, n_clips}
    label_distribution  {task, condition, labels, gold, systems: {name: counts aligned with labels}}

and ``notes``, a list of sentences (inferred kinds and labels, left-out systems, why a kappa is undefined).

Undefined numbers (kappa with p_e = 1, overlap with no shared error, intervals without resamples) are
``null``; the JSON never contains NaN.

``n_clips`` counts rows (an example in one voice); ``n_items`` counts the items they were made from (the
``item`` field; see ``docs/statistics.md``). ``n`` is ``n_clips``, kept for readers of older output. Every
interval and test treats the item as the unit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from casceq.stats.cluster import item_index
from casceq.stats.errors import Disagreements, disagreements

Interval = tuple[float, float] | None


@dataclass(frozen=True)
class Accuracy:
    """Accuracy of one system on one task and condition, with a Wilson 95% interval.

    The interval is item-aware (``casceq.stats.cluster.clustered_proportion_ci``): plain Wilson when every
    item has one clip. ``n`` is the number of clips (= ``n_clips``); ``n_items`` 0 means "not recorded".
    """

    system: str
    task: str
    condition: str
    n: int
    correct: int
    accuracy: float
    ci: tuple[float, float]
    n_items: int = 0

    @property
    def n_clips(self) -> int:
        """Clips (rows) scored: the same as ``n``."""
        return self.n


@dataclass(frozen=True)
class Agreement:
    """Everything compared between two systems on one task and condition (classification tasks only).

    ``kappa`` is Cohen's kappa of the predicted labels (NaN when undefined), ``kappa_ci`` its percentile
    bootstrap interval over items (None with ``--bootstrap 0``), ``overlap`` the conditional error overlap
    (None when never both wrong) with ``overlap_ci`` its item-aware Wilson interval and ``overlap_p`` the
    one-sided item-aware binomial p of ``overlap > overlap_chance``, ``mcnemar_p`` the cluster-adjusted
    McNemar p on correctness (the exact McNemar test with one clip per item) and ``q_value`` its
    Benjamini–Hochberg adjustment over every pair, task and condition of the call. ``matched`` says both
    systems declare the same (non-null) LLM backbone. ``n`` is the number of clips (= ``n_clips``).
    """

    a: str
    b: str
    task: str
    condition: str
    n: int
    kappa: float
    kappa_ci: Interval
    both_wrong: int
    same_wrong: int
    overlap: float | None
    overlap_chance: float | None
    overlap_ratio: float | None
    a_right_b_wrong: int
    a_wrong_b_right: int
    mcnemar_p: float
    q_value: float
    matched: bool
    n_items: int = 0
    overlap_ci: Interval = None
    overlap_p: float | None = None

    @property
    def n_clips(self) -> int:
        """Clips (rows) compared: the same as ``n``."""
        return self.n


@dataclass(frozen=True)
class BackboneConfound:
    """Delta kappa = kappa(speech LLM, matched cascade) - kappa(speech LLM, mismatched cascade).

    A positive delta says the speech LLM agrees more with the cascade sharing its backbone: part of what
    looks like "cascade-like behaviour" is the shared LLM, which is why comparisons must be matched.
    ``delta_ci`` comes from the same bootstrap resamples as both kappas.
    """

    speech_llm: str
    backbone: str
    task: str
    condition: str
    matched: str
    mismatched: str
    mismatched_backbone: str
    kappa_matched: float
    kappa_mismatched: float
    delta_kappa: float
    delta_ci: Interval
    n_items: int = 0
    n_clips: int = 0


@dataclass(frozen=True)
class InvalidCount:
    """How many answers (clips) of a system parsed to ``INVALID``; ``share`` is of ``n_clips``."""

    system: str
    task: str
    condition: str
    n_invalid: int
    share: float
    n_items: int = 0
    n_clips: int = 0


@dataclass(frozen=True)
class LabelDistribution:
    """Counts of each label (task labels, then ``INVALID``) for the gold labels and every system."""

    task: str
    condition: str
    labels: tuple[str, ...]
    gold: tuple[int, ...]
    systems: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class AlignedGroup:
    """The aligned predictions of one task and condition (examples in sorted id order).

    ``labels[s][i]`` and ``correct[s][i]`` belong to ``systems[s]`` and ``example_ids[i]``; ``items[i]`` is
    the item (cluster) of ``example_ids[i]`` (empty: every example is its own item).
    """

    task: str
    condition: str
    example_ids: tuple[str, ...]
    gold: tuple[str, ...]
    systems: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    correct: tuple[tuple[bool, ...], ...]
    items: tuple[str, ...] = ()

    def clusters(self) -> tuple[np.ndarray, int]:
        """Item code of every example, ``0 .. G-1``, and G (see ``casceq.stats.cluster.item_index``)."""
        return item_index(self.items or self.example_ids)


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _interval(ci: Interval) -> list[float | None] | None:
    return None if ci is None else [_num(ci[0]), _num(ci[1])]


@dataclass(frozen=True)
class CompareResult:
    """All behavioural statistics of one ``compare`` call.

    Attributes:
        accuracy: One row per system, task and condition.
        pairs: One row per compared pair of a classification task and condition.
        backbone_confound: One row per speech LLM, matched cascade and mismatched cascade.
        invalid: ``INVALID`` counts per system, task and condition.
        label_distribution: Label counts per classification task and condition.
        n_bootstrap: Bootstrap resamples used (0 = no intervals).
        seed: Bootstrap seed.
        notes: Human-readable remarks (inferred task labels, dropped ids under ``--intersect``).
        groups: The aligned data, for :meth:`disagreements`; not serialised.
    """

    accuracy: tuple[Accuracy, ...]
    pairs: tuple[Agreement, ...]
    backbone_confound: tuple[BackboneConfound, ...]
    invalid: tuple[InvalidCount, ...]
    label_distribution: tuple[LabelDistribution, ...]
    n_bootstrap: int
    seed: int
    notes: tuple[str, ...] = ()
    groups: tuple[AlignedGroup, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, list[Any]]:
        """Return the JSON-ready form (see the module docstring for the schema)."""
        return {
            "accuracy": [
                {
                    "system": r.system,
                    "task": r.task,
                    "condition": r.condition,
                    "n": r.n,
                    "n_items": r.n_items,
                    "n_clips": r.n_clips,
                    "accuracy": r.accuracy,
                    "ci": _interval(r.ci),
                }
                for r in self.accuracy
            ],
            "pairs": [
                {
                    "a": r.a,
                    "b": r.b,
                    "task": r.task,
                    "condition": r.condition,
                    "n": r.n,
                    "n_items": r.n_items,
                    "n_clips": r.n_clips,
                    "kappa": _num(r.kappa),
                    "kappa_ci": _interval(r.kappa_ci),
                    "both_wrong": r.both_wrong,
                    "same_wrong": r.same_wrong,
                    "overlap": _num(r.overlap),
                    "overlap_ci": _interval(r.overlap_ci),
                    "overlap_chance": _num(r.overlap_chance),
                    "overlap_ratio": _num(r.overlap_ratio),
                    "overlap_p": _num(r.overlap_p),
                    "a_right_b_wrong": r.a_right_b_wrong,
                    "a_wrong_b_right": r.a_wrong_b_right,
                    "mcnemar_p": r.mcnemar_p,
                    "q_value": r.q_value,
                    "matched": r.matched,
                }
                for r in self.pairs
            ],
            "backbone_confound": [
                {
                    "speech_llm": r.speech_llm,
                    "backbone": r.backbone,
                    "task": r.task,
                    "condition": r.condition,
                    "n_items": r.n_items,
                    "n_clips": r.n_clips,
                    "matched": r.matched,
                    "mismatched": r.mismatched,
                    "mismatched_backbone": r.mismatched_backbone,
                    "kappa_matched": _num(r.kappa_matched),
                    "kappa_mismatched": _num(r.kappa_mismatched),
                    "delta_kappa": _num(r.delta_kappa),
                    "delta_ci": _interval(r.delta_ci),
                }
                for r in self.backbone_confound
            ],
            "invalid": [
                {
                    "system": r.system,
                    "task": r.task,
                    "condition": r.condition,
                    "n_invalid": r.n_invalid,
                    "share": r.share,
                    "n_items": r.n_items,
                    "n_clips": r.n_clips,
                }
                for r in self.invalid
            ],
            "label_distribution": [
                {
                    "task": r.task,
                    "condition": r.condition,
                    "labels": list(r.labels),
                    "gold": list(r.gold),
                    "systems": {name: list(c) for name, c in r.systems.items()},
                }
                for r in self.label_distribution
            ],
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Return the JSON text written by ``casceq compare --json`` (strict JSON: no NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def disagreements(self, a: str, b: str, task: str, condition: str) -> Disagreements:
        """Return the example ids where systems ``a`` and ``b`` differ on ``task`` under ``condition``.

        Raises:
            KeyError: No aligned data holds both systems for that task and condition.
        """
        for g in self.groups:
            if g.task == task and g.condition == condition and a in g.systems and b in g.systems:
                ia, ib = g.systems.index(a), g.systems.index(b)
                return disagreements(g.example_ids, g.labels[ia], g.labels[ib], g.correct[ia], g.correct[ib])
        raise KeyError(f"no aligned predictions of {a!r} and {b!r} on task {task!r}, condition {condition!r}")
