"""``casceq train speech-llm`` end to end: data, teacher, training, export, each stage cached in ``out``.

Stages (each resumable; timings are written to ``out/timings.json``):

0. ``generate``: film reviews written by the backbone (``casceq.train.gentext``; ``n_generated``).
1. ``speech``: synthesise the training texts (``casceq.train.data``), one voice each.
2. ``frames``: babble-mix and run the frozen encoder once per clip (``out/frames``, ``out/clips.json``).
3. ``teacher``: the text backbone's calibrated label distributions (``out/teacher.npz``).
3b. ``imitate``: an ``"embed"`` projector taught by a CTC head (``casceq.train.continuous``; no backbone pass).
4. ``align``: embedding-CTC pre-alignment of the projector (``casceq.train.align``; no backbone pass).
5. ``train``: distillation through the frozen backbone (``out/checkpoint``, ``out/log.jsonl``).
6. ``export``: the checkpoint the toolkit loads (``out/model``: fp16 projector, config, fingerprints).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from casceq.audio.textnorm import spoken_text
from casceq.errors import MissingDependency
from casceq.run.leakage import training_keys, write_training_keys
from casceq.systems.asr.hf_whisper import resolve_hf_whisper
from casceq.systems.llm import make_llm
from casceq.systems.llm.bundled import resolve_llm
from casceq.systems.speech_llm.shipped import checkpoint_folder
from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, UltravoxNativeConfig
from casceq.systems.speech_llm.ultravox_projector import (
    CONFIG_FILE,
    TRAINING_TEXTS_FILE,
    WEIGHTS_FILE,
    load_projector,
    weights_fingerprint,
)
from casceq.tasks import load_examples
from casceq.train import data
from casceq.train.align import run_align
from casceq.train.config import TrainConfig, use_bf16
from casceq.train.continuous import run_imitate
from casceq.train.ctc import ctc_vocab, spoken_targets
from casceq.train.distill import teacher_targets
from casceq.train.evaluate import plot_losses
from casceq.train.gentext import generate_reviews
from casceq.train.loop import TrainResult, read_log, run_steps
from casceq.train.matched_loop import run_matched_steps, task_targets


def _cpu_seconds() -> float:
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def make_backend(cfg: TrainConfig) -> Any:
    """Load the frozen encoder and backbone named by ``cfg`` with a fresh projector seeded by ``cfg.seed``."""
    folder, backbone = resolve_llm(cfg.backbone)
    ucfg = UltravoxNativeConfig(
        encoder=resolve_hf_whisper(cfg.encoder),
        backbone=folder,
        backbone_name=cfg.backbone_name or backbone,
        encoder_mode=cfg.encoder_mode,  # type: ignore[arg-type]
        stack_factor=cfg.stack_factor,
        hidden_dim=cfg.hidden_dim,
        prompt=cfg.prompt,  # type: ignore[arg-type]
        few_shot={t: cfg.teacher_few_shot for t in cfg.tasks} if cfg.prompt == "matched" else {},
    )
    return UltravoxNativeBackend.create(ucfg, seed=cfg.seed, few_shot_seed=cfg.seed)


def export(backend: Any, folder: Path, cfg: TrainConfig, meta: dict[str, Any]) -> Path:
    """Save the trained projector in float16 with its config, fingerprints and training record."""
    from safetensors.torch import load_file, save_file

    backend.save(folder)
    weights = folder / WEIGHTS_FILE
    tensors = load_file(str(weights))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(half, str(weights))
    record = json.loads((folder / CONFIG_FILE).read_text())
    record["training"] = {"config": cfg.to_dict(), **meta}
    (folder / CONFIG_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return folder


def train_speech_llm(
    cfg: TrainConfig, out: Path, *, resume: bool = False, progress: Callable[[str], None] = print
) -> Path:
    """Run every stage into ``out`` and return the exported model folder (``out/model``)."""
    import numpy as np
    import torch

    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    timings_path = out / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    cpu_mark = [_cpu_seconds()]

    def timed(name: str, t0: float) -> None:
        # Wall and CPU seconds (children included: TTS engines run as programs). On a shared machine the CPU
        # seconds are what extrapolates to an idle one.
        cpu = _cpu_seconds()
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 1)
        timings[f"{name}_cpu"] = round(timings.get(f"{name}_cpu", 0.0) + cpu - cpu_mark[0], 1)
        cpu_mark[0] = cpu
        timings_path.write_text(json.dumps(timings, indent=2) + "\n")

    t0 = time.perf_counter()
    backend = make_backend(cfg)
    timed("load", t0)
    t0 = time.perf_counter()
    generated = _generate(cfg, out, backend, progress)
    timed("generate", t0)
    t0 = time.perf_counter()
    spoken = data.synthesize(cfg, out, progress, generated)
    timed("speech", t0)
    t0 = time.perf_counter()
    clips = data.encode_clips(cfg, out, spoken, backend.encoder, backend.feature_extractor, progress)
    timed("frames", t0)
    texts = [c.text for c in clips]
    # shipped beside the weights: what every run checks its evaluated items against (casceq.run.leakage)
    (out / "model").mkdir(parents=True, exist_ok=True)
    write_training_keys(out / "model", texts)
    if cfg.head == "ctc":
        texts = spoken_targets([c.id for c in clips], texts)  # a CTC head transcribes what was said
        backend.use_ctc_head(ctc_vocab(backend.tokenizer, texts, cfg.ctc_min_count)[0], seed=cfg.seed)
    if cfg.imitate:
        return _train_continuous(cfg, out, backend, clips, texts, resume, timed, progress)
    if cfg.head == "ctc" and cfg.steps == 0:
        return _train_ctc_only(cfg, out, backend, clips, texts, resume, timed, progress)
    if cfg.prompt == "matched":
        return _train_matched(cfg, out, backend, clips, texts, resume, timed, progress)
    t0 = time.perf_counter()
    if cfg.tasks:
        llm = make_llm(cfg.backbone, few_shot={t: cfg.teacher_few_shot for t in cfg.tasks})
        scored = texts[: cfg.teacher_clips] if cfg.teacher_clips else texts
        teacher = teacher_targets(cfg, scored, llm, out, progress)
        del llm
    else:
        teacher = {}
    timed("teacher", t0)
    frames = [torch.from_numpy(np.load(c.frames)) for c in clips]
    t0 = time.perf_counter()
    if not (out / "checkpoint").exists():  # once distillation has started, its checkpoint holds the projector
        run_align(backend, frames, texts, cfg, out, resume=resume, progress=progress)
    timed("align", t0)
    t0 = time.perf_counter()
    result = run_steps(backend, frames, texts, teacher, cfg, out, resume=resume, progress=progress)
    timed("train", t0)
    return _finish(backend, cfg, out, result, len(clips), progress)


def _generate(cfg: TrainConfig, out: Path, backend: Any, progress: Callable[[str], None]) -> list[Any]:
    """The backbone's own film reviews (``casceq.train.gentext``), none repeating SST-2 text; [] when none asked."""
    if cfg.n_generated <= 0:
        return []
    sst2 = [ex.text for ex in load_examples("sst2")]
    exclude = sst2 + [spoken_text(t, "sst2") for t in sst2]
    return generate_reviews(
        backend.model,
        backend.tokenizer,
        cfg.n_generated,
        out,
        seed=cfg.seed,
        exclude=exclude,
        bf16=use_bf16(cfg.bf16),
        progress=progress,
    )


def _finish(
    backend: Any, cfg: TrainConfig, out: Path, result: Any, n_clips: int, progress: Callable[[str], None]
) -> Path:
    """Plot the loss curves and export the model with its training record."""
    import numpy as np

    log = read_log(out)
    meta = {
        "steps": result.step,
        "clips": n_clips,
        "stopped_early": result.stopped_early,
        "timings_s": json.loads((out / "timings.json").read_text()),
        "final_loss_mean_last_50": float(np.mean([r["loss"] for r in log[-50:]])) if log else None,
    }
    model = export(backend, out / "model", cfg, meta)
    _plot(out, progress)  # after the export: a plotting failure must not cost a trained model
    return model


def _plot(out: Path, progress: Callable[[str], None]) -> None:
    """Write ``out/loss.png`` (needs matplotlib, extra ``report``; skipped with a note without it)."""
    try:
        plot_losses(out, out / "loss.png")
    except MissingDependency as exc:
        progress(f"loss curves not plotted: {exc}")


def _train_ctc_only(
    cfg: TrainConfig,
    out: Path,
    backend: Any,
    clips: list[Any],
    texts: list[str],
    resume: bool,
    timed: Callable[[str, float], None],
    progress: Callable[[str], None],
) -> Path:
    """A ``"ctc"`` head trained by the CTC stage alone (no teacher, no pass through the backbone)."""
    import numpy as np
    import torch

    frames = [torch.from_numpy(np.load(c.frames)) for c in clips]
    t0 = time.perf_counter()
    steps = run_align(backend, frames, texts, cfg, out, resume=resume, progress=progress)
    timed("align", t0)
    return _finish(
        backend, cfg, out, TrainResult(steps, time.perf_counter() - t0, False), len(clips), progress
    )


def _train_matched(
    cfg: TrainConfig,
    out: Path,
    backend: Any,
    clips: list[Any],
    spoken: list[str],
    resume: bool,
    timed: Callable[[str, float], None],
    progress: Callable[[str], None],
    frames: list[Any] | None = None,
) -> Path:
    """Teacher, optional pre-alignment, training and export of the matched-prompt recipe.

    The teacher reads each clip's written text (as the cascade's LLM reads a transcript); the alignment and
    transcription targets are ``spoken`` (a CTC head's: what each voice said, its vocabulary's texts).
    """
    import numpy as np
    import torch

    t0 = time.perf_counter()
    targets = task_targets(cfg, backend, [c.text for c in clips], out, progress)
    timed("teacher", t0)
    if frames is None:
        frames = [torch.from_numpy(np.load(c.frames)) for c in clips]
    t0 = time.perf_counter()
    if not (out / "checkpoint").exists():
        run_align(backend, frames, spoken, cfg, out, resume=resume, progress=progress)
    timed("align", t0)
    t0 = time.perf_counter()
    result = run_matched_steps(
        backend, frames, targets, cfg, out, texts=spoken, resume=resume, progress=progress
    )
    timed("train", t0)
    return _finish(backend, cfg, out, result, len(clips), progress)


def load_teacher(cfg: TrainConfig, backend: Any) -> Any:
    """The ``"ctc"``-head projector named by ``cfg.imitate``, checked against ``backend``'s encoder and backbone."""
    folder = checkpoint_folder(cfg.imitate)
    teacher, pcfg = load_projector(
        folder,
        encoder_hash=weights_fingerprint(backend.encoder),
        backbone_hash=weights_fingerprint(backend.model),
    )
    if pcfg.head != "ctc":
        raise ValueError(f"imitate names a {pcfg.head!r} projector ({folder}); it must be a 'ctc' head")
    teacher = teacher.float()
    teacher.attach_table(backend.model.get_input_embeddings()(teacher.vocab_ids).float())
    return teacher


def _add_teacher_keys(cfg: TrainConfig, model: Path) -> None:
    """Add the teacher's training-text keys to the student's: what the teacher learnt from, the student imitates."""
    theirs = training_keys(checkpoint_folder(cfg.imitate))
    if theirs:
        keys = theirs | (training_keys(model) or frozenset())
        (model / TRAINING_TEXTS_FILE).write_text("".join(k + "\n" for k in sorted(keys)))


def _train_continuous(
    cfg: TrainConfig,
    out: Path,
    backend: Any,
    clips: list[Any],
    spoken: list[str],
    resume: bool,
    timed: Callable[[str, float], None],
    progress: Callable[[str], None],
) -> Path:
    """Imitation of a CTC head by the ``"embed"`` projector, then (``steps > 0``) the matched distillation."""
    import numpy as np
    import torch

    teacher = load_teacher(cfg, backend)
    _add_teacher_keys(cfg, out / "model")
    frames = [torch.from_numpy(np.load(c.frames)) for c in clips]
    t0 = time.perf_counter()
    steps = 0
    if not (out / "checkpoint").exists():  # once distillation has started, its checkpoint holds the projector
        steps = run_imitate(backend.projector, teacher, frames, cfg, out, resume=resume, progress=progress)
    timed("imitate", t0)
    if cfg.steps > 0:
        return _train_matched(cfg, out, backend, clips, spoken, resume, timed, progress, frames)
    return _finish(
        backend, cfg, out, TrainResult(steps, time.perf_counter() - t0, False), len(clips), progress
    )
