"""A lazy registry of speech-LLM families: ``make_speech_llm(spec)`` imports only the chosen adapter.

Importing this module imports no torch, transformers or SDK (``casceq --help`` stays fast); each factory
imports its adapter when called. Adding a model family = one adapter file + one line in ``_FACTORIES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from casceq.errors import InputError

KNOWN_BACKBONES: Mapping[str, str] = {
    # Model release -> the text LLM it is built on (sources in docs/speech_llms.md).
    "qwen2-audio-7b-instruct": "Qwen-7B",
    "qwen2-audio-7b": "Qwen-7B",
    "qwen2.5-omni-7b": "Qwen2.5-7B",
    "qwen2.5-omni-3b": "Qwen2.5-3B",
    "phi-4-multimodal-instruct": "Phi-4-mini-instruct",
    "voxtral-mini-3b-2507": "Ministral-3B",
    "voxtral-small-24b-2507": "Mistral-Small-3.1-24B",
    "ultravox-v0_5-llama-3_1-8b": "Llama-3.1-8B-Instruct",
    "ultravox-v0_5-llama-3_2-1b": "Llama-3.2-1B-Instruct",
    "ultravox-v0_4": "Llama-3.1-8B-Instruct",
    "ultravox-v0_4_1-llama-3_1-8b": "Llama-3.1-8B-Instruct",
}

# family -> (module under casceq.systems.speech_llm, class, constructor)
_FACTORIES: Mapping[str, tuple[str, str, str]] = {
    "qwen2-audio": ("qwen2_audio", "Qwen2AudioBackend", "from_pretrained"),
    "phi4-mm": ("phi4_mm", "Phi4MMBackend", "from_pretrained"),
    "voxtral": ("voxtral", "VoxtralBackend", "from_pretrained"),
    "qwen2.5-omni": ("qwen_omni", "QwenOmniBackend", "from_pretrained"),
    "ultravox-native": ("ultravox_native", "UltravoxNativeBackend", "from_checkpoint"),
    "ultravox": ("ultravox_remote", "UltravoxRemoteBackend", "from_pretrained"),
    "gemini": ("gemini", "GeminiBackend", "from_env"),
}
SPEECH_LLM_FAMILIES = tuple(_FACTORIES)


@dataclass(frozen=True)
class SpeechLLMSpec:
    """Which speech LLM to load.

    Attributes:
        family: One of ``SPEECH_LLM_FAMILIES``.
        model: Hub id or local folder (``ultravox-native``: projector checkpoint folder; ``gemini``: model name).
        backbone: The LLM id used for matching with a cascade; looked up in ``KNOWN_BACKBONES`` when None
            (``ultravox-native`` reads it from its checkpoint, ``gemini`` uses the model name).
        dtype: ``"float32"`` or ``"bfloat16"`` (local models).
        device: Torch device of local models.
        options: Extra keyword arguments of the family's constructor (e.g. ``trust_remote_code``,
            ``speech_lora``, ``batch_size``).
    """

    family: str
    model: str
    backbone: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> SpeechLLMSpec:
        """Parse ``"family:model"`` (e.g. ``"qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct"``)."""
        family, sep, model = text.partition(":")
        if not sep or not model:
            raise InputError(f"speech LLM spec {text!r} is not 'family:model'")
        return cls(family=family.strip(), model=model.strip(), **kwargs)


def default_backbone(model: str) -> str | None:
    """Return the known backbone of a released model, from its hub id or folder name (case-insensitive)."""
    return KNOWN_BACKBONES.get(PurePosixPath(model.rstrip("/")).name.lower())


def make_speech_llm(spec: SpeechLLMSpec | str) -> Any:
    """Build the ``SpeechLLMBackend`` a spec names, importing only that adapter.

    Raises:
        InputError: Unknown family, or no backbone given for a model not in ``KNOWN_BACKBONES``.
    """
    if isinstance(spec, str):
        spec = SpeechLLMSpec.parse(spec)
    if spec.family not in _FACTORIES:
        raise InputError(
            f"unknown speech LLM family {spec.family!r}; known: {', '.join(SPEECH_LLM_FAMILIES)}"
        )
    module_name, class_name, ctor = _FACTORIES[spec.family]
    module = importlib.import_module(f"casceq.systems.speech_llm.{module_name}")
    factory = getattr(getattr(module, class_name), ctor)
    options = dict(spec.options)
    if spec.family == "gemini":
        return factory(spec.model, backbone=spec.backbone, **options)
    if spec.family == "ultravox-native" and spec.model == "bundled":
        from casceq.train.shipped import load_shipped  # the trained checkpoint shipped as package data

        return load_shipped(dtype=spec.dtype, device=spec.device, **options)
    if spec.family == "ultravox-native":
        backend = factory(spec.model, dtype=spec.dtype, device=spec.device, **options)
        if spec.backbone:
            backend.backbone = spec.backbone
        return backend
    backbone = spec.backbone or default_backbone(spec.model)
    if backbone is None:
        raise InputError(
            f"no known backbone for {spec.model!r}: give the LLM it is built on (SpeechLLMSpec.backbone), "
            "which is how it is matched with its cascade"
        )
    return factory(spec.model, backbone=backbone, dtype=spec.dtype, device=spec.device, **options)
