"""CMU Flite, called as the ``flite`` program (BSD-style licence; built-in voices kal, kal16, awb, rms, slt)."""

from __future__ import annotations

import functools
import subprocess
from typing import TYPE_CHECKING

from casceq.audio.tts.base import TTSBackend, ascii_text, have_program, run_to_wav

if TYPE_CHECKING:
    import numpy as np


@functools.cache
def flite_voices() -> frozenset[str]:
    """Voices compiled into the installed ``flite`` (``flite -lv``); empty if flite is missing."""
    if not have_program("flite"):
        return frozenset()
    try:
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(out.split(":", 1)[-1].split())


class FliteBackend(TTSBackend):
    """A flite voice: setting ``voice`` (a name from ``flite -lv``)."""

    def available(self) -> bool:
        """Return True if flite is installed and has this voice compiled in."""
        return self.info.setting("voice") in flite_voices()

    def _native(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        # flite reads bytes: fold accents so "café" is read as "cafe", not as two garbage letters.
        cmd = ["flite", "-voice", self.info.setting("voice"), "-f", "{text}", "-o", "{out}"]
        return run_to_wav(cmd, "out.wav", text_file="in.txt", text=ascii_text(text))
