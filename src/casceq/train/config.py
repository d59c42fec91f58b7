"""The typed configuration of ``casceq train speech-llm`` and its TOML reader.

The defaults are the general recipe; the shipped model's config is ``casceq/data/speech_llm/train.toml``, which
``casceq train speech-llm`` reads when no ``--config`` is given (``docs/speech_llm_training.md``). Unknown keys
are refused with the file named, never ignored.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casceq.errors import InputError

ASR_INSTRUCTION = "Repeat exactly the words that are spoken."
"""The instruction of the auxiliary transcription target (the student continues it with the text)."""


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how.

    Attributes:
        encoder: Whisper model (bundled name ``"base"``, CTranslate2 or transformers folder, hub id); frozen.
        backbone: Causal LM (bundled name, folder, ``.gguf`` or hub id); frozen, also the teacher.
        backbone_name: Backbone id written into the checkpoint (matches the cascade on the same LLM).
        encoder_mode: ``"padded"`` or ``"unpadded"`` encoder input (stored; inference uses the same).
        stack_factor: Encoder frames per audio embedding.
        hidden_dim: Projector MLP width.
        head: Projector output: ``"embed"`` (Ultravox: the MLP emits embeddings) or ``"ctc"`` (the MLP emits CTC
            logits over the training texts' tokens; embeddings are posterior-weighted token embeddings, one per
            greedy CTC segment; ``casceq.systems.speech_llm.ultravox_projector``). A ``"ctc"`` head is trained
            by the CTC stage (``align_*``) and, when ``steps`` > 0, distilled after it.
        prompt: ``"chat"`` (default; the recipe shipped until 5 Dec 2026): audio then instruction, label KL and
            transcription CE (``casceq.train.distill``). ``"matched"``: the student reads the matched cascade's
            prompt with the audio in the transcript's place and is distilled on the teacher's suffix hidden
            states and answer distribution, plus transcription rows (``casceq.train.matched``,
            ``casceq.train.matched_loop``; docs/speech_llm_training.md).
        hidden_weight: Weight of the standardised hidden-state term (``"matched"``).
        n_ag_news: AG News texts to speak (outside every evaluation subset, see ``casceq.train.data``).
        n_meld: MELD *train* utterances to speak (at least ``min_words`` words).
        min_words: Shortest MELD utterance used.
        voices: Voice -> share of the clips (each text is spoken once, by one voice).
        max_clips: Use only this many of the planned clips (a seeded subset mixing voices and sources; 0 = all):
            the compute knob when the machine is busy.
        babble_fraction: Share of clips mixed with recorded babble.
        snr_range: Babble SNRs (dB) drawn uniformly from this range.
        tasks: Classification instructions distilled from the teacher (evaluation task names).
        teacher_few_shot: Shots of the teacher's prompt per task (the matched cascade's settings).
        teacher_clips: Distil only on the first this many clips (0 = all): the teacher's cost knob.
        asr_weight: Share of rows trained on the transcription target instead of a task instruction.
        asr_only_steps: First steps trained on the transcription target only (aligns the projector before
            distillation, as Ultravox-style training benefits from; the teacher is not needed before them).
        max_text_tokens: Transcript tokens used in the transcription target.
        align_steps: Steps of the embedding-CTC pre-alignment (``casceq.train.align``; no backbone pass).
        align_batch: Clips per pre-alignment step.
        align_lr: Pre-alignment peak learning rate (AdamW; constant, or cosine down to 10% with ``align_cosine``).
        align_cosine: Cosine-decay the pre-alignment learning rate over ``align_steps``.
        align_temperature: Temperature of the cosine-similarity logits of the pre-alignment.
        kl_weight: Weight of the KL(teacher || student) term.
        ce_weight: Weight of the transcription cross-entropy term.
        steps: Optimiser steps of distillation through the backbone (0: none, for a ``"ctc"`` head).
        batch_size: Rows per step.
        lr: Peak learning rate (AdamW), after ``warmup`` linear steps, cosine down to 10%.
        warmup: Warm-up steps.
        weight_decay: AdamW weight decay.
        checkpoint_every: Steps between resumable checkpoints.
        max_minutes: Stop (with a checkpoint) after this much training wall time; 0 = no limit.
        threads: torch threads.
        bf16: bfloat16 autocast for the forward/backward passes: ``true``, ``false`` or ``"auto"`` (default: on
            where the CPU computes bfloat16 natively, ``use_bf16``). On a CPU without it (AVX2 only) it measured
            5x slower than float32; on AMX / AVX-512-BF16 CPUs ~2-3x faster.
        n_generated: Film reviews written by the backbone itself to speak as well (``casceq.train.gentext``:
            the vocabulary of opinion that news and dialogue lack); 0 = none.
        ctc_min_count: A ``"ctc"`` head emits the tokens seen at least this often in the training targets.
        ctc_time_masks: Time masks per clip in ``"ctc"`` head training (``casceq.train.ctc``).
        ctc_mask_frames: Longest time mask, in encoder frames (20 ms each).
        ctc_dropout: Dropout on the encoder frames in ``"ctc"`` head training.
        imitate: A ``"ctc"``-head checkpoint (folder, or ``"bundled"`` for the shipped one) that an ``"embed"``
            projector learns to reproduce before any backbone pass (``casceq.train.continuous``); "" = off.
        imitate_target: Per-group target of the imitation: ``"groups"`` or ``"nonblank"`` (module doc).
        imitate_steps: Optimiser steps of the imitation stage.
        imitate_lr: Peak learning rate of the imitation stage (AdamW, warm-up, cosine down to 10%).
        seed: Seeds the projector initialisation, the text choice, voices, babble and the batches.
        eval_seeds: Evaluation seeds whose subsets are excluded from the training text.
        eval_n: Largest evaluation subset size excluded per seed.
    """

    encoder: str = "base"
    backbone: str = "gemma-3-270m"
    backbone_name: str | None = None
    encoder_mode: str = "unpadded"
    stack_factor: int = 8
    hidden_dim: int = 1024
    head: str = "embed"
    prompt: str = "chat"
    hidden_weight: float = 1.0
    n_ag_news: int = 700
    n_meld: int = 700
    min_words: int = 4
    voices: dict[str, float] = field(
        default_factory=lambda: {
            "hibari-heart": 0.3,
            "festival-slt-hts": 0.15,
            "flite-rms": 0.15,
            "flite-awb": 0.15,
            "flite-slt": 0.1,
            "espeak-gb-f4": 0.15,
        }
    )
    max_clips: int = 0
    babble_fraction: float = 0.3
    snr_range: tuple[float, float] = (0.0, 20.0)
    tasks: tuple[str, ...] = ("sst2", "ag_news")
    teacher_few_shot: int = 4
    teacher_clips: int = 0
    asr_weight: float = 0.4
    asr_only_steps: int = 400
    max_text_tokens: int = 40
    align_steps: int = 1500
    align_batch: int = 16
    align_lr: float = 2e-3
    align_cosine: bool = False
    align_temperature: float = 0.1
    kl_weight: float = 1.0
    ce_weight: float = 1.0
    steps: int = 1500
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.0
    checkpoint_every: int = 100
    max_minutes: float = 0.0
    threads: int = 2
    bf16: bool | str = "auto"
    n_generated: int = 0
    ctc_min_count: int = 1
    ctc_time_masks: int = 0
    ctc_mask_frames: int = 10
    ctc_dropout: float = 0.0
    imitate: str = ""
    imitate_target: str = "groups"
    imitate_steps: int = 0
    imitate_lr: float = 1e-3
    seed: int = 0
    eval_seeds: tuple[int, ...] = (0, 1, 2)
    eval_n: int = 200

    def __post_init__(self) -> None:
        if self.encoder_mode not in ("padded", "unpadded"):
            raise InputError(f"encoder_mode must be 'padded' or 'unpadded', not {self.encoder_mode!r}")
        if not self.voices or any(w <= 0 for w in self.voices.values()):
            raise InputError("voices must map at least one voice to a positive share")
        if not 0.0 <= self.babble_fraction <= 1.0 or not 0.0 <= self.asr_weight <= 1.0:
            raise InputError("babble_fraction and asr_weight must lie in [0, 1]")
        if self.snr_range[0] > self.snr_range[1]:
            raise InputError(f"snr_range {self.snr_range} is not (low, high)")
        if self.steps < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise InputError("steps must be >= 0, batch_size and checkpoint_every >= 1")
        if self.bf16 not in (True, False, "auto"):
            raise InputError(f'bf16 must be true, false or "auto", not {self.bf16!r}')
        if (
            self.n_generated < 0
            or self.ctc_min_count < 1
            or self.ctc_time_masks < 0
            or self.ctc_mask_frames < 0
        ):
            raise InputError(
                "n_generated, ctc_time_masks and ctc_mask_frames must be >= 0, ctc_min_count >= 1"
            )
        if not 0.0 <= self.ctc_dropout < 1.0:
            raise InputError(f"ctc_dropout must lie in [0, 1), not {self.ctc_dropout}")
        if self.head not in ("embed", "ctc"):
            raise InputError(f"head must be 'embed' or 'ctc', not {self.head!r}")
        if self.imitate and (self.head != "embed" or self.imitate_steps < 1 or self.align_steps != 0):
            raise InputError(
                "imitation trains an 'embed' head in place of the alignment stage: give head = 'embed', "
                "imitate_steps >= 1 and align_steps = 0"
            )
        if self.imitate_target not in ("groups", "nonblank"):
            raise InputError(f"imitate_target must be 'groups' or 'nonblank', not {self.imitate_target!r}")
        if self.steps == 0 and self.head != "ctc" and not self.imitate:
            raise InputError(
                "steps = 0 leaves an 'embed' projector untrained beyond alignment; give steps >= 1"
            )
        if self.head == "ctc" and self.align_steps < 1:
            raise InputError("a 'ctc' head is trained by the CTC stage: give align_steps >= 1")
        if self.prompt not in ("matched", "chat"):
            raise InputError(f"prompt must be 'matched' or 'chat', not {self.prompt!r}")
        if self.prompt == "matched" and not self.tasks:
            raise InputError("the matched recipe distils task prompts: give at least one task")
        if self.asr_weight < 1.0 and not self.tasks:
            raise InputError("no classification tasks given but asr_weight < 1")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field."""
        return dataclasses.asdict(self)


def use_bf16(setting: bool | str) -> bool:
    """Whether to autocast to bfloat16: the setting itself, or for ``"auto"`` whether the CPU has native bfloat16.

    Native means the ``amx_bf16`` or ``avx512_bf16`` flag in ``/proc/cpuinfo`` (Linux; elsewhere ``"auto"`` is
    off). Without them PyTorch emulates bfloat16 and autocast made a step 5x slower (docs/speech_llm_training.md).
    """
    if setting != "auto":
        return bool(setting)
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a TOML file of ``TrainConfig`` fields (top level); None gives the defaults.

    Raises:
        InputError: Unreadable TOML (line named), unknown keys, or invalid values.
    """
    if path is None:
        return TrainConfig()
    return config_from_dict(read_toml(path), where=str(path))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The top-level table of a TOML config file (the training and acoustic-control recipes).

    Raises:
        InputError: The file is missing, not UTF-8, or not TOML (the parser's line named).
    """
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("config file not found", path=str(p)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"invalid TOML: {exc}", path=str(p)) from None


def config_from_dict(data: dict[str, Any], where: str = "<config>") -> TrainConfig:
    """Build a ``TrainConfig`` from a dict (tuples from lists), refusing unknown keys."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown keys {unknown}; known: {sorted(known)}", path=where)
    fixed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return TrainConfig(**fixed)
    except TypeError as exc:
        raise InputError(str(exc), path=where) from exc
