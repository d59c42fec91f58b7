"""Audio: loading and validation, babble noise at exact SNRs, conditions, acoustic features, natural speech.

Importing this package needs only numpy: soundfile, scipy, parselmouth and ffmpeg are used inside the
functions that need them. Text-to-speech lives in :mod:`casceq.audio.tts`.
"""

from casceq.audio.conditions import (
    PAPER_CONDITIONS,
    Condition,
    condition_audio,
    condition_path,
    parse_condition,
    render,
)
from casceq.audio.features import AlignedFeatures, Features, align, extract, position_spans
from casceq.audio.io import SAMPLE_RATE, file_sha256, is_silent, load_audio, validate, write_flac
from casceq.audio.natural import Attached, attach_audio
from casceq.audio.noise import BabbleSource, MixResult, RecordedBabble, TalkerBabble, mix_at_snr

__all__ = [
    "PAPER_CONDITIONS",
    "SAMPLE_RATE",
    "AlignedFeatures",
    "Attached",
    "BabbleSource",
    "Condition",
    "Features",
    "MixResult",
    "RecordedBabble",
    "TalkerBabble",
    "align",
    "attach_audio",
    "condition_audio",
    "condition_path",
    "extract",
    "file_sha256",
    "is_silent",
    "load_audio",
    "mix_at_snr",
    "parse_condition",
    "position_spans",
    "render",
    "validate",
    "write_flac",
]
