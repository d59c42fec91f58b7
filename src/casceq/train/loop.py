"""The training loop: deterministic batches, AdamW on the projector, resumable checkpoints, a loss log.

Batches are a pure function of ``(seed, step)`` and the optimiser state is checkpointed with the projector, so
a run killed and resumed from its last checkpoint reaches exactly the state of an uninterrupted run
(tests/test_train_loop.py checks it). ``out/log.jsonl`` holds one line per step (loss parts, lr, seconds).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casceq.train.config import TrainConfig, use_bf16
from casceq.train.distill import Row, build_rows, student_loss

STATE_FILE = "state.pt"
LOG_FILE = "log.jsonl"


@dataclass(frozen=True)
class TrainResult:
    """Outcome of ``run_steps``.

    Attributes:
        step: Steps done in total (including resumed ones).
        seconds: Wall seconds of the steps run in this call.
        stopped_early: The time budget ended the run before ``cfg.steps``.
    """

    step: int
    seconds: float
    stopped_early: bool


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of a step: linear warm-up, then cosine from ``lr`` to ``0.1 * lr`` at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def batch_plan(step: int, n_clips: int, cfg: TrainConfig) -> list[tuple[int, str]]:
    """The (clip index, kind) pairs of a step: a pure function of ``(cfg.seed, step)``."""
    rng = np.random.default_rng([cfg.seed, 4, step])
    clips = rng.integers(n_clips, size=cfg.batch_size)
    asr = (rng.random(cfg.batch_size) < cfg.asr_weight) | (step < cfg.asr_only_steps)
    kinds = rng.integers(max(1, len(cfg.tasks)), size=cfg.batch_size)
    if cfg.teacher_clips:  # task rows only on clips the teacher scored
        clips = np.where(asr, clips, clips % min(cfg.teacher_clips, n_clips))
    return [
        (int(c), "asr" if a or not cfg.tasks else cfg.tasks[k])
        for c, a, k in zip(clips, asr, kinds, strict=True)
    ]


def _save_state(folder: Path, projector: Any, optim: Any, step: int) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE_FILE + ".tmp")
    torch.save({"projector": projector.state_dict(), "optim": optim.state_dict(), "step": step}, tmp)
    tmp.replace(folder / STATE_FILE)


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines of steps after the checkpoint being resumed (they will be redone)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] < step]
    path.write_text("".join(ln + "\n" for ln in keep))


def start_or_resume(
    backend: Any, cfg: TrainConfig, out: Path, resume: bool, progress: Callable[[str], None]
) -> tuple[Any, Any, int]:
    """Freeze the backbone, make the projector's AdamW and restore both from ``out/checkpoint`` if resuming.

    Returns:
        (projector in train mode, optimiser, the step to continue from). Log lines after that step are
        dropped (they will be redone); a fresh start deletes the old log.
    """
    import torch

    torch.set_num_threads(cfg.threads)
    projector = backend.projector.float().train()
    for p in backend.model.parameters():
        p.requires_grad_(False)
    optim = torch.optim.AdamW(projector.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, log_path = out / "checkpoint", out / LOG_FILE
    step = 0
    if resume and (ckpt / STATE_FILE).exists():
        state = torch.load(ckpt / STATE_FILE, weights_only=True)
        projector.load_state_dict(state["projector"])
        optim.load_state_dict(state["optim"])
        step = int(state["step"])
        _trim_log(log_path, step)
        progress(f"resumed at step {step}")
    elif log_path.exists():
        log_path.unlink()
    return projector, optim, step


def run_steps(
    backend: Any,
    frames: Sequence[Any],
    texts: Sequence[str],
    teacher: dict[str, np.ndarray],
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``backend.projector`` on cached encoder frames; checkpoint into ``out/checkpoint``.

    Args:
        backend: ``UltravoxNativeBackend`` (its encoder is not used: frames are cached).
        frames: Encoder frames [T_i, D] of each clip (float16 or float32 tensors).
        texts: Spoken text of each clip.
        teacher: Task -> teacher label distributions [n_clips, C].
        cfg: Training config.
        out: Training folder (``checkpoint/``, ``log.jsonl``).
        resume: Continue from ``out/checkpoint`` when it exists.
        stop_after: Stop after this many steps in total (simulates a kill; tests), still checkpointing.
        progress: Progress printer.
    """
    import torch

    projector, optim, step = start_or_resume(backend, cfg, out, resume, progress)
    ckpt, log_path = out / "checkpoint", out / LOG_FILE
    k = cfg.stack_factor
    n_audio = [math.ceil(int(f.shape[0]) / k) for f in frames]
    row_cache: dict[tuple[int, str], list[Row]] = {}
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    t0 = time.perf_counter()
    last_ckpt = step
    stopped = False
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(cfg.bf16))
    while step < end:
        if cfg.max_minutes and time.perf_counter() - t0 > 60 * cfg.max_minutes:
            stopped = True
            break
        ts = time.perf_counter()
        rows: list[Row] = []
        for clip, kind in batch_plan(step, len(frames), cfg):
            key = (clip, kind)
            if key not in row_cache:
                row_cache[key] = build_rows(backend, clip, n_audio[clip], kind, texts[clip], cfg)
            rows += row_cache[key]
        for group in optim.param_groups:
            group["lr"] = lr_at(step, cfg)
        with autocast:
            loss, parts = student_loss(
                backend, projector, rows, [frames[r.clip].float() for r in rows], teacher, cfg
            )
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
        optim.step()
        step += 1
        record = {
            "step": step - 1,
            "lr": lr_at(step - 1, cfg),
            "seconds": round(time.perf_counter() - ts, 3),
            **parts,
        }
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if step % 20 == 0:
            progress(
                f"step {step}: loss {parts['loss']:.3f} kl {parts['kl']:.3f} ce {parts['ce']:.3f} ({record['seconds']} s)"
            )
        if step - last_ckpt >= cfg.checkpoint_every:
            _save_state(ckpt, projector, optim, step)
            last_ckpt = step
    if step != last_ckpt or not (ckpt / STATE_FILE).exists():
        _save_state(ckpt, projector, optim, step)
    projector.eval()
    return TrainResult(step, time.perf_counter() - t0, stopped)


def read_log(out: Path) -> list[dict[str, Any]]:
    """The per-step records of ``out/log.jsonl``."""
    path = out / LOG_FILE
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
