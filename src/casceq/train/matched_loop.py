"""Teacher targets and the training loop of the matched-prompt recipe (``casceq.train.matched``).

Like ``casceq.train.loop``: batches are a pure function of ``(seed, step)``, the optimiser state is
checkpointed with the projector (``out/checkpoint/state.pt``), one log line per step (``out/log.jsonl``), so a
run killed and resumed reaches the weights of one run straight through. Each step trains one task's prompt
(tasks take turns), ``batch_size`` clips, on the suffix states of that task's teacher.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casceq.systems.llm.prompting import few_shot_examples
from casceq.tasks import get_task
from casceq.train.config import TrainConfig, use_bf16
from casceq.train.loop import LOG_FILE, STATE_FILE, TrainResult, _save_state, lr_at, start_or_resume
from casceq.train.matched import (
    PromptParts,
    Standardiser,
    prefix_cache,
    prompt_parts,
    query_ids,
    run_rows,
    sampled_ids,
    student_terms,
    suffix_states,
    teacher_states,
    transcript_ce,
    transcript_parts,
)


@dataclass
class TaskTargets:
    """One task's prompt, its cached prefix and the teacher's suffix states of every clip.

    The transcription rows (task ``"asr"``) have no teacher: their target is the spoken text itself.

    Attributes:
        parts: The matched prompt around the query.
        cache: KV cache of ``parts.prefix`` (copied for every batch).
        states: Teacher suffix states [N, S, L, D] (float16); None for ``"asr"``.
        std: Standardiser fitted on ``states``; None for ``"asr"``.
    """

    parts: PromptParts
    cache: Any
    states: np.ndarray | None
    std: Standardiser | None


def task_targets(
    cfg: TrainConfig,
    backend: Any,
    texts: Sequence[str],
    out: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, TaskTargets]:
    """Teacher suffix states per task, cached in ``out/teacher-<task>-<hash>.npy`` (texts and prompt hashed)."""
    import torch

    lm, tok = backend.model, backend.tokenizer
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    for name in cfg.tasks:
        shots = few_shot_examples(get_task(name), k=cfg.teacher_few_shot, seed=cfg.seed)
        parts = prompt_parts(tok, name, shots)
        key = json.dumps([list(parts.prefix), list(parts.suffix), list(texts), use_bf16(cfg.bf16)])
        path = out / f"teacher-{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npy"
        cache = prefix_cache(lm, parts.prefix)
        if path.exists():
            states = np.load(path)
        else:
            progress(f"teacher: suffix states of {len(texts)} texts for {name}")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(cfg.bf16)):
                states = teacher_states(lm, parts, cache, texts, tok)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, states)
            tmp.replace(path)
        result[name] = TaskTargets(parts, cache, states, Standardiser.fit(states))
    if cfg.asr_weight > 0 or cfg.asr_only_steps > 0:
        parts = transcript_parts(tok)
        result["asr"] = TaskTargets(parts, prefix_cache(lm, parts.prefix), None, None)
    return result


def batch_plan(step: int, lengths: Sequence[int], cfg: TrainConfig) -> tuple[str, list[int]]:
    """The task and clip indices of a step: a pure function of ``(cfg.seed, step, lengths)``.

    A step is a transcription step (``"asr"``) for the first ``asr_only_steps`` and then with probability
    ``asr_weight``; the task steps take turns. Clips are drawn from one of ``len // (4 * batch_size)`` buckets of similar length (chosen
    in proportion to its size, so every clip is equally likely): rows are padded to the batch's longest, and
    AG News clips are about five times as long as MELD's.
    """
    rng = np.random.default_rng([cfg.seed, 8, step])
    asr = rng.random() < cfg.asr_weight or step < cfg.asr_only_steps
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    buckets = np.array_split(np.array(order), max(1, len(order) // (4 * cfg.batch_size)))
    sizes = np.array([len(b) for b in buckets], dtype=float)
    bucket = buckets[int(rng.choice(len(buckets), p=sizes / sizes.sum()))]
    task = "asr" if asr else cfg.tasks[step % len(cfg.tasks)]
    return task, [int(i) for i in rng.choice(bucket, size=cfg.batch_size)]


def batch_loss(
    backend: Any,
    projector: Any,
    target: TaskTargets,
    frames: Sequence[Any],
    clips: Sequence[int],
    cfg: TrainConfig,
    texts: Sequence[str] = (),
) -> tuple[Any, dict[str, float]]:
    """Loss of one batch (differentiable w.r.t. the projector) and its parts (``texts``: for ``"asr"``)."""
    import torch

    lm = backend.model
    emb = lm.get_input_embeddings()
    suffix = emb(torch.tensor(list(target.parts.suffix))).float()
    audio = [projector(frames[i].float()) for i in clips]
    n_suf = len(target.parts.suffix)
    if target.states is None:  # transcription rows: audio, suffix, the words (teacher-forced)
        if not texts:
            raise ValueError("transcription rows need the clips' texts (run_matched_steps(texts=...))")
        words = [query_ids(backend.tokenizer, texts[i])[: cfg.max_text_tokens] for i in clips]
        rows = [
            torch.cat([a, suffix, emb(torch.tensor(w[:-1], dtype=torch.long)).float()])
            for a, w in zip(audio, words, strict=True)
        ]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(cfg.bf16)):
            final = run_rows(lm, target.cache, len(target.parts.prefix), rows, hidden=False).last_hidden_state
        reads = [
            [int(a.shape[0]) + n_suf - 1 + j for j in range(len(w))]
            for a, w in zip(audio, words, strict=True)
        ]
        ce = transcript_ce(lm, final, reads, words, sampled_ids(int(emb.num_embeddings), cfg.seed))
        loss = cfg.ce_weight * ce
        return loss, {"loss": loss.item(), "ce": ce.item()}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(cfg.bf16)):
        out = run_rows(
            lm, target.cache, len(target.parts.prefix), [torch.cat([a, suffix]) for a in audio], hidden=True
        )
        student = suffix_states(out, [int(a.shape[0]) for a in audio], n_suf)
    teacher = torch.from_numpy(target.states[list(clips)].astype(np.float32))
    assert target.std is not None
    terms = student_terms(lm, student, teacher, target.std)
    loss = cfg.kl_weight * terms["kl"] + cfg.hidden_weight * terms["hidden"]
    return loss, {"loss": loss.item(), "kl": terms["kl"].item(), "hidden": terms["hidden"].item()}


def run_matched_steps(
    backend: Any,
    frames: Sequence[Any],
    targets: dict[str, TaskTargets],
    cfg: TrainConfig,
    out: Path,
    *,
    texts: Sequence[str] = (),
    resume: bool = False,
    stop_after: int | None = None,
    progress: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``backend.projector`` on cached encoder frames against ``targets``; checkpoint into ``out``.

    ``texts`` (the spoken text of each clip) is needed when ``targets`` has transcription rows (``"asr"``).
    """
    import torch

    projector, optim, step = start_or_resume(backend, cfg, out, resume, progress)
    ckpt, log_path = out / "checkpoint", out / LOG_FILE
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    lengths = [int(f.shape[0]) for f in frames]
    t0 = time.perf_counter()
    last_ckpt, stopped = step, False
    while step < end:
        if cfg.max_minutes and time.perf_counter() - t0 > 60 * cfg.max_minutes:
            stopped = True
            break
        ts = time.perf_counter()
        task, clips = batch_plan(step, lengths, cfg)
        for group in optim.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, parts = batch_loss(backend, projector, targets[task], frames, clips, cfg, texts)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
        optim.step()
        step += 1
        record = {
            "step": step - 1,
            "task": task,
            "lr": lr_at(step - 1, cfg),
            "seconds": round(time.perf_counter() - ts, 3),
            **parts,
        }
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if step % 20 == 0:
            shown = " ".join(f"{k} {v:.3f}" for k, v in parts.items() if k != "loss")
            progress(f"step {step} ({task}): {shown} ({record['seconds']} s)")
        if step - last_ckpt >= cfg.checkpoint_every:
            _save_state(ckpt, projector, optim, step)
            last_ckpt = step
    if step != last_ckpt or not (ckpt / STATE_FILE).exists():
        _save_state(ckpt, projector, optim, step)
    projector.eval()
    return TrainResult(step, time.perf_counter() - t0, stopped)
