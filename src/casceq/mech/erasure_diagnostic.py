"""The paper's §5.4 diagnostic (does erasing the acoustic concept reduce text decodability?).

Text decodability is the **bag-of-characters ridge readout** of ``casceq.mech.probes`` (an utterance's mean state
at a layer -> its character counts over ``ALPHABET``; R² averaged over the characters that vary in the scored
utterances). For each condition (no erasure, the acoustic eraser, a random-subspace eraser of the **same rank**
as the acoustic one) the readout is fitted on that condition's states of the *training* utterances (alpha chosen
on a seeded 20% of them, then refitted on all) and scored on the same condition's states of the *held-out*
utterances, which the erasers were never fitted on (``check_heldout``; an overlap is a ``LeakageError``).

Per layer: R² none / erased / control, the drops ``none - erased`` and ``none - control`` and the excess drop
``(none - erased) - (none - control) = control - erased``, each with a percentile interval from an
**item-level bootstrap** of the held-out utterances (all voices of one item, ``id`` before ``@``, are resampled
together; the readouts stay fixed). Verdict per layer from the excess drop's interval: ``reduced more than
random`` (interval above 0), ``reduced less than random`` (below 0) or ``inconclusive``.

The states are given per condition; ``casceq.mech.erasure.text_diagnostic`` collects them by running the model
with each condition's erasers active at every probed layer at once (as during evaluation), so a layer's row
shows the effect of all erasers up to it; the control is rank-matched layer by layer (``rank`` is the layer's
own eraser's: it can be 0 at a later layer when the earlier erasers left nothing of the concept to remove).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from casceq.errors import InputError, LeakageError
from casceq.mech.probes import char_counts
from casceq.mech.ridge import RidgeFitter

READOUT = (
    "bag-of-characters ridge R² (utterance-mean state -> character counts), mean over varying characters"
)
"""What the diagnostic's text decodability is (recorded in every result)."""

N_BOOT = 2000
"""Bootstrap resamples of the held-out items."""

LEVEL = 0.95
"""Coverage of the bootstrap intervals."""

MIN_HELDOUT_ITEMS = 4
"""Fewest held-out items the diagnostic scores on (fewer: an ``InputError``)."""

VAL_FRACTION = 0.2
"""Training utterances used to choose the readout's ridge alpha (then refitted on all training utterances)."""


@dataclass(frozen=True)
class DiagnosticRow:
    """Text decodability at one layer with no erasure, with a concept's eraser, and with its random control.

    Attributes:
        concept: The erased concept (an acoustic one).
        layer: Layer index.
        control: Name of the control condition (a random subspace of ``rank`` directions).
        r2_none: Held-out readout R² without erasure.
        r2_erased: ... with the concept's erasers active.
        r2_control: ... with the random control's erasers active.
        drop: ``r2_none - r2_erased``, with ``drop_ci`` (item bootstrap).
        control_drop: ``r2_none - r2_control``, with ``control_drop_ci``.
        excess: ``drop - control_drop`` (= ``r2_control - r2_erased``), with ``excess_ci``.
        rank: Directions the concept's eraser removes at this layer.
        control_rank: Directions the control removes (equal to ``rank``).
        verdict: ``reduced more than random`` / ``reduced less than random`` / ``inconclusive``.
    """

    concept: str
    layer: int
    control: str
    r2_none: float
    r2_erased: float
    r2_control: float
    drop: float
    drop_ci: tuple[float, float]
    control_drop: float
    control_drop_ci: tuple[float, float]
    excess: float
    excess_ci: tuple[float, float]
    rank: int
    control_rank: int
    verdict: str


@dataclass(frozen=True)
class TextDiagnostic:
    """The §5.4 diagnostic over the probed layers (``ErasureResult.diagnostic``; JSON via ``to_json``).

    Attributes:
        readout: What text decodability is (``READOUT``).
        n_train: Training utterances of the readout (the erasers' fitting utterances).
        n_test: Held-out utterances scored (never fitted on by the erasers).
        n_test_items: Held-out items (bootstrap clusters).
        n_boot: Bootstrap resamples.
        level: Interval coverage.
        seed: Seed of the alpha split, the bootstrap and the random controls.
        test_items: The held-out items.
        rows: One :class:`DiagnosticRow` per (concept, layer).
    """

    readout: str
    n_train: int
    n_test: int
    n_test_items: int
    n_boot: int
    level: float
    seed: int
    test_items: tuple[str, ...]
    rows: tuple[DiagnosticRow, ...]

    def to_json(self) -> dict[str, Any]:
        """A strict-JSON dict (undefined numbers as ``null``)."""
        return _nan_to_none(asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TextDiagnostic:
        """Inverse of :meth:`to_json` (``null`` reads back as NaN)."""
        rows = []
        for r in data.get("rows", ()):
            r = {k: _none_to_nan(v) for k, v in r.items()}
            rows.append(DiagnosticRow(**r))
        return cls(
            str(data["readout"]),
            int(data["n_train"]),
            int(data["n_test"]),
            int(data["n_test_items"]),
            int(data["n_boot"]),
            float(data["level"]),
            int(data["seed"]),
            tuple(data.get("test_items", ())),
            tuple(rows),
        )

    def markdown(self) -> str:
        """The per-layer table and a one-line answer per concept."""
        pct = round(100 * self.level)
        lines = [
            f"Text decodability ({self.readout}); readout fitted on {self.n_train} training utterances, scored on "
            f"{self.n_test} held-out utterances ({self.n_test_items} items) the erasers never saw; "
            f"{pct}% item-bootstrap intervals ({self.n_boot} resamples).",
            "",
            "| concept | layer | rank | R² none | R² erased | R² random | drop (erased) | drop (random) | "
            "excess drop | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.concept} | {r.layer} | {r.rank} | {_f(r.r2_none)} | {_f(r.r2_erased)} | "
                f"{_f(r.r2_control)} | {_ci(r.drop, r.drop_ci)} | {_ci(r.control_drop, r.control_drop_ci)} | "
                f"{_ci(r.excess, r.excess_ci)} | {r.verdict} |"
            )
        lines.append("")
        for concept in dict.fromkeys(r.concept for r in self.rows):
            rows = [r for r in self.rows if r.concept == concept]
            more = [r.layer for r in rows if r.verdict == VERDICTS[0]]
            blind = [r.layer for r in rows if r.verdict == VERDICTS[3]]
            lines.append(
                f"- {concept}: erasure reduces text decodability more than a random subspace of the same rank at "
                f"{len(more)} of {len(rows)} layers"
                + (f" ({', '.join(map(str, more))})" if more else "")
                + (
                    f"; text is not shown decodable before erasure at {len(blind)} of {len(rows)} layers, where "
                    "the question cannot be asked"
                    if blind
                    else ""
                )
                + "."
            )
        return "\n".join(lines) + "\n"


VERDICTS = (
    "reduced more than random",
    "reduced less than random",
    "inconclusive",
    "not testable: text not decodable before erasure",
)


def _f(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}"


def _ci(x: float, ci: tuple[float, float]) -> str:
    return f"{_f(x)} [{_f(ci[0])}, {_f(ci[1])}]"


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_nan_to_none(v) for v in x]
    return x


def _none_to_nan(x: Any) -> Any:
    if x is None:
        return float("nan")
    if isinstance(x, list):
        return tuple(float("nan") if v is None else v for v in x)
    return x


def item_of(utterance_id: str) -> str:
    """The item of an utterance id (the part before ``@``: voices of one item are one cluster)."""
    return utterance_id.split("@")[0]


def check_heldout(fitted: Sequence[str], heldout: Sequence[str]) -> None:
    """Refuse held-out utterances whose item the erasers were fitted on (compared by item).

    Raises:
        LeakageError: Naming how many held-out items are fitting items.
    """
    both = {item_of(u) for u in fitted} & {item_of(u) for u in heldout}
    if both:
        raise LeakageError(
            f"{len(both)} held-out items of the text-decodability diagnostic are among the erasers' fitting "
            f"utterances (e.g. {sorted(both)[:3]}): the diagnostic must score utterances the erasers never saw"
        )


def split_heldout(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of (fitting, held-out) utterances: ``fraction`` of the items, ranked by ``sha256(seed:item)``.

    Raises:
        InputError: A fraction outside (0, 1), or fewer than ``MIN_HELDOUT_ITEMS`` held-out items or fewer than
            4 fitting items.
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"the diagnostic's held-out fraction must be in (0, 1), got {fraction}")
    items = sorted({item_of(u) for u in ids}, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).digest())
    n_held = round(fraction * len(items))
    if n_held < MIN_HELDOUT_ITEMS or len(items) - n_held < 4:
        raise InputError(
            f"the text-decodability diagnostic holds out {fraction:.0%} of {len(items)} fitting items "
            f"({n_held}): it needs >= {MIN_HELDOUT_ITEMS} held-out and >= 4 fitting items (fit on more utterances)"
        )
    held = set(items[:n_held])
    fit = [i for i, u in enumerate(ids) if item_of(u) not in held]
    test = [i for i, u in enumerate(ids) if item_of(u) in held]
    return fit, test


def readout_predictions(
    xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Fit the ridge readout on training rows (alpha on a seeded 20%, then all rows); predictions [M, T] on ``xte``.

    Raises:
        InputError: Fewer than 4 training rows.
    """
    n = len(xtr)
    if n < 4:
        raise InputError(f"the text readout needs >= 4 training utterances, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(2, round(VAL_FRACTION * n))
    fitter = RidgeFitter(xtr.shape[1], ytr.shape[1])
    fitter.update("fit", xtr[order[n_val:]], ytr[order[n_val:]])
    fitter.update("val", xtr[order[:n_val]], ytr[order[:n_val]])
    probe = fitter.probe()
    return probe(xte), probe.alpha


def r2_mean(y: np.ndarray, pred: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean R² over targets that vary, for each row of ``weights`` [B, M] (utterance multiplicities) -> [B].

    Without weights: one value (shape [1]) for the utterances as they are.
    """
    w = np.ones((1, len(y))) if weights is None else weights
    n = w.sum(1, keepdims=True)
    sse = w @ (y - pred) ** 2
    sy, syy = w @ y, w @ y**2
    sst = syy - sy**2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 1e-9 * np.maximum(n, 1), 1.0 - sse / sst, np.nan)
        valid = np.isfinite(r2)
        total = np.where(valid, r2, 0.0).sum(1)
        count = valid.sum(1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bootstrap_weights(ids: Sequence[str], n_boot: int, seed: int) -> np.ndarray:
    """Utterance multiplicities [n_boot, M] of an item-level bootstrap (items drawn with replacement)."""
    items = [item_of(u) for u in ids]
    distinct = list(dict.fromkeys(items))
    index = np.array([distinct.index(i) for i in items])
    draws = np.random.default_rng(seed).integers(0, len(distinct), size=(n_boot, len(distinct)))
    counts = np.stack([np.bincount(d, minlength=len(distinct)) for d in draws])  # [B, items]
    return counts[:, index].astype(np.float64)


def _interval(x: np.ndarray, level: float) -> tuple[float, float]:
    if not np.isfinite(x).any():
        return (float("nan"), float("nan"))
    lo, hi = np.nanpercentile(x, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


def verdict(ci: tuple[float, float], decodable_low: float | None = None) -> str:
    """From the excess drop's interval: above 0, below 0, or straddling (or undefined).

    ``decodable_low``: the lower end of the interval of the held-out R² without erasure. When it is not above 0
    the text is not shown decodable to begin with, so no erasure can be said to reduce its decodability
    (``VERDICTS[3]``), whatever the drops.
    """
    if decodable_low is not None and not (math.isfinite(decodable_low) and decodable_low > 0):
        return VERDICTS[3]
    if not all(math.isfinite(v) for v in ci):
        return VERDICTS[2]
    return VERDICTS[0] if ci[0] > 0 else VERDICTS[1] if ci[1] < 0 else VERDICTS[2]


def text_decodability(
    means: Mapping[str, Mapping[int, np.ndarray]],
    transcripts: Sequence[str],
    ids: Sequence[str],
    train: Sequence[int],
    test: Sequence[int],
    *,
    concept: str,
    control: str,
    ranks: Mapping[str, Mapping[int, int]],
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> list[DiagnosticRow]:
    """Rows of the diagnostic for one concept, from utterance-mean states per condition.

    Args:
        means: ``{"none" | concept | control: {layer: [N, D] utterance-mean states}}``, rows in ``ids`` order.
        transcripts: N transcripts (the readout's targets).
        ids: N utterance ids (``item@voice``; items are the bootstrap clusters).
        train: Indices of the readout's training utterances.
        test: Indices of the held-out utterances.
        concept: The erased concept's condition name.
        control: The random control's condition name.
        ranks: ``{condition: {layer: rank}}`` of ``concept`` and ``control``.
        n_boot: Bootstrap resamples.
        level: Interval coverage.
        seed: Seed of the alpha split and of the bootstrap.

    Raises:
        LeakageError: A held-out utterance's item among the training ones.
    """
    check_heldout([ids[i] for i in train], [ids[i] for i in test])
    y = np.stack([char_counts(t) for t in transcripts])
    ytr, yte = y[list(train)], y[list(test)]
    weights = bootstrap_weights([ids[i] for i in test], n_boot, seed)
    rows = []
    for layer in sorted(means["none"]):
        point, boot = {}, {}
        for cond in ("none", concept, control):
            x = np.asarray(means[cond][layer], dtype=np.float64)
            pred, _ = readout_predictions(x[list(train)], ytr, x[list(test)], seed=seed + layer)
            point[cond] = float(r2_mean(yte, pred)[0])
            boot[cond] = r2_mean(yte, pred, weights)
        drop, cdrop = boot["none"] - boot[concept], boot["none"] - boot[control]
        excess_ci = _interval(drop - cdrop, level)
        rows.append(
            DiagnosticRow(
                concept,
                layer,
                control,
                point["none"],
                point[concept],
                point[control],
                point["none"] - point[concept],
                _interval(drop, level),
                point["none"] - point[control],
                _interval(cdrop, level),
                point[control] - point[concept],
                excess_ci,
                int(ranks[concept][layer]),
                int(ranks[control][layer]),
                verdict(excess_ci, _interval(boot["none"], level)[0]),
            )
        )
    return rows
