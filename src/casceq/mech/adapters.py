"""Where the parts the mechanistic analysis needs live in each supported architecture.

One explicit rule per architecture, in :data:`RULES`, keyed by an *architecture key*: the transformers class
name of a bare model (``"WhisperForConditionalGeneration"``, ``"LlamaForCausalLM"``, ...) or
``"speech:<family>"`` for a casceq speech-LLM backend (``"speech:qwen2-audio"``, ``"speech:ultravox-native"``).
There is no chain of ``isinstance`` guesses: an unknown key is an error that lists the known ones, and adding a
model is one line here.

Conventions shared by capture, probes, the logit lens and erasure:

- **Layer index** ``l`` in ``0..n_layers`` follows transformers' ``hidden_states``: ``0`` is the input of the
  first layer (embeddings), ``l`` is the *raw* residual stream after layer ``l - 1``. Unlike transformers'
  ``hidden_states[-1]``, index ``n_layers`` does **not** have the final norm applied: :meth:`ModelLayout.unembed`
  applies final norm, unembedding and soft-capping uniformly to every layer (the logit lens).
- **Audio positions** carry audio embeddings; position ``p`` of a clip spans
  ``[p * seconds_per_position, (p + 1) * seconds_per_position)`` seconds of the (truncated) clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from casceq.errors import InputError

PAPER_LAYERS_32 = (0, 4, 8, 12, 16, 20, 24, 28, 31)
"""The paper's probed layers of 32-layer models; other depths use the same fractions of depth."""

WHISPER_FRAME_S = 0.02
"""Whisper encoder positions are 20 ms apart (10 ms mel hop, conv2 stride 2)."""

Kind = Literal["encoder", "decoder"]


def _get(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Rule:
    """How to find an architecture's parts, as attribute paths from the object the user holds.

    Attributes:
        kind: ``"encoder"`` (Whisper: no unembedding) or ``"decoder"`` (causal LM).
        model: Path to the ``nn.Module`` that is run (``""`` = the object itself).
        layers: Path to the ``nn.ModuleList`` of layers.
        final_norm: Path to the norm applied after the last layer.
        lm_head: Path to the unembedding ``nn.Linear`` (None for encoders).
        softcap: Path into the model config of the final logit soft-capping value (None: no capping).
        seconds_per_position: Seconds of audio per audio position, from the object (None: text only).
        window_s: Longest audio the model sees in one pass; longer clips are truncated by capture.
    """

    kind: Kind
    model: str
    layers: str
    final_norm: str
    lm_head: str | None
    softcap: str | None = None
    seconds_per_position: Callable[[Any], float] | None = None
    window_s: float | None = 30.0


def _const(seconds: float) -> Callable[[Any], float]:
    return lambda _obj: seconds


def _decoder(layers: str = "model.layers", norm: str = "model.norm", softcap: str | None = None) -> Rule:
    """Make the rule of a bare transformers causal LM: ``model.layers``, ``model.norm``, ``lm_head``; no audio, no window."""
    return Rule("decoder", "", layers, norm, "lm_head", softcap=softcap, window_s=None)


def _speech(layers: str, norm: str, seconds: Callable[[Any], float], softcap: str | None = None) -> Rule:
    """Make the rule of a casceq speech-LLM backend: paths start at the backend, its transformers model is ``.model``."""
    return Rule("decoder", "model", layers, norm, "model.lm_head", softcap, seconds, 30.0)


_LM = "model.model.language_model"
RULES: dict[str, Rule] = {
    # Whisper, the control model: the encoder only, 20 ms per position, 30 s window.
    "WhisperForConditionalGeneration": Rule(
        "encoder",
        "model.encoder",
        "model.encoder.layers",
        "model.encoder.layer_norm",
        None,
        seconds_per_position=_const(WHISPER_FRAME_S),
    ),
    "WhisperModel": Rule(
        "encoder",
        "encoder",
        "encoder.layers",
        "encoder.layer_norm",
        None,
        seconds_per_position=_const(WHISPER_FRAME_S),
    ),
    "WhisperEncoder": Rule(
        "encoder", "", "layers", "layer_norm", None, seconds_per_position=_const(WHISPER_FRAME_S)
    ),
    # Text causal LMs (the backbones). Gemma caps its final logits when the config says so.
    "LlamaForCausalLM": _decoder(),
    "Qwen2ForCausalLM": _decoder(),
    "MistralForCausalLM": _decoder(),
    "Phi3ForCausalLM": _decoder(),
    "Gemma2ForCausalLM": _decoder(softcap="config.final_logit_softcapping"),
    "Gemma3ForCausalLM": _decoder(softcap="config.final_logit_softcapping"),
    # Speech-LLM backends (casceq.systems.speech_llm), keyed by family.
    # Qwen2-Audio / Qwen2.5-Omni: Whisper-style encoder (20 ms) + stride-2 average pooling = 40 ms.
    "speech:qwen2-audio": _speech(f"{_LM}.layers", f"{_LM}.norm", _const(0.04)),
    "speech:qwen2.5-omni": _speech(f"{_LM}.layers", f"{_LM}.norm", _const(0.04)),
    # Voxtral: Whisper encoder frames stacked by 4 = 80 ms; 375 positions per 30 s chunk, padding included.
    "speech:voxtral": _speech(f"{_LM}.layers", f"{_LM}.norm", _const(0.08)),
    # Phi-4-MM: conformer with 8x time reduction of 10 ms mel frames = 80 ms (``audio_embed_sizes``).
    "speech:phi4-mm": _speech("model.model.layers", "model.model.norm", _const(0.08)),
    # Native Ultravox: Whisper frames (20 ms) stacked by the projector's k; any causal LM (Gemma caps logits).
    "speech:ultravox-native": _speech(
        "model.model.layers",
        "model.model.norm",
        lambda backend: WHISPER_FRAME_S * int(backend.config.stack_factor),
        softcap="model.config.final_logit_softcapping",
    ),
}
"""Architecture key -> rule. Adding an architecture = one line here (and a test with a tiny model)."""


def architecture_key(obj: Any) -> str:
    """Return the key of ``obj`` in :data:`RULES`: ``"speech:<family>"`` for casceq backends, else the class name."""
    family = getattr(type(obj), "family", None)
    if isinstance(family, str) and family and hasattr(obj, "describe"):
        return f"speech:{family}"
    return type(obj).__name__


@dataclass(frozen=True)
class ModelLayout:
    """The parts of one loaded model that hidden-state analyses need.

    Attributes:
        key: Architecture key (see :data:`RULES`).
        kind: ``"encoder"`` or ``"decoder"``.
        model: The ``nn.Module`` whose forward runs the layers.
        layers: The ``nn.ModuleList`` of layers, in order.
        final_norm: Norm after the last layer (the lens applies it to every layer).
        lm_head: Unembedding ``nn.Linear`` [D -> V], None for encoders.
        softcap: Final logit soft-capping ``c`` (logits -> c * tanh(logits / c)), None when absent.
        seconds_per_position: Seconds of audio per audio position (None: text-only model).
        window_s: Longest clip one forward pass sees (capture truncates longer ones); None: unlimited.
        n_layers: Number of layers (layer indices run ``0..n_layers``).
        width: Hidden size D.
        clip_spans: Per-clip position times, for models whose positions are not uniform in time (a CTC-head
            projector emits one position per decoded token): audio -> (starts, ends) or None (uniform).
    """

    key: str
    kind: Kind
    model: Any
    layers: Any
    final_norm: Any
    lm_head: Any
    softcap: float | None
    seconds_per_position: float | None
    window_s: float | None
    n_layers: int
    width: int
    clip_spans: Callable[[Any], tuple[Any, Any] | None] | None = None

    def default_layers(self) -> tuple[int, ...]:
        """Return the paper's layers, or the same fractions of depth (see :func:`default_layers`)."""
        return default_layers(self.n_layers)

    def check_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        """Sorted unique layer indices, each in ``0..n_layers``; else ``InputError`` naming the valid range."""
        bad = [int(x) for x in layers if not 0 <= int(x) <= self.n_layers]
        if bad or not layers:
            raise InputError(
                f"layers {bad or list(layers)} out of range: {self.key} has {self.n_layers} layers, "
                f"valid indices are 0..{self.n_layers} (0 = embeddings, {self.n_layers} = last layer output)"
            )
        return tuple(sorted({int(x) for x in layers}))

    def position_spans(self, n_positions: int) -> tuple[Any, Any]:
        """Start and end seconds, two float64 arrays (n_positions,), of a clip's consecutive audio positions."""
        import numpy as np

        if self.seconds_per_position is None:
            raise InputError(f"{self.key} has no audio positions")
        starts = np.arange(n_positions, dtype=np.float64) * self.seconds_per_position
        return starts, starts + self.seconds_per_position

    def spans_of(self, audio: Any, n: int | None = None) -> tuple[Any, Any]:
        """Start and end seconds of the audio positions of one 16 kHz clip (``n`` uniform ones by default)."""
        spans = self.clip_spans(audio) if self.clip_spans is not None else None
        if spans is not None:
            return spans
        return self.position_spans(self.n_positions(audio) if n is None else n)

    def n_positions(self, audio: Any) -> int:
        """Audio positions a clip of 16 kHz samples gives: ``ceil(seconds / seconds_per_position)`` if uniform."""
        spans = self.clip_spans(audio) if self.clip_spans is not None else None
        if spans is not None:
            return len(spans[0])
        if self.seconds_per_position is None:
            raise InputError(f"{self.key} has no audio positions")
        return max(1, math.ceil(len(audio) / 16000 / self.seconds_per_position - 1e-6))

    def normed(self, hidden: Any) -> Any:
        """Apply the final norm to raw residual states [..., D] (what ``hidden_states[-1]`` holds)."""
        return self.final_norm(hidden)

    def unembed(self, hidden: Any) -> Any:
        """Logit lens: final norm, unembedding and soft-capping of raw states [..., D] -> logits [..., V].

        Pass raw residual states (captured by hooks), never transformers' ``hidden_states[-1]``, which already
        has the final norm: normalising twice gives garbage.
        """
        import torch

        if self.lm_head is None:
            raise InputError(f"{self.key} is an encoder: it has no unembedding")
        h = self.final_norm(hidden)
        logits = self.lm_head(h.to(self.lm_head.weight.dtype))
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def default_layers(n_layers: int) -> tuple[int, ...]:
    """Map the paper's {0,4,...,28,31} of 32 layers, as fractions of depth, rounded half up, deduplicated.

    ``default_layers(32) == PAPER_LAYERS_32``; Whisper base (6 layers) gives 0..6, tiny.en (4) gives 0..4.
    """
    if n_layers < 1:
        raise InputError(f"a model needs at least one layer, got {n_layers}")
    return tuple(sorted({math.floor(x / 32 * n_layers + 0.5) for x in PAPER_LAYERS_32}))


def _softcap(root: Any, path: str | None) -> float | None:
    if path is None:
        return None
    head, _, last = path.rpartition(".")
    value = getattr(_get(root, head) if head else root, last, None)  # absent on backbones without capping
    return float(value) if value else None


def layout_of(obj: Any) -> ModelLayout:
    """Return the :class:`ModelLayout` of a loaded model or casceq speech-LLM backend.

    Args:
        obj: A transformers model (Whisper, a causal LM) or a backend from ``make_speech_llm``.

    Raises:
        InputError: The architecture has no rule (the message lists the supported keys).
    """
    key = architecture_key(obj)
    rule = RULES.get(key)
    if rule is None:
        raise InputError(f"no mechanistic adapter for {key!r}; supported: {', '.join(sorted(RULES))}")
    layers = _get(obj, rule.layers)
    norm = _get(obj, rule.final_norm)
    width = int(norm.weight.shape[-1])
    return ModelLayout(
        key=key,
        kind=rule.kind,
        model=_get(obj, rule.model) if rule.model else obj,
        layers=layers,
        final_norm=norm,
        lm_head=_get(obj, rule.lm_head) if rule.lm_head else None,
        softcap=_softcap(obj, rule.softcap),
        seconds_per_position=rule.seconds_per_position(obj) if rule.seconds_per_position else None,
        window_s=rule.window_s,
        n_layers=len(layers),
        width=width,
        clip_spans=getattr(obj, "audio_position_seconds", None) if rule.kind == "decoder" else None,
    )
