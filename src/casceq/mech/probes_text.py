"""The CTC text-decodability probe: a per-position linear classifier over characters trained with CTC loss.

Score: 1 − CER of its greedy CTC decoding (argmax per position, repeats collapsed, blanks dropped) against the
normalised transcript, pooled over the test utterances (total edit distance / total reference characters); it
can be negative when the probe emits more errors than there are characters. Inputs are standardised with the
training positions' mean and standard deviation. Utterances with fewer positions than CTC needs for their
transcript (characters + repeated neighbours) are skipped and counted in the score's warning — this happens at
low position rates (e.g. 160 ms per position) with fast speech.

Training streams the shards every epoch (one shard's states in memory at a time), with Adam on minibatches of
utterances, shuffled within each shard by a seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import pairwise
from typing import Any

import numpy as np

from casceq.mech.probes import ALPHABET, LayerScore, _few_warning, group_of, normalise_text
from casceq.mech.shards import CaptureReader

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
    from casceq.audio.textnorm import edit_distance as levenshtein

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
