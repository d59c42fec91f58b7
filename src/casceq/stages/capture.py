"""Capture stage: hidden states at chosen layers over the audio positions of N utterances, in shards on disk.

Utterances come from a task whose examples carry audio or from a folder of audio (a ``casceq synth`` output, or
audio files with optional same-name ``.txt`` transcripts), seeded-subsampled. A finished capture in the output
folder is refused unless resumed or forced; an unfinished one (``capture.partial.json`` only) is continued.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from casceq.audio.tts.manifest import Manifest
from casceq.errors import InputError
from casceq.mech.adapters import layout_of
from casceq.mech.capture import Utterance, capture, fingerprint
from casceq.mech.shards import META_FILE, PARTIAL_META_FILE, CaptureReader
from casceq.stages.context import ContextConfig, StageContext
from casceq.systems.speech_llm.registry import default_backbone
from casceq.tasks import load_examples

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".m4a", ".mp4")


@dataclass(frozen=True)
class CaptureConfig:
    """One capture (the options of ``casceq capture``).

    Attributes:
        model: ``whisper:tiny.en|base|DIR`` or a speech LLM ``FAMILY:PATH``.
        out: Output capture folder.
        task: A task whose examples carry audio (or ``audio_dir``).
        audio_dir: A ``casceq synth`` output folder or a folder of audio files.
        n: Utterances to capture (0: all; seeded subsample).
        seed: Subsampling seed.
        layers: Layer indices (None: the paper's fractions of depth).
        prompt: Instruction given to speech LLMs.
        backbone: Backbone id of a speech LLM not in the known list.
        dtype: Storage dtype of the states.
        pitch: Track F0 (else energy only).
        shard_positions: Rows per shard.
        data_dir: Folder of the task's files.
        resume: Continue an interrupted capture in ``out``.
        force: Replace an existing capture in ``out``.
    """

    model: str
    out: str
    task: str | None = None
    audio_dir: str | None = None
    n: int = 0
    seed: int = 0
    layers: tuple[int, ...] | None = None
    prompt: str = "Transcribe the audio."
    backbone: str | None = None
    dtype: str = "float16"
    pitch: bool = True
    shard_positions: int = 50_000
    data_dir: str | None = None
    resume: bool = False
    force: bool = False

    def command_line(self) -> str:
        """Spell out the capture command this config stands for (recorded in capture.json)."""
        src = f"--task {self.task}" if self.task else f"--audio-dir {self.audio_dir}"
        parts = ["casceq capture", f"--model {self.model}", src, f"--n {self.n}", f"--seed {self.seed}"]
        if self.layers:
            parts.append("--layers " + " ".join(map(str, self.layers)))
        parts += [f"--dtype {self.dtype}", f"--out {self.out}"] + ([] if self.pitch else ["--no-pitch"])
        return " ".join(parts)

    def context(self) -> ContextConfig:
        """The context loading this capture's model (a speech LLM with its known or given backbone)."""
        target = self.model.partition(":")[2]
        backbone = self.backbone or default_backbone(target) or "unknown"
        return ContextConfig(model=self.model, backbone=backbone)


@dataclass(frozen=True)
class CaptureResult:
    """What a capture stage left in its folder.

    Attributes:
        out: The capture folder.
        requested: Utterances selected (after subsampling).
        captured: Utterances captured by this call (0: all were already there).
        n_utterances: Utterances in the finished capture.
        n_positions: Audio positions captured.
        layers: Captured layers.
        n_layers: The model's layer count.
        width: Hidden width D.
        n_shards: Shards written.
        n_truncated: Clips truncated to the model's window.
    """

    out: str
    requested: int
    captured: int
    n_utterances: int = 0
    n_positions: int = 0
    layers: tuple[int, ...] = ()
    n_layers: int = 0
    width: int = 0
    n_shards: int = 0
    n_truncated: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaptureResult:
        """Inverse of :meth:`to_json`."""
        return cls(**{**data, "layers": tuple(data.get("layers", ()))})

    def summary(self) -> str:
        """The one-line summary ``casceq capture`` prints."""
        if not self.captured:
            return f"capture: all {self.requested} utterances already in {self.out}"
        return (
            f"captured {self.n_utterances} utterances, {self.n_positions} positions, layers {list(self.layers)} of "
            f"{self.n_layers}, D={self.width}, {self.n_shards} shards, {self.n_truncated} truncated -> {self.out}"
        )


def _rank(key: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def subsample(items: list[Any], n: int, seed: int) -> list[Any]:
    """The ``n`` items ranked first by ``sha256(seed:id)``, in their original order (all when ``n`` <= 0)."""
    if n <= 0 or n >= len(items):
        return items
    keep = {u.id for u in sorted(items, key=lambda u: _rank(u.id, seed))[:n]}
    return [u for u in items if u.id in keep]


def utterances_from_task(task: str, data_dir: str | None) -> list[Utterance]:
    """Utterances of a task's examples that carry audio (transcript = the example text)."""
    out = []
    for e in load_examples(task, data_dir=data_dir):
        if e.audio is None:
            continue
        meta = {k: v for k, v in e.meta.items() if isinstance(v, str | int | float)}
        out.append(Utterance(e.id, e.audio.path, e.text, {**meta, "label": e.label}))
    if not out:
        raise InputError(f"task {task!r} has no examples with audio: synthesise it and use --audio-dir")
    return out


def utterances_from_dir(folder: str) -> list[Utterance]:
    """Utterances of a ``casceq synth`` folder (manifest) or of the audio files under ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError("audio folder not found", path=folder)
    if (root / "manifest.jsonl").is_file():
        return [
            Utterance(
                f"{e.example_id}@{e.voice}",
                str(root / e.path),
                e.spoken_text,
                {"voice": e.voice, "example": e.example_id, "task": e.task},
            )
            for e in Manifest.load(root).entries
        ]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise InputError("no audio files", path=folder)
    out = []
    for p in files:
        txt = p.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
        out.append(
            Utterance(str(p.relative_to(root).with_suffix("")), str(p), text, {"folder": p.parent.name})
        )
    return out


def prepare_out(
    config: CaptureConfig, log: Callable[[str], None]
) -> tuple[frozenset[str], int, CaptureConfig]:
    """Ids already captured, the next shard number and the config with the kept capture's layers.

    Raises:
        InputError: A finished capture without resume/force, or one of another model or other layers.
    """
    out = Path(config.out)
    # only capture.partial.json: an earlier attempt failed (a bad file, a full disk) or was stopped; it is
    # continued without --resume, so that fixing the input and running the same command again just works
    unfinished = not (out / META_FILE).is_file() and (out / PARTIAL_META_FILE).is_file()
    if not (out / META_FILE).is_file() and not unfinished:
        return frozenset(), 0, config
    if config.force:
        for p in [*out.glob("shard-*"), out / META_FILE, out / PARTIAL_META_FILE]:
            p.unlink(missing_ok=True)
        return frozenset(), 0, config
    if not config.resume and not unfinished:
        raise InputError(
            "a capture exists here: pass --resume to continue it or --force to replace it", path=str(out)
        )
    reader = CaptureReader(out, partial_ok=True)
    how = (
        "the unfinished capture here (pass --force to replace it)" if unfinished else "--resume: the capture"
    )
    if reader.meta.model != config.model:
        raise InputError(f"{how} is of {reader.meta.model!r}, not {config.model!r}", path=str(out))
    if config.layers and tuple(sorted(set(config.layers))) != reader.meta.layers:
        raise InputError(
            f"{how} has layers {list(reader.meta.layers)}, not {list(config.layers)}", path=str(out)
        )
    if unfinished:
        log(f"capture: continuing the unfinished capture in {out} ({len(reader.utterances)} utterances kept)")
    done = frozenset(r.id for r in reader.utterances)
    first = (max(n for n, _ in reader.shards) + 1) if reader.shards else 0
    return done, first, replace(config, layers=tuple(reader.meta.layers))


def run_capture(
    config: CaptureConfig,
    ctx: StageContext | None = None,
    *,
    log: Callable[[str], None] = lambda _m: None,
    progress: Callable[[int, int, str], None] | None = None,
) -> CaptureResult:
    """Capture ``config.model`` on the selected utterances into ``config.out`` (loaded through ``ctx``).

    Raises:
        InputError: Bad output folder state (see :func:`prepare_out`), no utterances, or a resumed capture
            whose model weights differ.
    """
    out = Path(config.out)
    skip, first_shard, config = prepare_out(config, log)
    utts = (
        utterances_from_task(config.task, config.data_dir)
        if config.task
        else utterances_from_dir(str(config.audio_dir))
    )
    utts = subsample(utts, config.n, config.seed)
    todo = [u for u in utts if u.id not in skip]
    if not todo:
        return CaptureResult(str(out), len(utts), 0)
    ctx = ctx or StageContext(config.context())
    loaded = ctx.model(config.model, text_llm_ok=False)
    if skip:
        old = CaptureReader(out, partial_ok=True).meta
        if old.fingerprint != fingerprint(loaded.obj, layout_of(loaded.obj)):
            raise InputError(
                "--resume: the model's weights differ from the capture in progress", path=str(out)
            )
    extra = {
        "command": config.command_line(),
        "machine": platform.node(),
        "n_requested": config.n,
        "seed": config.seed,
        "source": config.task or config.audio_dir,
    }
    meta = capture(
        loaded.obj,
        todo,
        str(out),
        model=config.model,
        layers=list(config.layers) if config.layers else None,
        prompt=config.prompt,
        dtype=config.dtype,
        pitch=config.pitch,
        shard_positions=config.shard_positions,
        feature_extractor=loaded.feature_extractor,
        extra=extra,
        first_shard=first_shard,
        progress=(lambda i, uid: progress(i, len(todo), uid)) if progress else None,
    )
    reader = CaptureReader(out)
    return CaptureResult(
        str(out),
        len(utts),
        len(todo),
        len(reader.utterances),
        sum(r.count for r in reader.utterances),
        tuple(meta.layers),
        meta.n_layers,
        meta.width,
        len(reader.shards),
        sum(r.truncated for r in reader.utterances),
    )
