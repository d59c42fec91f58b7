"""Pre-alignment without the backbone: CTC from audio embeddings onto the backbone's own token embeddings.

A forward/backward pass through the frozen backbone costs ~0.6 TFLOP per batch of 8 (all that the distillation
stage can afford on a busy 2-core machine is a few hundred of them). Before it, this ASR-style auxiliary stage
teaches the projector to emit, at each audio position, a vector pointing at the (scaled) input embedding of the
token spoken there, so the frozen backbone reads the audio as a soft transcript. It needs only the projector
and the embedding matrix: each clip costs ~2 GFLOP instead of ~80.

Logits are cosine similarities / ``temperature`` between audio embeddings [T, D] and the embeddings of the
tokens occurring in the training texts (plus the blank); the CTC blank is the embedding of the single-space
token, so positions aligned to blank read as whitespace. A second term pulls each embedding's RMS towards the
mean RMS of the token embeddings (cosine alone leaves the scale free; the backbone is not scale invariant).

With a ``"ctc"`` projector head (``ProjectorConfig.head``) the stage is plain CTC on the head's own logits over
its token subset, and it is the whole training of that head (``casceq.train.ctc``, which ``run_align`` hands
it to): its audio embeddings are posterior-weighted token embeddings by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.train.checkpoint import finish_step, start_state
from casceq.train.config import TrainConfig
from casceq.train.ctc import ctc_vocab, run_ctc


def _vocab(backend: Any, texts: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """Token ids used (blank = the single-space token first) and each text's targets as indices into them."""
    blank = backend._tokens(" ")
    blank_id = blank[0] if len(blank) == 1 else backend.pad_token_id
    toks = [backend._tokens(t) for t in texts]
    used = sorted({i for t in toks for i in t} - {blank_id})
    vocab = [blank_id, *used]
    index = {tid: k for k, tid in enumerate(vocab)}
    return vocab, [[index[i] for i in t if i != blank_id] for t in toks]


def _batch(step: int, n: int, cfg: TrainConfig) -> list[int]:
    return [int(i) for i in np.random.default_rng([cfg.seed, 6, step]).integers(n, size=cfg.align_batch)]


def run_align(
    backend: Any,
    frames: Sequence[Any],
    texts: Sequence[str],
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: Callable[[str], None] = print,
) -> int:
    """Train ``backend.projector`` with the embedding-CTC loss for ``cfg.align_steps``; return steps done.

    Checkpoints (``out/align_state.pt``) every ``cfg.checkpoint_every`` steps; the log is ``out/align_log.jsonl``.
    """
    import torch

    if cfg.align_steps <= 0:
        return 0
    if backend.projector.config.head == "ctc":
        vocab, ctc_targets = ctc_vocab(backend.tokenizer, texts, cfg.ctc_min_count)
        if vocab != backend.projector.vocab_ids.tolist():
            raise ValueError(
                "the CTC head's vocabulary is not the one of these texts (build it with ctc_vocab)"
            )
        return run_ctc(backend, frames, ctc_targets, cfg, out, resume=resume, progress=progress)
    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    projector = backend.projector.float().train()
    vocab, targets = _vocab(backend, texts)
    with torch.no_grad():
        ids = torch.tensor(vocab)
        table = backend.model.get_input_embeddings()(ids).float()  # [K, D], scaled as the backbone reads it
        target_rms = float(table.pow(2).mean(-1).sqrt().mean())
        unit = torch.nn.functional.normalize(table, dim=-1)
    optim = torch.optim.AdamW(projector.parameters(), lr=cfg.align_lr)
    step = start_state(projector, optim, out, resume)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True, reduction="mean")
    while step < cfg.align_steps:
        picks = _batch(step, len(frames), cfg)
        audio = [projector(frames[i].float()) for i in picks]  # each [n_i, D]
        lengths = torch.tensor([a.shape[0] for a in audio])
        padded = torch.nn.utils.rnn.pad_sequence(audio)  # [T, B, .]
        logits = torch.nn.functional.normalize(padded, dim=-1) @ unit.T / cfg.align_temperature
        tgt = [torch.tensor(targets[i][: int(lengths[j])]) for j, i in enumerate(picks)]
        loss_ctc = ctc(logits.log_softmax(-1), torch.cat(tgt), lengths, torch.tensor([len(t) for t in tgt]))
        rms = torch.cat([a.pow(2).mean(-1).sqrt() for a in audio])
        loss_rms = ((rms - target_rms) / target_rms).pow(2).mean()
        loss = loss_ctc + loss_rms
        if cfg.align_cosine:
            frac = step / max(1, cfg.align_steps - 1)
            for group in optim.param_groups:
                group["lr"] = cfg.align_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        row = {"ctc": loss_ctc.item(), "rms": loss_rms.item()}
        step = finish_step(projector, optim, loss, step, row, cfg.align_steps, cfg.checkpoint_every, out)
        if step % 50 == 0:
            progress(f"align step {step}: ctc {row['ctc']:.3f} rms {row['rms']:.4f}")
    return step
