"""Linear probes on captured states: the paper's Table 4 (energy R², pitch R², CTC 1 − CER, bag-of-characters R²).

Splits are **by utterance** (or by any group in the records' ``meta``, e.g. ``actor`` or ``voice``), never by
position: positions of one utterance share speaker, recording and words, so a position-level split leaks them
and inflates scores. Groups are ranked by a seeded hash of their name (independent of order and of N): 20% go
to ``test``, 20% of the rest to ``val`` (alpha choice, CTC early checks), the rest to ``fit``.

- energy: ridge from a position's state to the energy (dB) of its time span (``casceq.audio.features.align``).
- pitch: ridge to log F0 (natural log of Hz) on voiced positions only (voiced fraction ≥ 0.5 under the capture's
  tracker and voicing rule, which the results record).
- boc: ridge from an utterance's mean state to its character counts; R² averaged over characters.
- ctc: see "The CTC probe" below.

Ridge probes stream shards into sufficient statistics (``casceq.mech.ridge``): memory is flat in N.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from casceq.audio.textnorm import edit_distance as levenshtein
from casceq.errors import InputError
from casceq.mech.ridge import RidgeFitter
from casceq.mech.shards import CaptureReader, UtteranceRecord

PROBES = ("energy", "pitch", "ctc", "boc")
METRICS = {"energy": "R²", "pitch": "R²", "ctc": "1 − CER", "boc": "R²"}
VOICED_MIN = 0.5
"""A position is voiced (enters the pitch probe) when at least this fraction of its frames is voiced."""
ALPHABET = "abcdefghijklmnopqrstuvwxyz' "
"""Characters of the CTC and bag-of-characters probes (lower-cased; other characters are dropped)."""


def normalise_text(text: str) -> str:
    """Lower-case, map to :data:`ALPHABET` (other characters dropped, runs of spaces collapsed)."""
    kept = "".join(c if c in ALPHABET else " " if c.isspace() or c in "-" else "" for c in text.lower())
    return " ".join(kept.split())


def group_of(record: UtteranceRecord, split_by: str) -> str:
    """Return the split group of an utterance: its id (``split_by="utterance"``) or ``meta[split_by]``."""
    if split_by == "utterance":
        return record.id
    if split_by not in record.meta:
        raise InputError(f"utterance {record.id!r} has no meta field {split_by!r} to split by")
    return str(record.meta[split_by])


def split_parts(
    groups: Sequence[str], seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.2
) -> dict[str, str]:
    """Assign each distinct group to ``"fit"``, ``"val"`` or ``"test"`` (seeded, order-independent).

    Raises:
        InputError: Fewer than 5 groups (no meaningful 80/20 split).
    """
    distinct = sorted(set(groups), key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).digest())
    if len(distinct) < 5:
        raise InputError(
            f"only {len(distinct)} split groups: probes need at least 5 (more than the dimension)"
        )
    n_test = max(1, round(test_fraction * len(distinct)))
    n_val = max(1, round(val_fraction * (len(distinct) - n_test)))
    return {
        g: ("test" if i < n_test else "val" if i < n_test + n_val else "fit") for i, g in enumerate(distinct)
    }


@dataclass(frozen=True)
class LayerScore:
    """One probe's held-out score at one layer.

    Attributes:
        probe: ``"energy"``, ``"pitch"``, ``"ctc"`` or ``"boc"``.
        layer: Layer index.
        score: R² (energy, pitch, boc) or 1 − CER (ctc) on the test utterances.
        n_train_utterances: Utterances used for fitting (fit + val).
        n_test_utterances: Test utterances.
        n_train_rows: Training rows (positions; utterances for boc).
        n_test_rows: Test rows.
        dim: Input dimension D.
        alpha: Ridge penalty chosen on validation (None for ctc).
        warning: Non-empty when there are too few rows for the dimension or utterances were skipped; says why
            a score is undefined (NaN here, ``null`` in ``probes.json``).
        n_skipped_utterances: Utterances that gave the probe no row (pitch: no voiced position, e.g. silence).
    """

    probe: str
    layer: int
    score: float
    n_train_utterances: int
    n_test_utterances: int
    n_train_rows: int
    n_test_rows: int
    dim: int
    alpha: float | None = None
    warning: str = ""
    n_skipped_utterances: int = 0


@dataclass(frozen=True)
class ProbeResults:
    """All probe scores of one capture.

    Attributes:
        model: Model spec of the capture.
        fingerprint: The model's weights fingerprint.
        capture: Capture folder.
        layers: Probed layers.
        scores: One :class:`LayerScore` per (probe, layer).
        seed: Split seed.
        split_by: ``"utterance"`` or the meta field used as group.
        n_utterances: Utterances in the capture.
        tracker: Pitch tracker of the features.
        voicing_rule: Voicing rule of the features.
        settings: Probe settings (CTC epochs, learning rate, ...).
    """

    model: str
    fingerprint: str
    capture: str
    layers: tuple[int, ...]
    scores: tuple[LayerScore, ...]
    seed: int
    split_by: str
    n_utterances: int
    tracker: str
    voicing_rule: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def score(self, probe: str, layer: int) -> float:
        """Return the score of ``probe`` at ``layer`` (NaN when not run)."""
        return next((s.score for s in self.scores if s.probe == probe and s.layer == layer), float("nan"))

    def to_json(self) -> str:
        """Strict JSON text of the results: an undefined score is ``null`` (its ``warning`` says why), never NaN."""
        data = asdict(self)
        for s in data["scores"]:
            for key in ("score", "alpha"):
                if isinstance(s[key], float) and not np.isfinite(s[key]):
                    s[key] = None
                    s["warning"] = s["warning"] or "score undefined"
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ProbeResults:
        """Inverse of :meth:`to_json` (a ``null`` score reads back as NaN)."""
        raw = json.loads(text)
        raw["layers"] = tuple(raw["layers"])
        raw["scores"] = tuple(
            LayerScore(**{**s, "score": float("nan") if s["score"] is None else s["score"]})
            for s in raw["scores"]
        )
        return cls(**raw)


def _few_warning(n_rows: int, dim: int, what: str) -> str:
    # Ridge with alpha copes with n < D, but the scores become noisy; say how many rows there are.
    return f"only {n_rows} training {what} for {dim} dimensions (want >= {dim})" if n_rows < dim else ""


def char_counts(text: str) -> np.ndarray:
    """Counts [len(ALPHABET)] of each character of the normalised text (the bag-of-characters target)."""
    norm = normalise_text(text)
    return np.array([norm.count(c) for c in ALPHABET], dtype=np.float64)


def ridge_layer(
    reader: CaptureReader, layer: int, parts: Mapping[str, str], split_by: str, probes: Sequence[str]
) -> list[LayerScore]:
    """Energy, pitch and bag-of-characters ridge probes of one layer, in one streamed pass over the shards."""
    d = reader.meta.width
    fitters = {
        p: RidgeFitter(d, 1 if p != "boc" else len(ALPHABET))
        for p in probes
        if p in ("energy", "pitch", "boc")
    }
    utts = {"fit": 0, "val": 0, "test": 0}
    unvoiced = 0  # utterances without a voiced position (a silent clip): no pitch rows
    for block in reader.iter_layer(layer):
        for rec in block.records:
            part = parts[group_of(rec, split_by)]
            utts[part] += 1
            x, fr = block.states[block.rows(rec)], block.frames[block.rows(rec)]
            if "energy" in fitters:
                fitters["energy"].update(part, x, fr[:, 2])
            if "pitch" in fitters:
                voiced = (fr[:, 4] >= VOICED_MIN) & np.isfinite(fr[:, 3]) & (fr[:, 3] > 0)
                unvoiced += not voiced.any()
                fitters["pitch"].update(part, x[voiced], np.log(fr[voiced, 3]))
            if "boc" in fitters:
                fitters["boc"].update(part, x.mean(0, keepdims=True), char_counts(rec.transcript)[None])
    out = []
    for name, f in fitters.items():
        n_train = f.n_rows("fit") + f.n_rows("val")
        what = "utterances" if name == "boc" else "positions"
        if f.n_rows("fit") < 2 or f.n_rows("val") < 2 or f.n_rows("test") < 1:
            score, alpha, warn = float("nan"), None, f"not enough {what} in every part"
        else:
            probe = f.probe()
            score, alpha = float(np.nanmean(f.r2(probe, "test"))), probe.alpha
            warn = _few_warning(n_train, d, what)
        skipped = unvoiced if name == "pitch" else 0
        if skipped:
            warn = "; ".join(filter(None, [warn, f"{skipped} utterances without a voiced position skipped"]))
        out.append(
            LayerScore(
                name,
                layer,
                score,
                utts["fit"] + utts["val"],
                utts["test"],
                n_train,
                f.n_rows("test"),
                d,
                alpha,
                warn,
                skipped,
            )
        )
    return out


def run_probes(
    capture: str | Path,
    probes: Sequence[str] = PROBES,
    *,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    split_by: str = "utterance",
    ctc_epochs: int = 20,
    progress: Any = None,
) -> ProbeResults:
    """Run the probes on every captured layer (or ``layers``) of a capture folder.

    Args:
        capture: Capture folder (``casceq capture``).
        probes: Any of :data:`PROBES`.
        layers: Layers to probe (default: all captured).
        seed: Split (and CTC initialisation) seed.
        split_by: ``"utterance"`` or a meta field (``"actor"``, ``"voice"``) to hold out whole groups.
        ctc_epochs: Passes over the training utterances of the CTC probe.
        progress: Called with a message after each layer.
    """
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise InputError(f"unknown probes {sorted(unknown)}; known: {', '.join(PROBES)}")
    reader = CaptureReader(capture)
    meta = reader.meta
    chosen = tuple(layers) if layers is not None else meta.layers
    for layer in chosen:
        meta.layer_slot(layer)
    if "pitch" in probes and not meta.tracker:
        raise InputError(
            "the capture has no F0 (captured without pitch): drop the pitch probe", path=str(capture)
        )
    records = reader.utterances
    parts = split_parts([group_of(r, split_by) for r in records], seed)
    scores: list[LayerScore] = []
    for layer in chosen:
        scores += ridge_layer(reader, layer, parts, split_by, probes)
        if "ctc" in probes:
            scores.append(ctc_layer(reader, layer, parts, split_by, epochs=ctc_epochs, seed=seed))
        if progress is not None:
            progress(
                f"layer {layer}: " + ", ".join(f"{s.probe}={s.score:.3f}" for s in scores if s.layer == layer)
            )
    order = {p: i for i, p in enumerate(PROBES)}
    scores.sort(key=lambda s: (s.layer, order[s.probe]))
    return ProbeResults(
        meta.model,
        meta.fingerprint,
        str(capture),
        chosen,
        tuple(scores),
        seed,
        split_by,
        len(records),
        meta.tracker,
        meta.voicing_rule,
        {"ctc_epochs": ctc_epochs, "voiced_min": VOICED_MIN, "alphabet": ALPHABET},
    )


# --- The CTC probe ------------------------------------------------------------------------------------------
# The CTC text-decodability probe: a per-position linear classifier over characters trained with CTC loss.
#
# Score: 1 − CER of its greedy CTC decoding (argmax per position, repeats collapsed, blanks dropped) against the
# normalised transcript, pooled over the test utterances (total edit distance / total reference characters); it
# can be negative when the probe emits more errors than there are characters. Inputs are standardised with the
# training positions' mean and standard deviation. Utterances with fewer positions than CTC needs for their
# transcript (characters + repeated neighbours) are skipped and counted in the score's warning — this happens at
# low position rates (e.g. 160 ms per position) with fast speech.
#
# Training streams the shards every epoch (one shard's states in memory at a time), with Adam on minibatches of
# utterances, shuffled within each shard by a seeded generator.

BLANK = 0
"""CTC blank index; characters are 1..len(ALPHABET)."""


def encode_text(text: str) -> list[int]:
    """Character ids (1-based into :data:`ALPHABET`) of the normalised text."""
    return [ALPHABET.index(c) + 1 for c in normalise_text(text)]


def ctc_min_length(ids: list[int]) -> int:
    """Fewest positions CTC needs to emit ``ids``: one per character plus a blank between repeated ones."""
    return len(ids) + sum(1 for a, b in pairwise(ids) if a == b)


def greedy_decode(pred: np.ndarray) -> str:
    """Text of argmax ids [T]: repeats collapsed, blanks dropped."""
    out, prev = [], BLANK
    for p in pred.tolist():
        if p != prev and p != BLANK:
            out.append(ALPHABET[p - 1])
        prev = p
    return "".join(out)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (unit costs), by rapidfuzz."""
    return levenshtein(a, b)


def _utterances(
    reader: CaptureReader, layer: int, want: set[str], parts: Mapping[str, str], split_by: str
) -> Iterator[tuple[Any, np.ndarray, list[int], str]]:
    for block in reader.iter_layer(layer):
        for rec in block.records:
            if parts[group_of(rec, split_by)] in want:
                yield (
                    rec,
                    block.states[block.rows(rec)],
                    encode_text(rec.transcript),
                    normalise_text(rec.transcript),
                )


def ctc_layer(
    reader: CaptureReader,
    layer: int,
    parts: Mapping[str, str],
    split_by: str,
    *,
    epochs: int = 20,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
) -> LayerScore:
    """Train the CTC probe on the fit+val utterances of ``layer`` and score 1 − CER on the test ones."""
    import torch

    d = reader.meta.width
    train = {"fit", "val"}
    # Pass 1: standardisation statistics over training positions (float64 sums; memory O(D)).
    n, s, ss = 0, np.zeros(d), np.zeros(d)
    n_utts, skipped = 0, 0
    for _rec, x, ids, _ in _utterances(reader, layer, train, parts, split_by):
        if not ids or len(x) < ctc_min_length(ids):
            skipped += 1
            continue
        n_utts += 1
        n, s, ss = n + len(x), s + x.sum(0), ss + (x.astype(np.float64) ** 2).sum(0)
    if n_utts < 2:
        return LayerScore(
            "ctc", layer, float("nan"), n_utts, 0, n, 0, d, None, f"{skipped} utterances too short for CTC"
        )
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
    std[std < 1e-8] = 1.0
    mean_t, std_t = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)

    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(d, len(ALPHABET) + 1)
    with torch.no_grad():
        head.weight.normal_(0.0, d**-0.5, generator=gen)
        head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    loss_fn = torch.nn.CTCLoss(blank=BLANK, zero_infinity=True)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        pending: list[tuple[np.ndarray, list[int]]] = []
        for _rec, x, ids, _ in _utterances(reader, layer, train, parts, split_by):
            if ids and len(x) >= ctc_min_length(ids):
                pending.append((x, ids))
            if len(pending) >= 8 * batch_size:  # shuffle a window of utterances, train on it, forget it
                _train_window(head, opt, loss_fn, pending, rng, batch_size, mean_t, std_t)
                pending = []
        if pending:
            _train_window(head, opt, loss_fn, pending, rng, batch_size, mean_t, std_t)

    errors, chars, n_test, test_rows = 0, 0, 0, 0
    with torch.no_grad():
        for _rec, x, _ids, ref in _utterances(reader, layer, {"test"}, parts, split_by):
            logits = head((torch.from_numpy(np.ascontiguousarray(x)) - mean_t) / std_t)
            errors += edit_distance(greedy_decode(logits.argmax(-1).numpy()), ref)
            chars += len(ref)
            n_test, test_rows = n_test + 1, test_rows + len(x)
    score = 1.0 - errors / chars if chars else float("nan")
    warn = "; ".join(
        w
        for w in (
            _few_warning(n, d, "positions"),
            f"{skipped} training utterances too short for CTC" if skipped else "",
        )
        if w
    )
    return LayerScore("ctc", layer, score, n_utts, n_test, n, test_rows, d, None, warn)


def _train_window(
    head: Any,
    opt: Any,
    loss_fn: Any,
    items: list[tuple[np.ndarray, list[int]]],
    rng: np.random.Generator,
    batch_size: int,
    mean: Any,
    std: Any,
) -> None:
    """One pass of minibatch CTC updates over ``items`` (states [T_i, D], character ids), shuffled."""
    import torch

    order = rng.permutation(len(items))
    for start in range(0, len(order), batch_size):
        chunk = [items[i] for i in order[start : start + batch_size]]
        lengths = torch.tensor([len(x) for x, _ in chunk])
        padded = torch.zeros(len(chunk), int(lengths.max()), mean.shape[0])
        for j, (x, _) in enumerate(chunk):
            padded[j, : len(x)] = (torch.from_numpy(np.ascontiguousarray(x)) - mean) / std
        log_probs = head(padded).log_softmax(-1).transpose(0, 1)  # [T, B, C] as CTCLoss wants
        targets = torch.tensor([t for _, ids in chunk for t in ids])
        target_lengths = torch.tensor([len(ids) for _, ids in chunk])
        loss = loss_fn(log_probs, targets, lengths, target_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
