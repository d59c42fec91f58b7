"""The acoustic control: a speech LLM that provably uses the audio beyond its words.

RAVDESS actors speak two fixed sentences in eight emotions, so its words carry no information about the label:
a cascade (which hears only the words) can only guess, and any speech LLM above chance on it reads the voice.
This stage fine-tunes a continuous-interface projector (``casceq.train.continuous``) through the frozen backbone
with the gold emotion labels of RAVDESS *training actors* only (``ACTOR_SPLITS["train"]``, casceq's
actor-disjoint split: actors 1-16 train, 17-24 test; 8 and 4 of each sex), in the exact prompt the model answers at
inference (the speech LLM's matched prompt of the ``ravdess`` task, audio where the transcript goes). Its
expected verdict on the text-insufficient claim is therefore known: on held-out actors it departs from its
matched cascade.

The loss is the cross-entropy of the gold label over the task's options as scored at inference (each option a
single backbone token after a space: the log-probability of that token at the answer position, the same
number ``score_options`` sums), plus ``imitate_weight`` times the imitation loss on the general training clips,
so the projector keeps the text interface it had. The checkpoint records the training clips' ids
(``training_ids.txt``): a run evaluating any of them is refused (``casceq.run.leakage``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casceq.audio.io import load_audio
from casceq.errors import InputError
from casceq.run.leakage import TRAINING_TEXTS_FILE, write_training_ids
from casceq.systems.compose import AUDIO_SLOT
from casceq.systems.speech_llm.shipped import checkpoint_folder, load_shipped
from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend, encoder_frames
from casceq.systems.speech_llm.ultravox_projector import CONFIG_FILE, read_checkpoint_record
from casceq.tasks import get_task, load_examples
from casceq.train.checkpoint import finish_step, start_state, warm_cosine
from casceq.train.config import config_from_dict, read_toml
from casceq.train.continuous import imitation_loss
from casceq.train.data import read_index
from casceq.train.matched import logits_of, prefix_cache, run_rows
from casceq.train.pipeline import load_teacher

STATE_FILE = "emotion_state.pt"
LOG_FILE = "emotion_log.jsonl"


@dataclass(frozen=True)
class EmotionConfig:
    """The acoustic control's fine-tuning.

    Attributes:
        split: RAVDESS actor split trained on (``casceq.tasks.speech_loaders.ACTOR_SPLITS``).
        steps: Optimiser steps (AdamW, warm-up, cosine down to 10%).
        batch: Clips per step.
        lr: Peak learning rate.
        warmup: Linear warm-up steps.
        imitate_weight: Weight of the imitation loss on general training clips (0: emotion only).
        imitate_batch: General clips per step for that term.
        general_clips: General clips drawn (seeded) from the general folder and held in memory (all when fewer).
        checkpoint_every: Steps between resumable checkpoints.
        threads: torch threads.
        seed: Seeds the batches.
    """

    split: str = "train"
    steps: int = 300
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 20
    imitate_weight: float = 1.0
    imitate_batch: int = 8
    checkpoint_every: int = 20
    threads: int = 2
    seed: int = 0
    general_clips: int = 2000


def load_emotion_config(path: str | Path) -> EmotionConfig:
    """Read a TOML file of ``EmotionConfig`` fields (``casceq train acoustic-control --config``).

    Raises:
        InputError: Missing or invalid TOML (named), unknown keys or values of the wrong type.
    """
    import dataclasses

    p = Path(path)
    data = read_toml(p)
    defaults = asdict(EmotionConfig())
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        raise InputError(f"unknown keys {unknown}; known: {sorted(defaults)}", path=str(p))
    values: dict[str, Any] = {}
    for key, value in data.items():
        want = type(defaults[key])
        ok = isinstance(value, (int, float) if want is float else want) and not isinstance(value, bool)
        if not ok:
            raise InputError(f"{key} must be {want.__name__}, got {value!r}", path=str(p))
        values[key] = float(value) if want is float else value
    return dataclasses.replace(EmotionConfig(), **values)


def answer_parts(backend: Any, task_name: str = "ravdess") -> tuple[list[int], list[int], list[int]]:
    """(prefix ids, suffix ids, option token ids) of ``task_name``'s speech prompt exactly as inference builds it.

    Raises:
        InputError: An option is not a single backbone token after a space.
    """
    task = get_task(task_name)
    pieces = backend._pieces(task.prompt(AUDIO_SLOT))
    ids = backend.prompt_ids(pieces, 1)
    cut = ids.index(backend.audio_token_id)
    options = [backend._tokens(backend.option_text(o)) for o in task.labels]
    if any(len(o) != 1 for o in options):
        raise InputError(f"{task_name}: every option must be one backbone token to train on (got {options})")
    return ids[:cut], ids[cut + 1 :], [o[0] for o in options]


def option_logits(
    backend: Any, projector: Any, cache: Any, parts: tuple[Any, Any, Any], frames: Sequence[Any]
) -> Any:
    """Log-probabilities [B, C] of each option's token at the answer position (differentiable in ``projector``)."""
    import torch

    prefix, suffix, options = parts
    lm = backend.model
    suffix_emb = lm.get_input_embeddings()(torch.tensor(suffix)).float()
    audio = [projector(f.float()) for f in frames]
    out = run_rows(lm, cache, len(prefix), [torch.cat([a, suffix_emb]) for a in audio], hidden=False)
    last = torch.tensor([int(a.shape[0]) + len(suffix) - 1 for a in audio])
    final = out.last_hidden_state[torch.arange(len(audio)), last]
    return logits_of(lm, final).log_softmax(-1)[:, options]


def run_emotion(
    backend: Any,
    clips: Sequence[tuple[Any, int]],
    general: Sequence[Any],
    teacher: Any,
    cfg: EmotionConfig,
    out: Path,
    *,
    imitate_target: str = "groups",
    resume: bool = False,
    progress: Callable[[str], None] = print,
) -> int:
    """Fine-tune ``backend.projector`` on ``clips`` ((frames, label index) pairs); return the steps done.

    ``general`` are encoder frames of the projector's general training clips and ``teacher`` the CTC head it
    imitated (``imitate_weight``: 0 skips both).
    """
    import torch

    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "emotion_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    projector = backend.projector.float().train()
    parts = answer_parts(backend)
    cache = prefix_cache(backend.model, parts[0])
    optim = torch.optim.AdamW(projector.parameters(), lr=cfg.lr, weight_decay=0.01)
    step = start_state(projector, optim, out, resume, state=STATE_FILE, log=LOG_FILE)
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, 12, step])
        picks = rng.choice(len(clips), size=cfg.batch, replace=False)
        logp = option_logits(backend, projector, cache, parts, [clips[int(i)][0] for i in picks])
        gold = torch.tensor([clips[int(i)][1] for i in picks])
        ce = torch.nn.functional.cross_entropy(logp, gold)
        row = {"ce": ce.item(), "acc": float((logp.argmax(-1) == gold).float().mean())}
        loss = ce
        if cfg.imitate_weight > 0 and general:
            chosen = [
                general[int(i)] for i in rng.choice(len(general), size=cfg.imitate_batch, replace=False)
            ]
            imit = imitation_loss(projector, teacher, chosen, chosen, imitate_target)
            loss = loss + cfg.imitate_weight * imit
            row["imitate"] = imit.item()
        for group in optim.param_groups:
            group["lr"] = cfg.lr * warm_cosine(step, cfg.steps, cfg.warmup)
        step = finish_step(
            projector,
            optim,
            loss,
            step,
            row,
            cfg.steps,
            cfg.checkpoint_every,
            out,
            state=STATE_FILE,
            log=LOG_FILE,
        )
        if step % 20 == 0:
            progress(f"emotion step {step}/{cfg.steps}: " + " ".join(f"{k} {v:.3f}" for k, v in row.items()))
    projector.eval()
    return step


def ravdess_clips(backend: Any, split: str, out: Path, progress: Callable[[str], None] = print) -> list[Any]:
    """(frames, label index, example id) of every RAVDESS clip of ``split``; frames cached in ``out/frames``."""
    import torch

    labels = list(get_task("ravdess").labels)
    cache = out / "frames"
    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    examples = load_examples("ravdess", split=split)
    progress(f"emotion: encoder frames of {len(examples)} RAVDESS {split} clips")
    for ex in examples:
        path = cache / f"{ex.id}.npy"
        if not path.exists():
            if ex.audio is None:
                raise InputError(f"ravdess example {ex.id} has no audio")
            audio = load_audio(ex.audio.path)
            with torch.inference_mode():
                chunks = encoder_frames(
                    backend.encoder, backend.feature_extractor, audio, backend.config.encoder_mode
                )
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, torch.cat(chunks).to(torch.float16).numpy())
            tmp.replace(path)
        clips.append((torch.from_numpy(np.load(path)), labels.index(ex.label), ex.id))
    return clips


def load_for_fitting(folder: Path, record: dict[str, Any]) -> UltravoxNativeBackend:
    """Load the checkpoint in ``folder`` (its ``record``) in float32 on the CPU, to fit something on top of it."""
    encoder = str((record.get("model") or {}).get("encoder", ""))
    if Path(encoder).exists():  # an exported folder names this machine's paths
        return UltravoxNativeBackend.from_checkpoint(folder, dtype="float32", device="cpu")
    # a shipped checkpoint names its parts by spec ("base", "gemma-3-270m"), resolved here
    return load_shipped(folder, dtype="float32", device="cpu")


def train_acoustic_control(
    model: str | Path,
    out: Path,
    cfg: EmotionConfig,
    *,
    general: Path | None = None,
    resume: bool = False,
    progress: Callable[[str], None] = print,
) -> Path:
    """Fine-tune the continuous checkpoint ``model`` into the acoustic control; export it to ``out/model``.

    ``general`` is a ``casceq train speech-llm`` folder whose cached frames (``clips.json``) feed the imitation
    term (its teacher is the checkpoint's recorded ``imitate`` head); None or ``imitate_weight = 0``: emotion only.
    """
    import shutil

    import torch

    model = checkpoint_folder(str(model))  # a shipped name ("continuous") or a checkpoint folder
    record = read_checkpoint_record(model)
    train_cfg = config_from_dict((record.get("training") or {}).get("config") or {}, where=str(model))
    if not train_cfg.imitate:
        raise InputError(
            "the acoustic control starts from a continuous (imitation-trained) checkpoint", path=str(model)
        )
    backend = load_for_fitting(model, record)
    clips = ravdess_clips(backend, cfg.split, out, progress)
    frames, teacher = [], None
    if general is not None and cfg.imitate_weight > 0:
        teacher = load_teacher(train_cfg, backend)
        index = read_index(general)
        rng = np.random.default_rng([cfg.seed, 13])
        frames = [
            torch.from_numpy(np.load(index[int(i)].frames))
            for i in rng.choice(len(index), min(cfg.general_clips, len(index)), replace=False)
        ]
    pairs = [(f, y) for f, y, _ in clips]
    steps = run_emotion(
        backend, pairs, frames, teacher, cfg, out, imitate_target=train_cfg.imitate_target, resume=resume,
        progress=progress,
    )  # fmt: skip
    folder = out / "model"
    backend.save(folder)
    rec = json.loads((folder / CONFIG_FILE).read_text())
    rec["training"] = {**record.get("training", {}), "acoustic_control": {**asdict(cfg), "steps_done": steps}}
    (folder / CONFIG_FILE).write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    if (Path(model) / TRAINING_TEXTS_FILE).is_file():
        shutil.copyfile(Path(model) / TRAINING_TEXTS_FILE, folder / TRAINING_TEXTS_FILE)
    write_training_ids(folder, "ravdess", [i for _, _, i in clips])
    return folder
