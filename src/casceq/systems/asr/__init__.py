"""Speech recognition back ends (``ASRBackend``) and the Whisper weight tools.

``make_asr("faster-whisper:base")`` builds a back end from a spec string; each back end is imported inside the
factory, so importing this package never imports torch, transformers or faster-whisper.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from casceq.errors import InputError
from casceq.systems.base import ASRBackend


def _faster_whisper(model: str, options: dict[str, Any]) -> ASRBackend:
    from casceq.systems.asr.faster_whisper import FasterWhisperASR  # registry: lazy

    return FasterWhisperASR(model, **options)


def _hf_whisper(model: str, options: dict[str, Any]) -> ASRBackend:
    from casceq.systems.asr.hf_whisper import HFWhisperASR  # registry: lazy

    return HFWhisperASR(model, **options)


def _vllm_whisper(model: str, options: dict[str, Any]) -> ASRBackend:
    from casceq.systems.asr.vllm_whisper import VLLMWhisperASR  # registry: lazy

    return VLLMWhisperASR(model, **options)


_FACTORIES: Mapping[str, Callable[[str, dict[str, Any]], ASRBackend]] = {
    # kind -> lazy factory (model, options); adding a back end = one adapter module + one line here
    "faster-whisper": _faster_whisper,
    "hf-whisper": _hf_whisper,
    "vllm-whisper": _vllm_whisper,
}
ASR_KINDS = tuple(_FACTORIES)


def make_asr(spec: str, **options: Any) -> ASRBackend:
    """Build an ASR back end from ``"<kind>:<model>"``.

    Args:
        spec: ``"faster-whisper:base"``, ``"faster-whisper:tiny.en"``, ``"faster-whisper:Systran/faster-whisper-small"``,
            ``"hf-whisper:<hub id | folder | tiny.en | base>"``, ``"vllm-whisper:<hub id>"``. A bare model name
            means faster-whisper.
        **options: Passed to the back end's constructor (``batch_size``, ``compute_type``, ``dtype``, ...).

    Raises:
        InputError: Unknown kind or empty model.
    """
    kind, sep, model = spec.partition(":")
    if not sep:
        kind, model = "faster-whisper", spec
    if not model:
        raise InputError(f"ASR spec '{spec}' names no model (e.g. 'faster-whisper:base')")
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise InputError(f"unknown ASR kind '{kind}' in '{spec}' (known: {', '.join(ASR_KINDS)})")
    return factory(model, options)
