"""Audio conditions (``clean``, ``babble@SNR``) as seeded, cached, first-class variants of an example's audio.

Condition names::

    clean                       the audio as it is
    babble@<snr>                recorded babble (the default source) at <snr> dB, e.g. babble@10, babble@-2.5
    babble@<snr>:recorded       the same, spelled out (normalised to babble@<snr>)
    babble@<snr>:talkers        MUSAN-style babble summed from 3-7 talkers, never the target speaker

The paper's conditions are :data:`PAPER_CONDITIONS`. The noise of one item depends only on
``(seed, example_id, canonical condition name)`` (:func:`item_rng`), never on the order or batching of items.
Rendered files are cached under a key covering the source audio's SHA-256, the condition, the seed, the example
id, the speaker, the noise source's fingerprint and :data:`MIX_VERSION`.

Default noise sources (override per call with ``sources=``):

- ``recorded``: ``$CASCEQ_BABBLE_DIR``, else ``<datasets>/babble`` (files matching ``*babble*.wav``).
- ``talkers``: ``$CASCEQ_TALKERS_DIR`` (e.g. MUSAN ``speech/``), else ``<datasets>/ravdess`` (24 actors).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from casceq import paths  # module attribute: tests point datasets_dir elsewhere
from casceq.audio.babble import BabbleSource, RecordedBabble, TalkerBabble, speaker_key
from casceq.audio.io import SAMPLE_RATE, file_sha256, load_audio, write_flac
from casceq.audio.noise import MixResult, mix_at_snr
from casceq.errors import InputError
from casceq.paths import cache_dir as default_cache
from casceq.types import CLEAN, AudioRef, Example

MIX_VERSION = "mix-v1"
"""Bumped whenever rendering changes its output for the same inputs (invalidates cached variants)."""

PAPER_CONDITIONS = (CLEAN, "babble@15", "babble@10", "babble@5", "babble@0")
"""The conditions of the paper's noise experiment."""

SOURCES = ("recorded", "talkers")
"""Babble source names; the first is the default."""

_BABBLE = re.compile(r"^babble@([+-]?\d+(?:\.\d+)?)(?::([a-z_]+))?$")


@dataclass(frozen=True)
class Condition:
    """A parsed condition.

    Attributes:
        name: Canonical name (``"clean"``, ``"babble@10"``, ``"babble@10:talkers"``).
        kind: ``"clean"`` or ``"babble"``.
        snr_db: Target SNR in dB (None for clean).
        source: Babble source name (None for clean).
    """

    name: str
    kind: str
    snr_db: float | None = None
    source: str | None = None


def _valid_message(name: str) -> str:
    return (
        f"unknown condition {name!r}; valid: {', '.join(PAPER_CONDITIONS)}, or any "
        f"babble@<SNR dB>[:{'|:'.join(SOURCES)}] (default source: {SOURCES[0]})"
    )


def parse_condition(name: str) -> Condition:
    """Parse and normalise a condition name (see the module docstring).

    Raises:
        InputError: Unknown name; the message lists the valid ones.
    """
    text = str(name).strip().lower()
    if text == CLEAN:
        return Condition(CLEAN, "clean")
    m = _BABBLE.match(text)
    if not m or (m.group(2) is not None and m.group(2) not in SOURCES):
        raise InputError(_valid_message(str(name)))
    snr = float(m.group(1))
    source = m.group(2) or SOURCES[0]
    snr_text = str(int(snr)) if snr.is_integer() else repr(snr)
    canonical = f"babble@{snr_text}" + ("" if source == SOURCES[0] else f":{source}")
    return Condition(canonical, "babble", snr, source)


def item_rng(seed: int, example_id: str, condition: str) -> np.random.Generator:
    """Return the generator of one (seed, example, condition): independent of item order and batching."""
    digest = hashlib.sha256(f"{int(seed)}\0{example_id}\0{parse_condition(condition).name}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence([int(x) for x in np.frombuffer(digest, dtype="<u4")]))


@functools.cache
def default_source(source: str, sr: int = SAMPLE_RATE) -> BabbleSource:
    """Return the default babble source of a name (loaded once per process).

    Raises:
        InputError: Its folder is not found (set ``$CASCEQ_BABBLE_DIR`` / ``$CASCEQ_TALKERS_DIR``).
    """
    env = {"recorded": "CASCEQ_BABBLE_DIR", "talkers": "CASCEQ_TALKERS_DIR"}[source]
    sub = {"recorded": "babble", "talkers": "ravdess"}[source]
    root = os.environ.get(env)
    folder = Path(root) if root else (paths.datasets_dir() or Path("<no datasets folder>")) / sub
    if not folder.is_dir():
        raise InputError(f"no folder for babble source {source!r}: set ${env}", path=str(folder))
    if source == "recorded":
        return RecordedBabble.from_folder(folder, sr=sr)
    return TalkerBabble.from_folder(folder, sr=sr)


def _source(cond: Condition, sources: Mapping[str, BabbleSource] | None, sr: int) -> BabbleSource:
    assert cond.source is not None
    if sources is not None and cond.source in sources:
        return sources[cond.source]
    return default_source(cond.source, sr)


def render(
    condition: str,
    wav: np.ndarray,
    example_id: str,
    seed: int,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    speaker: object | None = None,
    sources: Mapping[str, BabbleSource] | None = None,
    sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """Return the audio of one example under one condition.

    Args:
        condition: Condition name (see :func:`parse_condition`).
        wav: Clean speech, float shape ``(n,)`` at ``sr``.
        example_id: The example's id (part of the noise seed).
        seed: Experiment seed.
        cache_dir: If given, the result is cached there as ``.npy`` (float32, exact: cached and fresh
            results are identical).
        speaker: The target speaker (excluded from talker babble).
        sources: Babble sources by name, overriding the defaults.
        sr: Sample rate of ``wav`` in Hz.

    Returns:
        float32 array of shape ``(n,)``.
    """
    cond = parse_condition(condition)
    if cond.kind == "clean":
        return np.asarray(wav, dtype=np.float32)
    src = _source(cond, sources, sr)
    path = None
    if cache_dir is not None:
        audio_hash = hashlib.sha256(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()
        key = _cache_key(audio_hash, cond, seed, example_id, speaker, src, sr)
        path = Path(cache_dir) / "conditions" / key[:2] / f"{key}.npy"
        if path.is_file():
            return np.load(path)
    out = _mix(cond, wav, example_id, seed, speaker, src, f"example {example_id}").mixture
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, out)
        os.replace(tmp, path)
    return out


def _mix(
    cond: Condition,
    wav: np.ndarray,
    example_id: str,
    seed: int,
    speaker: object | None,
    src: BabbleSource,
    name: str,
) -> MixResult:
    assert cond.snr_db is not None
    rng = item_rng(seed, example_id, cond.name)
    n = int(np.asarray(wav).shape[0])
    noise = src.sample(n, rng, exclude_speaker=speaker)
    return mix_at_snr(wav, noise, cond.snr_db, rng, name=name)


def _cache_key(
    audio_hash: str,
    cond: Condition,
    seed: int,
    example_id: str,
    speaker: object | None,
    src: BabbleSource,
    sr: int,
) -> str:
    spk = None if speaker is None else speaker_key(speaker)
    parts = [
        audio_hash,
        cond.name,
        str(int(seed)),
        example_id,
        str(spk),
        src.fingerprint,
        MIX_VERSION,
        str(sr),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def condition_path(
    audio_path: str | os.PathLike[str],
    condition: str,
    *,
    example_id: str,
    seed: int,
    cache_dir: str | os.PathLike[str] | None = None,
    speaker: object | None = None,
    sources: Mapping[str, BabbleSource] | None = None,
    sr: int = SAMPLE_RATE,
) -> Path:
    """Return the FLAC file of ``audio_path`` under ``condition``, rendered once and cached.

    ``clean`` returns ``audio_path`` itself. Otherwise the file is
    ``<cache_dir>/conditions/<condition>/<key[:2]>/<key>.flac`` (16-bit, written atomically) with a JSON
    sidecar recording the key's inputs and the mix (SNR measured, gain, noise offset).

    Args:
        audio_path: Clean audio of the example (any format :func:`~casceq.audio.io.load_audio` reads).
        condition: Condition name.
        example_id: The example's id (part of the noise seed).
        seed: Experiment seed.
        cache_dir: Cache root (default: :func:`casceq.paths.cache_dir`).
        speaker: The target speaker (excluded from talker babble).
        sources: Babble sources by name, overriding the defaults.
        sr: Sample rate to render at.

    Raises:
        InputError: Unknown condition, unreadable/invalid audio, or silent speech (names the file).
    """
    cond = parse_condition(condition)
    src_path = Path(audio_path)
    if cond.kind == "clean":
        return src_path
    if cache_dir is None:
        cache_dir = default_cache()
    src = _source(cond, sources, sr)
    audio_hash = file_sha256(src_path)
    key = _cache_key(audio_hash, cond, seed, example_id, speaker, src, sr)
    folder = Path(cache_dir) / "conditions" / cond.name.replace(":", "_") / key[:2]
    out = folder / f"{key}.flac"
    if out.is_file():
        return out
    wav = load_audio(src_path, sr)
    mix = _mix(cond, wav, example_id, seed, speaker, src, f"{src_path} (example {example_id})")
    write_flac(out, mix.mixture, sr)
    meta = {
        "source_audio": str(src_path),
        "source_sha256": audio_hash,
        "condition": asdict(cond),
        "seed": int(seed),
        "example_id": example_id,
        "speaker": None if speaker is None else speaker_key(speaker),
        "noise_source": src.name,
        "noise_fingerprint": src.fingerprint,
        "mix_version": MIX_VERSION,
        "sample_rate": sr,
        "measured_snr_db": mix.measured_snr_db,
        "gain": mix.gain,
        "noise_offset": mix.noise_offset,
    }
    tmp = folder / f".{key}.{os.getpid()}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / f"{key}.json")
    return out


def condition_audio(
    example: Example,
    condition: str,
    seed: int,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: Mapping[str, BabbleSource] | None = None,
) -> AudioRef:
    """Return ``example.audio`` under ``condition`` (the runner's one call per item).

    The target speaker excluded from talker babble is ``meta["actor"]`` (RAVDESS) or ``meta["speaker"]``.

    Raises:
        InputError: The example has no audio, or see :func:`condition_path`.
    """
    if example.audio is None:
        raise InputError(f"example {example.id!r} has no audio for condition {condition!r}")
    speaker = example.meta.get("actor", example.meta.get("speaker"))
    path = condition_path(
        example.audio.path,
        condition,
        example_id=example.id,
        seed=seed,
        cache_dir=cache_dir,
        speaker=speaker,
        sources=sources,
    )
    if path == Path(example.audio.path):
        return example.audio
    return replace(example.audio, path=str(path), sample_rate=SAMPLE_RATE, sha256=None)
