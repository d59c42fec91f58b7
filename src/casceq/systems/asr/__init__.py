"""Speech recognition back ends (``ASRBackend``) and the Whisper weight tools.

``make_asr("faster-whisper:base")`` builds a back end from a spec string; each back end is imported inside the
factory, so importing this package never imports torch, transformers or faster-whisper.
"""

from __future__ import annotations

from typing import Any

from casceq.errors import InputError
from casceq.systems.base import ASRBackend

ASR_KINDS = ("faster-whisper", "hf-whisper", "vllm-whisper")


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
    if kind == "faster-whisper":
        from casceq.systems.asr.faster_whisper import FasterWhisperASR

        return FasterWhisperASR(model, **options)
    if kind == "hf-whisper":
        from casceq.systems.asr.hf_whisper import HFWhisperASR

        return HFWhisperASR(model, **options)
    if kind == "vllm-whisper":
        from casceq.systems.asr.vllm_whisper import VLLMWhisperASR

        return VLLMWhisperASR(model, **options)
    raise InputError(f"unknown ASR kind '{kind}' in '{spec}' (known: {', '.join(ASR_KINDS)})")
