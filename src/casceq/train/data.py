"""Training speech for the speech LLM: disjoint text, one voice per text, babble, cached encoder frames.

The split (documented in docs/speech_llm_training.md, tested in tests/test_train_data.py):

- AG News (``test.csv``, the only AG News file offline): every item ranked in the first ``eval_n`` by
  ``sample_rank(id, s)`` for ``s`` in ``eval_seeds`` (the subsets ``load_examples(n<=eval_n, seed=s)`` evaluates),
  in the first ``eval_n`` for the seeds ``s + 7919`` (older calibration draws) and in the last 306 (few-shot
  shots, ``casceq.systems.llm.prompting.few_shot_examples``, then up to 256 held-out calibration items,
  ``casceq.run.calibrate.heldout_examples``) is excluded; training items
  are the next ``n_ag_news`` by ``sample_rank(id, seed + 104729)``.
- MELD: ``train`` split utterances only (evaluation reads ``test``), with at least ``min_words`` words.
- SST-2 and CSQA text is never used (SST-2 dev is all there is offline). Teacher targets need no labels, so the
  sentiment instruction is distilled on AG News and MELD text.
- Film reviews written by the backbone (``casceq.train.gentext``, ``n_generated``), none sharing a
  6-word run with any SST-2 sentence.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casceq.audio.babble import RecordedBabble
from casceq.audio.io import load_audio
from casceq.audio.noise import mix_at_snr
from casceq.audio.synth import synthesize_examples
from casceq.audio.tts.manifest import Manifest
from casceq.errors import InputError
from casceq.paths import datasets_dir
from casceq.systems.speech_llm.ultravox_native import encoder_frames
from casceq.tasks import load_examples, sample_rank
from casceq.train.config import TrainConfig
from casceq.types import Example

CALIBRATION_SEED_OFFSET = 7919
# The far end of a run's ranking: few-shot shots, then up to 256 held-out calibration items.
SHOT_POOL = 50 + 256
TRAIN_SEED_OFFSET = 104729
MAX_SECONDS = 30.0


@dataclass(frozen=True)
class Clip:
    """One training clip.

    Attributes:
        id: Unique clip id (``"<source>/<example id>"``).
        text: The spoken text (the teacher's input and the transcription target).
        voice: Voice that spoke it.
        snr_db: Babble SNR, or None for clean.
        frames: Path of the cached encoder frames (``.npy``, float16 [T, D]).
    """

    id: str
    text: str
    voice: str
    snr_db: float | None
    frames: str


def evaluation_ids(task: str, seeds: Sequence[int], n: int) -> set[str]:
    """Ids any evaluation of ``task`` with a seed in ``seeds`` and ``n' <= n`` items can use (items, shots, calibration)."""
    pool = load_examples(task)
    used: set[str] = set()
    for s in seeds:
        for key_seed, count in ((s, n), (s + CALIBRATION_SEED_OFFSET, 2 * n)):
            ranked = sorted(pool, key=lambda ex, k=key_seed: sample_rank(ex.id, k))  # type: ignore[misc]
            used |= {ex.id for ex in ranked[:count]}
        ranked = sorted(pool, key=lambda ex, k=s: sample_rank(ex.id, k))  # type: ignore[misc]
        used |= {ex.id for ex in ranked[-SHOT_POOL:]}
    return used


def training_texts(cfg: TrainConfig, generated: Sequence[Example] = ()) -> list[Example]:
    """The training examples (AG News outside evaluation, MELD train, then ``generated[:cfg.n_generated]``).

    Deterministic in ``cfg.seed`` (and the generated reviews, ``casceq.train.gentext``).
    """
    excluded = evaluation_ids("ag_news", cfg.eval_seeds, cfg.eval_n)
    ag = [ex for ex in load_examples("ag_news") if ex.id not in excluded]
    ag.sort(key=lambda ex: sample_rank(ex.id, cfg.seed + TRAIN_SEED_OFFSET))
    meld = [ex for ex in load_examples("meld", split="train") if len(ex.text.split()) >= cfg.min_words]
    meld.sort(key=lambda ex: sample_rank(ex.id, cfg.seed + TRAIN_SEED_OFFSET))
    return ag[: cfg.n_ag_news] + meld[: cfg.n_meld] + list(generated[: cfg.n_generated])


def assign_voices(examples: Sequence[Example], cfg: TrainConfig) -> dict[str, list[Example]]:
    """Split examples over voices in proportion to ``cfg.voices`` (seeded shuffle, one voice per text)."""
    rng = np.random.default_rng([cfg.seed, 1])
    order = rng.permutation(len(examples))
    names = list(cfg.voices)
    shares = np.array([cfg.voices[v] for v in names], dtype=float)
    bounds = np.round(np.cumsum(shares / shares.sum()) * len(examples)).astype(int)
    out: dict[str, list[Example]] = {v: [] for v in names}
    start = 0
    for v, end in zip(names, bounds, strict=True):
        out[v] = [examples[i] for i in order[start:end]]
        start = end
    return out


def clip_id(example: Example) -> str:
    """The clip id of a training example: ``"<task>/<example id>"``."""
    return f"{example.task}/{example.id}"


def planned_clips(cfg: TrainConfig, generated: Sequence[Example] = ()) -> list[tuple[Example, str]]:
    """(example, voice) of every clip to use, in a seeded order that mixes voices and sources.

    With ``cfg.max_clips`` the first ``max_clips`` of that order are kept, so a smaller run uses a subset of
    a larger one's clips (same voices, same babble: both are fixed per clip).
    """
    texts = training_texts(cfg, generated)
    pairs = [(ex, v) for v, exs in assign_voices(texts, cfg).items() for ex in exs]
    pairs.sort(key=lambda p: sample_rank(clip_id(p[0]), cfg.seed + 5))
    return pairs[: cfg.max_clips] if cfg.max_clips else pairs


def synthesize(
    cfg: TrainConfig,
    out: Path,
    progress: Callable[[str], None] = print,
    generated: Sequence[Example] = (),
) -> list[tuple[Example, str, Path]]:
    """Speak every planned clip with its voice into ``out/speech`` (cached); return (example, voice, wav path)."""
    root = out / "speech"
    plan = planned_clips(cfg, generated)
    for voice in cfg.voices:
        exs = [ex for ex, v in plan if v == voice]
        progress(f"synthesising {len(exs)} clips with {voice}")
        synthesize_examples(
            exs, [voice], root, seed=cfg.seed, jobs=2, request={"purpose": "speech-llm training"}
        )
    by_key = {(e.example_id, e.voice): e for e in Manifest.load(root).entries}
    result = []
    for ex, voice in plan:
        entry = by_key.get((ex.id, voice))
        if entry is not None and entry.duration <= MAX_SECONDS:
            result.append((ex, voice, root / entry.path))
    return result


def babble_plan(clip_ids: Sequence[str], cfg: TrainConfig) -> dict[str, float | None]:
    """Seeded choice, fixed per clip, of the clips mixed with babble and their SNRs (dB); None = clean."""
    out: dict[str, float | None] = {}
    for cid in clip_ids:
        rng = np.random.default_rng(list(sample_rank(cid, cfg.seed + 2)[:8]))
        noisy, snr = rng.random() < cfg.babble_fraction, rng.uniform(*cfg.snr_range)
        out[cid] = float(round(snr, 2)) if noisy else None
    return out


def encode_clips(
    cfg: TrainConfig,
    out: Path,
    spoken: Sequence[tuple[Example, str, Path]],
    encoder: Any,
    feature_extractor: Any,
    progress: Callable[[str], None] = print,
) -> list[Clip]:
    """Mix babble, run the frozen encoder once per clip and cache its frames (float16 ``.npy``) in ``out/frames``.

    The index ``out/clips.json`` is rewritten after every 50 clips, so an interrupted run keeps its work.
    """
    import torch

    folder = out / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    ids = [clip_id(ex) for ex, _, _ in spoken]
    plan = babble_plan(ids, cfg)
    babble = None
    if any(v is not None for v in plan.values()):
        root = datasets_dir()
        if root is None:
            raise InputError(
                "babble augmentation needs the datasets folder (babble recordings); set $CASCEQ_DATASETS"
            )
        babble = RecordedBabble.from_folder(root / "babble")
    clips: list[Clip] = []
    for i, ((ex, voice, wav_path), cid) in enumerate(zip(spoken, ids, strict=True)):
        snr = plan[cid]
        tag = "clean" if snr is None else f"snr{snr:g}"
        path = folder / f"{cid.replace('/', '__')}__{tag}.npy"
        if not path.exists():
            wav = load_audio(wav_path, 16_000)
            if snr is not None and babble is not None:
                rng = np.random.default_rng(list(sample_rank(cid, cfg.seed + 3)[:8]))
                wav = mix_at_snr(wav, babble.sample(len(wav), rng), snr, rng).mixture
            with torch.inference_mode():
                frames = encoder_frames(encoder, feature_extractor, wav, cfg.encoder_mode)  # type: ignore[arg-type]
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, torch.cat(frames, 0).to(torch.float16).numpy())
            tmp.replace(path)
        clips.append(Clip(cid, ex.text, voice, snr, str(path)))
        if (i + 1) % 50 == 0 or i + 1 == len(spoken):
            write_index(out, clips)
            progress(f"encoded {i + 1}/{len(spoken)} clips")
    return clips


def write_index(out: Path, clips: Sequence[Clip]) -> None:
    """Write ``out/clips.json`` atomically."""
    tmp = out / "clips.json.tmp"
    tmp.write_text(json.dumps([c.__dict__ for c in clips], indent=1))
    tmp.replace(out / "clips.json")


def read_index(out: Path) -> list[Clip]:
    """Read ``out/clips.json``."""
    path = out / "clips.json"
    if not path.is_file():
        raise InputError("no clip index (run the data stage first)", path=str(path))
    return [Clip(**row) for row in json.loads(path.read_text())]
