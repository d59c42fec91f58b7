"""Training of a ``"ctc"`` projector head: plain CTC onto the backbone's own tokens of what was spoken.

The head (``casceq.systems.speech_llm.ultravox_projector``, LegoSLM-style) maps stacked encoder frames to CTC
logits over a subset of the backbone's vocabulary; its audio embeddings are posterior-weighted rows of the
backbone's input embeddings, one per greedy CTC segment. So CTC on the transcript's tokens is the whole of its
training: no pass through the backbone is needed.

- **Targets** are the tokens of the *spoken* text (``casceq.audio.textnorm.spoken_text``: what the voice said,
  e.g. "'s" for AG News's "#39;s"), tokenised as the matched prompt's query slot holds a transcript
  (``casceq.train.matched.query_ids``). The vocabulary is every token seen at least ``ctc_min_count`` times;
  rarer tokens are left out of the targets (the head learns to emit nothing there rather than to guess among
  a handful of examples).
- **Batches** are drawn from buckets of similar length (clips run from 1 s of MELD to 30 s of AG News, and
  padding to the longest row would waste most of a random batch), a pure function of ``(seed, step)``, so a
  run killed and resumed equals one run straight through.
- **Regularisation**: ``ctc_time_masks`` masks of up to ``ctc_mask_frames`` encoder frames per clip
  (SpecAugment's time masking, on the frozen encoder's output) and dropout ``ctc_dropout`` on the frames. On
  15 h of speech the head otherwise memorises its training clips (train CTC 0.05 nats/token against a
  held-out WER of 0.36 in the first measured run, docs/speech_llm_training.md).
- **Precision**: bfloat16 autocast where the CPU computes it natively (``casceq.train.config.use_bf16``).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.audio.textnorm import spoken_text
from casceq.train.checkpoint import finish_step, start_state
from casceq.train.config import TrainConfig, use_bf16
from casceq.train.matched import query_ids

BUCKET_ROWS = 8
"""A batch is drawn from a window of ``BUCKET_ROWS x batch`` clips adjacent in length order."""


def spoken_targets(clip_ids: Sequence[str], texts: Sequence[str]) -> list[str]:
    """What each clip's voice said: ``spoken_text`` of its text under its task (clip id ``"<task>/<id>"``)."""
    return [spoken_text(t, cid.split("/", 1)[0]) for cid, t in zip(clip_ids, texts, strict=True)]


def ctc_vocab(tokenizer: Any, texts: Sequence[str], min_count: int = 1) -> tuple[list[int], list[list[int]]]:
    """CTC-head vocabulary and targets: index 0 is the blank, then the sorted ids seen ``min_count`` times.

    Texts are tokenised as the matched prompt's query slot holds them (``casceq.train.matched.query_ids``); a
    token seen fewer times is dropped from the targets. The blank itself emits nothing; its id (the
    single-space token) is only what a clip decoded as all blank reads as.
    """
    blank = list(tokenizer.encode(" ", add_special_tokens=False))
    blank_id = blank[0] if len(blank) == 1 else int(tokenizer.pad_token_id or 0)
    toks = [query_ids(tokenizer, t) for t in texts]
    counts = collections.Counter(i for t in toks for i in t)
    vocab = [blank_id, *sorted(i for i, c in counts.items() if c >= min_count)]
    index = {tid: k for k, tid in enumerate(vocab) if k > 0}
    return vocab, [[index[i] for i in t if i in index] for t in toks]


def batch_of(step: int, order: Sequence[int], cfg: TrainConfig) -> list[int]:
    """Clip indices of one step: ``align_batch`` distinct clips from a window of clips of similar length.

    ``order`` is the clip indices sorted by length; the window start and the picks depend on (seed, step) only.
    """
    rng = np.random.default_rng([cfg.seed, 6, step])
    size = min(len(order), BUCKET_ROWS * cfg.align_batch)
    start = int(rng.integers(0, len(order) - size + 1))
    picks = rng.choice(size, size=min(cfg.align_batch, size), replace=False)
    return [int(order[start + int(p)]) for p in picks]


def augment(frames: Any, step: int, row: int, cfg: TrainConfig) -> Any:
    """Time masks (zeroed runs of frames) and dropout on one clip's frames [T, D]; seeded by (seed, step, row)."""
    import torch

    rng = np.random.default_rng([cfg.seed, 7, step, row])
    x = frames.clone()
    for _ in range(cfg.ctc_time_masks):
        width = int(rng.integers(0, cfg.ctc_mask_frames + 1))
        start = int(rng.integers(0, max(1, x.shape[0] - width)))
        x[start : start + width] = 0
    if cfg.ctc_dropout > 0:
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        keep = torch.rand(x.shape, generator=gen) >= cfg.ctc_dropout
        x = x * keep / (1 - cfg.ctc_dropout)
    return x


def run_ctc(
    backend: Any,
    frames: Sequence[Any],
    targets: Sequence[Sequence[int]],
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: Callable[[str], None] = print,
) -> int:
    """Train ``backend.projector`` (a ``"ctc"`` head) for ``cfg.align_steps``; return the steps done.

    ``targets`` are indices into the head's vocabulary (``ctc_vocab``). Checkpoints ``out/align_state.pt``
    every ``cfg.checkpoint_every`` steps; one log line per step in ``out/align_log.jsonl``.
    """
    import torch

    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    projector = backend.projector.float().train()
    k = projector.config.stack_factor
    optim = torch.optim.AdamW(projector.parameters(), lr=cfg.align_lr, weight_decay=cfg.weight_decay)
    step = start_state(projector, optim, out, resume)
    usable = [i for i, t in enumerate(targets) if len(t) > 0]
    order = sorted(usable, key=lambda i: int(frames[i].shape[0]))
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True, reduction="mean")
    bf16 = use_bf16(cfg.bf16)
    while step < cfg.align_steps:
        picks = batch_of(step, order, cfg)
        x = torch.nn.utils.rnn.pad_sequence(
            [augment(frames[i].float(), step, r, cfg) for r, i in enumerate(picks)], batch_first=True
        )  # [B, T, D]
        lengths = torch.tensor([-(-int(frames[i].shape[0]) // k) for i in picks])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = projector.hidden(x)  # [B, ceil(T/k), K+1]
        log_probs = logits.float().transpose(0, 1).log_softmax(-1)  # [T', B, K+1]
        tgt = [torch.tensor(list(targets[i][: int(lengths[j])])) for j, i in enumerate(picks)]
        loss = ctc(log_probs, torch.cat(tgt), lengths, torch.tensor([len(t) for t in tgt]))
        frac = step / max(1, cfg.align_steps - 1)
        warm = min(1.0, (step + 1) / max(1, cfg.warmup))
        decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)) if cfg.align_cosine else 1.0
        for group in optim.param_groups:
            group["lr"] = cfg.align_lr * warm * decay
        row = {"ctc": loss.item(), "rms": 0.0}
        step = finish_step(projector, optim, loss, step, row, cfg.align_steps, cfg.checkpoint_every, out)
        if step % 50 == 0:
            progress(f"ctc step {step}/{cfg.align_steps}: loss {row['ctc']:.3f}")
    return step
