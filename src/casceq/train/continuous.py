"""The continuous-interface speech LLM: an Ultravox ``"embed"`` projector taught by the CTC head (no backbone pass).

The shipped offline model reads one posterior-weighted token embedding per greedy CTC segment: text is its
interface by construction. The paper's subjects instead pass *continuous* encoder frames, stacked at a fixed rate,
through a projector into the backbone's embedding space, with no segmentation and no softmax over the vocabulary.
Trained from scratch through the backbone, such a projector stayed at chance here (docs/speech_llm_training.md):
one backbone pass costs seconds per row on this CPU. This stage starts it from what the CTC head already knows.

``imitate`` (the stage): the student is an ``"embed"`` projector of the same shape up to its last layer. Its
pre-norm and first Linear are copied from the teacher CTC head, its last Linear is the ridge solution from the
teacher's hidden features to the teacher's per-group embeddings, and then every layer is trained to reproduce
those embeddings from augmented frames (mean squared error relative to the targets' power; no backbone pass, a
step of 16 clips costs about as much as a CTC step). The per-group target is the teacher's posterior mixture at
*every* stacked group (``imitate_target``):

- ``"groups"``: ``softmax(logits) @ table`` over the head's tokens and the blank, the blank read as the
  single-space token's embedding (what an all-blank CTC clip reads);
- ``"nonblank"``: the non-blank posteriors renormalised, so a blank group reads the token it is nearest to.

Only the targets are computed with a softmax; the student's forward pass is Ultravox's (stack, RMSNorm, Linear,
SwiGLU, Linear, RMSNorm), one embedding per 4 frames (12.5 per second), whatever is said. The matched-prompt
distillation through the backbone (``casceq.train.matched_loop``) can follow at a low learning rate
(``steps > 0``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.train.checkpoint import finish_step, start_state, warm_cosine
from casceq.train.config import TrainConfig
from casceq.train.ctc import augment, batch_of

STATE_FILE = "imitate_state.pt"
LOG_FILE = "imitate_log.jsonl"
TARGETS = ("groups", "nonblank")
RIDGE_CLIPS = 1500
"""Clips whose groups the last layer's ridge fit reads (about 150k groups at 12.5 per second)."""
RIDGE = 1e-2
"""Ridge penalty, relative to the mean diagonal of the features' Gram matrix."""


def teacher_embeddings(teacher: Any, frames: Any, target: str) -> Any:
    """Per-group targets [ceil(T/k), llm_dim] of one clip's frames [T, D] under the CTC head ``teacher``."""
    import torch

    if target not in TARGETS:
        raise InputError(f"imitate_target must be one of {TARGETS}, not {target!r}")
    with torch.no_grad():
        probs = teacher.hidden(frames).float().softmax(-1)
        table = teacher.table.float()
        if target == "groups":
            return probs @ table
        rest = probs[:, 1:]
        return rest / rest.sum(-1, keepdim=True) @ table[1:]


def _features(projector: Any, frames: Any) -> Any:
    """The input of the last Linear [G, H/2] (stack, pre-norm, first Linear, SwiGLU)."""
    import torch

    k = projector.config.stack_factor
    x = torch.nn.functional.pad(frames, (0, 0, 0, (-frames.shape[-2]) % k))
    x = x.reshape(x.shape[-2] // k, k * x.shape[-1])
    value, gate = projector.linear_1(projector.ln_pre(x)).chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * value


def init_from_teacher(
    student: Any, teacher: Any, frames: Sequence[Any], target: str, progress: Callable[[str], None] = print
) -> dict[str, float]:
    """Copy the teacher's pre-norm and first Linear into ``student``; fit its last Linear by ridge regression.

    The fit maps the (shared) hidden features to the teacher's per-group embeddings; the post-norm's gain is
    set to the targets' mean RMS, so the initial student is the best linear read-out of what the CTC head emits.
    Returns the fit's relative squared error on the clips it read.
    """
    import torch

    if student.config.head != "embed" or teacher.config.head != "ctc":
        raise InputError("imitation needs an 'embed' student and a 'ctc' teacher")
    if (student.config.stack_factor, student.config.hidden_dim, student.config.activation) != (
        teacher.config.stack_factor,
        teacher.config.hidden_dim,
        teacher.config.activation,
    ):
        raise InputError("student and teacher projectors differ in stacking, width or activation")
    with torch.no_grad():
        student.ln_pre.load_state_dict(teacher.ln_pre.state_dict())
        student.linear_1.load_state_dict(teacher.linear_1.state_dict())
        feats, targets = [], []
        for f in frames:
            x = f.float()
            feats.append(_features(teacher, x))
            targets.append(teacher_embeddings(teacher, x, target))
        h, t = torch.cat(feats).double(), torch.cat(targets).double()
        gram = h.T @ h
        gram += RIDGE * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
        weight = torch.linalg.solve(gram, h.T @ t)  # [H/2, D]
        student.linear_2.weight.copy_(weight.T.float())
        rms = t.pow(2).mean(-1).sqrt().mean()
        student.ln_post.weight.fill_(float(rms))
        rel = float((h @ weight - t).pow(2).sum() / t.pow(2).sum())
    progress(f"imitate: ridge read-out on {h.shape[0]} groups, relative error {rel:.3f}")
    return {"ridge_groups": float(h.shape[0]), "ridge_rel_error": rel}


def imitation_loss(
    student: Any, teacher: Any, frames: Sequence[Any], clean: Sequence[Any], target: str
) -> Any:
    """Mean over clips of ||student(frames) - teacher(clean)||^2 / ||teacher(clean)||^2 (0 = exact, 1 = zeros)."""
    import torch

    losses = []
    for x, c in zip(frames, clean, strict=True):
        t = teacher_embeddings(teacher, c.float(), target)
        out = student(x.float())
        losses.append((out - t).pow(2).sum() / t.pow(2).sum().clamp_min(1e-12))
    return torch.stack(losses).mean()


def run_imitate(
    student: Any,
    teacher: Any,
    frames: Sequence[Any],
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: Callable[[str], None] = print,
) -> int:
    """Train ``student`` to reproduce the teacher's per-group embeddings for ``cfg.imitate_steps``; return steps.

    Batches are ``casceq.train.ctc.batch_of`` (length buckets), the student reads frames with the CTC stage's
    time masks and dropout (``augment``) while the targets come from the clean frames. The first start (no
    state) initialises the student with ``init_from_teacher``. Checkpoints ``out/imitate_state.pt``; one log line
    per step in ``out/imitate_log.jsonl``.
    """
    import torch

    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    teacher = teacher.float().eval()
    student = student.float().train()
    optim = torch.optim.AdamW(student.parameters(), lr=cfg.imitate_lr, weight_decay=cfg.weight_decay)
    step = start_state(student, optim, out, resume, state=STATE_FILE, log=LOG_FILE)
    if step == 0:
        rng = np.random.default_rng([cfg.seed, 11])
        sample = rng.choice(len(frames), size=min(RIDGE_CLIPS, len(frames)), replace=False)
        fit = init_from_teacher(
            student, teacher, [frames[int(i)] for i in sample], cfg.imitate_target, progress
        )
        (out / "imitate_init.json").write_text(json.dumps(fit, indent=2) + "\n")
    order = sorted(range(len(frames)), key=lambda i: int(frames[i].shape[0]))
    while step < cfg.imitate_steps:
        picks = batch_of(step, order, cfg)
        clean = [frames[i] for i in picks]
        noisy = [augment(frames[i].float(), step, r, cfg) for r, i in enumerate(picks)]
        loss = imitation_loss(student, teacher, noisy, clean, cfg.imitate_target)
        for group in optim.param_groups:
            group["lr"] = cfg.imitate_lr * warm_cosine(step, cfg.imitate_steps, cfg.warmup)
        row = {"imitate": loss.item()}
        step = finish_step(
            student,
            optim,
            loss,
            step,
            row,
            cfg.imitate_steps,
            cfg.checkpoint_every,
            out,
            state=STATE_FILE,
            log=LOG_FILE,
        )
        if step % 50 == 0:
            progress(f"imitate step {step}/{cfg.imitate_steps}: relative error {loss.item():.3f}")
    return step


def held_out_error(student: Any, teacher: Any, frames: Sequence[Any], target: str) -> float:
    """Relative squared error of ``student`` against the teacher on ``frames`` (clean), pooled over groups."""
    import torch

    num = den = 0.0
    with torch.no_grad():
        for f in frames:
            t = teacher_embeddings(teacher, f.float(), target)
            num += float((student(f.float()) - t).pow(2).sum())
            den += float(t.pow(2).sum())
    return num / den if den else float("nan")
