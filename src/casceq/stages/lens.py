"""Lens stage: the logit lens over a speech LLM's capture (or over texts into a text LLM), and its control.

``run_lens`` writes ``OUT/mech/lens.json`` (``casceq.mech.lens.LensResult``) and ``OUT/mech/lens.md``; with
``all_positions`` it runs the speech LLM on the full prompt of each of the capture's utterances instead and writes
``OUT/mech/lens_all.json`` / ``.md`` (lens precision per region: audio, text before and after the audio;
:func:`lens_all_positions`).
``run_lens_control`` is the lens over a capture scored against the next utterance's transcript (a derangement):
the chance level of lens precision (``lens_control.json``, :class:`LensControl`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casceq.audio.io import load_audio
from casceq.errors import InputError
from casceq.mech.adapters import layout_of
from casceq.mech.capture import DEFAULT_PROMPT, SAMPLE_RATE, fingerprint
from casceq.mech.lens import (
    LENS_ALL_FILE,
    LENS_FILE,
    LensLayer,
    LensResult,
    layer_from_json,
    lens_capture,
    lens_positions,
    lens_texts,
)
from casceq.mech.shards import META_FILE, CaptureReader
from casceq.stages.context import ContextConfig, StageContext, provenance

LENS_CONTROL_FILE = "lens_control.json"
"""The lens scored against other utterances' transcripts (the chance level of lens precision)."""

CONTROL_WHAT = "lens precision against the transcript of the next utterance (a derangement): chance level"


@dataclass(frozen=True)
class LensConfig:
    """One lens run (the options of ``casceq lens``).

    Attributes:
        model: The captured speech LLM (``family:model``) or, with texts, a text LLM spec.
        out: Output folder (``mech/lens.json`` is written inside).
        capture: Capture folder of a speech LLM (or texts).
        texts: Input texts.
        text_file: Input texts, one per line.
        layers: Layer indices (None: all captured / all).
        dtype: Model weights dtype.
        all_positions: Run the speech LLM on the full prompt of each of the capture's utterances and score every
            position, per region (``OUT/mech/lens_all.json``), instead of the captured audio positions.
        prompt: Instruction of the full prompt (None: the capture's).
        argv: The command line recorded in the result's provenance.
    """

    model: str
    out: str
    capture: str | None = None
    texts: tuple[str, ...] = ()
    text_file: str | None = None
    layers: tuple[int, ...] | None = None
    dtype: str = "float32"
    all_positions: bool = False
    prompt: str | None = None
    argv: tuple[str, ...] = ()


def read_lens(path: str | Path) -> LensResult:
    """Read a ``lens.json`` file."""
    return LensResult.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def run_lens(config: LensConfig, ctx: StageContext | None = None) -> LensResult:
    """Run the lens, write its JSON and markdown table under ``config.out``; returns the result.

    Raises:
        InputError: A missing text file, or both or neither of a capture and texts.
    """
    texts = list(config.texts)
    if config.text_file:
        path = Path(config.text_file)
        if not path.is_file():
            raise InputError("text file not found", path=str(path))
        texts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if bool(texts) == bool(config.capture):
        raise InputError("give either a capture folder or --text/--text-file (not both)")
    if config.all_positions and not config.capture:
        raise InputError("--all-positions lenses a capture's utterances: give a capture folder")
    prov = provenance(config.argv)  # before the run: the checkout may move on meanwhile
    ctx = ctx or StageContext(ContextConfig(model=config.model, dtype=config.dtype))
    loaded = ctx.model(config.model)
    layers = list(config.layers) if config.layers else None
    if config.capture and config.all_positions:
        result = lens_all_positions(loaded.obj, config.capture, layers, config.prompt)
        result = dataclasses.replace(result, extra=prov)
        result.write(config.out, LENS_ALL_FILE)
        return result
    if config.capture:
        result = lens_capture(loaded.obj, loaded.tokenizer, config.capture, layers)
    else:
        result = lens_texts(loaded.obj, loaded.tokenizer, texts, layers=layers, name=config.model)
    result = dataclasses.replace(result, extra=prov)
    result.write(config.out, LENS_FILE)
    return result


def lens_all_positions(
    backend: Any, capture: str | Path, layers: list[int] | None = None, prompt: str | None = None
) -> LensResult:
    """The all-position lens (``casceq.mech.lens.lens_positions``) over a capture's utterances.

    The capture supplies the utterances (audio, transcripts), the layers and the prompt; the states are
    recomputed from ``backend``, which must be the captured model (same weights fingerprint).

    Raises:
        InputError: Another model's capture, or a layer out of range.
    """
    reader = CaptureReader(capture)
    if fingerprint(backend, layout_of(backend)) != reader.meta.fingerprint:
        raise InputError(
            f"captured from other weights than {reader.meta.model!r} loaded now", path=str(capture)
        )
    clips = [(r.id, load_audio(r.audio, SAMPLE_RATE), r.transcript) for r in reader.utterances]
    return lens_positions(
        backend,
        backend.tokenizer,
        clips,
        layers=layers if layers is not None else list(reader.meta.layers),
        prompt=prompt if prompt is not None else (reader.meta.prompt or DEFAULT_PROMPT),
        name=reader.meta.model,
    )


@dataclass(frozen=True)
class LensControl:
    """The lens over a capture scored against deranged transcripts (``lens_control.json``)."""

    layers: tuple[LensLayer, ...]
    what: str = CONTROL_WHAT

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-ready dict of ``lens_control.json``."""
        return {
            "kind": "lens-control",
            "what": self.what,
            "layers": [dataclasses.asdict(r) for r in self.layers],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LensControl:
        """Inverse of :meth:`to_json`."""
        return cls(
            tuple(layer_from_json(r) for r in data.get("layers", ())), str(data.get("what", CONTROL_WHAT))
        )


def run_lens_control(ctx: StageContext, capture_dir: Path, out: Path) -> tuple[LensResult, LensControl]:
    """Lens over the speech LLM's capture and over its deranged view; writes ``lens_control.json``, then the lens.

    The lens result is written last: a folder holding both files is complete.
    """
    backend = ctx.speech_llm()
    result = lens_capture(backend, backend.tokenizer, capture_dir)
    shadow = out / "control-capture"
    deranged_capture(capture_dir, shadow)
    control = LensControl(lens_capture(backend, backend.tokenizer, shadow).layers)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LENS_CONTROL_FILE
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(control.to_json(), indent=1), encoding="utf-8")
    tmp.replace(path)
    result.write(out)
    return result, control


def deranged_capture(src: Path, dst: Path) -> None:
    """A view of capture ``src`` in ``dst`` whose utterance i carries the transcript of utterance i + 1.

    States and frames are symbolic links relative to ``dst`` (nothing is copied, and the view survives moving
    the folder that holds both); only the records are rewritten.
    """
    reader = CaptureReader(src)
    recs = reader.utterances
    if len(recs) < 2:
        raise InputError("the lens control needs at least 2 utterances", path=str(src))
    shifted = {r.id: recs[(i + 1) % len(recs)].transcript for i, r in enumerate(recs)}
    dst.mkdir(parents=True, exist_ok=True)
    for path in [src / META_FILE, *src.glob("shard-*.npy")]:
        link = dst / path.name
        if link.is_symlink() and not link.exists():  # a dangling link, e.g. an absolute one of a moved folder
            link.unlink()
        if not link.exists():
            os.symlink(os.path.relpath(path.resolve(), dst.resolve()), link)
    for number, shard in reader.shards:
        lines = [
            json.dumps({**record_json(r), "transcript": shifted[r.id]}, ensure_ascii=False) for r in shard
        ]
        (dst / f"shard-{number:05d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def record_json(rec: Any) -> dict[str, Any]:
    """A capture record as a JSON-ready dict (its ``meta`` mapping as a plain dict)."""
    d = dataclasses.asdict(rec)
    d["meta"] = dict(rec.meta)
    return d
