"""Erasure concepts (per-position targets Z [P, k], one-hot when categorical), completeness checks, results.

- ``text`` (text proxy): the utterance's first word, one of the ``MAX_TEXT_CLASSES`` most frequent first words
  of the fitting set that start at least ``MIN_TEXT_SUPPORT`` fitting utterances, or ``<other>``; every position
  of the utterance carries it. (Before 2026-12 at most 8 classes and no minimum support.)
- ``ctc``: the character at each position, from a *uniform alignment* of the normalised transcript over the
  utterance's positions (position p of P gets character ``floor(p * n_chars / P)``). The paper uses the CTC
  probe's per-position predictions; ``casceq.mech.probes.ctc_layer`` does not expose its trained head, so
  this uses the alignment targets instead (said so in every result's ``ctc_targets``).
- ``boc`` (bag of characters): the utterance's character frequencies over ``ALPHABET`` (continuous, summing
  to 1), every position.
- ``acoustic``: energy tertile (3) x pitch class (unvoiced, below or above the median voiced F0) = 9 classes per
  position, from the position's frames (``casceq.mech.capture.position_frames``); edges from the fitting set.
- ``acoustic2d`` (the paper's continuous acoustic concept): per position [energy, pitch], energy (dB) and ln F0
  standardised with the fitting positions' mean and standard deviation (F0 over voiced positions only); an
  unvoiced position's pitch is 0 (the voiced mean), a position without energy gets 0 too. LEACE takes this
  continuous Z as it is (rank <= 2).
- ``random`` (control): no targets; a random orthonormal subspace with as many dimensions as the text eraser
  removes at the same layer (``random_eraser``).

Every fitted concept's **support** (``ConceptSupport``): per dimension of Z, how many fitting utterances and
positions carry it (``Concept.carried``: the class of a one-hot concept, a character present for ``boc``, a
voiced position for ``acoustic2d``'s pitch), so a reader sees how many classes an eraser really had data for.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError, require
from casceq.mech.erasure_diagnostic import TextDiagnostic
from casceq.mech.leace import apply_eraser, fit_eraser
from casceq.mech.probes import ALPHABET, normalise_text

ERASURE_FILE = "mech/erasure.json"
"""Where ``casceq erase`` writes its result inside the output folder (schema in ``casceq.mech.erasure``)."""

PROBE_MAX_ROWS = 4000
"""Positions used per probe fit (subsampled, seeded): logistic regression on CPU stays a few seconds."""

PROBE_ALPHAS = tuple(float(10.0**k) for k in np.arange(-1.0, 7.01, 0.5))
"""Ridge penalties of the held-out checks of continuous concepts (chosen by leave-one-out, ``RidgeCV``)."""

CONCEPTS = ("text", "ctc", "boc", "acoustic", "acoustic2d", "random")
"""Erasure conditions besides ``none``, in table order."""

MAX_TEXT_CLASSES = 32
"""First-word classes of the text proxy at most (the rest is ``<other>``)."""

MIN_TEXT_SUPPORT = 2
"""A first word is a class of its own only when at least this many fitting utterances start with it."""

ACOUSTIC_DIMS = ("energy", "pitch")
"""The dimensions of the continuous ``acoustic2d`` concept."""

CTC_TARGETS = "uniform transcript alignment"
"""How the ``ctc`` concept's per-position characters are made (see the module docstring)."""


@dataclass(frozen=True)
class Concept:
    """A fitted concept definition: turns an utterance's transcript and frames into targets.

    Attributes:
        name: One of ``CONCEPTS`` (not ``random``).
        classes: Class names of a categorical concept (``()`` for the continuous ``boc``).
        energy_edges: Acoustic: the two energy tertile edges (dB).
        f0_median: Acoustic: median voiced F0 (Hz) of the fitting set.
        energy_stats: Acoustic2d: mean and standard deviation of the fitting positions' energy (dB).
        pitch_stats: Acoustic2d: mean and standard deviation of the fitting voiced positions' ln F0.
    """

    name: str
    classes: tuple[str, ...]
    energy_edges: tuple[float, float] = (0.0, 0.0)
    f0_median: float = 0.0
    energy_stats: tuple[float, float] = (0.0, 1.0)
    pitch_stats: tuple[float, float] = (0.0, 1.0)

    @property
    def categorical(self) -> bool:
        """Whether targets are one class per position (probe metric: accuracy; else R²)."""
        return bool(self.classes)

    @property
    def dim(self) -> int:
        """k, the width of Z."""
        return len(self.dims)

    @property
    def dims(self) -> tuple[str, ...]:
        """Names of Z's columns: the classes, the characters of ``boc``, or ``ACOUSTIC_DIMS``."""
        if self.classes:
            return self.classes
        return ACOUSTIC_DIMS if self.name == "acoustic2d" else tuple(ALPHABET)

    def labels(self, transcript: str, n_positions: int, frames: np.ndarray | None = None) -> np.ndarray:
        """Class index per position, int64 [P] (categorical concepts only)."""
        p = n_positions
        if self.name == "text":
            first = first_word(transcript)
            return np.full(p, self.classes.index(first) if first in self.classes else len(self.classes) - 1)
        if self.name == "ctc":
            chars = normalise_text(transcript) or " "
            idx = (np.arange(p) * len(chars)) // p
            return np.array([ALPHABET.index(chars[i]) for i in idx], dtype=np.int64)
        if self.name == "acoustic":
            if frames is None:
                raise InputError("the acoustic concept needs per-position frames")
            energy, f0 = frames[:, 2], frames[:, 3]
            e = np.digitize(np.nan_to_num(energy, nan=-200.0), self.energy_edges)
            pitch = np.where(np.isfinite(f0), 1 + (np.nan_to_num(f0) > self.f0_median), 0)
            return (e * 3 + pitch).astype(np.int64)
        raise InputError(f"concept {self.name!r} has no class labels")

    def carried(self, transcript: str, n_positions: int, frames: np.ndarray | None = None) -> np.ndarray:
        """Which dimensions each position carries, bool [P, k] (the support counted by ``concept_support``).

        A one-hot concept's class, a character present for ``boc``; for ``acoustic2d`` a position with an
        energy, and a voiced position for pitch (even one exactly at the mean, whose target is 0).
        """
        if self.name == "acoustic2d":
            if frames is None:
                raise InputError("the acoustic2d concept needs per-position frames")
            f0 = frames[:n_positions, 3]
            return np.stack(
                [np.isfinite(frames[:n_positions, 2]), np.isfinite(f0) & (np.nan_to_num(f0) > 0)], axis=1
            )
        return self.targets(transcript, n_positions, frames) != 0

    def targets(self, transcript: str, n_positions: int, frames: np.ndarray | None = None) -> np.ndarray:
        """Z, float32 [P, k]: one-hot classes, the bag-of-characters frequencies, or standardised energy/pitch."""
        if self.name == "acoustic2d":
            if frames is None:
                raise InputError("the acoustic2d concept needs per-position frames")
            energy, f0 = frames[:n_positions, 2], frames[:n_positions, 3]
            z = np.zeros((n_positions, 2), dtype=np.float32)
            ok = np.isfinite(energy)
            z[ok, 0] = (energy[ok] - self.energy_stats[0]) / self.energy_stats[1]
            voiced = np.isfinite(f0) & (np.nan_to_num(f0) > 0)
            z[voiced, 1] = (np.log(f0[voiced]) - self.pitch_stats[0]) / self.pitch_stats[1]
            return z
        if self.name == "boc":
            norm = normalise_text(transcript)
            counts = np.array([norm.count(c) for c in ALPHABET], dtype=np.float32)
            return np.repeat((counts / max(counts.sum(), 1.0))[None], n_positions, 0)
        z = np.zeros((n_positions, self.dim), dtype=np.float32)
        z[np.arange(n_positions), self.labels(transcript, n_positions, frames)] = 1.0
        return z


def first_word(transcript: str) -> str:
    """Return the normalised first word ('' for an empty transcript)."""
    words = normalise_text(transcript).split()
    return words[0] if words else ""


def define_concept(
    name: str, transcripts: Sequence[str], frames: Sequence[np.ndarray] | None = None
) -> Concept:
    """Fix a concept's classes (and acoustic bin edges) from the fitting set.

    Raises:
        InputError: Unknown concept, or acoustic without frames.
    """
    if name == "text":
        counts = Counter(first_word(t) for t in transcripts).most_common(MAX_TEXT_CLASSES)
        return Concept("text", (*[w for w, n in counts if n >= MIN_TEXT_SUPPORT], "<other>"))
    if name == "ctc":
        return Concept("ctc", tuple(ALPHABET))
    if name == "boc":
        return Concept("boc", ())
    if name == "acoustic":
        if not frames:
            raise InputError("the acoustic concept needs per-position frames (energy, F0)")
        allf = np.concatenate(list(frames))
        energy = allf[:, 2][np.isfinite(allf[:, 2])]
        f0 = allf[:, 3][np.isfinite(allf[:, 3])]
        edges = tuple(float(x) for x in np.quantile(energy, [1 / 3, 2 / 3])) if energy.size else (0.0, 0.0)
        classes = tuple(f"energy{e}-{p}" for e in range(3) for p in ("unvoiced", "low", "high"))
        return Concept("acoustic", classes, (edges[0], edges[1]), float(np.median(f0)) if f0.size else 0.0)
    if name == "acoustic2d":
        if not frames:
            raise InputError("the acoustic2d concept needs per-position frames (energy, F0)")
        allf = np.concatenate(list(frames))
        energy = allf[:, 2][np.isfinite(allf[:, 2])]
        f0 = allf[:, 3][np.isfinite(allf[:, 3]) & (np.nan_to_num(allf[:, 3]) > 0)]
        return Concept("acoustic2d", (), energy_stats=_mean_std(energy), pitch_stats=_mean_std(np.log(f0)))
    raise InputError(f"unknown concept {name!r}; known: {', '.join(CONCEPTS)}")


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (1 when constant or empty), for standardising a continuous target."""
    if not x.size:
        return (0.0, 1.0)
    sd = float(x.std())
    return (float(x.mean()), sd if sd > 1e-9 else 1.0)


@dataclass(frozen=True)
class ConceptSupport:
    """How many fitting utterances and positions carry each dimension of a concept's targets.

    Attributes:
        concept: Concept name.
        dims: Z's column names (classes, characters, ``energy``/``pitch``).
        n_utterances: Per dimension, fitting utterances with a non-zero target there at some position.
        n_positions: Per dimension, fitting positions with a non-zero target there.
        total_utterances: Fitting utterances.
        total_positions: Fitting positions.
    """

    concept: str
    dims: tuple[str, ...]
    n_utterances: tuple[int, ...]
    n_positions: tuple[int, ...]
    total_utterances: int
    total_positions: int

    @property
    def n_supported(self) -> int:
        """Dimensions carried by at least one fitting utterance (classes with support)."""
        return sum(n > 0 for n in self.n_utterances)

    def describe(self) -> str:
        """``dim utterances (positions)`` per dimension, for tables."""
        return ", ".join(
            f"`{d}` {u} ({p})" for d, u, p in zip(self.dims, self.n_utterances, self.n_positions, strict=True)
        )


def concept_support(concept: Concept, carried: Sequence[np.ndarray]) -> ConceptSupport:
    """The :class:`ConceptSupport` of per-utterance masks bool [P, k] (``Concept.carried``)."""
    nz = [np.asarray(m, dtype=bool) for m in carried]
    k = concept.dim
    return ConceptSupport(
        concept.name,
        concept.dims,
        tuple(int(sum(bool(m[:, j].any()) for m in nz)) for j in range(k)),
        tuple(int(sum(int(m[:, j].sum()) for m in nz)) for j in range(k)),
        len(nz),
        int(sum(len(m) for m in nz)),
    )


def random_eraser(width: int, rank: int, seed: int) -> Any:
    """Build a ``LeaceEraser`` removing a random ``rank``-dimensional orthonormal subspace (the control)."""
    import torch
    from concept_erasure import LeaceEraser

    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(width, max(rank, 1), generator=g))
    q = q[:, :rank]
    return LeaceEraser(proj_left=q, proj_right=q.T.contiguous(), bias=None)


def eraser_rank(eraser: Any) -> int:
    """Count the directions an eraser removes (non-zero columns of its left projection)."""
    return int((eraser.proj_left.abs().sum(0) > 1e-6).sum())


@dataclass(frozen=True)
class ProbeCheck:
    """Held-out decodability of one concept at one layer, before and after erasure (split by utterance)."""

    concept: str
    layer: int
    metric: str
    before: float
    after: float
    chance: float
    rank: int
    n_train: int
    n_test: int


def probe_score(concept: Any, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> float:
    """Held-out accuracy of logistic regression (categorical) or R² of ridge regression (continuous).

    Features are used as they are: standardising would blow the near-constant directions up (an erased
    direction's rounding noise, a norm's dead dimensions) to unit variance; measured to ruin the probe here.
    The ridge penalty is chosen by efficient leave-one-out over ``PROBE_ALPHAS`` (``RidgeCV``): a fixed
    ``alpha = 1`` overfitted real states (640 dimensions, ~200 positions) to held-out R² of -100 and below.
    """
    require("sklearn", "held-out erasure probes", package="scikit-learn", extra="mech")
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import r2_score

    if concept.categorical:
        if len(np.unique(ytr)) < 2:
            return float(np.mean(yte == ytr[0]))
        clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
        return float(np.mean(clf.predict(xte) == yte))
    return float(r2_score(yte, RidgeCV(alphas=PROBE_ALPHAS).fit(xtr, ytr).predict(xte)))


def heldout_check(
    concept: Any,
    layer: int,
    states: Sequence[np.ndarray],
    clips: Sequence[Any],
    frames: Sequence[Any],
    *,
    affine: bool = False,
    seed: int = 0,
) -> ProbeCheck:
    """Split utterances 80/20, fit an eraser on the 80%, score probes before/after on the 20%."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(clips))
    n_test = max(1, len(clips) // 5)
    test, train = set(order[:n_test].tolist()), order[n_test:].tolist()
    if not train:
        raise InputError(f"held-out check needs at least 2 utterances, got {len(clips)}")

    def rows(ids: Sequence[int], cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.concatenate([states[i] for i in ids])
        z = np.concatenate([concept.targets(clips[i].transcript, len(states[i]), frames[i]) for i in ids])
        y = (
            np.concatenate([concept.labels(clips[i].transcript, len(states[i]), frames[i]) for i in ids])
            if concept.categorical
            else z
        )
        keep = rng.permutation(len(x))[:cap]
        return x[keep], z[keep], y[keep]

    xtr, ztr, ytr = rows(train, PROBE_MAX_ROWS)
    xte, _, yte = rows(sorted(test), PROBE_MAX_ROWS)
    eraser = fit_eraser([xtr], [ztr], affine=affine, n_utterances=len(train))

    if concept.categorical:
        values, counts = np.unique(ytr, return_counts=True)
        chance = float(np.mean(yte == values[np.argmax(counts)]))
    else:
        chance = 0.0
    before = probe_score(concept, xtr, ytr, xte, yte)
    after = probe_score(concept, apply_eraser(eraser, xtr), ytr, apply_eraser(eraser, xte), yte)
    metric = "accuracy" if concept.categorical else "r2"
    return ProbeCheck(
        concept.name, layer, metric, before, after, chance, eraser_rank(eraser), len(train), n_test
    )


@dataclass(frozen=True)
class TaskAccuracy:
    """Accuracy of the speech LLM on one task under one erasure condition."""

    task: str
    condition: str
    n: int
    accuracy: float
    same_as_none: float
    correct: tuple[bool, ...] = ()


@dataclass(frozen=True)
class ErasureResult:
    """Table 7 / Figure 6 data and completeness checks (JSON schema in the module docstring)."""

    model: str
    layers: tuple[int, ...]
    positions: str
    affine: bool
    ctc_targets: str
    n_fit_utterances: int
    accuracy: tuple[TaskAccuracy, ...]
    probes: tuple[ProbeCheck, ...]
    calibration: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    gold: dict[str, list[str]] = field(default_factory=dict)
    items: dict[str, list[str]] = field(default_factory=dict)
    fit_items: list[str] = field(default_factory=list)
    diagnostic: TextDiagnostic | None = None
    support: tuple[ConceptSupport, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (schema in the module docstring)."""
        data = dataclasses.asdict(dataclasses.replace(self, diagnostic=None))
        data["diagnostic"] = self.diagnostic.to_json() if self.diagnostic is not None else None
        return {"kind": "erasure", "version": 1, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErasureResult:
        """Inverse of :meth:`to_json` (``kind`` and ``version`` are dropped)."""
        fields = {k: v for k, v in data.items() if k not in ("kind", "version")}
        fields["layers"] = tuple(data.get("layers", ()))
        fields["accuracy"] = tuple(
            TaskAccuracy(**{**a, "correct": tuple(a.get("correct", ()))}) for a in data.get("accuracy", ())
        )
        fields["probes"] = tuple(ProbeCheck(**p) for p in data.get("probes", ()))
        fields["support"] = tuple(
            ConceptSupport(
                s["concept"],
                tuple(s["dims"]),
                tuple(s["n_utterances"]),
                tuple(s["n_positions"]),
                s["total_utterances"],
                s["total_positions"],
            )
            for s in data.get("support", ())
        )
        diag = data.get("diagnostic")
        fields["diagnostic"] = TextDiagnostic.from_json(diag) if diag else None
        return cls(**fields)

    def markdown(self) -> str:
        """Table 7 (accuracy per task and condition) and the held-out probe table."""
        conds = list(dict.fromkeys(a.condition for a in self.accuracy))
        tasks = list(dict.fromkeys(a.task for a in self.accuracy))
        acc = {(a.task, a.condition): a.accuracy for a in self.accuracy}
        lines = ["| task | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds)]
        lines += [f"| {t} | " + " | ".join(f"{acc[(t, c)]:.3f}" for c in conds) + " |" for t in tasks]
        lines += [
            "",
            "| concept | layer | metric | before | after | chance | rank |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p.concept} | {p.layer} | {p.metric} | {p.before:.3f} | {p.after:.3f} | {p.chance:.3f} | {p.rank} |"
            for p in self.probes
        ]
        if self.support:
            lines += [
                "",
                "Fitting data per concept dimension: utterances (positions) that carry it.",
                "",
                "| concept | dimensions with support | utterances | positions | per dimension |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {s.concept} | {s.n_supported} of {len(s.dims)} | {s.total_utterances} | {s.total_positions} "
                f"| {s.describe()} |"
                for s in self.support
            ]
        if self.diagnostic is not None:
            lines += ["", "Does erasing the acoustic concept reduce text decodability? (§5.4)", ""]
            lines.append(self.diagnostic.markdown().rstrip("\n"))
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> Path:
        """Write ``mech/erasure.json`` and ``mech/erasure.md`` under ``out``; returns the JSON path."""
        path = Path(out) / ERASURE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        path.with_suffix(".md").write_text(self.markdown())
        return path
