"""Teacher targets and student losses.

Teacher: the frozen backbone reading the *text*, prompted exactly as the matched cascade prompts it
(``Task.prompt`` with the cascade's k shots, scored by ``HFCausalLM.score_options``), its label scores turned into
a distribution after held-out calibration fitted on the training texts (the cascade calibrates the same way on
held-out items). Student: the same backbone reading the projector's audio embeddings in the speech-LLM prompt the
runner uses (``casceq.systems.compose.speech_prompt`` inside ``UltravoxNativeBackend._pieces``). The loss is
KL(teacher || student) over the task's labels, the student's label score being exactly what
``score_options`` computes at inference (summed log-probabilities of each option's tokens), plus a
cross-entropy term on the transcription target (the student continues an instruction with the spoken text).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casceq.errors import InputError
from casceq.systems.compose import speech_prompt
from casceq.systems.llm.calibration import CalibrationFitter
from casceq.systems.speech_llm._hf import AUDIO
from casceq.tasks import get_task
from casceq.train.config import ASR_INSTRUCTION, TrainConfig
from casceq.types import Example


def teacher_targets(
    cfg: TrainConfig, texts: Sequence[str], llm: Any, out: Path, progress: Callable[[str], None] = print
) -> dict[str, np.ndarray]:
    """Calibrated teacher label distributions [N, C] per task for ``texts``, cached in ``out/teacher-<hash>.npz``.

    Args:
        cfg: The training config (tasks).
        texts: The training texts, in clip order.
        llm: An ``LLMBackend`` (``make_llm(backbone, few_shot=...)``) with ``score_options``.
        out: Training folder.
        progress: Progress printer.
    """
    import hashlib

    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    path = out / f"teacher-{digest}.npz"
    cached: dict[str, np.ndarray] = dict(np.load(path)) if path.exists() else {}
    for name in cfg.tasks:
        if name in cached and cached[name].shape[0] == len(texts):
            continue
        task = get_task(name)
        progress(f"teacher: scoring {len(texts)} texts for {name}")
        prompts = [task.prompt(t) for t in texts]
        scores = np.asarray(llm.score_options(prompts, [list(task.labels)] * len(texts)), dtype=np.float64)
        cal = CalibrationFitter(task.labels, "heldout").update(scores).calibrator
        logits = cal(scores)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        cached[name] = probs / probs.sum(1, keepdims=True)
        np.savez(path.with_suffix(".tmp.npz"), **cached)  # type: ignore[arg-type]  # numpy stubs: **kwds as bool
        path.with_suffix(".tmp.npz").replace(path)
    return {k: cached[k] for k in cfg.tasks}


@dataclass
class Row:
    """One student row before padding.

    A task example with several multi-token labels spans several rows (one per long label's continuation);
    the first row of such a group carries the options and ``group_reads``.

    Attributes:
        ids: Token ids with the clip's audio placeholders.
        clip: Index of the clip.
        kind: Task name, ``"asr"``, or ``"cont"`` (a continuation row of the group before it).
        reads: Positions (in ``ids``) whose next-token distribution is needed.
        targets: For ``"asr"``: the target id at each read.
        options: For a task: per label, (index into the group's reads, token id) pairs summing to its score.
        group_reads: Reads of the whole group (first row of a task group).
    """

    ids: list[int]
    clip: int
    kind: str
    reads: list[int]
    targets: list[int]
    options: list[list[tuple[int, int]]]
    group_reads: int = 0


def speech_prompt_for(task_name: str) -> str:
    """The runner's instruction for an audio input of this task (``casceq.systems.compose.speech_prompt``)."""
    task = get_task(task_name)
    return speech_prompt(task, Example(id="x", task=task.name, text="", label=task.labels[0]))


def asr_prompt() -> str:
    """The transcription instruction, in the runner's format for audio inputs."""
    return f"{ASR_INSTRUCTION}\n\nThe input is the audio.\nAnswer:"


def build_rows(backend: Any, clip: int, n_audio: int, kind: str, text: str, cfg: TrainConfig) -> list[Row]:
    """Token rows for one (clip, kind): the backend's own prompt pieces, so training sees what inference sees."""
    prompt = asr_prompt() if kind == "asr" else speech_prompt_for(kind)
    ids: list[int] = []
    for piece in backend._pieces(prompt):
        ids += [backend.audio_token_id] * n_audio if piece is AUDIO else backend._tokens(piece)
    last = len(ids) - 1
    if kind == "asr":
        target = backend._tokens(text)[: cfg.max_text_tokens]
        if not target:
            raise InputError(f"clip {clip}: its text tokenises to nothing")
        return [Row(ids + target[:-1], clip, kind, [last + i for i in range(len(target))], target, [])]
    toks = [backend._tokens(lab) for lab in get_task(kind).labels]
    # Long labels are continued after the prompt (one row each) so every token is scored as at inference.
    conts = [t for t in toks if len(t) > 1]
    rows = [Row(ids + (conts[0][:-1] if conts else []), clip, kind, [last], [], [])]
    offsets = {}
    n_reads = 1
    for c, t in enumerate(conts):
        reads = [last + i for i in range(1, len(t))]
        offsets[id(t)] = n_reads
        n_reads += len(reads)
        if c == 0:
            rows[0].reads += reads
        else:
            rows.append(Row(ids + t[:-1], clip, "cont", reads, [], []))
    for t in toks:
        opt = [(0, t[0])]
        if len(t) > 1:
            opt += [(offsets[id(t)] + i - 1, tok) for i, tok in enumerate(t[1:], start=1)]
        rows[0].options.append(opt)
    rows[0].group_reads = n_reads
    return rows


def student_loss(
    backend: Any,
    projector: Any,
    rows: Sequence[Row],
    frames: Sequence[Any],
    teacher: dict[str, np.ndarray],
    cfg: TrainConfig,
) -> tuple[Any, dict[str, float]]:
    """Loss of one batch (differentiable w.r.t. the projector) and its parts.

    Rows are left-padded to a common length; the backbone runs once on the spliced embeddings and the
    unembedding only on the positions read.

    Args:
        backend: The ``UltravoxNativeBackend`` (frozen encoder/backbone, tokenizer, prompt pieces).
        projector: The projector being trained.
        rows: B rows from ``build_rows``.
        frames: The clip's encoder frames [T, D] (float tensors) of each row.
        teacher: Task -> teacher distributions [N_clips, C].
        cfg: Training config (loss weights).

    Returns:
        (scalar loss, {"loss", "kl", "ce", "n_kl", "n_ce"}).
    """
    import torch

    lm = backend.model
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), backend.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r.ids) :] = torch.tensor(r.ids)
        mask[i, width - len(r.ids) :] = 1
    is_audio = ids == backend.audio_token_id
    embeds = lm.get_input_embeddings()(ids.masked_fill(is_audio, 0))
    audio = [projector(f.to(embeds.dtype)) for f in frames]
    embeds = embeds.clone()
    for i in range(len(rows)):
        embeds[i, is_audio[i]] = audio[i].to(embeds.dtype)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = lm.get_decoder()(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions
    ).last_hidden_state
    row_idx = [i for i, r in enumerate(rows) for _ in r.reads]
    pos_idx = [width - len(r.ids) + p for r in rows for p in r.reads]
    logits = lm.get_output_embeddings()(hidden[row_idx, pos_idx]).float()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    logp = logits.log_softmax(-1)  # [R, V]
    kl_terms, ce_terms = [], []
    at = 0
    for r in rows:
        if r.kind == "cont":
            continue  # read by its group's first row
        n = len(r.reads) if r.kind == "asr" else r.group_reads
        lp = logp[at : at + n]
        if r.kind == "asr":
            ce_terms.append(-lp[torch.arange(len(r.targets)), torch.tensor(r.targets)])
        else:
            scores = torch.stack([torch.stack([lp[j, t] for j, t in opt]).sum() for opt in r.options])
            p = torch.as_tensor(teacher[r.kind][r.clip], dtype=torch.float32)
            kl_terms.append((p * (p.clamp_min(1e-12).log() - scores.log_softmax(-1))).sum())
        at += n
    zero = logp.sum() * 0.0
    kl = torch.stack(kl_terms).mean() if kl_terms else zero
    ce = torch.cat(ce_terms).mean() if ce_terms else zero
    loss = cfg.kl_weight * kl + cfg.ce_weight * ce
    parts = {
        "loss": loss.item(),
        "kl": kl.item(),
        "ce": ce.item(),
        "n_kl": len(kl_terms),
        "n_ce": len(ce_terms),
    }
    return loss, parts
