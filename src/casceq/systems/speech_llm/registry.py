"""A lazy registry of speech-LLM families: ``make_speech_llm(spec)`` imports only the chosen adapter.

Importing this module imports no torch, transformers or SDK (``casceq --help`` stays fast); each factory
imports its adapter when called. Adding a model family = one adapter file + one factory and one line in
``_FACTORIES``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from casceq.errors import InputError
from casceq.systems.base import SpeechLLMBackend
from casceq.systems.loading import resolve_dtype_device


@dataclass(frozen=True)
class Backbone:
    """The text LLM a released speech LLM is built on, and how its matched cascade loads it.

    Attributes:
        name: The backbone id both systems of a matched pair carry (lower-cased when compared).
        llm: The matched cascade's LLM spec (``make_llm``), an instruct/chat model with open weights; None
            when the backbone has no open weights (no matched cascade can be built).
        settings: ``make_llm`` settings it needs (``trust_remote_code``, ``chat_template``).
        note: What "matched" means for this pair.
    """

    name: str
    llm: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


_FINETUNED = "the speech model fine-tuned its LLM: matched = same starting weights"
_QWEN_7B = Backbone(
    "Qwen-7B",
    "hf:Qwen/Qwen-7B-Chat",
    {"trust_remote_code": True, "chat_template": "chatml"},
    f"remote code (QWenTokenizer), no chat template in the tokenizer: ChatML given explicitly; {_FINETUNED}",
)
_LLAMA_31_8B = Backbone("Llama-3.1-8B-Instruct", "hf:meta-llama/Llama-3.1-8B-Instruct", note="frozen LLM")
BACKBONES: Mapping[str, Backbone] = {
    # Model release -> its backbone (sources in docs/speech_llms.md).
    "qwen2-audio-7b-instruct": _QWEN_7B,
    "qwen2-audio-7b": _QWEN_7B,
    "qwen2.5-omni-7b": Backbone("Qwen2.5-7B-Instruct", "hf:Qwen/Qwen2.5-7B-Instruct", note=_FINETUNED),
    "qwen2.5-omni-3b": Backbone("Qwen2.5-3B-Instruct", "hf:Qwen/Qwen2.5-3B-Instruct", note=_FINETUNED),
    "phi-4-multimodal-instruct": Backbone(
        "Phi-4-mini-instruct", "hf:microsoft/Phi-4-mini-instruct", note="speech via a LoRA on the frozen LLM"
    ),
    "voxtral-mini-3b-2507": Backbone(
        "Ministral-3B", None, note="Ministral 3B has no open weights: no matched cascade can be built"
    ),
    "voxtral-small-24b-2507": Backbone(
        "Mistral-Small-3.1-24B-Instruct-2503",
        "hf:mistralai/Mistral-Small-3.1-24B-Instruct-2503",
        note="the hub checkpoint is multimodal (Mistral3); not verified to load as a causal LM",
    ),
    "ultravox-v0_5-llama-3_1-8b": _LLAMA_31_8B,
    "ultravox-v0_5-llama-3_2-1b": Backbone(
        "Llama-3.2-1B-Instruct", "hf:meta-llama/Llama-3.2-1B-Instruct", note="frozen LLM"
    ),
    "ultravox-v0_4": _LLAMA_31_8B,
    "ultravox-v0_4_1-llama-3_1-8b": _LLAMA_31_8B,
}
KNOWN_BACKBONES: Mapping[str, str] = {release: b.name for release, b in BACKBONES.items()}
"""Model release -> backbone name (the id a matched cascade declares)."""


@dataclass(frozen=True)
class SpeechLLMSpec:
    """Which speech LLM to load.

    Attributes:
        family: One of ``SPEECH_LLM_FAMILIES``.
        model: Hub id or local folder (``ultravox-native``: projector checkpoint folder; ``gemini``: model name).
        backbone: The LLM id used for matching with a cascade; looked up in ``KNOWN_BACKBONES`` when None
            (``ultravox-native`` reads it from its checkpoint, ``gemini`` uses the model name).
        dtype: ``"auto"`` (bfloat16 on a GPU, float32 on CPU), ``"float32"`` or ``"bfloat16"`` (local models).
        device: Torch device of local models (``"auto"``: CUDA when available).
        options: Extra keyword arguments of the family's constructor (e.g. ``trust_remote_code``,
            ``speech_lora``, ``batch_size``).
    """

    family: str
    model: str
    backbone: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> SpeechLLMSpec:
        """Parse ``"family:model"`` (e.g. ``"qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"``)."""
        family, sep, model = text.partition(":")
        if not sep or not model:
            raise InputError(f"speech LLM spec {text!r} is not 'family:model'")
        return cls(family=family.strip(), model=model.strip(), **kwargs)


def backbone_info(model: str) -> Backbone | None:
    """Return the registry entry of a released model, from its hub id or folder name (case-insensitive)."""
    return BACKBONES.get(PurePosixPath(model.rstrip("/")).name.lower())


def default_backbone(model: str) -> str | None:
    """Return the known backbone of a released model, from its hub id or folder name (case-insensitive)."""
    info = backbone_info(model)
    return info.name if info else None


def _hub_id(llm_spec: str) -> str:
    """An LLM spec without its back-end prefix, lower-cased: ``"vllm:Qwen/Qwen-7B-Chat"`` -> ``"qwen/qwen-7b-chat"``."""
    family, sep, rest = llm_spec.partition(":")
    return (rest if sep and family in ("hf", "vllm") else llm_spec).strip().rstrip("/").lower()


def registered_backbone(llm_spec: str) -> str | None:
    """The registry's backbone name of a text LLM spec that is some release's matched-cascade LLM, else None.

    ``"hf:Qwen/Qwen-7B-Chat"`` -> ``"Qwen-7B"`` (Qwen2-Audio's backbone, whose name differs from the chat
    model's); the ``hf:`` and ``vllm:`` back ends of the same weights count alike.
    """
    want = _hub_id(llm_spec)
    for info in BACKBONES.values():
        if info.llm is not None and _hub_id(info.llm) == want:
            return info.name
    return None


def backbone_mismatch(model: str, declared: str | None) -> str | None:
    """A warning when a declared ``backbone=`` differs from the registry's backbone of ``model`` (else None)."""
    known = default_backbone(model)
    if not declared or known is None or declared.strip().lower() == known.lower():
        return None
    return (
        f"{model}: declared backbone {declared!r} differs from the registry's {known!r}; the pair is matched on "
        "the declared id, check that it is the same LLM"
    )


def _released(spec: SpeechLLMSpec) -> dict[str, Any]:
    """The constructor arguments of a released model: its backbone (given or known), dtype, device, options.

    Raises:
        InputError: No backbone given for a model not in ``KNOWN_BACKBONES``.
    """
    dtype, device = resolve_dtype_device(spec.dtype, spec.device)
    backbone = spec.backbone or default_backbone(spec.model)
    if backbone is None:
        raise InputError(
            f"no known backbone for {spec.model!r}: give the LLM it is built on (SpeechLLMSpec.backbone), "
            "which is how it is matched with its cascade"
        )
    return {"backbone": backbone, "dtype": dtype, "device": device, **spec.options}


# Each factory imports its adapter when called (the registry stays free of torch and SDKs).
def _qwen2_audio(spec: SpeechLLMSpec) -> SpeechLLMBackend:
    from casceq.systems.speech_llm.qwen2_audio import Qwen2AudioBackend  # registry: lazy

    return Qwen2AudioBackend.from_pretrained(spec.model, **_released(spec))


def _phi4_mm(spec: SpeechLLMSpec) -> SpeechLLMBackend:
    from casceq.systems.speech_llm.phi4_mm import Phi4MMBackend  # registry: lazy

    return Phi4MMBackend.from_pretrained(spec.model, **_released(spec))


def _voxtral(spec: SpeechLLMSpec) -> SpeechLLMBackend:
    from casceq.systems.speech_llm.voxtral import VoxtralBackend  # registry: lazy

    return VoxtralBackend.from_pretrained(spec.model, **_released(spec))


def _qwen_omni(spec: SpeechLLMSpec) -> SpeechLLMBackend:
    from casceq.systems.speech_llm.qwen_omni import QwenOmniBackend  # registry: lazy

    return QwenOmniBackend.from_pretrained(spec.model, **_released(spec))


def _ultravox_remote(spec: SpeechLLMSpec) -> SpeechLLMBackend:
    from casceq.systems.speech_llm.ultravox_remote import UltravoxRemoteBackend  # registry: lazy

    return UltravoxRemoteBackend.from_pretrained(spec.model, **_released(spec))


def _ultravox_native(spec: SpeechLLMSpec) -> SpeechLLMBackend:
    """A checkpoint folder, or a shipped name (``"bundled"``, ``"continuous"``, ...): package data."""
    from casceq.systems.speech_llm.shipped import SHIPPED, load_shipped, shipped_folder  # registry: lazy
    from casceq.systems.speech_llm.ultravox_native import UltravoxNativeBackend  # registry: lazy

    dtype, device = resolve_dtype_device(spec.dtype, spec.device)
    if spec.model in SHIPPED:
        return load_shipped(shipped_folder(spec.model), dtype=dtype, device=device, **spec.options)
    backend = UltravoxNativeBackend.from_checkpoint(spec.model, dtype=dtype, device=device, **spec.options)
    if spec.backbone:
        backend.backbone = spec.backbone
    return backend


def _gemini(spec: SpeechLLMSpec) -> SpeechLLMBackend:
    """A hosted model: no dtype or device; the backbone is the model's name unless given."""
    from casceq.systems.speech_llm.gemini import GeminiBackend  # registry: lazy

    return GeminiBackend.from_env(spec.model, backbone=spec.backbone, **spec.options)


_FACTORIES: Mapping[str, Callable[[SpeechLLMSpec], SpeechLLMBackend]] = {
    # family -> lazy factory
    "qwen2-audio": _qwen2_audio,
    "phi4-mm": _phi4_mm,
    "voxtral": _voxtral,
    "qwen2.5-omni": _qwen_omni,
    "ultravox-native": _ultravox_native,
    "ultravox": _ultravox_remote,
    "gemini": _gemini,
}
SPEECH_LLM_FAMILIES = tuple(_FACTORIES)


def make_speech_llm(spec: SpeechLLMSpec | str) -> Any:
    """Build the ``SpeechLLMBackend`` a spec names, importing only that adapter.

    Typed ``Any``: the mechanistic commands also reach the adapter's own model and tokenizer.

    Raises:
        InputError: Unknown family, or no backbone given for a model not in ``KNOWN_BACKBONES``.
    """
    if isinstance(spec, str):
        spec = SpeechLLMSpec.parse(spec)
    factory = _FACTORIES.get(spec.family)
    if factory is None:
        raise InputError(
            f"unknown speech LLM family {spec.family!r}; known: {', '.join(SPEECH_LLM_FAMILIES)}"
        )
    problem = backbone_mismatch(spec.model, spec.backbone)
    if problem:
        warnings.warn(problem, stacklevel=2)
    return factory(spec)
