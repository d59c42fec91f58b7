"""Hibari (a 7.9 MB Kokoro-derived neural voice on onnxruntime; Apache-2.0), voice "heart" (female, US).

Hibari's other voices download on first use and fail offline, so only the bundled "heart" is registered.
Its vocoder adds seeded noise: the synthesis seed is passed through and enters the cache key.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import TYPE_CHECKING, Any

from casceq.audio.tts.base import TTSBackend
from casceq.errors import require

if TYPE_CHECKING:
    import numpy as np


class HibariBackend(TTSBackend):
    """A Hibari voice; settings ``voice`` (``"heart"``) and ``speed`` (1.0 = the teacher's pace)."""

    thread_safe = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tts: Any = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Return True if hibari-tts and onnxruntime are installed (the "heart" model ships in the wheel)."""
        return all(importlib.util.find_spec(m) is not None for m in ("hibari", "onnxruntime"))

    def _native(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        with self._lock:
            if self._tts is None:
                hibari = require("hibari", "The Hibari voice", package="hibari-tts", extra="audio")
                self._tts = hibari.Hibari(voice=self.info.setting("voice", "heart"), threads=1)
        wav = self._tts(text, speed=float(self.info.setting("speed", "1.0")), seed=seed)
        return wav, int(self._tts.sample_rate)
