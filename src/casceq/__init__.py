"""casceq: test whether a speech LLM behaves like an ASR -> LLM cascade on the same backbone.

Importing this package is cheap: heavy back ends (torch, transformers, faster-whisper, TTS engines) are
imported inside the functions that need them.
"""

from casceq.types import INVALID, AudioRef, Example, Prediction

__all__ = ["INVALID", "AudioRef", "Example", "Prediction", "__version__"]
__version__ = "0.1.0"
