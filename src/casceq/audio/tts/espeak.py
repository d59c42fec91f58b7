"""eSpeak NG (formant synthesis), called as the ``espeak-ng`` program (GPL-3.0; not linked, so no licence spill)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from casceq.audio.tts.base import TTSBackend, have_program, run_to_wav

if TYPE_CHECKING:
    import numpy as np


class EspeakBackend(TTSBackend):
    """An espeak-ng voice: settings ``voice`` (e.g. ``"en-us+f3"``: language + variant) and ``speed`` (wpm)."""

    def available(self) -> bool:
        """Return True if the ``espeak-ng`` program is installed."""
        return have_program("espeak-ng")

    def _native(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        cmd = [
            "espeak-ng",
            "-v",
            self.info.setting("voice", "en-us"),
            "-s",
            self.info.setting("speed", "175"),
        ]
        return run_to_wav([*cmd, "-f", "{text}", "-w", "{out}"], "out.wav", text_file="in.txt", text=text)
