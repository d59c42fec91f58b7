"""Conditional error overlap and discordance between systems.

Conditional error overlap asks: when both systems are wrong, do they give the *same* wrong answer? A cascade
in disguise makes the same mistakes as its matched cascade, so its overlap sits far above the chance level
``1 / (C - 1)`` of two independent errors spread uniformly over the C - 1 wrong labels.

Conventions (the paper's): ``INVALID`` is always wrong, and two ``INVALID`` answers count as the same wrong
answer. Overlap is undefined (``None``) when the two systems are never wrong together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairCounts:
    """Per-pair counts over the same n examples; every field is an int64 array [P].

    Attributes:
        both_wrong: Examples both systems got wrong.
        same_wrong: Of those, examples where both gave the same (wrong) label.
        a_right_b_wrong: Discordant examples where only b is wrong (McNemar's b).
        a_wrong_b_right: Discordant examples where only a is wrong (McNemar's c).
    """

    both_wrong: np.ndarray
    same_wrong: np.ndarray
    a_right_b_wrong: np.ndarray
    a_wrong_b_right: np.ndarray


def pair_counts(codes: np.ndarray, correct: np.ndarray, pairs: np.ndarray) -> PairCounts:
    """Error-overlap and discordance counts for many pairs at once.

    Args:
        codes: int array [S, n] of label codes (``INVALID`` has a code of its own).
        correct: bool array [S, n], whether each system is right on each example (``INVALID`` is False).
        pairs: int array [P, 2] of system row indices (a, b).

    Returns:
        The counts, each an int64 array [P].
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    wrong_a, wrong_b = ~correct[a], ~correct[b]
    both = wrong_a & wrong_b
    same = both & (codes[a] == codes[b])
    return PairCounts(
        both_wrong=both.sum(axis=1),
        same_wrong=same.sum(axis=1),
        a_right_b_wrong=(~wrong_a & wrong_b).sum(axis=1),
        a_wrong_b_right=(wrong_a & ~wrong_b).sum(axis=1),
    )


def chance_overlap(n_classes: int) -> float | None:
    """Overlap expected if two errors were independent and uniform over the C - 1 wrong labels.

    Args:
        n_classes: C, the task's number of labels (``INVALID`` not counted).

    Returns:
        ``1 / (C - 1)``, or None for C < 2 (no wrong label exists).
    """
    return 1.0 / (n_classes - 1) if n_classes >= 2 else None


def overlap(same_wrong: int, both_wrong: int) -> float | None:
    """Conditional error overlap ``same_wrong / both_wrong``; None when ``both_wrong`` is 0."""
    return same_wrong / both_wrong if both_wrong > 0 else None


@dataclass(frozen=True)
class Disagreements:
    """Example ids of one pair, by how the two systems differ (for reports and error analysis).

    Attributes:
        labels_differ: The two predicted labels differ (whatever the gold label).
        both_wrong_same: Both wrong with the same label (two INVALIDs included).
        both_wrong_different: Both wrong with different labels.
        a_right_b_wrong: Only b is wrong.
        a_wrong_b_right: Only a is wrong.
    """

    labels_differ: tuple[str, ...]
    both_wrong_same: tuple[str, ...]
    both_wrong_different: tuple[str, ...]
    a_right_b_wrong: tuple[str, ...]
    a_wrong_b_right: tuple[str, ...]


def disagreements(
    example_ids: tuple[str, ...],
    labels_a: tuple[str, ...],
    labels_b: tuple[str, ...],
    correct_a: tuple[bool, ...],
    correct_b: tuple[bool, ...],
) -> Disagreements:
    """Split the aligned examples of one pair into the groups of :class:`Disagreements`.

    Args:
        example_ids: n example ids.
        labels_a: n labels of system a (for open-answer tasks, the normalised answers).
        labels_b: n labels of system b.
        correct_a: n correctness flags of a.
        correct_b: n correctness flags of b.

    Returns:
        The id groups, each in the order of ``example_ids``.
    """
    rows = list(zip(example_ids, labels_a, labels_b, correct_a, correct_b, strict=True))
    return Disagreements(
        labels_differ=tuple(i for i, la, lb, _, _ in rows if la != lb),
        both_wrong_same=tuple(i for i, la, lb, ca, cb in rows if not ca and not cb and la == lb),
        both_wrong_different=tuple(i for i, la, lb, ca, cb in rows if not ca and not cb and la != lb),
        a_right_b_wrong=tuple(i for i, _, _, ca, cb in rows if ca and not cb),
        a_wrong_b_right=tuple(i for i, _, _, ca, cb in rows if not ca and cb),
    )
