"""Capture raw residual states at chosen layers over the audio positions of many utterances, streamed to disk.

- :class:`LayerTap` records layer inputs/outputs with forward hooks. It handles both layer return types
  (transformers 5 layers return a Tensor; older ones and some encoders a tuple whose first item is the state)
  and states passed positionally or as ``hidden_states=``. The states are *raw* (no final norm), for every
  layer including the last; apply ``ModelLayout.normed`` / ``unembed`` yourself.
- :func:`run_clip` runs one clip through an encoder (Whisper) or a speech-LLM backend and returns the states at
  its audio positions. Padding positions (Whisper's 30 s window, Voxtral's padded chunks) are dropped: a clip of
  ``s`` seconds keeps ``ceil(s / seconds_per_position)`` positions.
- :func:`capture` loops over utterances, truncating clips longer than the model's window (recorded per
  utterance), refusing NaN states with an error naming the utterance, and writing shards (``casceq.mech.shards``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from casceq.audio import features as F
from casceq.audio.io import load_audio
from casceq.errors import InputError
from casceq.mech.adapters import ModelLayout, layout_of
from casceq.mech.shards import FRAME_COLUMNS, CaptureMeta, ShardWriter, UtteranceRecord
from casceq.systems.speech_llm.ultravox_projector import weights_fingerprint

SAMPLE_RATE = 16_000
DEFAULT_PROMPT = "Transcribe the audio."


@dataclass(frozen=True)
class Utterance:
    """One clip to capture.

    Attributes:
        id: Unique id (becomes ``UtteranceRecord.id``).
        audio: Path of the audio file (any format ``casceq.audio.io.load_audio`` reads).
        transcript: What is said (the CTC and bag-of-characters probes' target).
        meta: Extra fields kept in the record (voice, speaker, actor), usable as split groups.
    """

    id: str
    audio: str
    transcript: str
    meta: dict[str, Any] = field(default_factory=dict)


class StopForward(Exception):
    """Raised by a ``LayerTap(stop=True)`` once the deepest requested layer is recorded."""


class LayerTap:
    """Context manager recording states [B, L, D] at layer indices ``0..n_layers`` during forward passes.

    Index 0 is the input of ``layers[0]`` (a forward pre-hook); index ``l > 0`` the output of ``layers[l-1]``.
    ``states[l]`` holds the last call's tensor (detached); ``calls[l]`` every call's when ``keep_all`` (during
    ``generate`` a layer fires once on the prompt, then once per new token). With ``stop=True`` the deepest
    requested layer raises :class:`StopForward` after recording, so the layers above it (and the unembedding)
    never run; the caller catches it (``run_clip`` does).
    """

    def __init__(
        self, layout: ModelLayout, layers: Sequence[int], *, keep_all: bool = False, stop: bool = False
    ) -> None:
        self.layout = layout
        self.layers = layout.check_layers(layers)
        self.keep_all = keep_all
        self.stop = stop
        self.states: dict[int, Any] = {}
        self.calls: dict[int, list[Any]] = {i: [] for i in self.layers}
        self._handles: list[Any] = []

    def _record(self, index: int, tensor: Any) -> None:
        t = tensor.detach()
        self.states[index] = t
        if self.keep_all:
            self.calls[index].append(t)
        if self.stop and index == self.layers[-1]:
            raise StopForward

    def __enter__(self) -> LayerTap:
        for index in self.layers:
            if index == 0:

                def pre(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                    self._record(0, args[0] if args else kwargs["hidden_states"])

                self._handles.append(self.layout.layers[0].register_forward_pre_hook(pre, with_kwargs=True))
            else:

                def post(_m: Any, _args: Any, out: Any, index: int = index) -> None:
                    # transformers 5 layers return a Tensor; tuples (state, attentions, ...) elsewhere.
                    self._record(index, out[0] if isinstance(out, tuple) else out)

                self._handles.append(self.layout.layers[index - 1].register_forward_hook(post))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def n_positions_for(seconds: float, seconds_per_position: float) -> int:
    """Audio positions that cover ``seconds`` of real audio: ``ceil(seconds / seconds_per_position)``."""
    return max(1, math.ceil(seconds / seconds_per_position - 1e-6))


def whisper_feature_extractor(layout: ModelLayout, folder: str | None = None) -> Any:
    """Build a ``WhisperFeatureExtractor`` matching the encoder's mel bins (from ``folder`` when given)."""
    from transformers import WhisperFeatureExtractor

    if folder is not None:
        return WhisperFeatureExtractor.from_pretrained(folder)
    return WhisperFeatureExtractor(feature_size=int(layout.model.config.num_mel_bins))


def run_clip(
    obj: Any,
    layout: ModelLayout,
    audio: np.ndarray,
    layers: Sequence[int],
    *,
    prompt: str = DEFAULT_PROMPT,
    feature_extractor: Any = None,
) -> np.ndarray:
    """States [K, P, D] (float32) of one 16 kHz clip at ``layers`` over its P real audio positions.

    Args:
        obj: A Whisper model (``layout.kind == "encoder"``) or a casceq speech-LLM backend.
        layout: ``layout_of(obj)``.
        audio: Mono float32 samples at 16 kHz, already within the model's window.
        layers: Layer indices to return, in this order.
        prompt: Instruction given to speech LLMs after the audio (it cannot affect audio positions of
            causal models whose audio comes first, but it is recorded).
        feature_extractor: Whisper feature extractor (encoders only; default built from the config).
    """
    import torch

    assert layout.seconds_per_position is not None
    keep = layout.n_positions(audio)
    # stop=True: layers above the deepest requested one never run (layer 0 alone costs one embedding pass).
    with LayerTap(layout, layers, stop=True) as tap, torch.inference_mode():
        if layout.kind == "encoder":
            fe = feature_extractor or whisper_feature_extractor(layout)
            feats = fe(audio, sampling_rate=SAMPLE_RATE, padding="max_length", return_tensors="pt")
            with contextlib.suppress(StopForward):
                layout.model(feats["input_features"].to(layout.model.device, layout.model.dtype))
            rows = [tap.states[i][0, :keep] for i in tap.layers]
        else:
            batch = obj.encode([audio], [prompt])
            with contextlib.suppress(StopForward):
                obj.forward_logits(batch, last=1)  # the unembedding runs on the last position only
            mask = (batch.input_ids[0] == obj.audio_token_id).to(tap.states[tap.layers[0]].device)
            rows = [tap.states[i][0, mask][:keep] for i in tap.layers]
    by_index = dict(zip(tap.layers, rows, strict=True))
    return torch.stack([by_index[i] for i in layers]).float().cpu().numpy()


def position_frames(
    audio: np.ndarray, layout: ModelLayout, n: int, *, pitch: bool = True
) -> tuple[np.ndarray, str, str]:
    """Per-position times and features [n, 5] (``FRAME_COLUMNS``), tracker name and voicing rule."""
    assert layout.seconds_per_position is not None
    starts, ends = layout.spans_of(audio, n)
    if len(starts) != n:
        raise InputError(f"{layout.key}: {len(starts)} position times for {n} captured positions")
    out = np.full((n, len(FRAME_COLUMNS)), np.nan, dtype=np.float32)
    out[:, 0], out[:, 1] = starts, ends
    if not pitch:
        times = F.frame_times(len(audio), SAMPLE_RATE, 0.01)
        energy = F.frame_energy(audio, SAMPLE_RATE, times, 0.025)
        feats = F.Features(
            times,
            energy,
            np.full(times.shape, np.nan),
            np.zeros(times.shape, bool),
            0.01,
            0.025,
            SAMPLE_RATE,
            "",
            "",
        )
    else:
        hop = min(layout.seconds_per_position, 0.02)
        feats = F.extract(audio, SAMPLE_RATE, hop_s=hop, win_s=max(hop, 0.025))
    aligned = F.align(feats, starts, ends)
    out[:, 2], out[:, 3], out[:, 4] = aligned.energy_db, aligned.f0_hz, aligned.voiced_fraction
    return out, feats.tracker, feats.voicing_rule


def fingerprint(obj: Any, layout: ModelLayout) -> str:
    """SHA-256 over the weights of the model run (and a native Ultravox's encoder and projector)."""
    parts = [layout.model, getattr(obj, "encoder", None), getattr(obj, "projector", None)]
    digest = hashlib.sha256()
    for part in parts:
        if part is not None and hasattr(part, "named_parameters"):
            digest.update(weights_fingerprint(part).encode())
    return digest.hexdigest()


def capture(
    obj: Any,
    utterances: Iterable[Utterance],
    out: str,
    *,
    model: str,
    layers: Sequence[int] | None = None,
    prompt: str = DEFAULT_PROMPT,
    dtype: str = "float16",
    pitch: bool = True,
    shard_positions: int = 50_000,
    feature_extractor: Any = None,
    extra: dict[str, Any] | None = None,
    skip_ids: frozenset[str] = frozenset(),
    first_shard: int = 0,
    progress: Callable[[int, str], None] | None = None,
) -> CaptureMeta:
    """Capture states of every utterance into the folder ``out`` (see ``casceq.mech.shards`` for the format).

    Args:
        obj: A Whisper model or a casceq speech-LLM backend (see ``casceq.mech.adapters.RULES``).
        utterances: Clips to capture, streamed (an iterator is fine: memory does not grow with N).
        out: Output folder.
        model: The model spec, recorded in the metadata.
        layers: Layer indices (default: the paper's fractions of depth, ``ModelLayout.default_layers``).
        prompt: Instruction for speech LLMs.
        dtype: ``"float16"`` (default; half the disk) or ``"float32"``.
        pitch: Compute F0/voicing (needs parselmouth); energy is always stored.
        shard_positions: Rows per shard (a shard's states are held in memory before writing).
        feature_extractor: Whisper feature extractor of the encoder's folder (default: built from config).
        extra: Provenance recorded in ``capture.json``.
        skip_ids: Utterance ids already captured (``--resume``).
        first_shard: Number of the first shard written (``--resume``).
        progress: Called as ``progress(i, utterance_id)`` after each utterance.

    Raises:
        InputError: NaN/inf states (naming the utterance), states overflowing float16, bad layers, a full disk.
    """
    layout = layout_of(obj)
    if layout.seconds_per_position is None:
        raise InputError(f"{layout.key} takes no audio: capture needs an encoder or a speech LLM")
    chosen = layout.check_layers(layers if layers is not None else layout.default_layers())
    if dtype not in ("float16", "float32"):
        raise InputError(f"dtype must be float16 or float32, not {dtype!r}")
    meta = CaptureMeta(
        model,
        layout.key,
        fingerprint(obj, layout),
        chosen,
        layout.n_layers,
        layout.width,
        layout.seconds_per_position,
        layout.window_s,
        dtype,
        prompt=prompt if layout.kind == "decoder" else "",
        extra=dict(extra or {}),
    )
    writer: ShardWriter | None = None
    for i, utt in enumerate(utterances, start=1):
        if utt.id in skip_ids:
            continue
        wav = load_audio(utt.audio, SAMPLE_RATE)
        limit = int(layout.window_s * SAMPLE_RATE) if layout.window_s else len(wav)
        truncated = len(wav) > limit
        wav = wav[:limit]
        states = run_clip(obj, layout, wav, chosen, prompt=prompt, feature_extractor=feature_extractor)
        if not np.isfinite(states).all():
            bad = [chosen[k] for k in range(len(chosen)) if not np.isfinite(states[k]).all()]
            raise InputError(
                f"utterance {utt.id!r}: NaN or infinite hidden states at layers {bad}", path=utt.audio
            )
        stored = states.astype(dtype)
        if not np.isfinite(stored).all():
            raise InputError(
                f"utterance {utt.id!r}: states exceed the {dtype} range; capture with --dtype float32"
            )
        frames, tracker, rule = position_frames(wav, layout, states.shape[1], pitch=pitch)
        if writer is None:
            meta = dataclasses.replace(meta, tracker=tracker, voicing_rule=rule)
            writer = ShardWriter(out, meta, shard_positions=shard_positions, first_shard=first_shard)
        record = UtteranceRecord(
            utt.id, utt.transcript, str(utt.audio), len(wav) / SAMPLE_RATE, truncated, 0, 0, 0, dict(utt.meta)
        )
        writer.add(record, stored, frames)
        if progress is not None:
            progress(i, utt.id)
    if writer is None:
        raise InputError("no utterances to capture", path=out)
    writer.close()
    return meta
