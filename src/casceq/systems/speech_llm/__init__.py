"""End-to-end speech LLM back ends (audio + instruction in, text or option scores out).

``make_speech_llm(spec)`` builds one by family name, importing only that adapter; see docs/speech_llms.md.
"""

from casceq.systems.speech_llm.registry import (
    BACKBONES,
    KNOWN_BACKBONES,
    SPEECH_LLM_FAMILIES,
    Backbone,
    SpeechLLMSpec,
    backbone_info,
    backbone_mismatch,
    default_backbone,
    make_speech_llm,
    registered_backbone,
)

__all__ = [
    "BACKBONES",
    "KNOWN_BACKBONES",
    "SPEECH_LLM_FAMILIES",
    "Backbone",
    "SpeechLLMSpec",
    "backbone_info",
    "backbone_mismatch",
    "default_backbone",
    "make_speech_llm",
    "registered_backbone",
]
