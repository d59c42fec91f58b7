"""Checkpoint, resume and per-step logging of the projector stages that need no backbone pass.

The embedding-CTC stage (``align``), the CTC-head stage (``ctc``) and the imitation stage (``continuous``) drive
their optimiser steps through these, so none imports another for them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

STATE_FILE = "align_state.pt"
LOG_FILE = "align_log.jsonl"


def warm_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor of a step: linear warm-up over ``warmup`` steps times a cosine from 1 to 0.1 at ``total``."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(1, total - 1))))


def start_state(
    projector: Any, optim: Any, out: Path, resume: bool, *, state: str = STATE_FILE, log: str = LOG_FILE
) -> int:
    """Load ``out/<state>`` into projector and optimiser when resuming (log cut to match); return its step.

    Without ``resume`` (or with no state yet) the log is started afresh and the step is 0.
    """
    import torch

    state_path, log_path = out / state, out / log
    if resume and state_path.exists():
        saved = torch.load(state_path, weights_only=True)
        projector.load_state_dict(saved["projector"])
        optim.load_state_dict(saved["optim"])
        step = int(saved["step"])
        if log_path.exists():
            keep = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["step"] < step]
            log_path.write_text("".join(ln + "\n" for ln in keep))
        return step
    if log_path.exists():
        log_path.unlink()
    return 0


def finish_step(
    projector: Any,
    optim: Any,
    loss: Any,
    step: int,
    row: dict[str, float],
    total: int,
    every: int,
    out: Path,
    *,
    state: str = STATE_FILE,
    log: str = LOG_FILE,
) -> int:
    """Backward, clip at 1, step; log ``row`` as step ``step``; checkpoint every ``every`` steps and at ``total``.

    Returns the next step. Shared by the embedding-CTC stage and the CTC-head stage (``casceq.train.ctc``).
    """
    import torch

    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
    optim.step()
    with (out / log).open("a") as f:
        f.write(json.dumps({"step": step, **row}) + "\n")
    step += 1
    if step % every == 0 or step == total:
        save_state(projector, optim, step, out / state)
    return step


def save_state(projector: Any, optim: Any, step: int, state_path: Path) -> None:
    """Write the resumable state atomically (a kill mid-write leaves the previous one)."""
    import torch

    tmp = state_path.with_suffix(".tmp")
    torch.save({"projector": projector.state_dict(), "optim": optim.state_dict(), "step": step}, tmp)
    tmp.replace(state_path)
